"""Render rays through a radiance field: march the occupancy grid, query the field, composite.

Two paths give the same pixels:

* differentiable (training, or whenever autograd is on): every sample of every
  ray is evaluated in one call of the field, weights come from
  :func:`radnerf.render.volume.render_weight_from_density` with early
  termination as a mask, and gradients reach the field's outputs (and the ray
  origins / directions through the sample points);
* inference (``torch.no_grad()``): samples are evaluated a few steps at a time
  (``steps_per_round``) for the rays whose transmittance is still above
  ``min_transmittance``, so a ray stops costing field evaluations once it has
  hit the opaque face, as RAD-NeRF's inference loop (``march_rays`` /
  ``composite_rays``) does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from radnerf.config import RenderConfig
from radnerf.render.marching import RaySamples, march_rays, march_rays_padded
from radnerf.render.occupancy import OccupancyGrid
from radnerf.render.rays import get_rays, head_aabb, near_far_from_aabb
from radnerf.render.volume import (
    accumulate_along_rays,
    composite_background,
    composite_padded,
    render_weight_from_density,
)

RadianceFn = Callable[..., Any]
"""``radiance_fn(xyz [M, 3], dirs [M, 3]) -> (sigma [M], rgb [M, 3])`` or
``(sigma, rgb, extras)`` with ``extras`` a dict of ``[M]`` / ``[M, K]`` tensors
that are accumulated along rays with the rendering weights (e.g. RAD-NeRF's
ambient term). The audio / eye condition is bound in the closure."""


# The renderer's settings are ``RenderConfig`` itself (``max_steps``,
# ``min_transmittance``, ``dt_gamma``, ``min_near``, ``steps_per_round``,
# ``march_chunk``; its ``grid_size`` and ``density_thresh`` go to
# ``OccupancyGrid.from_config``). Colours are not clamped (RAD-NeRF clamps the
# composited image to [0, 1]; with sigmoid colours and a background in [0, 1]
# it already is).


class _Profile:
    """Adds seconds per phase into a dict when one is given (CUDA synchronised)."""

    def __init__(self, sink: dict[str, float] | None, device: torch.device):
        self.sink = sink
        self.cuda = device.type == "cuda"

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.sink is None:
            yield
            return
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        self.sink[name] = self.sink.get(name, 0.0) + time.perf_counter() - start


def _call_field(radiance_fn: RadianceFn, xyz: torch.Tensor, dirs: torch.Tensor):
    out = radiance_fn(xyz, dirs)
    sigma, rgb = out[0], out[1]
    extras = out[2] if len(out) > 2 and out[2] is not None else {}
    return sigma.reshape(-1), rgb, extras


def _check_rays(
    origins: torch.Tensor, directions: torch.Tensor, background: torch.Tensor | float | None
) -> None:
    """ValueError naming the shapes when rays or background do not fit (a caller's bug, not the user's)."""
    if origins.dim() != 2 or origins.shape[-1] != 3 or origins.shape != directions.shape:
        raise ValueError(
            f"origins and directions must both be [N, 3], got {tuple(origins.shape)} and {tuple(directions.shape)}"
        )
    if torch.is_tensor(background) and background.dim() > 0:
        n = origins.shape[0]
        if tuple(background.shape) not in ((n, 3), (3,)):
            raise ValueError(f"background must be [{n}, 3], [3] or a float, got {tuple(background.shape)}")


def render_rays(
    origins: torch.Tensor,
    directions: torch.Tensor,
    grid: OccupancyGrid,
    radiance_fn: RadianceFn,
    aabb: torch.Tensor | None = None,
    options: RenderConfig | None = None,
    background: torch.Tensor | float | None = None,
    perturb: bool = False,
    generator: torch.Generator | None = None,
    differentiable: bool | None = None,
    profile: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Volume-render rays through the occupied part of the grid.

    Args:
        origins, directions: ``[N, 3]``, unit directions (from :func:`radnerf.render.rays.get_rays`).
        grid: the maximum occupancy grid; ``grid.bound`` is the model's bound.
        radiance_fn: see :data:`RadianceFn`.
        aabb: ``[6]`` box rays are clipped to; default :func:`head_aabb` of ``grid.bound``.
        options: marching settings.
        background: ``[N, 3]``, ``[3]`` or a float composited under the head
            (None: black, i.e. the premultiplied colour).
        perturb: jitter the first sample of each ray (training).
        differentiable: force a path; default ``torch.is_grad_enabled()``.
        profile: if given, seconds spent in ``near_far``, ``march``, ``field``
            and ``composite`` are added to it.

    Returns:
        A dict with ``rgb [N, 3]`` (over ``background``), ``opacity [N]``
        (accumulated weights), ``depth [N]`` (``sum w_i t_i``, distance along
        the unit ray, 0 where nothing was hit), ``num_samples [N]`` (int64,
        samples marched), every extra of the field accumulated as
        ``[N, K]`` / ``[N]``, and on the differentiable path ``samples``
        (:class:`RaySamples`) and ``weights [M]``.

    Raises:
        ValueError: rays or background of the wrong shape.
    """
    _check_rays(origins, directions, background)
    opts = options or RenderConfig()
    device = origins.device
    prof = _Profile(profile, device)
    if aabb is None:
        aabb = head_aabb(grid.bound, device)
    if differentiable is None:
        differentiable = torch.is_grad_enabled()

    with prof("near_far"):
        nears, fars = near_far_from_aabb(origins.detach(), directions.detach(), aabb, opts.min_near)
    march_args = {
        "max_steps": opts.max_steps,
        "dt_gamma": opts.dt_gamma,
        "perturb": perturb,
        "generator": generator,
        "chunk": opts.march_chunk,
    }
    if differentiable:
        with prof("march"):
            samples = march_rays(
                origins.detach(), directions.detach(), nears, fars, grid, **march_args
            )
        out = _render_all(origins, directions, samples, grid.bound, radiance_fn, opts, prof)
        out["num_samples"] = samples.counts()
    else:
        with torch.no_grad():
            with prof("march"):
                marched = march_rays_padded(origins, directions, nears, fars, grid, **march_args)
            out = _render_rounds(origins, directions, *marched, grid.bound, radiance_fn, opts, prof)
    with prof("composite"):
        out["rgb"] = composite_background(out["rgb"], out["opacity"], background)
    return out


