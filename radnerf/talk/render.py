"""``radnerf render``: a person's trained head speaking any audio, as an MP4 with that audio.

For audio of ``N`` frames (25 fps)::

    features = extract_features(audio, the head's backend)           [N, 16, C]
    pose_i, eye_i, background_i  <- the training clip, looped back and forth, poses smoothed over 7 frames
    code_i = 0.35 code_{i-1} + 0.65 audio_net(windows around i)       RAD-NeRF's test-time smoothing
    frame_i = render(head | code_i, eye_i) over torso_i over bc.jpg   frame i shows the audio at i / 25 s

The head is ``lips/lips.pt`` when the lips were fine-tuned from the current
head (:func:`radnerf.train.lips.final_head`). Under it, ``render.torso``: the
trained torso (``torso/torso.pt``, moved by each frame's head pose), or the
torso image of the clip frame whose pose is used, as the head trained on
(``clip``; what ``auto`` falls back to before ``radnerf train-torso``).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from radnerf.config import RadNerfConfig, to_container
from radnerf.data import PersonDataset
from radnerf.devices import resolve_device
from radnerf.errors import ConfigError, InputError
from radnerf.formats.manifests import read_manifest
from radnerf.models import attention_indices, gather_windows
from radnerf.paths import PersonPaths
from radnerf.render import render_image
from radnerf.stage_io import report_progress, sha256_file, sha256_json, write_json_atomic
from radnerf.talk.controls import background_image, eye_track, file_fingerprint, frame_poses, over, pingpong
from radnerf.train.head import TrainedHead, load_head, person_splits
from radnerf.train.lips import final_head
from radnerf.train.torso import TrainedTorso, load_torso, render_frame

log = logging.getLogger(__name__)

AUDIO_SMOOTHING = 0.35
"""Share of the previous frame's audio code kept at test time (paper A.2, RAD-NeRF ``--smooth_lips``)."""
RENDER_VERSION = 2
"""Bumped when this module changes the frames it renders (a rendered video is then redone)."""


@dataclass
class RenderResult:
    """What :func:`render` made."""

    video: Path
    frames: int
    seconds: float
    """Wall time of the rendering (feature extraction included)."""
    skipped: bool = False
    """The video was already there, rendered by the same head from the same audio and settings."""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        if self.skipped:
            return f"render: up to date ({self.frames} frames) -> {self.video}"
        return f"render: {self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} fps) -> {self.video}"


def render(cfg: RadNerfConfig) -> RenderResult:
    """``radnerf render person=NAME [audio=PATH]``: the head speaking ``audio`` (default: the person's own).

    Writes ``artifacts/<person>/renders/<audio name>.mp4`` with the audio muxed in.

    Raises:
        InputError: no trained head, unreadable audio.
        ConfigError: the head was trained on another audio feature backend.
    """
    from radnerf.audio import extract_features
    from radnerf.audio.backends import feature_name
    from radnerf.audio.stage import feature_settings

    started = time.perf_counter()
    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    device = torch.device(resolve_device(cfg.train.device, "train.device"))
    head_file = final_head(paths)  # the lip-fine-tuned head when there is a current one
    if not head_file.exists():
        raise InputError(f"{paths.root.name} has no trained head ({head_file} is missing)",
                         hint=f"run `radnerf train-head person={paths.root.name}` first")
    head = load_head(head_file, device, cfg.render)
    torso_file = paths.final_weights("torso")
    use_torso = cfg.render.torso == "model" or (cfg.render.torso == "auto" and torso_file.is_file())
    if use_torso and not torso_file.is_file():
        raise InputError(f"{paths.root.name} has no trained torso ({torso_file} is missing)",
                         hint=f"run `radnerf train-torso person={paths.root.name}`, or render.torso=clip")
    feature = feature_name(cfg.audio_features)
    trained = head.data["audio_features"]
    if feature != trained:
        raise ConfigError(
            f"the head of {paths.root.name} was trained on '{trained}' audio features, this config extracts "
            f"'{feature}' (audio_features.backend={cfg.audio_features.backend})",
            hint="render with the backend it was trained with (offline: ph, wav2vec2: eo, hubert: hu)",
        )
    sets = person_splits(paths, cfg, trained)
    audio_path = Path(cfg.audio) if cfg.audio is not None else paths.audio_wav
    if not audio_path.is_file():
        raise InputError(f"{audio_path} does not exist", hint="audio=PATH takes any file ffmpeg reads")
    name = audio_path.stem if cfg.audio is not None else f"{paths.root.name}_self"
    out = paths.render_video(name)
    record = out.with_suffix(".json")
    fingerprint = sha256_json({"head": sha256_file(head_file), "audio": sha256_file(audio_path),
                               "torso": sha256_file(torso_file) if use_torso else "clip",
                               "controls": {k: file_fingerprint(getattr(cfg, k)) for k in ("pose", "eyes", "bg")},
                               "features": feature_settings(cfg.audio_features), "render": to_container(head.render),
                               "version": RENDER_VERSION})
    # A mistyped control fails now, before the audio features are extracted (the real ones need their length).
    video_controls(sets, 1, cfg.pose, cfg.eyes, cfg.bg, head.settings["model"], cfg.render.fps)
    done = read_manifest(record)
    if out.exists() and done is not None and done.get("fingerprint") == fingerprint:
        log.info("render: %s is up to date", out)
        return RenderResult(out, int(done.get("frames", 0)), time.perf_counter() - started, skipped=True)
    if cfg.audio is not None:
        features = extract_features(audio_path, cfg.audio_features)
    else:
        features = np.asarray(sets[0].audio, dtype=np.float32)
    if features.shape[-1] != head.data["audio_channels"]:
        raise ConfigError(f"the audio features have {features.shape[-1]} channels, the head was trained on "
                          f"{head.data['audio_channels']}")
    torso = None
    if use_torso:
        torso = load_torso(torso_file, device, cfg.render)
    log.info("render: %s under %s", paths.rel(torso_file) if use_torso else "the clip's torso images",
             paths.rel(head_file))
    controls = video_controls(sets, len(features), cfg.pose, cfg.eyes, cfg.bg, head.settings["model"], cfg.render.fps)
    frames = render_frames(head, sets, features, device, torso, controls, smooth_audio=cfg.render.smooth_audio)
    from radnerf.media.encode import VideoWriter

    train = sets[0]
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        _audio_for_video(audio_path, wav, len(features), cfg.render.fps)
        with VideoWriter(out, cfg.render.fps, train.width, train.height, audio=wav) as video:
            for k, frame in enumerate(frames):
                video.write(frame)
                report_progress("render", k + 1, len(features), "")
    write_json_atomic(record, {"fingerprint": fingerprint, "frames": len(features), "audio": str(audio_path),
                               "head_step": head.data.get("step")})
    result = RenderResult(out, len(features), time.perf_counter() - started)
    log.info("%s", result.summary())
    return result


