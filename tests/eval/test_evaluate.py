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
    record = json.loads((person.root / "eval" / "metrics.json").read_text())
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

    report = (person.root / "eval" / "report.html").read_text()
    assert "Held-out frames" in report and "still frame" in report and "data:image/png;base64" in report
    frames = decoded_frames(person.root / "eval" / "side_by_side.mp4")
    assert len(frames) == 15 and frames[0].shape == (24, 72, 3)  # ground truth | render | error, every clip frame
    assert evaluate(cfg).skipped

    with pytest.raises(InputError, match="does not exist"):
        evaluate(make_cfg(*TINY, f"audio={tmp_path / 'missing.wav'}"))


def _paths(cfg):
    from radnerf.paths import PersonPaths

    return PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
