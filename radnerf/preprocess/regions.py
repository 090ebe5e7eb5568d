"""Stage ``regions``: per-frame eye-area ratio, face and lip rectangles in one table, ``regions.csv``.

Computed from the 68 landmarks exactly as RAD-NeRF's ``nerf/provider.py``
computes them when it loads a dataset, so both agree:

- ``eye_area``: area of both eye polygons (points 36-41, 42-47) over the image
  area, in percent (usually 0-0.5); it conditions the head on blinks.
- face rectangle: rows from the bottom of the nose (points 31-35) to the
  lowest landmark, columns over all landmarks (the lower face, where audio
  acts).
- lip rectangle: the square around the lips (points 48-59), clamped to the
  image, on which the lip fine-tuning computes LPIPS.

Rectangles use RAD-NeRF's ``[row0, row1, col0, col1]`` (``xmin, xmax, ymin,
ymax`` in its code, where x is the row).
"""

from __future__ import annotations

import logging

import numpy as np

from radnerf.config import RadNerfConfig
from radnerf.formats.frames import frame_count, frame_size
from radnerf.formats.landmarks import load_landmarks
from radnerf.formats.regions import COLUMNS, write_regions
from radnerf.paths import PersonPaths
from radnerf.preprocess import common
from radnerf.stage_io import StagePlan, StageResult, StageWriter, run_stage

log = logging.getLogger(__name__)

STAGE = "regions"


def polygon_area(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shoelace area of polygons. ``x, y``: ``[..., K]`` vertices in order -> ``[...]``."""
    return 0.5 * np.abs((x * np.roll(y, -1, -1)).sum(-1) - (y * np.roll(x, -1, -1)).sum(-1))


def eye_area(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """``points``: ``[N, 68, 2]`` -> ``[N]`` area of both eyes in percent of the image."""
    left = polygon_area(points[:, 36:42, 0], points[:, 36:42, 1])
    right = polygon_area(points[:, 42:48, 0], points[:, 42:48, 1])
    return (left + right) / (height * width) * 100


def face_rect(points: np.ndarray) -> np.ndarray:
    """``[68, 2]`` -> ``[4]`` int ``row0, row1, col0, col1`` of the lower face."""
    return np.array([
        int(points[31:36, 1].min()), int(points[:, 1].max()), int(points[:, 0].min()), int(points[:, 0].max()),
    ])


def lips_rect(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[68, 2]`` -> ``[4]`` int ``row0, row1, col0, col1``: the square around the lips, clamped."""
    lips = points[48:60]
    r0, r1 = int(lips[:, 1].min()), int(lips[:, 1].max())
    c0, c1 = int(lips[:, 0].min()), int(lips[:, 0].max())
    cr, cc = (r0 + r1) // 2, (c0 + c1) // 2
    half = max(r1 - r0, c1 - c0) // 2
    return np.array([max(0, cr - half), min(height, cr + half), max(0, cc - half), min(width, cc + half)])


def region_table(points: np.ndarray, height: int, width: int, interpolated: set[int]) -> list[dict]:
    """One row per frame (see :data:`radnerf.formats.regions.COLUMNS`). ``points``: ``[N, 68, 2]``."""
    eyes = eye_area(points, height, width)
    rows = []
    for i, p in enumerate(points):
        face, lips = face_rect(p), lips_rect(p, height, width)
        rows.append({
            "frame": i,
            "eye_area": round(float(eyes[i]), 6),
            **dict(zip(COLUMNS[2:6], (int(v) for v in face))),
            **dict(zip(COLUMNS[6:10], (int(v) for v in lips))),
            "interpolated": int(i in interpolated),
        })
    return rows


def regions(cfg: RadNerfConfig) -> StageResult:
    """Write ``regions.csv``: eye area, face and lip rectangles for every frame.

    Returns:
        The stage's result; its ``output`` is ``regions.csv``.
    """
    from radnerf.preprocess.landmarks import interpolated_frames

    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    n = frame_count(paths)
    plan = StagePlan(
        STAGE, [paths.rel(paths.regions)],
        settings={"columns": list(COLUMNS)},
        upstream=lambda: {"landmarks": common.stage_fingerprint(paths, "landmarks")},
    )

    def work(w: StageWriter) -> dict:
        width, height = frame_size(paths)
        rows = region_table(load_landmarks(paths, n), height, width, set(interpolated_frames(paths)))
        write_regions(w.staged.regions, rows)
        eyes = np.array([r["eye_area"] for r in rows])
        if eyes.max() > 1.0:
            log.warning("regions: eye area up to %.2f%% of the image; RAD-NeRF expects 0-0.5%%", eyes.max())
        return {
            "frames": n,
            "eye_area": {"min": float(eyes.min()), "max": float(eyes.max()), "mean": float(eyes.mean())},
        }

    return run_stage(paths, plan, work, overwrite=cfg.overwrite)
