"""render_rays / render_image end to end on the ellipsoid head."""

from __future__ import annotations

import math

import pytest
import torch

from radnerf.config import RenderConfig
from radnerf.render import (
    OccupancyGrid,
    get_rays,
    render_image,
    render_rays,
)
from tests.render.render_scenes import ellipsoid_density, ellipsoid_field


def _camera(size=24):
    pose = torch.eye(4)
    pose[2, 3] = -3.0
    focal = size / 2 / math.tan(math.radians(12.0))
    return pose, (focal, focal, size / 2, size / 2)


def test_inference_and_differentiable_paths_agree(head_grid):
    pose, intr = _camera()
    rays = get_rays(pose, intr, 24, 24)
    opts = RenderConfig(max_steps=8, steps_per_round=3)
    fast = render_rays(
        rays.origins,
        rays.directions,
        head_grid,
        ellipsoid_field,
        options=opts,
        differentiable=False,
    )
    full = render_rays(
        rays.origins, rays.directions, head_grid, ellipsoid_field, options=opts, differentiable=True
    )
    for key in ("rgb", "opacity", "depth"):
        torch.testing.assert_close(fast[key], full[key].detach(), atol=1e-5, rtol=1e-5)
    assert torch.equal(fast["num_samples"], full["num_samples"])
    # The head is opaque: rays through the middle are fully covered, corners are empty.
    opacity = fast["opacity"].view(24, 24)
    assert opacity[12, 12] > 0.999 and opacity[0, 0] == 0.0
    assert 0.2 < float((opacity > 0.5).float().mean()) < 0.9


def test_depth_of_head_front(head_grid):
    pose, intr = _camera()
    rays = get_rays(pose, intr, 24, 24, pixels=torch.tensor([12 * 24 + 12]))
    out = render_rays(
        rays.origins, rays.directions, head_grid, ellipsoid_field, differentiable=False
    )
    # The central ray meets the ellipsoid's front (z = -0.55) at t ~ 2.45.
    z = float(out["depth"][0]) - 3.0
    assert abs(z - (-0.55)) < 0.1


def test_early_termination_saves_field_evaluations(head_grid):
    pose, intr = _camera()
    rays = get_rays(pose, intr, 24, 24)
    calls = []

    def counting_field(xyz, dirs):
        calls.append(xyz.shape[0])
        return ellipsoid_field(xyz, dirs)

    opts = RenderConfig(max_steps=16, steps_per_round=2)
    out = render_rays(
        rays.origins, rays.directions, head_grid, counting_field, options=opts, differentiable=False
    )
    evaluated = sum(calls)
    marched = int(out["num_samples"].sum())
    assert evaluated < 0.6 * marched
    # Switching termination off evaluates every marched sample.
    calls.clear()
    no_stop = RenderConfig(max_steps=16, steps_per_round=2, min_transmittance=0.0)
    render_rays(
        rays.origins,
        rays.directions,
        head_grid,
        counting_field,
        options=no_stop,
        differentiable=False,
    )
    assert sum(calls) == marched


def test_gradients_reach_the_field():
    torch.manual_seed(0)
    grid = OccupancyGrid(size=16, bound=1.0)
    grid.update(lambda x, c: ellipsoid_density(x), lambda: None)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))

    def field(xyz, dirs):
        h = net(xyz)
        return (
            torch.nn.functional.softplus(h[:, 0]) * 10,
            torch.sigmoid(h[:, 1:]),
            {"ambient": h[:, :2].abs()},
        )

    pose, intr = _camera(12)
    rays = get_rays(pose, intr, 12, 12)
    out = render_rays(rays.origins, rays.directions, grid, field, background=1.0, perturb=True)
    assert out["ambient"].shape == (144, 2)
    loss = (out["rgb"] - 0.3).square().mean() + out["ambient"].mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert out["weights"].shape == out["samples"].t_starts.shape


def test_background_fills_empty_pixels(head_grid):
    pose, intr = _camera(16)
    bg = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(0))
    out = render_image(pose, intr, 16, 16, head_grid, ellipsoid_field, background=bg, max_rays=100)
    assert out["rgb"].shape == (16, 16, 3) and out["depth"].shape == (16, 16)
    empty = out["opacity"] == 0
    assert empty.any() and (~empty).any()
    torch.testing.assert_close(out["rgb"][empty], bg[empty])
    const = render_image(pose, intr, 16, 16, head_grid, ellipsoid_field, background=0.25)
    torch.testing.assert_close(const["rgb"][empty], torch.full_like(const["rgb"][empty], 0.25))


def test_wrong_ray_and_background_shapes_name_the_shapes(head_grid):
    pose, intr = _camera(8)
    rays = get_rays(pose, intr, 8, 8)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        render_rays(rays.origins, rays.directions[:10], head_grid, ellipsoid_field)
    with pytest.raises(ValueError, match=r"background must be \[64, 3\]"):
        render_rays(rays.origins, rays.directions, head_grid, ellipsoid_field, background=torch.zeros(10, 3))
    with pytest.raises(ValueError, match=r"\[8, 8, 3\]"):
        render_image(pose, intr, 8, 8, head_grid, ellipsoid_field, background=torch.zeros(8, 9, 3))


def test_inference_extras_match_differentiable(head_grid):
    pose, intr = _camera(12)
    rays = get_rays(pose, intr, 12, 12)

    def field(xyz, dirs):
        sigma, rgb = ellipsoid_field(xyz, dirs)
        return sigma, rgb, {"amb": xyz[:, 0].abs()}

    a = render_rays(rays.origins, rays.directions, head_grid, field, differentiable=False)
    b = render_rays(rays.origins, rays.directions, head_grid, field, differentiable=True)
    torch.testing.assert_close(a["amb"], b["amb"].detach(), atol=1e-5, rtol=1e-5)


def test_grid_from_config_and_inside_a_model():
    from radnerf.config import ModelConfig, RenderConfig

    grid = OccupancyGrid.from_config(RenderConfig(), ModelConfig().bound)
    assert grid.size == 128 and grid.bound == 1.0 and grid.density_thresh == 10.0
    # As a submodule its buffers ride in the model's checkpoint.
    model = torch.nn.Module()
    model.grid = OccupancyGrid(size=8)
    assert {"grid.density", "grid.occupied", "grid.mean_density", "grid.updates"} <= set(
        model.state_dict()
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(head_grid):
    pose, intr = _camera()
    cpu = render_image(pose, intr, 24, 24, head_grid, ellipsoid_field)
    cuda_grid = OccupancyGrid(size=32).cuda()
    cuda_grid.load_state_dict(head_grid.state_dict())
    gpu = render_image(pose.cuda(), intr, 24, 24, cuda_grid, ellipsoid_field)
    for key in ("rgb", "opacity", "depth"):
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], atol=1e-4, rtol=1e-4)
