"""Shared preprocessing helpers: PNG writer, chunks, options from the config."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from radnerf.errors import InputError
from radnerf.formats.frames import frame_count, frame_size
from radnerf.media import images
from radnerf.preprocess import common


@pytest.mark.parametrize("channels", [3, 4])
def test_png_bytes_round_trip_through_opencv(tmp_path, channels):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, channels), dtype=np.uint8)
    images.write_rgb(tmp_path / "x.png", image)
    back = cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED)
    code = cv2.COLOR_BGRA2RGBA if channels == 4 else cv2.COLOR_BGR2RGB
    np.testing.assert_array_equal(cv2.cvtColor(back, code), image)


def test_chunks_cover_the_range_in_order():
    assert common.chunks(10, 3) == [range(3), range(3, 7), range(7, 10)]
    assert common.chunks(2, 4) == [range(1), range(1, 2)]
    assert common.chunks(5, 1) == [range(5)]


def test_stages_read_the_options_the_config_has_and_default_the_rest(tmp_path):
    from radnerf.config import PreprocessConfig, RadNerfConfig
    from radnerf.preprocess.landmarks import SETTINGS, landmarks
    from tests.preprocess.faces import astronaut, config, make_person

    assert RadNerfConfig().preprocess == PreprocessConfig()
    make_person(tmp_path / "p", [astronaut()])
    cfg = config(tmp_path, "p", max_gap=3)
    landmarks(cfg)
    settings = json.loads((tmp_path / "p" / "manifests" / "landmarks.json").read_text())["settings"]
    assert settings["max_gap"] == 3
    assert {k: settings[k] for k in SETTINGS if k != "max_gap"} == {
        k: getattr(PreprocessConfig(), k) for k in SETTINGS if k != "max_gap"
    }


def test_frame_count_without_frames_says_to_ingest(tmp_path):
    from radnerf.paths import PersonPaths

    with pytest.raises(InputError, match="radnerf ingest"):
        frame_count(PersonPaths(tmp_path / "nobody"))


def test_frames_text_is_short():
    assert common.frames_text([1, 2]) == "1, 2 (2 frames)"
    assert common.frames_text(range(20), limit=3) == "0, 1, 2, ... (20 frames)"


def test_indexed_png_reads_back_as_colours(tmp_path):
    palette = np.array([[255, 255, 255], [0, 0, 255], [0, 255, 0], [255, 0, 0]], np.uint8)
    labels = np.random.default_rng(0).integers(0, 4, (20, 30)).astype(np.uint8)
    (tmp_path / "p.png").write_bytes(images.png_bytes(labels, palette=palette))
    back = cv2.cvtColor(cv2.imread(str(tmp_path / "p.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, palette[labels])
    from PIL import Image

    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "p.png").convert("RGB")), palette[labels])


def test_imported_frames_are_hashed_once_then_read_from_the_manifest(tmp_path, monkeypatch):
    """A RAD-NeRF dataset has no ingest manifest: its frames' hash is computed once and recorded."""
    from radnerf.paths import PersonPaths

    paths = PersonPaths(tmp_path / "obama")
    paths.ori_imgs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        images.write_rgb(paths.frame(i), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    hashed = []
    real_sha = common.sha256_file
    monkeypatch.setattr(common, "sha256_file", lambda p: hashed.append(p) or real_sha(p))
    first = common.stage_fingerprint(paths, "ingest")
    assert len(hashed) == 3
    assert common.stage_fingerprint(paths, "ingest") == first and len(hashed) == 3
    manifest = json.loads(paths.manifest("ingest").read_text())
    assert manifest["imported"] is True and manifest["frames"] == 3
    assert (manifest["width"], manifest["height"]) == (32, 24) == frame_size(paths)


def test_half_committed_frames_are_not_adopted(tmp_path):
    """A pending marker says the frames are ingest's own, mid-commit: ingest must redo them, not see them as imported."""
    from radnerf.paths import PersonPaths
    from radnerf.stage_io import pending_marker

    paths = PersonPaths(tmp_path / "p")
    paths.ori_imgs.mkdir(parents=True)
    images.write_rgb(paths.frame(0), np.zeros((8, 8, 3), np.uint8))
    pending_marker(paths.root, "ingest").parent.mkdir()
    pending_marker(paths.root, "ingest").write_text("{}")
    assert len(common.stage_fingerprint(paths, "ingest")) == 64
    assert not paths.manifest("ingest").exists()


def test_corrupt_first_frame_of_an_imported_dataset_says_which_file(tmp_path):
    """Adopting frames reads frame 0's size from its header: garbage there is an InputError, and nothing is recorded."""
    from radnerf.paths import PersonPaths

    paths = PersonPaths(tmp_path / "p")
    paths.ori_imgs.mkdir(parents=True)
    paths.frame(0).write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="cannot read image .*0.jpg"):
        common.stage_fingerprint(paths, "ingest")
    assert not paths.manifest("ingest").exists()
    with pytest.raises(InputError, match="cannot read image"):
        images.read_rgb(paths.frame(0))


def _frames_in(frames: range) -> list[int]:
    return list(frames)


@pytest.mark.parametrize("workers", [1, 2])
def test_map_chunks_keeps_frame_order_and_reports_each_finished_chunk(workers):
    from radnerf.stage_io import progress_to

    seen = []
    with progress_to(lambda *report: seen.append(report)):
        out = common.map_chunks(_frames_in, 10, workers, stage="parse")
    assert [i for chunk in out for i in chunk] == list(range(10))
    assert seen == ([("parse", 10, 10, "frames")] if workers == 1 else [("parse", 5, 10, "frames"), ("parse", 10, 10, "frames")])
