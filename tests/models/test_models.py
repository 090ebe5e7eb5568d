"""The head's networks built from configs: shapes, RAD-NeRF's layout, gradients, the ablation switches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radnerf.models import MLP, HeadModel, attention_indices, build_head, gather_windows, set_low_precision, trunc_exp
from radnerf.models.audio import AudioAttNet, AudioNet

TINY = [
    "preset=cpu_tiny",
    "model.spatial_grid.num_levels=4", "model.spatial_grid.log2_hashmap_size=10",
    "model.spatial_grid.desired_resolution=64",
    "model.audio_grid.num_levels=4", "model.audio_grid.log2_hashmap_size=8", "model.audio_grid.desired_resolution=32",
    "model.implicit_layers=3", "model.implicit_width=32", "model.composed_log2_hashmap_size=12",
]


def tiny_model(make_cfg, *overrides: str, channels: int = 7, frames: int = 5) -> HeadModel:
    """A tiny head whose grids hold values of a trained one's size (fresh ones are +-1e-4: nearly no signal)."""
    torch.manual_seed(0)
    model = build_head(make_cfg(*TINY, *overrides).model, channels, frames)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".params"):
                p.uniform_(-0.5, 0.5)
    return model


def inputs(n: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g) * 1.6 - 0.8
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return xyz, dirs


def windows(channels: int = 7, frames: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, frames, 16, channels, generator=g)


def test_audio_net_and_attention_shapes_follow_radnerf():
    net = AudioNet(dim_in=44, dim_aud=64)
    assert net(torch.randn(3, 16, 44)).shape == (3, 64)
    # RAD-NeRF's names, so its state dicts' audio entries load.
    names = set(dict(net.named_parameters()))
    assert {"encoder_conv.0.weight", "encoder_conv.6.weight", "encoder_fc1.0.weight", "encoder_fc1.2.bias"} <= names
    assert net.encoder_conv[0].weight.shape == (32, 44, 3)
    att = AudioAttNet(64, 8)
    codes = torch.randn(2, 8, 64)
    out = att(codes)
    assert out.shape == (2, 64)
    # A softmax average: a constant sequence comes back unchanged.
    same = codes[:, :1].expand(-1, 8, -1)
    assert torch.allclose(att(same), codes[:, 0], atol=1e-5)


def test_attention_windows_are_the_eight_around_the_frame_zero_padded():
    rows = attention_indices([0, 5, 9], num_audio=10, window=8)
    assert rows.tolist() == [
        [-1, -1, -1, -1, 0, 1, 2, 3],
        [1, 2, 3, 4, 5, 6, 7, 8],
        [5, 6, 7, 8, 9, -1, -1, -1],
    ]
    audio = np.arange(10 * 16 * 2, dtype=np.float32).reshape(10, 16, 2)
    got = gather_windows(audio, rows)
    assert got.shape == (3, 8, 16, 2)
    assert torch.equal(got[1, 0], torch.from_numpy(audio[1]))
    assert float(got[0, :4].abs().sum()) == 0.0 and torch.equal(got[0, 4], torch.from_numpy(audio[0]))
    assert attention_indices([3], 10, 1).tolist() == [[3]]


def test_mlp_with_a_constant_input_equals_the_concatenated_one():
    torch.manual_seed(0)
    mlp = MLP(32 + 64, 2, 64, 3)
    x, const = torch.randn(50, 32), torch.randn(1, 64)
    expected = mlp(torch.cat([x, const.expand(50, -1)], dim=-1))
    assert torch.allclose(mlp(x, const), expected, atol=1e-5)
    assert all(layer.bias is None for layer in mlp.net)
    with pytest.raises(ValueError, match="takes 96 inputs"):
        mlp(x, torch.randn(1, 3))


def _mlp_outputs_and_grads(mlp: MLP, parts: list[torch.Tensor], const: torch.Tensor, low: bool):
    set_low_precision(mlp, low)
    mlp.zero_grad()
    leaves = [p.detach().clone().requires_grad_(True) for p in (*parts, const)]
    out = mlp(leaves[:-1], leaves[-1])
    # A loss with a different weight on every output, so every gradient path is exercised.
    (out * torch.linspace(-1.0, 2.0, out.numel()).view_as(out)).sum().backward()
    grads = [leaf.grad for leaf in leaves] + [layer.weight.grad.clone() for layer in mlp.net]
    return out.detach(), grads


