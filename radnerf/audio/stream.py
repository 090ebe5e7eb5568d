"""Streaming extraction: audio arrives in small chunks, frame windows leave as soon as they are final.

Same chunk grid, context and look-ahead as :mod:`radnerf.audio.extract`, so a
whole file pushed through :class:`FeatureStream` gives exactly what
``extract_features(..., chunk_seconds=cfg.stream_chunk_seconds)`` gives. With
the default (longer) offline chunk, backends whose output depends on the chunk
(the phone decoder, the transformers' attention) differ slightly; the
benchmark reports by how much.

Latency: frame ``i`` (centred at ``i / fps``) needs features up to
``W/2 - 1`` frames after its centre, the rest of their chunk and the
look-ahead, so it is emitted once the audio reaches between
``(W/2 + lookahead)`` and ``(W/2 - 1 + chunk + lookahead)`` x 20 ms past the
frame time, plus the compute time of one chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from radnerf.audio.backends import FeatureBackend, make_backend, new_normalizer
from radnerf.audio.config import AudioFeaturesConfig
from radnerf.audio.extract import padded_slice, seconds_to_frames, to_mono_16k
from radnerf.audio.windows import (
    FEATURE_RATE,
    HOP,
    check_window,
    feature_range,
    features_per_frame,
    num_frames_for,
)
from radnerf.errors import InputError


class FeatureStream:
    """Push 16 kHz audio as it arrives; get ``[n, W, C]`` windows of the frames that became final.

    Usage::

        stream = FeatureStream(cfg)
        for chunk in microphone():           # e.g. 20-40 ms each
            for window in stream.push(chunk):  # [W, C] per video frame, in order
                render(window)
        for window in stream.finish():
            render(window)
    """

    def __init__(self, cfg: AudioFeaturesConfig | None = None, backend: FeatureBackend | None = None):
        self.cfg = cfg = cfg or AudioFeaturesConfig()
        self.window = check_window(cfg.window)
        self.ratio = features_per_frame(cfg.fps)
        self.chunk = seconds_to_frames(cfg.stream_chunk_seconds, "stream_chunk_seconds", 1)
        self.context = seconds_to_frames(cfg.context_seconds, "context_seconds")
        self.lookahead = seconds_to_frames(cfg.lookahead_seconds, "lookahead_seconds")
        self.backend = backend or make_backend(cfg)
        self._normalize = new_normalizer(self.backend)
        self._audio = np.zeros(0, np.float32)
        self._audio_base = 0  # absolute sample index of _audio[0]
        self._received = 0
        self._next_chunk = -self.window // 2  # first feature index of the next chunk to compute
        self._feats = np.zeros((0, self.backend.dim), np.float32)
        self._feat_base = self._next_chunk  # absolute feature index of _feats[0]
        self._next_frame = 0
        self._finished = False

    @property
    def frames_emitted(self) -> int:
        return self._next_frame

    @property
    def lookahead_range_seconds(self) -> tuple[float, float]:
        """(best, worst) audio needed past a frame's time before it is emitted, compute excluded."""
        half = self.window // 2
        return (half + self.lookahead) / FEATURE_RATE, (half - 1 + self.chunk + self.lookahead) / FEATURE_RATE

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add ``[n]`` (or ``[n, channels]``) 16 kHz samples; returns ``[k, W, C]`` newly final windows."""
        if self._finished:
            raise RuntimeError("push() after finish()")
        x = to_mono_16k(samples)
        if x.size:
            if not np.all(np.isfinite(x)):
                raise InputError("audio chunk holds NaN or infinite samples")
            self._audio = np.concatenate([self._audio, np.clip(x, -1.0, 1.0)])
            self._received += len(x)
        while (self._next_chunk + self.chunk + self.lookahead) * HOP <= self._received:
            self._compute(self._next_chunk + self.chunk)
        return self._emit(None)

    def finish(self, num_frames: int | None = None) -> np.ndarray:
        """End of audio: pad with silence and return the remaining windows ``[k, W, C]``.

        ``num_frames`` (default ``ceil(samples / (16000 / fps))``) must not be
        below the frames already emitted.
        """
        if self._finished:
            return np.zeros((0, self.window, self.backend.dim), np.float32)
        self._finished = True
        n = num_frames if num_frames is not None else num_frames_for(self._received, self.cfg.fps)
        if self._received == 0 or n < 1:
            raise InputError("the audio stream ended before any audio arrived")
        if n < self._next_frame:
            raise ValueError(f"num_frames={n} but {self._next_frame} frames were already emitted")
        stop = feature_range(n, self.window, self.cfg.fps)[1]
        while self._next_chunk < stop:
            self._compute(min(self._next_chunk + self.chunk, stop))
        return self._emit(n)

    def _compute(self, k1: int) -> None:
        k0 = self._next_chunk
        seg = self._slice((k0 - self.context) * HOP, (k1 + self.lookahead) * HOP)
        feats = self._normalize(self.backend(seg)[self.context: self.context + k1 - k0])
        self._feats = np.concatenate([self._feats, feats.astype(np.float32)])
        self._next_chunk = k1
        keep_from = (k1 - self.context) * HOP
        if keep_from > self._audio_base:
            self._audio = self._audio[keep_from - self._audio_base:]
            self._audio_base = keep_from

    def _slice(self, start: int, stop: int) -> np.ndarray:
        """Absolute samples ``[start, stop)``, zeros before 0 and past what arrived."""
        # self._audio holds samples [_audio_base, _received).
        return padded_slice(self._audio, start - self._audio_base, stop - self._audio_base)

    def _emit(self, n: int | None) -> np.ndarray:
        half, r = self.window // 2, self.ratio
        computed = self._feat_base + len(self._feats)
        out = []
        while (n is None or self._next_frame < n) and r * self._next_frame + half <= computed:
            a = r * self._next_frame - half - self._feat_base
            out.append(self._feats[a: a + self.window])
            self._next_frame += 1
        first_needed = r * self._next_frame - half
        if first_needed > self._feat_base:
            self._feats = self._feats[first_needed - self._feat_base:]
            self._feat_base = first_needed
        if not out:
            return np.zeros((0, self.window, self.backend.dim), np.float32)
        return np.stack(out)


def stream_features(
    chunks: Iterable[np.ndarray],
    cfg: AudioFeaturesConfig | None = None,
    backend: FeatureBackend | None = None,
) -> Iterator[np.ndarray]:
    """Iterator over ``[W, C]`` frame windows, frame 0 first, from 16 kHz audio chunks as they arrive."""
    stream = FeatureStream(cfg, backend)
    for chunk in chunks:
        yield from stream.push(chunk)
    yield from stream.finish()

