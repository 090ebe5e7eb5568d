"""The person flow: under Prefect's test harness, and as a deployment on a real local server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO


def test_person_flow_runs_every_built_stage_then_skips_them(prefect_harness, talking_clip, tmp_path):
    from flows.person import person
    from radnerf.pipeline import PLANNED, PREPROCESS, STAGES

    built = [s.name for s in STAGES]
    assert built == [*PREPROCESS, "train-head", "finetune-lips", "train-torso", "train-baseline", "package",
                     "evaluate", "preview"]
    overrides = [f"paths.artifacts={tmp_path / 'a'}", "mlflow.enabled=false"]
    first = person(person="harness", video=str(talking_clip), preset="smoke", overrides=overrides)
    assert list(first["stages"]) == built
    assert not any(rep["skipped"] for rep in first["stages"].values())
    frames = first["stages"]["ingest"]["metrics"]["frames"]
    assert frames > 25 and first["stages"]["track"]["metrics"]["frames"] == frames
    assert first["stages"]["train-head"]["metrics"]["steps"] == 40  # the smoke preset's head
    assert (tmp_path / "a/harness/head/head.pt").is_file()
    assert (tmp_path / "a/harness/harness.radnerf.zip").is_file()  # the model package
    assert first["video"] == str(tmp_path / "a/harness/preview/preview.mp4")  # ... and a video rendered from it
    assert Path(first["video"]).stat().st_size > 0
    assert first["not_built"] == PLANNED
    second = person(person="harness", video=str(talking_clip), preset="smoke", overrides=overrides,
                    return_state=True)
    assert all(rep["skipped"] for rep in second.result()["stages"].values())

    # The UI shows the skipped stages as Cached.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[second.state_details.flow_run_id])))
    assert sorted(r.name for r in runs) == sorted(built)
    assert {r.state.name for r in runs} == {"Cached"}

    from prefect.artifacts import Artifact

    table = Artifact.get("radnerf-harness")
    assert table is not None and table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert rows[0]["stage"] == "ingest" and rows[0]["state"] == "up to date" and rows[0]["frames"] == frames
    assert {r["stage"] for r in rows if r["state"] == "not built yet"} == set(PLANNED)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect(*args: str, env: dict, cwd: Path = REPO, timeout: float = 180) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "prefect", *args], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out


def _run_log_messages(api: str, run_id: str, expect: str, timeout: float = 30) -> list[str]:
    """Messages of a flow run's logs as the UI reads them, once one starting with ``expect`` arrived."""
    query = json.dumps({"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC"}).encode()
    deadline = time.time() + timeout
    while True:
        request = urllib.request.Request(f"{api}/logs/filter", data=query, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            messages = [entry["message"] for entry in json.load(r)]
        if any(m.startswith(expect) for m in messages) or time.time() > deadline:
            return messages
        time.sleep(1)


@pytest.mark.slow
def test_deployment_run_on_local_server_and_worker(tmp_path, talking_clip):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=api,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_CLI_PROMPT="false",
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    worker = None
    try:
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(1)
        _prefect("work-pool", "create", "radnerf-local", "--type", "process", env=env)
        _prefect("work-pool", "create", "radnerf-gpu", "--type", "process", env=env)  # the train/gpu deployment's
        _prefect("--no-prompt", "deploy", "--all", env=env)
        params = {"person": "deployed", "video": str(talking_clip), "preset": "smoke",
                  "overrides": [f"paths.artifacts={tmp_path / 'artifacts'}"]}
        out = _prefect("deployment", "run", "person/new-person", "--params", json.dumps(params), env=env)
        run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out.stdout).group(1)
        worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "radnerf-local"],
                                  env=env, cwd=REPO, stdout=open(tmp_path / "worker.log", "w"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        state = None
        # The flow now trains a baseline and evaluates too: ~2.5 min alone on 2 cores, twice that beside other work.
        deadline = time.time() + 600
        while time.time() < deadline:
            with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as r:
                state = json.load(r)["state"]["type"]
            if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(2)
        assert state == "COMPLETED", (tmp_path / "worker.log").read_text()[-4000:]
        # radnerf's own lines are in the flow run's logs (the UI), not only in the worker's terminal.
        messages = _run_log_messages(api, run_id, expect="person deployed:")
        assert any(m.startswith("person deployed:") for m in messages), messages[-20:]
        assert any(re.match(r"ingest: done in [0-9.]+ s -> ", m) for m in messages), messages[-20:]
        person = tmp_path / "artifacts/deployed"
        assert json.loads((person / "manifests/ingest.json").read_text())["frames"] > 25
        assert (person / "transforms_train.json").exists() and (person / "aud_ph.npy").exists()
        assert (person / "head/head.pt").is_file()
        assert any(re.match(r"train-head: done in [0-9.]+ s -> ", m) for m in messages), messages[-20:]
        # From video to a registered model: the package is version 1 of the person's model, and @champion.
        from mlflow import MlflowClient

        champion = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_model_version_by_alias("radnerf-deployed", "champion")
        assert str(champion.version) == "1" and float(champion.tags["metric.psnr"]) > 0
        assert any(m.startswith("registry: radnerf-deployed version 1 is now @champion") for m in messages)
        assert (person / "preview/preview.mp4").stat().st_size > 0
    finally:
        for proc in (worker, server):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
