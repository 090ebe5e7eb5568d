"""Rotations and the one Euler convention: golden numbers, signs a user can see, transforms json."""

from __future__ import annotations

import numpy as np
import pytest

from radnerf import geometry as G

C20, S20 = 0.9396926207859084, 0.3420201433256687  # cos, sin of 20 degrees


def _about(axis: int, deg: float) -> np.ndarray:
    """``[1, 3, 3]``: a right-handed turn by ``deg`` about head axis ``axis`` (0 x, 1 y, 2 z)."""
    rv = np.zeros((1, 3))
    rv[0, axis] = np.radians(deg)
    return G.rotation_matrix(rv)


def test_rotation_matrix_golden():
    np.testing.assert_allclose(_about(1, 20)[0], [[C20, 0, S20], [0, 1, 0], [-S20, 0, C20]], atol=1e-12)
    np.testing.assert_allclose(_about(0, 20)[0], [[1, 0, 0], [0, C20, -S20], [0, S20, C20]], atol=1e-12)
    np.testing.assert_allclose(_about(2, 20)[0], [[C20, -S20, 0], [S20, C20, 0], [0, 0, 1]], atol=1e-12)


@pytest.mark.parametrize("axis,expected", [(1, [20, 0, 0]), (0, [0, 20, 0]), (2, [0, 0, 20])])
def test_pure_turns_read_as_one_angle(axis, expected):
    """A pure yaw of +20 about the head's vertical axis reads yaw=20, pitch=0, roll=0; likewise pitch, roll."""
    R = _about(axis, 20.0)
    np.testing.assert_allclose(G.euler_deg(R)[0], expected, atol=1e-9)
    np.testing.assert_allclose(G.euler_deg(_about(axis, -20.0))[0], -np.array(expected), atol=1e-9)
    # Likewise from the camera-to-head matrix transforms_*.json stores (head 0.6 m in front of the camera).
    c2w = G.camera_to_world(R, np.array([[0.0, 0.0, -0.6]]))
    np.testing.assert_allclose(G.pose_angles_deg(c2w)[0], expected, atol=1e-9)
    # Reading the c2w rotation itself as a head pose flips every sign: the mistake pose_angles_deg avoids.
    np.testing.assert_allclose(G.euler_deg(c2w[:, :3, :3])[0], -np.array(expected), atol=1e-9)


def test_signs_are_what_the_image_shows():
    """yaw +: the face turns to the image's right; pitch +: chin down; roll +: counter-clockwise in the image."""
    out_of_face, right = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    yawed = G.rotation_from_euler_deg([20.0], [0.0], [0.0])[0] @ out_of_face  # OpenGL camera: x right, y up
    pitched = G.rotation_from_euler_deg([0.0], [20.0], [0.0])[0] @ out_of_face
    rolled = G.rotation_from_euler_deg([0.0], [0.0], [20.0])[0] @ right
    np.testing.assert_allclose(yawed, [S20, 0, C20], atol=1e-12)
    np.testing.assert_allclose(pitched, [0, -S20, C20], atol=1e-12)
    np.testing.assert_allclose(rolled, [C20, S20, 0], atol=1e-12)


def test_euler_round_trip_golden():
    R = G.rotation_from_euler_deg([30.0], [-15.0], [10.0])
    # Row 3 by hand: [-sin(yaw) cos(pitch), sin(pitch), cos(yaw) cos(pitch)]; R[0, 1] = -sin(roll) cos(pitch).
    golden = [
        [0.8753402597162172, -0.16773125949652062, 0.4534817022853914],
        [0.02294023205834593, 0.9512512425641977, 0.3075627078713852],
        [-0.4829629131445341, -0.25881904510252074, 0.8365163037378079],
    ]
    np.testing.assert_allclose(R[0], golden, atol=1e-12)
    np.testing.assert_allclose(G.euler_deg(R)[0], [30.0, -15.0, 10.0], atol=1e-9)
    rng = np.random.default_rng(0)
    angles = rng.uniform([-80, -60, -80], [80, 60, 80], (50, 3))
    np.testing.assert_allclose(G.euler_deg(G.rotation_from_euler_deg(*angles.T)), angles, atol=1e-9)


def test_a_tipped_head_turning_on_its_neck_reads_as_yaw_alone():
    """Yaw is about the head's own vertical axis: a head held tipped back 27 degrees that turns
    on its neck keeps pitch -27 and roll 0 (no leak of the turn into the other angles)."""
    turn = np.linspace(-30, 30, 7)
    R = _about(0, -27.0) @ G.rotation_matrix(np.stack([0 * turn, np.radians(turn), 0 * turn], 1))
    np.testing.assert_allclose(G.euler_deg(R), np.stack([turn, np.full(7, -27.0), np.zeros(7)], 1), atol=1e-9)


def test_rotation_round_trip_and_camera_to_world_inverts():
    rng = np.random.default_rng(3)
    rv = rng.normal(size=(20, 3)) * 0.8
    R = G.rotation_matrix(rv)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(G.rotation_vector(R), rv, atol=1e-9)
    np.testing.assert_allclose(G.rotation_angle_deg(R), np.degrees(np.linalg.norm(rv, axis=1)), atol=1e-9)
    t = rng.normal(size=(20, 3))
    c2w = G.camera_to_world(R, t)
    w2c = np.tile(np.eye(4), (20, 1, 1))
    w2c[:, :3, :3], w2c[:, :3, 3] = R, t
    np.testing.assert_allclose(c2w @ w2c, np.broadcast_to(np.eye(4), c2w.shape), atol=1e-12)


def test_skew_is_the_cross_product():
    rng = np.random.default_rng(4)
    v, x = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(np.einsum("nij,nj->ni", G.skew(v), x), np.cross(v, x), atol=1e-12)


def test_radnerf_euler2rot_golden():
    """RAD-NeRF's euler2rot: Rx(a) Ry(b) with their Rz turning by -g (kept as they have it)."""
    R = G.radnerf_euler_to_rotation(np.array([[0.0, 0.0, np.radians(20.0)]]))
    np.testing.assert_allclose(R[0], [[C20, S20, 0], [-S20, C20, 0], [0, 0, 1]], atol=1e-12)
    R = G.radnerf_euler_to_rotation(np.array([[np.radians(20.0), 0.0, 0.0]]))
    np.testing.assert_allclose(R[0], [[1, 0, 0], [0, C20, -S20], [0, S20, C20]], atol=1e-12)
