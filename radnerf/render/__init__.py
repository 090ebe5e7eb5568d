"""Rays, the maximum occupancy grid, ray marching and volume rendering.

Data flow for one batch of rays::

    pose, intrinsics --get_rays--> origins, directions [N, 3]
        --near_far_from_aabb--> near, far [N]            (the head's box)
        --march_rays(grid)--> RaySamples (packed [M])     (<= max_steps per ray, occupied cells)
        --radiance_fn--> sigma [M], rgb [M, 3]            (the model, audio bound in)
        --render_weight_from_density / accumulate_along_rays--> rgb, opacity, depth [N]
        --composite_background--> pixels

:func:`render_rays` runs the whole chain; the pieces are plain functions over
flat tensors so the trainer and tests can call them one by one.

How a head trainer uses it (RAD-NeRF's schedule)::

    grid = OccupancyGrid.from_config(cfg.render, cfg.model.bound)   # a submodule: saved in checkpoints
    grid.mark_unseen(train_poses, intrinsics)                       # once, before training
    # every 16 steps, never during lip fine-tuning:
    grid.update(lambda xyz, cond: model.density(xyz, cond), sample_condition, decay=0.95)
    rays = get_rays(pose, intrinsics, H, W, pixels=sample_pixels(H, W, num_rays))
    out = render_rays(rays.origins, rays.directions, grid,
                      lambda xyz, dirs: model(xyz, dirs, cond),     # -> sigma, rgb[, extras]
                      options=cfg.render,
                      background=bg_image.view(-1, 3)[rays.pixels], perturb=True)
    loss = mse(out["rgb"], gt.view(-1, 3)[rays.pixels])

Lip fine-tuning draws ``sample_patches`` (or ``rect_pixels`` around the lips)
instead of ``sample_pixels``; inference calls :func:`render_image` under
``torch.no_grad()``, which takes the early-terminating path.
"""

from radnerf.render.marching import RaySamples, march_rays, step_bounds, step_size
from radnerf.render.occupancy import OccupancyGrid, from_morton, morton3d, to_morton
from radnerf.render.rays import (
    Rays,
    get_rays,
    head_aabb,
    near_far_from_aabb,
    nerf_to_ngp_pose,
    ngp_to_nerf_pose,
    rect_pixels,
    sample_patches,
    sample_pixels,
)
from radnerf.render.renderer import (
    render_image,
    render_rays,
)
from radnerf.render.volume import (
    accumulate_along_rays,
    composite_background,
    composite_padded,
    exclusive_sum_along_rays,
    render_transmittance_from_density,
    render_weight_from_density,
)

__all__ = [
    "OccupancyGrid",
    "RaySamples",
    "Rays",
    "accumulate_along_rays",
    "composite_background",
    "composite_padded",
    "exclusive_sum_along_rays",
    "from_morton",
    "get_rays",
    "head_aabb",
    "march_rays",
    "morton3d",
    "near_far_from_aabb",
    "nerf_to_ngp_pose",
    "ngp_to_nerf_pose",
    "rect_pixels",
    "render_image",
    "render_rays",
    "render_transmittance_from_density",
    "render_weight_from_density",
    "sample_patches",
    "sample_pixels",
    "step_bounds",
    "step_size",
    "to_morton",
]
