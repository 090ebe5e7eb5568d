"""Synthetic talking-head landmark sequences with known poses, for tests and benchmarks.

A person's 3D shape (the generic shape deformed by a smooth random field and
scaled), a head that turns, nods and tilts with the amplitudes asked for,
jitters in position and distance, opens and closes its mouth (lips and chin
rotate about a jaw axis), seen by a pinhole camera, with Gaussian pixel noise
and randomly dropped frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radnerf.geometry import rotation_from_euler_deg, rotation_matrix
from radnerf.preprocess import face_shape

# Points the jaw carries when the mouth opens: chin and lower jaw, lower lips.
_JAW_MOVING = tuple(range(4, 13)) + (55, 56, 57, 58, 59, 65, 66, 67)
# Lip corners and the lower part of the upper lip follow halfway.
_JAW_HALF = (48, 54, 60, 64)


@dataclass
class SyntheticClip:
    """A generated sequence. N frames, K = 68 points."""

    lms: np.ndarray
    """``[N, 68, 2]`` noisy landmarks, pixels (dropped frames hold NaN)."""
    valid: np.ndarray
    """``[N]`` bool, frames not dropped."""
    R: np.ndarray
    """``[N, 3, 3]`` true head-to-camera rotations (OpenGL camera)."""
    t: np.ndarray
    """``[N, 3]`` true translations, metres."""
    shape: np.ndarray
    """``[68, 3]`` the person's true rigid shape, metres."""
    focal: float
    """True focal, pixels."""
    width: int
    height: int


def _motion(rng: np.random.Generator, n: int, amplitude: float, fps: float = 25.0) -> np.ndarray:
    """``[n]`` smooth random curve spanning about ``[-amplitude, amplitude]``."""
    t = np.arange(n) / fps
    x = np.zeros(n)
    for _ in range(4):
        freq = rng.uniform(0.05, 0.5)
        x += rng.normal() * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    x -= x.mean()
    return amplitude * x / max(np.abs(x).max(), 1e-9)


def make_clip(
    frames: int = 500,
    focal: float = 1200.0,
    size: int = 512,
    yaw: float = 25.0,
    pitch: float = 15.0,
    roll: float = 10.0,
    yaw_offset: float = 0.0,
    pitch_offset: float = 0.0,
    noise_px: float = 1.0,
    drop: float = 0.03,
    mouth: bool = True,
    face_px: float = 200.0,
    person_scale: float = 0.08,
    person_deform: float = 0.004,
    shape: np.ndarray | None = None,
    seed: int = 0,
) -> SyntheticClip:
    """Generate a clip; see the module docstring.

    Args:
        frames: number of frames.
        focal: true focal, pixels.
        size: image side, pixels (square, principal point in the centre).
        yaw, pitch, roll: amplitude of each rotation, degrees (:mod:`radnerf.geometry`'s Euler angles).
        yaw_offset, pitch_offset: constant yaw and pitch the head holds, degrees (0: frontal).
        noise_px: standard deviation of the landmark noise, pixels.
        drop: share of frames dropped (no landmarks).
        mouth: open and close the mouth.
        face_px: width of the face in the image, pixels (sets the distance).
        person_scale: the person's size differs from the generic face's by up to this factor per axis.
        person_deform: amplitude (metres) of the smooth deformation that makes the person's face.
        shape: ``[68, 3]`` use this true shape (metres, head frame) instead of a deformed generic one.
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    base = face_shape.MEAN_SHAPE
    # A different person: anisotropic scale and a smooth deformation of a few mm.
    scale = rng.uniform(1 - person_scale, 1 + person_scale, size=3)
    freqs = rng.normal(size=(3, 3)) * 8.0
    phases = rng.uniform(0, 2 * np.pi, size=3)
    if shape is None:
        shape = base * scale + person_deform * np.sin(base @ freqs + phases)
        shape[:, 0] -= shape[:, 0].mean() - base[:, 0].mean()
    shape = np.asarray(shape, float)

    Rh = rotation_from_euler_deg(
        _motion(rng, frames, yaw) + yaw_offset, _motion(rng, frames, pitch) + pitch_offset, _motion(rng, frames, roll)
    )
    width = np.ptp(shape[:, 0])
    depth = focal * width / face_px
    depth = depth * (1 + 0.05 * _motion(rng, frames, 1.0))
    tx = 0.03 * _motion(rng, frames, 1.0) + 0.002 * rng.normal(size=frames)
    ty = 0.02 * _motion(rng, frames, 1.0) + 0.002 * rng.normal(size=frames)
    t = np.stack([tx, ty, -depth], -1)

    pts = np.broadcast_to(shape, (frames, 68, 3)).copy()
    if mouth:
        opening = np.radians(12.0) * np.clip(_motion(rng, frames, 1.0, fps=25.0 / 4), 0, None)
        pivot = shape[[0, 16]].mean(0)  # jaw hinge, near the ears
        for idx, k in ((list(_JAW_MOVING), 1.0), (list(_JAW_HALF), 0.5)):
            Rj = rotation_matrix(np.stack([k * opening, 0 * opening, 0 * opening], -1))
            pts[:, idx] = np.einsum("nij,kj->nki", Rj, shape[idx] - pivot) + pivot
    cam = np.einsum("nij,nkj->nki", Rh, pts) + t[:, None]
    c = size / 2.0
    lms = np.stack([c + focal * cam[..., 0] / -cam[..., 2], c - focal * cam[..., 1] / -cam[..., 2]], -1)
    lms = lms + rng.normal(scale=noise_px, size=lms.shape)
    valid = np.ones(frames, bool)
    n_drop = round(drop * frames)
    if n_drop:
        valid[rng.choice(np.arange(1, frames - 1), n_drop, replace=False)] = False
    lms[~valid] = np.nan
    return SyntheticClip(lms=lms, valid=valid, R=Rh, t=t, shape=shape, focal=focal, width=size, height=size)


def rotation_errors_deg(R_true: np.ndarray, R_est: np.ndarray) -> np.ndarray:
    """``[N]`` angle between estimated and true rotations after removing one constant offset.

    The offset ``Q`` (``R_est ~ R_true Q``: the estimate's head frame is turned
    by a fixed amount) is the rotation nearest the mean of ``R_true^T R_est``.
    """
    M = np.einsum("nji,njk->ik", R_true, R_est)
    U, _, Vt = np.linalg.svd(M)
    Q = U @ np.diag([1, 1, np.linalg.det(U @ Vt)]) @ Vt
    D = np.einsum("nij,jk,nlk->nil", R_true, Q, R_est)
    c = np.clip((np.trace(D, axis1=1, axis2=2) - 1) / 2, -1, 1)
    return np.degrees(np.arccos(c))
