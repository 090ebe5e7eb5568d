"""``radnerf demo``: the person flow on the embedded sample (or on ``video=PATH``), ending in a talking video."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from radnerf.config import RadNerfConfig, load_config

log = logging.getLogger("flows.demo")


def person_from_filename(video: str) -> str:
    """A valid person name from a video's file name (``Alice Smith.mp4`` -> ``Alice_Smith``)."""
    stem = re.sub(r"[^A-Za-z0-9_.\-]+", "_", Path(video).stem).strip("._-") or "person"
    return stem[:64]


def demo(overrides: list[str]) -> PersonRun:  # noqa: F821
    """Build the sample clip if no video is given, run the person flow on it, then render the person
    saying a sentence it never heard (``demo.unheard_text``, eSpeak NG) to ``renders/unheard.mp4``.

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
    run = PersonRun.from_dict(person(person=name, video=video, preset=None, overrides=list(overrides)))
    run.video = str(speak_unheard(load_config([*overrides, f"person={name}"])))
    return run


def speak_unheard(cfg: RadNerfConfig) -> Path:
    """The trained person saying ``demo.unheard_text``: ``renders/unheard.mp4`` (its speech beside it as WAV),
    rendered from the person's model package (what a user ships), not from the training artifacts."""
    from radnerf.demo.tts import synthesize
    from radnerf.media import write_wav
    from radnerf.paths import PersonPaths
    from radnerf.talk import render

    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    speech = paths.renders / "unheard.wav"
    samples, rate = synthesize(cfg.demo.unheard_text)
    speech.parent.mkdir(parents=True, exist_ok=True)
    write_wav(speech, samples, rate)  # the same bytes every time: the render's fingerprint holds
    cfg.audio = str(speech)
    cfg.package = str(paths.package_archive)
    cfg.out = str(paths.renders / "unheard.mp4")
    result = render(cfg)
    log.info("%s", result.summary())
    return result.video

