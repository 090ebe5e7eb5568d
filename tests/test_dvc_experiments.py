"""DVC experiments on the pipeline: `dvc exp run -S key=value` reaches the stages' config, `dvc exp show` and
`dvc params diff` list it, and evaluation's numbers are DVC metrics and plots."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import yaml

from tests.dvc_repo import DVC, commit, make_repo, run


def test_dvc_reads_evaluations_metrics_and_plots_as_evaluate_writes_them(tmp_path):
    from radnerf.eval.evaluate import Evaluation, Metric, write_numbers

    repo, env = make_repo(tmp_path / "repo", {"tiny": "data/tiny.mp4"})
    ev = Evaluation(
        metrics=[Metric("psnr", 23.4, "dB", "val", "radnerf"), Metric("psnr", 21.0, "dB", "val", "no audio"),
                 Metric("lpips", None, "", "val", "radnerf", "alex", unavailable="run `radnerf weights fetch alexnet`"),
                 Metric("mouth_audio_corr", 0.61, "", "clip", "real video"),
                 Metric("lse_d", 7.5, "", "cross:bob.wav", "radnerf", "syncnet_v2")],
        img_ids=np.arange(10, 14), val_index=np.array([2, 3]),
        per_frame_psnr={"radnerf": [30.0, 31.0, 22.0, 21.5], "still frame": [math.inf, 25.0, 18.0, 17.0]})
    out = repo / "artifacts/tiny/eval"
    out.mkdir(parents=True)
    write_numbers(out, ev, {"person": "tiny", "metrics": [m.row() for m in ev.metrics]})

    shown = json.loads(run([*DVC, "metrics", "show", "--json"], repo, env).stdout)
    numbers = shown[""]["data"]["artifacts/tiny/eval/metrics.json"]["data"]
    assert numbers == {"val": {"radnerf": {"psnr": 23.4}, "no_audio": {"psnr": 21.0}},
                       "clip": {"real_video": {"mouth_audio_corr": 0.61}}, "cross_bob": {"radnerf": {"lse_d": 7.5}}}
    # The records keep what DVC's numbers cannot say: units, and why a metric is missing.
    records = json.loads((out / "records.json").read_text())["metrics"]
    assert {"name": "psnr", "value": 23.4, "unit": "dB", "split": "val", "variant": "radnerf"} in records
    assert "weights fetch alexnet" in next(r["unavailable"] for r in records if r["name"] == "lpips")

    plots = json.loads(run([*DVC, "plots", "show", "--json", "artifacts/tiny/eval/psnr_frames.csv"], repo,
                           env).stdout)
    chart = plots["data"]["artifacts/tiny/eval/psnr_frames.csv"][0]["content"]
    assert chart["title"]["text"] == "tiny: PSNR of each frame (val frames held out)"
    assert chart["encoding"]["color"]["field"] == "variant"  # the template in .dvc/plots: a line per variant
    rows = {(r["variant"], int(r["frame"])): (float(r["psnr"]), r["split"]) for r in chart["data"]["values"]}
    assert rows[("radnerf", 12)] == (22.0, "val") and rows[("radnerf", 10)] == (30.0, "train")
    assert ("still frame", 10) not in rows and rows[("still frame", 11)] == (25.0, "train")  # no infinite PSNR
    html = run([*DVC, "plots", "show", "-o", str(tmp_path / "html"), "artifacts/tiny/eval/psnr_frames.csv"], repo,
               env)
    assert (tmp_path / "html/index.html").is_file(), html.stdout


@pytest.mark.slow
def test_dvc_exp_run_set_param_reaches_the_stages(tmp_path, talking_clip):
    """`dvc exp run -S` composes conf/params.yaml again with the overrides (a group choice included): the stage
    that runs sees them, params.yaml and `dvc exp show` list them, and the rest of the config stays."""
    repo, env = make_repo(tmp_path / "repo", {"tiny": "data/tiny.mp4"}, preset="cpu_tiny")
    (repo / "data").mkdir()
    shutil.copy(talking_clip, repo / "data/tiny.mp4")
    run([*DVC, "add", "-q", "data"], repo, env)
    run([*DVC, "repro", "ingest"], repo, env)
    commit(repo, env, "ingest at cpu_tiny's size")
    frame = repo / "artifacts/tiny/ori_imgs/0.jpg"
    assert _size(frame) == yaml.safe_load((repo / "params.yaml").read_text())["ingest"]["size"] == 256

    # preset=smoke (a config group) resizes frames to 128 px; model.ambient_dim is a key of the model section.
    exp = run([*DVC, "exp", "run", "-S", "preset=smoke", "-S", "model.ambient_dim=3", "ingest"], repo, env)
    assert "Running stage 'ingest@tiny'" in exp.stdout
    assert _size(frame) == 128  # the stage that ran read the composed overrides
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["model"]["ambient_dim"] == 3 and params["preset"] == "smoke" and params["train"]["head_iters"] == 40
    assert params["model"]["attention_window"] == 8  # untouched keys keep conf/'s values
    # What a training stage would be given: the CLI reads the same file.
    shown = run(["radnerf", "config", "--config", "params.yaml", "person=tiny"], repo, env).stdout
    assert yaml.safe_load(shown)["model"]["ambient_dim"] == 3

    table = json.loads(run([*DVC, "exp", "show", "--json"], repo, env).stdout)
    experiments = [r for base in table for e in (base.get("experiments") or []) for r in e["revs"]]
    assert len(experiments) == 1
    exp_params = experiments[0]["data"]["params"]["params.yaml"]["data"]
    assert exp_params["model"]["ambient_dim"] == 3 and exp_params["ingest"]["size"] == 128
    diff = json.loads(run([*DVC, "params", "diff", "--json"], repo, env).stdout)["params.yaml"]
    assert (diff["model.ambient_dim"]["old"], diff["model.ambient_dim"]["new"]) == (2, 3)


def _size(path) -> int:
    from radnerf.media.images import read_rgb

    return read_rgb(path).shape[1]


def test_a_composed_config_file_takes_keys_but_not_group_choices(tmp_path, capsys):
    """`radnerf <stage> --config FILE` (what the DVC stages run): keys override, groups were chosen already."""
    from radnerf.cli import main
    from radnerf.config import load_config_file
    from radnerf.errors import ConfigError

    params = tmp_path / "params.yaml"
    assert main(["config", "preset=smoke"]) == 0
    params.write_text(capsys.readouterr().out)
    assert main(["config", "--config", str(params), "person=alice", "model.ambient_dim=3"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert (cfg["person"], cfg["model"]["ambient_dim"], cfg["train"]["head_iters"]) == ("alice", 3, 40)
    assert load_config_file(params, ["eval.audio=[a.wav,b.wav]"]).eval.audio == ["a.wav", "b.wav"]
    with pytest.raises(ConfigError, match="composed config"):
        load_config_file(params, ["preset=paper"])
    with pytest.raises(ConfigError, match="did you mean 'model.ambient_dim'"):
        load_config_file(params, ["model.ambient_dimm=3"])
    assert main(["train-head", "--config", str(tmp_path / "missing.yaml"), "person=alice"]) != 0
    assert "does not exist" in capsys.readouterr().err
