"""Shared preprocessing helpers: PNG writer, chunks, options from the config."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from radnerf.errors import InputError, RadNerfError
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


def _chunk_that_fails(frames: range) -> list[int]:
    if 5 in frames:
        raise RadNerfError("frame 5 is broken")
    return list(frames)


def _chunk_with_bad_input(frames: range) -> list[int]:
    if 9 in frames:  # the last chunk: in a worker process
        raise InputError("frame 9 has no face", hint="cut the clip before frame 9")
    return list(frames)


def test_an_error_in_a_worker_process_keeps_its_hint():
    with pytest.raises(InputError) as e:
        common.map_chunks(_chunk_with_bad_input, 10, 2, stage="landmarks")
    assert (e.value.message, e.value.hint) == ("frame 9 has no face", "cut the clip before frame 9")


def test_map_chunks_on_dask_keeps_frame_order_progress_and_errors():
    from distributed import Client, LocalCluster

    from radnerf.stage_io import progress_to

    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False):
        target = common.DaskTarget(cluster.scheduler_address)
        seen = []
        with progress_to(lambda *report: seen.append(report)):
            out = common.map_chunks(_frames_in, 10, 99, stage="parse", dask=target)
        assert len(out) == 3  # one chunk per thread of the cluster, whatever `workers` says
        assert [i for chunk in out for i in chunk] == list(range(10))
        assert [done for _, done, _, _ in seen] == sorted(done for _, done, _, _ in seen)
        assert seen[-1] == ("parse", 10, 10, "frames") and len(seen) == 3

        assert common.map_chunks(_frames_in, 10, 1, dask=common.DaskTarget(cluster.scheduler_address, chunks=5))[1] \
            == [2, 3]
        with pytest.raises(RadNerfError, match="frame 5 is broken"):
            common.map_chunks(_chunk_that_fails, 10, 2, stage="parse", dask=target)


def _a_persons_stage(n: int) -> list[list[int]]:
    return common.map_chunks(_frames_in, n, 2)


def test_on_a_dask_worker_chunks_go_to_its_cluster():
    """A person's pipeline run as a task on a Dask worker (whose process may not start a pool of its own)
    sends its chunks to the same cluster; the waiting task frees its thread, so one thread is enough."""
    from distributed import Client, LocalCluster, get_task_stream

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client, get_task_stream(client=client) as stream:
        assert client.submit(_a_persons_stage, 10).result(timeout=60) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert sorted(t["key"].split("-")[0] for t in stream.data) == ["_a_persons_stage", "_frames_in", "_frames_in"]


def test_an_unreachable_scheduler_names_the_stage_and_the_address(monkeypatch):
    import dask

    from radnerf.config import PreprocessConfig

    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9")
    target = common.dask_target(PreprocessConfig(executor="dask"))
    assert target.address == "tcp://127.0.0.1:9"
    assert common.dask_target(PreprocessConfig(executor="dask", dask_address="tcp://h:1")).address == "tcp://h:1"
    assert common.dask_target(PreprocessConfig()) is None
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(RadNerfError, match=r"landmarks: cannot reach the Dask scheduler at tcp://127.0.0.1:9") as e:
        common.map_chunks(_frames_in, 10, 2, stage="landmarks", dask=target)
    assert "dask scheduler" in e.value.hint
