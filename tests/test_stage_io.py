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


# -- the stage runner ----------------------------------------------------------

from radnerf.errors import StageOutputExistsError  # noqa: E402
from radnerf.paths import PersonPaths  # noqa: E402
from radnerf.stage_io import StagePlan, progress_to, report_progress, run_stage  # noqa: E402


def _writer(calls: list, text: str = "v1"):
    def work(w):
        calls.append(text)
        w.path("out.txt").write_text(text)
        report_progress("demo", 1, 1, "wrote out.txt")
        return {"frames": 3, "flagged": [4, 5]}

    return work


def test_runner_runs_then_finds_the_stage_up_to_date(tmp_path):
    paths, calls = PersonPaths(tmp_path / "p"), []
    plan = StagePlan("demo", ["out.txt"], settings={"k": 1}, upstream={"ingest": "abc"})
    first = run_stage(paths, plan, _writer(calls))
    assert not first.skipped and first.state == "done" and calls == ["v1"]
    assert first.output == paths.root / "out.txt"
    assert first.metrics == {"frames": 3.0, "flagged_count": 2.0}
    manifest = json.loads(first.manifest.read_text())
    assert manifest["inputs"] == {"ingest": "abc"} and manifest["settings"] == {"k": 1} and manifest["fingerprint"]
    assert first.started <= first.ended
    # Nothing about the run itself: the same inputs give the same manifest bytes (DVC tracks them).
    elsewhere = run_stage(PersonPaths(tmp_path / "q"), plan, _writer([]))
    assert elsewhere.manifest.read_bytes() == first.manifest.read_bytes()
    again = run_stage(paths, plan, _writer(calls))
    assert again.skipped and again.state == "up to date" and calls == ["v1"] and again.metrics == first.metrics
    # Changed settings or upstream redo it.
    changed = run_stage(paths, StagePlan("demo", ["out.txt"], settings={"k": 2}, upstream={"ingest": "abc"}),
                        _writer(calls, "v2"))
    assert not changed.skipped and (paths.root / "out.txt").read_text() == "v2"


def test_runner_adopts_complete_foreign_outputs_and_refuses_others(tmp_path):
    paths, calls = PersonPaths(tmp_path / "p"), []
    paths.root.mkdir()
    (paths.root / "out.txt").write_text("theirs")
    plan = StagePlan("demo", ["out.txt"])
    adopted = run_stage(paths, plan, _writer(calls))
    assert adopted.skipped and adopted.adopted and calls == [] and (paths.root / "out.txt").read_text() == "theirs"
    assert json.loads(adopted.manifest.read_text())["imported"] is True
    # A stage that cannot use them refuses, naming why, and keeps them.
    with pytest.raises(StageOutputExistsError, match="did not write.*too short"):
        run_stage(paths, plan, _writer(calls), accept_foreign=lambda missing: "too short")
    assert (paths.root / "out.txt").read_text() == "theirs"
    # Part of the outputs only: refused by default (nothing is deleted), replaced with overwrite.
    two = StagePlan("demo2", ["out.txt", "other.txt"])
    with pytest.raises(StageOutputExistsError, match="other.txt missing"):
        run_stage(paths, two, _writer(calls))

    def both(w):
        w.path("out.txt").write_text("ours")
        w.path("other.txt").write_text("ours")

    assert not run_stage(paths, two, both, overwrite=True).skipped
    assert (paths.root / "out.txt").read_text() == "ours"


def test_runner_guard_sees_the_previous_manifest_and_progress_reaches_the_listener(tmp_path):
    paths, calls, seen = PersonPaths(tmp_path / "p"), [], []
    with progress_to(lambda *a: seen.append(a)):
        run_stage(paths, StagePlan("demo", ["out.txt"]), _writer(calls))
    assert seen == [("demo", 1, 1, "wrote out.txt")]
    previous = []
    run_stage(paths, StagePlan("demo", ["out.txt"], settings=2), _writer(calls), guard=previous.append)
    assert previous[0]["stage"] == "demo"

    def refuse(manifest):
        raise StageOutputExistsError("another source")

    with pytest.raises(StageOutputExistsError):
        run_stage(paths, StagePlan("demo", ["out.txt"], settings=3), _writer(calls, "v3"), guard=refuse)
    assert (paths.root / "out.txt").read_text() == "v1"


def test_person_lock_is_reentrant_in_a_thread_but_not_across_threads(tmp_path):
    with person_lock(tmp_path):
        with person_lock(tmp_path):  # a helper the stage calls takes it again
            pass
        errors = []

        def other():
            try:
                with person_lock(tmp_path):
                    pass
            except RadNerfError as e:
                errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert errors and "another run" in str(errors[0])


def test_atomic_files_respect_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644


def test_replacing_a_folder_keeps_the_files_another_stage_put_in_it(tmp_path):
    """ingest re-run (dvc repro deletes aud.wav first) must not delete landmarks' .lms beside the frames."""
    with StageWriter(tmp_path, "ingest", ["ori_imgs"]) as w:
        w.path("ori_imgs").mkdir()
        (w.path("ori_imgs") / "0.jpg").write_text("frame v1")
        (w.path("ori_imgs") / "1.jpg").write_text("frame v1")
    (tmp_path / "ori_imgs" / "0.lms").write_text("landmarks")
    with StageWriter(tmp_path, "ingest", ["ori_imgs"], keep=["ori_imgs/*.lms"]) as w:
        w.path("ori_imgs").mkdir()
        (w.path("ori_imgs") / "0.jpg").write_text("frame v2")
    assert sorted(p.name for p in (tmp_path / "ori_imgs").iterdir()) == ["0.jpg", "0.lms"]  # stale 1.jpg gone
    assert (tmp_path / "ori_imgs" / "0.lms").read_text() == "landmarks"
    assert (tmp_path / "ori_imgs" / "0.jpg").read_text() == "frame v2"
