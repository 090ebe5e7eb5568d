"""Camera rays in RAD-NeRF's normalised space, and where they meet the head's box.

Conventions (those of RAD-NeRF's ``nerf/provider.py`` and ``nerf/utils.py``):

* ``transforms_*.json`` holds camera-to-world matrices in the NeRF / OpenGL
  convention: the camera looks down its -z axis, +y is up.
* :func:`nerf_to_ngp_pose` turns one into the space the network and the
  occupancy grid live in: the axes are permuted (x, y, z) <- (y, z, x), the
  camera's y and z columns are negated (so the camera now looks down +z with +y
  pointing down the image, the OpenCV convention) and the camera position is
  multiplied by ``scale`` (RAD-NeRF default 4) and shifted by ``offset``, which
  brings the head into the box ``[-bound, bound]^3``.
* :func:`get_rays` shoots rays through pixel centres (``+0.5``) in that space:
  camera direction ``((u - cx) / fx, (v - cy) / fy, 1)``, normalised to unit
  length, so ``t`` along a ray is a distance.
* The head's box is ``[-b, -b/2, -b] .. [b, b/2, b]`` (RAD-NeRF's ``aabb_train``:
  half height in y), ``b`` being ``ModelConfig.bound``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from radnerf.errors import InputError

Intrinsics = Sequence[float]
"""``(fx, fy, cx, cy)`` in pixels."""


def nerf_to_ngp_pose(
    pose: torch.Tensor, scale: float = 4.0, offset: Sequence[float] = (0.0, 0.0, 0.0)
) -> torch.Tensor:
    """A NeRF camera-to-world matrix in RAD-NeRF's normalised space.

    Args:
        pose: ``[..., 4, 4]`` camera-to-world, camera looking down -z, y up.
        scale: multiplies the camera position (RAD-NeRF's ``--scale``, default 4).
        offset: added to the scaled camera position (RAD-NeRF's ``--offset``).

    Returns:
        ``[..., 4, 4]`` camera-to-world, camera looking down +z, y down the image.
    """
    pose = torch.as_tensor(pose)
    off = torch.as_tensor(offset, dtype=pose.dtype, device=pose.device)
    # Rows are cycled (the tracker's x becomes the grid's z, as instant-ngp's
    # nerf_loader does); columns 1 and 2 flip from OpenGL to OpenCV cameras.
    rot = pose[..., [1, 2, 0], :3] * torch.tensor(
        [1.0, -1.0, -1.0], dtype=pose.dtype, device=pose.device
    )
    trans = pose[..., [1, 2, 0], 3] * scale + off
    out = torch.zeros_like(pose)
    out[..., :3, :3] = rot
    out[..., :3, 3] = trans
    out[..., 3, 3] = 1.0
    return out


def ngp_to_nerf_pose(
    pose: torch.Tensor, scale: float = 4.0, offset: Sequence[float] = (0.0, 0.0, 0.0)
) -> torch.Tensor:
    """Inverse of :func:`nerf_to_ngp_pose` (same arguments): ``[..., 4, 4] -> [..., 4, 4]``."""
    pose = torch.as_tensor(pose)
    off = torch.as_tensor(offset, dtype=pose.dtype, device=pose.device)
    rot = pose[..., [2, 0, 1], :3] * torch.tensor(
        [1.0, -1.0, -1.0], dtype=pose.dtype, device=pose.device
    )
    trans = (pose[..., :3, 3] - off)[..., [2, 0, 1]] / scale
    out = torch.zeros_like(pose)
    out[..., :3, :3] = rot
    out[..., :3, 3] = trans
    out[..., 3, 3] = 1.0
    return out


@dataclass
class Rays:
    """A batch of rays and the pixels they go through.

    Attributes:
        origins: ``[N, 3]`` ray origins (the camera centre).
        directions: ``[N, 3]`` unit directions.
        pixels: ``[N]`` int64 flat pixel index ``row * W + col`` into the ``H x W`` image.
    """

    origins: torch.Tensor
    directions: torch.Tensor
    pixels: torch.Tensor

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


_CAMERA_HINT = "check the camera in transforms_*.json (`radnerf track` writes it; re-run it with overwrite=true)"


def check_camera(
    pose: torch.Tensor, intrinsics: Intrinsics, height: int = 1, width: int = 1, batch: bool = False
) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` as floats once the camera is usable, else an :class:`InputError` naming the value.

    A NaN pose or a zero focal would otherwise render a silently black or NaN
    frame (or mark the whole occupancy grid unseen), far from the file that
    holds the bad value.

    Args:
        pose: ``[4, 4]``, or ``[B, 4, 4]`` with ``batch``.
    """
    if pose.dim() != (3 if batch else 2) or tuple(pose.shape[-2:]) != (4, 4):
        want = "a [B, 4, 4] batch of" if batch else "a"
        raise InputError(f"camera poses must be {want} 4x4 matrix, got shape {tuple(pose.shape)}", _CAMERA_HINT)
    if not bool(torch.isfinite(pose).all()):
        raise InputError("a camera pose has NaN or infinite entries", _CAMERA_HINT)
    values = list(intrinsics)
    if len(values) != 4:
        raise InputError(f"intrinsics must be (fx, fy, cx, cy), got {len(values)} values", _CAMERA_HINT)
    fx, fy, cx, cy = (float(v) for v in values)
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or fx <= 0 or fy <= 0:
        raise InputError(
            f"intrinsics need finite values and positive focal lengths, got fx={fx}, fy={fy}, cx={cx}, cy={cy}",
            _CAMERA_HINT,
        )
    if int(height) < 1 or int(width) < 1:
        raise InputError(f"image size must be at least 1x1, got {height}x{width}", _CAMERA_HINT)
    return fx, fy, cx, cy


def get_rays(
    pose: torch.Tensor,
    intrinsics: Intrinsics,
    height: int,
    width: int,
    pixels: torch.Tensor | None = None,
) -> Rays:
    """Rays through pixel centres for a camera in RAD-NeRF's normalised space.

    Args:
        pose: ``[4, 4]`` camera-to-world from :func:`nerf_to_ngp_pose` (looks down +z).
        intrinsics: ``(fx, fy, cx, cy)`` in pixels.
        height, width: image size in pixels.
        pixels: ``[N]`` flat pixel indices ``row * W + col`` (from
            :func:`sample_pixels`, :func:`sample_patches` or :func:`rect_pixels`);
            ``None`` gives the whole frame in row-major order.

    Returns:
        :class:`Rays` with ``origins`` and ``directions`` ``[N, 3]`` in ``pose``'s
        dtype and device.

    Raises:
        InputError: the pose, intrinsics or image size cannot make rays (they
            come from ``transforms_*.json``, so the message says which value).
    """
    pose = torch.as_tensor(pose)
    fx, fy, cx, cy = check_camera(pose, intrinsics, height, width)
    device, dtype = pose.device, pose.dtype
    if pixels is None:
        pixels = torch.arange(height * width, device=device)
    pixels = pixels.to(device=device, dtype=torch.int64)
    u = (pixels % width).to(dtype) + 0.5
    v = torch.div(pixels, width, rounding_mode="floor").to(dtype) + 0.5
    cam = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)], dim=-1)
    cam = cam / torch.linalg.norm(cam, dim=-1, keepdim=True)
    directions = cam @ pose[:3, :3].T
    origins = pose[:3, 3].expand_as(directions)
    return Rays(origins=origins, directions=directions, pixels=pixels)


