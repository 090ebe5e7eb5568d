"""Stage ``finetune-lips``: the head fine-tuned on lip patches with a perceptual loss (paper Section 3.3).

RAD-NeRF's ``--finetune_lips``: starting from the trained head, every other
step renders the whole square patch around the lip landmarks of a random
training frame (``regions.csv``'s lip rectangle) and adds
``train.lambda_lpips`` x LPIPS-Alex of that patch to the MSE; the steps
between are the head's ordinary random-ray steps. The occupancy grid is
frozen (no updates) and the learning rate decays as RAD-NeRF's
``0.05 ** (iter / iters)`` over the head's and the fine-tuning's steps
together, so it continues the head's decay and ends at 0.05x.

``train.lips_loss=mse`` fine-tunes the same patches with MSE alone (no
weights needed); the stage says that LPIPS was skipped.

What the stage leaves in ``artifacts/<person>/lips/``::

    lips.pt                 the fine-tuned head (loads with :func:`radnerf.train.head.load_head`);
                            rendering prefers it to head/head.pt (:func:`final_head`)
    val/<img_id>.png        every val frame: ground truth | render
    log.csv, checkpoints/   as the head's

Its metrics hold the val lip-rectangle PSNR (and LPIPS when the network is
there) before and after.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from radnerf.config import RadNerfConfig
from radnerf.errors import ConfigError, InputError
from radnerf.paths import PersonPaths
from radnerf.stage_io import StagePlan, StageResult, StageWriter, run_stage, sha256_file, sha256_json
from radnerf.train import losses
from radnerf.train.checkpoint import differences, load_checkpoint
from radnerf.train.ema import EMA
from radnerf.train.head import ALGORITHM_VERSION, HeadTrainer, StepStats, data_fingerprint, run_settings

log = logging.getLogger(__name__)

STAGE = "finetune-lips"
LIPS_KEYS = ("lips_iters", "lips_loss", "lambda_lpips")
FINAL_LR_RATIO = 0.05
"""RAD-NeRF's fine-tuning schedule ends at this share of the base learning rate."""


def lips_settings(cfg: RadNerfConfig) -> dict:
    """The head's settings plus the fine-tuning's: what a lips checkpoint must agree with."""
    settings = run_settings(cfg)
    settings["train"].update({k: getattr(cfg.train, k) for k in LIPS_KEYS})
    return settings


class LipTrainer(HeadTrainer):
    """The head trainer continued on lip patches.

    Args:
        cfg: the root config; its model and render settings must be the head's.
        head: the finished head (``head/head.pt`` as :func:`load_checkpoint` reads it).
        perceptual: the LPIPS network, or None for ``train.lips_loss=mse``.
        device: overrides ``train.device``.
    """

    PART = "lips"
    STAGE = STAGE
    TOTAL_KEY = "lips_iters"

    def __init__(self, cfg: RadNerfConfig, head: dict, perceptual: torch.nn.Module | None = None,
                 device: str | torch.device | None = None):
        super().__init__(cfg, device)
        self.settings = lips_settings(cfg)
        self.model_kind = "head"  # lips.pt is a head: load_head reads it, rendering uses it in its place
        diffs = differences({k: head["settings"][k] for k in ("model", "render", "audio_features")},
                            {k: self.settings[k] for k in ("model", "render", "audio_features")})
        if diffs:
            raise ConfigError(f"the head was trained with other model settings: {'; '.join(diffs[:3])}",
                              hint="fine-tune with the settings the head was trained with, or re-run train-head")
        self.model.load_state_dict(head["model"])
        self.grid.load_state_dict(head["grid"])
        self.ema = EMA(self.model, cfg.train.ema_decay)  # averaging starts from the head's weights
        self.head_steps = int(head["step"])
        total, lips = self.head_steps + self.total, self.total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: FINAL_LR_RATIO ** ((self.head_steps + min(s, lips)) / total))
        self.perceptual = perceptual
        self.from_head = ""
        """sha256 of the ``head.pt`` it starts from (set by the stage): :func:`final_head` checks it."""

    def header_extras(self) -> dict:
        return {**super().header_extras(), "from_head": self.from_head}

    @property
    def ramp_step(self) -> int:
        return self.head_steps + self.step

    def update_grid(self) -> None:
        """The occupancy grid stays as the head left it (RAD-NeRF freezes it for the lips)."""

    def train_step(self) -> StepStats:
        """Even steps: a random training frame's whole lip patch, MSE + LPIPS; odd steps: random rays."""
        if self.step % 2:
            return self.step_on(self.rays.sample(self.generator))
        ds = self.train_set
        i = int(torch.randint(0, len(ds), (1,), generator=self.generator))
        r0, r1, c0, c1 = (int(v) for v in ds.lips_rects[i])
        if r1 <= r0 or c1 <= c0:  # no lip rectangle on this frame (landmarks filled in): an ordinary step
            return self.step_on(self.rays.sample(self.generator))
        rows = torch.arange(r0, r1).view(-1, 1)
        pixels = (rows * ds.width + torch.arange(c0, c1).view(1, -1)).reshape(-1)
        batch = self.rays.batch(i, pixels)
        shape = (r1 - r0, c1 - c0, 3)
        if self.perceptual is None:
            return self.step_on(batch)
        weight = self.cfg.train.lambda_lpips
        return self.step_on(batch, lambda rgb: weight * losses.lpips_patch(
            self.perceptual, rgb.view(shape), batch.rgb.view(shape)))


