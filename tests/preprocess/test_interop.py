"""A dataset RAD-NeRF already processed (no radnerf manifests) is used as it is."""

from __future__ import annotations

import json

import numpy as np

from radnerf.media.images import write_rgb
from radnerf.pipeline import BY_NAME, run_stage
from radnerf.preprocess.landmarks import landmarks
from radnerf.preprocess.parsing import BACKGROUND, HEAD, TORSO, colourise
from radnerf.stage_io import StageResult
from tests.preprocess.faces import astronaut
from tests.preprocess.faces import config as make_config
from tests.preprocess.test_landmarks import synthetic_points

FRAME_STAGES = ("landmarks", "parse", "background", "torso", "regions")


def preprocess_frames(cfg) -> dict[str, StageResult]:
    """Every per-frame stage after ingest, in order, through the pipeline's own stage list."""
    return {name: run_stage(BY_NAME[name], cfg) for name in FRAME_STAGES}


def radnerf_dataset(root):
    """ori_imgs, .lms, parsing, bc.jpg, gt_imgs, torso_imgs as RAD-NeRF's process.py leaves them."""
    for d in ("ori_imgs", "parsing", "gt_imgs", "torso_imgs"):
        (root / d).mkdir(parents=True)
    labels = np.full((512, 512), BACKGROUND, np.uint8)
    labels[40:200, 150:300] = HEAD
    labels[200:, 100:400] = TORSO
    for i in range(2):
        write_rgb(root / "ori_imgs" / f"{i}.jpg", astronaut())
        np.savetxt(root / "ori_imgs" / f"{i}.lms", synthetic_points(220, 130, 90), "%f")
        write_rgb(root / "parsing" / f"{i}.png", colourise(labels))
        write_rgb(root / "gt_imgs" / f"{i}.jpg", astronaut())
        write_rgb(root / "torso_imgs" / f"{i}.png", np.zeros((512, 512, 4), np.uint8))
    write_rgb(root / "bc.jpg", astronaut())
    return root


def test_existing_radnerf_outputs_are_adopted_not_redone(tmp_path):
    root = radnerf_dataset(tmp_path / "obama")
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    out = preprocess_frames(make_config(tmp_path, "obama"))
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after
    for stage in ("landmarks", "parse", "background", "torso"):
        assert json.loads((root / "manifests" / f"{stage}.json").read_text())["imported"] is True
        assert out[stage].adopted and out[stage].skipped
    assert out["regions"].output.exists()  # computed from the existing .lms
    assert not out["regions"].skipped


def test_adopted_outputs_are_not_redone_on_later_runs(tmp_path):
    # The second run sees the 'imported' manifests the first one wrote; those
    # must not make the files count as radnerf's own (whose fingerprint would
    # then differ, so the stages would overwrite the user's dataset).
    root = radnerf_dataset(tmp_path / "obama")
    cfg = make_config(tmp_path, "obama")
    preprocess_frames(cfg)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and "manifests" not in p.parts}
    again = preprocess_frames(cfg)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert np.allclose(np.loadtxt(root / "ori_imgs" / "0.lms"), synthetic_points(220, 130, 90))
    for stage in ("landmarks", "parse", "background", "torso"):
        assert json.loads((root / "manifests" / f"{stage}.json").read_text())["imported"] is True
    assert again["regions"].skipped and not again["regions"].adopted


def test_overwrite_recomputes_them(tmp_path):
    root = radnerf_dataset(tmp_path / "obama")
    cfg = make_config(tmp_path, "obama")
    cfg.overwrite = True
    landmarks(cfg)
    assert not np.allclose(np.loadtxt(root / "ori_imgs" / "0.lms"), synthetic_points(220, 130, 90))
    assert "imported" not in json.loads((root / "manifests" / "landmarks.json").read_text())
