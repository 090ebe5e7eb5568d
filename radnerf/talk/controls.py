"""The render controls: how a rendered video's frames are posed, how the eyes move, what lies behind.

``radnerf render person=NAME audio=PATH [pose=...] [eyes=...] [bg=...]``::

    pose   clip   the training clip's head poses, played forward then back, smoothed over 7 frames
           still  the clip's first (smoothed) pose for every frame
           PATH   a pose file: ``.npy`` ``[K, 4, 4]`` camera-to-world in the transforms' (NeRF)
                  convention, or a ``transforms_*.json``; looped forward and back like the clip
    eyes   clip   the eye-area ratio of the clip frame whose pose is used
           open   the clip's open eyes (its 90th percentile ratio), no blinks
           auto   open eyes with a blink every few seconds (0.24 s down to the clip's closed ratio)
           PATH   one ratio per frame (``.npy`` or text), looped
    bg     clip   the extracted background (``bc.jpg``)
           COLOUR white, black, gray, green, blue or ``#rrggbb``
           PATH   any image, resized to the frame

All functions are plain and shape-documented; :func:`radnerf.talk.render.render` calls them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radnerf.errors import ConfigError, InputError

POSE_SMOOTHING = 7
"""Frames a pose is averaged over (RAD-NeRF ``--smooth_path_window``)."""
BLINK_PERIOD_S = 4.0
"""Mean time between automatic blinks (people blink every 2-10 s while speaking)."""
BLINK_LENGTH_S = 0.24
"""Duration of one automatic blink, closing and opening."""
COLOURS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "green": (0, 177, 64),
           "blue": (0, 71, 187)}
"""Named background colours (green and blue: chroma-key screens)."""


def pingpong(n: int, length: int) -> np.ndarray:
    """``[n]`` indices into ``length`` frames, going forward then back: 0 1 .. L-1 L-2 .. 1 0 1 .."""
    if length == 1:
        return np.zeros(n, dtype=np.int64)
    period = 2 * length - 2
    k = np.arange(n) % period
    return np.where(k < length, k, period - k).astype(np.int64)


def smooth_poses(poses: np.ndarray, window: int = POSE_SMOOTHING) -> np.ndarray:
    """``[N, 4, 4]`` camera poses averaged over ``window`` frames (rotation by projecting the mean to SO(3))."""
    if window <= 1 or len(poses) < 2:
        return poses.copy()
    half = window // 2
    out = poses.copy()
    for i in range(len(poses)):
        part = poses[max(0, i - half): i + half + 1]
        u, _, vt = np.linalg.svd(part[:, :3, :3].mean(axis=0))
        rot = u @ vt
        if np.linalg.det(rot) < 0:
            u[:, -1] *= -1
            rot = u @ vt
        out[i, :3, :3] = rot
        out[i, :3, 3] = part[:, :3, 3].mean(axis=0)
    return out


def _file(spec: str, key: str, choices: str) -> Path:
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}={spec!r} is neither {choices} nor an existing file",
                          hint=f"use one of {choices} or a path to a file: {key}=...")
    return path


def frame_poses(spec: str, clip: np.ndarray, n: int, scale: float = 4.0,
                offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """``[n, 4, 4]`` poses (the renderer's normalised space) of a video of ``n`` frames.

    Args:
        spec: ``pose=``: 'clip', 'still' or a pose file.
        clip: ``[M, 4, 4]`` the training clip's poses (train then val frames), normalised.
        scale, offset: the model's ``pose_scale`` / ``pose_offset``, for a pose file.
    """
    if spec in ("clip", "still"):
        smoothed = smooth_poses(clip)
        return smoothed[pingpong(n, len(clip))] if spec == "clip" else np.repeat(smoothed[:1], n, axis=0)
    path = _file(spec, "pose", "clip, still")
    try:
        if path.suffix == ".json":  # the poses of a transforms file; its intrinsics are not needed here
            import json

            frames = json.loads(path.read_text())["frames"]
            matrices = np.array([f["transform_matrix"] for f in frames], np.float32)
        else:
            matrices = np.asarray(np.load(path), np.float32)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same mistake for the user
        raise InputError(f"{path} is not a pose file ({e})",
                         hint="a .npy of [K, 4, 4] camera-to-world matrices, or a transforms_*.json") from None
    if matrices.ndim != 3 or matrices.shape[1:] != (4, 4) or len(matrices) == 0:
        raise InputError(f"{path} holds an array of shape {matrices.shape}, not [K, 4, 4] poses",
                         hint="camera-to-world matrices in the transforms' convention, one per frame")
    import torch

    from radnerf.render.rays import nerf_to_ngp_pose

    poses = nerf_to_ngp_pose(torch.from_numpy(matrices), scale=scale, offset=offset).numpy()
    return poses[pingpong(n, len(poses))]


def eye_track(spec: str, clip_eyes: np.ndarray, order: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """``[n]`` eye-area ratios of a video of ``n = len(order)`` frames.

    Args:
        spec: ``eyes=``: 'clip', 'open', 'auto' or a file of ratios.
        clip_eyes: ``[M]`` the clip's ratios (train then val frames).
        order: ``[n]`` the clip frame each video frame's pose comes from.
    """
    n = len(order)
    clip_eyes = np.asarray(clip_eyes, np.float32)
    if spec == "clip":
        return clip_eyes[order]
    opened = float(np.percentile(clip_eyes, 90))
    if spec == "open":
        return np.full(n, opened, np.float32)
    if spec == "auto":
        closed = float(np.percentile(clip_eyes, 2))
        track = np.full(n, opened, np.float32)
        rng = np.random.default_rng(0)  # the same blinks for the same audio: a video is reproducible
        length = max(3, int(round(BLINK_LENGTH_S * fps))) | 1  # odd: the middle frame is fully closed
        shape = 1.0 - np.abs(np.linspace(-1.0, 1.0, length))  # down and up again
        start = int(rng.uniform(1.0, BLINK_PERIOD_S) * fps)
        while start < n:
            part = track[start:start + length]
            part[:] = opened - (opened - closed) * shape[: len(part)]
            start += int(rng.uniform(0.5, 1.5) * BLINK_PERIOD_S * fps)
        return track
    path = _file(spec, "eyes", "clip, open, auto")
    try:
        values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter=None, ndmin=1)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path} is not a file of eye ratios ({e})",
                         hint="one number per frame: a .npy, or text with one value per line") from None
    values = np.asarray(values, np.float32).reshape(-1)
    if len(values) == 0 or not np.isfinite(values).all():
        raise InputError(f"{path} holds no finite eye ratios", hint="one number per frame, as regions.csv's eye column")
    return values[pingpong(n, len(values))]


def background_image(spec: str, bc: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 background of the video: ``bc`` (the extracted one) for 'clip', a colour, or an image
    file resized to ``bc``'s size."""
    if spec == "clip":
        return bc
    h, w = bc.shape[:2]
    colour = COLOURS.get(spec.lower())
    if colour is None and spec.startswith("#") and len(spec) == 7:
        try:
            colour = tuple(int(spec[k:k + 2], 16) for k in (1, 3, 5))
        except ValueError:
            colour = None
    if colour is not None:
        return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()
    path = _file(spec, "bg", f"clip, {', '.join(COLOURS)}, #rrggbb")
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((w, h), Image.BILINEAR))
    except OSError as e:
        raise InputError(f"{path} is not an image ({e})", hint="bg= takes any image PIL reads, or a colour") from None


def over(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``[H, W, 4]`` uint8 over ``[H, W, 3]`` uint8 -> ``[H, W, 3]`` uint8 (the clip's torso image over a new background)."""
    rgba16 = rgba.astype(np.uint16)
    alpha = rgba16[..., 3:]
    return ((rgba16[..., :3] * alpha + background.astype(np.uint16) * (255 - alpha) + 127) // 255).astype(np.uint8)


def file_fingerprint(spec: str) -> str:
    """What a control contributes to a video's fingerprint: its keyword, or the file's content hash."""
    from radnerf.stage_io import sha256_file

    path = Path(spec).expanduser()
    return sha256_file(path) if path.is_file() else spec
