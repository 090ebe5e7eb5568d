"""Stage ``landmarks``: one 68-point face per frame, written as RAD-NeRF's ``ori_imgs/<i>.lms``.

Per frame the backend finds every face; this module then

1. links faces across frames into tracks and keeps the person's track (the one
   present in most frames), refusing a clip where another face of similar size
   competes for many frames;
2. fills frames where the person's face was not found by interpolating from
   the neighbouring frames (and records them), failing when too many frames or
   too long a run miss a face;
3. smooths the jaw, brows and nose lightly over time (never the eyes or lips,
   whose frame-to-frame motion is the signal: blinks and speech);
4. checks what makes a bad dataset: a face too small, cut by the frame edge,
   or seen from the side in many frames.

Outputs: ``ori_imgs/<i>.lms`` (``np.savetxt`` of ``[68, 2]`` x, y as RAD-NeRF
writes them), ``manifests/landmarks.json`` (per-frame flags), overlays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radnerf.config import PreprocessConfig, RadNerfConfig
from radnerf.errors import InputError
from radnerf.formats.frames import frame_count, frame_size
from radnerf.formats.landmarks import write_landmarks
from radnerf.media import images
from radnerf.paths import PersonPaths
from radnerf.preprocess import common
from radnerf.preprocess.landmark_backends import Face, check_backend, make_backend
from radnerf.stage_io import StagePlan, StageResult, StageWriter, read_manifest, run_stage

log = logging.getLogger(__name__)

STAGE = "landmarks"

# dlib's HOG detector scans an 80x80 window: a face must be at least that wide
# at the scale the detector sees it.
_DLIB_WINDOW = 80.0
_UNSMOOTHED = slice(36, 68)  # eyes and lips

SETTINGS = (
    "max_missing_share", "max_gap", "min_face_size", "max_cut_share", "max_side_view_share",
    "side_view_yaw", "second_face_ratio", "ambiguous_share", "smooth_sigma",
)
"""The ``preprocess`` options that change the landmarks (with the backend): the manifest's settings."""


@dataclass
class TrackResult:
    """The person's landmarks over the clip and what was wrong with them."""

    points: np.ndarray
    """``[N, 68, 2]`` x, y in pixels, gaps filled."""
    detected: np.ndarray
    """``[N]`` bool: the face was found in this frame (False: interpolated)."""
    widths: np.ndarray
    """``[N]`` face box width in pixels (NaN where interpolated)."""
    competing: list[int] = field(default_factory=list)
    """Frames holding another face of similar size."""


