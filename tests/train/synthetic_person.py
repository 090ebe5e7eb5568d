"""A synthetic person folder rendered by an independent ray caster: an ellipsoid head with a mouth patch.

The images are ray cast here in numpy from the head poses ``R, t`` (a head
point ``X`` is at ``R X + t`` in the OpenGL camera: x right, y up, looking
down -z; pixel ``(u, v)`` has its centre at ``+0.5`` and ``v`` grows down the
image), without radnerf's ray code, and the poses are written to the
transforms as the tracker writes them (``c2w = [[R^T, -R^T t], [0, 1]]``). A
head trained on the folder renders held-out views sharply only if radnerf
reads the transforms, the intrinsics and the pixel grid in that convention.

The head's texture is a function of the surface point in the head frame
(multi-view consistent, high contrast), so a misregistered or blurred head
costs PSNR. A "mouth" patch on the lower front of the face takes a colour
from dark red to bright yellow as a per-frame signal ``s`` in [0, 1] goes from
0 to 1, and the frame's audio windows carry ``s``: a model that reads the
audio can reproduce the mouth, one that does not can only average it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radnerf.formats.regions import COLUMNS, write_regions
from radnerf.media.images import read_rgb, write_rgb

AXES = np.array([0.08, 0.10, 0.07])
"""Semi-axes (m) of the ellipsoid head along the head frame's x (right), y (up), z (out of the face)."""
MOUTH_DARK = np.array([0.35, 0.02, 0.06])
"""Mouth colour at s = 0 (dark red)."""
MOUTH_BRIGHT = np.array([1.0, 0.92, 0.15])
"""Mouth colour at s = 1 (bright yellow)."""
AUDIO_CHANNELS = 8
SIGNAL_CHANNELS = 4
"""The first channels of every audio window hold the frame's signal; the others are noise."""
EYE_AREA = 0.3


@dataclass
class SyntheticPerson:
    """What :func:`make_synthetic_person` wrote, and the truth behind it."""

    root: Path
    rotations: np.ndarray
    """``[N, 3, 3]`` true head-to-camera rotations."""
    translations: np.ndarray
    """``[N, 3]`` true head positions in the camera (m)."""
    c2w: np.ndarray
    """``[N, 4, 4]`` the camera-to-head matrices written to the transforms (wrong by ``pose_error_deg``)."""
    signal: np.ndarray
    """``[N]`` the signal of each frame (the constant mouth value when none was given)."""
    mouth: np.ndarray
    """``[N, H, W]`` bool: pixels showing the mouth patch."""
    images: np.ndarray
    """``[N, H, W, 3]`` uint8 the frames as rendered (before JPEG)."""
    n_train: int


def euler_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """``[N]`` x3 degrees -> ``[N, 3, 3]`` head-to-camera ``Rz(roll) Rx(pitch) Ry(yaw)`` (the tracker's order)."""
    y, p, r = (np.radians(np.asarray(a, float)) for a in (yaw, pitch, roll))
    one, zero = np.ones_like(y), np.zeros_like(y)

    def mat(rows):
        return np.stack([np.stack(row, -1) for row in rows], -2)

    Ry = mat([[np.cos(y), zero, np.sin(y)], [zero, one, zero], [-np.sin(y), zero, np.cos(y)]])
    Rx = mat([[one, zero, zero], [zero, np.cos(p), -np.sin(p)], [zero, np.sin(p), np.cos(p)]])
    Rz = mat([[np.cos(r), -np.sin(r), zero], [np.sin(r), np.cos(r), zero], [zero, zero, one]])
    return Rz @ Rx @ Ry


