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

The same from a model package (``model=PATH``, :mod:`radnerf.talk.package`): its head, torso, clip
tracks and audio feature settings, with none of the person's artifacts present. Both are a
:class:`Source`; :class:`FrameRenderer` renders frame after frame for files and streams alike.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from radnerf.config import RadNerfConfig, RenderConfig, to_container
from radnerf.data import PersonDataset
from radnerf.devices import resolve_device
from radnerf.errors import ConfigError, InputError
from radnerf.formats.manifests import read_manifest
from radnerf.media.images import png_bytes
from radnerf.models import attention_indices, gather_windows
from radnerf.paths import PersonPaths
from radnerf.render import render_image
from radnerf.stage_io import report_progress, sha256_file, sha256_json, write_json_atomic
from radnerf.talk.clip import Clip
from radnerf.talk.controls import background_image, eye_track, file_fingerprint, frame_poses, pingpong
from radnerf.train.checkpoint import load_checkpoint
from radnerf.train.head import TrainedHead, load_head, person_splits
from radnerf.train.lips import final_head
from radnerf.train.torso import TrainedTorso, load_torso, render_frame

if TYPE_CHECKING:
    from radnerf.config import AudioFeaturesConfig
    from radnerf.talk.package import ModelPackage

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


@dataclass
class Source:
    """A trained person to render, from the person's artifacts or from a model package."""

    name: str
    """The person's name."""
    head_file: Path
    torso_file: Path | None
    """The trained torso; None: the clip's torso images go under the head."""
    clip: Clip
    audio_features: AudioFeaturesConfig
    """How any audio is turned into the features the head was trained on."""
    renders: Path
    """Where videos go by default (``<renders>/<audio name>.mp4``)."""
    own_audio: Path | None = None
    """The person's own audio and ``[N, 16, C]`` its features (rendered when no ``audio=`` is given)."""
    own_features: np.ndarray | None = None
    splits: tuple[PersonDataset, PersonDataset] | None = None
    """The person's ``(train, val)`` splits the clip was built from (None for a package)."""

    def load(self, device: torch.device, render: RenderConfig | None = None) -> tuple[TrainedHead, TrainedTorso | None]:
        """The head and (when there is one) the torso, ready to render on ``device``."""
        head = load_head(self.head_file, device, render)
        return head, load_torso(self.torso_file, device, render) if self.torso_file is not None else None


@contextlib.contextmanager
def open_source(cfg: RadNerfConfig) -> Iterator[Source]:
    """The :class:`Source` ``cfg`` names: the model package ``model=`` (open while in use), else ``person=``."""
    if cfg.package is not None:
        from radnerf.talk.package import open_package

        with open_package(cfg.package) as pkg:
            yield package_source(cfg, pkg)
    else:
        yield person_source(cfg)


def render(cfg: RadNerfConfig) -> RenderResult:
    """``radnerf render person=NAME [audio=PATH]`` or ``radnerf render model=PACKAGE audio=PATH``: the head
    speaking ``audio`` (default: the person's own), as an MP4 with that audio muxed in.

    Writes ``out=`` or ``artifacts/<person>/renders/<audio name>.mp4`` (from a package:
    ``renders/<person>/<audio name>.mp4`` under the working folder).

    Raises:
        InputError: no trained head, unreadable audio, a damaged package.
        ConfigError: the head was trained on another audio feature backend.
    """
    started = time.perf_counter()
    device = torch.device(resolve_device(cfg.train.device, "train.device"))
    with open_source(cfg) as source:
        return _render(cfg, source, device, started)


