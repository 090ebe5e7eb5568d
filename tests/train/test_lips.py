"""Stage ``finetune-lips``: lip patches, LPIPS from the weights manager, a frozen grid, what rendering loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radnerf.errors import InputError, MissingWeightsError
from radnerf.models.perceptual import lpips_from_backbone
from radnerf.paths import PersonPaths
from radnerf.train import losses
from radnerf.train.checkpoint import load_checkpoint
from radnerf.train.head import load_head, train_head
from radnerf.train.lips import FINAL_LR_RATIO, LipTrainer, final_head, finetune_lips
from tests.train.synthetic_person import make_synthetic_person
from tests.train.test_training import TINY

LIPS = (*TINY, "train.head_iters=10", "train.checkpoint_every=10", "train.lips_iters=6", "train.lips_loss=mse")


@pytest.fixture
def person(tmp_path):
    return make_synthetic_person(tmp_path / "artifacts" / "synth", n_train=12, n_val=3, size=48)


def alexnet_features(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random AlexNet's feature layers in torchvision's names (LPIPS reads no other part of the file)."""
    import torchvision

    torch.manual_seed(seed)
    return {f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()}


def test_lpips_takes_its_backbone_from_the_file_and_passes_gradients_to_the_images():
    net = lpips_from_backbone(alexnet_features())
    assert not any(p.requires_grad for p in net.parameters())
    g = torch.Generator().manual_seed(0)
    target = torch.rand(30, 40, 3, generator=g)
    pred = target.clone().requires_grad_(True)
    assert float(losses.lpips_patch(net, pred, target).detach()) == pytest.approx(0.0, abs=1e-6)
    moved = (target + 0.2 * torch.rand(30, 40, 3, generator=g)).clamp(0, 1).requires_grad_(True)
    d = losses.lpips_patch(net, moved, target)  # a 30 x 40 patch: upsampled to 64 x 85 first
    assert float(d.detach()) > 0
    d.backward()
    assert moved.grad is not None and moved.grad.abs().sum() > 0
    other = lpips_from_backbone(alexnet_features(seed=1))
    assert float(losses.lpips_patch(other, moved.detach(), target)) != pytest.approx(float(d.detach()))
    with pytest.raises(ValueError, match="not an AlexNet"):
        lpips_from_backbone({"features.0.weight": torch.zeros(1)})


def test_a_patch_step_renders_the_whole_lip_rectangle_of_a_frame(make_cfg, person):
    train_head(make_cfg(*LIPS))
    head = load_checkpoint(PersonPaths.for_person(person.root.parent, "synth").final_weights("head"), kind="head")
    trainer = LipTrainer(make_cfg(*LIPS), head)
    seen = []
    trainer.step_on = lambda batch, extra=None: seen.append(batch)  # capture instead of stepping
    trainer.train_step()  # step 0: a patch
    trainer.step = 1
    trainer.train_step()  # step 1: random rays
    patch, rays = seen
    r0, r1, c0, c1 = (int(v) for v in trainer.train_set.lips_rects[patch.index])
    w = trainer.train_set.width
    expected = sorted(r * w + c for r in range(r0, r1) for c in range(c0, c1))
    assert sorted(patch.rays.pixels.tolist()) == expected
    assert len(rays.rgb) == trainer.cfg.train.num_rays


def test_stage_fine_tunes_the_head_keeps_the_grid_and_rendering_prefers_it(make_cfg, person):
    paths = PersonPaths.for_person(person.root.parent, "synth")
    train_head(make_cfg(*LIPS))
    head = load_checkpoint(paths.final_weights("head"), kind="head")
    result = finetune_lips(make_cfg(*LIPS))
    assert not result.skipped
    for key in ("val_psnr_lips", "before_val_psnr_lips", "val_psnr", "before_val_psnr"):
        assert np.isfinite(result.metrics[key]), key
    assert "val_lpips_lips" not in result.metrics  # lips_loss=mse: no LPIPS network was loaded
    lips = load_checkpoint(paths.final_weights("lips"), kind="head")
    assert lips["step"] == 6
    for name, value in head["grid"].items():  # the occupancy grid is frozen while the lips are tuned
        assert torch.equal(lips["grid"][name], value), name
    changed = [k for k in head["model"] if not torch.equal(head["model"][k], lips["model"][k])]
    assert changed  # the weights moved
    assert sorted(p.name for p in paths.val_renders("lips").iterdir()) == ["12.png", "13.png", "14.png"]
    assert final_head(paths) == paths.final_weights("lips")
    assert load_head(final_head(paths)).model is not None
    assert finetune_lips(make_cfg(*LIPS)).skipped

    # A head trained again makes those lips stale: rendering goes back to the head until they are re-tuned.
    train_head(make_cfg(*LIPS, "train.lr_net=0.003"))
    assert final_head(paths) == paths.final_weights("head")
    assert not finetune_lips(make_cfg(*LIPS, "train.lr_net=0.003")).skipped
    assert final_head(paths) == paths.final_weights("lips")


def test_the_learning_rate_continues_the_heads_decay_to_five_percent(make_cfg, person):
    cfg = make_cfg(*LIPS)
    train_head(cfg)
    head = load_checkpoint(PersonPaths.for_person(person.root.parent, "synth").final_weights("head"), kind="head")
    trainer = LipTrainer(cfg, head)
    base = cfg.train.lr_grid
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(base * FINAL_LR_RATIO ** (10 / 16))
    trainer.fit()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(base * FINAL_LR_RATIO)


def test_lpips_without_its_weights_stops_with_the_fetch_command(make_cfg, person, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    train_head(make_cfg(*LIPS))
    with pytest.raises(MissingWeightsError) as e:
        finetune_lips(make_cfg(*LIPS, "train.lips_loss=lpips"))
    assert "radnerf weights fetch alexnet" in e.value.hint
    assert not PersonPaths.for_person(person.root.parent, "synth").final_weights("lips").exists()


def test_lpips_with_its_weights_reports_lip_lpips_before_and_after(make_cfg, person, tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(alexnet_features(), home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    monkeypatch.setenv("TORCH_HOME", str(home))
    train_head(make_cfg(*LIPS))
    result = finetune_lips(make_cfg(*LIPS, "train.lips_loss=lpips"))
    assert result.metrics["val_lpips_lips"] >= 0 and result.metrics["before_val_lpips_lips"] >= 0


def test_without_a_head_the_stage_says_to_train_one(make_cfg, person):
    with pytest.raises(InputError, match="no trained head") as e:
        finetune_lips(make_cfg(*LIPS))
    assert "radnerf train-head person=synth" in e.value.hint
