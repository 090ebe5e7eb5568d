"""The person pipeline: its stages in order, and what each finished stage reports.

One list serves everyone: the CLI makes a subcommand of each stage, the Prefect
``person`` flow makes a task of each, ``radnerf preprocess`` runs them in order
and ``dvc.yaml`` mirrors them. A stage appears here when its function works.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radnerf.paths import PersonPaths
from radnerf.stage_io import read_manifest

if TYPE_CHECKING:  # annotations only: the CLI imports this module before it needs omegaconf
    from radnerf.config import RadNerfConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: a plain function ``fn(cfg)`` and how to find its manifest."""

    name: str
    """CLI subcommand and Prefect task name."""
    target: str
    """``module:function`` that does the work."""
    help: str
    example: str
    takes: str = "config"
    """'config': ``fn(cfg)``; 'overrides': an entry point that composes the config itself (``radnerf demo``)."""

    def function(self) -> Callable[[RadNerfConfig], Any]:
        return resolve(self.target)

    def manifest(self, cfg: RadNerfConfig) -> Path:
        """The manifest the stage writes for ``cfg.person``."""
        paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
        if self.name == "audio":  # one manifest per feature file
            from radnerf.audio.backends import manifest_stage

            return paths.manifest(manifest_stage(cfg.audio_features))
        return paths.manifest(self.name)


def resolve(target: str) -> Callable:
    """The function ``module:function`` names, imported on first use (imports stay cheap)."""
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


STAGES: list[Stage] = [
    Stage("ingest", "radnerf.preprocess.ingest:ingest",
       "decode a video into 25 fps frames and aligned 16 kHz mono audio",
       "radnerf ingest person=alice video=alice.mp4 [audio=speech.wav] [ingest.size=512]"),
    Stage("landmarks", "radnerf.preprocess.landmarks:landmarks",
       "68-point landmarks per frame (dlib | fan | mediapipe), gaps filled and flagged",
       "radnerf landmarks person=alice [preprocess.landmarks=fan]"),
    Stage("parse", "radnerf.preprocess.parsing:parse",
       "head / neck / torso / background parsing per frame (offline | bisenet)",
       "radnerf parse person=alice [preprocess.parsing=bisenet]"),
    Stage("background", "radnerf.preprocess.background:background",
       "the static background image bc.jpg",
       "radnerf background person=alice"),
    Stage("torso", "radnerf.preprocess.torso:torso",
       "frames on the background (gt_imgs) and RGBA torso images with the neck in-painted",
       "radnerf torso person=alice"),
    Stage("regions", "radnerf.preprocess.regions:regions",
       "eye-area ratio, face and lip rectangles per frame (regions.csv)",
       "radnerf regions person=alice"),
    Stage("track", "radnerf.preprocess.tracking:track",
       "head pose per frame and camera intrinsics from the landmarks (transforms_*.json)",
       "radnerf track person=alice [track.focal=1200]"),
    Stage("audio", "radnerf.audio:extract_person_features",
       "per-frame audio feature windows aud_<name>.npy (offline | wav2vec2 | hubert)",
       "radnerf audio person=alice [audio_features=hubert]"),
]
BY_NAME = {s.name: s for s in STAGES}

PREPROCESS = [s.name for s in STAGES]
"""What ``radnerf preprocess`` runs: everything before training."""

PLANNED = ["train-head", "finetune-lips", "train-torso", "evaluate", "render"]
"""Stages of the full RAD-NeRF pipeline not built yet (named in summaries, never run)."""


@dataclass
class StageReport:
    """What one stage did: whether it ran or found its outputs up to date, and its numbers."""

    stage: str
    skipped: bool
    seconds: float
    output: str
    metrics: dict[str, float]


def _numbers(data: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[f"{prefix}{key}"] = float(value)
        elif isinstance(value, list) and key not in ("outputs", "shape"):
            out[f"{prefix}{key}_count"] = float(len(value))  # flagged / interpolated frame lists
        elif isinstance(value, dict) and key not in ("settings", "inputs", "probe", "tools", "source"):
            out.update(_numbers(value, f"{prefix}{key}."))
    return out


def run_stage(stage: Stage, cfg: RadNerfConfig) -> StageReport:
    """Run one stage and report it from its manifest (the stage skips itself when up to date)."""
    manifest_path = stage.manifest(cfg)
    before = manifest_path.stat().st_mtime_ns if manifest_path.exists() else None
    started = time.time()
    result = stage.function()(cfg)
    seconds = time.time() - started
    after = manifest_path.stat().st_mtime_ns if manifest_path.exists() else None
    manifest = read_manifest(manifest_path) or {}
    # A stage that skipped itself left its manifest untouched (a result may also say so).
    skipped = bool(getattr(result, "skipped", before is not None and before == after))
    output = str(getattr(result, "root", manifest_path.parent.parent)) if is_dataclass(result) else str(result)
    return StageReport(stage.name, skipped, seconds, output, _numbers(manifest))


def state_text(skipped: bool) -> str:
    """How a summary names a stage's outcome."""
    return "up to date" if skipped else "done"


def report_line(report: dict) -> str:
    """One summary line of a :class:`StageReport` (as a dict, the form Prefect passes around)."""
    return f"  {report['stage']:<11} {state_text(report['skipped']):<10} {report['seconds']:6.1f} s  {report['output']}"


def stages_to_run(cfg: RadNerfConfig) -> list[str]:
    """Every built stage, from ingestion when ``cfg.video`` is given, else from the frames already ingested."""
    return PREPROCESS if cfg.video else PREPROCESS[1:]


@dataclass
class PreprocessResult:
    reports: list[StageReport]

    def summary(self) -> str:
        return "\n".join(report_line(asdict(r)) for r in self.reports)


def preprocess(cfg: RadNerfConfig) -> PreprocessResult:
    """``radnerf preprocess``: every stage before training, in order, each skipped when up to date.

    With ``video=PATH`` it starts from ingestion; without, from the frames already ingested.
    """
    return PreprocessResult([run_stage(BY_NAME[n], cfg) for n in stages_to_run(cfg)])