@dataclass
class Controls:
    """Per-frame pose, eyes and the background of a video of ``N`` frames (:mod:`radnerf.talk.controls`)."""

    poses: np.ndarray
    """``[N, 4, 4]`` camera-to-head poses in the head's normalised space."""
    eyes: np.ndarray
    """``[N]`` eye-area ratios."""
    background: np.ndarray
    """``[H, W, 3]`` uint8."""


def video_controls(sets: tuple[PersonDataset, PersonDataset], n: int, pose: str = "clip", eyes: str = "clip",
                   bg: str = "clip", model: dict | None = None, fps: float = 25.0) -> Controls:
    """The :class:`Controls` of a video of ``n`` frames from ``pose=``, ``eyes=``, ``bg=``
    (:mod:`radnerf.talk.controls`) and the person's clip (train then val frames); ``model``: the head's
    model settings (a pose file is scaled as its training poses were)."""
    clip = [(s, i) for s in sets for i in range(len(s))]
    scale = dict(scale=model["pose_scale"], offset=tuple(model["pose_offset"])) if model else {}
    return Controls(frame_poses(pose, np.stack([s.poses[i] for s, i in clip]), n, **scale),
                    eye_track(eyes, np.array([s.eye[i] for s, i in clip]), pingpong(n, len(clip)), fps),
                    background_image(bg, sets[0].background))


def render_frames(head: TrainedHead, sets: tuple[PersonDataset, PersonDataset], features: np.ndarray,
                  device: torch.device, torso: TrainedTorso | None = None, controls: Controls | None = None,
                  smooth_audio: bool = True):
    """Yield ``[H, W, 3]`` uint8 frames of ``head`` speaking ``features`` ``[N, W, C]`` over ``torso`` (None:
    the clip frames' torso images), posed, blinking and set as ``controls`` say (None: as the clip)."""
    model, grid = head.model, head.grid
    clip = [(s, i) for s in sets for i in range(len(s))]
    order = pingpong(len(features), len(clip))
    controls = controls or video_controls(sets, len(features))
    own_background = controls.background is sets[0].background
    intrinsics = tuple(float(v) for v in sets[0].intrinsics)
    window = model.cfg.attention_window
    previous = None
    if torso is not None:
        torso_code = torso.model.code(None).detach()
        background = torch.from_numpy(controls.background).to(device, torch.float32) / 255.0
    for k in range(len(features)):
        # The no-grad block ends before each yield: grad mode is per thread, and a consumer that stops
        # early would otherwise be left without gradients.
        with torch.no_grad():
            ds, i = clip[order[k]]
            windows = None
            if model.uses_audio:
                rows = attention_indices([k], len(features), window)
                windows = gather_windows(features, rows).to(device)
            cond = model.condition(windows, float(controls.eyes[k]), None)
            if cond.audio is not None and smooth_audio:
                if previous is not None:
                    cond.audio = AUDIO_SMOOTHING * previous + (1 - AUDIO_SMOOTHING) * cond.audio
                previous = cond.audio
            pose = torch.from_numpy(controls.poses[k]).to(device)
            if torso is not None:
                rgb = render_frame(head, torso.model, pose, cond, torso_code, background)
            else:
                behind = ds.head_background(i) if own_background else over(ds.torso(i), controls.background)
                bg = torch.from_numpy(behind).to(device, torch.float32) / 255.0
                rgb = render_image(pose, intrinsics, ds.height, ds.width, grid,
                                   lambda x, d, c=cond: model(x, d, c), options=head.render, background=bg)["rgb"]
            frame = (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
        yield frame


def _audio_for_video(source: Path, out: Path, frames: int, fps: int) -> None:
    """The audio as 16 kHz mono WAV exactly ``frames / fps`` s long (what the features were computed on)."""
    from radnerf.audio import load_input
    from radnerf.media import write_wav

    samples = load_input(source)
    n = int(round(frames * 16000 / fps))
    samples = np.pad(samples, (0, max(0, n - len(samples))))[:n]
    write_wav(out, samples, 16000)
