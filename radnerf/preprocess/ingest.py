"""Video ingestion: any container ffmpeg reads -> frames at 25 fps + aligned 16 kHz audio.

Outputs under ``<artifacts>/<person>/`` (RAD-NeRF names)::

    ori_imgs/<i>.jpg         i = 0 .. N-1, frame i shows the source at t0 + i / fps
    aud.wav                  16 kHz mono PCM, sample j at t0 + j / 16000, N / fps seconds long
    manifests/ingest.json    source hash, sizes, counts, durations, speech share, tool versions

A clip whose audio is mostly not speech (silero-vad: music, noise, silence) is
refused below ``ingest.min_speech_share``: the head learns the mouth from it.
"""

from __future__ import annotations

import logging
import math
import platform
import re
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np

from radnerf import __version__
from radnerf.config import IngestConfig, RadNerfConfig
from radnerf.errors import ConfigError, InputError, StageOutputExistsError
from radnerf.media import (
    align_audio,
    extract_frames,
    ffmpeg_version,
    load_audio,
    probe,
    write_wav,
)
from radnerf.media.images import image_size
from radnerf.media.probe import MediaInfo
from radnerf.paths import PersonPaths, validate_person
from radnerf.stage_io import StagePlan, StageResult, StageWriter, run_stage, sha256_file

log = logging.getLogger(__name__)

STAGE = "ingest"


def _parse_crop(crop: str) -> Optional[str]:
    """The ffmpeg crop filter for ``IngestConfig.crop``, or None for no crop."""
    value = crop.strip().lower()
    if value in ("", "none"):
        return None
    if value == "center":
        # Expressions, so a rotated phone video is cropped after ffmpeg's autorotate.
        return "crop='2*trunc(min(iw,ih)/2)':'2*trunc(min(iw,ih)/2)'"
    m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*", value)
    if not m:
        raise ConfigError(
            f"ingest.crop={crop!r} is not understood",
            hint="use 'none', 'center' or 'x,y,w,h' in source pixels, e.g. ingest.crop='100,0,512,512'",
        )
    x, y, w, h = (int(g) for g in m.groups())
    if w < 16 or h < 16:
        raise ConfigError(f"ingest.crop={crop!r} is smaller than 16x16 pixels")
    return f"crop={w}:{h}:{x}:{y}"


def _check_crop_bounds(crop: str, info: MediaInfo) -> None:
    m = re.fullmatch(r"crop=(\d+):(\d+):(\d+):(\d+)", crop)
    assert info.video is not None
    if m:
        w, h, x, y = (int(g) for g in m.groups())
        if x + w > info.video.width or y + h > info.video.height:
            raise ConfigError(
                f"ingest.crop x,y,w,h={x},{y},{w},{h} reaches outside the "
                f"{info.video.width}x{info.video.height} video"
            )


def plan_frames(info: MediaInfo, c: IngestConfig) -> tuple[float, int]:
    """Start of frame 0 on ffmpeg's timeline and the number of frames to write.

    Frame ``i`` is at ``t0 + i / fps``; only frames before the end of the video
    stream are kept, with the last one rounded to the nearest (as ffmpeg's fps
    filter rounds), so an 8.00 s clip gives 200 frames and 33.6 s gives 840.
    """
    assert info.video is not None
    v = info.video
    t0 = (v.start - info.start) + c.start
    available = (v.start - info.start) + v.duration - t0
    if c.max_duration is not None:
        available = min(available, c.max_duration)
    frames = int(math.floor(available * c.fps + 0.5)) if available > 0 else 0
    return t0, frames