def person_source(cfg: RadNerfConfig) -> Source:
    """The :class:`Source` of ``cfg.person``'s artifacts: its final head (:func:`final_head`), its torso as
    ``render.torso`` says, its clip.

    Raises:
        InputError: no trained head; ``render.torso=model`` without a trained torso.
        ConfigError: ``cfg.audio_features`` is not the backend the head was trained on (checked before any
            features are extracted: the real backends load or download a model).
    """
    from radnerf.audio.backends import feature_name

    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    head_file = final_head(paths)  # the lip-fine-tuned head when there is a current one
    if not head_file.exists():
        raise InputError(f"{paths.root.name} has no trained head ({head_file} is missing)",
                         hint=f"run `radnerf train-head person={paths.root.name}` first")
    torso_file = paths.final_weights("torso")
    use_torso = cfg.render.torso == "model" or (cfg.render.torso == "auto" and torso_file.is_file())
    if use_torso and not torso_file.is_file():
        raise InputError(f"{paths.root.name} has no trained torso ({torso_file} is missing)",
                         hint=f"run `radnerf train-torso person={paths.root.name}`, or render.torso=clip")
    trained = load_checkpoint(head_file, kind="head")["settings"]["audio_features"]
    feature = feature_name(cfg.audio_features)
    if feature != trained:
        raise ConfigError(
            f"the head of {paths.root.name} was trained on '{trained}' audio features, this config extracts "
            f"'{feature}' (audio_features.backend={cfg.audio_features.backend})",
            hint="render with the backend it was trained with (offline: ph, wav2vec2: eo, hubert: hu)",
        )
    sets = person_splits(paths, cfg, trained)
    return Source(name=paths.root.name, head_file=head_file, torso_file=torso_file if use_torso else None,
                  clip=Clip.from_splits(sets), audio_features=cfg.audio_features, renders=paths.renders,
                  own_audio=paths.audio_wav, own_features=np.asarray(sets[0].audio, dtype=np.float32), splits=sets)


def package_source(cfg: RadNerfConfig, pkg: ModelPackage) -> Source:
    """The :class:`Source` of an opened model package: its head and torso, its clip, the audio feature
    settings its person was trained on (``cfg.audio_features`` gives only where to run them: device, dtype)."""
    from radnerf.config import AudioFeaturesConfig

    if cfg.render.torso == "clip":
        raise ConfigError("render.torso=clip needs the clip's torso images, which a model package leaves behind",
                          hint="render a package with its trained torso (render.torso=auto), or render "
                               "person=NAME where the person's artifacts are")
    settings = {**to_container(cfg.audio_features), **pkg.audio_settings}
    try:
        features = AudioFeaturesConfig(**settings)
    except TypeError as e:
        raise InputError(f"{cfg.package}: its audio feature settings are not this radnerf's ({e})",
                         hint="make the package again with this radnerf's `radnerf package`") from None
    return Source(name=pkg.person, head_file=pkg.file("head"), torso_file=pkg.file("torso"), clip=pkg.clip,
                  audio_features=features, renders=Path.cwd() / "renders" / pkg.person)


