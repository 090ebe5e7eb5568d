"""Overlay images for people to check a stage at a glance (``overlays/<stage>_<i>.jpg``).

Each function takes what the stage produced for one frame and returns an
``[H, W, 3]`` uint8 RGB picture; :func:`write_overlay` saves it beside the
outputs, where the orchestration logs it as an artifact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radnerf.paths import PersonPaths

# The 68-point contours (start, end, closed) and their colours: jaw, brows, nose, eyes, lips.
_GROUPS = (
    (0, 17, False, (255, 255, 0)), (17, 22, False, (255, 128, 0)), (22, 27, False, (255, 128, 0)),
    (27, 31, False, (0, 255, 255)), (31, 36, False, (0, 255, 255)), (36, 42, True, (0, 255, 0)),
    (42, 48, True, (0, 255, 0)), (48, 60, True, (255, 0, 255)), (60, 68, True, (255, 0, 255)),
)


def write_overlay(paths: PersonPaths, stage: str, index: int, rgb: np.ndarray) -> Path:
    """Save ``overlays/<stage>_<i>.jpg`` atomically (a viewer never sees half a file)."""
    from radnerf.media.images import write_rgb
    from radnerf.stage_io import atomic_file

    out = paths.overlay(stage, index)
    with atomic_file(out) as tmp:
        write_rgb(tmp, rgb, quality=90)
    return out


def landmarks_overlay(image: np.ndarray, points: np.ndarray, detected: bool = True) -> np.ndarray:
    """Frame with its 68 points, coloured by group; interpolated frames get hollow points.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        points: ``[68, 2]`` x, y.
    """
    import cv2

    out = image.copy()
    r = max(1, round(min(image.shape[:2]) / 256))
    for start, end, closed, colour in _GROUPS:
        pts = np.round(points[start:end]).astype(np.int32)
        cv2.polylines(out, [pts], closed, colour, 1, cv2.LINE_AA)
        for x, y in pts:
            cv2.circle(out, (int(x), int(y)), r + 1, colour, -1 if detected else 1, cv2.LINE_AA)
    if not detected:
        cv2.putText(out, "interpolated", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 0, 0), 2, cv2.LINE_AA)
    return out


def parsing_overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Frame blended with its colour-coded parsing (background left as it is).

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        colours: ``[H, W, 3]`` uint8 RGB parsing image (RAD-NeRF colours).
    """
    fg = ~(colours == 255).all(-1)
    out = image.astype(np.float32)
    out[fg] = (1 - alpha) * out[fg] + alpha * colours[fg].astype(np.float32)
    return np.concatenate([out.astype(np.uint8), colours], axis=1)


def side_by_side(*images: np.ndarray) -> np.ndarray:
    """Images of the same height next to each other; RGBA is shown over a checkerboard."""
    tiles = []
    for im in images:
        if im.ndim == 3 and im.shape[2] == 4:
            h, w = im.shape[:2]
            yy, xx = np.mgrid[0:h, 0:w]
            board = np.where(((yy // 16) + (xx // 16)) % 2 == 0, 200, 120).astype(np.float32)[..., None]
            a = im[..., 3:4].astype(np.float32) / 255
            im = (im[..., :3] * a + board * (1 - a)).astype(np.uint8)
        tiles.append(im)
    return np.concatenate(tiles, axis=1)