def axis_angle(axes: np.ndarray, degrees: float) -> np.ndarray:
    """``[N, 3]`` unit axes -> ``[N, 3, 3]`` rotations by ``degrees`` about them (Rodrigues)."""
    a = math.radians(degrees)
    k = axes / np.linalg.norm(axes, axis=-1, keepdims=True)
    K = np.zeros((len(k), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K = K - K.transpose(0, 2, 1)
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K


def head_poses(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``R [n, 3, 3], t [n, 3]``: yaw +-20, pitch +-10, roll +-5 degrees varying smoothly, 0.5-0.6 m away."""
    k = np.arange(n) / n
    yaw = 20 * np.sin(2 * np.pi * 2.3 * k + 0.4)
    pitch = 10 * np.sin(2 * np.pi * 1.7 * k + 1.3)
    roll = 5 * np.sin(2 * np.pi * 3.1 * k + 2.2)
    t = np.stack([0.005 * np.sin(2 * np.pi * 2.9 * k), 0.005 * np.cos(2 * np.pi * 2.1 * k),
                  -0.55 - 0.04 * np.sin(2 * np.pi * 1.3 * k + 0.7)], -1)
    t[:, :2] += rng.uniform(-0.002, 0.002, (n, 2))
    return euler_rotation(yaw, pitch, roll), t


def camera_to_head(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``[N, 4, 4]`` ``[[R^T, -R^T t], [0, 1]]``, checked against the tracker's own function."""
    from radnerf.geometry import camera_to_world

    out = np.tile(np.eye(4), (len(R), 1, 1))
    out[:, :3, :3] = R.transpose(0, 2, 1)
    out[:, :3, 3] = -np.einsum("nji,nj->ni", R, t)
    np.testing.assert_allclose(out, camera_to_world(R, t), atol=1e-12)
    return out


def head_colour(p: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Surface points ``p [M, 3]`` (head frame, m) -> colours ``[M, 3]`` in [0, 1] and the mouth mask ``[M]``."""
    n = p / AXES
    lon = np.arctan2(n[:, 0], n[:, 2])  # 0 at the front of the face, + toward the head's right (x)
    lat = np.arcsin(np.clip(n[:, 1], -1, 1))
    colour = np.stack([
        0.5 + 0.45 * np.sin(6 * lon),
        0.5 + 0.45 * np.sin(5 * lat + 0.5),
        0.5 + 0.45 * np.sin(4 * lon + 4 * lat + 1.0),
    ], -1)
    mouth = (n[:, 2] > 0.5) & (n[:, 1] > -0.75) & (n[:, 1] < -0.3) & (np.abs(n[:, 0]) < 0.45)
    colour[mouth] = (1 - s) * MOUTH_DARK + s * MOUTH_BRIGHT
    return colour, mouth


def background_image(size: int) -> np.ndarray:
    """``[H, W, 3]`` uint8, a smooth gradient (JPEG keeps it nearly exact)."""
    v, u = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([0.25 + 0.4 * u, 0.35 + 0.3 * v, 0.55 - 0.2 * u * v], -1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def torso_image(size: int) -> np.ndarray:
    """``[H, W, 4]`` uint8 a static torso: shoulders (half an ellipse on the bottom edge, reaching up behind the
    head's chin) in a pattern of stripes a 2D field must learn, opaque inside and clear outside."""
    v, u = (np.mgrid[0:size, 0:size] + 0.5) / size
    inside = ((u - 0.5) / 0.45) ** 2 + ((v - 1.0) / 0.4) ** 2 < 1
    rgb = np.stack([0.7 + 0.25 * np.sin(14 * u), 0.35 + 0.25 * np.cos(11 * v), 0.2 + 0.15 * np.sin(9 * (u + v))], -1)
    out = np.zeros((size, size, 4), np.uint8)
    out[..., :3] = (rgb * 255 + 0.5).astype(np.uint8)
    out[..., 3] = inside * 255
    return out


def ray_cast(R: np.ndarray, t: np.ndarray, focal: float, size: int, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame: ``colour [H, W, 3]``, ``hit [H, W]`` and ``mouth [H, W]`` of the ellipsoid head at pose ``R, t``."""
    c = size / 2.0
    v, u = np.mgrid[0:size, 0:size] + 0.5
    d_cam = np.stack([(u - c) / focal, -(v - c) / focal, -np.ones_like(u)], -1).reshape(-1, 3)
    # Into the head frame: X = R^T (x_cam - t); the camera centre is at -R^T t.
    origin = -R.T @ t
    d = d_cam @ R  # rows: R^T d
    o, dd = origin / AXES, d / AXES
    a = (dd * dd).sum(-1)
    b = 2 * (dd @ o)
    cc = o @ o - 1
    disc = b * b - 4 * a * cc
    hit = disc > 0
    dist = (-b - np.sqrt(np.where(hit, disc, 0))) / (2 * a)
    hit &= dist > 0
    colour = np.zeros((size * size, 3))
    mouth = np.zeros(size * size, bool)
    points = origin + dist[hit, None] * d[hit]
    colour[hit], mouth[hit] = head_colour(points, s)
    return colour.reshape(size, size, 3), hit.reshape(size, size), mouth.reshape(size, size)


def make_synthetic_person(
    root: Path,
    n_train: int = 40,
    n_val: int = 8,
    size: int = 64,
    signal: Sequence[float] | None = None,
    seed: int = 0,
    pose_error_deg: float = 0.0,
    focal_scale: float = 2.0,
    torso: bool = False,
) -> SyntheticPerson:
    """Write a person folder (RAD-NeRF's layout) of ``n_train + n_val`` frames of ``size`` x ``size`` to ``root``.

    Args:
        root: the person's folder (``<paths.artifacts>/<person>``); created.
        signal: ``[n_train + n_val]`` per-frame values in [0, 1] that set the mouth colour and are
            carried by the audio windows; None: a fixed mouth (0.5) and smooth random audio.
        pose_error_deg: each frame's written pose is rotated by this much about a random axis
            (a mis-posed control; the images keep the true poses).
        focal_scale: focal length in units of ``size``; the principal point is the image centre.
        torso: the head stands in front of a static torso (:func:`torso_image`, also written as every
            frame's ``torso_imgs/<i>.png``); False: nothing but the background behind it, clear torso images.
    """
    n = n_train + n_val
    rng = np.random.default_rng(seed)
    s = np.full(n, 0.5) if signal is None else np.asarray(signal, float)
    if s.shape != (n,) or s.min() < 0 or s.max() > 1:
        raise ValueError(f"signal must hold {n} values in [0, 1]")
    focal = focal_scale * size
    R, t = head_poses(n, rng)
    written = R
    if pose_error_deg:
        errors = axis_angle(rng.standard_normal((n, 3)), pose_error_deg)
        written = R @ errors
    c2w = camera_to_head(written, t)

    root = Path(root)
    for folder in (root / "gt_imgs", root / "torso_imgs"):
        folder.mkdir(parents=True, exist_ok=True)
    write_rgb(root / "bc.jpg", background_image(size))
    background = read_rgb(root / "bc.jpg").astype(np.float64) / 255  # what the trainer composites on
    torso_rgba = torso_image(size) if torso else np.zeros((size, size, 4), np.uint8)
    alpha = torso_rgba[..., 3:] / 255.0
    behind = torso_rgba[..., :3] / 255.0 * alpha + background * (1 - alpha)  # what the head is in front of
    images = np.zeros((n, size, size, 3), np.uint8)
    mouths = np.zeros((n, size, size), bool)
    rows = []
    for i in range(n):
        colour, hit, mouth = ray_cast(R[i], t[i], focal, size, s[i])
        frame = np.where(hit[..., None], colour, behind)
        images[i] = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
        mouths[i] = mouth
        write_rgb(root / "gt_imgs" / f"{i}.jpg", images[i])
        write_rgb(root / "torso_imgs" / f"{i}.png", torso_rgba)
        rows.append(dict(zip(COLUMNS, (i, EYE_AREA, *_regions(mouth, size), 0))))
    write_regions(root / "regions.csv", rows)

    if signal is None:
        audio = smooth_noise(rng, n)
    else:
        # The noise is one pattern shared by every frame: the windows differ by s alone, so the
        # audio path cannot tell training frames apart beyond their signal.
        audio = np.repeat(rng.standard_normal((1, 16, AUDIO_CHANNELS)) * 0.5, n, axis=0)
        audio[:, :, :SIGNAL_CHANNELS] = s[:, None, None] * 2 - 1
    np.save(root / "aud_ph.npy", audio.astype(np.float32))

    for split, ids in (("train", range(n_train)), ("val", range(n_train, n))):
        frames = [{"img_id": i, "aud_id": i, "transform_matrix": c2w[i].tolist(), "eye_ratio": EYE_AREA}
                  for i in ids]
        data = {"focal_len": focal, "cx": size / 2.0, "cy": size / 2.0, "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(data))
    return SyntheticPerson(root=root, rotations=R, translations=t, c2w=c2w, signal=s, mouth=mouths,
                           images=images, n_train=n_train)


def _regions(mouth: np.ndarray, size: int) -> tuple[int, ...]:
    """Face rectangle: the mouth's bounding box (1 px margin); lips: the square around it."""
    rows, cols = np.flatnonzero(mouth.any(1)), np.flatnonzero(mouth.any(0))
    if not len(rows):
        raise ValueError("the mouth is out of view; the poses turn the head too far")
    face = (rows[0] - 1, rows[-1] + 2, cols[0] - 1, cols[-1] + 2)
    face = tuple(int(np.clip(v, 0, size)) for v in face)
    side = max(face[1] - face[0], face[3] - face[2]) + 4
    rc, cc = (face[0] + face[1]) // 2, (face[2] + face[3]) // 2
    r0, c0 = max(rc - side // 2, 0), max(cc - side // 2, 0)
    return (*face, r0, min(r0 + side, size), c0, min(c0 + side, size))


def smooth_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """``[n, 16, C]`` random audio windows that vary smoothly from frame to frame."""
    steps = rng.standard_normal((n * 2 + 16, AUDIO_CHANNELS))
    kernel = np.hanning(9)[:, None] / np.hanning(9).sum()
    smooth = np.stack([np.convolve(steps[:, c], kernel[:, 0], mode="same") for c in range(AUDIO_CHANNELS)], -1)
    # Two feature steps per video frame (50 Hz features, 25 fps), a 16-step window centred on the frame.
    return np.stack([smooth[2 * i : 2 * i + 16] for i in range(n)]) * 3