def ingest(cfg: RadNerfConfig) -> StageResult:
    """Ingest ``cfg.video`` (and optionally ``cfg.audio``) for ``cfg.person``.

    A re-run with the same source and settings does nothing; a different source
    for an existing person is refused unless ``overwrite=true``, and so are
    frames radnerf did not write (a RAD-NeRF dataset).

    Returns:
        The stage's result; its ``output`` is the ``ori_imgs`` folder, its metrics
        the manifest's numbers (``frames``, ``width``, ``height``, ``speech_share``, ...).

    Raises:
        ConfigError: missing person/video or bad ingest settings.
        InputError: the video is missing, unreadable, corrupt, too short or has no
            audio, or too little of its audio is speech.
        StageOutputExistsError: the person already holds another video's frames, or frames radnerf did not write.
    """
    c = cfg.ingest
    person = validate_person(cfg.person)
    if not cfg.video:
        raise ConfigError("no video given", hint=f"add video=PATH, e.g. radnerf ingest person={person} video=clip.mp4")
    if c.fps != 25:
        log.warning("ingest.fps=%d: RAD-NeRF's audio windows assume 25 fps", c.fps)
    crop_filter = _parse_crop(c.crop)
    src = Path(cfg.video).expanduser()
    info = probe(src)
    if info.video is None:
        raise InputError(
            f"{src} has no video stream",
            hint="pass a video of the person; audio alone can drive rendering later, not training",
        )
    if crop_filter:
        _check_crop_bounds(crop_filter, info)

    audio_src = Path(cfg.audio).expanduser() if cfg.audio else src
    audio_info = probe(audio_src) if cfg.audio else info
    if audio_info.audio is None:
        if cfg.audio:
            raise InputError(f"{audio_src} has no audio stream", hint="pass a file with sound as audio=PATH")
        raise InputError(
            f"{src} has no audio track",
            hint="supply the person's speech separately: audio=PATH (any file ffmpeg reads, same timing as the video)",
        )
    audio_stream = audio_info.audio

    t0, planned = plan_frames(info, c)
    duration = planned / c.fps
    if duration < max(c.min_duration, 1.0 / c.fps):
        raise InputError(
            f"{src} gives {duration:.2f} s of video after start={c.start}, less than ingest.min_duration={c.min_duration} s",
            hint="use a longer clip (RAD-NeRF learns a person from 3-5 minutes) or lower ingest.min_duration",
        )

    # Paths as given (relative to where radnerf runs), not resolved: the manifest is a DVC
    # output, and the same clip ingested in another clone must give the same bytes.
    source = {"path": str(src), "sha256": sha256_file(src), "size_bytes": src.stat().st_size}
    audio_source = None
    if cfg.audio:
        audio_source = {"path": str(audio_src), "sha256": sha256_file(audio_src)}
    paths = PersonPaths.for_person(cfg.paths.artifacts, person)
    plan = StagePlan(
        STAGE, [paths.rel(paths.ori_imgs), paths.rel(paths.audio_wav)],
        settings=asdict(c),
        upstream={"video": source["sha256"], "audio": audio_source and audio_source["sha256"]},
        shown=[paths.rel(paths.ori_imgs)],
        # The landmarks stage keeps its .lms beside the frames (RAD-NeRF's layout): a re-run
        # of ingest must not delete them. When the frames changed, the landmarks' fingerprint
        # (which holds ingest's) no longer matches, and they are redone.
        keep=[f"{paths.rel(paths.ori_imgs)}/*{paths.lms(0).suffix}"],
    )

    def another_video(previous: dict | None) -> None:
        if previous is None or cfg.overwrite or previous.get("source", {}).get("sha256") == source["sha256"]:
            return
        raise StageOutputExistsError(
            f"person {person!r} was ingested from another video ({previous.get('source', {}).get('path')})",
            hint="choose another person=NAME, or add overwrite=true to replace it and everything made from it",
        )

    def work(w: StageWriter) -> dict:
        if duration < c.recommended_duration:
            log.warning(
                "%s: %.1f s of video; RAD-NeRF learns a person from 3-5 minutes, expect a weak model",
                src.name, duration,
            )
        # The audio first: a clip without speech is refused before its frames are decoded.
        samples = load_audio(audio_src, c.sample_rate)
        if cfg.audio:
            # A separate file's first sample is taken to be at frame 0 (minus start).
            offset = -c.start
        else:
            offset = (audio_stream.start - info.start) - t0
        aligned = align_audio(samples, offset, planned * c.sample_rate // c.fps, c.sample_rate)
        share = _check_speech(aligned, c, audio_src)

        vf = [f"fps=fps={c.fps}:start_time={t0:.6f}:round=near"]
        if crop_filter:
            vf.append(crop_filter)
        if c.size:
            vf.append(
                f"scale=w={c.size}:h={c.size}:force_original_aspect_ratio=decrease:"
                "force_divisible_by=2:flags=area"
            )
        written, ffmpeg_errors = extract_frames(
            src, w.staged.ori_imgs, video_filter=",".join(vf), frames=planned, jpeg_quality=c.jpeg_quality
        )
        frames = planned
        lost = frames - written
        if written == 0 or lost > c.max_decode_loss * frames:
            raise InputError(
                f"{src}: the video stream is corrupt, {written} of {frames} frames decoded"
                + (f" ({ffmpeg_errors.strip().splitlines()[0]})" if ffmpeg_errors.strip() else ""),
                hint="re-export or re-download the file, or cut the damaged part with ingest.max_duration",
            )
        if lost > 0:
            log.warning("%s: %d frames at the end could not be decoded; keeping %d", src.name, lost, written)
            frames = written
        if ffmpeg_errors.strip():
            log.warning("%s: ffmpeg concealed damaged packets: %s", src.name, ffmpeg_errors.strip().splitlines()[0])

        num_samples = frames * c.sample_rate // c.fps
        aligned = aligned[:num_samples]
        audio_seconds_available = len(samples) / c.sample_rate + offset
        if audio_seconds_available < 0.5 * frames / c.fps:
            log.warning(
                "%s: audio covers only %.1f of %.1f s of video; the rest is silence",
                audio_src.name, max(audio_seconds_available, 0.0), frames / c.fps,
            )
        write_wav(w.staged.audio_wav, aligned, c.sample_rate)

        width, height = image_size(w.staged.frame(0))
        log.info("ingest: %d frames %dx%d at %d fps, %.2f s", frames, width, height, c.fps, frames / c.fps)
        return {
            "person": person,
            "source": source,
            "audio_source": audio_source,
            "frames": frames,
            "fps": c.fps,
            "width": width,
            "height": height,
            "duration": frames / c.fps,
            "audio": {
                "sample_rate": c.sample_rate,
                "samples": num_samples,
                "source_sample_rate": audio_stream.sample_rate,
                "source_channels": audio_stream.channels,
                "offset_seconds": offset,
                "peak": float(abs(aligned).max()) if len(aligned) else 0.0,
            },
            "speech_share": round(share, 4),
            "probe": info.to_dict(),
            "tools": {
                "radnerf": __version__,
                "ffmpeg": ffmpeg_version(),
                "python": platform.python_version(),
            },
        }

    return run_stage(
        paths, plan, work, overwrite=cfg.overwrite, guard=another_video,
        # Frames radnerf did not ingest (a RAD-NeRF dataset, even one a later stage adopted) are never replaced.
        accept_foreign=lambda missing: "ingest replaces only frames and audio it wrote itself",
    )


def _check_speech(aligned: np.ndarray, c: IngestConfig, audio_src: Path) -> float:
    """Share of ``aligned: [S]`` (the 16 kHz track) that is speech, logged; refused below ``c.min_speech_share``.

    Raises:
        InputError: less speech than ``ingest.min_speech_share``.
    """
    from radnerf.audio.vad import speech_share

    share = speech_share(aligned, c.sample_rate)
    log.info("aud.wav: %.0f%% speech", 100 * share)
    if share < c.min_speech_share:
        raise InputError(
            f"{audio_src}: only {100 * share:.0f}% of the audio is speech, less than "
            f"ingest.min_speech_share={c.min_speech_share:g} (silero-vad); the head would learn nothing from it",
            hint="use a clip of the person speaking (or their speech as audio=PATH), "
            "or add ingest.min_speech_share=0 to accept this audio as it is",
        )
    return share
