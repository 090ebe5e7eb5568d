"""`dvc repro` runs the pipeline's stages through the CLI, and a second call does nothing."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO
from tests.dvc_repo import DVC, make_repo, run


@pytest.mark.slow
def test_dvc_repro_twice_on_a_tiny_input(tmp_path, talking_clip):
    import shutil
    import sys

    repo, env = make_repo(tmp_path / "repo", {"tiny": "data/tiny.mp4"}, preset="smoke")
    (repo / "data").mkdir()
    shutil.copy(talking_clip, repo / "data" / "tiny.mp4")
    run([*DVC, "add", "-q", "data"], repo, env)
    first = run([*DVC, "repro"], repo, env)
    stages = ["ingest", "landmarks", "parse", "background", "torso", "regions", "track", "audio", "train-head",
              "finetune-lips", "train-torso", "train-baseline", "package", "evaluate"]
    for stage in stages:
        assert f"Running stage '{stage}@tiny'" in first.stdout
    person = repo / "artifacts/tiny"
    frames = len(list((person / "ori_imgs").glob("*.jpg")))
    assert frames > 25 and len(list((person / "ori_imgs").glob("*.lms"))) == frames
    assert (person / "transforms_train.json").exists() and (person / "aud_ph.npy").exists()
    assert (person / "head/head.pt").is_file() and (person / "head/log.csv").is_file()
    assert (person / "torso/torso.pt").is_file() and (person / "torso/log.csv").is_file()
    assert (person / "eval/metrics.json").is_file() and (person / "eval/psnr_frames.csv").is_file()
    second = run([*DVC, "repro"], repo, env)
    assert "Running stage" not in second.stdout and "up to date" in second.stdout

    # A changed tracking setting in conf/, composed into params.yaml, re-runs tracking and what depends on it.
    params = yaml.safe_load((repo / "conf/track/default.yaml").read_text())
    params["smooth_rotation"] = 3.0
    (repo / "conf/track/default.yaml").write_text(yaml.safe_dump(params))
    run([sys.executable, "-m", "radnerf.cli", "dvc-yaml"], repo, env)
    third = run([*DVC, "repro", "train-torso@tiny"], repo, env)  # the stages after it would run again too
    ran = [s for s in stages if f"Running stage '{s}@tiny'" in third.stdout]
    assert ran == ["track", "train-head", "finetune-lips", "train-torso"]
    assert "starting over" in third.stdout + third.stderr  # the finished head's checkpoints did not block it


def test_dvc_files_are_generated_from_the_stage_list_and_conf():
    """dvc.yaml and params.yaml are what `radnerf dvc-yaml` writes: one stage list, one config (conf/)."""
    from radnerf import pipeline

    generated = {path.name: text for path, text in pipeline.dvc_files().items()}
    for name in ("dvc.yaml", "params.yaml"):
        assert (REPO / name).read_text() == generated[name], f"{name} is stale: run `radnerf dvc-yaml`"
    stages = yaml.safe_load(generated["dvc.yaml"])["stages"]
    assert list(stages) == [s.name for s in pipeline.STAGES]
    for name, stage in stages.items():
        # A change to the shared stage runner or the file formats re-runs every stage.
        assert {"radnerf/stage_io.py", "radnerf/formats"} <= set(stage["do"]["deps"]), name
        assert stage["do"]["cmd"].startswith(f"radnerf {name} --config params.yaml person=${{key}}"), name
    assert "radnerf/preprocess/common.py" in stages["parse"]["do"]["deps"]
    assert "artifacts/${key}/aud_ph.npy" in stages["audio"]["do"]["outs"]
    assert stages["audio"]["do"]["params"] == ["audio_features"]
    head = stages["train-head"]["do"]
    assert head["cmd"] == "radnerf train-head --config params.yaml person=${key}"
    assert {"artifacts/${key}/transforms_train.json", "artifacts/${key}/gt_imgs", "artifacts/${key}/bc.jpg",
            "artifacts/${key}/aud_ph.npy", "radnerf/models", "radnerf/train"} <= set(head["deps"])
    assert head["outs"] == ["artifacts/${key}/head/head.pt", "artifacts/${key}/head/val"]
    assert list(head["plots"][0]) == ["artifacts/${key}/head/log.csv"]
    assert {"model", "train", "render"} <= set(head["params"])  # `dvc params diff` shows model.ambient_dim


def test_the_stages_read_what_radnerf_composes_from_conf():
    """params.yaml holds no values of its own: it is conf/params.yaml (conf/config.yaml + the workspace's
    preset) composed, so a DVC stage gets the config `radnerf <stage> preset=...` gets."""
    from radnerf.config import load_config, load_config_file, to_container

    preset = yaml.safe_load((REPO / "params.yaml").read_text())["preset"]
    assert to_container(load_config_file(REPO / "params.yaml")) == to_container(load_config([f"preset={preset}"]))


def test_dvc_tracks_every_file_evaluate_writes():
    """Each file of eval/ is a DVC output, metric or plot, and evaluate re-runs when DVC removed any of them."""
    from radnerf import pipeline
    from radnerf.eval.evaluate import OUTPUTS

    st = pipeline.BY_NAME["evaluate"]
    tracked = {*st.writes, *st.metrics, *(p.path for p in st.plots)}
    assert tracked == {f"eval/{name}" for name in OUTPUTS}
    assert st.metrics == ("eval/metrics.json",) and [p.path for p in st.plots] == ["eval/psnr_frames.csv"]
