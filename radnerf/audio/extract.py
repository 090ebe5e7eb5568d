"""Whole-file extraction: any audio -> ``[num_frames, window, C]`` windows, in bounded chunks.

The 50 Hz features are computed chunk by chunk on a fixed grid that starts at
the first feature the windows read; each chunk is given ``context_seconds`` of
audio before it and ``lookahead_seconds`` after it (zeros outside the file),
and the model's output for that context is dropped. The streaming extractor
uses the same grid and context, so with the same chunk length both give the
same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from radnerf.audio.backends import FeatureBackend, make_backend, new_normalizer
from radnerf.audio.config import AudioFeaturesConfig
from radnerf.audio.windows import (
    FEATURE_RATE,
    HOP,
    SAMPLE_RATE,
    check_window,
    feature_range,
    features_per_frame,
    frame_windows,
    num_frames_for,
)
from radnerf.errors import ConfigError, InputError

log = logging.getLogger(__name__)

_CLIP_LEVEL = 0.999
_CLIP_SHARE = 1e-3
_SILENCE_PEAK = 1e-4


def seconds_to_frames(seconds: float, name: str, minimum: int = 0) -> int:
    """Seconds of a config field as a count of 20 ms feature frames."""
    frames = round(seconds * FEATURE_RATE)
    if frames < minimum:
        raise ConfigError(f"audio_features.{name}={seconds} is below {minimum} x 20 ms")
    return frames


def to_mono_16k(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``[S]``, ``[S, channels]`` or ``[channels, S]`` audio (float or int16) -> ``[S']`` float32 mono 16 kHz."""
    x = np.asarray(audio)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    if x.ndim == 2:
        # Channels are the short axis: no real clip is shorter than 9 samples.
        x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
    elif x.ndim != 1:
        raise InputError(f"audio must be [samples] or [samples, channels], got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if sample_rate != SAMPLE_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(sample_rate), SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, int(sample_rate) // g).astype(np.float32)
    return x


def check_audio(x: np.ndarray, what: str = "audio", window: int = 16) -> np.ndarray:
    """Refuse empty or non-finite audio; warn on silence, clipping and audio shorter than a window."""
    if x.size == 0:
        raise InputError(f"{what} is empty", hint="pass audio with at least one video frame (40 ms) of sound")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what} holds NaN or infinite samples", hint="re-export the audio")
    peak = float(np.max(np.abs(x)))
    if peak > 1.0:
        log.warning("%s: peak %.2f exceeds full scale; clipping to [-1, 1]", what, peak)
        x = np.clip(x, -1.0, 1.0)
    if peak < _SILENCE_PEAK:
        log.warning("%s is silent (peak %.1e): every frame gets the features of silence", what, peak)
    elif np.mean(np.abs(x) >= _CLIP_LEVEL) > _CLIP_SHARE:
        log.warning(
            "%s is clipped (%.2f%% of samples at full scale); features of distorted speech are less reliable",
            what, 100 * float(np.mean(np.abs(x) >= _CLIP_LEVEL)),
        )
    if len(x) < window * HOP:
        log.warning(
            "%s lasts %.3f s, shorter than one %d-frame window (%.2f s): the window is padded with silence",
            what, len(x) / SAMPLE_RATE, window, window * HOP / SAMPLE_RATE,
        )
    return x


def load_input(audio: np.ndarray | str | Path, sample_rate: int = SAMPLE_RATE, window: int = 16) -> np.ndarray:
    """Any audio/video file ffmpeg reads, or an array at ``sample_rate``, as checked 16 kHz mono ``[S]``."""
    if isinstance(audio, (str, Path)):
        path = Path(audio)
        if not path.is_file():
            raise InputError(f"audio file {path} does not exist")
        from radnerf.media import load_audio

        x = load_audio(path, SAMPLE_RATE)  # ffmpeg resamples and mixes channels down
        return check_audio(x, str(path), window)
    return check_audio(to_mono_16k(audio, sample_rate), "audio", window)