def landmarks(cfg: RadNerfConfig) -> StageResult:
    """Find the person's 68 landmarks in every frame; write ``ori_imgs/<i>.lms``.

    Returns:
        The stage's result; its ``output`` is the ``ori_imgs`` folder holding the ``.lms`` files.

    Raises:
        InputError: no face, a face too small, too many frames without a face,
            two faces of similar size, the face cut by the frame edge or seen
            from the side in too many frames.
        MissingWeightsError: ``fan`` without its weights.
        StageOutputExistsError: ``.lms`` files radnerf did not write for only
            some frames, without ``overwrite``.
    """
    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    opts = cfg.preprocess
    backend = opts.landmarks
    check_backend(backend, cfg.paths.weights)
    n = frame_count(paths)
    # ori_imgs belongs to ingest: the .lms files are committed one by one beside the frames.
    outputs = [paths.rel(paths.lms(i)) for i in range(n)]
    plan = StagePlan(
        STAGE, outputs,
        settings={"backend": backend, **{k: getattr(opts, k) for k in SETTINGS}},
        upstream=lambda: {"ingest": common.stage_fingerprint(paths, "ingest")},
        check=[outputs[0], outputs[-1]],
        shown=[paths.rel(paths.ori_imgs)],
        listed=[f"{paths.rel(paths.ori_imgs)}/{{0..{n - 1}}}{paths.lms(0).suffix}"],
    )
    found: dict[str, Any] = {}  # what the overlays draw

    def work(w: StageWriter) -> dict:
        width, height = frame_size(paths)
        device = "cpu"
        if backend == "fan":
            from radnerf.devices import resolve_device  # imports torch: only for the torch backend

            device = resolve_device(opts.device, "preprocess.device")
        scale = detect_scale(paths, n, opts, (height, width)) if backend == "dlib" else 1.0
        # FAN runs on torch, which already uses every core (or the GPU): one process.
        workers = 1 if backend == "fan" else common.worker_count(opts.workers)
        per_chunk = common.map_chunks(
            _detect_chunk, n, workers, backend, device, scale, str(paths.root), cfg.paths.weights, stage=STAGE,
            dask=None if backend == "fan" else common.dask_target(opts),
        )
        detections = [faces for chunk in per_chunk for faces in chunk]
        track = select_track(detections, opts, (height, width))
        report = check_track(track, opts, (height, width))
        points = smooth(track.points, opts.smooth_sigma)
        for i, p in enumerate(points):
            write_landmarks(w.path(outputs[i]), p)  # path() makes ori_imgs/ inside the staging folder
        found.update(points=points, detected=track.detected)
        log.info("landmarks: %d frames, %d interpolated", n, int((~track.detected).sum()))
        return {
            "frames": n,
            "width": width,
            "height": height,
            "detect_scale": scale,
            "interpolated": [int(i) for i in np.flatnonzero(~track.detected)],
            "competing_faces": track.competing,
            **report,
        }

    def overlays() -> None:
        from radnerf.preprocess.overlays import landmarks_overlay, write_overlay

        for i in common.overlay_indices(n, opts.overlay_frames):
            image = images.read_rgb(paths.frame(i))
            write_overlay(paths, STAGE, i, landmarks_overlay(image, found["points"][i], bool(found["detected"][i])))

    return run_stage(
        paths, plan, work, overwrite=cfg.overwrite, after=overlays,
        accept_foreign=common.all_frames_present(n, {"ori_imgs/<i>.lms": paths.lms}),
    )


def detect_scale(paths: PersonPaths, n: int, opts: PreprocessConfig, size: tuple[int, int]) -> float:
    """Image scale for dlib's detector: as small as keeps every face that matters detectable.

    A few frames are searched at the scale where the smallest accepted face
    fills dlib's window; then the scale is chosen so that a face
    ``second_face_ratio`` times the person's still fills it, which both finds
    competing faces and runs the detector on far fewer pixels (5x faster for a
    face half the frame wide).
    """
    import cv2
    import dlib

    full = float(np.clip(_DLIB_WINDOW / (opts.min_face_size * min(size)), 0.25, 2.0))
    # The detector alone: loading the shape predictor costs two seconds.
    detector = dlib.get_frontal_face_detector()
    widths = []
    for i in common.overlay_indices(n, 5):
        image = cv2.resize(images.read_rgb(paths.frame(i)), None, fx=full, fy=full, interpolation=cv2.INTER_AREA)
        rects = detector(image, 0)
        if len(rects):
            widths.append(max(r.width() for r in rects) / full)
    if not widths:
        return full
    person = float(np.median(widths))
    return float(np.clip(1.2 * _DLIB_WINDOW / (opts.second_face_ratio * person), 0.25, full))


def _detect_chunk(
    frames: range, backend: str, device: str, scale: float, root: str, weights_dir: str | None
) -> list[list[Face]]:
    det = make_backend(backend, device=device, detect_scale=scale, weights_dir=weights_dir)
    paths = PersonPaths(Path(root))
    return [det.detect(images.read_rgb(paths.frame(i))) for i in frames]


