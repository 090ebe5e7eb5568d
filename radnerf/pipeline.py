"""The person pipeline: its stages in order, and what each finished stage reports.

One list serves everyone: the CLI makes a subcommand of each stage, the Prefect
``person`` flow makes a task of each, ``radnerf preprocess`` runs them in order
and ``dvc.yaml`` mirrors them. A stage appears here when its function works.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from radnerf.stage_io import StageResult

if TYPE_CHECKING:  # annotations only: the CLI imports this module before it needs omegaconf
    from radnerf.config import RadNerfConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: a plain function ``fn(cfg) -> StageResult`` and how the CLI presents it."""

    name: str
    """CLI subcommand and Prefect task name."""
    target: str
    """``module:function`` that does the work."""
    help: str
    example: str
    takes: str = "config"
    """'config': ``fn(cfg)``; 'overrides': an entry point that composes the config itself (``radnerf demo``)."""

    def function(self) -> Callable[[RadNerfConfig], StageResult]:
        return resolve(self.target)



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


def run_stage(stage: Stage, cfg: RadNerfConfig) -> StageResult:
    """Run one stage; it skips itself when up to date and says so in its :class:`StageResult`."""
    return stage.function()(cfg)


def report_line(result: StageResult) -> str:
    """One summary line of a stage's result."""
    return f"  {result.stage:<11} {result.state:<10} {result.seconds:6.1f} s  {result.output}"


def stages_to_run(cfg: RadNerfConfig) -> list[str]:
    """Every built stage, from ingestion when ``cfg.video`` is given, else from the frames already ingested."""
    return PREPROCESS if cfg.video else PREPROCESS[1:]


@dataclass
class PreprocessResult:
    results: list[StageResult]

    def summary(self) -> str:
        return "\n".join(report_line(r) for r in self.results)


def preprocess(cfg: RadNerfConfig) -> PreprocessResult:
    """``radnerf preprocess``: every stage before training, in order, each skipped when up to date.

    With ``video=PATH`` it starts from ingestion; without, from the frames already ingested.
    """
    return PreprocessResult([run_stage(BY_NAME[n], cfg) for n in stages_to_run(cfg)])
