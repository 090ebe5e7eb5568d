"""The embedded sample: a real clip with a face, speech, head motion and a moving mouth."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radnerf.config import DemoConfig
from radnerf.demo import sample as sample_mod
from radnerf.demo.tts import synthesize
from radnerf.media import load_audio, probe


def test_tts_speaks_offline():
    audio, rate = synthesize("Hello world, this is a test.")
    assert rate > 8000 and 0.8 < len(audio) / rate < 5.0
    assert np.sqrt(np.mean(audio**2)) > 0.02


def test_tts_gives_the_same_samples_every_time():
    # eSpeak NG carries state from one utterance to the next inside a process.
    first, rate = synthesize("Hello there. How are you?")
    synthesize("Something else in between.")
    again, rate_again = synthesize("Hello there. How are you?")
    assert rate == rate_again and np.array_equal(first, again)


def test_mouth_opening_follows_loudness():
    silence = np.zeros(16000, np.float32)
    tone = 0.5 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000).astype(np.float32)
    env = sample_mod._envelope(np.concatenate([silence, tone, silence]), 75)
    assert env[5:20].max() < 0.05 and env[30:45].min() > 0.8 and env[55:70].max() < 0.05


def test_open_mouth_moves_only_the_jaw():
    face = sample_mod._portrait(256)
    assert np.array_equal(sample_mod._open_mouth(face, 0.0, 256), face)
    opened = sample_mod._open_mouth(face, 1.0, 256)
    changed = np.abs(opened.astype(int) - face.astype(int)).sum(-1) > 30
    ys, xs = np.nonzero(changed)
    cx, cy = sample_mod._to_crop(sample_mod._MOUTH_CENTRE, 256)
    _, chin = sample_mod._to_crop((0, sample_mod._CHIN_Y), 256)
    assert changed.sum() > 100
    assert ys.min() >= cy - 2 and ys.max() <= chin + 40  # below the lips, around the chin
    assert abs(np.median(xs) - cx) < 15


@pytest.mark.slow
def test_make_sample(tmp_path):
    out = sample_mod.make_sample(tmp_path / "s.mp4", DemoConfig(text="Hello there. How are you?", size=128))
    info = probe(out.video)
    assert info.video is not None and info.audio is not None
    assert (info.video.width, info.video.height) == (128, 128)
    assert abs(info.video.duration - out.duration) < 0.1 and out.frames == round(out.duration * 25)
    audio = load_audio(out.video, 16000)
    assert np.sqrt(np.mean(audio**2)) > 0.02
    assert not Path(out.video).with_suffix(".wav").exists()


_TEXT = "Hello there. How are you?"


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.slow
def test_make_sample_is_byte_reproducible(tmp_path):
    """Two builds in this process and one in another process, on a single core, give the same bytes."""
    cfg = DemoConfig(text=_TEXT, size=128)
    first = _sha256(sample_mod.make_sample(tmp_path / "a.mp4", cfg).video)
    synthesize("Something else in between.")  # what an earlier caller in the same process might do
    assert _sha256(sample_mod.make_sample(tmp_path / "b.mp4", cfg).video) == first

    # A fresh interpreter on one core: x264 picks its thread count from the cores it may use.
    one_core = None
    if hasattr(os, "sched_getaffinity"):
        cpu = min(os.sched_getaffinity(0))
        one_core = lambda: os.sched_setaffinity(0, {cpu})  # noqa: E731
    code = (
        "import sys; from pathlib import Path; from radnerf.config import DemoConfig; "
        "from radnerf.demo.sample import make_sample; "
        f"make_sample(Path(sys.argv[1]), DemoConfig(text={_TEXT!r}, size=128))"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "c.mp4")], check=True, capture_output=True,
                   preexec_fn=one_core, timeout=300)
    assert _sha256(tmp_path / "c.mp4") == first
