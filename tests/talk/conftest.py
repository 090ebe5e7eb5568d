"""Fixtures of the talk tests: a synthetic person with a trained head, speech to render."""

from __future__ import annotations

import numpy as np
import pytest

from tests.train.synthetic_person import make_synthetic_person

TINY = ("person=synth", "preset=smoke", "train.num_rays=256", "train.val_every=0")
RATE = 16000
SECONDS = 1.5
FPS = 25
N_TRAIN, N_VAL = 12, 3


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """``[S]`` float32 at 16 kHz: a tone whose loudness and pitch wobble, with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 3 * t)) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return (0.3 * tone + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture
def trained(make_cfg, tmp_path):
    """A synthetic person with a head trained for the smoke preset's few steps: ``(person, cfg)``."""
    from radnerf.audio import extract_features
    from radnerf.train.head import train_head

    person = make_synthetic_person(tmp_path / "artifacts" / "synth", n_train=N_TRAIN, n_val=N_VAL, size=24)
    cfg = make_cfg(*TINY)
    # The synthetic windows have 8 channels; any audio rendered later gets the offline backend's.
    # Giving the clip the offline backend's features of a sound makes the two agree, as on a real person.
    n = N_TRAIN + N_VAL
    own = speech_like(n / FPS, seed=1)
    features = extract_features(own, cfg.audio_features, num_frames=n)
    np.save(person.root / "aud_ph.npy", features)
    from radnerf.media import write_wav

    write_wav(person.root / "aud.wav", own, RATE)  # the person's own audio, as ingest leaves it
    train_head(cfg)
    return person, cfg


@pytest.fixture
def wav(tmp_path):
    from radnerf.media import write_wav

    path = tmp_path / "speech.wav"
    write_wav(path, speech_like(SECONDS), RATE)
    return path


def decoded_frames(video) -> list[np.ndarray]:
    import av

    with av.open(str(video)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
