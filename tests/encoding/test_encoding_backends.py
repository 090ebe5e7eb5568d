"""Backend choice, the config factory, state dicts across backends, cheap import."""

import dataclasses
import subprocess
import sys
import types
import warnings

import pytest
import torch

import radnerf.encoding.grid as grid_mod
import radnerf.encoding.grid_fused as fused_mod
from radnerf.config import GridConfig
from radnerf.encoding import GridEncoder, TcnnGridEncoder, build_grid_encoder, grid_layout
from radnerf.encoding.grid_plain import grid_encode_plain
from radnerf.errors import ConfigError


@pytest.fixture
def no_tcnn(monkeypatch):
    monkeypatch.setattr(
        grid_mod,
        "_TCNN",
        {"checked": True, "module": None, "why": "CUDA is not available", "warned": False},
    )


@pytest.fixture
def fake_tcnn(monkeypatch):
    """A stand-in for tinycudann whose Encoding allocates tcnn's params and runs our plain path."""
    seen = {}

    class Encoding(torch.nn.Module):
        def __init__(self, n_input_dims, encoding_config, seed=1337, dtype=None):
            super().__init__()
            seen["config"] = dict(encoding_config)
            cfg = encoding_config
            self.layout = grid_layout(
                n_input_dims,
                cfg["n_levels"],
                cfg["n_features_per_level"],
                cfg["base_resolution"],
                cfg["log2_hashmap_size"],
                per_level_scale=cfg["per_level_scale"],
            )
            self.params = torch.nn.Parameter(torch.zeros(self.layout.n_params))

        def forward(self, x):
            seen["x"] = x
            return grid_encode_plain(x, self.params, self.layout).half()

    module = types.SimpleNamespace(Encoding=Encoding)
    monkeypatch.setattr(
        grid_mod, "_TCNN", {"checked": True, "module": module, "why": None, "warned": False}
    )
    return seen


