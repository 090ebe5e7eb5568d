"""Every stage on real talking-head footage (skipped where ../shared/data is absent)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from radnerf.formats.landmarks import load_landmarks
from radnerf.paths import PersonPaths
from radnerf.preprocess.landmarks import landmarks
from radnerf.preprocess.parsing import BACKGROUND, HEAD, NECK, parse, read_parsing
from tests.preprocess.faces import KATIE, LIVEPORTRAIT, clip_path, config, make_clip_person


@pytest.fixture(scope="module")
def katie(tmp_path_factory):
    """The first 0.4 s (10 frames) of the HDTF clip, landmarks by dlib."""
    root = tmp_path_factory.mktemp("real")
    make_clip_person(root / "katie", clip_path(KATIE), seconds=0.4)
    cfg = config(root, "katie")
    landmarks(cfg)
    return cfg


def interocular(p):
    return np.linalg.norm(p[..., 36:42, :].mean(-2) - p[..., 42:48, :].mean(-2), axis=-1)


def test_dlib_and_mediapipe_agree_on_real_frames(katie, tmp_path):
    paths = PersonPaths.for_person(katie.paths.artifacts, "katie")
    dlib_pts = load_landmarks(paths)
    assert dlib_pts.shape == (10, 68, 2)
    make_clip_person(tmp_path / "mp", clip_path(KATIE), seconds=0.4)
    landmarks(config(tmp_path, "mp", landmarks="mediapipe"))
    mp_pts = load_landmarks(PersonPaths(tmp_path / "mp"))
    err = np.linalg.norm(dlib_pts - mp_pts, axis=-1) / interocular(dlib_pts)[:, None]
    assert err[:, 48:68].mean() < 0.1  # the lips, where LMD is measured
    assert err[:, 36:48].mean() < 0.1


def test_offline_parsing_separates_hair_from_background_on_a_real_frame(katie):
    parse(katie)
    paths = PersonPaths.for_person(katie.paths.artifacts, "katie")
    labels = read_parsing(paths.root / "parsing" / "0.png")
    pts = load_landmarks(paths, 1)[0]
    # Hair beside the temple, a third of a face width out from the jaw's end at eye level.
    x = int(pts[0, 0] - 0.15 * (pts[16, 0] - pts[0, 0]))
    y = int(pts[0, 1])
    assert labels[y, x] == HEAD
    assert labels[5, 5] == BACKGROUND and labels[5, -5] == BACKGROUND
    chin = pts[8].astype(int)
    assert labels[chin[1] + 15, chin[0]] == NECK


def test_liveportrait_frames_at_30fps_source(tmp_path):
    make_clip_person(tmp_path / "lp", clip_path(LIVEPORTRAIT), seconds=0.2)
    cfg = config(tmp_path, "lp")
    landmarks(cfg)
    parse(cfg)
    labels = read_parsing(tmp_path / "lp" / "parsing" / "0.png")
    assert (labels == HEAD).mean() > 0.2


@pytest.mark.slow
def test_whole_8s_clip_through_every_stage(tmp_path):
    from radnerf.formats.regions import read_regions
    from tests.preprocess.test_interop import preprocess_frames

    root = make_clip_person(tmp_path / "k", clip_path(KATIE))
    cfg = config(tmp_path, "k", workers=2)
    out = preprocess_frames(cfg)
    n = 200
    lms = json.loads((root / "manifests" / "landmarks.json").read_text())
    assert len(lms["interpolated"]) <= 0.02 * n
    rows = read_regions(out["regions"].output)
    assert len(rows) == n
    # She speaks: the lip square changes size over the clip, and she blinks.
    heights = np.array([r["lips_row1"] - r["lips_row0"] for r in rows])
    assert heights.max() - heights.min() >= 10
    eyes = np.array([r["eye_area"] for r in rows])
    assert 0 < eyes.min() and eyes.max() < 1.0 and eyes.max() > 1.5 * eyes.min()
    parse_manifest = json.loads((root / "manifests" / "parse.json").read_text())
    assert parse_manifest["frames_without_head"] == []
    torso_manifest = json.loads((root / "manifests" / "torso.json").read_text())
    assert len(torso_manifest["frames_without_neck_paint"]) <= 0.05 * n
    assert len(list((root / "torso_imgs").glob("*.png"))) == n
    assert len(list((root / "gt_imgs").glob("*.jpg"))) == n
    assert (root / "bc.jpg").exists()
