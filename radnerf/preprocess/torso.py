"""Stage ``torso``: ``gt_imgs/<i>.jpg`` and the neck-in-painted ``torso_imgs/<i>.png``.

``gt_imgs``: each frame with its background pixels replaced by ``bc.jpg``, so
the head NeRF is trained against the same background it is composited on.

``torso_imgs``: RGBA, the torso and neck without the head (paper, Appendix
A.1, after RAD-NeRF's ``extract_torso_and_gt``). Where the head is removed the
torso would end in a hole under the chin; instead, in every column whose
topmost neck pixel has head right above it, that pixel's colour (taken four
pixels lower, inside the neck) is copied upward for 52 pixels, darkened by
0.98 per pixel to mimic the chin's shadow, then softened with a 5x5 blur; the
top of the torso (clothes) gets the same treatment over 8 pixels.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from radnerf.config import RadNerfConfig
from radnerf.formats.frames import frame_count
from radnerf.media import images
from radnerf.paths import PersonPaths
from radnerf.preprocess import common
from radnerf.preprocess.parsing import BACKGROUND, HEAD, NECK, TORSO, read_parsing
from radnerf.stage_io import StagePlan, StageResult, StageWriter, run_stage

log = logging.getLogger(__name__)

STAGE = "torso"
NECK_LENGTH = 48
"""Rows painted above the top of the neck (RAD-NeRF's value)."""
NECK_PUSH_DOWN = 4
"""Colour source sits this many rows inside the neck, below its ragged top edge."""
TORSO_LENGTH = 8
"""Rows painted above the top of the torso where it meets the head."""
DARKEN = 0.98
"""Per-row darkening of painted colour (the chin's shadow)."""


def composite_gt(image: np.ndarray, bg: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` frame with background pixels taken from ``bg`` (``[H, W, 3]``)."""
    import cv2

    # cv2.copyTo with a mask: 10x faster than np.where broadcasting over channels.
    return cv2.copyTo(bg, (labels == BACKGROUND).view(np.uint8), image.copy())


def _paint_up(
    image: np.ndarray, part: np.ndarray, head: np.ndarray, length: int, push_down: np.ndarray | None = None
) -> np.ndarray:
    """Copy each column's top ``part`` pixel upward over ``length`` rows, darkening it; returns the painted mask.

    Only columns whose top ``part`` pixel has ``head`` directly above are painted.

    Args:
        image: ``[H, W, 3]`` uint8, painted in place.
        part, head: ``[H, W]`` bool.
        length: rows painted, counting the source row.
        push_down: ``[W]`` rows to move the source down inside the part (None: 0).

    Returns:
        ``[H, W]`` bool, the painted pixels.
    """
    h, w = part.shape
    painted = np.zeros((h, w), bool)
    has = part.any(0)
    top = part.argmax(0)  # first True row per column
    cols = np.flatnonzero(has & (top > 0))
    cols = cols[head[top[cols] - 1, cols]]
    if len(cols) == 0:
        return painted
    src = top[cols]
    if push_down is not None:
        src = src + push_down[cols]
    colours = image[src, cols].astype(np.float32)  # [m, 3]
    for k in range(length):
        rows = src - k
        ok = rows >= 0
        image[rows[ok], cols[ok]] = (colours[ok] * DARKEN**k).astype(np.uint8)
        painted[rows[ok], cols[ok]] = True
    return painted


def torso_image(gt: np.ndarray, bg: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGBA torso with the head removed and the neck painted up under the chin.

    Args:
        gt: ``[H, W, 3]`` uint8 frame on the extracted background.
        bg: ``[H, W, 3]`` uint8 background.
        labels: ``[H, W]`` uint8 parsing labels.

    Returns:
        ``[H, W, 4]`` uint8; RGB and alpha are 0 outside torso, neck and paint.
    """
    import cv2

    head = labels == HEAD
    torso = labels == TORSO
    img = cv2.copyTo(bg, head.view(np.uint8), gt.copy())

    torso_paint = _paint_up(img, torso, head, TORSO_LENGTH + 1)

    # Grow the neck 3 px up and down (RAD-NeRF: 3 binary dilations with a
    # vertical 3x1 element), so a neck separated from the head by a thin
    # mislabelled seam still reaches the head.
    neck = cv2.dilate((labels == NECK).astype(np.uint8), np.ones((7, 1), np.uint8)).astype(bool)
    counts = neck.sum(0)
    push = np.minimum(np.maximum(counts - 1, 0), NECK_PUSH_DOWN)
    neck_paint = _paint_up(img, neck, head, NECK_LENGTH + NECK_PUSH_DOWN + 1, push_down=push)
    if neck_paint.any():
        # Painted columns are independent; a blur hides their vertical lines.
        # Sigma 4, not the kernel's default 1.1: RAD-NeRF passes cv2.BORDER_DEFAULT
        # (= 4) where GaussianBlur takes sigmaX, and we match its images.
        blurred = cv2.GaussianBlur(img, (5, 5), 4.0)
        img = cv2.copyTo(blurred, neck_paint.view(np.uint8), img)

    keep = neck | torso | neck_paint | torso_paint
    rgba = cv2.cvtColor(img, cv2.COLOR_RGB2RGBA)  # alpha 255
    return cv2.copyTo(rgba, keep.view(np.uint8), np.zeros_like(rgba))


def torso(cfg: RadNerfConfig) -> StageResult:
    """Write ``gt_imgs/<i>.jpg`` and ``torso_imgs/<i>.png`` for every frame.

    Returns:
        The stage's result; its ``output`` is the ``torso_imgs`` folder (``gt_imgs`` second).

    Raises:
        StageOutputExistsError: ``gt_imgs`` / ``torso_imgs`` radnerf did not
            write that lack some frames, without ``overwrite``.
    """
    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    opts = cfg.preprocess
    n = frame_count(paths)
    plan = StagePlan(
        STAGE, [paths.rel(paths.gt_imgs), paths.rel(paths.torso_imgs)],
        settings={"neck": NECK_LENGTH, "push_down": NECK_PUSH_DOWN, "torso": TORSO_LENGTH, "darken": DARKEN},
        upstream=lambda: {name: common.stage_fingerprint(paths, name) for name in ("ingest", "parse", "background")},
        shown=[paths.rel(paths.torso_imgs), paths.rel(paths.gt_imgs)],
    )

    def work(w: StageWriter) -> dict:
        for o in plan.outputs:
            w.path(o).mkdir()
        painted = common.map_chunks(
            _torso_chunk, n, common.worker_count(opts.workers), str(paths.root), str(w.staged.root), stage=STAGE,
            dask=common.dask_target(opts),
        )
        painted = np.concatenate(painted)
        log.info("torso: %d frames", n)
        return {"frames": n, "frames_without_neck_paint": [int(i) for i in np.flatnonzero(painted == 0)]}

    def overlays() -> None:

        from radnerf.preprocess.overlays import side_by_side, write_overlay

        for i in common.overlay_indices(n, opts.overlay_frames):
            gt = images.read_rgb(paths.gt_image(i))
            rgba = images.read_rgba(paths.torso_image(i))
            write_overlay(paths, STAGE, i, side_by_side(gt, rgba))

    return run_stage(
        paths, plan, work, overwrite=cfg.overwrite, after=overlays,
        accept_foreign=common.all_frames_present(
            n, {"gt_imgs/<i>.jpg": paths.gt_image, "torso_imgs/<i>.png": paths.torso_image}
        ),
    )


def _torso_chunk(frames: range, root: str, staged: str) -> np.ndarray:
    """Process ``frames`` into the staging folder ``staged``; returns ``[len(frames)]`` count of
    neck-painted pixels per frame."""
    paths, out = PersonPaths(Path(root)), PersonPaths(Path(staged))
    bg = images.read_rgb(paths.background_image)
    painted = np.zeros(len(frames), np.int64)
    for k, i in enumerate(frames):
        image = images.read_rgb(paths.frame(i))
        labels = read_parsing(paths.parsing_image(i))
        gt = composite_gt(image, bg, labels)
        rgba = torso_image(gt, bg, labels)
        painted[k] = int(((rgba[..., 3] > 0) & (labels == HEAD)).sum())
        images.write_rgb(out.gt_image(i), gt, quality=95)
        images.write_rgb(out.torso_image(i), rgba)
    return painted
