"""Grid outputs against the plain float64 reference, for every path and grid type."""

import numpy as np
import pytest
import torch

from radnerf.encoding import GridEncoder, grid_layout
from tests.encoding.reference_grid import reference_encode

# Small grids with dense and hashed levels: D=3 goes hashed from level 1
# (8^3 > 2^8), D=2 from level 3 (32^2 > 2^8).
CONFIGS = [
    {"dim": 3, "num_levels": 5, "level_dim": 2, "base": 4, "log2_size": 8, "pls": 2.0},
    {"dim": 2, "num_levels": 6, "level_dim": 2, "base": 4, "log2_size": 8, "pls": 2.0},
    {"dim": 3, "num_levels": 4, "level_dim": 4, "base": 3, "log2_size": 9, "pls": 1.5},
    {"dim": 2, "num_levels": 5, "level_dim": 1, "base": 5, "log2_size": 7, "pls": 1.7},
]


_OUTSIDE = {
    2: [[-0.03, 0.5], [1.04, 0.2], [0.0, 1.0], [0.3, -0.5]],
    3: [[-0.03, 0.5, 0.2], [1.04, 0.1, 0.9], [0.0, 1.0, 0.5], [0.3, -0.5, 1.2]],
}


def _points(dim, n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=g, dtype=torch.float64)
    # A few points on and just outside the cube: tcnn wraps them, torch-ngp zeroes them.
    x[:4] = torch.tensor(_OUTSIDE[dim], dtype=torch.float64)
    return x


def _encoder(cfg, grid_type, path, dtype, bound=0.5):
    layout = grid_layout(
        cfg["dim"],
        cfg["num_levels"],
        cfg["level_dim"],
        cfg["base"],
        cfg["log2_size"],
        per_level_scale=cfg["pls"],
        grid_type=grid_type,
    )
    enc = GridEncoder(layout, bound=bound, path=path).to(dtype)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        # Values of order one so that interpolation errors are visible.
        enc.params.copy_(torch.rand(layout.n_params, generator=g, dtype=torch.float64) * 2 - 1)
    return enc


def _reference(cfg, grid_type, enc, x01):
    return reference_encode(
        x01.numpy(),
        enc.params.detach().double().numpy(),
        cfg["dim"],
        cfg["num_levels"],
        cfg["level_dim"],
        cfg["base"],
        cfg["log2_size"],
        cfg["pls"],
        grid_type,
    )


@pytest.mark.parametrize("grid_type", ["hash", "tiled", "hash_ngp"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"D{c['dim']}F{c['level_dim']}")
def test_plain_float64_matches_reference(cfg, grid_type):
    enc = _encoder(cfg, grid_type, "plain", torch.float64, bound=0.5)
    x01 = _points(cfg["dim"], 40, seed=1)
    out = enc((x01 - 0.5) * 1.0)  # bound 0.5: [-0.5, 0.5] -> [0, 1]
    np.testing.assert_allclose(
        out.detach().numpy(), _reference(cfg, grid_type, enc, x01), rtol=0, atol=1e-12
    )


@pytest.mark.usefixtures("fused_ext")
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("grid_type", ["hash", "tiled", "hash_ngp"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"D{c['dim']}F{c['level_dim']}")
def test_fused_matches_reference(cfg, grid_type, dtype, atol):
    enc = _encoder(cfg, grid_type, "fused", dtype, bound=0.5)
    x01 = _points(cfg["dim"], 40, seed=2)
    x = (x01 - 0.5).to(dtype)
    out = enc(x)
    ref = _reference(cfg, grid_type, enc, enc.to_unit(x).double())
    np.testing.assert_allclose(out.detach().double().numpy(), ref, rtol=0, atol=atol)


def test_out_of_bounds_semantics_differ_by_reference():
    cfg = CONFIGS[0]
    x = torch.tensor([[1.3, 0.2, 0.4]], dtype=torch.float64)  # outside in x after mapping
    tiled = _encoder(cfg, "tiled", "plain", torch.float64, bound=1.0)
    hashed = _encoder(cfg, "hash", "plain", torch.float64, bound=1.0)
    assert torch.all(tiled(x) == 0)
    assert torch.all(hashed(x) != 0)


def test_batch_shape_and_bound_mapping():
    cfg = CONFIGS[1]
    enc = _encoder(cfg, "hash", "plain", torch.float64, bound=2.0)
    x = torch.rand(3, 5, 2, dtype=torch.float64) * 4 - 2
    out = enc(x)
    assert out.shape == (3, 5, cfg["num_levels"] * cfg["level_dim"])
    ref = _reference(cfg, "hash", enc, ((x + 2) / 4).reshape(-1, 2))
    np.testing.assert_allclose(out.reshape(-1, out.shape[-1]).detach().numpy(), ref, atol=1e-12)


def test_initialisation_is_uniform_in_1e_4():
    layout = grid_layout(3, 8, 2, 16, 14, desired_resolution=512)
    params = GridEncoder(layout).params.detach()
    assert params.shape == (layout.n_params,)
    assert params.abs().max() <= 1e-4
    assert params.std() == pytest.approx(1e-4 / 3**0.5, rel=0.05)


@pytest.mark.usefixtures("fused_ext")
@pytest.mark.parametrize("grid_type", ["hash", "tiled"])
def test_fused_wraps_at_the_top_face_like_the_reference(grid_type):
    # Points in [0.97, 1] touch vertex index `resolution`, which wraps in tcnn's
    # dense levels; whole blocks of such in-range points take the kernel's
    # cheap-wrap branch, so compare them with the reference too.
    cfg = CONFIGS[0]
    enc = _encoder(cfg, grid_type, "fused", torch.float64, bound=0.5)
    g = torch.Generator().manual_seed(5)
    x01 = 1 - 0.03 * torch.rand(48, cfg["dim"], generator=g, dtype=torch.float64)
    x01[::5] = 1.0
    out = enc(x01 - 0.5)
    np.testing.assert_allclose(
        out.detach().numpy(), _reference(cfg, grid_type, enc, x01), rtol=0, atol=1e-12
    )
