"""Ablation sweeps without Prefect: the grid as Hydra reads it, each variant's folder, the comparison table."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from radnerf.errors import RadNerfError
from radnerf.stage_io import StageResult


def test_grid_is_the_cartesian_product_in_hydras_syntax():
    from radnerf.experiments.sweep import default_name, expand, parse_grid

    axes = parse_grid(["model.ambient_dim=1,2,3", "render.max_steps=range(8,17,8)"])
    variants = expand(axes)
    assert [v.overrides for v in variants] == [
        (f"model.ambient_dim={a}", f"render.max_steps={s}") for a in (1, 2, 3) for s in (8, 16)]
    assert variants[0].name == "ambient_dim=1,max_steps=8"
    assert variants[0].folder == "ambient_dim-1+max_steps-8"
    assert dict(variants[-1].values) == {"model.ambient_dim": "3", "render.max_steps": "16"}
    assert default_name(axes) == "ambient_dim+max_steps"

    # choice(), a quoted value with a comma in it, a single value; names stay one path component.
    variants = expand(parse_grid(["model.backbone=choice(implicit,decomposed)", "eval.audio=['a,b.wav']"]))
    assert [v.overrides[0] for v in variants] == ["model.backbone=implicit", "model.backbone=decomposed"]
    assert dict(variants[0].values)["eval.audio"] == "['a,b.wav']"
    assert all("/" not in v.folder and "=" not in v.folder and "," not in v.folder for v in variants)


def test_multirun_splits_the_grid_from_what_every_variant_shares():
    from radnerf.experiments.sweep import split_multirun

    base, grid = split_multirun(["person=alice", "model.ambient_dim=1,2", "preset=smoke", "render.max_steps=range(8,33,8)",
                                 "eval.audio=['a.wav','b.wav']"])
    assert base == ["person=alice", "preset=smoke", "eval.audio=['a.wav','b.wav']"]
    assert grid == ["model.ambient_dim=1,2", "render.max_steps=range(8,33,8)"]


@pytest.mark.parametrize("grid, words", [
    (["model.ambient_dim=1,,2"], ["model.ambient_dim=1,,2"]),
    (["train.lr_net=interval(0.1,1.0)"], ["continuous"]),
    (["paths.artifacts=a,b"], ["cannot vary", "paths.artifacts"]),
    (["+model.new=1,2"], ["adds or deletes"]),
    (["seed=1,2", "seed=3,4"], ["swept twice"]),
])
def test_a_grid_hydra_cannot_sweep_is_refused(grid, words):
    from radnerf.experiments.sweep import parse_grid

    with pytest.raises(RadNerfError) as e:
        parse_grid(grid)
    assert all(w in e.value.message for w in words), e.value.message
    assert e.value.hint


def test_a_bad_key_or_value_is_refused_before_anything_runs(tmp_path):
    from radnerf.config import load_config
    from radnerf.experiments.sweep import plan_sweep

    base = [f"paths.artifacts={tmp_path / 'a'}", "person=alice", "preset=smoke"]
    with pytest.raises(RadNerfError) as e:
        plan_sweep(base, ["render.max_steps=8,16", "model.ambient_dim=2,7"])
    assert "model.ambient_dim=7" in e.value.message and "not supported" in e.value.message
    assert e.value.hint == "use 1, 2 or 3"
    with pytest.raises(RadNerfError) as e:
        plan_sweep(base, ["model.ambiant_dim=1,2"])
    assert "'model.ambiant_dim=1'" in e.value.message and "did you mean 'model.ambient_dim'" in e.value.message
    assert not (tmp_path / "a").exists()  # nothing was written

    plan = plan_sweep(base, ["model.ambient_dim=1,3"], load=load_config)
    assert [p.cfg.model.ambient_dim for p in plan.variants] == [1, 3]
    first = plan.variants[0]
    assert first.folder == tmp_path / "a/alice/sweeps/ambient_dim/ambient_dim-1"
    assert first.cfg.mlflow.experiment == "radnerf-sweep-alice" and first.cfg.preset == "smoke"
    assert first.shares_preprocessing and first.stages == ["train-head", "finetune-lips", "train-torso", "evaluate"]
    assert plan.base_stages[-1] == "train-baseline" and "ingest" not in plan.base_stages  # no video given


def test_a_variant_with_other_preprocessing_makes_its_own(tmp_path):
    from radnerf.config import load_config
    from radnerf.experiments.sweep import plan_sweep

    base = [f"paths.artifacts={tmp_path}", "person=alice"]
    plan = plan_sweep(base, ["preprocess.landmarks=dlib,mediapipe"])
    same, other = plan.variants
    assert same.shares_preprocessing and not other.shares_preprocessing
    assert other.stages[:2] == ["landmarks", "parse"] and "train-baseline" in other.stages
    with pytest.raises(RadNerfError) as e:  # re-ingesting needs the video
        plan_sweep(base, ["ingest.size=128,256"], load=load_config)
    assert "video=PATH" in e.value.hint

    from radnerf import pipeline

    before = list(pipeline.PREPROCESS)
    plan = plan_sweep([*base, "preset=smoke", f"video={tmp_path / 'clip.mp4'}"], ["ingest.size=128,256"])
    assert plan.base_stages == [*before, "train-baseline"] and pipeline.PREPROCESS == before
    assert [p.stages[0] for p in plan.variants] == ["train-head", "ingest"]  # smoke ingests at 128
    assert plan.variants[0].cfg.video is None and plan.variants[1].cfg.video == str(tmp_path / "clip.mp4")


def _person(root: Path) -> Path:
    """A person folder as the pipeline leaves it (files only; contents don't matter)."""
    files = ["ori_imgs/0.jpg", "ori_imgs/0.lms", "gt_imgs/0.jpg", "aud.wav", "aud_ph.npy", "transforms_train.json",
             "manifests/ingest.json", "manifests/audio_ph.json", "manifests/train-head.json",
             "manifests/train-baseline.json", "manifests/evaluate.json", "manifests/.track.pending",
             "head/head.pt", "head/checkpoints/step_0000040.pt", "lips/lips.pt", "torso/torso.pt",
             "baseline/baseline.pt", "eval/metrics.json", "package/model.json", f"{root.name}.radnerf.zip",
             ".lock", ".staging/train-head-x/head.pt", "sweeps/old/table.md"]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(f)
    return root


def test_a_variant_shares_preprocessed_files_by_hard_link_but_not_the_lock_or_models(tmp_path):
    from radnerf.experiments.sweep import link_variant
    from radnerf.stage_io import write_json_atomic

    base = _person(tmp_path / "alice")
    variant = tmp_path / "alice/sweeps/s/x-1/alice"
    assert link_variant(base, variant) == 10
    for shared in ("ori_imgs/0.jpg", "ori_imgs/0.lms", "gt_imgs/0.jpg", "aud.wav", "manifests/ingest.json",
                   "baseline/baseline.pt", "manifests/train-baseline.json"):
        assert os.path.samefile(base / shared, variant / shared), shared
    for own in (".lock", ".staging", "sweeps", "head", "lips", "torso", "eval", "package", "alice.radnerf.zip",
                "manifests/train-head.json", "manifests/evaluate.json", "manifests/.track.pending"):
        assert not (variant / own).exists(), own

    # A stage in the variant replaces a file by renaming a new one into place: the base keeps its own.
    write_json_atomic(variant / "manifests/ingest.json", {"stage": "ingest", "frames": 1})
    assert (base / "manifests/ingest.json").read_text() == "manifests/ingest.json"

    # The base preprocessed again: the variant follows (refresh), unless it preprocesses on its own.
    (tmp_path / "new.wav").write_text("new")
    os.replace(tmp_path / "new.wav", base / "aud.wav")
    keep = tmp_path / "own/alice"
    link_variant(base, keep, share_baseline=False)
    assert not (keep / "baseline").exists()
    (keep / "aud.wav").unlink()
    (keep / "aud.wav").write_text("variant's own")
    assert link_variant(base, variant) == 2  # aud.wav and the ingest manifest
    assert os.path.samefile(base / "aud.wav", variant / "aud.wav")
    link_variant(base, keep, share_baseline=False, refresh=False)
    assert (keep / "aud.wav").read_text() == "variant's own"


def _result(stage: str, seconds: float, metrics: dict, skipped: bool = False) -> StageResult:
    return StageResult(stage, Path("/tmp/p"), (), skipped, seconds, metrics, 0.0)


def test_train_seconds_are_those_of_the_run_that_trained(tmp_path):
    from radnerf.experiments.sweep import record_timings, variant_metrics

    ran = {"train-head": _result("train-head", 10.0, {}), "finetune-lips": _result("finetune-lips", 4.0, {}),
           "train-torso": _result("train-torso", 6.0, {}),
           "evaluate": _result("evaluate", 30.0, {"metrics.psnr": 27.5, "metrics.psnr_no_audio": 25.0})}
    metrics = variant_metrics(ran, record_timings(tmp_path, ran))
    assert metrics == {"psnr": 27.5, "psnr_no_audio": 25.0, "train_seconds": 20.0}
    again = {n: _result(n, 0.1, r.metrics, skipped=True) for n, r in ran.items()}
    assert variant_metrics(again, record_timings(tmp_path, again))["train_seconds"] == 20.0
    assert json.loads((tmp_path / "timings.json").read_text())["evaluate"] == 30.0


def test_the_table_has_a_row_per_variant_with_the_runs_metric_names(tmp_path):
    from radnerf.experiments.sweep import VariantOutcome, write_table

    outcomes = [
        VariantOutcome("ambient_dim=1", {"model.ambient_dim": "1"}, "done",
                       {"psnr": 27.123456, "lmd": 2.5, "psnr_no_audio": 25.0, "train_seconds": 61.0}, "a" * 32),
        VariantOutcome("ambient_dim=2", {"model.ambient_dim": "2"}, "done",
                       {"psnr": 28.5, "lmd": 2.1, "psnr_no_audio": 25.0, "train_seconds": 63.0}, "b" * 32),
        VariantOutcome("ambient_dim=3", {"model.ambient_dim": "3"}, "failed", {}, "c" * 32, "train-head diverged"),
    ]
    files = write_table(tmp_path, outcomes, ["model.ambient_dim"], "Sweep ambient_dim of alice")
    rows = list(csv.DictReader(files["csv"].open()))
    assert [r["variant"] for r in rows] == ["ambient_dim=1", "ambient_dim=2", "ambient_dim=3"]
    assert float(rows[0]["psnr"]) == 27.123456 and rows[1]["model.ambient_dim"] == "2"
    assert rows[2]["state"] == "failed" and rows[2]["psnr"] == "" and rows[2]["error"] == "train-head diverged"
    assert "lpips" not in rows[0]  # no variant has it: no column
    md = files["md"].read_text()
    assert "| variant | model.ambient_dim | PSNR dB | LMD px | no-audio PSNR | train s | MLflow run |" in md
    assert "| ambient_dim=1 | 1 | 27.12 | 2.500 | 25.00 | 61 | aaaaaaaa |" in md
    assert "| ambient_dim=2 | 2 | **28.50** | **2.100** | 25.00 | 63 | bbbbbbbb |" in md  # the best, in bold
    assert "- ambient_dim=3 failed: train-head diverged" in md
    assert "<td>ambient_dim=2</td>" in files["html"].read_text()
