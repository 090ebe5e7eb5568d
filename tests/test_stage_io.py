"""Atomic stage outputs and the per-person lock (what lets several persons run in parallel)."""

from __future__ import annotations

import json
import threading

import pytest

from radnerf.errors import RadNerfError
from radnerf.stage_io import StageWriter, foreign_outputs, person_lock, write_json_atomic


def test_commit_moves_outputs_and_writes_the_manifest_last(tmp_path):
    with StageWriter(tmp_path, "demo", ["out.txt", "dir"]) as w:
        w.path("out.txt").write_text("new")
        w.path("dir").mkdir()
        w.manifest["n"] = 1
        assert not (tmp_path / "out.txt").exists()  # nothing visible before the commit
    assert (tmp_path / "out.txt").read_text() == "new" and (tmp_path / "dir").is_dir()
    assert json.loads((tmp_path / "manifests/demo.json").read_text())["n"] == 1
    assert not (tmp_path / "manifests/.demo.pending").exists()
    assert foreign_outputs(tmp_path, "demo", ["out.txt"]) == []
    with pytest.raises(ValueError):
        with StageWriter(tmp_path, "demo", ["out.txt"]) as w:
            w.path("undeclared.txt")


def test_failed_stage_keeps_the_previous_outputs(tmp_path):
    with StageWriter(tmp_path, "demo", ["out.txt"]) as w:
        w.path("out.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with StageWriter(tmp_path, "demo", ["out.txt"]) as w:
            w.path("out.txt").write_text("half")
            raise RuntimeError("killed")
    assert (tmp_path / "out.txt").read_text() == "old"
    assert list((tmp_path / ".staging").iterdir()) == []


def test_outputs_without_manifest_are_foreign(tmp_path):
    (tmp_path / "ori_imgs").mkdir()
    assert foreign_outputs(tmp_path, "ingest", ["ori_imgs", "aud.wav"]) == ["ori_imgs"]


def test_imported_manifest_keeps_outputs_foreign_and_ours_does_not(tmp_path):
    (tmp_path / "bc.jpg").write_bytes(b"x")
    manifest = tmp_path / "manifests" / "background.json"
    write_json_atomic(manifest, {"stage": "background", "imported": True, "fingerprint": "f"})
    assert foreign_outputs(tmp_path, "background", ["bc.jpg"]) == ["bc.jpg"]
    write_json_atomic(manifest, {"stage": "background", "fingerprint": "f"})
    assert foreign_outputs(tmp_path, "background", ["bc.jpg"]) == []


def test_one_run_per_person_and_persons_in_parallel(tmp_path):
    inside = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def hold(person):
        try:
            with person_lock(tmp_path / person):
                inside.set()
                release.wait(5)
        except BaseException as e:  # collected for the assertions below
            errors.append(e)

    t = threading.Thread(target=hold, args=("alice",))
    t.start()
    assert inside.wait(5)
    with pytest.raises(RadNerfError, match="being processed by another run"):
        with person_lock(tmp_path / "alice"):
            pass
    with person_lock(tmp_path / "bob"):  # another person is not blocked
        pass
    release.set()
    t.join()
    assert errors == []
    with person_lock(tmp_path / "alice"):  # free again once the first run ends
        pass


def test_up_to_date_needs_the_same_fingerprint_and_every_output(tmp_path):
    from radnerf.stage_io import up_to_date

    assert not up_to_date(tmp_path, "demo", "fp1", ["out.txt"])  # never ran
    with StageWriter(tmp_path, "demo", ["out.txt"]) as w:
        w.path("out.txt").write_text("x")
        w.manifest["fingerprint"] = "fp1"
    assert up_to_date(tmp_path, "demo", "fp1", ["out.txt"])
    assert not up_to_date(tmp_path, "demo", "fp2", ["out.txt"])  # inputs or settings changed
    (tmp_path / "out.txt").unlink()
    assert not up_to_date(tmp_path, "demo", "fp1", ["out.txt"])  # an output was deleted


def test_atomic_file_keeps_the_old_file_when_the_write_fails(tmp_path):
    from radnerf.stage_io import atomic_file

    target = tmp_path / "model.pth"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("connection dropped")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]  # no temporary left
    with atomic_file(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]


def test_stage_writer_commits_files_inside_another_stages_folder(tmp_path):
    # Landmarks put their .lms beside ingest's frames: the folder stays, only the files move.
    (tmp_path / "ori_imgs").mkdir()
    (tmp_path / "ori_imgs" / "0.jpg").write_bytes(b"frame")
    for text in ("first", "second"):
        with StageWriter(tmp_path, "landmarks", ["ori_imgs/0.lms"]) as w:
            w.path("ori_imgs/0.lms").write_text(text)
        assert (tmp_path / "ori_imgs" / "0.lms").read_text() == text
    assert (tmp_path / "ori_imgs" / "0.jpg").read_bytes() == b"frame"
    assert sorted(p.name for p in (tmp_path / "ori_imgs").iterdir()) == ["0.jpg", "0.lms"]
    assert json.loads((tmp_path / "manifests" / "landmarks.json").read_text())["stage"] == "landmarks"


def test_fingerprint_changes_with_the_code_that_computes_the_outputs(monkeypatch):
    import radnerf
    from radnerf.stage_io import fingerprint, library_versions

    base = fingerprint("audio_ph", {"aud.wav": "abc"}, {"window": 16}, 1, {"pocketsphinx": "5.0"})
    assert fingerprint("audio_ph", {"aud.wav": "abc"}, {"window": 16}, 1, {"pocketsphinx": "5.0"}) == base
    assert fingerprint("audio_ph", {"aud.wav": "abc"}, {"window": 16}, 2, {"pocketsphinx": "5.0"}) != base
    assert fingerprint("audio_ph", {"aud.wav": "abc"}, {"window": 16}, 1, {"pocketsphinx": "5.1"}) != base
    monkeypatch.setattr(radnerf, "__version__", "999.0")
    assert fingerprint("audio_ph", {"aud.wav": "abc"}, {"window": 16}, 1, {"pocketsphinx": "5.0"}) != base
    import numpy

    assert library_versions("numpy", "surely-not-installed-radnerf-x") == {
        "numpy": numpy.__version__, "surely-not-installed-radnerf-x": None,
    }
