"""``radnerf demo``: the person flow on the embedded sample (or on ``video=PATH``)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from radnerf.config import RadNerfConfig

log = logging.getLogger("flows.demo")


def demo(cfg: RadNerfConfig) -> "PersonRun":  # noqa: F821
    """Build the sample clip if no video is given, then run the person flow on it.

    The sample is written once to ``<paths.data>/demo.mp4`` and reused, so a
    second demo finds every finished stage up to date.
    """
    from flows.person import run_person
    from radnerf.demo.sample import make_sample

    person = cfg.person or "demo"
    video = cfg.video
    if video is None:
        sample = Path(cfg.paths.data) / "demo.mp4"
        if not sample.exists():
            log.info("building the embedded sample (astronaut portrait + eSpeak NG speech)")
            tmp = sample.with_name(".demo.tmp.mp4")
            make_sample(tmp, cfg.demo)
            tmp.replace(sample)
        video = str(sample)
    return run_person(dataclasses.replace(cfg, person=person, video=video))