def select_track(detections: list[list[Face]], opts: PreprocessConfig, size: tuple[int, int]) -> TrackResult:
    """The person's face in every frame, from all faces found per frame.

    Faces are linked frame to frame by position and size (a track survives
    gaps); the track present in most frames is the person. A track whose
    faces are at least ``second_face_ratio`` as wide and half as confident competes; if competing
    faces appear in more than ``ambiguous_share`` of the frames the clip is
    refused, since we cannot know whom to model.

    Args:
        detections: per frame, the faces found.

    Raises:
        InputError: no face at all, ambiguous faces, too many or too long gaps.
    """
    n = len(detections)
    tracks: list[dict] = []  # {"box": last box, "frames": {i: Face}}
    for i, faces in enumerate(detections):
        free = list(range(len(tracks)))
        for face in sorted(faces, key=lambda f: -f.width):
            best, best_d = None, np.inf
            for t in free:
                d = _box_distance(tracks[t]["box"], face.box)
                if d < best_d:
                    best, best_d = t, d
            if best is not None and best_d < 0.5:
                tracks[best]["box"] = face.box
                tracks[best]["frames"][i] = face
                free.remove(best)
            else:
                tracks.append({"box": face.box, "frames": {i: face}})
    if not tracks:
        raise InputError(
            f"no face found in any of the {n} frames",
            hint="the video must show one person's face, frontal, at least "
            f"{opts.min_face_size:.0%} of the frame wide; check the frames in ori_imgs/",
        )
    tracks.sort(key=lambda t: (len(t["frames"]), np.median([f.width for f in t["frames"].values()])), reverse=True)
    main = tracks[0]
    main_width = float(np.median([f.width for f in main["frames"].values()]))
    main_score = float(np.median([f.score for f in main["frames"].values()]))
    # A rival must be as large and about as sure a face: dlib's weak detections
    # on badges and patterns (scores near 0) are no one to model.
    competing = sorted({
        i for t in tracks[1:]
        if np.median([f.width for f in t["frames"].values()]) >= opts.second_face_ratio * main_width
        and np.median([f.score for f in t["frames"].values()]) >= 0.5 * main_score
        for i in t["frames"]
    })
    if len(competing) > opts.ambiguous_share * n:
        raise InputError(
            f"more than one face of similar size in frames {common.frames_text(competing)}; "
            "cannot tell which person to model",
            hint="crop the video to one person, e.g. ingest.crop='x,y,w,h', or cut those frames",
        )
    if competing:
        log.warning("landmarks: another face is visible in frames %s; following the main one", common.frames_text(competing))

    detected = np.zeros(n, bool)
    points = np.full((n, 68, 2), np.nan)
    widths = np.full(n, np.nan)
    for i, face in main["frames"].items():
        detected[i] = True
        points[i] = face.points
        widths[i] = face.width
    missing = np.flatnonzero(~detected)
    if len(missing) > opts.max_missing_share * n:
        raise InputError(
            f"no face found in {len(missing)} of {n} frames ({len(missing) / n:.0%}, more than "
            f"preprocess.max_missing_share={opts.max_missing_share}): {common.frames_text(missing)}",
            hint="cut the clip to where the face is visible (ingest.start / ingest.max_duration), "
            "or try preprocess.landmarks=mediapipe",
        )
    longest = _longest_run(~detected)
    if longest[1] - longest[0] > opts.max_gap:
        raise InputError(
            f"no face found in frames {longest[0]}-{longest[1] - 1} ({longest[1] - longest[0]} consecutive "
            f"frames, more than preprocess.max_gap={opts.max_gap})",
            hint="cut that part of the clip, or raise preprocess.max_gap",
        )
    return TrackResult(points=fill_gaps(points, detected), detected=detected, widths=widths, competing=competing)


def _box_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Centre distance over width, plus how much the widths differ (0 for the same box)."""
    wa, wb = a[2] - a[0], b[2] - b[0]
    ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    return float(np.linalg.norm(ca - cb) / max(wa, 1e-6) + abs(np.log(max(wb, 1e-6) / max(wa, 1e-6))))


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """``(start, end)`` of the longest run of True in ``mask`` (``(0, 0)`` when none)."""
    best = (0, 0)
    start = None
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def fill_gaps(points: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Linear interpolation over time where ``detected`` is False; ends copy the nearest frame.

    Args:
        points: ``[N, 68, 2]`` (values where not detected are ignored).
        detected: ``[N]`` bool, at least one True.

    Returns:
        ``[N, 68, 2]``.
    """
    n = len(points)
    known = np.flatnonzero(detected)
    flat = points.reshape(n, -1)
    out = np.empty_like(flat)
    t = np.arange(n)
    for k in range(flat.shape[1]):
        out[:, k] = np.interp(t, known, flat[known, k])
    return out.reshape(points.shape)