def _render(cfg: RadNerfConfig, source: Source, device: torch.device, started: float) -> RenderResult:
    from radnerf.audio import extract_features
    from radnerf.audio.stage import feature_settings

    head = load_head(source.head_file, device, cfg.render)  # the torso only once the video is known to be due
    if cfg.audio is None and source.own_audio is None:
        raise InputError("a model package carries no audio of its own: say what it should speak",
                         hint="radnerf render model=PACKAGE audio=speech.wav (any file ffmpeg reads)")
    audio_path = Path(cfg.audio).expanduser() if cfg.audio is not None else source.own_audio
    if not audio_path.is_file():
        raise InputError(f"{audio_path} does not exist", hint="audio=PATH takes any file ffmpeg reads")
    name = audio_path.stem if cfg.audio is not None else f"{source.name}_self"
    out = Path(cfg.out).expanduser() if cfg.out is not None else source.renders / f"{name}.mp4"
    if out.suffix.lower() != ".mp4":
        raise ConfigError(f"out={cfg.out!r}: the video is an MP4", hint="out=PATH.mp4")
    record = out.with_suffix(".json")
    torso_file = source.torso_file
    fingerprint = sha256_json({"head": sha256_file(source.head_file), "audio": sha256_file(audio_path),
                               "torso": sha256_file(torso_file) if torso_file is not None else "clip",
                               "clip": sha256_json([source.clip.poses.tolist(), source.clip.eyes.tolist()]),
                               "controls": {k: file_fingerprint(getattr(cfg, k)) for k in ("pose", "eyes", "bg")},
                               "features": feature_settings(source.audio_features),
                               "render": to_container(head.render), "version": RENDER_VERSION})
    # A mistyped control fails now, before the audio features are extracted (the real ones need their length).
    video_controls(source.clip, 1, cfg.pose, cfg.eyes, cfg.bg, head.settings["model"], cfg.render.fps)
    done = read_manifest(record)
    pngs = out.with_name(f"{out.stem}_frames")
    have_pngs = not cfg.render.png or (done is not None and len(list(pngs.glob("*.png"))) == done.get("frames"))
    if out.exists() and done is not None and done.get("fingerprint") == fingerprint and have_pngs:
        log.info("render: %s is up to date", out)
        return RenderResult(out, int(done.get("frames", 0)), time.perf_counter() - started, skipped=True)
    if cfg.audio is not None:
        features = extract_features(audio_path, source.audio_features)
    else:
        features = source.own_features
    if features.shape[-1] != head.data["audio_channels"]:
        raise ConfigError(f"the audio features have {features.shape[-1]} channels, the head was trained on "
                          f"{head.data['audio_channels']}")
    torso = load_torso(torso_file, device, cfg.render) if torso_file is not None else None
    log.info("render: %s under %s", torso_file.name if torso_file is not None else "the clip's torso images",
             source.head_file)
    controls = video_controls(source.clip, len(features), cfg.pose, cfg.eyes, cfg.bg, head.settings["model"],
                              cfg.render.fps)
    frames = render_frames(head, source.clip, features, device, torso, controls, smooth_audio=cfg.render.smooth_audio)
    from radnerf.media.encode import VideoWriter

    out.parent.mkdir(parents=True, exist_ok=True)
    if cfg.render.png:
        shutil.rmtree(pngs, ignore_errors=True)  # frames of an older video must not mix with these
        pngs.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        _audio_for_video(audio_path, wav, len(features), cfg.render.fps)
        with VideoWriter(out, cfg.render.fps, source.clip.width, source.clip.height, audio=wav) as video:
            for k, frame in enumerate(frames):
                video.write(frame)
                if cfg.render.png:
                    (pngs / f"{k:05d}.png").write_bytes(png_bytes(frame))
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
    clip_frames: np.ndarray
    """``[N]`` the clip frame each video frame's pose comes from (its torso image, when there is no torso model)."""
    background: np.ndarray
    """``[H, W, 3]`` uint8."""


def video_controls(clip: Clip, n: int, pose: str = "clip", eyes: str = "clip", bg: str = "clip",
                   model: dict | None = None, fps: float = 25.0) -> Controls:
    """The :class:`Controls` of a video of ``n`` frames from ``pose=``, ``eyes=``, ``bg=``
    (:mod:`radnerf.talk.controls`) and the person's clip; ``model``: the head's model settings (a pose file is
    scaled as its training poses were). Frame ``k``'s controls do not depend on ``n`` (a stream of unknown
    length gets the same frames as the whole file)."""
    scale = dict(scale=model["pose_scale"], offset=tuple(model["pose_offset"])) if model else {}
    order = pingpong(n, len(clip))
    return Controls(frame_poses(pose, clip.poses, n, **scale), eye_track(eyes, clip.eyes, order, fps), order,
                    background_image(bg, clip.background))


