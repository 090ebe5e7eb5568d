"""The torso network: RAD-NeRF's layout and forward pass, its pixel coordinates, the anchors' projection, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from radnerf.models.torso import ANCHOR_POINTS, TorsoModel, project_anchors, torso_coords

TINY = ("preset=cpu_tiny", "model.torso_grid.num_levels=4", "model.torso_grid.log2_hashmap_size=8",
        "model.torso_grid.desired_resolution=32")


def tiny_torso(make_cfg, *overrides: str, frames: int = 5) -> TorsoModel:
    """A tiny torso whose grid holds values of a trained one's size (a fresh one is +-1e-4: nearly no signal)."""
    torch.manual_seed(0)
    model = TorsoModel(make_cfg(*TINY, *overrides).model, frames)
    with torch.no_grad():
        model.torso_encoder.params.uniform_(-0.5, 0.5)
    return model


def a_pose(yaw_deg: float = 20.0, t=(0.1, -0.2, 2.5)) -> torch.Tensor:
    """A camera-to-head pose: turned about y, standing back along +z."""
    a = math.radians(yaw_deg)
    pose = torch.eye(4)
    pose[:3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    pose[:3, 3] = torch.tensor(t)
    return pose


def test_pixel_coordinates_are_radnerfs_row_first_corners_at_one():
    coords = torso_coords(3, 5)
    assert coords.shape == (15, 2)
    assert coords[0].tolist() == [-1, -1] and coords[-1].tolist() == [1, 1]
    assert coords[4].tolist() == [-1, 1]  # end of the first row: the row coordinate comes first
    assert coords[7].tolist() == [0, 0]  # the centre pixel
    assert torch.equal(torso_coords(3, 5, torch.tensor([7, 4])), coords[[7, 4]])


def test_the_anchors_project_as_computed_by_hand():
    """RAD-NeRF's ``anchors @ poses^T.inverse()`` is the pinhole projection ``x/z, y/z`` of ``R^T (a - t)``."""
    pose = a_pose()
    R, t = pose[:3, :3].double().numpy(), pose[:3, 3].double().numpy()
    expected = []
    for a in np.array(ANCHOR_POINTS)[:, :3]:
        x, y, z = R.T @ (a - t)
        expected += [x / z, y / z]
    got = project_anchors(torch.tensor(ANCHOR_POINTS), pose)
    assert got.shape == (1, 6)
    np.testing.assert_allclose(got[0].numpy(), expected, rtol=1e-5)
    # The same anchors seen from a turned head land elsewhere: the pose reaches the network.
    assert not torch.allclose(project_anchors(torch.tensor(ANCHOR_POINTS), a_pose(yaw_deg=-20.0)), got)


def test_shapes_layout_and_ranges_follow_radnerf(make_cfg):
    model = tiny_torso(make_cfg)
    coords = torso_coords(6, 7)
    with torch.no_grad():
        alpha, rgb, dx = model(coords, a_pose(), model.code(2))
    assert alpha.shape == (42, 1) and rgb.shape == (42, 3) and dx.shape == (42, 2)
    for x in (alpha, rgb):
        assert float(x.min()) >= -1e-3 and float(x.max()) <= 1 + 1e-3
    # RAD-NeRF's sizes: frequency encodings of the pixel (8 octaves, 34) and of the anchors (4 octaves, 54)
    # plus the 8-d code into a 3-layer 64-wide deformation net and, after the 2D grid, a 3-layer 32-wide one.
    shared = 34 + 54 + 8
    assert [tuple(layer.weight.shape) for layer in model.torso_deform_net.net] == [(64, shared), (64, 64), (2, 64)]
    grid = model.torso_encoder.output_dim
    assert grid == 4 * 2
    assert [tuple(layer.weight.shape) for layer in model.torso_net.net] == [(32, grid + shared), (32, 32), (4, 32)]
    assert model.individual_codes_torso.shape == (5, 8)
    groups = {g["name"]: g for g in model.param_groups(0.01, 0.001)}
    assert groups["grids"]["lr"] == 0.01 and groups["nets"]["lr"] == groups["codes"]["lr"] == 0.001
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


def test_forward_equals_radnerfs_concatenated_forward_torso(make_cfg):
    """The pose and code enter the MLPs as a one-row constant; the result is RAD-NeRF's ``forward_torso``."""
    model = tiny_torso(make_cfg)
    x, pose, c = torso_coords(5, 4), a_pose(), model.code(1)
    got = model(x, pose, c)

    n = len(x)
    x = x * 0.8
    wrapped = model.anchor_points[None] @ pose[None].permute(0, 2, 1).inverse()
    wrapped = (wrapped[:, :, :2] / wrapped[:, :, 3, None] / wrapped[:, :, 2, None]).view(1, -1)
    h = torch.cat([model.torso_deform_encoder(x), model.anchor_encoder(wrapped).repeat(n, 1), c.repeat(n, 1)], -1)
    dx = model.torso_deform_net(h)
    moved = (x + dx).clamp(-1, 1)
    h = model.torso_net(torch.cat([model.torso_encoder(moved), h], -1))
    expected = (torch.sigmoid(h[:, :1]) * (1 + 2e-3) - 1e-3, torch.sigmoid(h[:, 1:]) * (1 + 2e-3) - 1e-3, dx)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_parameter_group(make_cfg):
    """The grid, both MLPs (the deformation through the grid's input gradient) and the frame's code learn."""
    model = tiny_torso(make_cfg)
    alpha, rgb, _ = model(torso_coords(8, 8), a_pose(), model.code(3))
    (alpha * rgb).square().mean().backward()
    for group in model.param_groups(0.01, 0.001):
        for p in group["params"]:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, group["name"]
    codes = model.individual_codes_torso.grad
    assert float(codes[3].abs().sum()) > 0 and float(codes[[0, 1, 2, 4]].abs().sum()) == 0


@pytest.mark.parametrize("at_test", ["first", "mean"])
def test_unseen_frames_take_the_first_or_the_mean_code(make_cfg, at_test):
    model = tiny_torso(make_cfg, f"model.appearance_at_test={at_test}")
    codes = model.individual_codes_torso
    expected = codes[:1] if at_test == "first" else codes.mean(0, keepdim=True)
    assert torch.equal(model.code(None), expected)
    assert torch.equal(model.code(4), codes[4:5])
