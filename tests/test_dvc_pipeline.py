"""`dvc repro` runs the pipeline's stages through the CLI, and a second call does nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


def _run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(args)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_dvc_repro_twice_on_a_tiny_input(tmp_path, talking_clip):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ["dvc.yaml", "params.yaml", ".dvcignore"]:
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "conf", repo / "conf")
    # The code the stages depend on (dvc.yaml lists it as deps).
    shutil.copytree(REPO / "radnerf", repo / "radnerf", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "data").mkdir()
    shutil.copy(talking_clip, repo / "data" / "tiny.mp4")
    (repo / "params.yaml").write_text(yaml.safe_dump({"persons": {"tiny": {"video": "data/tiny.mp4", "preset": "smoke"}}}))

    # The venv's console scripts (radnerf) must be on PATH for dvc's commands.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               RADNERF_CONF_DIR=str(repo / "conf"))
    dvc = [sys.executable, "-m", "dvc"]
    _run(["git", "init", "-q"], repo, env)
    _run([*dvc, "init", "-q"], repo, env)
    _run([*dvc, "config", "core.analytics", "false"], repo, env)
    _run([*dvc, "add", "-q", "data"], repo, env)
    first = _run([*dvc, "repro"], repo, env)
    stages = ["ingest", "landmarks", "parse", "background", "torso", "regions", "track", "audio", "train-head",
              "finetune-lips", "train-torso"]
    for stage in stages:
        assert f"Running stage '{stage}@tiny'" in first.stdout
    person = repo / "artifacts/tiny"
    frames = len(list((person / "ori_imgs").glob("*.jpg")))
    assert frames > 25 and len(list((person / "ori_imgs").glob("*.lms"))) == frames
    assert (person / "transforms_train.json").exists() and (person / "aud_ph.npy").exists()
    assert (person / "head/head.pt").is_file() and (person / "head/log.csv").is_file()
    assert (person / "torso/torso.pt").is_file() and (person / "torso/log.csv").is_file()
    second = _run([*dvc, "repro"], repo, env)
    assert "Running stage" not in second.stdout and "up to date" in second.stdout

    # A changed tracking setting re-runs tracking and the models trained on its poses, and nothing else.
    params = yaml.safe_load((repo / "conf/track/default.yaml").read_text())
    params["smooth_rotation"] = 3.0
    (repo / "conf/track/default.yaml").write_text(yaml.safe_dump(params))
    third = _run([*dvc, "repro"], repo, env)
    ran = [s for s in stages if f"Running stage '{s}@tiny'" in third.stdout]
    assert ran == ["track", "train-head", "finetune-lips", "train-torso"]
    assert "starting over" in third.stdout + third.stderr  # the finished head's checkpoints did not block it


def test_dvc_yaml_is_generated_from_the_stage_list():
    """dvc.yaml is what `radnerf dvc-yaml` prints: one stage list, deps included."""
    from radnerf import pipeline
    from radnerf.config import load_config

    generated = pipeline.dvc_yaml(load_config([]), pipeline.default_choices())
    assert (REPO / "dvc.yaml").read_text() == generated, "dvc.yaml is stale: run `radnerf dvc-yaml > dvc.yaml`"
    stages = yaml.safe_load(generated)["stages"]
    assert list(stages) == [s.name for s in pipeline.STAGES]
    for name, stage in stages.items():
        # A change to the shared stage runner or the file formats re-runs every stage.
        assert {"radnerf/stage_io.py", "radnerf/formats"} <= set(stage["do"]["deps"]), name
    assert "radnerf/preprocess/common.py" in stages["parse"]["do"]["deps"]
    assert "artifacts/${key}/aud_ph.npy" in stages["audio"]["do"]["outs"]
    assert {"conf/audio_features/offline.yaml": None} in stages["audio"]["do"]["params"]
    head = stages["train-head"]["do"]
    assert head["cmd"] == "radnerf train-head person=${key} preset=${item.preset}"
    assert {"artifacts/${key}/transforms_train.json", "artifacts/${key}/gt_imgs", "artifacts/${key}/bc.jpg",
            "artifacts/${key}/aud_ph.npy", "radnerf/models", "radnerf/train"} <= set(head["deps"])
    assert head["outs"] == ["artifacts/${key}/head/head.pt", "artifacts/${key}/head/val", "artifacts/${key}/head/log.csv"]
    assert {"conf/train/paper.yaml": None} in head["params"] and {"conf/preset/${item.preset}.yaml": None} in head["params"]
