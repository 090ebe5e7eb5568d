"""What a media file holds, read with PyAV (no ffprobe on a fresh machine)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional

from radnerf.errors import InputError


@dataclass(frozen=True)
class VideoStreamInfo:
    """The first video stream of a file."""

    codec: str
    width: int
    height: int
    fps: float
    """Average frame rate (frames over duration); 0 when the container does not say."""
    start: float
    """Start time of the stream in seconds on the container's clock."""
    duration: float
    """Duration of the stream in seconds."""
    frames: int
    """Frame count the container declares (0 when unknown)."""


@dataclass(frozen=True)
class AudioStreamInfo:
    """The first audio stream of a file."""

    codec: str
    sample_rate: int
    channels: int
    start: float
    duration: float


@dataclass(frozen=True)
class MediaInfo:
    path: str
    container: str
    start: float
    """Start time of the container (earliest stream) in seconds; ffmpeg's timeline zero."""
    duration: float
    video: Optional[VideoStreamInfo]
    audio: Optional[AudioStreamInfo]

    def to_dict(self) -> dict:
        return asdict(self)


def _seconds(value: Optional[int], time_base: Optional[Fraction]) -> Optional[float]:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def probe(path: str | Path) -> MediaInfo:
    """Read container and stream facts of ``path``.

    Raises:
        InputError: the file is missing, unreadable or not media ffmpeg understands.
    """
    import av

    p = Path(path)
    if not p.exists():
        raise InputError(f"file not found: {p}", hint="check the path")
    if p.is_dir():
        raise InputError(f"{p} is a folder, not a media file", hint="pass the video file itself")
    try:
        with open(p, "rb"):
            pass
    except OSError as e:
        raise InputError(f"cannot read {p}: {e.strerror}", hint="check the file's permissions") from None
    if p.stat().st_size == 0:
        raise InputError(f"{p} is empty", hint="re-export or re-download the file")
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as e:
        raise InputError(
            f"{p} is not a media file ffmpeg can read ({type(e).__name__})",
            hint="convert it with ffmpeg, or check that the download is complete",
        ) from None
    with container:
        c_duration = container.duration / 1e6 if container.duration else 0.0
        video = audio = None
        vs = next(iter(container.streams.video), None)
        if vs is not None and vs.codec_context is not None and vs.codec_context.width:
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            v_start = _seconds(vs.start_time, vs.time_base) or 0.0
            v_dur = _seconds(vs.duration, vs.time_base) or max(c_duration - v_start, 0.0)
            video = VideoStreamInfo(
                codec=vs.codec_context.name,
                width=int(vs.codec_context.width),
                height=int(vs.codec_context.height),
                fps=float(rate) if rate else 0.0,
                start=v_start,
                duration=v_dur,
                frames=int(vs.frames or 0),
            )
        a = next(iter(container.streams.audio), None)
        if a is not None and a.codec_context is not None and a.codec_context.sample_rate:
            a_start = _seconds(a.start_time, a.time_base) or 0.0
            audio = AudioStreamInfo(
                codec=a.codec_context.name,
                sample_rate=int(a.codec_context.sample_rate),
                channels=int(a.codec_context.channels or 0),
                start=a_start,
                duration=_seconds(a.duration, a.time_base) or max(c_duration - a_start, 0.0),
            )
        return MediaInfo(
            path=str(p),
            container=container.format.name,
            start=container.start_time / 1e6 if container.start_time else 0.0,
            duration=c_duration,
            video=video,
            audio=audio,
        )