@pytest.mark.parametrize("rows", [0, 1, 700, 2500])
def test_bfloat16_mlp_agrees_with_float32_forward_and_backward(rows):
    """The bfloat16 path (rows padded to a bucket) is the float32 MLP to bfloat16 accuracy, gradients included:
    of every part, of the constant and of every layer's weight; padded rows add nothing."""
    torch.manual_seed(0)
    mlp = MLP(32 + 32 + 4, 65, 64, 3)
    parts = [torch.randn(rows, 32), torch.rand(rows, 32)]
    const = torch.randn(1, 4)
    ref, ref_grads = _mlp_outputs_and_grads(mlp, parts, const, low=False)
    out, grads = _mlp_outputs_and_grads(mlp, parts, const, low=True)
    assert out.dtype == torch.float32 and out.shape == (rows, 65)
    scale = ref.abs().amax().clamp(min=1.0) if rows else 1.0
    assert torch.allclose(out, ref, atol=0.03 * float(scale))  # bfloat16 keeps 8 bits of mantissa
    # Input gradients sum 64 products of either sign through three layers: rounded to 8 bits they
    # cancel less exactly (about 5% here); the weights' gradients sum over the rows (about 1%).
    tolerances = [0.1, 0.1, 0.03] + [0.03] * len(mlp.net)
    for got, want, tol in zip(grads, ref_grads, tolerances):
        assert got.dtype == torch.float32 and got.shape == want.shape
        if rows == 0:
            assert not got.any()
            continue
        err = (got - want).norm() / want.norm()
        assert err < tol, float(err)


def test_bfloat16_mlp_rows_do_not_depend_on_the_batch_around_them():
    """A point renders the same whatever else the step evaluates: rows computed within a large batch
    equal the same rows computed alone (padding and bucketing change nothing)."""
    torch.manual_seed(0)
    mlp = MLP(16 + 64, 3, 64, 2)
    set_low_precision(mlp, True)
    x = [torch.randn(3000, 16), torch.randn(3000, 64)]
    with torch.no_grad():
        whole = mlp(x)
        alone = mlp([p[1500:1510] for p in x])
    assert torch.allclose(whole[1500:1510], alone, atol=1e-6)


def test_trunc_exp_gradient_is_clamped():
    x = torch.tensor([0.0, 20.0], requires_grad=True)
    trunc_exp(x).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([1.0, float(np.exp(15.0))]))


@pytest.mark.parametrize("overrides", [
    (), ("model.ambient_dim=1",), ("model.ambient_dim=3",), ("model.eye_feature=false",),
    ("model.appearance_dim=0",), ("model.backbone=implicit",), ("model.backbone=composed",),
    ("model.backbone=deform",), ("model.audio=false",), ("model.attention_window=1",),
])
def test_every_variant_renders_and_trains_every_parameter(make_cfg, overrides):
    model = tiny_model(make_cfg, *overrides)
    xyz, dirs = inputs()
    cond = model.condition(windows(), eye=0.3, index=2)
    sigma, rgb, extras = model(xyz, dirs, cond)
    assert sigma.shape == (64,) and rgb.shape == (64, 3)
    assert bool((sigma > 0).all()) and bool(((rgb > 0) & (rgb < 1)).all())
    cfg = model.cfg
    has_coordinate = cfg.audio and cfg.backbone != "implicit"
    assert ("ambient" in extras) == has_coordinate
    if has_coordinate:
        assert extras["ambient"].shape == (64,)
    assert torch.allclose(model.density(xyz, cond), sigma)

    loss = sigma.mean() + rgb.mean() + (extras["ambient"].mean() if has_coordinate else 0)
    loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    # Appearance codes other than frame 2's get no gradient, by design.
    assert silent in ([], ["individual_codes"]) or not any(n != "individual_codes" for n in silent), silent
    if cfg.appearance_dim:
        grad = model.individual_codes.grad
        assert bool(grad[2].abs().sum() > 0) and float(grad[[0, 1, 3, 4]].abs().sum()) == 0.0