def _render_all(
    origins: torch.Tensor,
    directions: torch.Tensor,
    samples: RaySamples,
    bound: float,
    radiance_fn: RadianceFn,
    opts: RenderConfig,
    prof: _Profile,
) -> dict[str, Any]:
    n = samples.n_rays
    with prof("field"):
        xyz = samples.positions(origins, directions, bound)
        sigma, rgb, extras = _call_field(
            radiance_fn, xyz, directions.index_select(0, samples.ray_indices)
        )
    with prof("composite"):
        # The marcher's ranks and cap give the padded layout directly: no
        # recount of samples per ray and no device sync.
        weights, _, _ = render_weight_from_density(
            samples.t_starts, samples.t_ends, sigma, samples.ray_indices, n,
            opts.min_transmittance, ranks=samples.steps, width=samples.max_steps,
        )
        out: dict[str, Any] = {
            "rgb": accumulate_along_rays(weights, rgb, samples.ray_indices, n),
            "opacity": accumulate_along_rays(weights, None, samples.ray_indices, n),
            "depth": accumulate_along_rays(weights, samples.t_starts, samples.ray_indices, n),
            "weights": weights,
            "samples": samples,
        }
        for key, value in extras.items():
            out[key] = accumulate_along_rays(weights, value, samples.ray_indices, n)
    return out