def padded_slice(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``audio[start:stop]`` with zeros where the range leaves the signal: ``[stop - start]``."""
    out = np.zeros(stop - start, np.float32)
    a, b = max(start, 0), min(stop, len(audio))
    if b > a:
        out[a - start: b - start] = audio[a:b]
    return out


def iter_feature_chunks(
    audio: np.ndarray,
    backend: FeatureBackend,
    start: int,
    stop: int,
    chunk: int,
    context: int,
    lookahead: int,
    workers: int = 1,
) -> Iterator[tuple[int, np.ndarray]]:
    """Features ``[start, stop)`` chunk by chunk: yields ``(k0, [k1 - k0, C])`` with ``k1 - k0 <= chunk``.

    Chunk ``[k0, k1)`` is computed from audio ``[(k0 - context) * 320, (k1 + lookahead) * 320)``,
    then passed through the backend's normaliser in time order. Chunks are
    independent, so a backend that says ``parallel = True`` (single-threaded
    ones) has them computed by ``workers`` processes; the results are the same.
    """
    normalize = new_normalizer(backend)
    spans = [(k0, min(k0 + chunk, stop)) for k0 in range(start, stop, chunk)]

    def segments():
        for k0, k1 in spans:
            yield padded_slice(audio, (k0 - context) * HOP, (k1 + lookahead) * HOP)

    pool = None
    if workers > 1 and len(spans) > 1 and getattr(backend, "parallel", False):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork: workers start in milliseconds and need no importable __main__
        # (spawn fails under stdin scripts and notebooks). They run only
        # pocketsphinx and numpy, none of the parent's threaded libraries.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(min(workers, len(spans)), mp_context=multiprocessing.get_context(method))
        outputs = pool.map(backend, segments())
    else:
        outputs = map(backend, segments())
    try:
        for (k0, k1), feats in zip(spans, outputs):
            yield k0, normalize(feats[context: context + k1 - k0])
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def compute_features(
    audio: np.ndarray,
    cfg: AudioFeaturesConfig,
    num_frames: int,
    backend: FeatureBackend,
    chunk_seconds: float | None = None,
) -> np.ndarray:
    """The 50 Hz features the windows of ``num_frames`` frames read: ``[r (N - 1) + W, C]``."""
    start, stop = feature_range(num_frames, check_window(cfg.window), cfg.fps)
    chunk = seconds_to_frames(chunk_seconds or cfg.chunk_seconds, "chunk_seconds", 1)
    context = seconds_to_frames(cfg.context_seconds, "context_seconds")
    lookahead = seconds_to_frames(cfg.lookahead_seconds, "lookahead_seconds")
    feats = np.empty((stop - start, backend.dim), np.float32)
    for k0, f in iter_feature_chunks(audio, backend, start, stop, chunk, context, lookahead, cfg.workers):
        feats[k0 - start: k0 - start + len(f)] = f
    return feats


def extract_features(
    audio: np.ndarray | str | Path,
    cfg: AudioFeaturesConfig | None = None,
    *,
    num_frames: int | None = None,
    sample_rate: int = SAMPLE_RATE,
    backend: FeatureBackend | None = None,
    chunk_seconds: float | None = None,
) -> np.ndarray:
    """Per-video-frame audio windows for any audio (training clip or new audio to render).

    Args:
        audio: a file ffmpeg reads (audio or video), or ``[S]`` / ``[S, channels]`` samples.
        cfg: feature settings; defaults to :class:`AudioFeaturesConfig` ().
        num_frames: video frames ``N`` to produce; default ``ceil(S / (16000 / fps))``.
            Longer than the audio pads with silence, shorter drops the end.
        sample_rate: rate of an array ``audio`` (files are resampled by ffmpeg).
        backend: a built backend to reuse (else built from ``cfg``).
        chunk_seconds: override ``cfg.chunk_seconds`` (the streaming chunk gives streaming's numbers).

    Returns:
        ``[N, W, C]`` float32; ``out[i, j]`` is the feature centred at ``(2 i - W/2 + j + 0.5) * 20 ms`` (25 fps).
    """
    cfg = cfg or AudioFeaturesConfig()
    features_per_frame(cfg.fps)
    x = load_input(audio, sample_rate, cfg.window)
    n = num_frames if num_frames is not None else num_frames_for(len(x), cfg.fps)
    if n < 1:
        raise InputError(f"num_frames={n}: nothing to extract")
    backend = backend or make_backend(cfg)
    feats = compute_features(x, cfg, n, backend, chunk_seconds)
    return frame_windows(feats, n, cfg.window, cfg.fps)


def write_features(
    path: str | Path,
    audio: np.ndarray,
    cfg: AudioFeaturesConfig,
    num_frames: int,
    backend: FeatureBackend,
    frames_per_write: int = 1024,
) -> tuple[int, int, int]:
    """:func:`extract_features` straight into an ``.npy`` file, ``frames_per_write`` windows at a time.

    The windows repeat each feature ``W / r`` times, so they are never all in
    memory: a 10-minute file with 1024-d HuBERT features needs the 120 MB of 50 Hz
    features, not the 1 GB of windows. Returns the shape written.
    """
    feats = compute_features(audio, cfg, num_frames, backend)
    r = features_per_frame(cfg.fps)
    w = cfg.window
    shape = (num_frames, w, backend.dim)
    out = np.lib.format.open_memmap(str(path), mode="w+", dtype=np.float32, shape=shape)
    for i0 in range(0, num_frames, frames_per_write):
        i1 = min(i0 + frames_per_write, num_frames)
        part = feats[r * i0: r * (i1 - 1) + w]
        out[i0:i1] = frame_windows(part, i1 - i0, w, cfg.fps)
    out.flush()
    del out
    return shape
