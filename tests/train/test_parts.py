"""The trainer's parts on their own: losses (golden numbers), the EMA, checkpoint settings diffs, ray batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from radnerf.train import losses
from radnerf.train.checkpoint import checkpoint_files, differences, prune, save_checkpoint
from radnerf.train.ema import EMA


def test_losses_golden_numbers():
    assert losses.photometric(torch.zeros(4, 3), torch.full((4, 3), 0.1)).item() == pytest.approx(0.01)
    # One bit at 0.5; next to nothing at 0 or 1.
    assert losses.opacity_entropy(torch.tensor([0.5, 0.5])).item() == pytest.approx(1.0)
    assert losses.opacity_entropy(torch.tensor([0.0, 1.0])).item() < 1e-3
    ambient = torch.tensor([1.0, 2.0, 3.0, 4.0])
    face = torch.tensor([True, False, True, False])
    assert losses.ambient_outside_face(ambient, face).item() == pytest.approx((2.0 + 4.0) / 4)
    assert losses.ramp(50, 100) == 0.5 and losses.ramp(500, 100) == 1.0 and losses.ramp(0, 0) == 1.0
    assert losses.psnr(0.01) == pytest.approx(20.0) and math.isinf(losses.psnr(0.0))
    a = np.zeros((2, 2, 3), np.uint8)
    b = np.full((2, 2, 3), 0.1, np.float32)
    assert losses.psnr_images(a, b) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="differ in shape"):
        losses.psnr_images(a, b[:1])


def test_ema_warms_up_like_torch_ema_and_restores_the_trained_weights():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.95)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update()  # n = 1: decay min(0.95, 2 / 11)
    assert ema.shadow["weight"].item() == pytest.approx(1 - 2 / 11)
    with ema.average():
        assert model.weight.item() == pytest.approx(1 - 2 / 11)
    assert model.weight.item() == 1.0
    state = ema.state_dict()
    other = EMA(model, decay=0.5)
    other.load_state_dict(state)
    assert other.decay == 0.95 and other.num_updates == 1
    assert ema.averaged_state_dict()["weight"].item() == pytest.approx(1 - 2 / 11)


def test_settings_differences_name_the_nested_key():
    saved = {"model": {"ambient_dim": 2, "grid": {"levels": 16}}, "seed": 0}
    now = {"model": {"ambient_dim": 3, "grid": {"levels": 16}}, "seed": 0, "extra": True}
    assert differences(saved, now) == [
        "extra: '<absent>' in the checkpoint, True now",
        "model.ambient_dim: 2 in the checkpoint, 3 now",
    ]
    assert differences({"lr": 0.01, "steps": [1, 2]}, {"lr": 0.01, "steps": (1, 2)}) == []


def test_checkpoints_are_listed_by_step_and_pruned(tmp_path):
    for step in (5, 120, 40):
        save_checkpoint(tmp_path / f"step_{step:07d}.pt", {"kind": "head-train", "step": step})
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert [s for s, _ in checkpoint_files(tmp_path)] == [5, 40, 120]
    prune(tmp_path, keep=2)
    assert [s for s, _ in checkpoint_files(tmp_path)] == [40, 120]
    assert not list(tmp_path.glob(".*.pt"))  # no temporary files left by the atomic writes
