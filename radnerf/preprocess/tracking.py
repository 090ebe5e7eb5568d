"""Stage ``track``: head pose per frame and the camera's focal length, from 68-point landmarks.

No licensed face model: a generic 3D landmark shape (:mod:`face_shape`) is
refined for the person while poses and one focal length are fitted to the
landmarks jointly (bundle adjustment, :mod:`tracking_ba`), in four steps:

1. independent weak-perspective poses per frame find jumps no head makes
   (a one-frame glitch is refitted from its neighbours, a lasting one is a
   cut: flagged, and no smoothing across it);
2. shape and focal from up to ``calib_frames`` frames in stretches over the clip,
   the focal first held at its prior and freed only if the head turns enough
   (a head that does not turn shows one view: neither the focal nor the
   face's depth can be told, so the prior focal and the generic face's depth are kept);
3. the poses of all frames with shape and focal held, under robust temporal
   smoothing; frames the rigid shape cannot explain are refitted from their
   neighbours, as are frames without landmarks;
4. fits at half and twice the focal measure how well the clip pins it.

Outputs, RAD-NeRF's names and format, under ``<artifacts>/<person>/``::

    transforms_train.json   focal_len, cx, cy, frames [{img_id, aud_id, transform_matrix, eye_ratio}]
    transforms_val.json     the last 1/11 of the frames (RAD-NeRF's split)
    track/report.json       reprojection error, focal and how well the clip constrains it,
                            pose ranges (pose_deg: the plotted angles; motion_range_deg: the
                            head motion the focal decision measured, as its warning quotes it),
                            jitter, head box, flagged frames
    track/params.npz        rotations, translations, focal, the person's 3D shape
    track/pose_curves.png   yaw, pitch, roll and position over time
    track/overlay_<i>.jpg   projected shape and an axis gizmo on a few frames

``transform_matrix`` is camera-to-world in the NeRF (OpenGL) convention with
the head frame as the world: x right, y up, z out of the face, metres, origin
near the centre of the skull (training scales it by ``model.pose_scale``,
RAD-NeRF's ``--scale``). Yaw, pitch and roll follow :mod:`radnerf.geometry`.

A folder already processed by RAD-NeRF or ER-NeRF (its own
``transforms_*.json``, or only ``track_params.pt``) is used as it is.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

import numpy as np

from radnerf.config import ModelConfig, RadNerfConfig, TrackConfig
from radnerf.errors import InputError
from radnerf.formats.frames import frame_count, frame_size
from radnerf.formats.landmarks import load_landmarks
from radnerf.formats.manifests import read_manifest
from radnerf.formats.regions import read_regions
from radnerf.formats.transforms import SPLITS, read_transforms, split_index
from radnerf.geometry import euler_deg, radnerf_euler_to_rotation, rotation_angle_deg, rotation_matrix
from radnerf.media import images
from radnerf.paths import PersonPaths
from radnerf.preprocess import common, face_shape, tracking_viz
from radnerf.preprocess.tracking_ba import (
    FitResult,
    FitState,
    SolverSettings,
    Tracking,
    bundle_adjust,
    camera_from_head,
    focal_profile,
    initial_state,
    project,
)
from radnerf.stage_io import (
    StagePlan,
    StageResult,
    StageWriter,
    person_lock,
    run_stage,
    sha256_file,
    sha256_json,
    write_json_atomic,
)

log = logging.getLogger(__name__)

STAGE = "track"
ALGORITHM_VERSION = 2
"""Bumped when the fit changes the poses it writes, so finished tracks are redone
(2: a clip without head motion keeps the generic face's depth)."""


# --------------------------------------------------------------------------- measures of a track


def rotation_jitter_deg(R: np.ndarray) -> np.ndarray:
    """``[N, 3, 3] -> [N - 2]`` angle of the rotation's second difference, degrees.

    The change of frame-to-frame rotation: ``(R_{i+1} R_i^T) (R_i R_{i-1}^T)^T``.
    """
    if R.shape[0] < 3:
        return np.zeros(0)
    step = R[1:] @ R[:-1].transpose(0, 2, 1)
    return rotation_angle_deg(step[1:] @ step[:-1].transpose(0, 2, 1))


def motion_range_deg(R: np.ndarray) -> np.ndarray:
    """``[3]`` range of yaw, pitch, roll (2.5 to 97.5 percentile, degrees) of ``[N, 3, 3]`` rotations.

    After a 9-sample running median, so that landmark noise does not pass for head
    motion. The one measure of "how much the head turns": the focal decision, its
    warning and ``report.json`` all quote it.
    """
    from scipy.ndimage import median_filter

    angles = median_filter(euler_deg(R), size=(9, 1), mode="nearest")
    return np.percentile(angles, 97.5, axis=0) - np.percentile(angles, 2.5, axis=0)


def head_box(shape: np.ndarray, pose_scale: float) -> dict:
    """The head's box in the world (head) frame and the renderer bound it needs at ``pose_scale``.

    Args:
        shape: ``[68, 3]`` landmark shape, head frame, metres.
        pose_scale: ``model.pose_scale`` (RAD-NeRF's ``--scale``); the bound's key names it
            (``bound_at_scale_4``).
    """
    box = face_shape.head_box(shape)
    return {
        "min": [round(float(v), 4) for v in box[0]],
        "max": [round(float(v), 4) for v in box[1]],
        f"bound_at_scale_{pose_scale:g}": round(float(np.abs(box).max() * pose_scale), 3),
    }


# --------------------------------------------------------------------------- the fit


def _settings(
    c: TrackConfig, width: int, height: int, fixed: float | None, calibrate: bool = True
) -> SolverSettings:
    """Solver settings: ``calibrate`` fits shape and focal under light smoothing, else poses only."""
    prior = c.focal_prior if c.focal_prior is not None else 2.0 * max(width, height)
    return SolverSettings(
        point_weights=face_shape.point_weights(c.weight_rigid, c.weight_brows, c.weight_eyelids, c.weight_jaw, c.weight_lips),
        focal_prior=float(prior),
        focal_prior_sigma=c.focal_prior_sigma,
        fixed_focal=fixed,
        fixed_shape=not calibrate,
        shape_reg=c.shape_reg,
        symmetry_reg=c.symmetry_reg,
        smooth_rotation=min(c.calib_smooth_rotation, c.smooth_rotation) if calibrate else c.smooth_rotation,
        smooth_translation=min(c.calib_smooth_translation, c.smooth_translation) if calibrate else c.smooth_translation,
        smooth_huber_deg=c.smooth_huber_deg,
        smooth_huber_px=c.smooth_huber_px,
        huber_px=c.huber_px,
        iterations=c.iterations,
        tol=c.tol,
    )


def _fill_from_neighbours(x: np.ndarray, used: np.ndarray) -> np.ndarray:
    """``[N, D]``: rows of unused frames interpolated linearly between used ones (held at the ends)."""
    idx = np.flatnonzero(used)
    if len(idx) == len(used):
        return x
    n = np.arange(len(used))
    return np.stack([np.interp(n, idx, x[idx, j]) for j in range(x.shape[1])], 1)


def _pose_jumps(lms: np.ndarray, used: np.ndarray, settings: SolverSettings, c: TrackConfig):
    """``(glitch frames, break frames)`` from independent weak-perspective poses of the used frames.

    A jump between consecutive used frames (rotation over ``jump_deg``, or a
    shift or scale change over ``jump_shift`` face widths) that is undone at
    the next frame is a one-frame glitch; one that lasts starts a new shot.
    """
    st = initial_state(lms, used, face_shape.MEAN_SHAPE, settings.point_weights, settings.focal_prior)
    idx = np.flatnonzero(used)
    R = rotation_matrix(st.rvec[idx])
    face_px = np.exp(st.logs[idx]) * np.ptp(face_shape.MEAN_SHAPE[:, 0])

    def jump(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ang = rotation_angle_deg(R[b] @ R[a].transpose(0, 2, 1))
        shift = np.linalg.norm(st.uv[idx[b]] - st.uv[idx[a]], axis=1) / face_px[a]
        scale = np.abs(st.logs[idx[b]] - st.logs[idx[a]])
        return (ang > c.jump_deg) | (shift > c.jump_shift) | (scale > c.jump_shift)

    n = len(idx)
    step = np.zeros(n, bool)
    step[1:] = jump(np.arange(n - 1), np.arange(1, n))
    glitches, breaks = [], []
    consumed = -1
    for j in np.flatnonzero(step):
        if j == consumed:  # the return step of a glitch
            continue
        if j + 1 < n and step[j + 1] and not jump(np.array([j - 1]), np.array([j + 1]))[0]:
            glitches.append(int(idx[j]))
            consumed = j + 1
        else:
            breaks.append(int(idx[j]))
    return np.array(glitches, int), breaks


def _calibration_frames(n: int, limit: int, breaks: list, stretches: int = 8) -> tuple[np.ndarray, list]:
    """``(frame indices, breaks within them)``: all frames, or ``stretches`` contiguous runs totalling ``limit``.

    Contiguous runs keep neighbouring frames together, so the light smoothing
    of the calibration means what it says; each run starts a new segment.
    """
    if n <= limit:
        return np.arange(n), list(breaks)
    run = max(limit // stretches, 3)
    starts = np.linspace(0, n - run, stretches).round().astype(int)
    idx = np.unique(np.concatenate([np.arange(s, s + run) for s in starts]))
    pos = {int(f): i for i, f in enumerate(idx)}
    sub_breaks = {i for i in range(1, len(idx)) if idx[i] != idx[i - 1] + 1}
    sub_breaks |= {pos[b] for b in breaks if b in pos}
    return idx, sorted(sub_breaks)


def _rigid_errors(res: FitResult) -> np.ndarray:
    """``[N, R]`` reprojection error of the rigid points, pixels (NaN on unused frames)."""
    return np.linalg.norm(res.residuals[:, list(face_shape.RIGID)], axis=-1)


def track_landmarks(
    lms: np.ndarray,
    width: int,
    height: int,
    c: TrackConfig | None = None,
    valid: np.ndarray | None = None,
    pose_scale: float = ModelConfig.pose_scale,
) -> Tracking:
    """Fit head poses, the person's shape and the focal to a clip's landmarks.

    Args:
        lms: ``[N, 68, 2]`` landmarks (x, y) in pixels; NaN rows count as missing.
        width, height: image size, pixels (principal point at the centre, as RAD-NeRF).
        c: settings (defaults when None).
        valid: ``[N]`` bool, frames whose landmarks were detected (not
            interpolated); the others are filled from their neighbours.
        pose_scale: ``model.pose_scale``, for the renderer bound the report names.

    Raises:
        InputError: too few usable frames, or too many frames with pose jumps.
    """
    c = c or TrackConfig()
    lms = np.asarray(lms, float)
    N = lms.shape[0]
    if lms.shape[1:] != (68, 2):
        raise InputError(f"landmarks must be [N, 68, 2], got {list(lms.shape)}", hint="use the 68-point (iBUG) layout")
    used = np.isfinite(lms).all(axis=(1, 2))
    if valid is not None:
        used &= np.asarray(valid, bool)
    if used.sum() < max(c.min_frames, 3):
        raise InputError(
            f"only {int(used.sum())} of {N} frames have a detected face; tracking needs at least {c.min_frames}",
            hint="use a clip where the face is visible most of the time, or lower track.min_frames",
        )
    cx, cy = width / 2.0, height / 2.0
    fixed = float(c.focal) if c.focal is not None else None
    settings = _settings(c, width, height, fixed)

    # Jumps no head makes, seen in independent per-frame poses (no smoothing to hide them): a
    # one-frame excursion is a detector glitch (refitted from neighbours), a lasting one a cut.
    glitches, breaks = _pose_jumps(lms, used, settings, c)
    if len(glitches) + len(breaks) > c.max_flagged_share * N:
        jumps = sorted(set(glitches.tolist()) | set(breaks))
        raise InputError(
            f"the head pose jumps in {len(jumps)} of {N} frames ({common.frames_text(jumps)}); "
            "no head moves like that: the clip has cuts or the landmarks follow different faces",
            hint="cut the clip to one continuous shot (ingest.start / ingest.max_duration), or raise track.jump_deg",
        )
    used = used.copy()
    used[glitches] = False

    # Shape and focal from (stretches of) the clip under light smoothing, which would bend
    # the focal if heavier; poses of all frames after that.
    sub, sub_breaks = _calibration_frames(N, c.calib_frames, breaks)
    prior_settings = _settings(c, width, height, fixed if fixed is not None else settings.focal_prior, calibrate=True)
    calib = bundle_adjust(lms[sub], used[sub], cx, cy, prior_settings, breaks=sub_breaks)
    motion = motion_range_deg(camera_from_head(calib.state, cx, cy)[0][used[sub]])
    still = max(motion[0], motion[1]) < c.min_motion_deg
    assumed = None
    if still:
        # A head that does not turn shows one view: the landmarks tell neither focal from depth
        # nor the face's depth from its pose, and with the depth free the weak shape prior lets
        # the face pitch by tens of degrees (the demo's frontal portrait read -30). Keep the
        # prior's (or the given) focal and the generic face's depth; fit its layout in the image.
        assumed = settings.focal_prior if fixed is None else None
        depth_held = replace(prior_settings, fixed_shape_depth=True)
        calib = bundle_adjust(lms[sub], used[sub], cx, cy, depth_held, breaks=sub_breaks)
        log.log(
            logging.WARNING if assumed is not None else logging.INFO,
            "track: almost no head motion (yaw range %.1f, pitch range %.1f degrees): %s; "
            "the face's depth is the generic face's",
            motion[0], motion[1],
            f"the focal is unconstrained; assuming {assumed:.0f} px (set track.focal=... if you know it)"
            if assumed is not None else f"using track.focal={fixed:g}",
        )
    elif fixed is None:
        calib = bundle_adjust(lms[sub], used[sub], cx, cy, settings, init=calib.state, breaks=sub_breaks)
    shape, focal_fit = calib.state.shape, calib.state.focal

    # Poses of every frame: shape and focal held (the solve is banded, linear in the frames).
    pose_settings = _settings(c, width, height, focal_fit, calibrate=False)

    def fit_poses(used_now: np.ndarray, init: FitState | None) -> FitResult:
        if init is None:
            init = initial_state(lms, used_now, shape, pose_settings.point_weights, focal_fit)
        return bundle_adjust(lms, used_now, cx, cy, pose_settings, ref_shape=shape, init=init, breaks=breaks)

    res = fit_poses(used, None)
    # Frames whose landmarks the shape cannot explain (a detector glitch) are refitted from their neighbours.
    frame_err = np.full(N, np.nan)
    frame_err[used] = np.median(_rigid_errors(res)[used], axis=1)
    limit = max(c.outlier_px, 5.0 * float(np.nanmedian(frame_err)))
    outliers = np.flatnonzero(used & (frame_err > limit))
    if len(outliers):
        used = used.copy()
        used[outliers] = False
        if used.sum() < max(c.min_frames, 3):
            raise InputError(
                f"the landmarks of {len(outliers)} frames do not fit a rigid head; {int(used.sum())} usable remain",
                hint="check the landmarks overlays; a cut or a second face in the clip confuses them",
            )
        res = fit_poses(used, res.state)
    outliers = np.union1d(outliers, glitches).astype(int)
    state = res.state
    state.rvec = _fill_from_neighbours(state.rvec, used)
    state.uv = _fill_from_neighbours(state.uv, used)
    state.logs = _fill_from_neighbours(state.logs[:, None], used)[:, 0]
    R, t = camera_from_head(state, cx, cy)
    projected = project(state, cx, cy)

    flagged = np.asarray(breaks, int)
    if len(flagged):
        log.warning("track: pose jumps at frames %s; they are left out of the transforms", flagged.tolist())

    profile = []
    if fixed is None and assumed is None and c.focal_profile:
        profile = focal_profile(
            lms[sub], used[sub], cx, cy, settings, calib.state,
            factors=(0.5, 1.0, 2.0), max_frames=100, iterations=10,
        )
    increase = min(profile[0]["relative_cost"], profile[-1]["relative_cost"]) - 1.0 if profile else np.inf
    constrained = (
        fixed is None and assumed is None and calib.focal_sigma_log_data < c.constrained_sigma
        and increase >= c.profile_min_increase
    )
    if fixed is None and assumed is None and not constrained:
        why = (
            f"fits at half and twice it cost {100 * increase:.1f}% more" if np.isfinite(increase)
            else f"the landmarks alone pin it to +-{100 * calib.focal_sigma_log_data:.0f}%"
        )
        log.warning(
            "track: the clip barely constrains the focal (%s); the estimate %.0f px leans on the prior "
            "centred at %.0f px (set track.focal=... if you know it)",
            why, state.focal, settings.focal_prior,
        )
    sigma_post, sigma_data = calib.focal_sigma_log, calib.focal_sigma_log_data
    if assumed is not None:
        sigma_post, sigma_data = settings.focal_prior_sigma, float("inf")

    rigid = _rigid_errors(res)[used]
    rigid = rigid[np.isfinite(rigid)]
    all_err = np.linalg.norm(res.residuals[used], axis=-1)
    jitter = rotation_jitter_deg(R)
    ang = euler_deg(R)
    report = {
        "frames": N,
        "frames_used": int(used.sum()),
        "frames_filled": [int(i) for i in np.flatnonzero(~used)],
        "outlier_frames": [int(i) for i in outliers],
        "flagged_frames": [int(i) for i in flagged],
        "reprojection_px": {
            "rigid_median": round(float(np.median(rigid)), 4),
            "rigid_p90": round(float(np.percentile(rigid, 90)), 4),
            "rigid_mean": round(float(np.mean(rigid)), 4),
            "all_median": round(float(np.nanmedian(all_err)), 4),
            "per_group_median": {
                name: round(float(np.nanmedian(all_err[:, list(idx)])), 4)
                for name, idx in (
                    ("eye_corners", face_shape.EYE_CORNERS), ("nose", face_shape.NOSE_BRIDGE + face_shape.NOSE_BASE),
                    ("brows", face_shape.BROWS), ("eyelids", face_shape.EYELIDS),
                    ("jaw", face_shape.JAW), ("lips", face_shape.LIPS),
                )
            },
        },
        "focal": {
            "focal_px": round(fixed or assumed or state.focal, 3),
            "source": "fixed (track.focal)" if fixed is not None else ("assumed: no head motion" if assumed else "estimated"),
            "prior_px": round(settings.focal_prior, 3),
            "prior_sigma_log": settings.focal_prior_sigma,
            "sigma_log": round(sigma_post, 5),
            "sigma_log_landmarks_only": round(sigma_data, 5) if np.isfinite(sigma_data) else None,
            "calibration_frames": int(used[sub].sum()),
            "interval_1sigma_px": [
                round(state.focal * float(np.exp(-sigma_post)), 1),
                round(state.focal * float(np.exp(sigma_post)), 1),
            ],
            "constrained_by_clip": bool(constrained),
            "profile": profile,
        },
        "pose_deg": {
            name: {"min": round(float(ang[:, j].min()), 3), "max": round(float(ang[:, j].max()), 3)}
            for j, name in enumerate(("yaw", "pitch", "roll"))
        },
        # What decided whether the focal is estimated (and what the warning quotes): the calibration fit.
        "motion_range_deg": {k: round(float(v), 3) for k, v in zip(("yaw", "pitch", "roll"), motion)},
        "shape_depth": "generic (no head motion)" if still else "fitted",
        "translation_m": {
            axis: {"min": round(float(t[:, j].min()), 4), "max": round(float(t[:, j].max()), 4)}
            for j, axis in enumerate("xyz")
        },
        "jitter_deg": {
            "median": round(float(np.median(jitter)), 5) if len(jitter) else 0.0,
            "rms": round(float(np.sqrt(np.mean(jitter**2))), 5) if len(jitter) else 0.0,
            "p90": round(float(np.percentile(jitter, 90)), 5) if len(jitter) else 0.0,
        },
        "head_box_m": head_box(state.shape, pose_scale),
        "solver": {
            "calibration_iterations": calib.iterations,
            "pose_iterations": res.iterations,
            "cost": round(res.cost, 3),
        },
    }
    # A focal that was given (or assumed) is written exactly, not through exp(log(f)).
    focal = fixed if fixed is not None else (float(assumed) if assumed is not None else state.focal)
    return Tracking(
        R=R, t=t, focal=focal, cx=cx, cy=cy, width=width, height=height, shape=state.shape,
        used=used, flagged=[int(i) for i in flagged], projected=projected, report=report,
    )


# --------------------------------------------------------------------------- RAD-NeRF files


def transforms(tr: Tracking, eye_ratio: np.ndarray | None = None) -> tuple[dict, dict]:
    """RAD-NeRF's ``transforms_train.json`` and ``transforms_val.json`` contents.

    Args:
        tr: a fit.
        eye_ratio: ``[N]`` eye-area ratio per frame (RAD-NeRF's ``eye_ratio``), or None to omit it.
    """
    c2w = tr.c2w()
    N = c2w.shape[0]
    skip = set(tr.flagged)
    split = split_index(N)
    out = []
    for ids in (range(split), range(split, N)):
        frames = []
        for i in ids:
            if i in skip:
                continue
            f = {"img_id": i, "aud_id": i, "transform_matrix": np.round(c2w[i], 8).tolist()}
            if eye_ratio is not None:
                f["eye_ratio"] = round(float(eye_ratio[i]), 6)
            frames.append(f)
        out.append({"focal_len": float(tr.focal), "cx": float(tr.cx), "cy": float(tr.cy), "frames": frames})
    return out[0], out[1]


def eye_ratio_from_landmarks(lms: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[N]``: RAD-NeRF's eye area (both eye polygons, percent of the image) from ``[N, 68, 2]`` landmarks."""
    from radnerf.preprocess.regions import eye_area

    return eye_area(lms, height, width)


def load_eye_ratio(paths: PersonPaths, n: int) -> np.ndarray | None:
    """``[N]`` eye ratio from the regions table (``regions.csv``), or None when it is absent or short."""
    if not paths.regions.exists():
        return None
    rows = read_regions(paths.regions)
    if len(rows) < n:
        return None
    return np.array([r["eye_area"] for r in rows[:n]], float)


def transforms_from_track_params(params: dict, width: int, height: int) -> tuple[dict, dict]:
    """RAD-NeRF's ``save_transforms``: ``track_params.pt`` (focal, euler, trans) -> the two transforms dicts."""
    import torch

    focal = float(torch.as_tensor(params["focal"]).reshape(-1)[0])
    R = radnerf_euler_to_rotation(torch.as_tensor(params["euler"]).double().numpy())
    trans = torch.as_tensor(params["trans"]).double().numpy() / 10.0
    tr = Tracking(
        R=R, t=trans, focal=focal, cx=width / 2.0, cy=height / 2.0, width=width, height=height,
        shape=face_shape.MEAN_SHAPE, used=np.ones(len(R), bool), flagged=[], projected=np.zeros((len(R), 68, 2)),
    )
    return transforms(tr)


def convert_track_params(paths: PersonPaths) -> bool:
    """Write ``transforms_*.json`` from a RAD-NeRF ``track_params.pt`` that has none beside it; True if done.

    Only in a folder ``track`` never ran in (no manifest): the written transforms
    are then foreign outputs, which the stage checks and adopts as they are.
    Call it holding the person lock.

    Raises:
        InputError: the file is not a readable ``track_params.pt``.
    """
    params_file = paths.radnerf_track_params
    if not params_file.exists() or paths.manifest(STAGE).exists():
        return False
    if any(paths.transforms(split).exists() for split in ("train", "val")):
        return False
    import pickle

    import torch

    try:
        params = torch.load(params_file, map_location="cpu", weights_only=True)
        width, height = frame_size(paths)
        train, val = transforms_from_track_params(params, width, height)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, IndexError, pickle.UnpicklingError) as e:
        raise InputError(
            f"{params_file} is not a RAD-NeRF track_params.pt ({e})",
            hint="remove it so `radnerf track` fits the poses, or add overwrite=true",
        ) from None
    write_json_atomic(paths.transforms("train"), train)
    write_json_atomic(paths.transforms("val"), val)
    log.info("track: converted %s to transforms_*.json as RAD-NeRF does", params_file)
    return True


def _accept_radnerf_transforms(paths: PersonPaths):
    """The stage's ``accept_foreign``: both transforms files of another tool, checked, are used as they are.

    Raises:
        InputError: one of them is not a RAD-NeRF transforms file.
    """

    def accept(missing: list[str]) -> str | None:
        absent = [name for name in (paths.rel(paths.transforms(s)) for s in SPLITS) if name in missing]
        if absent:
            return f"{', '.join(absent)} missing"
        for split in SPLITS:
            read_transforms(paths.transforms(split))
        return None

    return accept


# --------------------------------------------------------------------------- the stage


def _upstream(paths: PersonPaths, n: int) -> dict[str, str]:
    """Fingerprints of the landmarks (their manifest's, or the files' of a RAD-NeRF dataset) and the regions table.

    Raises:
        InputError: no landmarks at all.
    """
    lm_manifest = read_manifest(paths.manifest("landmarks"))
    if lm_manifest is not None and lm_manifest.get("fingerprint"):
        upstream = {"landmarks": str(lm_manifest["fingerprint"])}
    else:
        files = [paths.lms(i) for i in range(n)]
        if not any(f.exists() for f in files):
            raise InputError(
                f"no landmarks in {paths.ori_imgs}", hint=f"run `radnerf landmarks person={paths.root.name}` first"
            )
        upstream = {"landmarks": sha256_json([sha256_file(f) if f.exists() else None for f in files])}
    if paths.regions.exists():
        upstream["regions"] = sha256_file(paths.regions)
    return upstream


def track(cfg: RadNerfConfig) -> StageResult:
    """Stage ``track``: fit, then write the transforms, report and plots for ``cfg.person``.

    A re-run with unchanged landmarks and settings does nothing; a RAD-NeRF /
    ER-NeRF dataset (its ``transforms_*.json`` or ``track_params.pt``) is used as is
    unless ``overwrite=true``, which fits new poses over it.

    Returns:
        The stage's result; its ``output`` is ``transforms_train.json``.

    Raises:
        InputError: no landmarks, too few usable frames, pose jumps in too many frames,
            or another tool's transforms that are not in RAD-NeRF's format.
        StageOutputExistsError: only some of another tool's outputs, without ``overwrite``.
    """
    from radnerf.preprocess.landmarks import detected_frames

    c = cfg.track
    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    with person_lock(paths.root):
        if not cfg.overwrite:
            convert_track_params(paths)
        n = frame_count(paths)
        width, height = frame_size(paths)
        plan = StagePlan(
            STAGE, [*(paths.rel(paths.transforms(s)) for s in SPLITS), paths.rel(paths.track)],
            settings={"track": asdict(c), "size": [width, height]},
            upstream=lambda: _upstream(paths, n),
            algorithm=ALGORITHM_VERSION,
        )

        def work(w: StageWriter) -> dict:
            lms = load_landmarks(paths, n, missing="nan")
            detected = detected_frames(lms, read_manifest(paths.manifest("landmarks")))
            tr = track_landmarks(lms, width, height, c, valid=detected, pose_scale=cfg.model.pose_scale)
            eye = load_eye_ratio(paths, n)
            eye_source = "regions.csv"
            if eye is None:
                filled = np.where(np.isfinite(lms), lms, tr.projected)
                eye, eye_source = eye_ratio_from_landmarks(filled, width, height), "landmarks"
            train, val = transforms(tr, eye)
            staged = w.staged
            write_json_atomic(staged.transforms("train"), train)
            write_json_atomic(staged.transforms("val"), val)
            staged.track.mkdir()
            split = {"train": len(train["frames"]), "val": len(val["frames"])}
            write_json_atomic(staged.track_report, dict(tr.report, eye_ratio_source=eye_source, split=split))
            np.savez(  # reproducible: zip entries get ZipInfo's fixed 1980 date
                staged.track_params, R=tr.R, t=tr.t, focal=tr.focal, cx=tr.cx, cy=tr.cy, shape=tr.shape,
                used=tr.used, flagged=np.array(tr.flagged, int), eye_ratio=eye,
            )
            if c.plots:
                tracking_viz.plot_pose_curves(staged.pose_curves, tr)
            for i in common.overlay_indices(n, c.overlay_frames):
                tracking_viz.write_overlay(staged.track_overlay(i), images.read_rgb(paths.frame(i)), tr, i)
            rep = tr.report
            log.info(
                "track: %d frames, focal %.0f px (%s), rigid error median %.2f px, jitter %.3f deg",
                n, tr.focal, rep["focal"]["source"], rep["reprojection_px"]["rigid_median"], rep["jitter_deg"]["median"],
            )
            return {
                "frames": n,
                "width": width,
                "height": height,
                "focal": tr.focal,
                "flagged_frames": tr.flagged,
                "reprojection_px": rep["reprojection_px"],
            }

        return run_stage(paths, plan, work, overwrite=cfg.overwrite, accept_foreign=_accept_radnerf_transforms(paths))
