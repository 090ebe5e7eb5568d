"""The one place that knows where a person's files live.

Everything for person ``P`` lives under ``<artifacts>/P/`` with RAD-NeRF's
on-disk names, so a dataset processed by RAD-NeRF or ER-NeRF loads as it is
and ours can be read by their tools::

    artifacts/P/
      ori_imgs/0.jpg 1.jpg ...  frames at 25 fps, unpadded as RAD-NeRF names them
      aud.wav                   16 kHz mono audio aligned to the frames
      ori_imgs/<i>.lms          68 landmarks per frame
      parsing/<i>.png           head / neck / torso / background colours
      bc.jpg                    the static background
      gt_imgs/<i>.jpg           frames on that background
      torso_imgs/<i>.png        RGBA torso, neck in-painted
      regions.csv               eye ratio, face and lip rectangles
      transforms_{train,val}.json   poses and intrinsics (NeRF convention)
      aud_<name>.npy            [N, 16, C] audio windows (eo, hu, ph)
      overlays/, track/         images and reports for a visual check
      manifests/<stage>.json    what each finished stage consumed and wrote
      head/                     head model: checkpoints/step_<n>.pt, head.pt (final), occupancy grid
      lips/                     the head after lip fine-tuning: checkpoints/, lips.pt (what rendering prefers)
      torso/                    torso model: checkpoints/step_<n>.pt, torso.pt
      baseline/                 the no-audio head (model.audio=false) evaluation sets beside the head
      eval/                     metrics.json, records.json, psnr_frames.csv, report (video, plots, summary)
      renders/<name>.mp4        videos rendered from any audio
      package/, P.radnerf.zip   the model package: renders with no training data (radnerf.talk.package)
      preview/preview.mp4       the person saying a sentence it never heard, from the package (radnerf.talk.preview)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from radnerf.errors import ConfigError

_PERSON_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def validate_person(name: object) -> str:
    """Return ``name`` if it is a safe folder name, else raise :class:`ConfigError`.

    A person name becomes a folder, an MLflow run name and a Prefect parameter,
    so it may hold only letters, digits, ``_``, ``-`` and ``.`` (not first),
    at most 64 characters, and never ``..``.
    """
    if name is None or name == "":
        raise ConfigError("no person given", hint="add person=NAME, for example person=alice")
    if not isinstance(name, str):
        raise ConfigError(f"person must be a name, got {name!r}", hint="add person=NAME")
    if "/" in name or "\\" in name or ".." in name or not _PERSON_RE.match(name):
        raise ConfigError(
            f"invalid person name {name!r}",
            hint="use 1-64 letters, digits, '_', '-' or '.', not starting with '.' "
            "and without path separators or '..'",
        )
    return name


@dataclass(frozen=True)
class PersonPaths:
    """Paths of one person's artifacts (RAD-NeRF names where they exist)."""

    root: Path

    @classmethod
    def for_person(cls, artifacts: str | Path, person: str) -> PersonPaths:
        return cls(Path(artifacts) / validate_person(person))

    # -- ingest ---------------------------------------------------------------
    @property
    def ori_imgs(self) -> Path:
        return self.root / "ori_imgs"

    @property
    def audio_wav(self) -> Path:
        return self.root / "aud.wav"

    def frame(self, index: int) -> Path:
        """Path of frame ``index``; unpadded, as RAD-NeRF's loaders expect."""
        return self.ori_imgs / f"{index}.jpg"

    # -- preprocessing ---------------------------------------------------------
    def lms(self, index: int) -> Path:
        """68 landmarks of frame ``index`` (``np.savetxt`` of ``[68, 2]``), beside the frame."""
        return self.ori_imgs / f"{index}.lms"

    @property
    def parsing(self) -> Path:
        return self.root / "parsing"

    def parsing_image(self, index: int) -> Path:
        """Colour-coded head / neck / torso / background parsing, as RAD-NeRF's face_parsing writes it."""
        return self.parsing / f"{index}.png"

    @property
    def gt_imgs(self) -> Path:
        return self.root / "gt_imgs"

    def gt_image(self, index: int) -> Path:
        """Frame ``index`` on the extracted background."""
        return self.gt_imgs / f"{index}.jpg"

    @property
    def torso_imgs(self) -> Path:
        return self.root / "torso_imgs"

    def torso_image(self, index: int) -> Path:
        """RGBA torso without the head, neck in-painted."""
        return self.torso_imgs / f"{index}.png"

    @property
    def background_image(self) -> Path:
        return self.root / "bc.jpg"

    @property
    def regions(self) -> Path:
        """Per frame: eye-area ratio, face and lip rectangles."""
        return self.root / "regions.csv"

    @property
    def overlays(self) -> Path:
        """Images for a visual check of each stage."""
        return self.root / "overlays"

    def overlay(self, stage: str, index: int) -> Path:
        """``overlays/<stage>_<i>.jpg``: frame ``i`` as ``stage`` saw it."""
        return self.overlays / f"{stage}_{index}.jpg"

    # -- audio ------------------------------------------------------------------
    def audio_features(self, name: str) -> Path:
        """``aud_<name>.npy``: RAD-NeRF's ``eo`` (wav2vec2 esperanto), ER-NeRF's ``hu`` (HuBERT), our ``ph``."""
        return self.root / f"aud_{name}.npy"

    # -- tracking -------------------------------------------------------------
    def transforms(self, split: str) -> Path:
        """``transforms_train.json`` / ``transforms_val.json`` in RAD-NeRF's format."""
        return self.root / f"transforms_{split}.json"

    @property
    def track(self) -> Path:
        """The fit's report, parameters and pictures (``track/``)."""
        return self.root / "track"

    @property
    def track_report(self) -> Path:
        """``track/report.json``: reprojection error, focal and how well the clip constrains it, jitter."""
        return self.track / "report.json"

    @property
    def track_params(self) -> Path:
        """``track/params.npz``: rotations, translations, focal, the person's 3D face shape."""
        return self.track / "params.npz"

    @property
    def pose_curves(self) -> Path:
        """``track/pose_curves.png``: yaw, pitch, roll and position over time."""
        return self.track / "pose_curves.png"

    def track_overlay(self, index: int) -> Path:
        """``track/overlay_<i>.jpg``: frame ``i`` with the projected face shape and head axes."""
        return self.track / f"overlay_{index}.jpg"

    @property
    def radnerf_track_params(self) -> Path:
        """``track_params.pt``: RAD-NeRF's own face-tracking result, converted when no transforms exist."""
        return self.root / "track_params.pt"

    # -- models -----------------------------------------------------------------
    @property
    def head(self) -> Path:
        """The head model's folder (``train-head``, ``finetune-lips``)."""
        return self.root / "head"

    @property
    def torso(self) -> Path:
        """The torso model's folder (``train-torso``); not ``torso_imgs``, its training images."""
        return self.root / "torso"

    def model_dir(self, part: str) -> Path:
        """``head/``, ``lips/`` (the head after lip fine-tuning), ``torso/`` or ``baseline/`` (the no-audio head
        evaluation compares with)."""
        if part not in ("head", "lips", "torso", "baseline"):
            raise ValueError(f"part={part!r}: use 'head', 'lips', 'torso' or 'baseline'")
        return self.root / part

    def checkpoints(self, part: str) -> Path:
        """Where a training stage keeps its resumable checkpoints: ``<part>/checkpoints/``."""
        return self.model_dir(part) / "checkpoints"

    def checkpoint(self, part: str, step: int) -> Path:
        """The checkpoint after ``step`` steps (zero-padded, so names sort by step)."""
        return self.checkpoints(part) / f"step_{step:07d}.pt"

    def final_weights(self, part: str) -> Path:
        """The finished model a later stage or render loads: ``head/head.pt``, ``lips/lips.pt``, ``torso/torso.pt``."""
        return self.model_dir(part) / f"{part}.pt"

    def val_renders(self, part: str) -> Path:
        """``<part>/val/``: the finished model's render of every val frame beside the ground truth (PNG)."""
        return self.model_dir(part) / "val"

    def progress_renders(self, part: str) -> Path:
        """``<part>/progress/``: validation renders written while training runs (``step_<n>_<i>.png``)."""
        return self.model_dir(part) / "progress"

    def train_log(self, part: str) -> Path:
        """``<part>/log.csv``: loss, PSNR, learning rate and speed over training."""
        return self.model_dir(part) / "log.csv"

    # -- evaluation and rendering -----------------------------------------------
    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def metrics(self) -> Path:
        """``eval/metrics.json``: the numbers as ``{split: {variant: {metric: value}}}`` (DVC's metrics); every
        metric with its unit and backend, or why it is unavailable, is in ``eval/records.json``."""
        return self.eval / "metrics.json"

    @property
    def renders(self) -> Path:
        return self.root / "renders"

    def render_video(self, name: str) -> Path:
        """``renders/<name>.mp4``: a video rendered from the audio named ``name``."""
        return self.renders / f"{name}.mp4"

    @property
    def package(self) -> Path:
        """``package/``: the model package's folder."""
        return self.root / "package"

    @property
    def package_archive(self) -> Path:
        """``<person>.radnerf.zip``: the model package as one file."""
        return self.root / f"{self.root.name}.radnerf.zip"

    @property
    def preview(self) -> Path:
        """``preview/``: the person saying a sentence it never heard (``preview.mp4``, its speech ``preview.wav``)."""
        return self.root / "preview"

    @property
    def preview_video(self) -> Path:
        return self.preview / "preview.mp4"

    # -- bookkeeping ----------------------------------------------------------
    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    def manifest(self, stage: str) -> Path:
        return self.manifests / f"{stage}.json"

    def pending_marker(self, stage: str) -> Path:
        """Present only while a stage's outputs are being renamed into place (see :mod:`radnerf.stage_io`)."""
        return self.manifests / f".{stage}.pending"

    def rel(self, path: Path) -> str:
        """``path`` relative to the person's folder, as stages declare their outputs (``parsing``, ``bc.jpg``)."""
        return path.relative_to(self.root).as_posix()

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def staging(self) -> Path:
        return self.root / ".staging"