def test_parameter_groups_follow_radnerf(make_cfg):
    model = tiny_model(make_cfg)
    groups = {g["name"]: g for g in model.param_groups(lr_grid=1e-2, lr_net=1e-3, attention_scale=5.0)}
    assert set(groups) == {"grids", "nets", "attention", "appearance"}
    assert groups["attention"]["lr"] == pytest.approx(5e-3) and groups["grids"]["lr"] == 1e-2
    grid_params = {id(p) for p in groups["grids"]["params"]}
    assert id(model.encoder.params) in grid_params and id(model.encoder_ambient.params) in grid_params
    every = {id(p) for p in model.parameters()}
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(every)  # each parameter in exactly one group


def test_the_audio_path_changes_the_output_and_the_baseline_has_none(make_cfg):
    model = tiny_model(make_cfg)
    xyz, dirs = inputs()
    a = model(xyz, dirs, model.condition(windows(seed=1), eye=0.3))[0]
    b = model(xyz, dirs, model.condition(windows(seed=2), eye=0.3))[0]
    assert not torch.allclose(a, b)
    static = tiny_model(make_cfg, "model.audio=false")
    assert not any(n.startswith(("audio_net", "audio_att_net", "ambient_net", "encoder_ambient"))
                   for n, _ in static.named_parameters())
    cond = static.condition(None, eye=0.3)
    assert cond.audio is None
    with pytest.raises(ValueError, match="audio windows"):
        model.condition(None, eye=0.3)


def test_unseen_frames_use_the_first_or_the_mean_appearance_code(make_cfg):
    first = tiny_model(make_cfg)
    assert torch.equal(first.condition(windows(), 0.3).appearance, first.individual_codes[:1])
    mean = tiny_model(make_cfg, "model.appearance_at_test=mean")
    assert torch.allclose(mean.condition(windows(), 0.3).appearance, mean.individual_codes.mean(0, keepdim=True))


def test_paper_sizes(make_cfg):
    """Appendix A.2 / RAD-NeRF's NeRFNetwork: 64-d audio code, 3-layer ambient and density MLPs, a 2-layer colour MLP
    on SH degree 4 + 64 geometry features + a 4-d appearance code, 16 x 2 grid features."""
    model = build_head(make_cfg().model, 53, 10)
    assert model.encoder.output_dim == 32 and model.encoder_ambient.output_dim == 32
    assert [layer.weight.shape for layer in model.ambient_net.net] == [(64, 96), (64, 64), (2, 64)]
    assert [layer.weight.shape for layer in model.sigma_net.net] == [(64, 65), (64, 64), (65, 64)]
    assert [layer.weight.shape for layer in model.color_net.net] == [(64, 84), (3, 64)]
    assert model.individual_codes.shape == (10, 4)
    assert model.audio_net.encoder_fc1[2].weight.shape == (64, 64)


def test_the_default_spatial_grid_sees_all_three_axes_at_every_level(make_cfg):
    """Why the head's grids are tiny-cuda-nn's hash, not RAD-NeRF's tiled: at the paper's sizes the tiled
    3D grid stops adding dimensions once a level's 2D slice outgrows its 2^16 table, so its 7 finest levels
    give the same features to points that differ only along the third axis (the head's left-right one in
    RAD-NeRF's space: both eyes would share their fine features)."""
    from dataclasses import replace

    from radnerf.encoding import build_grid_encoder

    cfg = make_cfg().model.spatial_grid
    a = torch.tensor([[0.1, 0.2, -0.3]])
    b = a + torch.tensor([[0.0, 0.0, 0.37]])  # the third axis only
    for grid_type, blind in (("tiled", 7), ("hash", 0)):
        torch.manual_seed(0)
        grid = build_grid_encoder(replace(cfg, grid_type=grid_type), 3, "torch", bound=1.0,
                                  scale_resolution_by_bound=True)
        with torch.no_grad():
            grid.params.uniform_(-1, 1)
            same = (grid(a) - grid(b)).abs().view(16, 2).sum(-1) < 1e-6  # up to rounding of fz + (1 - fz)
        assert int(same.sum()) == blind, (grid_type, same.tolist())
        assert not bool(same[:9].any())
    assert cfg.grid_type == "hash"
