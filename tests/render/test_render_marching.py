"""Ray marching: samples only in occupied cells, at most max_steps, same as RAD-NeRF's per-ray loop."""

from __future__ import annotations

import math

import pytest
import torch

from radnerf.render import (
    OccupancyGrid,
    RaySamples,
    head_aabb,
    march_rays,
    near_far_from_aabb,
    step_bounds,
)


def _reference_march(o, d, near, far, occupied, bound, max_steps, dt_gamma, dt_min, dt_max):
    """RAD-NeRF's march_rays_train for one ray, one cascade, written plainly in float64.

    Walk t; in an occupied cell record t and step dt(t); in an empty cell jump
    to the next cell boundary by repeated dt(t) steps.
    """
    size = occupied.shape[0]

    def dt_of(t):
        return min(max(t * dt_gamma, dt_min), dt_max)

    samples = []
    t = near
    while t < far and len(samples) < max_steps:
        x = [min(max(o[i] + t * d[i], -bound), bound) for i in range(3)]
        n = [int(min(max(0.5 * (x[i] / bound + 1) * size, 0.0), size - 1)) for i in range(3)]
        if occupied[n[0], n[1], n[2]]:
            samples.append(t)
            t += dt_of(t)
        else:
            hits = []
            for i in range(3):
                side = n[i] + 0.5 + 0.5 * math.copysign(1.0, d[i])
                hits.append((((side / size) * 2 - 1) * bound - x[i]) / d[i])
            target = t + max(0.0, min(hits))
            t += dt_of(t)
            while t < target:
                t += dt_of(t)
    return samples


def _random_grid(size, rate, seed):
    grid = OccupancyGrid(size=size, bound=1.0)
    g = torch.Generator().manual_seed(seed)
    # Blobs of occupied cells (pooled noise), closer to a head than salt and pepper.
    noise = torch.rand(1, 1, size, size, size, generator=g)
    pooled = torch.nn.functional.avg_pool3d(noise, 3, stride=1, padding=1)[0, 0]
    with torch.no_grad():
        grid.density.copy_((pooled > torch.quantile(pooled, 1.0 - rate)).float() * 100.0)
        grid.refresh()
    return grid


