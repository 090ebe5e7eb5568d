"""The per-frame preprocessing stages in dependency order, for callers that want them all."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def frame_stages() -> list[tuple[str, Callable[[Any], Path]]]:
    """``[(name, stage function)]``: landmarks, parse, background, torso, regions (each needs the ones before)."""
    from radnerf.preprocess.background import background
    from radnerf.preprocess.landmarks import landmarks
    from radnerf.preprocess.parsing import parse
    from radnerf.preprocess.regions import regions
    from radnerf.preprocess.torso import torso

    return [("landmarks", landmarks), ("parse", parse), ("background", background), ("torso", torso), ("regions", regions)]


def preprocess_frames(cfg: Any) -> dict[str, Path]:
    """Run every per-frame stage after ingest; finished stages with unchanged inputs are skipped.

    Returns:
        ``{stage name: its main output}``.
    """
    return {name: stage(cfg) for name, stage in frame_stages()}
