"""MLflow as a user browses it: a nested run per stage spanning its real time, marked when nothing ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from radnerf.stage_io import StageResult


def _result(stage: str, started: float, seconds: float, skipped: bool = False, adopted: bool = False) -> StageResult:
    root = Path("/tmp/person")
    return StageResult(stage, root, (root / f"{stage}.out",), skipped, seconds, {"frames": 30.0}, started, adopted)


def _runs(cfg):
    from mlflow.tracking import MlflowClient

    from radnerf.experiments.runs import tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri(cfg))
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    return {r.info.run_name: r for r in runs}


def _artifacts(cfg, run):
    from mlflow.tracking import MlflowClient

    from radnerf.experiments.runs import tracking_uri

    return MlflowClient(tracking_uri=tracking_uri(cfg)).list_artifacts(run.info.run_id)


def test_stage_runs_span_the_stage_and_say_what_it_did(make_cfg, tmp_path):
    from radnerf.experiments.runs import pipeline_run

    cfg = make_cfg("person=alice", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    t0 = 1_700_000_000.0
    manifest = tmp_path / "ingest.json"
    manifest.write_text("{}")
    with pipeline_run(cfg, name="person/alice") as run:
        run.log_stage("ingest", _result("ingest", t0, 95.25), artifacts=[manifest, tmp_path / "missing.jpg"])
        run.log_stage("landmarks", _result("landmarks", t0 + 95.5, 0.02, skipped=True))
        run.log_stage("audio", _result("audio_ph", t0 + 96.0, 0.01, skipped=True, adopted=True))
    runs = _runs(cfg)
    ingest, landmarks, audio, parent = runs["ingest"], runs["landmarks"], runs["audio"], runs["person/alice"]
    # The real start and end of the stage, not the moment MLflow heard of it.
    assert (ingest.info.start_time, ingest.info.end_time) == (1_700_000_000_000, 1_700_000_095_250)
    assert ingest.data.metrics == {"frames": 30.0, "seconds": 95.25} and ingest.info.status == "FINISHED"
    assert [a.path for a in _artifacts(cfg, ingest)] == ["ingest.json"]
    assert {n: r.data.tags["radnerf.state"] for n, r in runs.items() if n != "person/alice"} == {
        "ingest": "done", "landmarks": "up to date", "audio": "adopted"}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for n, r in runs.items() if n != "person/alice")
    assert landmarks.info.end_time - landmarks.info.start_time == 20 and audio.info.start_time == 1_700_000_096_000
    assert parent.data.tags["radnerf.all_up_to_date"] == "false"
    assert parent.data.metrics["ingest.seconds"] == 95.25


def test_a_run_where_every_stage_was_up_to_date_is_marked(make_cfg, tmp_path):
    from radnerf.experiments.runs import pipeline_run

    cfg = make_cfg("person=alice", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    with pipeline_run(cfg, name="person/alice") as run:
        run.log_stage("ingest", _result("ingest", 1_700_000_000.0, 0.03, skipped=True))
        run.log_stage("audio", _result("audio_ph", 1_700_000_000.1, 0.01, skipped=True, adopted=True))
    parent = _runs(cfg)["person/alice"]
    assert parent.data.tags["radnerf.all_up_to_date"] == "true" and parent.info.status == "FINISHED"


def test_a_failed_pipeline_ends_its_run_failed_and_unmarked(make_cfg, tmp_path):
    from radnerf.experiments.runs import pipeline_run

    cfg = make_cfg("person=alice", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(RuntimeError), pipeline_run(cfg, name="person/alice") as run:
        run.log_stage("ingest", _result("ingest", 1_700_000_000.0, 0.03, skipped=True))
        raise RuntimeError("landmarks failed")
    parent = _runs(cfg)["person/alice"]
    assert parent.info.status == "FAILED" and "radnerf.all_up_to_date" not in parent.data.tags
