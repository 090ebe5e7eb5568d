"""How much of a clip's audio is speech: silero-vad, whose model ships inside its wheel.

RAD-NeRF learns the mouth from the audio; a training clip whose sound is music,
noise or silence teaches the head nothing, so ingest measures the speech share
and refuses a clip below ``ingest.min_speech_share``.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

VAD_RATE = 16000
"""Sample rate silero-vad runs at (the clip's audio is resampled to it when it differs)."""

_lock = threading.Lock()  # the model keeps state between chunks: one clip at a time


@functools.lru_cache(maxsize=1)
def _silero() -> tuple[Any, Callable[..., list[dict]]]:
    """``(model, get_speech_timestamps)``, loaded once."""
    import torch

    # Importing silero_vad sets torch to one thread for the whole process; keep the process's setting.
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            # torch.jit.load's and importlib.resources' deprecation notices, not ours to act on.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            from silero_vad import get_speech_timestamps, load_silero_vad

            return load_silero_vad(), get_speech_timestamps
    finally:
        torch.set_num_threads(threads)


def speech_segments(audio: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
    """``audio: [S]`` float mono -> ``[(start, end)]`` sample ranges (at ``sample_rate``) that are speech.

    silero-vad's defaults: speech probability above 0.5, segments of at least
    250 ms, gaps under 100 ms bridged, 30 ms padding.
    """
    import torch

    x = np.asarray(audio, np.float32).reshape(-1)
    if len(x) == 0:
        return []
    if sample_rate != VAD_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(VAD_RATE, sample_rate)
        x = resample_poly(x, VAD_RATE // g, sample_rate // g).astype(np.float32)
    model, get_speech_timestamps = _silero()
    with _lock, torch.inference_mode():
        found = get_speech_timestamps(torch.from_numpy(np.clip(x, -1.0, 1.0)), model, sampling_rate=VAD_RATE)
    scale = sample_rate / VAD_RATE
    return [(round(s["start"] * scale), round(s["end"] * scale)) for s in found]


def speech_share(audio: np.ndarray, sample_rate: int) -> float:
    """Share (0..1) of ``audio: [S]`` that silero-vad finds to be speech; 0 for empty audio."""
    n = len(audio)
    if n == 0:
        return 0.0
    spoken = sum(min(end, n) - max(start, 0) for start, end in speech_segments(audio, sample_rate))
    return float(min(max(spoken / n, 0.0), 1.0))
