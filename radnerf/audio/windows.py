"""The clock shared by every backend: 50 Hz features, windows centred on video frames.

Feature ``k`` describes the 20 ms of audio centred at ``(k + 0.5) * 20 ms``
(samples ``[320 k, 320 k + 320)`` at 16 kHz). Video frame ``i`` at 25 fps is
centred at ``i / 25 s = 2 i * 20 ms``, the boundary between features ``2i - 1``
and ``2i``, so its window of ``W`` features is ``[2i - W/2, 2i + W/2)``: as many
before the frame time as after it. This is the window RAD-NeRF's ``F.unfold``
(kernel 16, padding 8, stride 2) cuts from its 50 Hz features. Features at
negative indices or past the end are those of silence, computed like any other.
"""

from __future__ import annotations

import math

import numpy as np

from radnerf.errors import ConfigError

SAMPLE_RATE = 16000
"""Input rate of every backend in Hz."""
FEATURE_RATE = 50
"""Features per second."""
HOP = SAMPLE_RATE // FEATURE_RATE
"""Samples per feature frame (320)."""


def features_per_frame(fps: int) -> int:
    """Feature frames per video frame (2 at 25 fps)."""
    if fps <= 0 or FEATURE_RATE % fps:
        raise ConfigError(f"audio_features.fps={fps} does not divide {FEATURE_RATE}", hint="use fps=25 (or 50, 10, ...)")
    return FEATURE_RATE // fps


def check_window(window: int) -> int:
    if window < 2 or window % 2:
        raise ConfigError(f"audio_features.window={window} must be even and >= 2", hint="use window=16 as RAD-NeRF does")
    return window


def num_frames_for(num_samples: int, fps: int = 25) -> int:
    """Video frames covered by ``num_samples`` of 16 kHz audio: every started frame period counts.

    Exact for ingested audio, whose length is ``num_frames / fps`` seconds.
    """
    per = SAMPLE_RATE // fps
    return math.ceil(num_samples / per)


def feature_range(num_frames: int, window: int, fps: int = 25) -> tuple[int, int]:
    """Feature indices ``[start, stop)`` that the windows of ``num_frames`` frames read."""
    r = features_per_frame(fps)
    half = check_window(window) // 2
    return -half, r * (num_frames - 1) + half


def frame_windows(feats: np.ndarray, num_frames: int, window: int, fps: int = 25) -> np.ndarray:
    """Cut the per-frame windows out of 50 Hz features.

    Args:
        feats: ``[stop - start, C]`` features for indices ``feature_range(num_frames, window, fps)``.
        num_frames: video frames ``N``.
        window: features per window ``W``.

    Returns:
        ``[N, W, C]`` float32; ``out[i, j]`` is feature ``r i - W/2 + j`` (r = 50 / fps).
    """
    r = features_per_frame(fps)
    start, stop = feature_range(num_frames, window, fps)
    if feats.shape[0] != stop - start:
        raise ValueError(f"expected {stop - start} feature frames for {num_frames} frames, got {feats.shape[0]}")
    view = np.lib.stride_tricks.sliding_window_view(feats, window, axis=0)  # [K - W + 1, C, W]
    return np.ascontiguousarray(view[::r][:num_frames].transpose(0, 2, 1), dtype=np.float32)