def final_head(paths: PersonPaths) -> Path:
    """The head rendering uses: ``lips/lips.pt`` when it was fine-tuned from the current ``head/head.pt``,
    else ``head/head.pt`` (a head re-trained after its lips were fine-tuned makes those lips stale)."""
    head, lips = paths.final_weights("head"), paths.final_weights("lips")
    if lips.is_file() and head.is_file():
        tuned_from = load_checkpoint(lips, kind="head").get("from_head")
        if tuned_from == sha256_file(head):
            return lips
        log.warning("%s was fine-tuned from an older head; rendering head/head.pt (re-run `radnerf finetune-lips "
                    "person=%s`)", paths.rel(lips), paths.root.name)
    return head


def finetune_lips(cfg: RadNerfConfig) -> StageResult:
    """``radnerf finetune-lips``: fine-tune ``cfg.person``'s head on lip patches (resumes from its checkpoint).

    Raises:
        InputError: there is no trained head.
        MissingWeightsError: ``train.lips_loss=lpips`` and the AlexNet weights are not cached.
    """
    from radnerf.devices import resolve_device
    from radnerf.models.perceptual import load_lpips

    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    head_file = paths.final_weights("head")
    if not head_file.is_file():
        raise InputError(f"{paths.root.name} has no trained head ({head_file} is missing)",
                         hint=f"run `radnerf train-head person={paths.root.name}` first")
    perceptual = None
    if cfg.train.lips_loss == "lpips":
        perceptual = load_lpips(cfg.paths.weights, resolve_device(cfg.train.device, "train.device"))
    else:
        log.warning("%s: train.lips_loss=mse: the lip patches are fitted with MSE alone; the paper's LPIPS term "
                    "is skipped (`radnerf weights fetch alexnet`, then train.lips_loss=lpips)", STAGE)
    rel = paths.rel
    outputs = [rel(paths.final_weights("lips")), rel(paths.val_renders("lips")), rel(paths.train_log("lips"))]
    upstream: dict[str, str] = {}

    def read_upstream() -> dict[str, str]:
        upstream.update(data_fingerprint(paths, cfg), head=sha256_file(head_file))
        return upstream

    plan = StagePlan(STAGE, outputs=outputs, settings=lips_settings(cfg), upstream=read_upstream,
                     algorithm=ALGORITHM_VERSION)

    def work(w: StageWriter) -> dict:
        head = load_checkpoint(head_file, kind="head")
        trainer = LipTrainer(cfg, head, perceptual)
        before = trainer.validate()  # the head as trained, on the same val frames and metrics
        trainer.data_fingerprint = sha256_json(upstream)
        start = trainer.resume(overwrite=cfg.overwrite)
        trainer.from_head = upstream["head"]
        metrics = trainer.finish(w, start)
        metrics.update({f"before_{k}": v for k, v in before.items() if k.startswith("val_") and k != "val_frames"})
        log.info("%s: lip PSNR %.2f -> %.2f dB%s", STAGE, before["val_psnr_lips"], metrics["val_psnr_lips"],
                 f", LPIPS {before['val_lpips_lips']:.4f} -> {metrics['val_lpips_lips']:.4f}"
                 if "val_lpips_lips" in before else "")
        return {**{k: round(v, 4) for k, v in metrics.items()}, "device": str(trainer.device)}

    return run_stage(paths, plan, work, overwrite=cfg.overwrite)