def smooth(points: np.ndarray, sigma: float) -> np.ndarray:
    """Temporal Gaussian smoothing of jaw, brows and nose (points 0-35); eyes and lips untouched.

    Args:
        points: ``[N, 68, 2]``.
        sigma: in frames; 0 disables.
    """
    if sigma <= 0 or len(points) < 3:
        return points
    from scipy.ndimage import gaussian_filter1d

    out = gaussian_filter1d(points, sigma, axis=0, mode="nearest")
    out[:, _UNSMOOTHED] = points[:, _UNSMOOTHED]
    return out


def yaw_asymmetry(points: np.ndarray) -> np.ndarray:
    """How far the nose tip sits from the middle of the jaw ends: 0 frontal, 1 full profile.

    Args:
        points: ``[..., 68, 2]``.

    Returns:
        ``[...]`` in [0, 1].
    """
    nose = points[..., 30, :]
    left = np.linalg.norm(nose - points[..., 0, :], axis=-1)
    right = np.linalg.norm(nose - points[..., 16, :], axis=-1)
    return np.abs(left - right) / np.maximum(left + right, 1e-6)


def _refuse_or_warn(
    frames: np.ndarray, max_share: float, n: int, what: str, hint: str, warning: str
) -> None:
    """InputError when ``frames`` are more than ``max_share`` of the ``n``; else a warning naming them."""
    if len(frames) > max_share * n:
        raise InputError(
            f"{what} in {len(frames)} of {n} frames: {common.frames_text(frames)}", hint=hint
        )
    if len(frames):
        log.warning("landmarks: %s in frames %s", warning, common.frames_text(frames))

def check_track(track: TrackResult, opts: PreprocessConfig, size: tuple[int, int]) -> dict:
    """Refuse a face too small, or cut by the edge / seen from the side in too many frames.

    Returns:
        ``{"cut_frames": [...], "side_view_frames": [...], "face_width": median px}``
        for the manifest (frames below the thresholds are warned about).

    Raises:
        InputError: a check fails.
    """
    h, w = size
    n = len(track.points)
    width = float(np.nanmedian(track.widths))
    if width < opts.min_face_size * min(h, w):
        raise InputError(
            f"the face is {width:.0f} px wide, {width / min(h, w):.0%} of the {w}x{h} frame "
            f"(preprocess.min_face_size={opts.min_face_size})",
            hint="crop the video around the head, e.g. ingest.crop='x,y,w,h', or lower preprocess.min_face_size",
        )
    pts = track.points
    cut = np.flatnonzero(
        track.detected
        & ((pts[..., 0] < 1).any(-1) | (pts[..., 1] < 1).any(-1) | (pts[..., 0] > w - 2).any(-1) | (pts[..., 1] > h - 2).any(-1))
    )
    _refuse_or_warn(
        cut,
        opts.max_cut_share,
        n,
        "the face is cut by the frame edge",
        "crop wider around the head (ingest.crop) or cut those frames; "
        "raise preprocess.max_cut_share to accept it",
        "the face touches the frame edge",
    )
    side = np.flatnonzero(track.detected & (yaw_asymmetry(pts) > opts.side_view_yaw))
    _refuse_or_warn(
        side,
        opts.max_side_view_share,
        n,
        "the face is seen from the side",
        "use a video where the person mostly faces the camera, or cut those frames; "
        "raise preprocess.max_side_view_share to accept it",
        "extreme side view",
    )
    return {"cut_frames": [int(i) for i in cut], "side_view_frames": [int(i) for i in side], "face_width": width}


def interpolated_frames(paths: PersonPaths) -> list[int]:
    """Frames whose landmarks were interpolated, from the manifest (none for imported datasets)."""
    m = read_manifest(paths.manifest(STAGE)) or {}
    return list(m.get("interpolated", []))


def detected_frames(lms: np.ndarray, manifest: dict | None) -> np.ndarray:
    """``[N]`` bool: frames whose ``lms: [N, 68, 2]`` are a detection (present, and neither
    interpolated nor listed as missing in ``manifest``, the landmarks stage's, which the
    caller has already read)."""
    detected = np.isfinite(lms).all(axis=(1, 2))
    m = manifest or {}
    for key in ("missing_frames", "interpolated"):
        for i in m.get(key, []) or []:
            if 0 <= int(i) < len(detected):
                detected[int(i)] = False
    return detected
