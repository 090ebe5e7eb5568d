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


def test_training_curves_and_the_evaluation_reach_mlflow(make_cfg, tmp_path):
    """A training stage's log.csv becomes metric histories by step; the parent run carries every stage's numbers,
    the evaluation's under their own names (what the compare view and the registry read)."""
    from mlflow.tracking import MlflowClient

    from radnerf.experiments.runs import pipeline_run, tracking_uri

    cfg = make_cfg("person=alice", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    log_csv = tmp_path / "log.csv"
    log_csv.write_text("step,loss,psnr,val_psnr\n100,0.01,20.5,\n200,0.005,23.0,\n300,0.004,24.0,22.25\n")
    t0 = 1_700_000_000.0
    train = StageResult("train-head", Path("/tmp/alice"), (), False, 30.0, {"val_psnr": 22.25, "steps": 300.0}, t0)
    evaluate = StageResult("evaluate", Path("/tmp/alice"), (), False, 5.0, {"metrics.psnr": 21.5, "metrics.lmd": 1.25}, t0 + 31)
    with pipeline_run(cfg, name="person/alice", tags={"radnerf.sweep": "s1"}) as run:
        run.log_stage("train-head", train, curve=log_csv)
        run.log_stage("evaluate", evaluate)
    runs = _runs(cfg)
    client = MlflowClient(tracking_uri=tracking_uri(cfg))
    head = runs["train-head"].info.run_id
    assert [(m.step, m.value) for m in client.get_metric_history(head, "train/loss")] == [
        (100, 0.01), (200, 0.005), (300, 0.004)]
    assert [(m.step, m.value) for m in client.get_metric_history(head, "val/psnr")] == [(300, 22.25)]
    times = [m.timestamp for m in client.get_metric_history(head, "train/psnr")]
    assert times == sorted(times) and times[-1] == 1_700_000_030_000  # spread over the stage's real time
    parent = runs["person/alice"]
    assert parent.data.tags["radnerf.sweep"] == "s1"
    assert {k: v for k, v in parent.data.metrics.items() if not k.endswith("seconds")} == {
        "train-head.val_psnr": 22.25, "train-head.steps": 300.0, "psnr": 21.5, "lmd": 1.25}
