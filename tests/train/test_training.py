"""Stage ``train-head`` as a user meets it: outputs, resuming a killed run, refusing bad checkpoints, divergence."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from radnerf.errors import ConfigError, InputError
from radnerf.stage_io import progress_to
from radnerf.train import head as head_mod
from radnerf.train.checkpoint import checkpoint_files, load_checkpoint, save_checkpoint
from radnerf.train.head import HeadTrainer, TrainingDiverged, load_head, train_head
from tests.train.synthetic_person import make_synthetic_person

TINY = (
    "preset=cpu_tiny",
    "person=synth",
    "train.num_rays=256",
    "model.spatial_grid.num_levels=6",
    "model.spatial_grid.log2_hashmap_size=10",
    "model.spatial_grid.desired_resolution=64",
    "model.audio_grid.num_levels=4",
    "model.audio_grid.log2_hashmap_size=8",
    "model.audio_grid.desired_resolution=32",
    "render.grid_size=16",
    "train.val_every=0",
)


@pytest.fixture
def person(tmp_path):
    return make_synthetic_person(tmp_path / "artifacts" / "synth", n_train=12, n_val=3, size=24)


def test_stage_writes_the_head_its_renders_and_log_then_is_up_to_date(make_cfg, person):
    cfg = make_cfg(*TINY, "train.head_iters=30", "train.checkpoint_every=20")
    seen = []
    with progress_to(lambda stage, done, total, message: seen.append((stage, done, total, message))):
        result = train_head(cfg)
    root = person.root
    assert not result.skipped
    assert (root / "head" / "head.pt").is_file() and (root / "head" / "log.csv").is_file()
    assert sorted(p.name for p in (root / "head" / "val").iterdir()) == ["12.png", "13.png", "14.png"]
    assert [s for s, _ in checkpoint_files(root / "head" / "checkpoints")] == [20, 30]
    for key in ("val_psnr", "val_psnr_face", "val_psnr_lips", "steps_per_second", "rays_per_second",
                "peak_memory_mb"):
        assert key in result.metrics and np.isfinite(result.metrics[key]), key
    training = [m for stage, done, total, m in seen if stage == "train-head"]
    assert training and all(k in training[-1] for k in ("loss", "PSNR", "it/s", "rays/s", "ETA"))
    assert seen[-1][1] == seen[-1][2]

    again = train_head(cfg)
    assert again.skipped and again.state == "up to date"


def test_exported_head_renders_what_the_trainer_validated(make_cfg, person):
    cfg = make_cfg(*TINY, "train.head_iters=20", "train.checkpoint_every=20")
    trainer = HeadTrainer(cfg)
    trainer.fit()
    path = person.root / "head" / "exported.pt"
    trainer.export(path, {"val_psnr": 1.0})
    expected = trainer.render(trainer.val_set, 1)

    head = load_head(path)
    cond = head.model.condition(trainer.windows(trainer.val_set, 1), float(trainer.val_set.eye[1]))
    from radnerf.render import render_image

    bg = torch.from_numpy(trainer.val_set.head_background(1)).float() / 255
    got = render_image(torch.from_numpy(trainer.val_set.poses[1]), trainer.intrinsics, 24, 24, head.grid,
                       lambda x, d: head.model(x, d, cond), options=head.render, background=bg)["rgb"]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    assert head.data["metrics"] == {"val_psnr": 1.0} and head.data["audio_features"] == "ph"


class Killed(BaseException):
    """Stands in for SIGKILL inside the process: nothing after it runs."""


@contextlib.contextmanager
def killed_at(step: int, monkeypatch, trainer: type = HeadTrainer):
    """Inside the block, training (of a ``trainer``) dies right after writing the checkpoint of ``step``."""
    save = trainer.save

    def save_then_die(self):
        path = save(self)
        if self.step == step:
            raise Killed()
        return path

    monkeypatch.setattr(trainer, "save", save_then_die)
    with pytest.raises(Killed):
        yield
    monkeypatch.setattr(trainer, "save", save)


@pytest.mark.slow
def test_cpu_mixed_precision_follows_train_amp_and_render_amp(make_cfg, person, monkeypatch):
    """bfloat16 MLPs where the CPU has bfloat16 units and amp is on; float32 otherwise, or when asked."""
    from radnerf.models import MLP

    def precisions(model):
        return {m.low_precision for m in model.modules() if isinstance(m, MLP)}

    from radnerf.train import loop

    def units(present: bool) -> None:  # what the trainer and the loaders of finished models ask
        monkeypatch.setattr(loop, "cpu_has_bfloat16_units", lambda: present)

    units(True)
    on = HeadTrainer(make_cfg(*TINY, "train.head_iters=4", "train.checkpoint_every=4"))
    assert precisions(on.model) == {True}
    on.fit()
    assert np.isfinite(on.history.loss).all()
    path = person.root / "head" / "exported.pt"
    on.export(path)
    from radnerf.config import RenderConfig

    assert precisions(load_head(path).model) == {True}
    assert precisions(load_head(path, render=RenderConfig(amp=False)).model) == {False}
    assert precisions(HeadTrainer(make_cfg(*TINY, "train.amp=false")).model) == {False}
    units(False)
    assert precisions(HeadTrainer(make_cfg(*TINY)).model) == {False}
    assert precisions(load_head(path).model) == {False}


def test_a_killed_run_resumes_on_the_same_trajectory(make_cfg, person, tmp_path, monkeypatch):
    """2,000 steps straight, and 1,000 + a kill + resume + 1,000: the same loss curve and the same weights."""
    steps = ("train.head_iters=2000", "train.checkpoint_every=1000", "train.keep_checkpoints=3")
    straight = HeadTrainer(make_cfg(*TINY, *steps))
    straight.fit()

    cfg = make_cfg(*TINY, *steps, f"paths.artifacts={tmp_path / 'resumed'}")
    make_synthetic_person(tmp_path / "resumed" / "synth", n_train=12, n_val=3, size=24)
    with killed_at(1000, monkeypatch):
        train_head(cfg)
    assert [s for s, _ in checkpoint_files(tmp_path / "resumed" / "synth" / "head" / "checkpoints")] == [1000]

    train_head(cfg)  # resumes from step 1000
    folder = tmp_path / "resumed" / "synth" / "head" / "checkpoints"
    final = load_checkpoint(checkpoint_files(folder)[-1][1], kind="head-train")
    assert final["step"] == straight.step == 2000
    np.testing.assert_allclose(final["history"]["loss"].numpy(), straight.history.loss, rtol=1e-5, atol=1e-7)
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(final["model"][name], value, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_a_process_killed_mid_training_resumes_from_its_checkpoint(make_cfg, person, tmp_path):
    overrides = [*TINY, f"paths.artifacts={tmp_path / 'artifacts'}", "train.head_iters=4000",
                 "train.checkpoint_every=100"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "radnerf.cli", "train-head", *overrides],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    folder = person.root / "head" / "checkpoints"
    deadline = time.time() + 240
    while not checkpoint_files(folder) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before_kill = checkpoint_files(folder)
    assert before_kill, "no checkpoint before the kill"
    assert not (person.root / "head" / "head.pt").exists()

    run = subprocess.run([sys.executable, "-m", "radnerf.cli", "train-head", *overrides[:-2],
                          f"train.head_iters={before_kill[-1][0] + 20}", "train.checkpoint_every=100", "-v"],
                         capture_output=True, text=True, env=env, timeout=300)
    # head_iters grew: the run continues from the checkpoint (settings otherwise equal) and finishes.
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"resuming from {before_kill[-1][1].name}" in run.stderr
    assert (person.root / "head" / "head.pt").is_file()


def test_a_corrupt_checkpoint_is_refused_naming_the_file(make_cfg, person):
    folder = person.root / "head" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "step_0000010.pt").write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(InputError, match="step_0000010.pt is not a readable checkpoint") as info:
        train_head(make_cfg(*TINY, "train.head_iters=20"))
    assert "overwrite=true" in info.value.hint


def test_an_unfinished_run_of_another_model_is_refused_naming_the_setting(make_cfg, person, monkeypatch):
    with killed_at(10, monkeypatch):
        train_head(make_cfg(*TINY, "train.head_iters=20", "train.checkpoint_every=10"))
    with pytest.raises(ConfigError, match=r"model\.ambient_dim: 2 in the checkpoint, 3 now") as info:
        train_head(make_cfg(*TINY, "train.head_iters=20", "model.ambient_dim=3"))
    assert "overwrite=true" in info.value.hint
    result = train_head(make_cfg(*TINY, "train.head_iters=20", "model.ambient_dim=3", "overwrite=true"))
    assert load_head(result.output).settings["model"]["ambient_dim"] == 3


def test_a_finished_head_starts_over_for_new_settings_and_continues_for_more_steps(make_cfg, person, caplog):
    folder = person.root / "head" / "checkpoints"
    train_head(make_cfg(*TINY, "train.head_iters=10", "train.checkpoint_every=10"))
    longer = train_head(make_cfg(*TINY, "train.head_iters=16", "train.checkpoint_every=10"))
    assert load_head(longer.output).data["step"] == 16
    assert len(load_checkpoint(checkpoint_files(folder)[-1][1])["history"]["loss"]) == 16  # continued
    swept = train_head(make_cfg(*TINY, "train.head_iters=10", "model.ambient_dim=1"))
    assert load_head(swept.output).settings["model"]["ambient_dim"] == 1
    assert [s for s, _ in checkpoint_files(folder)] == [10]


def test_changed_data_retrains_a_finished_head_but_refuses_to_continue_an_unfinished_one(make_cfg, person,
                                                                                         monkeypatch):
    """What `dvc repro` and the person flow do after an upstream stage re-ran (re-tracked poses)."""
    folder = person.root / "head" / "checkpoints"
    transforms = person.root / "transforms_train.json"
    cfg = make_cfg(*TINY, "train.head_iters=10", "train.checkpoint_every=10")
    train_head(cfg)
    before = load_checkpoint(checkpoint_files(folder)[-1][1], kind="head-train")["data"]
    transforms.write_text(transforms.read_text() + "\n")
    again = train_head(cfg)
    assert not again.skipped
    after = load_checkpoint(checkpoint_files(folder)[-1][1], kind="head-train")["data"]
    assert after != before  # trained on the new data, not resumed from the old run

    unfinished = make_cfg(*TINY, "train.head_iters=20", "train.checkpoint_every=10", "overwrite=true")
    with killed_at(10, monkeypatch):
        train_head(unfinished)
    transforms.write_text(transforms.read_text() + "\n")
    with pytest.raises(ConfigError, match="the person's data .* changed since"):
        train_head(make_cfg(*TINY, "train.head_iters=20", "train.checkpoint_every=10"))
    assert [s for s, _ in checkpoint_files(folder)] == [10]  # the interrupted run's work is kept


def test_newer_training_code_retrains_a_finished_head_and_names_itself_for_an_unfinished_one(make_cfg, person,
                                                                                         monkeypatch):
    """A radnerf upgrade that changes what training produces (ALGORITHM_VERSION) is not resumed silently."""
    folder = person.root / "head" / "checkpoints"
    cfg = make_cfg(*TINY, "train.head_iters=10", "train.checkpoint_every=10")
    train_head(cfg)
    old = head_mod.ALGORITHM_VERSION
    monkeypatch.setattr(head_mod, "ALGORITHM_VERSION", old + 1)
    again = train_head(cfg)
    assert not again.skipped
    assert load_checkpoint(checkpoint_files(folder)[-1][1], kind="head-train")["algorithm"] == old + 1

    unfinished = make_cfg(*TINY, "train.head_iters=20", "train.checkpoint_every=10", "overwrite=true")
    with killed_at(10, monkeypatch):
        train_head(unfinished)
    monkeypatch.setattr(head_mod, "ALGORITHM_VERSION", old + 2)
    with pytest.raises(ConfigError, match="training code changed since"):
        train_head(make_cfg(*TINY, "train.head_iters=20", "train.checkpoint_every=10"))
    assert [s for s, _ in checkpoint_files(folder)] == [10]


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_with_code_in_it_is_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "step_0000001.pt"
    torch.save({"format": "radnerf-checkpoint", "version": 1, "x": _Payload()}, bad, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(InputError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    assert not (tmp_path / "pwned").exists()
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(InputError, match="not a radnerf checkpoint"):
        load_checkpoint(other)
    save_checkpoint(tmp_path / "mine.pt", {"kind": "head", "step": 3})
    with pytest.raises(InputError, match="holds a 'head' checkpoint, not a 'head-train' one"):
        load_checkpoint(tmp_path / "mine.pt", kind="head-train")


def test_divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint(make_cfg, person, monkeypatch):
    cfg = make_cfg(*TINY, "train.head_iters=40", "train.checkpoint_every=10")
    real_loss = HeadTrainer.loss

    def nan_after_25(self, out, batch):
        loss, mse = real_loss(self, out, batch)
        return (loss * float("nan"), mse) if self.step >= 25 else (loss, mse)

    monkeypatch.setattr(HeadTrainer, "loss", nan_after_25)
    with pytest.raises(TrainingDiverged, match="diverged at step 26") as info:
        train_head(cfg)
    assert "step_0000020.pt" in info.value.hint
    files = checkpoint_files(person.root / "head" / "checkpoints")
    assert [s for s, _ in files] == [10, 20]
    assert all(torch.isfinite(v).all() for v in load_checkpoint(files[-1][1])["model"].values())
    assert not (person.root / "head" / "head.pt").exists()


def test_training_twice_from_the_same_seed_is_repeatable(make_cfg, person):
    runs = []
    for _ in range(2):
        trainer = HeadTrainer(make_cfg(*TINY, "train.head_iters=15"))
        trainer.fit()
        runs.append(trainer.history.loss)
    assert runs[0] == runs[1]


def test_the_head_learns_its_person(make_cfg, person):
    """Not a quality bar (the benchmark has that): a few hundred tiny steps must beat the untrained head clearly."""
    trainer = HeadTrainer(make_cfg(*TINY, "train.head_iters=300", "train.num_rays=512"))
    before = trainer.validate()["val_psnr"]
    trainer.fit()
    after = trainer.validate()["val_psnr"]
    assert after > before + 5, (before, after)
    assert head_mod.losses.psnr(float(np.mean(trainer.history.mse[-20:]))) > 20
