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
def test_dvc_repro_twice_on_a_tiny_input(tmp_path, clip_factory):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ["dvc.yaml", "params.yaml", ".dvcignore"]:
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "conf", repo / "conf")
    for path in ["radnerf/preprocess/ingest.py"]:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, repo / path)
    shutil.copytree(REPO / "radnerf/media", repo / "radnerf/media", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "data").mkdir()
    shutil.copy(clip_factory(seconds=1.6, fps=30), repo / "data" / "tiny.mp4")
    (repo / "params.yaml").write_text(yaml.safe_dump({"persons": {"tiny": {"video": "data/tiny.mp4", "preset": "cpu_tiny"}}}))

    # The venv's console scripts (radnerf) must be on PATH for dvc's commands.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               RADNERF_CONF_DIR=str(repo / "conf"))
    dvc = [sys.executable, "-m", "dvc"]
    _run(["git", "init", "-q"], repo, env)
    _run([*dvc, "init", "-q"], repo, env)
    _run([*dvc, "config", "core.analytics", "false"], repo, env)
    _run([*dvc, "add", "-q", "data"], repo, env)
    first = _run([*dvc, "repro"], repo, env)
    assert "Running stage 'ingest@tiny'" in first.stdout
    assert len(list((repo / "artifacts/tiny/ori_imgs").glob("*.jpg"))) == 40
    second = _run([*dvc, "repro"], repo, env)
    assert "Running stage" not in second.stdout and "up to date" in second.stdout

    # A changed ingest setting re-runs ingest only for what depends on it.
    params = yaml.safe_load((repo / "conf/ingest/default.yaml").read_text())
    params["jpeg_quality"] = 5
    (repo / "conf/ingest/default.yaml").write_text(yaml.safe_dump(params))
    third = _run([*dvc, "repro"], repo, env)
    assert "Running stage 'ingest@tiny'" in third.stdout
