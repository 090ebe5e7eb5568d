"""The command line as a user meets it: help, config, errors, the demo end to end."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import run_cli


def test_help_is_fast_and_lists_the_built_stages():
    t = time.time()
    out = run_cli("--help")
    assert out.returncode == 0
    assert time.time() - t < 10
    for cmd in ["ingest", "demo", "weights", "config"]:
        assert cmd in out.stdout


def test_help_import_stays_light():
    code = "import sys, radnerf.cli; print(sorted(m for m in ('torch','mlflow','prefect','mediapipe','hydra') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_prints_the_composed_config():
    out = run_cli("config", "preset=cpu_tiny", "person=alice")
    assert out.returncode == 0
    assert "person: alice" in out.stdout and "preset: cpu_tiny" in out.stdout


def test_not_an_override():
    out = run_cli("ingest", "alice")
    assert out.returncode == 2 and "is not an override" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_demo_end_to_end_twice(tmp_path):
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"),
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    cmd = [sys.executable, "-m", "radnerf.cli", "demo", "preset=cpu_tiny", "demo.size=128"]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stderr and "ERROR" not in first.stderr
    manifest = json.loads((tmp_path / "artifacts/demo/manifests/ingest.json").read_text())
    assert manifest["frames"] == len(list((tmp_path / "artifacts/demo/ori_imgs").glob("*.jpg"))) > 50
    assert (tmp_path / "data/demo.mp4").exists()
    assert "not built yet" in first.stdout
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        names = {r[0] for r in db.execute("select name from runs")}
        metrics = {r[0] for r in db.execute("select key from metrics")}
    assert {"person/demo", "ingest"} <= names and "frames" in metrics
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "up to date" in second.stdout


def test_progress_bar_off_a_terminal_writes_the_start_and_a_line_per_tenth():
    import io

    from radnerf.cli import ProgressBar
    from radnerf.stage_io import progress_to, report_progress

    out = io.StringIO()
    with progress_to(ProgressBar(out)):
        for step in range(1, 101):
            report_progress("train-head", step, 100, f"loss {1 / step:.3f}")
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[0] == "train-head: 1/100 (1%) loss 1.000"
    assert lines[1] == "train-head: 10/100 (10%) loss 0.100"
    assert lines[-1] == "train-head: 100/100 (100%) loss 0.010"
    report_progress("train-head", 1, 100)  # outside the block nobody listens: no error, no output
    assert out.getvalue().splitlines() == lines
