"""Stage ``train-torso`` on a synthetic person with a static torso behind a briefly trained head."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from radnerf.config import load_config
from radnerf.errors import ConfigError, InputError
from radnerf.models.torso import torso_coords
from radnerf.stage_io import progress_to
from radnerf.train import losses
from radnerf.train.checkpoint import checkpoint_files, load_checkpoint
from radnerf.train.head import load_head, train_head
from radnerf.train.loop import StepStats, TrainingDiverged
from radnerf.train.torso import HeadLayers, TorsoTrainer, load_torso, render_frame, torso_over, train_torso
from tests.train.synthetic_person import make_synthetic_person
from tests.train.test_training import TINY, killed_at

HEAD = ("train.head_iters=120", "train.checkpoint_every=120")
TORSO = (*TINY, "model.torso_grid.num_levels=6", "model.torso_grid.log2_hashmap_size=10",
         "model.torso_grid.desired_resolution=32", "train.torso_iters=40", "train.checkpoint_every=20")


@pytest.fixture(scope="session")
def trained_person(tmp_path_factory):
    """A synthetic person in front of a static torso, with a head trained for a few steps (once; tests copy it)."""
    artifacts = tmp_path_factory.mktemp("torso") / "artifacts"
    make_synthetic_person(artifacts / "synth", n_train=12, n_val=3, size=24, torso=True)
    train_head(load_config([f"paths.artifacts={artifacts}", *TINY, *HEAD]))
    return artifacts / "synth"


@pytest.fixture
def person(trained_person, tmp_path):
    return shutil.copytree(trained_person, tmp_path / "artifacts" / "synth")


def test_stage_writes_the_torso_its_renders_and_log_then_is_up_to_date(make_cfg, person):
    cfg = make_cfg(*TORSO)
    seen = []
    with progress_to(lambda stage, done, total, message: seen.append((stage, done, total, message))):
        result = train_torso(cfg)
    assert not result.skipped
    assert (person / "torso" / "torso.pt").is_file() and (person / "torso" / "log.csv").is_file()
    renders = sorted((person / "torso" / "val").iterdir())
    assert [p.name for p in renders] == ["12.png", "13.png", "14.png"]
    from radnerf.media.images import read_rgb

    assert read_rgb(renders[0]).shape == (24, 48, 3)  # ground truth | head over torso over bc.jpg
    assert [s for s, _ in checkpoint_files(person / "torso" / "checkpoints")] == [20, 40]
    for key in ("val_psnr", "steps", "steps_per_second", "peak_memory_mb"):
        assert key in result.metrics and np.isfinite(result.metrics[key]), key
    assert result.metrics["steps"] == 40
    training = [m for stage, done, total, m in seen if stage == "train-torso"]
    assert training and all(k in training[-1] for k in ("loss", "PSNR", "it/s", "ETA"))

    again = train_torso(cfg)
    assert again.skipped and again.state == "up to date"


@pytest.mark.parametrize("target", ["torso", "frame"])
def test_the_torso_learns_its_person(make_cfg, person, target):
    """The torso under the head (the composite's val PSNR) and the torso layer itself beat the untrained ones."""
    trainer = TorsoTrainer(make_cfg(*TORSO, "train.torso_iters=300", f"train.torso_target={target}"))
    ds = trainer.val_set

    def torso_psnr() -> float:
        """PSNR of the torso over bc.jpg, no head, against the torso image over bc.jpg (averaged weights)."""
        coords = torso_coords(ds.height, ds.width)
        bg = torch.from_numpy(ds.background).reshape(-1, 3).float() / 255
        with torch.no_grad(), trainer.ema.average():
            out, _ = torso_over(trainer.model, coords, torch.from_numpy(ds.poses[0]), trainer.model.code(None), bg)
        return losses.psnr_images(out.view(ds.height, ds.width, 3).numpy(), ds.head_background(0))

    before, torso_before = trainer.validate()["val_psnr"], torso_psnr()
    trainer.fit()
    after, torso_after = trainer.validate()["val_psnr"], torso_psnr()
    assert after > before + 2, (before, after)
    if target == "torso":  # learned behind the head too: the paper's neck in-painted target
        assert torso_after > 25 and torso_after > torso_before + 10, (torso_before, torso_after)


@pytest.mark.parametrize("target", ["torso", "frame"])
def test_a_killed_run_resumes_on_the_same_trajectory(make_cfg, person, tmp_path, monkeypatch, target):
    steps = (f"train.torso_target={target}",)
    straight = TorsoTrainer(make_cfg(*TORSO, *steps))
    straight.fit()

    cfg = make_cfg(*TORSO, *steps, f"paths.artifacts={tmp_path / 'resumed'}")
    shutil.copytree(person, tmp_path / "resumed" / "synth")
    with killed_at(20, monkeypatch, TorsoTrainer):
        train_torso(cfg)
    folder = tmp_path / "resumed" / "synth" / "torso" / "checkpoints"
    assert [s for s, _ in checkpoint_files(folder)] == [20]

    train_torso(cfg)  # resumes from step 20
    final = load_checkpoint(checkpoint_files(folder)[-1][1], kind="torso-train")
    assert final["step"] == straight.step == 40
    np.testing.assert_allclose(final["history"]["loss"].numpy(), straight.history.loss, rtol=1e-5, atol=1e-7)
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(final["model"][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_an_unfinished_run_of_other_settings_is_refused_naming_the_setting(make_cfg, person, monkeypatch):
    with killed_at(20, monkeypatch, TorsoTrainer):
        train_torso(make_cfg(*TORSO))
    with pytest.raises(ConfigError, match=r"train\.lr_net: 0\.002 in the checkpoint, 0\.001 now") as info:
        train_torso(make_cfg(*TORSO, "train.lr_net=0.001"))
    assert "overwrite=true" in info.value.hint


def test_a_missing_head_says_to_train_the_head_first(make_cfg, tmp_path):
    make_synthetic_person(tmp_path / "artifacts" / "synth", n_train=4, n_val=2, size=16, torso=True)
    for run in (train_torso, TorsoTrainer):
        with pytest.raises(InputError, match="synth has no trained head") as info:
            run(make_cfg(*TORSO))
        assert "radnerf train-head person=synth" in info.value.hint
    assert not (tmp_path / "artifacts" / "synth" / "torso").exists()


def test_the_exported_torso_renders_what_the_trainer_validated(make_cfg, person):
    trainer = TorsoTrainer(make_cfg(*TORSO, "train.torso_iters=20"))
    trainer.fit()
    path = person / "torso" / "exported.pt"
    trainer.export(path, {"val_psnr": 1.0})
    expected = trainer.render(trainer.val_set, 1)

    torso, head = load_torso(path), load_head(person / "head" / "head.pt")
    ds = trainer.val_set
    from radnerf.train.head import frame_condition

    cond = frame_condition(head.model, ds, 1, None, torch.device("cpu"))
    bg = torch.from_numpy(ds.background).float() / 255
    got = render_frame(head, torso.model, torch.from_numpy(ds.poses[1]), cond, torso.model.code(None), bg)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    assert torso.data["metrics"] == {"val_psnr": 1.0} and torso.data["image_size"] == [24, 24]
    assert torso.data["step"] == 20 and torso.settings["train"]["torso_iters"] == 20


def test_head_layers_are_kept_where_that_pays_and_equal_the_rendered_ones(make_cfg, person):
    trainer = TorsoTrainer(make_cfg(*TORSO, "train.torso_target=frame"))
    head, ds = trainer.head, trainer.train_set
    frame = ds.height * ds.width
    kept = HeadLayers(head, ds, trainer.device, steps=1000, pixels_per_step=256, budget_bytes=1e9)
    fresh = HeadLayers(head, ds, trainer.device, steps=1000, pixels_per_step=256, budget_bytes=0)
    few_steps = HeadLayers(head, ds, trainer.device, steps=10, pixels_per_step=256, budget_bytes=1e9)
    assert (kept.capacity, fresh.capacity, few_steps.capacity) == (len(ds), 0, 0)
    pixels = torch.tensor([0, 5, 300, frame - 1, 200])
    for _ in range(2):
        a, b = kept.at(3, pixels), fresh.at(3, pixels)
    assert a.shape == (5, 4) and float(a[:, 3].max()) > 0.2  # the head (a few steps old) covers some of them
    torch.testing.assert_close(a, b, atol=2e-3, rtol=0)  # float16 kept, float32 rendered
    assert kept.rendered == frame and fresh.rendered == 2 * len(pixels)


def test_a_new_head_revalidates_a_finished_torso_without_training_it_again(make_cfg, person):
    """The paper's target does not involve the head: only the validation (the composite) is redone."""
    first = train_torso(make_cfg(*TORSO))
    train_head(make_cfg(*TINY, "train.head_iters=130", "train.checkpoint_every=130"))  # the head trains on
    second = train_torso(make_cfg(*TORSO))
    assert not second.skipped and second.metrics["val_psnr"] != first.metrics["val_psnr"]
    final = load_checkpoint(checkpoint_files(person / "torso" / "checkpoints")[-1][1], kind="torso-train")
    assert len(final["history"]["loss"]) == 40  # continued from its last step: nothing left to train


def test_divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint(make_cfg, person, monkeypatch):
    real_step = TorsoTrainer.train_step

    def nan_after_25(self):
        stats = real_step(self)
        return StepStats(math.nan, stats.mse, stats.samples) if self.step > 25 else stats

    monkeypatch.setattr(TorsoTrainer, "train_step", nan_after_25)
    with pytest.raises(TrainingDiverged, match="diverged at step 26") as info:
        train_torso(make_cfg(*TORSO))
    assert "step_0000020.pt" in info.value.hint
    assert [s for s, _ in checkpoint_files(person / "torso" / "checkpoints")] == [20]
    assert not (person / "torso" / "torso.pt").exists()
