"""Stage ``train-torso``: the pseudo-3D deformable torso of one person, trained below its finished head.

One step (paper Sections 3.3 and 4.1, RAD-NeRF's ``train_step`` with ``--torso``)::

    batch = pixels.sample(rng)                                  # one random training frame, random pixels
    torso = rgb * alpha + bc.jpg * (1 - alpha)                  # torso(pixels, the frame's head pose, its code)
    pred  = torso                                               # train.torso_target=torso (the paper's)
          | head over torso                                     # train.torso_target=frame: the frozen head in front
    loss  = MSE(pred, target) + 1e-4 entropy(alpha)
    adam.step(); lr decays exponentially; EMA of the weights

``target`` is the frame's neck in-painted torso image over ``bc.jpg`` (what
the head was trained in front of; the paper's Appendix A) or, with
``train.torso_target=frame``, the ground-truth frame. Validation renders the
whole frame, head over torso over ``bc.jpg`` (:func:`render_frame`), as a
video of any audio shows it.

What the stage leaves in ``artifacts/<person>/torso/``::

    torso.pt                the trained torso (EMA weights, the settings it was trained with)
    val/<img_id>.png        every val frame: ground truth | head over torso over bc.jpg
    log.csv                 loss, PSNR, learning rate, steps/s every 100 steps; val PSNR at validations
    checkpoints/step_<n>.pt resumable state (a killed run continues from the newest)
    progress/step_<n>_<img_id>.png   validation renders written while training ran
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from radnerf.config import RadNerfConfig, RenderConfig, to_container
from radnerf.data import PersonDataset
from radnerf.data.rays import TorsoPixels
from radnerf.devices import resolve_device
from radnerf.errors import InputError
from radnerf.models import HeadCondition
from radnerf.models.torso import TorsoModel, torso_coords
from radnerf.paths import PersonPaths
from radnerf.render import composite_background, get_rays, render_image, render_rays
from radnerf.stage_io import StagePlan, StageResult, run_stage
from radnerf.train import losses
from radnerf.train.checkpoint import load_checkpoint
from radnerf.train.head import TrainedHead, data_fingerprint, frame_condition, load_head, model_config, person_splits
from radnerf.train.lips import final_head
from radnerf.train.loop import StepStats, TrainingRun, ready_to_render

log = logging.getLogger(__name__)

STAGE = "train-torso"
ALGORITHM_VERSION = 1
"""Bumped when the training code changes what a finished torso is."""

TRAIN_KEYS = ("torso_iters", "torso_target", "num_rays", "lr_grid", "lr_net", "lr_final_ratio", "ema_decay",
              "lambda_entropy", "amp")
"""Training settings that shape the trained torso."""
MODEL_KEYS = ("torso_grid", "encoding", "appearance_at_test", "pose_scale", "pose_offset")
"""Model settings the torso reads (the rest are the head's)."""


def run_settings(cfg: RadNerfConfig) -> dict:
    """Everything that decides a trained torso: its fingerprint, and what a checkpoint must agree with."""
    model = to_container(cfg.model)
    return {
        "model": {k: model[k] for k in MODEL_KEYS},
        "train": {k: getattr(cfg.train, k) for k in TRAIN_KEYS},
        "seed": cfg.seed,
    }


def require_head(paths: PersonPaths) -> Path:
    """The finished head the torso is trained below: ``lips/lips.pt`` when it was fine-tuned from the current
    ``head/head.pt`` (RAD-NeRF trains the torso after the lips), else ``head/head.pt``.

    Raises:
        InputError: there is no head yet.
    """
    path = paths.final_weights("head")
    if not path.is_file():
        raise InputError(f"{paths.root.name} has no trained head ({path} is missing)",
                         hint=f"run `radnerf train-head person={paths.root.name}` first: the torso is trained below it")
    return final_head(paths)


def torso_over(torso: TorsoModel, coords: torch.Tensor, pose: torch.Tensor, code: torch.Tensor,
               background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The torso over ``background`` ``[N, 3]`` at ``coords [N, 2]``: ``(colour [N, 3], alpha [N, 1])``."""
    alpha, rgb, _ = torso(coords, pose, code)
    return composite_background(rgb * alpha, alpha, background), alpha


@torch.no_grad()
def render_frame(head: TrainedHead, torso: TorsoModel, pose: torch.Tensor, cond: HeadCondition,
                 torso_code: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """One whole frame, the head over the torso over ``background``: ``[H, W, 3]`` float in [0, 1].

    Args:
        head: the finished head (:func:`radnerf.train.head.load_head`); its intrinsics are the camera's.
        torso: the torso field (:attr:`TrainedTorso.model`).
        pose: ``[4, 4]`` the frame's camera-to-head pose in the head's normalised space.
        cond: the head's condition of the frame.
        torso_code: ``[1, 8]`` the torso code (``torso.code(None)`` for a frame not trained on).
        background: ``[H, W, 3]`` float in [0, 1] (``bc.jpg``); its size is the frame's.
    """
    height, width = background.shape[:2]
    coords = torso_coords(height, width).to(background.device)
    behind, _ = torso_over(torso, coords, pose, torso_code, background.reshape(-1, 3))
    out = render_image(pose, head.data["intrinsics"], height, width, head.grid,
                       lambda xyz, dirs: head.model(xyz, dirs, cond), options=head.render,
                       background=behind.view(height, width, 3))
    return out["rgb"].clamp(0, 1)


class HeadLayers:
    """The frozen head in front of the torso (``train.torso_target=frame``): its premultiplied colour and
    opacity at a training frame's pixels, ``[N, 4]``, what any background is composited under.

    The head does not change while the torso trains, so a frame's head is rendered once, whole, and
    kept (float16 on the device, finer than the uint8 images it is compared with) where that pays: when a frame
    comes round more often than a frame holds batches (steps x pixels per step > frames x pixels per
    frame; the paper's runs, not a few thousand CPU steps) and for the frames ``0 .. capacity - 1`` that
    ``train.image_cache_gb`` holds. Other frames render only the batch's pixels, every time. Which
    frames are kept depends on the frame alone, not on the order they came in, so a resumed run reads
    the same values as an uninterrupted one.
    """

    def __init__(self, head: TrainedHead, dataset: PersonDataset, device: torch.device, steps: int,
                 pixels_per_step: int, budget_bytes: float):
        self.head = head
        self.dataset = dataset
        self.device = device
        self.poses = torch.from_numpy(dataset.poses).to(device)
        self.intrinsics = tuple(float(v) for v in dataset.intrinsics)
        frame_pixels = dataset.height * dataset.width
        pays = steps * pixels_per_step > len(dataset) * frame_pixels
        self.capacity = min(len(dataset), int(budget_bytes // (frame_pixels * 4 * 2))) if pays else 0
        self.layers: dict[int, torch.Tensor] = {}
        self.rendered = 0
        """Pixels rendered so far (a test counts them)."""

    def at(self, i: int, pixels: torch.Tensor) -> torch.Tensor:
        """``[N, 4]`` float32: premultiplied colour and opacity of the head at frame ``i``'s ``pixels [N]``."""
        if i >= self.capacity:
            return self._render(i, pixels.to(self.device))
        if i not in self.layers:
            self.layers[i] = self._render(i, None).half()
        return self.layers[i][pixels.to(self.device)].float()

    @torch.no_grad()
    def _render(self, i: int, pixels: torch.Tensor | None) -> torch.Tensor:
        ds, head = self.dataset, self.head
        cond = frame_condition(head.model, ds, i, i, self.device)
        rays = get_rays(self.poses[i], self.intrinsics, ds.height, ds.width, pixels)
        out = render_rays(rays.origins, rays.directions, head.grid, lambda xyz, dirs: head.model(xyz, dirs, cond),
                          options=head.render, differentiable=False)
        self.rendered += len(rays)
        return torch.cat([out["rgb"], out["opacity"][:, None]], dim=-1)


class TorsoTrainer(TrainingRun):
    """The torso of one person, the frozen head it lies under, and everything that trains it.

    Args:
        cfg: the root config (``model``, ``train``, ``render``, ``seed``).
        device: overrides ``train.device``.

    Raises:
        InputError: the person has no trained head (``head/head.pt``).
    """

    def __init__(self, cfg: RadNerfConfig, device: str | torch.device | None = None):
        super().__init__(cfg, STAGE, "torso", "torso_iters", ALGORITHM_VERSION)
        t = cfg.train
        self.device = torch.device(device or resolve_device(t.device, "train.device"))
        self.settings = run_settings(cfg)
        self.head = load_head(require_head(self.paths), self.device, cfg.render)
        self.train_set, self.val_set = person_splits(self.paths, cfg, self.head.data["audio_features"])
        budget = t.image_cache_gb * 1e9
        self.pixels = TorsoPixels(self.train_set, t.num_rays, t.torso_target, self.device, budget)
        self.head_layers = None
        if t.torso_target == "frame":
            self.head_layers = HeadLayers(self.head, self.train_set, self.device, t.torso_iters, t.num_rays, budget)
        self.poses = torch.from_numpy(self.train_set.poses).to(self.device)
        with torch.random.fork_rng(devices=[]):  # the initial weights, without touching the caller's RNG
            torch.manual_seed(cfg.seed)
            self.model = TorsoModel(cfg.model, len(self.train_set))
        self.model.to(self.device)
        self.optimise(self.model.param_groups(t.lr_grid, t.lr_net))

    def header_extras(self) -> dict:
        return {"num_frames": len(self.train_set), "image_size": [self.train_set.height, self.train_set.width]}

    def train_step(self) -> StepStats:
        """One optimisation step on a random training frame's random pixels."""
        self.model.train()
        batch = self.pixels.sample(self.generator)
        ds = self.train_set
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            coords = torso_coords(ds.height, ds.width, batch.pixels).to(self.device)
            pred, alpha = torso_over(self.model, coords, self.poses[batch.index], self.model.code(batch.index),
                                     batch.background)
            if self.head_layers is not None:
                head = self.head_layers.at(batch.index, batch.pixels)
                pred = composite_background(head[:, :3], head[:, 3], pred)
            mse = losses.photometric(pred.float(), batch.target)
            loss = mse + self.cfg.train.lambda_entropy * losses.opacity_entropy(alpha.float().squeeze(1))
        self.backward(loss)
        return StepStats(float(loss.detach()), float(mse.detach()), len(batch.pixels))

    @torch.no_grad()
    def render(self, dataset: PersonDataset, i: int, train_index: int | None = None) -> np.ndarray:
        """Frame ``i`` of ``dataset``, head over torso (averaged weights) over ``bc.jpg``: ``[H, W, 3]`` float32."""
        self.model.eval()
        with self.ema.average():
            cond = frame_condition(self.head.model, dataset, i, train_index, self.device)
            pose = torch.from_numpy(dataset.poses[i]).to(self.device)
            bg = torch.from_numpy(dataset.background).to(self.device, torch.float32) / 255.0
            out = render_frame(self.head, self.model, pose, cond, self.model.code(train_index), bg)
        return out.cpu().numpy()


# -- the finished torso -----------------------------------------------------------------


@dataclass
class TrainedTorso:
    """A finished torso as rendering uses it (:func:`load_torso`)."""

    model: TorsoModel
    settings: dict
    data: dict
    """``num_frames``, ``image_size``, ``metrics``, ``step``."""


def load_torso(path: str | Path, device: str | torch.device = "cpu", render: RenderConfig | None = None) -> TrainedTorso:
    """Load ``torso/torso.pt`` (safely) and rebuild the model it holds; ``render.amp`` as for :func:`load_head`.

    Raises:
        InputError: missing, corrupt or not a finished torso.
    """
    data = load_checkpoint(path, kind="torso", map_location=device)
    settings = data["settings"]
    model = TorsoModel(model_config(settings["model"]), int(data["num_frames"]))
    ready_to_render(model, data["model"], device, (render or RenderConfig()).amp)
    meta = {k: data[k] for k in ("num_frames", "image_size", "metrics", "step") if k in data}
    return TrainedTorso(model=model, settings=settings, data=meta)


# -- the stage ---------------------------------------------------------------------------


def train_torso(cfg: RadNerfConfig) -> StageResult:
    """``radnerf train-torso``: train the torso of ``cfg.person`` below its head (resuming from its newest checkpoint).

    Returns:
        The stage's :class:`StageResult`; its metrics hold the val PSNR of the whole frame
        (head over torso over ``bc.jpg``), steps, steps per second, peak memory.

    Raises:
        InputError: the person has no trained head (run ``train-head`` first).
    """
    from radnerf.stage_io import sha256_file, sha256_json

    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    head_file = require_head(paths)
    rel = paths.rel
    outputs = [rel(paths.final_weights("torso")), rel(paths.val_renders("torso")), rel(paths.train_log("torso"))]
    upstream: dict[str, str] = {}

    def read_upstream() -> dict[str, str]:
        upstream.update({"train-head": sha256_file(head_file), **data_fingerprint(paths, cfg)})
        return upstream

    plan = StagePlan(STAGE, outputs=outputs, settings=run_settings(cfg), upstream=read_upstream,
                     algorithm=ALGORITHM_VERSION)

    def work(w) -> dict:
        trainer = TorsoTrainer(cfg)
        # The paper's target leaves the head out of training: a new head re-validates a finished
        # torso (it continues with nothing left to train) instead of training it again.
        trained_on = {k: v for k, v in upstream.items() if k != "train-head" or cfg.train.torso_target == "frame"}
        trainer.data_fingerprint = sha256_json(trained_on)
        metrics = trainer.finish(w, trainer.resume(overwrite=cfg.overwrite))
        return {**{k: round(v, 4) for k, v in metrics.items()}, "device": str(trainer.device)}

    return run_stage(paths, plan, work, overwrite=cfg.overwrite)
