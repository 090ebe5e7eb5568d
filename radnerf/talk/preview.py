"""``radnerf preview person=NAME``: the trained person saying a sentence it never heard, from its model package.

The last stage of a person's pipeline: the video a person looks at first. The speech is
``render.preview_text`` spoken by eSpeak NG (offline, in radnerf's dependencies), so it
exists on any machine and is new to the model; the video is rendered from the model package
(``<person>.radnerf.zip``), exactly what a user ships, not from the training artifacts.
"""

from __future__ import annotations

import copy
import logging

from radnerf.config import RadNerfConfig
from radnerf.errors import InputError
from radnerf.paths import PersonPaths
from radnerf.stage_io import StagePlan, StageResult, run_stage, sha256_file

log = logging.getLogger(__name__)

STAGE = "preview"
VIDEO, SPEECH = "preview.mp4", "preview.wav"


def preview(cfg: RadNerfConfig) -> StageResult:
    """Render ``preview/preview.mp4`` (H.264 with the speech muxed in) and keep its speech as ``preview/preview.wav``.

    Up to date while the package, the text and the render settings are unchanged.

    Raises:
        InputError: the person has no model package yet.
    """
    from radnerf.config import to_container

    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    archive = paths.package_archive
    if not archive.is_file():
        raise InputError(f"{paths.root.name} has no model package ({paths.rel(archive)} is missing)",
                         hint=f"run `radnerf package person={paths.root.name}` after training")
    folder = paths.preview.name
    # What changes the video: not the streaming knobs, nor whether PNGs are written beside it.
    render_keys = {k: v for k, v in to_container(cfg.render).items()
                   if k not in ("preview_text", "png", "realtime", "stream_chunk_ms", "mic_seconds")}
    settings = {"text": cfg.render.preview_text, "render": render_keys,
                "controls": {"pose": cfg.pose, "eyes": cfg.eyes, "bg": cfg.bg}}
    plan = StagePlan(STAGE, outputs=(folder,), settings=settings,
                     upstream=lambda: {paths.rel(archive): sha256_file(archive)},
                     shown=(f"{folder}/{VIDEO}",))

    def work(w) -> dict:
        from radnerf.demo.tts import synthesize
        from radnerf.media import write_wav
        from radnerf.talk.render import render

        out = w.path(folder)
        out.mkdir(parents=True)
        samples, rate = synthesize(cfg.render.preview_text)
        write_wav(out / SPEECH, samples, rate)
        sub = copy.deepcopy(cfg)
        sub.audio, sub.package, sub.out = str(out / SPEECH), str(archive), str(out / VIDEO)
        sub.render.png = False
        result = render(sub)
        (out / VIDEO).with_suffix(".json").unlink(missing_ok=True)  # render's own up-to-date record: the manifest is ours
        log.info("preview: %s says %r", paths.rel(paths.preview_video), cfg.render.preview_text)
        return {"frames": result.frames, "speech_seconds": round(len(samples) / rate, 3),
                "render_fps": round(result.fps, 3)}

    return run_stage(paths, plan, work, overwrite=cfg.overwrite)
