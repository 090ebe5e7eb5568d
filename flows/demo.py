"""``radnerf demo``: the person flow on the embedded sample (or on ``video=PATH``), ending in a talking video."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from radnerf.config import load_config

log = logging.getLogger("flows.demo")


def person_from_filename(video: str) -> str:
    """A valid person name from a video's file name (``Alice Smith.mp4`` -> ``Alice_Smith``)."""
    stem = re.sub(r"[^A-Za-z0-9_.\-]+", "_", Path(video).stem).strip("._-") or "person"
    return stem[:64]


def demo(overrides: list[str]) -> PersonRun:  # noqa: F821
    """Build the sample clip if no video is given and run the person flow on it, which ends with the person
    saying a sentence it never heard (``render.preview_text``, eSpeak NG) in ``preview/preview.mp4``.

    The sample is written once to ``<paths.data>/demo.mp4`` and reused, so a
    second demo finds every finished stage (and the video) up to date. The config
    is composed (and so checked) before Prefect starts.
    """
    from flows.person import PersonRun, person
    from radnerf.demo.sample import make_sample

    cfg = load_config(overrides)
    video = cfg.video
    name = cfg.person or (person_from_filename(video) if video else "demo")
    if video is None:
        sample = Path(cfg.paths.data) / "demo.mp4"
        if not sample.exists():
            log.info("building the embedded sample (astronaut portrait + eSpeak NG speech)")
            tmp = sample.with_name(".demo.tmp.mp4")
            make_sample(tmp, cfg.demo)
            tmp.replace(sample)
        video = str(sample)
    return PersonRun.from_dict(person(person=name, video=video, preset=None, overrides=list(overrides)))
