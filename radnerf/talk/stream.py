"""Streaming: audio arrives in chunks (a file read at its own pace, or a microphone), frames leave as soon as
the audio they need is in.

``radnerf stream person=NAME audio=speech.wav`` (or ``model=PACKAGE``, or ``audio=mic``)::

    chunk (40 ms) -> FeatureStream -> audio windows, final once the extractor's look-ahead is in
                  -> frame k once the windows up to k + T/2 - 1 are in (the head's attention looks at
                     T = model.attention_window frames around k) -> FrameRenderer -> frame k

A stream gives the frames :func:`radnerf.talk.render.render_frames` gives for the features the streaming
extractor computes (``audio_features.stream_chunk_seconds`` chunks; a file rendered offline uses longer
chunks, which changes the offline backend's phone decoding slightly).

Latency of frame ``k`` = when it leaves - when the audio at its time (``k / fps``) arrived: the
look-ahead (:attr:`TalkingStream.lookahead_seconds`, the audio the frame must wait for) plus the compute.
A renderer slower than real time falls further behind with every frame; the summary says so.
"""

from __future__ import annotations

import bisect
import logging
import os
import queue
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from radnerf.audio.stream import FeatureStream
from radnerf.config import RadNerfConfig
from radnerf.errors import ConfigError, InputError
from radnerf.models import attention_indices, gather_windows
from radnerf.talk.clip import Clip
from radnerf.talk.render import Controls, FrameRenderer, Source, video_controls
from radnerf.train.head import TrainedHead
from radnerf.train.torso import TrainedTorso

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


