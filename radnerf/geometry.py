"""Rotations and poses, in the one convention every radnerf file uses.

Camera: OpenGL / NeRF, as RAD-NeRF's tracker and ``transforms_*.json``: x to
the image's right, y up, looking down -z. Head frame (the world of the
transforms): x to the image's right for a frontal face, y up (the head's
vertical axis), z out of the face toward the camera. A frontal, upright head
has the identity head-to-camera rotation.

A head pose is ``R`` (head to camera: a head point ``X`` is at ``R X + t`` in
the camera) or, as ``transforms_*.json`` stores it, the camera-to-head matrix
``c2w = [[R^T, -R^T t], [0, 1]]``.

Euler angles (:func:`euler_deg`, :func:`rotation_from_euler_deg`) are
``R = Rz(roll) Rx(pitch) Ry(yaw)``, degrees, right-handed:

- yaw: about the head's own vertical axis (a head turning on its neck reads as
  yaw alone, whatever its pitch); + turns the face toward the image's right;
- pitch: about the image's horizontal axis (turned with the roll); + tips the face
  down (chin toward the chest);
- roll: about the camera's optical axis; + tilts the head counter-clockwise in the image.
"""

from __future__ import annotations

import numpy as np

EULER_CONVENTION = "R = Rz(roll) Rx(pitch) Ry(yaw), head to OpenGL camera"
"""How :func:`euler_deg` reads a rotation, for plot titles and reports."""


def skew(v: np.ndarray) -> np.ndarray:
    """``[..., 3] -> [..., 3, 3]`` cross-product matrices (``skew(v) @ x == cross(v, x)``)."""
    z = np.zeros(v.shape[:-1])
    return np.stack(
        [
            np.stack([z, -v[..., 2], v[..., 1]], -1),
            np.stack([v[..., 2], z, -v[..., 0]], -1),
            np.stack([-v[..., 1], v[..., 0], z], -1),
        ],
        -2,
    )


def rotation_matrix(rvec: np.ndarray) -> np.ndarray:
    """``[N, 3]`` rotation vectors -> ``[N, 3, 3]`` matrices (Rodrigues)."""
    theta = np.linalg.norm(rvec, axis=-1)[..., None, None]
    W = skew(rvec)
    small = theta < 1e-8
    t = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(t) / t)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(t)) / t**2)
    return np.eye(3) + a * W + b * (W @ W)


def rotation_vector(R: np.ndarray) -> np.ndarray:
    """``[N, 3, 3] -> [N, 3]`` (log map; angles below pi)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_rotvec()


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """``[N, 3, 3] -> [N]`` rotation angle in degrees."""
    c = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(c))


def camera_to_world(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``R [N, 3, 3], t [N, 3]`` (camera point ``R X + t``) -> ``[N, 4, 4]`` camera-to-world (head)."""
    N = R.shape[0]
    out = np.tile(np.eye(4), (N, 1, 1))
    Rt = R.transpose(0, 2, 1)
    out[:, :3, :3] = Rt
    out[:, :3, 3] = -np.einsum("nij,nj->ni", Rt, t)
    return out


def euler_deg(R: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]`` head-to-camera rotations -> ``[N, 3]`` (yaw, pitch, roll), degrees.

    ``R = Rz(roll) Rx(pitch) Ry(yaw)`` (see the module docstring for the axes and signs).
    For the matrices of ``transforms_*.json`` use :func:`pose_angles_deg`.
    """
    from scipy.spatial.transform import Rotation

    # Upper case: intrinsic, so "ZXY" gives (roll, pitch, yaw) of R = Rz Rx Ry.
    roll_pitch_yaw = Rotation.from_matrix(R).as_euler("ZXY", degrees=True)
    return roll_pitch_yaw[:, ::-1].copy()


def rotation_from_euler_deg(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """``[N]`` x3 degrees -> ``[N, 3, 3]`` head-to-camera ``Rz(roll) Rx(pitch) Ry(yaw)``; inverts :func:`euler_deg`."""
    y, p, r = (np.radians(np.asarray(a, float)) for a in (yaw, pitch, roll))
    zero = np.zeros_like(y)
    Ry = rotation_matrix(np.stack([zero, y, zero], -1))
    Rx = rotation_matrix(np.stack([p, zero, zero], -1))
    Rz = rotation_matrix(np.stack([zero, zero, r], -1))
    return Rz @ Rx @ Ry


def pose_angles_deg(c2w: np.ndarray) -> np.ndarray:
    """``[N, 4, 4]`` camera-to-head matrices (``transform_matrix`` of transforms json) -> ``[N, 3]``
    (yaw, pitch, roll) of the head as the camera sees it, degrees, as :func:`euler_deg`."""
    c2w = np.asarray(c2w, float)
    return euler_deg(c2w[:, :3, :3].transpose(0, 2, 1))


def radnerf_euler_to_rotation(euler: np.ndarray) -> np.ndarray:
    """``[N, 3]`` radians (RAD-NeRF's ``track_params.pt`` ``euler``) -> ``[N, 3, 3]``, as their ``euler2rot``.

    ``Rx(a) Ry(b) Rz'(g)`` where their ``Rz'`` has the sine signs swapped (a turn
    by ``-g``); kept as they have it, so converted datasets get identical poses.
    """
    euler = np.asarray(euler, float)
    a, b, g = euler[:, 0], euler[:, 1], euler[:, 2]
    one, zero = np.ones_like(a), np.zeros_like(a)
    # Columns exactly as their euler2rot concatenates them.
    rx = np.stack([np.stack([one, zero, zero], 1), np.stack([zero, np.cos(a), np.sin(a)], 1),
                   np.stack([zero, -np.sin(a), np.cos(a)], 1)], 2)
    ry = np.stack([np.stack([np.cos(b), zero, -np.sin(b)], 1), np.stack([zero, one, zero], 1),
                   np.stack([np.sin(b), zero, np.cos(b)], 1)], 2)
    rz = np.stack([np.stack([np.cos(g), -np.sin(g), zero], 1), np.stack([np.sin(g), np.cos(g), zero], 1),
                   np.stack([zero, zero, one], 1)], 2)
    return rx @ ry @ rz
