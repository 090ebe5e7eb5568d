"""Background extraction: uncovered pixels exact, no ghost of the person, smooth hole filling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from radnerf.errors import InputError
from radnerf.preprocess import background as B
from radnerf.preprocess.parsing import BACKGROUND, TORSO, colourise


def moving_person(k: int = 8, h: int = 64, w: int = 96, seed: int = 0, smooth: bool = False):
    """A static background with a red block walking left to right: ``images, bg masks, truth``.

    The background is noise, or (``smooth``) gradients that survive JPEG.
    """
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 200, (h, w, 3), dtype=np.uint8)
    if smooth:
        yy, xx = np.mgrid[0:h, 0:w]
        truth = np.stack([xx * 150 // w + 20, yy * 150 // h + 20, (xx + yy) * 100 // (h + w) + 50], -1).astype(np.uint8)
    images, masks = [], []
    for i in range(k):
        x0 = 4 + i * 8
        img = truth.copy()
        img[10:60, x0:x0 + 24] = (255, 0, 0)
        m = np.ones((h, w), bool)
        m[10:60, x0:x0 + 24] = False
        images.append(img)
        masks.append(m)
    return np.stack(images), np.stack(masks), truth


def test_uncovered_pixels_are_the_true_background_and_no_ghost_remains():
    images, masks, truth = moving_person()
    bc, seen = B.extract_background(images, masks, margin=3)
    np.testing.assert_array_equal(bc[seen], truth[seen])
    assert seen.mean() > 0.8
    # No pixel keeps the person's pure red.
    assert not ((bc[..., 0] == 255) & (bc[..., 1] == 0) & (bc[..., 2] == 0)).any()


def test_pixels_never_uncovered_are_filled_from_their_surroundings():
    images, masks, _ = moving_person()
    images[:] = images[:, :, :, :] * 0 + np.array([40, 90, 140], np.uint8)  # flat background...
    images[:, 10:60, 30:54] = (255, 0, 0)  # ...and a person who never moves
    masks[:] = True
    masks[:, 10:60, 30:54] = False
    bc, seen = B.extract_background(images, masks, margin=3)
    assert not seen[30, 40]
    # A flat surrounding fills the hole with the same flat colour.
    assert np.abs(bc.astype(int) - [40, 90, 140]).max() <= 1


def test_fill_is_smooth_between_different_rims():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = 0
    image[:, 32:] = 200
    seen = np.ones((64, 64), bool)
    seen[16:48, 16:48] = False
    out = B.fill_unseen(image, seen)
    np.testing.assert_array_equal(out[seen], image[seen])
    row = out[32, 16:48, 0].astype(int)
    assert row[0] < 60 and row[-1] > 140  # keeps each rim's colour
    assert (np.diff(row) >= -2).all()  # and blends monotonically between them


def test_stage_writes_bc_jpg(tmp_path):
    from tests.preprocess.faces import config, make_person

    images, masks, truth = moving_person(k=6, h=96, w=128, smooth=True)
    root = make_person(tmp_path / "walker", list(images))
    (root / "parsing").mkdir()
    for i, m in enumerate(masks):
        from radnerf.media.images import write_rgb

        write_rgb(root / "parsing" / f"{i}.png", colourise(np.where(m, BACKGROUND, TORSO).astype(np.uint8)))
    (root / "manifests" / "parse.json").write_text(json.dumps({"fingerprint": "p"}))
    cfg = config(tmp_path, "walker", background_margin=0.02, background_stride=1)
    result = B.background(cfg)
    out = result.output
    assert out == root / "bc.jpg" and not result.skipped
    from radnerf.media.images import read_rgb

    bc = read_rgb(out)
    seen = json.loads((root / "manifests" / "background.json").read_text())
    assert seen["frames_used"] == list(range(6)) and seen["unseen_share"] < 0.2
    # JPEG: close to the truth, nowhere near the red person.
    assert np.abs(bc.astype(int) - truth.astype(int)).mean() < 4
    assert (root / "overlays" / "background_0.jpg").exists()


def test_stage_refuses_a_frame_filled_by_the_person(tmp_path):
    from tests.preprocess.faces import config, make_person

    root = make_person(tmp_path / "close", [np.full((32, 32, 3), 100, np.uint8)] * 2)
    (root / "parsing").mkdir()
    from radnerf.media.images import write_rgb

    for i in range(2):
        write_rgb(root / "parsing" / f"{i}.png", colourise(np.full((32, 32), TORSO, np.uint8)))
    (root / "manifests" / "parse.json").write_text(json.dumps({"fingerprint": "p"}))
    with pytest.raises(InputError, match="never visible"):
        B.background(config(tmp_path, "close"))


def test_stage_rerun_is_skipped_with_the_same_numbers_and_foreign_bc_jpg_is_used_as_it_is(tmp_path):
    from radnerf.media.images import write_rgb
    from tests.preprocess.faces import config, make_person

    images, masks, _ = moving_person(k=4, h=64, w=96, smooth=True)
    cfg = config(tmp_path, "walker", background_stride=1)
    for name in ("walker", "imported"):
        root = make_person(tmp_path / name, list(images))
        (root / "parsing").mkdir()
        for i, m in enumerate(masks):
            write_rgb(root / "parsing" / f"{i}.png", colourise(np.where(m, BACKGROUND, TORSO).astype(np.uint8)))
        (root / "manifests" / "parse.json").write_text(json.dumps({"fingerprint": "p"}))
    first = B.background(cfg)
    stamp = first.output.stat().st_mtime_ns
    again = B.background(cfg)
    assert again.skipped and not again.adopted and again.metrics == first.metrics
    assert again.metrics["frames_used_count"] == 4 and again.output.stat().st_mtime_ns == stamp
    # A bc.jpg radnerf did not write (a RAD-NeRF dataset) is the whole output: used as it is.
    theirs = tmp_path / "imported" / "bc.jpg"
    write_rgb(theirs, images[0])
    stamp = theirs.stat().st_mtime_ns
    cfg.person = "imported"
    adopted = B.background(cfg)
    assert adopted.skipped and adopted.adopted and adopted.output == theirs
    assert theirs.stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "imported" / "manifests" / "background.json").read_text())["imported"] is True
