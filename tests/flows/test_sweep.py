"""The sweep flow and ``radnerf train -m``: variants trained side by side, compared in one MLflow experiment."""

from __future__ import annotations

import csv
import logging
import os

import pytest

from radnerf.errors import RadNerfError


@pytest.fixture
def cli_logging():
    """``radnerf.cli.main`` points the root logger at this test's captured stderr, which closes after it:
    put the handlers back, or a later flow test logs into a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class _FakeState:
    def __init__(self, data):
        self.data = data

    def result(self, raise_on_failure=True):
        return self.data


def test_train_multirun_runs_the_sweep_flow_and_ends_with_the_table(monkeypatch, tmp_path, capsys, cli_logging):
    import flows.sweep
    from radnerf import cli
    from radnerf.experiments.sweep import SweepResult, VariantOutcome

    calls = []

    def fake_flow(**kwargs):
        calls.append(kwargs)
        outcomes = [VariantOutcome("ambient_dim=1", {"model.ambient_dim": "1"}, "done", {"psnr": 27.5}, "r1"),
                    VariantOutcome("ambient_dim=2", {"model.ambient_dim": "2"}, "failed", {}, "r2", "diverged")]
        table = str(tmp_path / "table.md")
        return _FakeState(SweepResult("ambient_dim", "alice", ["model.ambient_dim"], outcomes, {"md": table},
                                      "radnerf-sweep-alice", "sqlite:///mlflow.db").to_dict())

    monkeypatch.setattr(flows.sweep, "sweep", fake_flow)
    code = cli.main(["train", "-m", "person=alice", "preset=smoke", "model.ambient_dim=1,2",
                     f"paths.artifacts={tmp_path}", "--workers", "2"])
    out = capsys.readouterr().out
    assert calls == [{"person": "alice", "grid": ["model.ambient_dim=1,2"], "preset": None, "name": None,
                      "runner": None, "workers": 2,
                      "overrides": ["person=alice", "preset=smoke", f"paths.artifacts={tmp_path}"],
                      "return_state": True}]
    assert code == 1  # a variant failed
    assert "| ambient_dim=1 | 1 | 27.50 | r1 |" in out and "- ambient_dim=2 failed: diverged" in out
    assert out.rstrip().splitlines()[-2] == f"table: {tmp_path / 'table.md'} (also .csv, .html)"


def test_a_bad_sweep_on_the_command_line_fails_before_prefect_starts(monkeypatch, tmp_path, capsys, cli_logging):
    import flows.sweep
    from radnerf import cli

    monkeypatch.setattr(flows.sweep, "sweep", lambda **kw: pytest.fail("the flow must not start"))
    code = cli.main(["train", "-m", "person=alice", "model.ambient_dim=1,4", f"paths.artifacts={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "sweep override 'model.ambient_dim=4'" in err and "hint: use 1, 2 or 3" in err
    assert cli.main(["sweep", "person=alice", "seed=1"]) == 2
    assert "nothing to sweep" in capsys.readouterr().err
    assert cli.main(["train", "person=alice", "--name", "x"]) == 2  # --name without -m
    capsys.readouterr()
    assert cli.main(["train", "person=alice", "model.ambient_dim=1,2"]) == 2  # a grid without -m
    assert "hint: add -m" in capsys.readouterr().err


@pytest.mark.slow
def test_a_sweep_compares_its_variants_in_one_mlflow_experiment(prefect_harness, talking_clip, tmp_path, monkeypatch):
    import radnerf.train.head
    from flows.sweep import sweep

    real_head = radnerf.train.head.train_head

    def head_failing_at_ambient_dim_2(cfg):
        if cfg.model.ambient_dim == 2:
            raise RadNerfError("no GPU left for this variant")
        return real_head(cfg)

    monkeypatch.setattr(radnerf.train.head, "train_head", head_failing_at_ambient_dim_2)
    tiny = [f"paths.artifacts={tmp_path / 'a'}", "ingest.max_duration=1.6", "train.head_iters=4",
            "train.lips_iters=1", "train.torso_iters=1", "eval.metrics=[psnr]"]
    state = sweep(person="sw", grid=["model.ambient_dim=1,2,3"], video=str(talking_clip), preset="smoke",
                  overrides=tiny, workers=2, return_state=True)
    assert state.is_failed() and "1 of 3 variants failed: ambient_dim=2" in state.message
    result = state.result(raise_on_failure=False)
    assert [(o["name"], o["state"]) for o in result["outcomes"]] == [
        ("ambient_dim=1", "done"), ("ambient_dim=2", "failed"), ("ambient_dim=3", "done")]
    assert result["outcomes"][1]["error"] == "no GPU left for this variant"

    # Each variant: its own models beside the base person's preprocessed files (hard links); nothing
    # but the baseline was trained on the base person.
    base = tmp_path / "a/sw"
    variant = base / "sweeps/ambient_dim/ambient_dim-1/sw"
    assert os.path.samefile(base / "gt_imgs/0.jpg", variant / "gt_imgs/0.jpg")
    assert os.path.samefile(base / "baseline/baseline.pt", variant / "baseline/baseline.pt")
    assert (variant / "head/head.pt").is_file() and not (base / "head").exists()

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name("radnerf-sweep-sw")
    runs = {r.info.run_name: r for r in client.search_runs(
        [exp.experiment_id], filter_string="tags.`radnerf.sweep` = 'ambient_dim'")
        if "radnerf.variant" in r.data.tags}
    assert sorted(runs) == ["ambient_dim=1", "ambient_dim=2", "ambient_dim=3"]
    assert runs["ambient_dim=2"].info.status == "FAILED"
    done = [runs["ambient_dim=1"], runs["ambient_dim=3"]]
    assert {r.info.status for r in done} == {"FINISHED"}
    assert set(done[0].data.metrics) == set(done[1].data.metrics)  # the compare view lines them up
    assert {"psnr", "psnr_no_audio", "train_seconds"} <= set(done[0].data.metrics)
    assert [r.data.params["model.ambient_dim"] for r in done] == ["1", "3"]
    assert done[1].data.params["sweep.overrides"] == "model.ambient_dim=3"
    sweep_run = client.get_run(done[0].data.tags["mlflow.parentRunId"])
    assert sweep_run.info.run_name == "sweep ambient_dim" and sweep_run.info.status == "FAILED"
    assert {a.path for a in client.list_artifacts(sweep_run.info.run_id)} == {"table.md", "table.csv", "table.html"}

    rows = {r["variant"]: r for r in csv.DictReader(open(base / "sweeps/ambient_dim/table.csv"))}
    assert list(rows) == ["ambient_dim=1", "ambient_dim=2", "ambient_dim=3"]
    for name, run in runs.items():
        row = rows[name]
        assert row["mlflow_run"] == run.info.run_id and row["model.ambient_dim"] == name[-1]
        for metric in ("psnr", "psnr_no_audio", "train_seconds"):
            assert (float(row[metric]) if row[metric] else None) == run.data.metrics.get(metric), (name, metric)

    from prefect.artifacts import Artifact

    table = Artifact.get("radnerf-sw-sweep-ambient-dim")
    assert table is not None and table.type == "markdown" and "| ambient_dim=3 | 3 |" in table.data
