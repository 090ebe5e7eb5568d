"""Torso images: equal to RAD-NeRF's neck in-painting, no hole under the chin; gt composites; the stage."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from radnerf.preprocess import torso as T
from radnerf.preprocess.parsing import BACKGROUND, HEAD, NECK, TORSO


def synthetic_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A head disc over a neck column over a torso block, on a random image: ``image, bg, labels``."""
    rng = np.random.default_rng(seed)
    h, w = 160, 120
    labels = np.full((h, w), BACKGROUND, np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    labels[(yy - 55) ** 2 + (xx - 60) ** 2 < 35**2] = HEAD
    neck = (yy >= 85) & (yy < 115) & (np.abs(xx - 60) < 16) & (labels != HEAD)
    labels[neck] = NECK
    labels[yy >= 115] = TORSO
    labels[(yy >= 80) & (yy < 115) & (np.abs(xx - 60) >= 28) & (np.abs(xx - 60) < 40)] = TORSO  # shoulders/hair
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return image, bg, labels


def radnerf_reference(gt: np.ndarray, bg: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RAD-NeRF's extract_torso_and_gt for one frame, column by column (a slow transcription)."""
    from scipy.ndimage import binary_dilation

    head, neck, torso = labels == HEAD, labels == NECK, labels == TORSO
    h, w = labels.shape
    img = gt.copy()
    img[head] = bg[head]
    torso_paint = np.zeros((h, w), bool)
    for x in range(w):
        rows = np.flatnonzero(torso[:, x])
        if len(rows) and rows[0] > 0 and head[rows[0] - 1, x]:
            colour = gt[rows[0], x].astype(np.float64)
            for k in range(9):
                if rows[0] - k >= 0:
                    img[rows[0] - k, x] = (colour * 0.98**k).astype(np.uint8)
                    torso_paint[rows[0] - k, x] = True
    neck = binary_dilation(neck, structure=np.array([[0, 1, 0]] * 3, bool), iterations=3)
    neck_paint = np.zeros((h, w), bool)
    for x in range(w):
        rows = np.flatnonzero(neck[:, x])
        if len(rows) and rows[0] > 0 and head[rows[0] - 1, x]:
            src = rows[0] + min(len(rows) - 1, 4)
            colour = gt[src, x].astype(np.float64)
            for k in range(48 + 4 + 1):
                if src - k >= 0:
                    img[src - k, x] = (colour * 0.98**k).astype(np.uint8)
                    neck_paint[src - k, x] = True
    blurred = cv2.GaussianBlur(img, (5, 5), cv2.BORDER_DEFAULT)
    img[neck_paint] = blurred[neck_paint]
    keep = neck | torso | neck_paint | torso_paint
    img[~keep] = 0
    alpha = np.where(keep, 255, 0).astype(np.uint8)
    return np.dstack([img, alpha])


def test_torso_image_equals_radnerfs_algorithm():
    for seed in range(3):
        image, bg, labels = synthetic_scene(seed)
        gt = T.composite_gt(image, bg, labels)
        np.testing.assert_array_equal(T.torso_image(gt, bg, labels), radnerf_reference(gt, bg, labels))


def test_no_hole_under_the_chin():
    image, bg, labels = synthetic_scene()
    rgba = T.torso_image(T.composite_gt(image, bg, labels), bg, labels)
    alpha = rgba[..., 3] > 0
    for x in range(48, 73):  # columns of the neck
        top_neck = np.flatnonzero(labels[:, x] == NECK)[0]
        # Opaque from 44 px above the neck's top down to the bottom of the frame.
        assert alpha[top_neck - 44:, x].all(), x
    # Paint reaches 52 rows above the neck's source pixel and no higher: the head is gone.
    assert not alpha[:30].any()
    # The painted colours darken upward (the shadow).
    x = 60
    top = np.flatnonzero(labels[:, x] == NECK)[0]
    upper, lower = rgba[top - 40, x, :3].astype(int).sum(), rgba[top - 5, x, :3].astype(int).sum()
    assert upper < lower


def test_gt_replaces_only_the_background():
    image, bg, labels = synthetic_scene()
    gt = T.composite_gt(image, bg, labels)
    is_bg = labels == BACKGROUND
    np.testing.assert_array_equal(gt[is_bg], bg[is_bg])
    np.testing.assert_array_equal(gt[~is_bg], image[~is_bg])


def test_torso_stage_on_the_astronaut(tmp_path):
    from radnerf.preprocess.background import background
    from radnerf.preprocess.landmarks import landmarks
    from radnerf.preprocess.parsing import parse
    from tests.preprocess.faces import astronaut, config, make_person

    make_person(tmp_path / "alice", [astronaut()] * 2)
    cfg = config(tmp_path, "alice")
    landmarks(cfg)
    parse(cfg)
    background(cfg)
    first = T.torso(cfg)
    out = first.output
    root = tmp_path / "alice"
    assert out == root / "torso_imgs" and not first.skipped
    rgba = cv2.imread(str(out / "0.png"), cv2.IMREAD_UNCHANGED)
    gt = cv2.imread(str(root / "gt_imgs" / "1.jpg"))
    assert rgba.shape == (512, 512, 4) and gt.shape == (512, 512, 3)
    assert rgba[120, 225, 3] == 0  # the face is gone
    assert rgba[350, 100, 3] == 255  # the suit stays
    assert rgba[170, 222, 3] == 255  # painted under the chin
    manifest = json.loads((root / "manifests" / "torso.json").read_text())
    assert manifest["frames_without_neck_paint"] == []
    assert (root / "overlays" / "torso_0.jpg").exists()
    stamp = (out / "0.png").stat().st_mtime_ns
    gt_stamp = (root / "gt_imgs" / "0.jpg").stat().st_mtime_ns
    again = T.torso(cfg)
    assert (out / "0.png").stat().st_mtime_ns == stamp
    assert (root / "gt_imgs" / "0.jpg").stat().st_mtime_ns == gt_stamp
    assert again.skipped and not again.adopted and again.metrics == first.metrics


def synthetic_person(root):
    """Frames, parsing and bc.jpg of :func:`synthetic_scene` with their manifests, as the stages before torso leave them."""
    from radnerf.media.images import write_rgb
    from radnerf.preprocess.parsing import colourise
    from tests.preprocess.faces import make_person

    scenes = [synthetic_scene(seed) for seed in range(2)]
    make_person(root, [image for image, _, _ in scenes])
    (root / "parsing").mkdir()
    for i, (_, _, labels) in enumerate(scenes):
        write_rgb(root / "parsing" / f"{i}.png", colourise(labels))
    write_rgb(root / "bc.jpg", scenes[0][1])
    (root / "manifests" / "parse.json").write_text(json.dumps({"fingerprint": "p"}))
    (root / "manifests" / "background.json").write_text(json.dumps({"fingerprint": "b"}))
    return root


def test_gt_imgs_radnerf_did_not_write_without_torso_imgs_are_refused_then_replaced_with_overwrite(tmp_path):
    """One of torso's two folders present and foreign: refused (naming the frames it lacks), nothing deleted."""
    from radnerf.errors import StageOutputExistsError
    from radnerf.media.images import write_rgb
    from tests.preprocess.faces import config

    root = synthetic_person(tmp_path / "half")
    (root / "gt_imgs").mkdir()
    for i in range(2):
        write_rgb(root / "gt_imgs" / f"{i}.jpg", np.zeros((160, 120, 3), np.uint8))
    before = {p: p.read_bytes() for p in (root / "gt_imgs").iterdir()}
    cfg = config(tmp_path, "half")
    with pytest.raises(StageOutputExistsError, match=r"gt_imgs that radnerf did not write \(no torso_imgs/<i>.png for frames 0, 1 "):
        T.torso(cfg)
    assert {p: p.read_bytes() for p in (root / "gt_imgs").iterdir()} == before
    assert not (root / "torso_imgs").exists() and not (root / "manifests" / "torso.json").exists()
    cfg.overwrite = True
    result = T.torso(cfg)
    assert not result.skipped and not result.adopted
    assert sorted(p.name for p in result.output.iterdir()) == ["0.png", "1.png"]
    assert cv2.imread(str(root / "gt_imgs" / "0.jpg")).max() > 0  # ours now: the frame on its background
    assert "imported" not in json.loads((root / "manifests" / "torso.json").read_text())
