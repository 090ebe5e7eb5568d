"""Shared fixtures: the real Hydra config with tiny overrides, generated clips, shared data."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLIPS = SHARED / "data" / "clips"
SPEECH = SHARED / "data" / "speech"


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's weight caches or MLflow store."""
    home = tmp_path_factory.mktemp("caches")
    monkeypatch.setenv("RADNERF_WEIGHTS", str(home / "radnerf"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")


@pytest.fixture
def make_cfg(tmp_path) -> Callable:
    """Compose the real config with overrides; artifacts and data go to ``tmp_path``."""
    from radnerf.config import load_config

    def make(*overrides: str):
        return load_config(
            [f"paths.artifacts={tmp_path / 'artifacts'}", f"paths.data={tmp_path / 'data'}", *overrides]
        )

    return make


def real_clip(name: str) -> Path:
    path = CLIPS / name
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is only on the team's machines)")
    return path


def ffmpeg() -> str:
    from radnerf.media import ffmpeg_exe

    return ffmpeg_exe()


def write_clip(
    path: Path,
    frames: np.ndarray,
    fps: float,
    audio: Optional[np.ndarray] = None,
    sample_rate: int = 44100,
    audio_delay: float = 0.0,
    stereo: bool = True,
) -> Path:
    """Encode ``frames [N, H, W, 3] uint8`` (and optional mono ``audio``) as H.264/AAC MP4."""
    from radnerf.media import write_wav

    n, h, w, _ = frames.shape
    cmd = [ffmpeg(), "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
    if audio is not None:
        wav = path.with_suffix(".src.wav")
        write_wav(wav, audio, sample_rate)
        if audio_delay:
            cmd += ["-itsoffset", str(audio_delay)]
        cmd += ["-i", str(wav), "-c:a", "aac", "-ac", "2" if stereo else "1"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)
    return path


def synthetic_frames(n: int, size: tuple[int, int] = (64, 48), seed: int = 0) -> np.ndarray:
    """``[n, H, W, 3]`` frames whose frame index is readable from a grey level (for counting)."""
    w, h = size
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    return np.repeat(base[None], n, axis=0)


@pytest.fixture
def clip_factory(tmp_path) -> Callable:
    """``clip_factory(seconds, fps, audio=True, ...) -> Path`` of a generated MP4."""

    def make(seconds: float = 2.0, fps: float = 30, audio: bool = True, name: str = "clip.mp4",
             size: tuple[int, int] = (64, 48), audio_delay: float = 0.0) -> Path:
        n = int(round(seconds * fps))
        frames = synthetic_frames(n, size)
        sound = None
        if audio:
            t = np.arange(int(seconds * 44100)) / 44100
            sound = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        return write_clip(tmp_path / name, frames, fps, sound, audio_delay=audio_delay)

    return make


def run_cli(*args: str, cwd: Optional[Path] = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``radnerf ARGS`` as a user would, in a subprocess (this interpreter's install)."""
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "radnerf.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def talking_clip(tmp_path_factory) -> Path:
    """A short clip of a real face speaking (the demo's sample generator), built once per session."""
    from radnerf.config import DemoConfig
    from radnerf.demo.sample import make_sample

    out = tmp_path_factory.mktemp("talking") / "talking.mp4"
    return make_sample(out, DemoConfig(text="Hello there, how are you today?", size=192)).video
