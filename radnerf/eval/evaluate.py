"""``radnerf evaluate person=NAME [audio=PATH] [eval.audio=[a.wav,b.wav]]``: the numbers a model is judged by.

Self-driven (the person's own audio, every frame of the clip in order, each with its own tracked pose
and eyes): on the **val** frames, PSNR of the whole frame and of the face and lip rectangles, LPIPS
(AlexNet) and LMD (mouth landmarks, one backend for every row). Beside the model, in the same table:
the no-audio head (``radnerf train-baseline``, when trained) and a still frame (the first training
frame, repeated), so every report shows what audio buys.

Lip sync, on whole videos: the mouth-audio correlation (:mod:`radnerf.eval.lipsync`, offline) and,
where SyncNet's weights are present, LSE-D / LSE-C (:mod:`radnerf.eval.syncnet`); for the real clip
with its audio (the reference), the model and the baselines speaking the person's own audio, and
each cross-driven ``audio``. A metric that cannot be computed here is reported as unavailable, with
the reason and the command that makes it available, never as a number.

Writes ``eval/``: ``metrics.json`` (the numbers, nested ``{split: {variant: {metric: value}}}``: DVC's metrics),
``records.json`` (every metric with its unit and backend, or why it is unavailable, and the head measured),
``psnr_frames.csv`` (each frame's PSNR per variant: DVC's plot) and the report (:mod:`radnerf.eval.report`).
"""

from __future__ import annotations

import csv
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from radnerf import __version__
from radnerf.config import RadNerfConfig, to_container
from radnerf.errors import InputError, MissingWeightsError
from radnerf.eval import lipsync
from radnerf.eval.metrics import crop, lmd, lpips, psnr
from radnerf.paths import PersonPaths
from radnerf.stage_io import StagePlan, StageResult, report_progress, run_stage, sha256_file, write_json_atomic
from radnerf.talk.clip import Clip
from radnerf.talk.render import Controls, FrameRenderer

log = logging.getLogger(__name__)

STAGE = "evaluate"
ALGORITHM_VERSION = 2
"""Bumped when this module changes the numbers it reports (2: mouth-audio correlation at offset 0)."""
FPS = 25
SAMPLE_RATE = 16000
OUTPUTS = ("metrics.json", "psnr_frames.csv", "records.json", "report.html", "report.md", "mouth.png", "psnr.png",
           "side_by_side.mp4", "val")
"""What it writes in ``eval/``: the stage is done while each is there (DVC removes them before it re-runs one)."""


@dataclass
class Metric:
    """One number of the report (or why there is none)."""

    name: str
    value: float | None
    unit: str
    split: str
    """'val' (self-driven held-out frames), 'clip' (the whole clip, own audio) or 'cross:<audio name>'."""
    variant: str
    """'radnerf', 'no audio', 'still frame' or 'real video'."""
    backend: str = ""
    unavailable: str | None = None
    """Why there is no value (and how to get one)."""

    def row(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != ""}