def sample_pixels(
    height: int,
    width: int,
    num: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``[num]`` flat pixel indices drawn uniformly with replacement (RAD-NeRF's training rays)."""
    return torch.randint(0, height * width, (num,), generator=generator, device=device)


def sample_patches(
    height: int,
    width: int,
    patch_size: int,
    num_patches: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Flat pixel indices of random square patches (the paper's lip / LPIPS patches).

    Returns:
        ``[num_patches * patch_size ** 2]`` int64, patch after patch, each in
        row-major order, so ``.view(num_patches, patch_size, patch_size)`` of any
        per-ray output is an image patch.
    """
    if patch_size > min(height, width):
        raise ValueError(f"patch_size {patch_size} larger than the {height}x{width} image")
    # RAD-NeRF draws the top-left corner in [0, H - p) (exclusive), so the last
    # row and column are never a corner; kept for identical sampling statistics.
    top = torch.randint(
        0, max(height - patch_size, 1), (num_patches,), generator=generator, device=device
    )
    left = torch.randint(
        0, max(width - patch_size, 1), (num_patches,), generator=generator, device=device
    )
    off = torch.arange(patch_size, device=device)
    rows = top[:, None, None] + off[None, :, None]
    cols = left[:, None, None] + off[None, None, :]
    return (rows * width + cols).reshape(-1)


def rect_pixels(
    height: int, width: int, rect: Sequence[int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Flat pixel indices of every pixel in a rectangle, row-major.

    Args:
        rect: ``(row_min, row_max, col_min, col_max)``, max exclusive (RAD-NeRF's
            ``lips_rect`` order ``xmin, xmax, ymin, ymax`` where x is the row).

    Returns:
        ``[(row_max - row_min) * (col_max - col_min)]`` int64.
    """
    r0, r1, c0, c1 = (int(v) for v in rect)
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, height), min(c1, width)
    if r1 <= r0 or c1 <= c0:
        raise ValueError(f"empty rectangle {tuple(rect)} in a {height}x{width} image")
    rows = torch.arange(r0, r1, device=device)
    cols = torch.arange(c0, c1, device=device)
    return (rows[:, None] * width + cols[None, :]).reshape(-1)


def head_aabb(bound: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """RAD-NeRF's head box ``[xmin, ymin, zmin, xmax, ymax, zmax]`` = ``[-b, -b/2, -b, b, b/2, b]``: ``[6]``."""
    b = float(bound)
    return torch.tensor([-b, -b / 2, -b, b, b / 2, b], device=device)


def slab_distances(
    origins: torch.Tensor, directions: torch.Tensor, box: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N]`` entry and exit distances of rays ``[N, 3]`` through ``box`` ``[6]`` (entry > exit when missed)."""
    # Zero components divide to +-inf, which the min/max below handle as the
    # slab method wants (NaN only when the origin sits exactly on a face).
    inv = 1.0 / directions
    t0 = (box[:3] - origins) * inv
    t1 = (box[3:] - origins) * inv
    tmin = torch.minimum(t0, t1).nan_to_num(nan=-torch.inf).amax(dim=-1)
    tmax = torch.maximum(t0, t1).nan_to_num(nan=torch.inf).amin(dim=-1)
    return tmin, tmax


def near_far_from_aabb(
    origins: torch.Tensor, directions: torch.Tensor, aabb: torch.Tensor, min_near: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each ray enters and leaves an axis-aligned box (slab method).

    Args:
        origins, directions: ``[N, 3]``.
        aabb: ``[6]`` ``(xmin, ymin, zmin, xmax, ymax, zmax)``.
        min_near: the entry distance is at least this (a camera inside the box
            starts marching just in front of itself, as RAD-NeRF's ``min_near``).

    Returns:
        ``near, far``: ``[N]`` each. A ray that misses the box gets
        ``near = far = inf``; a ray whose box lies behind ``min_near`` gets
        ``far <= near``. Either way it yields no samples.
    """
    aabb = aabb.to(origins)
    with torch.no_grad():
        tmin, tmax = slab_distances(origins, directions, aabb)
        miss = tmin > tmax
        near = tmin.clamp(min=min_near)
        near = torch.where(miss, torch.full_like(near, torch.inf), near)
        far = torch.where(miss, torch.full_like(tmax, torch.inf), tmax)
    return near, far
