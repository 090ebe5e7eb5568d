"""Helpers for the preprocessing tests: person folders built from real or generated faces."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
CLIPS = SHARED / "data" / "clips"
KATIE = "hdtf_katiehill_8s.mp4"
LIVEPORTRAIT = "liveportrait_d6_33s.mp4"


def astronaut() -> np.ndarray:
    """scikit-image's portrait (Eileen Collins): ``[512, 512, 3]`` uint8 RGB, one frontal face."""
    from skimage import data

    return data.astronaut()


def two_faces() -> np.ndarray:
    """Two copies of the astronaut's head side by side: ``[280, 480, 3]``."""
    head = astronaut()[0:280, 60:300]
    return np.concatenate([head, head], axis=1)


def noise(size: int = 256, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def clip_path(name: str) -> Path:
    path = CLIPS / name
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is only on the team's machines)")
    return path


def make_person(root: Path, frames: Sequence[np.ndarray]) -> Path:
    """Write ``root/ori_imgs/<i>.jpg`` and an ingest manifest, as ingest leaves them."""
    import cv2

    ori = root / "ori_imgs"
    ori.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(ori / f"{i}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    h, w = frames[0].shape[:2]
    (root / "manifests").mkdir(exist_ok=True)
    (root / "manifests" / "ingest.json").write_text(json.dumps(
        {"frames": len(frames), "width": w, "height": h, "fps": 25, "fingerprint": f"test-{len(frames)}-{w}x{h}"}
    ))
    return root


def make_clip_person(root: Path, clip: Path, seconds: float | None = None) -> Path:
    """Frames of a real clip at 25 fps (the first ``seconds``), as ingest writes them."""
    from radnerf.media import extract_frames

    frames = None if seconds is None else round(seconds * 25)
    n, _ = extract_frames(clip, root / "ori_imgs", fps=25, stream_start=0.0, frames=frames)
    import cv2

    h, w = cv2.imread(str(root / "ori_imgs" / "0.jpg")).shape[:2]
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    (root / "manifests" / "ingest.json").write_text(json.dumps(
        {"frames": n, "width": w, "height": h, "fps": 25, "fingerprint": f"{clip.name}-{seconds}"}
    ))
    return root


def config(artifacts: Path, person: str, workers: int = 1, **preprocess):
    """The root config with ``paths.artifacts`` and preprocessing options set (one worker by default)."""
    from radnerf.config import RadNerfConfig

    cfg = RadNerfConfig()
    cfg.person = person
    cfg.paths.artifacts = str(artifacts)
    # Options the PreprocessConfig schema may not list yet are read by name.
    cfg.preprocess.workers = workers
    cfg.preprocess.overlay_frames = 2
    for k, v in preprocess.items():
        setattr(cfg.preprocess, k, v)
    return cfg
