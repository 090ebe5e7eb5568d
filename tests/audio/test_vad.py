"""The speech check (silero-vad): speech reads as speech, noise and silence as none. A few seconds each."""

from __future__ import annotations

import numpy as np
import pytest

from radnerf.audio.vad import speech_segments, speech_share
from tests.audio.audio_helpers import SPEECH


@pytest.fixture(scope="module")
def espeak() -> np.ndarray:
    """About 2 s of eSpeak NG saying a sentence (the demo's voice), 16 kHz, no silence around it."""
    from radnerf.demo.tts import synthesize

    speech, rate = synthesize("Hello there, how are you today?")
    n = int(len(speech) * 16000 / rate)
    return np.interp(np.arange(n) * rate / 16000, np.arange(len(speech)), speech).astype(np.float32)


def test_synthetic_speech_is_mostly_speech(espeak):
    assert speech_share(espeak, 16000) > 0.7


def test_recorded_speech_is_mostly_speech():
    path = SPEECH / "sadtalker_rd_radio31_8s.wav"
    if not path.exists():
        pytest.skip(f"shared test data not found: {path}")
    from radnerf.media import load_audio

    assert speech_share(load_audio(path, 16000)[: 4 * 16000], 16000) > 0.8


def test_noise_silence_and_a_tone_are_not_speech():
    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    assert speech_share((0.1 * rng.standard_normal(3 * 16000)).astype(np.float32), 16000) < 0.05
    assert speech_share(np.zeros(3 * 16000, np.float32), 16000) == 0.0
    assert speech_share((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000) < 0.05
    assert speech_share(np.zeros(0, np.float32), 16000) == 0.0


def test_share_counts_only_the_spoken_part(espeak):
    """Speech padded with as much silence again: about half the clip is speech, found where it is."""
    pad = np.zeros(len(espeak), np.float32)
    x = np.concatenate([pad, espeak])
    share = speech_share(x, 16000)
    assert abs(share - speech_share(espeak, 16000) / 2) < 0.1
    first = speech_segments(x, 16000)[0][0]
    assert len(pad) - 0.1 * 16000 < first < len(pad) + 0.5 * 16000


def test_other_sample_rates_are_resampled(espeak):
    from scipy.signal import resample_poly

    at_44k = resample_poly(espeak, 441, 160).astype(np.float32)
    assert speech_share(at_44k, 44100) == pytest.approx(speech_share(espeak, 16000), abs=0.05)
    segments = speech_segments(at_44k, 44100)
    assert segments[-1][1] <= len(at_44k) + 0.05 * 44100  # positions at the clip's own rate


def test_torch_keeps_its_thread_count():
    """silero_vad sets torch to one thread on import; the rest of the process (training) must not inherit it.

    In a fresh interpreter, so the first import of silero_vad happens under the test.
    """
    import subprocess
    import sys

    pytest.importorskip("torch")
    code = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(3)\n"
        "from radnerf.audio.vad import speech_share\n"
        "speech_share(np.zeros(16000, np.float32), 16000)\n"
        "print(torch.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split()[-1] == "3"
