"""Test helpers shared by the audio tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
SPEECH = SHARED / "data" / "speech"
CLIPS = SHARED / "data" / "clips"


class EnergyBackend:
    """Log energy of each 20 ms and its position: a backend whose right answer is known.

    Frame-local, so chunking cannot change it; records the longest input it saw.
    """

    dim = 2

    def __init__(self):
        self.longest = 0
        self.calls = 0

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.longest = max(self.longest, len(audio))
        frames = audio.reshape(-1, 320)
        energy = np.log(np.mean(frames**2, axis=1) + 1e-8)
        return np.stack([energy, np.full(len(frames), 0.0)], axis=1).astype(np.float32)


class ChunkSensitiveBackend:
    """Features that depend on the whole chunk (like attention or a decoder): mean-normalised energy."""

    dim = 1

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        e = np.mean(audio.reshape(-1, 320) ** 2, axis=1)
        return ((e - e.mean()) / (e.std() + 1e-6))[:, None].astype(np.float32)


def espeak(text: str, voice: str) -> np.ndarray:
    """Speech from espeak-ng (the espeakng-loader wheel) as 16 kHz float32; skips the test if unavailable."""
    import ctypes
    import os

    import pytest

    loader = pytest.importorskip("espeakng_loader")
    from radnerf.audio.extract import to_mono_16k

    lib = ctypes.CDLL(loader.get_library_path())
    rate = lib.espeak_Initialize(2, 0, os.path.dirname(loader.get_data_path()).encode(), 0)  # 2: synchronous
    if rate <= 0:
        pytest.skip("espeak-ng does not initialise here")
    chunks: list[np.ndarray] = []

    def collect(wav, n, events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)(collect)
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        pytest.skip(f"espeak-ng has no voice {voice}")
    raw = text.encode() + b"\0"
    lib.espeak_Synth(raw, ctypes.c_size_t(len(raw)), 0, 1, 0, 0, None, None)
    lib.espeak_Synchronize()
    return to_mono_16k(np.concatenate(chunks).astype(np.float32) / 32768.0, rate)
