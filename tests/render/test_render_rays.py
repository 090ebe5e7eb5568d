"""Rays from poses and intrinsics, pixel sampling, and the head's box."""

from __future__ import annotations

import math

import pytest
import torch

from radnerf.errors import InputError
from radnerf.render import (
    get_rays,
    head_aabb,
    near_far_from_aabb,
    nerf_to_ngp_pose,
    ngp_to_nerf_pose,
    rect_pixels,
    sample_patches,
    sample_pixels,
)


def _nerf_pose() -> torch.Tensor:
    """A NeRF camera-to-world: rotated 90 degrees about y, at (1, 2, 3)."""
    return torch.tensor(
        [
            [0.0, 0.0, 1.0, 1.0],
            [0.0, 1.0, 0.0, 2.0],
            [-1.0, 0.0, 0.0, 3.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def test_nerf_to_ngp_pose_golden():
    # Worked by hand from RAD-NeRF's nerf_matrix_to_ngp: rows (1, 2, 0), columns
    # 1 and 2 negated, translation * scale + offset.
    got = nerf_to_ngp_pose(_nerf_pose(), scale=4.0, offset=(0.5, 0.0, -1.0))
    expected = torch.tensor(
        [
            [0.0, -1.0, 0.0, 8.5],
            [-1.0, 0.0, 0.0, 12.0],
            [0.0, 0.0, -1.0, 3.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    torch.testing.assert_close(got, expected)


def test_ngp_to_nerf_inverts_and_batches():
    poses = torch.stack([_nerf_pose(), torch.eye(4)])
    back = ngp_to_nerf_pose(nerf_to_ngp_pose(poses, 3.0, (1, 2, 3)), 3.0, (1, 2, 3))
    torch.testing.assert_close(back, poses)


def test_nerf_camera_forward_is_ngp_plus_z():
    # A NeRF camera looks down its -z column; after conversion the ray through
    # the principal point must point the same way, with axes permuted.
    nerf = _nerf_pose()
    ngp = nerf_to_ngp_pose(nerf, scale=1.0)
    rays = get_rays(ngp, (10.0, 10.0, 0.5, 0.5), 1, 1)
    forward_nerf = -nerf[:3, 2]
    torch.testing.assert_close(rays.directions[0], forward_nerf[[1, 2, 0]])


def test_get_rays_golden_numbers():
    pose = torch.eye(4)
    pose[:3, 3] = torch.tensor([0.1, -0.2, -3.0])
    rays = get_rays(pose, (100.0, 120.0, 2.0, 1.5), height=3, width=4)
    assert rays.origins.shape == (12, 3) and rays.directions.shape == (12, 3)
    # Pixel (row 0, col 0): centre (0.5, 0.5) -> (-0.015, -0.00833.., 1) normalised.
    d = torch.tensor([(0.5 - 2.0) / 100.0, (0.5 - 1.5) / 120.0, 1.0])
    torch.testing.assert_close(rays.directions[0], d / d.norm())
    # Pixel (row 2, col 3) is index 11.
    d = torch.tensor([(3.5 - 2.0) / 100.0, (2.5 - 1.5) / 120.0, 1.0])
    torch.testing.assert_close(rays.directions[11], d / d.norm())
    torch.testing.assert_close(rays.origins[5], torch.tensor([0.1, -0.2, -3.0]))
    torch.testing.assert_close(rays.directions.norm(dim=-1), torch.ones(12))
    assert torch.equal(rays.pixels, torch.arange(12))


def test_get_rays_rotated_camera_projects_back():
    # A point on the ray through pixel (u, v) projects back onto (u, v).
    angle = 0.3
    rot = torch.tensor(
        [
            [math.cos(angle), 0.0, math.sin(angle)],
            [0.0, 1.0, 0.0],
            [-math.sin(angle), 0.0, math.cos(angle)],
        ]
    )
    pose = torch.eye(4)
    pose[:3, :3] = rot
    pose[:3, 3] = torch.tensor([0.3, 0.1, -2.0])
    fx, fy, cx, cy = 50.0, 60.0, 16.0, 12.0
    pixels = torch.tensor([0, 37, 500, 767])
    rays = get_rays(pose, (fx, fy, cx, cy), height=24, width=32, pixels=pixels)
    points = rays.origins + 2.5 * rays.directions
    cam = (points - pose[:3, 3]) @ rot
    u = fx * cam[:, 0] / cam[:, 2] + cx
    v = fy * cam[:, 1] / cam[:, 2] + cy
    torch.testing.assert_close(u, (pixels % 32).float() + 0.5)
    torch.testing.assert_close(v, (pixels // 32).float() + 0.5)


def test_sample_pixels_in_range_and_seeded():
    a = sample_pixels(10, 20, 1000, generator=torch.Generator().manual_seed(1))
    b = sample_pixels(10, 20, 1000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() < 200 and a.unique().numel() > 150


def test_sample_patches_are_contiguous_squares():
    pix = sample_patches(
        32, 40, patch_size=8, num_patches=3, generator=torch.Generator().manual_seed(0)
    )
    assert pix.shape == (3 * 64,)
    for patch in pix.view(3, 8, 8):
        rows, cols = patch // 40, patch % 40
        assert torch.equal(rows - rows[0, 0], torch.arange(8)[:, None].expand(8, 8))
        assert torch.equal(cols - cols[0, 0], torch.arange(8)[None, :].expand(8, 8))
        assert rows.max() < 32 and cols.max() < 40


def test_rect_pixels_row_major():
    pix = rect_pixels(10, 20, (2, 4, 5, 8))
    assert pix.tolist() == [45, 46, 47, 65, 66, 67]
    with pytest.raises(ValueError):
        rect_pixels(10, 20, (4, 4, 0, 5))


def test_head_aabb_is_half_height():
    assert head_aabb(2.0).tolist() == [-2.0, -1.0, -2.0, 2.0, 1.0, 2.0]


def test_near_far_against_box():
    aabb = head_aabb(1.0)
    origins = torch.tensor(
        [
            [0.0, 0.0, -3.0],  # straight through along +z
            [0.0, 0.0, -3.0],  # along +y from below the camera: misses
            [0.0, 0.0, 0.0],  # inside the box
            [0.0, 0.0, 3.0],  # box behind the camera
            [-3.0, 0.0, -3.0],  # diagonal in xz
        ]
    )
    s = 1.0 / math.sqrt(2.0)
    dirs = torch.tensor(
        [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [s, 0.0, s]]
    )
    near, far = near_far_from_aabb(origins, dirs, aabb, min_near=0.05)
    torch.testing.assert_close(near[0], torch.tensor(2.0))
    torch.testing.assert_close(far[0], torch.tensor(4.0))
    assert torch.isinf(near[1]) and torch.isinf(far[1])
    torch.testing.assert_close(near[2], torch.tensor(0.05))  # min_near
    torch.testing.assert_close(far[2], torch.tensor(0.5))  # y half height
    assert far[3] <= near[3]  # nothing to march
    torch.testing.assert_close(near[4], torch.tensor(2.0 * math.sqrt(2.0)))
    torch.testing.assert_close(far[4], torch.tensor(4.0 * math.sqrt(2.0)))


@pytest.mark.parametrize(
    ("pose", "intrinsics", "size", "match"),
    [
        (torch.eye(4)[:3], (10.0, 10.0, 2.0, 2.0), (4, 4), "4x4"),
        (torch.full((4, 4), math.nan), (10.0, 10.0, 2.0, 2.0), (4, 4), "NaN"),
        (torch.eye(4), (10.0, 10.0, 2.0), (4, 4), "fx, fy, cx, cy"),
        (torch.eye(4), (0.0, 10.0, 2.0, 2.0), (4, 4), "positive focal"),
        (torch.eye(4), (10.0, math.inf, 2.0, 2.0), (4, 4), "positive focal"),
        (torch.eye(4), (10.0, 10.0, math.nan, 2.0), (4, 4), "finite"),
        (torch.eye(4), (10.0, 10.0, 2.0, 2.0), (0, 4), "at least 1x1"),
    ],
)
def test_get_rays_refuses_unusable_camera(pose, intrinsics, size, match):
    # A tracked camera with NaNs or a zero focal would render a black or NaN
    # frame far from the file at fault; the error names the value and the file.
    with pytest.raises(InputError, match=match) as info:
        get_rays(pose, intrinsics, *size)
    assert "transforms_" in str(info.value)