def _random_rays(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    origins = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * 0.6 + torch.tensor(
        [0.0, 0.0, -2.5], dtype=dtype
    )
    target = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * 1.6
    dirs = target - origins
    return origins, dirs / dirs.norm(dim=-1, keepdim=True)


def _per_ray(samples: RaySamples):
    out = [[] for _ in range(samples.n_rays)]
    for r, t in zip(samples.ray_indices.tolist(), samples.t_starts.tolist()):
        out[r].append(t)
    return out


@pytest.mark.parametrize(
    ("max_steps", "dt_gamma", "rate"), [(16, 1 / 256, 0.1), (8, 1 / 256, 0.3), (32, 0.0, 0.15)]
)
def test_matches_radnerf_per_ray_loop(max_steps, dt_gamma, rate):
    grid = _random_grid(32, rate, seed=max_steps)
    origins, dirs = _random_rays(200, seed=1)
    near, far = near_far_from_aabb(origins, dirs, head_aabb(1.0).double(), 0.05)
    samples = march_rays(origins, dirs, near, far, grid, max_steps=max_steps, dt_gamma=dt_gamma)
    dt_min, dt_max = step_bounds(max_steps, grid.size, grid.bound)
    got = _per_ray(samples)
    occupied = grid.occupied.numpy()
    total = 0
    for i in range(200):
        ref = []
        if math.isfinite(near[i]) and far[i] > near[i]:
            ref = _reference_march(
                origins[i].tolist(),
                dirs[i].tolist(),
                float(near[i]),
                float(far[i]),
                occupied,
                1.0,
                max_steps,
                dt_gamma,
                dt_min,
                dt_max,
            )
        assert len(got[i]) == len(ref), f"ray {i}"
        assert got[i] == pytest.approx(ref, abs=1e-9)
        total += len(ref)
    assert total > 200  # the comparison is not vacuous
    assert samples.counts().max() <= max_steps


def test_growing_steps_match_reference():
    # dt_gamma large enough that dt grows with t between dt_min and dt_max:
    # the tabulated (non-constant) path.
    grid = _random_grid(16, 0.2, seed=5)
    origins, dirs = _random_rays(60, seed=2)
    near, far = near_far_from_aabb(origins, dirs, head_aabb(1.0).double(), 0.05)
    max_steps, dt_gamma = 64, 0.05
    dt_min, dt_max = step_bounds(max_steps, grid.size, grid.bound)
    assert dt_min < dt_max and dt_min < 2.0 * dt_gamma < dt_max
    samples = march_rays(origins, dirs, near, far, grid, max_steps=max_steps, dt_gamma=dt_gamma)
    got = _per_ray(samples)
    for i in range(60):
        ref = []
        if math.isfinite(near[i]) and far[i] > near[i]:
            ref = _reference_march(
                origins[i].tolist(),
                dirs[i].tolist(),
                float(near[i]),
                float(far[i]),
                grid.occupied.numpy(),
                1.0,
                max_steps,
                dt_gamma,
                dt_min,
                dt_max,
            )
        assert got[i] == pytest.approx(ref, abs=1e-9)
    deltas = samples.t_ends - samples.t_starts
    assert deltas.max() > deltas.min() * 1.2


def test_samples_only_in_occupied_cells_sorted_and_capped(head_grid):
    origins, dirs = _random_rays(500, seed=3, dtype=torch.float32)
    near, far = near_far_from_aabb(origins, dirs, head_aabb(1.0), 0.05)
    samples = march_rays(origins, dirs, near, far, head_grid, max_steps=8)
    assert len(samples) > 1000
    points = samples.positions(origins, dirs, 1.0)
    assert bool(head_grid.is_occupied(points).all())
    assert bool((samples.ray_indices[1:] >= samples.ray_indices[:-1]).all())
    same = samples.ray_indices[1:] == samples.ray_indices[:-1]
    assert bool((samples.t_starts[1:][same] > samples.t_starts[:-1][same]).all())
    assert bool((samples.steps[1:][same] == samples.steps[:-1][same] + 1).all())
    assert int(samples.counts().max()) == 8
    assert bool((samples.t_starts >= near[samples.ray_indices]).all())
    assert bool((samples.t_starts < far[samples.ray_indices]).all())


def test_empty_space_gets_no_samples(head_grid):
    origins = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.0, -3.0], [0.0, 0.0, -3.0]])
    # Through the head; beside it (inside the box, missing the ellipsoid); missing the box.
    dirs = torch.tensor([[0.0, 0.0, 1.0], [0.3, 0.0, 1.0], [0.0, 1.0, 0.2]])
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    near, far = near_far_from_aabb(origins, dirs, head_aabb(1.0), 0.05)
    assert math.isfinite(near[1]) and far[1] > near[1]
    counts = march_rays(origins, dirs, near, far, head_grid, max_steps=8).counts()
    assert counts.tolist() == [8, 0, 0]
    empty = OccupancyGrid(size=32, bound=1.0)
    assert len(march_rays(origins, dirs, near, far, empty)) == 0


def test_first_sample_in_first_occupied_cell(head_grid):
    # Along the z axis the first sample lies within one step of the first
    # occupied cell, which is in front of the head's surface (z = -0.55), and
    # the samples are one dt apart.
    origins = torch.tensor([[0.0, 0.0, -3.0]])
    dirs = torch.tensor([[0.0, 0.0, 1.0]])
    near, far = near_far_from_aabb(origins, dirs, head_aabb(1.0), 0.05)
    samples = march_rays(origins, dirs, near, far, head_grid, max_steps=8)
    cell = 2.0 / head_grid.size
    first_cell = int(head_grid.occupied[16, 16].nonzero()[0])
    cell_start = -1.0 + first_cell * cell
    _, dt = step_bounds(8, head_grid.size, 1.0)
    first_z = float(samples.t_starts[0]) - 3.0
    assert cell_start < -0.55
    assert cell_start - 1e-5 <= first_z < cell_start + dt
    torch.testing.assert_close(samples.t_starts.diff(), torch.full((7,), dt), rtol=0, atol=1e-5)
    torch.testing.assert_close(samples.t_ends - samples.t_starts, torch.full((8,), dt))


def test_perturb_shifts_by_less_than_a_step(head_grid):
    origins = torch.zeros(64, 3)
    origins[:, 2] = -3.0
    dirs = torch.zeros(64, 3)
    dirs[:, 2] = 1.0
    near, far = near_far_from_aabb(origins, dirs, head_aabb(1.0), 0.05)
    plain = march_rays(origins, dirs, near, far, head_grid, max_steps=4)
    g = torch.Generator().manual_seed(0)
    jittered = march_rays(
        origins, dirs, near, far, head_grid, max_steps=4, perturb=True, generator=g
    )
    _, dt = step_bounds(4, head_grid.size, 1.0)
    shift = (jittered.t_starts - plain.t_starts).view(64, 4)
    assert bool((shift.abs() < dt + 1e-5).all()) and shift.std() > 0.1 * dt