@dataclass
class Evaluation:
    """What :func:`evaluate_person` measured and rendered."""

    metrics: list[Metric] = field(default_factory=list)
    videos: dict[str, list[np.ndarray]] = field(default_factory=dict)
    """Self-driven renders of the whole clip ``{variant: [K] frames}`` (the report's side-by-side)."""
    real: list[np.ndarray] = field(default_factory=list)
    val_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Positions of the val frames in the clip order."""
    img_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """``[K]`` the img_id of each frame of the clip order (``gt_imgs/<img_id>.jpg``)."""
    per_frame_psnr: dict[str, list[float]] = field(default_factory=dict)
    openings: dict[str, np.ndarray] = field(default_factory=dict)
    """Mouth opening over the clip ``{variant: [K]}`` (real video included)."""
    openness: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """``[K]`` the own audio's openness signal."""
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def _key(text: str) -> str:
    """A metrics key DVC shows as it is: no spaces, no dots (``no audio`` -> ``no_audio``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")


def metrics_tree(metrics: list[Metric]) -> dict[str, dict[str, dict[str, float]]]:
    """``{split: {variant: {name: value}}}`` of the metrics that have a finite value: ``metrics.json``, which
    ``dvc metrics show`` and ``dvc exp show`` list as ``val.radnerf.psnr``, ``clip.real_video.mouth_audio_corr``;
    a cross-driven split ``cross:speech.wav`` is ``cross_speech``."""
    tree: dict[str, dict[str, dict[str, float]]] = {}
    for m in metrics:
        if m.value is None or not math.isfinite(m.value):
            continue
        kind, _, audio = m.split.partition(":")
        split = f"{kind}_{_key(Path(audio).stem)}" if audio else _key(kind)
        tree.setdefault(split, {}).setdefault(_key(m.variant), {})[m.name] = m.value
    return tree


def write_psnr_frames(path: Path, ev: Evaluation) -> None:
    """``psnr_frames.csv``: ``frame`` (the img_id), ``variant``, ``psnr`` (dB), ``split`` (train | val), one row
    per frame and variant, for ``dvc plots show``. A perfect match (the still frame on itself) has no row."""
    val = {int(k) for k in ev.val_index}
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["frame", "variant", "psnr", "split"])
        for variant, values in ev.per_frame_psnr.items():
            for k, value in enumerate(values):
                if math.isfinite(value):
                    out.writerow([int(ev.img_ids[k]), variant, f"{value:.4f}", "val" if k in val else "train"])


def write_numbers(out: Path, ev: Evaluation, record: dict) -> None:
    """``records.json`` (``record``: what was measured, with every metric's row), ``metrics.json``
    (:func:`metrics_tree`) and ``psnr_frames.csv`` (:func:`write_psnr_frames`) in ``out``."""
    write_json_atomic(out / "records.json", record)
    write_json_atomic(out / "metrics.json", metrics_tree(ev.metrics))
    write_psnr_frames(out / "psnr_frames.csv", ev)


def landmark_backend(name: str, weights_dir: str | None, device: str = "cpu"):
    """``(backend, its name)``: ``auto`` is FAN when its weights are present (what the papers use), else dlib."""
    from radnerf.preprocess.landmark_backends import check_backend, make_backend

    if name == "auto":
        try:
            check_backend("fan", weights_dir)
            name = "fan"
        except MissingWeightsError:
            name = "dlib"
    return make_backend(name, device=device, weights_dir=weights_dir), name


def clip_order(sets) -> tuple[list[tuple], np.ndarray]:
    """Every frame of the person's splits in time order: ``[(dataset, i)]`` and their img_ids ``[K]``."""
    frames = [(s, i) for s in sets for i in range(len(s))]
    ids = np.array([int(s.img_ids[i]) for s, i in frames])
    order = np.argsort(ids, kind="stable")
    return [frames[j] for j in order], ids[order]


def self_driven(head, torso, clip: Clip, frames: list[tuple], device: torch.device, smooth_audio: bool,
                label: str) -> list[np.ndarray]:
    """``[K]`` frames of ``head`` over ``torso`` speaking the person's own audio, each clip frame with its own
    tracked pose and eyes (not the smoothed, looped poses of ``radnerf render``)."""
    from radnerf.train.head import frame_windows

    controls = Controls(poses=np.stack([s.poses[i] for s, i in frames]), eyes=np.array([s.eye[i] for s, i in frames]),
                        clip_frames=np.arange(len(frames)), background=clip.background)
    ordered = Clip(controls.poses, controls.eyes, clip.background, clip.intrinsics,
                   lambda k: frames[k][0].torso(frames[k][1]))
    renderer = FrameRenderer(head, ordered, device, torso, controls, smooth_audio)
    out = []
    for k, (ds, i) in enumerate(frames):
        out.append(renderer.frame(k, frame_windows(head.model, ds, i, device), controls))
        report_progress(STAGE, k + 1, len(frames), label)
    return out


def evaluate_person(cfg: RadNerfConfig, paths: PersonPaths, device: torch.device) -> Evaluation:
    """Render and measure (see the module's docstring); the work of :func:`evaluate`."""
    from radnerf.audio import extract_features, load_input
    from radnerf.talk.render import person_source, render_frames, video_controls
    from radnerf.train.head import load_head

    source = person_source(cfg)
    head, torso = source.load(device, cfg.render)
    sets = source.splits
    frames, ids = clip_order(sets)
    val_ids = set(int(v) for v in sets[1].img_ids)
    ev = Evaluation()
    ev.val_index = np.array([k for k, i in enumerate(ids) if int(i) in val_ids])
    ev.img_ids = ids
    ev.real = [ds.image(i) for ds, i in frames]
    smooth = cfg.render.smooth_audio
    ev.videos["radnerf"] = self_driven(head, torso, source.clip, frames, device, smooth, "radnerf")
    baseline_file = paths.final_weights("baseline")
    if baseline_file.is_file():
        baseline = load_head(baseline_file, device, cfg.render)
        ev.videos["no audio"] = self_driven(baseline, torso, source.clip, frames, device, smooth, "no audio")
    else:
        log.info("evaluate: no no-audio baseline (run `radnerf train-baseline person=%s` for that row)", paths.root.name)
    ev.videos["still frame"] = [ev.real[0]] * len(frames)  # the first frame of the clip (a training frame)

    detector, backend = landmark_backend(cfg.eval.landmarks, cfg.paths.weights, "cpu")
    real_lms = lipsync.face_landmarks(np.stack(ev.real), detector)
    lp_net, lp_why = None, None
    if "lpips" in cfg.eval.metrics:
        try:
            from radnerf.models.perceptual import load_lpips

            lp_net = load_lpips(cfg.paths.weights, device)
        except MissingWeightsError as e:
            lp_why = f"{e.message} ({e.hint})" if e.hint else e.message
    val = ev.val_index
    val_sets = [frames[k] for k in val]
    for variant, video in ev.videos.items():
        scores = [psnr(video[k], ev.real[k]) for k in val]
        ev.per_frame_psnr[variant] = [psnr(video[k], ev.real[k]) for k in range(len(video))]
        add = ev.metrics.append
        add(Metric("psnr", float(np.mean(scores)), "dB", "val", variant))
        for part, attr in (("face", "face_rects"), ("lips", "lips_rects")):
            values = [psnr(crop(video[k], getattr(ds, attr)[i]), crop(ev.real[k], getattr(ds, attr)[i]))
                      for k, (ds, i) in zip(val, val_sets)]
            add(Metric(f"psnr_{part}", float(np.mean(values)), "dB", "val", variant))
        if lp_net is not None:
            add(Metric("lpips", float(np.mean([lpips(lp_net, video[k], ev.real[k]) for k in val])), "", "val",
                       variant, "alex"))
        elif "lpips" in cfg.eval.metrics:
            add(Metric("lpips", None, "", "val", variant, "alex", unavailable=lp_why))
        lms = lipsync.face_landmarks(np.stack(video), detector)
        distance, used = lmd(lms[val], real_lms[val])
        add(Metric("lmd", distance if used else None, "px", "val", variant, backend,
                   unavailable=None if used else "no face found in the val frames"))
        ev.openings[variant] = lipsync.opening_from_landmarks(lms)
    ev.openings["real video"] = lipsync.opening_from_landmarks(real_lms)

    # Lip sync over the whole clip with the person's own audio: the real video is the reference.
    own = load_input(paths.audio_wav)
    first = int(ids[0]) * SAMPLE_RATE // FPS
    ev.audio = own[first: first + len(frames) * SAMPLE_RATE // FPS]
    ev.openness = lipsync.audio_openness(ev.audio, len(frames), FPS)
    sync = SyncScorer(cfg, detector)
    for variant in ["real video", *ev.videos]:
        video = ev.real if variant == "real video" else ev.videos[variant]
        ev.metrics += sync.metrics(video, ev.openings[variant], ev.openness, ev.audio, "clip", variant, backend)

    # Cross-driven: the model (and the no-audio baseline) speaking other audio.
    audios = [Path(a).expanduser() for a in (*cfg.eval.audio, *([cfg.audio] if cfg.audio else []))]
    for path in audios:
        samples = load_input(path)
        features = extract_features(samples, source.audio_features)
        controls = video_controls(source.clip, len(features), cfg.pose, cfg.eyes, cfg.bg, head.settings["model"])
        video = list(render_frames(head, source.clip, features, device, torso, controls, smooth))
        opening = lipsync.mouth_opening(np.stack(video), detector)
        openness = lipsync.audio_openness(samples, len(video), FPS)
        ev.metrics += sync.metrics(video, opening, openness, samples, f"cross:{path.name}", "radnerf", backend)
        ev.openings[f"cross:{path.name}"] = opening
    return ev


class SyncScorer:
    """The lip-sync metrics of one video: the offline mouth-audio correlation always, SyncNet's LSE-D / LSE-C
    where its weights are present (else a row that says how to get them)."""

    def __init__(self, cfg: RadNerfConfig, detector):
        from radnerf.eval import syncnet

        self.detector = detector
        self.wanted = "sync" in cfg.eval.metrics
        self.why = syncnet.sync_available(cfg.paths.weights) if self.wanted else None
        self.net = syncnet.load_syncnet(cfg.paths.weights) if self.wanted and self.why is None else None

    def metrics(self, video, opening: np.ndarray, openness: np.ndarray, audio: np.ndarray, split: str,
                variant: str, backend: str) -> list[Metric]:
        score = lipsync.mouth_audio_sync(opening, openness)
        corr, at0 = score["best_corr"], score["corr_at_0"]
        still = "the mouth does not move"
        out = [
            Metric("mouth_audio_corr_at_0", None if np.isnan(at0) else float(at0), "", split, variant,
                   f"{backend} landmarks, speech envelope", unavailable=still if np.isnan(at0) else None),
            Metric("mouth_audio_corr", None if np.isnan(corr) else float(corr), "", split, variant,
                   f"{backend} landmarks, speech envelope, best offset in -15..15",
                   unavailable=still if np.isnan(corr) else None),
            Metric("mouth_audio_offset", float(score["best_offset"]) if not np.isnan(corr) else None, "frames",
                   split, variant, unavailable="the mouth does not move" if np.isnan(corr) else None),
            Metric("mouth_opening_std", float(np.nanstd(opening)) if np.isfinite(opening).any() else None, "",
                   split, variant, f"{backend} landmarks", unavailable=None if np.isfinite(opening).any() else
                   "no face found"),
        ]
        if not self.wanted:
            return out
        if self.net is None:
            return out + [Metric(n, None, "", split, variant, "syncnet_v2", unavailable=self.why)
                          for n in ("lse_d", "lse_c")]
        from radnerf.eval import syncnet

        boxes = face_boxes(video, self.detector)
        if boxes is None:
            return out + [Metric(n, None, "", split, variant, "syncnet_v2", unavailable="no face found")
                          for n in ("lse_d", "lse_c")]
        result = syncnet.score_video(self.net, syncnet.face_crops(np.stack(video), boxes), audio)
        return out + [Metric("lse_d", result["lse_d"], "", split, variant, "syncnet_v2"),
                      Metric("lse_c", result["lse_c"], "", split, variant, "syncnet_v2"),
                      Metric("lse_offset", float(result["offset"]), "frames", split, variant, "syncnet_v2")]


def face_boxes(frames, detector) -> np.ndarray | None:
    """``[N, 4]`` the most confident face box ``x0, y0, x1, y1`` of each frame, a frame without one taking the
    nearest frame's (SyncNet's crops follow a face track); None when no frame has a face."""
    boxes = np.full((len(frames), 4), np.nan)
    for k, frame in enumerate(frames):
        faces = detector.detect(np.ascontiguousarray(frame))
        if faces:
            boxes[k] = max(faces, key=lambda f: f.score).box
    found = np.flatnonzero(np.isfinite(boxes[:, 0]))
    if not len(found):
        return None
    nearest = found[np.abs(np.arange(len(frames))[:, None] - found[None, :]).argmin(axis=1)]
    return boxes[nearest]


def evaluate(cfg: RadNerfConfig) -> StageResult:
    """``radnerf evaluate``: measure ``cfg.person``'s trained model; writes ``eval/`` (metrics.json, report).

    Raises:
        InputError: no trained head; an ``audio`` file that does not exist.
    """
    from radnerf.devices import resolve_device
    from radnerf.eval.report import write_report
    from radnerf.stage_io import sha256_json
    from radnerf.train.lips import final_head

    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    head_file = final_head(paths)
    if not head_file.is_file():
        raise InputError(f"{paths.root.name} has no trained head ({paths.rel(head_file)} is missing)",
                         hint=f"run `radnerf train person={paths.root.name}` first")
    audios = [Path(a).expanduser() for a in (*cfg.eval.audio, *([cfg.audio] if cfg.audio else []))]
    for path in audios:  # before anything is rendered
        if not path.is_file():
            raise InputError(f"{path} does not exist", hint="eval.audio=[...] and audio= take files ffmpeg reads")

    def upstream() -> dict[str, str]:
        files = [head_file, paths.final_weights("torso"), paths.final_weights("baseline"), paths.transforms("val"),
                 paths.transforms("train"), paths.audio_wav]
        out = {paths.rel(p): sha256_file(p) for p in files if p.is_file()}
        out.update({f"audio:{p.name}": sha256_file(p) for p in audios})
        return out

    settings = {"eval": to_container(cfg.eval), "smooth_audio": cfg.render.smooth_audio, "torso": cfg.render.torso,
                "controls": [cfg.pose, cfg.eyes, cfg.bg], "weights": _weights_present(cfg)}
    plan = StagePlan(STAGE, outputs=("eval",), settings=settings, upstream=upstream, algorithm=ALGORITHM_VERSION,
                     shown=("eval/report.html", "eval/metrics.json"), check=tuple(f"eval/{n}" for n in OUTPUTS))
    device = torch.device(resolve_device(cfg.train.device, "train.device"))

    def work(w) -> dict:
        out = w.path("eval")
        out.mkdir(parents=True)
        ev = evaluate_person(cfg, paths, device)
        record = {"person": paths.root.name, "radnerf": __version__, "algorithm": ALGORITHM_VERSION,
                  "head": paths.rel(head_file), "head_sha256": sha256_file(head_file),
                  "metrics": [m.row() for m in ev.metrics]}
        write_numbers(out, ev, record)
        write_report(out, paths.root.name, ev)
        # The val renders as lossless PNGs (the video is H.264), for anyone who computes their own numbers.
        from radnerf.media.images import png_bytes

        for variant in ("radnerf", "no audio"):
            if variant in ev.videos:
                folder = out / "val" / variant.replace(" ", "_")
                folder.mkdir(parents=True)
                for k in ev.val_index:
                    (folder / f"{int(ev.img_ids[k])}.png").write_bytes(png_bytes(ev.videos[variant][k]))
        numbers = {f"{m.name}" + ("" if m.variant == "radnerf" else f"_{m.variant.replace(' ', '_')}")
                   + ("" if m.split == "val" else f"_{m.split.split(':')[0]}"): round(m.value, 4)
                   for m in ev.metrics if m.value is not None and m.split in ("val", "clip")}
        return {"metrics": numbers, "metrics_sha256": sha256_json(record)}

    return run_stage(paths, plan, work, overwrite=cfg.overwrite)


def _weights_present(cfg: RadNerfConfig) -> dict[str, bool]:
    """Which optional metric weights are here: fetching one makes a finished evaluation out of date."""
    from radnerf.weights import local_path

    return {name: local_path(name, cfg.paths.weights) is not None for name in ("alexnet", "syncnet", "fan")}
