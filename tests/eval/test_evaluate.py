"""``radnerf evaluate``: the numbers a model is judged by, its baselines beside it, and a report to look at."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.talk.conftest import TINY, decoded_frames


def test_evaluate_reports_the_model_beside_its_baselines_and_says_what_it_cannot_compute(
        trained, make_cfg, wav, tmp_path):
    from radnerf.errors import InputError
    from radnerf.eval.evaluate import evaluate
    from radnerf.train.head import train_baseline

    person, _ = trained
    cfg = make_cfg(*TINY, f"paths.weights={tmp_path / 'no_weights'}", f"audio={wav}", "eval.landmarks=dlib")
    train_baseline(cfg)
    result = evaluate(cfg)
    assert not result.skipped
    record = json.loads((person.root / "eval" / "records.json").read_text())
    rows = {(m["name"], m["variant"], m["split"]): m for m in record["metrics"]}
    for variant in ("radnerf", "no audio", "still frame"):
        assert np.isfinite(rows[("psnr", variant, "val")]["value"])
        assert rows[("psnr", variant, "val")]["unit"] == "dB"
    # The still frame is the clip's first frame against every val frame, computed here independently.
    from radnerf.data import PersonDataset
    from radnerf.eval.metrics import psnr

    train, val = (PersonDataset.load(_paths(cfg), s) for s in ("train", "val"))
    first = train.image(int(np.argmin(train.img_ids)))
    still = np.mean([psnr(first, val.image(i)) for i in range(len(val))])
    assert rows[("psnr", "still frame", "val")]["value"] == pytest.approx(still)
    # Without the weights: unavailable with the command that fetches them, never a number.
    lp = rows[("lpips", "radnerf", "val")]
    assert "value" not in lp and "radnerf weights fetch alexnet" in lp["unavailable"]
    lse = rows[("lse_d", "radnerf", f"cross:{wav.name}")]
    assert "value" not in lse and "radnerf weights fetch syncnet" in lse["unavailable"]
    # 24-pixel synthetic faces have no landmarks: LMD says so instead of inventing a distance.
    assert "no face" in rows[("lmd", "radnerf", "val")]["unavailable"]
    assert record["head_sha256"] and record["radnerf"]
    assert result.metrics["metrics.psnr"] == pytest.approx(rows[("psnr", "radnerf", "val")]["value"], abs=1e-3)
    # metrics.json: the same numbers as DVC reads them, {split: {variant: {metric: value}}}; none without a value.
    numbers = json.loads((person.root / "eval" / "metrics.json").read_text())
    for (name, variant, split), row in rows.items():
        where = f"cross_{wav.stem}" if split == f"cross:{wav.name}" else split
        assert numbers.get(where, {}).get(variant.replace(" ", "_"), {}).get(name) == row.get("value"), row
    assert numbers["val"]["no_audio"]["psnr"] > 0 and "lpips" not in numbers["val"]["radnerf"]
    # psnr_frames.csv: every clip frame of every variant (DVC's plot); the val rows average to the val PSNR.
    import csv

    with (person.root / "eval" / "psnr_frames.csv").open() as f:
        frames = list(csv.DictReader(f))
    ours = [float(r["psnr"]) for r in frames if r["variant"] == "radnerf"]
    assert len(ours) == 15 and {r["variant"] for r in frames} == {"radnerf", "no audio", "still frame"}
    val_psnr = [float(r["psnr"]) for r in frames if r["variant"] == "radnerf" and r["split"] == "val"]
    assert np.mean(val_psnr) == pytest.approx(numbers["val"]["radnerf"]["psnr"], abs=1e-3)

    report = (person.root / "eval" / "report.html").read_text()
    assert "Held-out frames" in report and "still frame" in report and "data:image/png;base64" in report
    frames = decoded_frames(person.root / "eval" / "side_by_side.mp4")
    assert len(frames) == 15 and frames[0].shape == (24, 72, 3)  # ground truth | render | error, every clip frame
    from radnerf.media.images import read_rgb

    pngs = sorted((person.root / "eval" / "val" / "radnerf").glob("*.png"))
    assert [int(f.stem) for f in pngs] == sorted(int(i) for i in val.img_ids)  # lossless, for your own numbers
    ours = np.mean([psnr(read_rgb(f), val.image(k)) for k, f in enumerate(sorted(pngs, key=lambda f: int(f.stem)))])
    assert ours == pytest.approx(rows[("psnr", "radnerf", "val")]["value"])
    assert evaluate(cfg).skipped

    with pytest.raises(InputError, match="does not exist"):
        evaluate(make_cfg(*TINY, f"audio={tmp_path / 'missing.wav'}"))


def _paths(cfg):
    from radnerf.paths import PersonPaths

    return PersonPaths.for_person(cfg.paths.artifacts, cfg.person)


def test_lpips_is_a_number_once_its_weights_are_there(trained, make_cfg, tmp_path, monkeypatch):
    import torch
    import torchvision

    import radnerf.models.perceptual as perceptual
    from radnerf.eval.evaluate import evaluate

    person, _ = trained
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None).state_dict()  # random: the shape is what matters here
    monkeypatch.setattr(perceptual, "load_lpips", lambda weights_dir=None, device="cpu":
                        perceptual.lpips_from_backbone(alexnet).to(device))
    evaluate(make_cfg(*TINY, "eval.metrics=[psnr,lpips]", "eval.landmarks=dlib"))
    record = json.loads((person.root / "eval" / "records.json").read_text())
    values = {m["variant"]: m["value"] for m in record["metrics"] if m["name"] == "lpips"}
    assert set(values) == {"radnerf", "still frame"} and all(v >= 0 for v in values.values())
    assert not any(m["name"].startswith("lse") for m in record["metrics"])  # sync not asked for
