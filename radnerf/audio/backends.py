"""One interface for every feature backend, and the factory that picks one by config.

A backend maps a stretch of 16 kHz audio to its 50 Hz features with the clock
of :mod:`radnerf.audio.windows`; it never sees chunk boundaries, context or
windows, which :mod:`radnerf.audio.extract` and :mod:`radnerf.audio.stream`
handle the same way for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from radnerf.audio.config import AUDIO_BACKENDS, AudioFeaturesConfig
from radnerf.errors import ConfigError

BACKENDS = AUDIO_BACKENDS
ESPERANTO_CHECKPOINT = "cpierse/wav2vec2-large-xlsr-53-esperanto"


class FeatureBackend(Protocol):
    """A 50 Hz feature extractor."""

    dim: int
    """Channels ``C`` of one feature frame."""

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """``audio: [320 M]`` float32 at 16 kHz -> ``[M, C']`` float32; row k centred at ``(k + 0.5) * 20 ms``."""
        ...


Normalizer = Callable[[np.ndarray], np.ndarray]
"""Stateful ``[n, C'] -> [n, C]`` applied to a file's features in time order (e.g. live CMN)."""


def new_normalizer(backend: FeatureBackend) -> Normalizer:
    """A fresh normaliser for one file or stream: the backend's ``normalizer()``, or the identity.

    Backends whose features need statistics over time (not over a chunk) provide
    one, so chunked and streaming extraction see the same frames in the same order.
    """
    make = getattr(backend, "normalizer", None)
    return make() if make is not None else (lambda feats: feats)


def feature_name(cfg: AudioFeaturesConfig) -> str:
    """The ``<name>`` of ``aud_<name>.npy``: RAD-NeRF's 'eo' / 'hu', 'w2v' for another CTC model, 'ph' offline."""
    backend = cfg.backend
    if backend == "offline":
        return "ph"
    if backend == "wav2vec2":
        return "eo" if cfg.wav2vec2_checkpoint == ESPERANTO_CHECKPOINT else "w2v"
    if backend == "hubert":
        return "hu"
    raise ConfigError(f"unknown audio_features.backend={backend!r}", hint=f"use one of {', '.join(BACKENDS)}")


def manifest_stage(cfg: AudioFeaturesConfig) -> str:
    """The stage name of ``aud_<name>.npy``'s manifest: one per feature file, so backends do not overwrite each other's."""
    return f"audio_{feature_name(cfg)}"


def backend_libraries(cfg: AudioFeaturesConfig) -> tuple[str, ...]:
    """The distributions whose code computes the backend's numbers (pocketsphinx's phone decoder, the
    transformers model code and the torch kernels under it), for the feature file's fingerprint."""
    return ("pocketsphinx",) if cfg.backend == "offline" else ("transformers", "torch")


def make_backend(cfg: AudioFeaturesConfig, weights_dir: str | None = None) -> FeatureBackend:
    """Build (and load the model of) the backend ``cfg.backend`` names.

    Args:
        weights_dir: the root config's ``paths.weights``, where the weights manager keeps
            the transformers checkpoints; None: ``$RADNERF_WEIGHTS`` or its default.
    """
    feature_name(cfg)
    if cfg.backend == "offline":
        from radnerf.audio.phonetic import PhoneticBackend

        return PhoneticBackend(beam=cfg.phone_beam)
    from radnerf.audio.hf import CtcLogitsBackend, HiddenStatesBackend

    if cfg.backend == "wav2vec2":
        return CtcLogitsBackend(cfg.wav2vec2_checkpoint, device=cfg.device, dtype=cfg.dtype, weights_dir=weights_dir)
    return HiddenStatesBackend(
        cfg.hubert_checkpoint, layer=cfg.hubert_layer, device=cfg.device, dtype=cfg.dtype, weights_dir=weights_dir
    )