class TalkingStream:
    """Push 16 kHz audio as it arrives; get the ``[H, W, 3]`` uint8 frames that became ready, in order.

    Usage::

        stream = TalkingStream(head, clip, cfg.audio_features, torch.device("cpu"), torso)
        for chunk in microphone():            # [n] float32 at 16 kHz, any size
            for frame in stream.push(chunk):
                show(frame)
        for frame in stream.finish():           # the last frames (their look-ahead is silence)
            show(frame)

    ``pose``, ``eyes``, ``bg``: as ``radnerf render``'s (:mod:`radnerf.talk.controls`).
    """

    def __init__(self, head: TrainedHead, clip: Clip, audio_features, device: torch.device,
                 torso: TrainedTorso | None = None, pose: str = "clip", eyes: str = "clip", bg: str = "clip",
                 fps: int = 25, smooth_audio: bool = True, backend=None):
        if audio_features.fps != fps:
            raise ConfigError(f"audio_features.fps={audio_features.fps} but the video is {fps} fps")
        self.head, self.clip, self.fps = head, clip, fps
        self._specs = dict(pose=pose, eyes=eyes, bg=bg, model=head.settings["model"], fps=fps)
        self._controls = video_controls(clip, 64, **self._specs)
        # A head without audio still gets one frame per 40 ms of audio: the extractor counts them.
        self.features = FeatureStream(audio_features, backend)
        self.renderer = FrameRenderer(head, clip, device, torso, self._controls, smooth_audio)
        self.attention = head.model.cfg.attention_window if head.model.uses_audio else 1
        self._windows: list[np.ndarray] = []  # [W, C] windows of frames _base, _base + 1, ...
        self._base = 0
        self._next = 0
        self._total: int | None = None

    @property
    def lookahead_seconds(self) -> tuple[float, float]:
        """(best, worst) seconds of audio past a frame's time that must arrive before it can be rendered:
        the extractor's look-ahead and the head's attention over the next ``T/2 - 1`` frames."""
        best, worst = self.features.lookahead_range_seconds
        ahead = (self.attention // 2 - 1) / self.fps if self.attention > 1 else 0.0
        # A window is final ``best..worst`` after its own centre; the attention waits for a later window.
        return best + ahead, worst + ahead

    @property
    def frames_out(self) -> int:
        return self._next

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add ``[n]`` 16 kHz samples; returns the frames that are now ready (possibly none)."""
        self._windows.extend(self.features.push(samples))
        return self._render_ready()

    def finish(self, num_frames: int | None = None) -> list[np.ndarray]:
        """End of the audio: the remaining frames (default: as many as the audio lasts, rounded up)."""
        self._windows.extend(self.features.finish(num_frames))
        self._total = self._base + len(self._windows)
        return self._render_ready()

    def _render_ready(self) -> list[np.ndarray]:
        ahead = self.attention - 1 - self.attention // 2  # frame k's attention reads windows up to k + ahead
        out = []
        while True:
            k, have = self._next, self._base + len(self._windows)
            if k >= have or (self._total is None and k + ahead >= have):
                break
            windows = None
            if self.head.model.uses_audio:
                # Before the end every row read exists, as offline; at the end rows past it read as zeros.
                rows = attention_indices([k], self._total if self._total is not None else have, self.attention)
                rows = torch.where(rows >= 0, rows - self._base, rows)
                windows = gather_windows(np.stack(self._windows), rows)
            out.append(self.renderer.frame(k, windows, self._controls_through(k)))
            self._next += 1
            drop = max(0, self._next - self.attention // 2 - self._base)  # windows no later frame reads
            del self._windows[:drop]
            self._base += drop
        return out

    def _controls_through(self, k: int) -> Controls:
        """The controls of a video at least ``k + 1`` frames long (frame ``k``'s do not depend on the length)."""
        if k >= len(self._controls.poses):
            self._controls = video_controls(self.clip, max(2 * len(self._controls.poses), k + 1), **self._specs)
        return self._controls


# -- sources of audio --------------------------------------------------------------------------


@dataclass
class Chunk:
    samples: np.ndarray
    """``[n]`` float32 16 kHz."""
    arrived: float
    """``time.perf_counter()`` when its last sample was there (a live source's clock, not when it was read)."""


def paced_file(path: str | Path, chunk_ms: int = 40, realtime: bool = True,
               clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep
               ) -> Iterator[Chunk]:
    """A file as a live source: ``chunk_ms`` chunks, each released when the file played in real time would
    have reached its end (``realtime=False``: as fast as they are read)."""
    from radnerf.audio import load_input

    samples = load_input(path)
    step = max(1, SAMPLE_RATE * chunk_ms // 1000)
    start = clock()
    for i in range(0, len(samples), step):
        part = samples[i:i + step]
        due = start + (i + len(part)) / SAMPLE_RATE
        if realtime:
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        yield Chunk(part, due if realtime else clock())


def microphone(seconds: float, chunk_ms: int = 40, clock: Callable[[], float] = time.perf_counter) -> Iterator[Chunk]:
    """The default microphone for ``seconds`` s (``sounddevice``; PortAudio underneath).

    Raises:
        InputError: sounddevice is not installed, or there is no input device.
    """
    try:
        import sounddevice
    except (ImportError, OSError) as e:
        raise InputError(f"audio=mic needs the sounddevice package and PortAudio ({e})",
                         hint="pip install 'radnerf[mic]' (and apt install libportaudio2), or stream a file: "
                              "audio=speech.wav") from None
    chunks: queue.Queue = queue.Queue()
    step = SAMPLE_RATE * chunk_ms // 1000

    def callback(data, frames, time_info, status):  # runs on PortAudio's thread
        chunks.put(Chunk(np.asarray(data[:, 0], np.float32).copy(), clock()))

    try:
        stream = sounddevice.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=step,
                                         callback=callback)
    except Exception as e:  # noqa: BLE001 - PortAudio's errors have no common base
        raise InputError(f"no microphone to record from ({e})", hint="stream a file instead: audio=speech.wav") from None
    with stream:
        end = clock() + seconds
        while clock() < end:
            try:
                yield chunks.get(timeout=1.0)
            except queue.Empty:
                continue


# -- the command -------------------------------------------------------------------------------


@dataclass
class StreamResult:
    """What :func:`stream` measured."""

    video: Path
    frames: int
    audio_seconds: float
    render_seconds: float
    """Wall time from the first chunk to the last frame."""
    lookahead: tuple[float, float]
    latencies: list[float] = field(default_factory=list)
    """Per frame: seconds from the arrival of the audio at its time to the frame leaving."""
    video_fps: int = 25

    @property
    def fps(self) -> float:
        return self.frames / self.render_seconds if self.render_seconds > 0 else 0.0

    def summary(self) -> str:
        lat = np.asarray(self.latencies) if self.latencies else np.zeros(1)
        pace = ("real time" if self.fps >= 0.98 * self.video_fps
                else f"{self.fps / self.video_fps:.2f}x real time: it falls behind")
        return (f"stream: {self.frames} frames of {self.audio_seconds:.1f} s of audio, {self.fps:.1f} fps "
                f"({pace})\n"
                f"  latency audio in -> frame out: first {lat[0]:.2f} s, median {np.median(lat):.2f} s, "
                f"max {lat.max():.2f} s (of it {self.lookahead[0]:.2f}-{self.lookahead[1]:.2f} s waiting for "
                f"the look-ahead)\n  -> {self.video}")


def run_stream(talking: TalkingStream, chunks: Iterable[Chunk], sink: Callable[[np.ndarray], None],
               clock: Callable[[], float] = time.perf_counter) -> tuple[np.ndarray, list[float], float]:
    """Feed ``chunks`` through ``talking``, hand each frame to ``sink``; returns (the audio received ``[S]``,
    each frame's latency, the wall seconds from the first chunk to the last frame)."""
    ends: list[int] = []  # samples received after each chunk
    arrivals: list[float] = []
    received: list[np.ndarray] = []
    latencies: list[float] = []
    total = 0
    started = None

    def emit(frames: list[np.ndarray]) -> None:
        now = clock()
        for frame in frames:
            # Frame k shows the audio at k / fps: it waited for that sample's chunk at least.
            sample = int(round(len(latencies) * SAMPLE_RATE / talking.fps))
            arrived = arrivals[min(bisect.bisect_right(ends, sample), len(arrivals) - 1)]
            latencies.append(now - arrived)
            sink(frame)

    for chunk in chunks:
        started = chunk.arrived if started is None else started
        received.append(chunk.samples)
        total += len(chunk.samples)
        ends.append(total)
        arrivals.append(chunk.arrived)
        before = len(latencies)
        emit(talking.push(chunk.samples))
        if len(latencies) // talking.fps > before // talking.fps:  # a line a second of video
            log.info("stream: %.1f s of audio in, %d frames out, latency %.2f s", total / SAMPLE_RATE,
                     len(latencies), latencies[-1])
    if started is None:
        raise InputError("the audio stream ended before any audio arrived")
    emit(talking.finish())
    audio = np.concatenate(received) if received else np.zeros(0, np.float32)
    return audio, latencies, clock() - started


def stream(cfg: RadNerfConfig) -> StreamResult:
    """``radnerf stream person=NAME|model=PACKAGE audio=FILE|mic``: render while the audio arrives, at its
    pace (``render.realtime``); writes the frames with that audio to an MP4 and prints latency and FPS."""
    from radnerf.devices import resolve_device
    from radnerf.talk.render import open_source

    if cfg.audio is None:
        raise InputError("radnerf stream needs audio=FILE (read at its own pace) or audio=mic",
                         hint="radnerf stream person=alice audio=speech.wav")
    device = torch.device(resolve_device(cfg.train.device, "train.device"))
    with open_source(cfg) as source:
        return _stream(cfg, source, device)


def _stream(cfg: RadNerfConfig, source: Source, device: torch.device) -> StreamResult:
    from radnerf.media.decode import write_wav
    from radnerf.media.encode import VideoWriter
    from radnerf.media.ffmpeg import run_ffmpeg
    head, torso = source.load(device, cfg.render)
    talking = TalkingStream(head, source.clip, source.audio_features, device, torso, cfg.pose, cfg.eyes, cfg.bg,
                            cfg.render.fps, cfg.render.smooth_audio)
    chunk_ms = cfg.render.stream_chunk_ms
    if cfg.audio == "mic":
        chunks: Iterable[Chunk] = microphone(cfg.render.mic_seconds, chunk_ms)
        name = "mic"
    else:
        path = Path(cfg.audio).expanduser()
        if not path.is_file():
            raise InputError(f"{path} does not exist", hint="audio= takes any file ffmpeg reads, or mic")
        chunks = paced_file(path, chunk_ms, cfg.render.realtime)
        name = path.stem
    out = Path(cfg.out).expanduser() if cfg.out is not None else source.renders / f"{name}_stream.mp4"
    best, worst = talking.lookahead_seconds
    log.info("stream: look-ahead %.2f-%.2f s (features %.2f-%.2f s, attention %d frames); %s",
             best, worst, *talking.features.lookahead_range_seconds, talking.attention,
             "at the audio's own pace" if cfg.render.realtime or cfg.audio == "mic" else "as fast as it renders")
    with tempfile.TemporaryDirectory() as tmp:
        silent = Path(tmp) / "frames.mp4"
        with VideoWriter(silent, cfg.render.fps, source.clip.width, source.clip.height) as video:
            audio, latencies, seconds = run_stream(talking, chunks, video.write)
        wav = Path(tmp) / "audio.wav"
        write_wav(wav, audio, SAMPLE_RATE)
        out.parent.mkdir(parents=True, exist_ok=True)
        # Renamed into place whole (same folder, so atomic): a failed mux leaves no half video at out.
        muxed = out.with_name(f".{out.stem}.{os.getpid()}.mp4")
        try:
            run_ffmpeg(["-y", "-i", str(silent), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                        "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(muxed)],
                       what=f"muxing the streamed frames and audio into {out}")
            os.replace(muxed, out)
        finally:
            muxed.unlink(missing_ok=True)
    return StreamResult(out, len(latencies), len(audio) / SAMPLE_RATE, seconds, (best, worst), latencies,
                        cfg.render.fps)
