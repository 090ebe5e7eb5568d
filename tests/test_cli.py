"""The command line as a user meets it: help, config, errors, the demo end to end."""

from __future__ import annotations

import json
import os
import re
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


def test_help_lists_training_and_rendering():
    out = run_cli("--help")
    assert out.returncode == 0
    commands = re.findall(r"^    (\S+)", out.stdout, re.M)
    assert {"train-head", "finetune-lips", "train", "render"} <= set(commands)
    assert commands.index("audio") < commands.index("train-head") < commands.index("finetune-lips")  # data order
    train = run_cli("train", "--help")
    assert train.returncode == 0 and "train-head, finetune-lips" in train.stdout
    render = run_cli("render", "--help")
    assert render.returncode == 0 and "radnerf render person=alice audio=speech.wav" in render.stdout


def test_render_without_a_trained_head_says_what_to_run(tmp_path):
    out = run_cli("render", "person=nobody", f"paths.artifacts={tmp_path}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "head.pt" in errors[0] and "nobody" in errors[0], out.stderr
    assert "radnerf train-head person=nobody" in out.stderr
    assert not (tmp_path / "nobody" / "renders").exists()


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
    from radnerf.media.probe import probe

    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"),
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    cmd = [sys.executable, "-m", "radnerf.cli", "demo", "preset=smoke"]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stderr and "ERROR" not in first.stderr
    manifest = json.loads((tmp_path / "artifacts/demo/manifests/ingest.json").read_text())
    assert manifest["frames"] == len(list((tmp_path / "artifacts/demo/ori_imgs").glob("*.jpg"))) > 50
    assert (tmp_path / "data/demo.mp4").exists()
    assert re.search(r"^  train-head +done ", first.stdout, re.M), first.stdout
    assert re.search(r"^  finetune-lips +done ", first.stdout, re.M), first.stdout
    assert re.search(r"^  package +done ", first.stdout, re.M), first.stdout  # the video is rendered from it
    assert "not built yet" not in first.stdout  # every stage of the pipeline runs
    assert re.search(r"^  evaluate +done ", first.stdout, re.M), first.stdout
    assert (tmp_path / "artifacts/demo/eval/report.html").is_file()
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        names = {r[0] for r in db.execute("select name from runs")}
        metrics = {r[0] for r in db.execute("select key from metrics")}
    assert {"person/demo", "ingest", "train-head"} <= names and {"frames", "val_psnr"} <= metrics
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        models = list(db.execute("select m.name, r.name from logged_models m join runs r on m.source_run_id = r.run_uuid"))
    assert models == [("talking-portrait", "package")]  # the model package as a pyfunc, in the package's run

    # The demo ends with the person saying a sentence it never heard, with that sound.
    videos = re.findall(r"^  video: (.+)$", first.stdout, re.M)
    assert len(videos) == 1, first.stdout
    video = tmp_path / videos[0]
    assert video.suffix == ".mp4" and video.is_file()
    speech = probe(video.with_suffix(".wav"))
    info = probe(video)
    assert info.video is not None and info.video.fps == 25
    assert abs(info.video.frames - speech.duration * 25) <= 1 and info.video.frames > 50
    assert info.audio is not None and abs(info.audio.duration - info.video.frames / 25) < 0.05
    rendered_at = video.stat().st_mtime_ns

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert re.search(r"^  train-head +up to date ", second.stdout, re.M), second.stdout
    assert re.search(r"^  preview +up to date ", second.stdout, re.M) and f"video: {videos[0]}" in second.stdout
    # The first run registered the package as the person's champion; the second found it registered.
    assert "registry: radnerf-demo version 1 is now @champion (first version: psnr " in first.stdout, first.stdout
    assert "registry: radnerf-demo version 1 is now @champion (this package is version 1 already" in second.stdout
    assert not re.search(r"not built yet:.*train-head", second.stdout)
    assert video.stat().st_mtime_ns == rendered_at


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
