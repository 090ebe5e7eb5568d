"""Stage ``background``: the static camera's empty background, ``bc.jpg``.

As RAD-NeRF's ``extract_background``: over a subset of frames, each pixel takes
its colour from the frame where it lies farthest from the person (a distance
transform of the parsing's background mask), so a pixel the person uncovers
at some point is taken from the frame where it is most surely uncovered; pixels
closer than ``background_margin`` (a share of the frame; RAD-NeRF uses
5 px, too little for hair strands the person mask misses) to the person in
every frame were never seen and are filled from their surroundings (RAD-NeRF copies the nearest seen
pixel; we in-paint smoothly, which leaves no streaks behind the shoulders).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from radnerf.config import RadNerfConfig
from radnerf.errors import InputError
from radnerf.formats.frames import frame_count
from radnerf.media import images
from radnerf.paths import PersonPaths
from radnerf.preprocess import common
from radnerf.preprocess.parsing import BACKGROUND, read_parsing
from radnerf.stage_io import StagePlan, StageResult, StageWriter, run_stage

log = logging.getLogger(__name__)

STAGE = "background"


def extract_background(frames: np.ndarray, background: np.ndarray, margin: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """The background image from frames and their background masks.

    Args:
        frames: ``[K, H, W, 3]`` uint8 frames.
        background: ``[K, H, W]`` bool, True where a frame shows background.
        margin: pixels closer than this to the person in every frame are unseen.

    Returns:
        ``([H, W, 3]`` uint8 background, ``[H, W]`` bool seen``)``.
    """
    import cv2

    # Distance from each background pixel to the nearest person pixel, per frame.
    dist = np.stack([cv2.distanceTransform(b.astype(np.uint8), cv2.DIST_L2, 5) for b in background])
    best = dist.argmax(0)  # [H, W]
    seen = dist.max(0) > margin
    bc = np.take_along_axis(frames, best[None, :, :, None], axis=0)[0]
    if not seen.any():
        return bc, seen
    if not seen.all():
        bc = fill_unseen(bc, seen)
    return bc, seen


def fill_unseen(image: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Fill pixels where ``seen`` is False smoothly from the seen ones around them (push-pull).

    The seen pixels are averaged down an image pyramid (weighted by how much of
    each coarse pixel was seen) until every coarse pixel has some colour, then
    each hole pixel takes the colour of the finest level that covers it,
    interpolated back up. A large hole gets a smooth blend of its rim's
    colours, with none of the streaks a nearest-pixel copy leaves.

    Args:
        image: ``[H, W, 3]`` uint8.
        seen: ``[H, W]`` bool, at least one True.

    Returns:
        ``[H, W, 3]`` uint8, equal to ``image`` where seen.
    """
    import cv2

    colour = image.astype(np.float32) * seen[..., None]
    weight = seen.astype(np.float32)
    pyramid = [(colour, weight)]
    while min(colour.shape[:2]) > 1 and (weight <= 1e-6).any():
        h, w = colour.shape[:2]
        size = (max(1, w // 2), max(1, h // 2))
        colour = cv2.resize(colour, size, interpolation=cv2.INTER_AREA)
        weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
        pyramid.append((colour, weight))
    filled = colour / np.maximum(weight, 1e-6)[..., None]
    for colour, weight in reversed(pyramid[:-1]):
        h, w = colour.shape[:2]
        up = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
        # Blend by coverage: a half-seen coarse pixel keeps half its own average.
        a = np.clip(weight, 0, 1)[..., None]
        filled = a * (colour / np.maximum(weight, 1e-6)[..., None]) + (1 - a) * up
    out = image.copy()
    out[~seen] = np.clip(filled[~seen] + 0.5, 0, 255).astype(np.uint8)
    return out


def background(cfg: RadNerfConfig) -> StageResult:
    """Extract the background image ``bc.jpg`` from the frames and their parsing.

    Returns:
        The stage's result; its ``output`` is ``bc.jpg``.

    Raises:
        InputError: the background is never visible (the person fills every frame).
    """
    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    opts = cfg.preprocess
    n = frame_count(paths)
    stride = opts.background_stride or max(1, math.ceil(n / 60))
    plan = StagePlan(
        STAGE, [paths.rel(paths.background_image)],
        settings={"stride": stride, "margin": opts.background_margin},
        upstream=lambda: {
            "ingest": common.stage_fingerprint(paths, "ingest"), "parse": common.stage_fingerprint(paths, "parse"),
        },
    )
    made: dict[str, np.ndarray] = {}  # what the overlay shows

    def work(w: StageWriter) -> dict:
        ids = list(range(0, n, stride))
        frames = np.stack([images.read_rgb(paths.frame(i)) for i in ids])
        bg = np.stack([read_parsing(paths.parsing_image(i)) == BACKGROUND for i in ids])
        # Thin hair strands escape the person mask; a margin that scales with
        # the frame keeps them out of the background.
        margin = max(5.0, opts.background_margin * min(frames.shape[1:3]))
        bc, seen = extract_background(frames, bg, margin)
        if not seen.any():
            raise InputError(
                "the background is never visible: the person covers the whole frame",
                hint="use a video with some background around the person (a wider crop)",
            )
        images.write_rgb(w.staged.background_image, bc, quality=95)
        made.update(first=frames[0], bc=bc, seen=seen)
        log.info("background: %d frames, %.0f%% never seen", len(ids), 100 * (1 - seen.mean()))
        return {"frames_used": ids, "unseen_share": float(1 - seen.mean())}

    def overlay() -> None:
        if not opts.overlay_frames:
            return
        from radnerf.preprocess.overlays import side_by_side, write_overlay

        bc, seen = made["bc"], made["seen"]
        tint = bc.copy()
        tint[~seen] = (0.5 * tint[~seen] + [0, 0, 127]).astype(np.uint8)
        write_overlay(paths, STAGE, 0, side_by_side(made["first"], bc, tint))

    return run_stage(paths, plan, work, overwrite=cfg.overwrite, after=overlay)
