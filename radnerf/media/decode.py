"""Decoding with ffmpeg: frames resampled to a fixed rate, audio to 16 kHz mono.

Time convention, shared by every stage: frame ``i`` shows the source at
``t0 + i / fps`` seconds and audio sample ``j`` is at ``t0 + j / sample_rate``,
where ``t0`` is the start of the video stream (plus any requested ``start``
offset). Audio that starts later than the video is padded with silence, audio
that starts earlier is cut, so ``aud.wav`` and ``ori_imgs/`` share ``t0``.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Optional

import numpy as np

from radnerf.errors import InputError, RadNerfError
from radnerf.media.ffmpeg import run_ffmpeg


def load_audio(
    path: str | Path,
    sample_rate: int = 16000,
    *,
    start: float = 0.0,
    duration: Optional[float] = None,
) -> np.ndarray:
    """Decode the first audio stream of any file ffmpeg reads to mono float32.

    Args:
        path: audio or video file.
        sample_rate: output rate in Hz.
        start: seconds to skip from the beginning of the audio stream.
        duration: seconds to keep; None keeps the rest.

    Returns:
        ``[num_samples]`` float32 in [-1, 1], channels averaged.

    Raises:
        InputError: no audio stream, or the stream cannot be decoded.
    """
    args: list[str] = []
    if start > 0:
        args += ["-ss", f"{start:.6f}"]
    args += ["-i", str(path)]
    if duration is not None:
        args += ["-t", f"{duration:.6f}"]
    args += ["-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    try:
        proc = run_ffmpeg(args, what=f"decoding the audio of {path}", capture_stdout=True)
    except RadNerfError as e:
        if "matches no streams" in e.message or "Stream map" in e.message:
            raise InputError(f"{path} has no audio stream", hint="pass an audio file with audio=PATH") from None
        raise InputError(e.message, hint="check the file plays, or re-encode it with ffmpeg") from None
    samples = np.frombuffer(proc.stdout, dtype="<f4").copy()
    return samples


def align_audio(samples: np.ndarray, offset: float, num_samples: int, sample_rate: int) -> np.ndarray:
    """Shift audio onto the frames' clock and cut or pad it to ``num_samples``.

    Args:
        samples: ``[S]`` audio whose first sample is at ``offset`` seconds after
            the first frame (negative: before it).
        offset: audio start minus video start, in seconds.
        num_samples: length of the output (frames / fps * sample_rate).
        sample_rate: rate of ``samples``.

    Returns:
        ``[num_samples]`` float32: sample ``j`` is at ``j / sample_rate`` after the first frame.
    """
    shift = int(round(offset * sample_rate))
    if shift > 0:
        samples = np.concatenate([np.zeros(shift, np.float32), samples])
    elif shift < 0:
        samples = samples[-shift:]
    if len(samples) >= num_samples:
        return samples[:num_samples].astype(np.float32, copy=False)
    return np.concatenate([samples, np.zeros(num_samples - len(samples), np.float32)])


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write ``[S]`` float audio as 16-bit PCM mono WAV (what RAD-NeRF's tools read)."""
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV written by :func:`write_wav`: ``([S] float32, rate)``."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise InputError(f"{path} is not 16-bit PCM", hint="decode it with load_audio instead")
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        channels = w.getnchannels()
    audio = data.astype(np.float32) / 32768.0
    if channels > 1:
        audio = audio.reshape(-1, channels).mean(axis=1)
    return audio, rate


def extract_frames(
    src: str | Path,
    out_dir: str | Path,
    *,
    fps: int = 25,
    stream_start: float = 0.0,
    video_filter: Optional[str] = None,
    frames: Optional[int] = None,
    jpeg_quality: int = 2,
) -> tuple[int, str]:
    """Write ``out_dir/<i>.jpg`` for i = 0, 1, ... at a constant frame rate.

    Args:
        src: video file.
        out_dir: folder for the JPEGs (created).
        fps: output rate, when ``video_filter`` is not given.
        stream_start: time of frame 0 on ffmpeg's timeline (seconds after the
            container's start), when ``video_filter`` is not given.
        video_filter: a full ``-vf`` chain that starts with an ``fps`` filter.
        frames: stop after this many frames.
        jpeg_quality: ffmpeg ``-q:v`` (1 best .. 31).

    Returns:
        ``(frames written, ffmpeg's error lines)``; non-empty errors with a
        successful exit mean damaged packets that ffmpeg concealed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if video_filter is None:
        # start_time anchors output frame 0 at the stream's start, so frame i
        # is the source frame nearest to stream_start + i / fps.
        video_filter = f"fps=fps={fps}:start_time={stream_start:.6f}:round=near"
    args = ["-i", str(src), "-map", "0:v:0", "-an", "-sn", "-vf", video_filter, "-fps_mode", "passthrough"]
    if frames is not None:
        args += ["-frames:v", str(frames)]
    args += ["-q:v", str(jpeg_quality), "-start_number", "0", str(out / "%d.jpg")]
    proc = run_ffmpeg(args, what=f"decoding the frames of {src}")
    count = sum(1 for _ in out.glob("*.jpg"))
    return count, proc.stderr