def test_auto_falls_back_to_torch_with_one_warning(no_tcnn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert grid_mod.resolve_implementation("auto") == "torch"
        assert grid_mod.resolve_implementation("auto") == "torch"
        enc = build_grid_encoder(GridConfig(), 3, "auto")
    assert isinstance(enc, GridEncoder)
    assert len([w for w in caught if "tiny-cuda-nn is not used" in str(w.message)]) == 1


def test_explicit_choices(no_tcnn):
    assert grid_mod.resolve_implementation("torch") == "torch"
    with pytest.raises(ConfigError, match="not usable"):
        grid_mod.resolve_implementation("tcnn")
    with pytest.raises(ConfigError):
        grid_mod.resolve_implementation("cuda")


def test_tcnn_cannot_do_tiled(fake_tcnn):
    with pytest.raises(ConfigError, match="tiled"):
        grid_mod.resolve_implementation("tcnn", "tiled")
    # auto quietly keeps tiled grids on our backend
    assert grid_mod.resolve_implementation("auto", "tiled") == "torch"
    assert grid_mod.resolve_implementation("auto", "hash") == "tcnn"


def test_factory_reads_grid_config():
    cfg = GridConfig(
        num_levels=16,
        level_dim=2,
        base_resolution=16,
        desired_resolution=2048,
        log2_hashmap_size=19,
        grid_type="hash",
    )
    enc = build_grid_encoder(cfg, 3, "torch")
    assert enc.layout.n_params == 12_196_240 and enc.output_dim == 32
    spatial = build_grid_encoder(cfg, 3, "torch", bound=2.0, scale_resolution_by_bound=True)
    assert spatial.layout.levels[-1].resolution == 4096
    tiled = build_grid_encoder(dataclasses.replace(cfg, grid_type="tiled", per_level_scale=1.5), 2, "torch")
    assert tiled.layout.grid_type == "tiled"
    assert tiled.layout.per_level_scale == pytest.approx(1.5)


def test_state_dict_is_one_flat_params_tensor():
    layout = grid_layout(3, 4, 2, 4, 10, per_level_scale=2.0)
    sd = GridEncoder(layout).state_dict()
    assert list(sd) == ["params"] and sd["params"].shape == (layout.n_params,)


def test_loads_torch_ngp_embeddings():
    layout = grid_layout(2, 4, 2, 4, 8, per_level_scale=2.0, grid_type="tiled")
    emb = torch.randn(layout.num_entries, 2)
    enc = GridEncoder(layout)
    enc.load_state_dict({"embeddings": emb, "offsets": torch.zeros(5, dtype=torch.int32)})
    assert torch.equal(enc.params.detach(), emb.reshape(-1))


def test_tcnn_wrapper_maps_layout_and_state_dict(fake_tcnn):
    cfg = GridConfig(
        num_levels=6, level_dim=2, base_resolution=8, desired_resolution=256, log2_hashmap_size=12, grid_type="hash"
    )
    tc = build_grid_encoder(cfg, 3, "tcnn", bound=2.0)
    assert isinstance(tc, TcnnGridEncoder)
    layout = tc.layout
    assert fake_tcnn["config"] == {
        "otype": "HashGrid",
        "n_levels": 6,
        "n_features_per_level": 2,
        "log2_hashmap_size": 12,
        "base_resolution": 8,
        "per_level_scale": layout.per_level_scale,
        "interpolation": "Linear",
    }
    assert [name for name, _ in tc.named_parameters()] == ["params"]
    ours = GridEncoder(layout, bound=2.0, path="plain")
    # ours -> tcnn and back: same keys, same shapes, same outputs.
    tc.load_state_dict(ours.state_dict())
    assert tc.params is tc._tcnn.params
    x = torch.rand(50, 3) * 4 - 2
    torch.testing.assert_close(tc(x), ours(x), rtol=0, atol=1e-6)
    assert fake_tcnn["x"].min() >= 0 and fake_tcnn["x"].max() <= 1
    with torch.no_grad():
        tc.params.add_(torch.randn_like(tc.params) * 1e-3)
    ours.load_state_dict(tc.state_dict())
    assert torch.equal(ours.params, tc.params)


def test_broken_build_warns_once_and_uses_plain(monkeypatch):
    monkeypatch.setattr(fused_mod, "_STATE", {"ext": None, "tried": False, "error": None})

    def fail(native):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(fused_mod, "_compile", fail)
    layout = grid_layout(3, 3, 2, 4, 8, per_level_scale=2.0)
    enc = GridEncoder(layout)
    x = torch.rand(20, 3) - 0.5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = enc(x)
        enc(x)
    assert len([w for w in caught if "could not be built" in str(w.message)]) == 1
    torch.testing.assert_close(out, grid_encode_plain(enc.to_unit(x), enc.params, layout))
    with pytest.raises(ConfigError):
        GridEncoder(layout, path="fused")(x)


def test_import_compiles_nothing():
    code = (
        "import sys, radnerf.encoding as e;"
        "from radnerf.config import GridConfig;"
        "e.build_grid_encoder(GridConfig(), 3, 'torch');"
        "bad = [m for m in sys.modules if m.startswith(('radnerf_grid_cpu', 'tinycudann',"
        " 'torch.utils.cpp_extension'))];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fused_backward_is_the_same_every_time_on_two_threads():
    """The input gradient of a 2D grid (the audio coordinate's) sums per-thread shares of the levels: the
    shares and their order must not depend on which thread was faster, or a training run is not
    repeatable and a resumed one drifts from the uninterrupted one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        enc = GridEncoder(grid_layout(input_dim=2, num_levels=16, log2_hashmap_size=12, desired_resolution=512,
                                      grid_type="hash"), path="fused")
        with torch.no_grad():
            enc.params.uniform_(-1, 1)
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(20000, 2, generator=g) * 2 - 1).requires_grad_()
        weights = torch.randn(20000, 32, generator=g)
        grads = []
        for _ in range(12):
            x.grad, enc.params.grad = None, None
            (enc(x) * weights).sum().backward()
            grads.append((x.grad.clone(), enc.params.grad.clone()))
        for gx, gt in grads[1:]:
            assert torch.equal(gx, grads[0][0]) and torch.equal(gt, grads[0][1])
    finally:
        torch.set_num_threads(threads)