def _render_rounds(
    origins: torch.Tensor,
    directions: torch.Tensor,
    ray_ids: torch.Tensor,
    t_pad: torch.Tensor,
    dt_pad: torch.Tensor,
    bound: float,
    radiance_fn: RadianceFn,
    opts: RenderConfig,
    prof: _Profile,
) -> dict[str, Any]:
    """Inference compositing over the padded samples ``t_pad [R, S]`` of rays ``ray_ids [R]``."""
    n = origins.shape[0]
    device, dtype = origins.device, origins.dtype
    valid = ~torch.isnan(t_pad)
    num_samples = torch.zeros(n, dtype=torch.int64, device=device)
    num_samples[ray_ids] = valid.sum(dim=1)
    out: dict[str, Any] = {
        "rgb": torch.zeros(n, 3, device=device, dtype=dtype),
        "opacity": torch.zeros(n, device=device, dtype=dtype),
        "depth": torch.zeros(n, device=device, dtype=dtype),
        "num_samples": num_samples,
    }
    num_rows, width = t_pad.shape
    if num_rows == 0:
        return out
    trans = torch.ones(num_rows, device=device, dtype=dtype)
    acc: dict[str, torch.Tensor] = {
        "rgb": torch.zeros(num_rows, 3, device=device, dtype=dtype),
        "opacity": torch.zeros(num_rows, device=device, dtype=dtype),
        "depth": torch.zeros(num_rows, device=device, dtype=dtype),
    }
    alive = torch.arange(num_rows, device=device)
    step = opts.steps_per_round
    # index_select and flat indices throughout: several times faster on CPU
    # than advanced indexing.
    for first in range(0, width, step):
        with prof("composite"):
            last = min(first + step, width)
            cols = last - first
            going = (trans.index_select(0, alive) >= opts.min_transmittance) & valid[
                :, first
            ].index_select(0, alive)
            alive = alive.index_select(0, going.nonzero().squeeze(1))
            if alive.numel() == 0:
                break
            t_block = t_pad[:, first:last].index_select(0, alive)
            flat = (~torch.isnan(t_block)).view(-1).nonzero().squeeze(1)
            rows = alive.index_select(0, torch.div(flat, cols, rounding_mode="floor"))
            t = t_block.view(-1).index_select(0, flat)
            ray = ray_ids.index_select(0, rows)
        with prof("field"):
            d = directions.index_select(0, ray)
            xyz = torch.addcmul(origins.index_select(0, ray), t[:, None], d).clamp(-bound, bound)
            sigma, rgb, extras = _call_field(radiance_fn, xyz, d)
        with prof("composite"):
            delta = dt_pad[:, first:last].index_select(0, alive).view(-1).index_select(0, flat)
            tau = torch.zeros(alive.numel() * cols, device=device, dtype=dtype)
            tau = tau.index_copy_(0, flat, sigma.to(dtype) * delta).view(-1, cols)
            w, before, _ = composite_padded(tau, opts.min_transmittance, trans.index_select(0, alive))
            w = w.view(-1).index_select(0, flat)
            accumulate_along_rays(w, rgb, rows, num_rows, out=acc["rgb"])
            accumulate_along_rays(w, None, rows, num_rows, out=acc["opacity"])
            accumulate_along_rays(w, t, rows, num_rows, out=acc["depth"])
            for key, value in extras.items():
                if key not in acc:
                    acc[key] = torch.zeros((num_rows, *value.shape[1:]), device=device, dtype=dtype)
                accumulate_along_rays(w, value, rows, num_rows, out=acc[key])
            trans.index_copy_(0, alive, before[:, -1] * torch.exp(-tau[:, -1]))
    with prof("composite"):
        for key, value in acc.items():
            full = out.get(key)
            if full is None:
                full = torch.zeros((n,) + tuple(value.shape[1:]), device=device, dtype=dtype)
                out[key] = full
            full[ray_ids] = value
    return out


def render_image(
    pose: torch.Tensor,
    intrinsics: Sequence[float],
    height: int,
    width: int,
    grid: OccupancyGrid,
    radiance_fn: RadianceFn,
    options: RenderConfig | None = None,
    background: torch.Tensor | float | None = None,
    max_rays: int = 1 << 18,
    profile: dict[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Render a whole frame without gradients.

    Args:
        pose: ``[4, 4]`` camera-to-world in normalised space.
        intrinsics: ``(fx, fy, cx, cy)``.
        background: ``[H, W, 3]`` image, ``[3]`` or a float.
        max_rays: rays per batch (memory bound).
        profile: as in :func:`render_rays`, plus ``rays``.

    Returns:
        ``rgb [H, W, 3]``, ``opacity [H, W]``, ``depth [H, W]``.
    """
    prof = _Profile(profile, torch.as_tensor(pose).device)
    with torch.no_grad():
        with prof("rays"):
            rays = get_rays(pose, intrinsics, height, width)
        if torch.is_tensor(background) and background.dim() == 3:
            if tuple(background.shape) != (height, width, 3):
                raise ValueError(
                    f"background image must be [{height}, {width}, 3], got {tuple(background.shape)}"
                )
            background = background.reshape(-1, 3).to(rays.origins)
        parts: dict[str, list] = {"rgb": [], "opacity": [], "depth": []}
        for start in range(0, len(rays), max_rays):
            sl = slice(start, start + max_rays)
            bg = (
                background[sl]
                if torch.is_tensor(background) and background.dim() == 2
                else background
            )
            out = render_rays(
                rays.origins[sl],
                rays.directions[sl],
                grid,
                radiance_fn,
                options=options,
                background=bg,
                differentiable=False,
                profile=profile,
            )
            for key, chunks in parts.items():
                chunks.append(out[key])
    return {
        "rgb": torch.cat(parts["rgb"]).view(height, width, 3),
        "opacity": torch.cat(parts["opacity"]).view(height, width),
        "depth": torch.cat(parts["depth"]).view(height, width),
    }
