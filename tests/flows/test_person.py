"""The person flow as a user watches it: radnerf's log lines and a long stage's progress in the
flow run, stage results as plain values, progress throttled."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from radnerf.stage_io import StageResult, report_progress

FOCAL_WARNING = "track: focal is unconstrained by the landmarks (fake stage)"


def fake_stage(cfg) -> StageResult:
    """A stage that logs like the real ones (an info line, a warning) and reports progress like training."""
    started = time.time()
    root = Path(cfg.paths.artifacts) / cfg.person
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    (root / "manifests" / "fake.json").write_text(json.dumps({"stage": "fake", "frames": 3}))
    (root / "fake.txt").write_text("out")
    logging.getLogger("radnerf.preprocess.fake").warning(FOCAL_WARNING)
    for step in range(1, 6):
        report_progress("fake", step, 5, f"loss {1 / step:.2f}")
    logging.getLogger("radnerf.preprocess.fake").info("fake: 3 frames")
    return StageResult("fake", root, (root / "fake.txt",), False, time.time() - started, {"frames": 3.0}, started)


@pytest.fixture
def flow_log():
    """Records of the ``flows.person`` logger (pytest's caplog loses its root handler when a test
    is the first to import prefect, whose logging setup replaces the root's handlers)."""
    import flows.person

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger(flows.person.__name__)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _flow_logs(flow_run_id, expect: str, timeout: float = 20.0) -> list:
    """The flow run's logs as the UI reads them, once a line containing ``expect`` arrived (logs go in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.time() + timeout
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        if any(expect in entry.message for entry in logs) or time.time() > deadline:
            return logs
        time.sleep(0.5)


def test_radnerf_logs_and_progress_reach_the_flow_run(prefect_harness, tmp_path, monkeypatch):
    from prefect.artifacts import Artifact

    from flows.person import person
    from radnerf import pipeline

    monkeypatch.setitem(pipeline.BY_NAME, "fake", pipeline.Stage("fake", f"{__name__}:fake_stage", "a fake", "-"))
    monkeypatch.setattr(pipeline, "stages_to_run", lambda cfg, names=None: ["fake"])
    state = person(person="logs", overrides=[f"paths.artifacts={tmp_path}", "mlflow.enabled=false"],
                   return_state=True)
    result = state.result()
    assert result["stages"]["fake"]["state"] == "done" and result["stages"]["fake"]["metrics"] == {"frames": 3.0}

    logs = _flow_logs(state.state_details.flow_run_id, "person logs:")
    by_message = {entry.message: entry for entry in logs}
    warning = by_message.get(FOCAL_WARNING)
    assert warning is not None, sorted(by_message)
    assert warning.level == logging.WARNING and warning.task_run_id is not None  # shown under the stage's task
    assert "fake: 3 frames" in by_message
    progress = [m for m in by_message if m.startswith("fake: 5/5")]
    assert progress == ["fake: 5/5, loss 0.20 (100 %)"]
    assert any(m.startswith("person logs:") and "fake" in m for m in by_message)  # the summary

    bar = Artifact.get("radnerf-logs-fake-progress")
    assert bar is not None and bar.type == "progress" and float(bar.data) == 100.0
    assert bar.description == "fake: 5/5, loss 0.20"


def test_progress_is_throttled_and_always_shows_the_end(monkeypatch, flow_log):
    import prefect.artifacts

    from flows.person import PrefectProgress

    calls = []
    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact",
                        lambda progress, key, description: calls.append(("create", progress, description)) or "id-1")
    monkeypatch.setattr(prefect.artifacts, "update_progress_artifact",
                        lambda artifact_id, progress, description: calls.append((artifact_id, progress, description)))
    now = [0.0]
    bar = PrefectProgress("radnerf-alice-train-head-progress", artifact_every=2.0, log_every=30.0,
                          clock=lambda: now[0])
    for step in range(1, 101):  # a step every 0.5 s
        now[0] = step * 0.5
        bar("train-head", step, 100, "")
    assert calls[0] == ("create", 1.0, "train-head: 1/100")
    assert calls[1] == ("id-1", 5.0, "train-head: 5/100")  # 2 s later
    assert calls[-1] == ("id-1", 100.0, "train-head: 100/100")
    assert len(calls) == 26  # every 2 s over 50 s, plus the end
    lines = [r.getMessage() for r in flow_log]
    assert lines == ["train-head: 1/100 (1 %)", "train-head: 61/100 (61 %)", "train-head: 100/100 (100 %)"]


def test_progress_that_cannot_reach_the_api_does_not_stop_the_stage(monkeypatch, flow_log):
    import prefect.artifacts

    from flows.person import PrefectProgress

    def unreachable(**kwargs):
        raise ConnectionError("server gone")

    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", unreachable)
    bar = PrefectProgress("radnerf-alice-train-head-progress")
    bar("train-head", 1, 10, "")
    bar("train-head", 10, 10, "")
    warnings = [r.getMessage() for r in flow_log if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "server gone" in warnings[0] and "the stage goes on" in warnings[0]


def test_flow_result_is_plain_json_and_gives_back_the_summary(tmp_path):
    from flows.person import PersonRun
    from radnerf import pipeline

    run = PersonRun("alice", not_built=["evaluate"], video=str(tmp_path / "renders" / "unheard.mp4"))
    run.stages["ingest"] = StageResult("ingest", tmp_path, (tmp_path / "ori_imgs", tmp_path / "aud.wav"), False,
                                       12.5, {"frames": 250.0}, started=1_700_000_000.0)
    run.stages["audio"] = StageResult("audio_ph", tmp_path, (tmp_path / "aud_ph.npy",), True, 0.1, {}, 1.0,
                                      adopted=True)
    data = json.loads(json.dumps(run.to_dict()))
    assert data["stages"]["ingest"]["outputs"] == [str(tmp_path / "ori_imgs"), str(tmp_path / "aud.wav")]
    assert data["stages"]["ingest"]["state"] == "done" and data["stages"]["audio"]["state"] == "adopted"
    back = PersonRun.from_dict(data)
    assert back == run
    assert pipeline.report_line("audio", back.stages["audio"]) in back.summary() and "not built yet: evaluate" in back.summary()
    assert back.summary().endswith(f"\n  video: {tmp_path / 'renders' / 'unheard.mp4'}")


@pytest.mark.parametrize("cwd_is_repo", [True, False])
def test_prefect_commands_run_from_the_repo_have_analytics_off(cwd_is_repo, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "DO_NOT_TRACK"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    code = "from prefect.settings import get_current_settings; print(get_current_settings().server.analytics_enabled)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO if cwd_is_repo else tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # Prefect's own default elsewhere is on: the repo's prefect.toml is what turns it off.
    assert out.stdout.strip() == ("False" if cwd_is_repo else "True")


@pytest.mark.slow
def test_a_training_task_that_fails_resumes_from_its_checkpoint_on_retry(prefect_harness, make_cfg, tmp_path,
                                                                         monkeypatch):
    """A failure mid-training (out of memory, a driver error) is retried, and the retry continues from the newest
    checkpoint instead of step 0; a RadNerfError (bad input) is not retried."""
    from flows.person import run_stage
    from radnerf.config import to_container
    from radnerf.errors import InputError
    from radnerf.train.head import HeadTrainer
    from tests.train.synthetic_person import make_synthetic_person
    from tests.train.test_training import TINY

    make_synthetic_person(tmp_path / "artifacts" / "synth", n_train=12, n_val=3, size=24)
    cfg = make_cfg(*TINY, "train.head_iters=40", "train.checkpoint_every=20")
    steps: list[int] = []
    step = HeadTrainer.train_step

    def flaky_step(self):
        steps.append(self.step)
        if len(steps) == 25:  # once, five steps after the checkpoint of step 20
            raise RuntimeError("CUDA out of memory (simulated)")
        return step(self)

    monkeypatch.setattr(HeadTrainer, "train_step", flaky_step)
    result = run_stage.with_options(retry_delay_seconds=0)("train-head", to_container(cfg))
    assert result.metrics["steps"] == 40
    assert steps[:25] == list(range(25)) and steps[25:] == list(range(20, 40))  # the retry began at step 20

    monkeypatch.setattr(HeadTrainer, "train_step", step)
    calls = []

    def bad_input(self):
        calls.append(1)
        raise InputError("the person's frames are gone")

    monkeypatch.setattr(HeadTrainer, "train_step", bad_input)
    with pytest.raises(InputError):
        run_stage.with_options(retry_delay_seconds=0)("train-head", to_container(make_cfg(*TINY, "train.head_iters=60")))
    assert len(calls) == 1