class FrameRenderer:
    """Renders a video frame by frame: ``frame(k, windows)`` for ``k = 0, 1, ..`` in order.

    Holds what carries from frame to frame (the smoothed audio code) and what is set up once (the
    torso's code, the background on the device). :func:`render_frames` (a whole file) and
    :class:`radnerf.talk.stream.TalkingStream` (audio arriving in chunks) both render through it.
    """

    def __init__(self, head: TrainedHead, clip: Clip, device: torch.device, torso: TrainedTorso | None = None,
                 controls: Controls | None = None, smooth_audio: bool = True):
        if torso is None and clip.torso_image is None:
            raise ValueError("a clip without torso images renders with a trained torso")
        self.head, self.clip, self.device, self.torso = head, clip, device, torso
        self.controls = controls
        self.smooth_audio = smooth_audio
        self._previous: torch.Tensor | None = None
        self._next = 0
        background = clip.background if controls is None else controls.background
        self._background = torch.from_numpy(np.array(background)).to(device, torch.float32) / 255.0  # a writable copy
        self._torso_code = torso.model.code(None).detach() if torso is not None else None

    def frame(self, k: int, windows: torch.Tensor | None, controls: Controls) -> np.ndarray:
        """``[H, W, 3]`` uint8 frame ``k`` (the next one) from ``windows`` ``[1, T, W, C]``, the audio windows
        around it (None for a head without audio), posed as ``controls`` (covering frame ``k``) say."""
        if k != self._next:
            raise ValueError(f"frame {k} asked for, frame {self._next} is next (frames are rendered in order)")
        self._next += 1
        model = self.head.model
        with torch.no_grad():
            cond = model.condition(windows.to(self.device) if windows is not None else None,
                                   float(controls.eyes[k]), None)
            if cond.audio is not None and self.smooth_audio:
                if self._previous is not None:
                    cond.audio = AUDIO_SMOOTHING * self._previous + (1 - AUDIO_SMOOTHING) * cond.audio
                self._previous = cond.audio
            pose = torch.from_numpy(controls.poses[k]).to(self.device)
            if self.torso is not None:
                rgb = render_frame(self.head, self.torso.model, pose, cond, self._torso_code, self._background)
            else:
                behind = self.clip.behind_head(int(controls.clip_frames[k]), controls.background)
                bg = torch.from_numpy(behind).to(self.device, torch.float32) / 255.0
                intrinsics = tuple(float(v) for v in self.clip.intrinsics)
                rgb = render_image(pose, intrinsics, self.clip.height, self.clip.width, self.head.grid,
                                   lambda x, d, c=cond: model(x, d, c), options=self.head.render,
                                   background=bg)["rgb"]
            return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def render_frames(head: TrainedHead, clip: Clip, features: np.ndarray, device: torch.device,
                  torso: TrainedTorso | None = None, controls: Controls | None = None, smooth_audio: bool = True):
    """Yield ``[H, W, 3]`` uint8 frames of ``head`` speaking ``features`` ``[N, W, C]`` over ``torso`` (None:
    the clip frames' torso images), posed, blinking and set as ``controls`` say (None: as the clip)."""
    controls = controls or video_controls(clip, len(features))
    renderer = FrameRenderer(head, clip, device, torso, controls, smooth_audio)
    window = head.model.cfg.attention_window
    for k in range(len(features)):
        # No grad block spans a yield: grad mode is per thread, and a consumer that stops early would be
        # left without gradients.
        windows = None
        if head.model.uses_audio:
            windows = gather_windows(features, attention_indices([k], len(features), window))
        yield renderer.frame(k, windows, controls)


def _audio_for_video(source: Path, out: Path, frames: int, fps: int) -> None:
    """The audio as 16 kHz mono WAV exactly ``frames / fps`` s long (what the features were computed on)."""
    from radnerf.audio import load_input
    from radnerf.media import write_wav

    samples = load_input(source)
    n = int(round(frames * 16000 / fps))
    samples = np.pad(samples, (0, max(0, n - len(samples))))[:n]
    write_wav(out, samples, 16000)
