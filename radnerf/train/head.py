"""Stage ``train-head``: the talking head of one person, trained from its frames, poses and audio.

One step (paper Sections 3.2 and 3.4, RAD-NeRF's ``train_step``)::

    batch = rays.sample(rng)                                  # one random frame, random pixels
    cond  = model.condition(audio windows, eye, frame)        # audio code, eye ratio, appearance code
    out   = render_rays(batch.rays, grid, model | cond, background=torso over bg)
    loss  = MSE(out.rgb, gt) + 1e-4 entropy(out.opacity) + ramp * 0.1 L1(audio coordinate outside the face)
    adam.step(); lr decays exponentially; EMA of the weights

and every ``render.grid_update_interval`` steps the maximum occupancy grid
takes the density under a random training frame's audio, keeping the maximum.

What the stage leaves in ``artifacts/<person>/head/``::

    head.pt                 the trained head (EMA weights, occupancy grid, the settings it was trained with)
    val/<img_id>.png        every val frame: ground truth | render
    log.csv                 loss, PSNR, learning rate, rays/s every log interval; val PSNR at validations
    checkpoints/step_<n>.pt resumable state (kept; a killed run continues from the newest)
    progress/step_<n>_<img_id>.png   validation renders written while training ran
"""

from __future__ import annotations

import csv
import logging
import math
import resource
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radnerf.config import ModelConfig, RadNerfConfig, RenderConfig, to_container
from radnerf.data import PersonDataset
from radnerf.data.rays import HeadBatch, HeadRays
from radnerf.devices import resolve_device
from radnerf.errors import ConfigError, RadNerfError
from radnerf.models import HeadCondition, HeadModel, attention_indices, build_head, gather_windows
from radnerf.paths import PersonPaths
from radnerf.render import OccupancyGrid, render_image, render_rays
from radnerf.stage_io import StagePlan, StageResult, StageWriter, report_progress, run_stage
from radnerf.train import losses
from radnerf.train.checkpoint import checkpoint_files, differences, load_checkpoint, prune, save_checkpoint
from radnerf.train.ema import EMA

log = logging.getLogger(__name__)

STAGE = "train-head"
ALGORITHM_VERSION = 1
"""Bumped when the training code changes what a finished head is."""

TRAIN_KEYS = ("head_iters", "num_rays", "lr_grid", "lr_net", "lr_attention_scale", "lr_final_ratio", "ema_decay",
              "lambda_entropy", "lambda_ambient", "ambient_ramp", "amp")
"""Training settings that shape the trained head (the others: where and how often things are saved)."""
RENDER_KEYS = ("max_steps", "grid_size", "density_thresh", "min_transmittance", "dt_gamma", "min_near",
               "grid_decay", "grid_update_interval", "grid_conditions")
"""Render settings that shape the trained head (marching speed knobs do not)."""
UPSTREAM = ("track", "torso", "background", "regions")
"""Stages whose outputs the head reads (plus the audio features)."""


def run_settings(cfg: RadNerfConfig) -> dict:
    """Everything that decides a trained head: its fingerprint, and what a checkpoint must agree with."""
    from radnerf.audio.backends import feature_name

    return {
        "model": to_container(cfg.model),
        "train": {k: getattr(cfg.train, k) for k in TRAIN_KEYS},
        "render": {k: getattr(cfg.render, k) for k in RENDER_KEYS},
        "audio_features": feature_name(cfg.audio_features),
        "seed": cfg.seed,
    }


def person_splits(paths: PersonPaths, cfg: RadNerfConfig, feature: str) -> tuple[PersonDataset, PersonDataset]:
    """The person's ``(train, val)`` splits with ``feature`` audio, posed as the model config scales them."""
    load = dict(audio_features=feature, scale=cfg.model.pose_scale, offset=cfg.model.pose_offset)
    return PersonDataset.load(paths, "train", **load), PersonDataset.load(paths, "val", **load)


def model_config(data: dict) -> ModelConfig:
    """A typed :class:`ModelConfig` from a checkpoint's ``settings['model']``."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), data))  # type: ignore[return-value]


def render_config(data: dict, base: RenderConfig | None = None) -> RenderConfig:
    """A :class:`RenderConfig` with a checkpoint's ``settings['render']`` over ``base``'s other values."""
    from dataclasses import replace

    return replace(base or RenderConfig(), **data)


@dataclass
class StepStats:
    """Numbers of one training step."""

    loss: float
    mse: float
    samples: int
    """Points the field evaluated."""


@dataclass
class History:
    """Per-step loss and photometric MSE, carried in checkpoints (a resumed run's curve continues)."""

    loss: list[float] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)

    def state_dict(self) -> dict:
        return {"loss": torch.tensor(self.loss, dtype=torch.float64), "mse": torch.tensor(self.mse, dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        self.loss = [float(v) for v in state["loss"]]
        self.mse = [float(v) for v in state["mse"]]


class TrainingDiverged(RadNerfError):
    """The loss became NaN or left the range colours allow."""


class HeadTrainer:
    """The head of one person and everything that trains it.

    Args:
        cfg: the root config (``model``, ``train``, ``render``, ``audio_features``, ``seed``).
        device: overrides ``train.device``.
    """

    def __init__(self, cfg: RadNerfConfig, device: str | torch.device | None = None):
        from radnerf.audio.backends import feature_name

        self.cfg = cfg
        self.paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
        self.device = torch.device(device or resolve_device(cfg.train.device, "train.device"))
        self.settings = run_settings(cfg)
        self.train_set, self.val_set = person_splits(self.paths, cfg, feature_name(cfg.audio_features))
        self.rays = HeadRays(self.train_set, cfg.train.num_rays, self.device, cfg.train.image_cache_gb * 1e9)
        self.intrinsics = tuple(float(v) for v in self.train_set.intrinsics)

        with torch.random.fork_rng(devices=[]):  # the initial weights, without touching the caller's RNG
            torch.manual_seed(cfg.seed)
            self.model: HeadModel = build_head(cfg.model, self.train_set.audio.shape[-1], len(self.train_set))
        self.model.to(self.device)
        self.grid = OccupancyGrid.from_config(cfg.render, cfg.model.bound).to(self.device)
        t = cfg.train
        # fused: one kernel for all parameters (about 5% of a CPU step saved against the per-tensor loop).
        self.optimizer = torch.optim.Adam(
            self.model.param_groups(t.lr_grid, t.lr_net, t.lr_attention_scale), betas=(0.9, 0.99), eps=1e-15,
            fused=True,
        )
        total = t.head_iters
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: t.lr_final_ratio ** (min(step, total) / total)
        )
        self.ema = EMA(self.model, t.ema_decay)
        self.amp = self.device.type == "cuda" and t.amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        # Frames and pixels are drawn on the CPU (the same draws on any device);
        # jitter of samples and occupancy probes on the device.
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.device_generator = (
            self.generator if self.device.type == "cpu" else torch.Generator(self.device).manual_seed(cfg.seed + 1)
        )
        self.step = 0
        self.history = History()
        self.log_rows: list[dict] = []
        self.speed = _Speed()
        self.data_fingerprint = ""
        """Fingerprint of the person's data the run trains on (set by the stage); checkpoints must agree."""

    # -- conditions ---------------------------------------------------------------

    def windows(self, dataset: PersonDataset, i: int) -> torch.Tensor | None:
        """``[1, T, W, C]`` audio windows around frame ``i``'s (None without an audio path)."""
        if not self.model.uses_audio:
            return None
        rows = attention_indices([int(dataset.aud_ids[i])], len(dataset.audio), self.cfg.model.attention_window)
        return gather_windows(dataset.audio, rows).to(self.device)

    def condition(self, dataset: PersonDataset, i: int, train_index: int | None = None) -> HeadCondition:
        """Frame ``i`` of ``dataset``'s condition; ``train_index`` picks its appearance code (None: unseen frame)."""
        return self.model.condition(self.windows(dataset, i), float(dataset.eye[i]), train_index)

    def _field(self, cond: HeadCondition):
        return lambda xyz, dirs: self.model(xyz, dirs, cond)

    # -- training -----------------------------------------------------------------

    @torch.no_grad()
    def update_grid(self) -> None:
        """One update of the maximum occupancy grid under a random training frame's condition."""
        if self.step == 0 and int(self.grid.updates) == 0:
            self.grid.mark_unseen(torch.from_numpy(self.train_set.poses).to(self.device), self.intrinsics)

        def sample() -> HeadCondition:
            j = int(torch.randint(0, len(self.train_set), (1,), generator=self.generator))
            return self.condition(self.train_set, j, train_index=j)

        self.grid.update(self.model.density, sample, decay=self.cfg.render.grid_decay,
                         num_conditions=self.cfg.render.grid_conditions, generator=self.device_generator)

    def train_step(self) -> StepStats:
        """One optimisation step (with the occupancy update that falls due before it)."""
        if self.step % self.cfg.render.grid_update_interval == 0:
            self.update_grid()
        self.model.train()
        batch = self.rays.sample(self.generator)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            cond = self.condition(self.train_set, batch.index, train_index=batch.index)
            out = render_rays(batch.rays.origins, batch.rays.directions, self.grid, self._field(cond),
                              options=self.cfg.render, background=batch.background, perturb=True,
                              generator=self.device_generator)
            loss, mse = self.loss(out, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.ema.update()
        self.step += 1
        return StepStats(float(loss.detach()), float(mse), len(out["samples"]))

    def loss(self, out: dict[str, Any], batch: HeadBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's Eqs. 4-6 on one batch: ``(total, photometric MSE)``."""
        t = self.cfg.train
        mse = losses.photometric(out["rgb"].float(), batch.rgb)
        loss = mse + t.lambda_entropy * losses.opacity_entropy(out["opacity"].float())
        if "ambient" in out and t.lambda_ambient > 0:
            weight = t.lambda_ambient * losses.ramp(self.step, t.ambient_ramp * t.head_iters)
            loss = loss + weight * losses.ambient_outside_face(out["ambient"].float(), batch.face)
        return loss, mse.detach()

    def fit(self, total: int | None = None, on_checkpoint: Any = None) -> None:
        """Train until ``total`` steps (default ``train.head_iters``), with checkpoints, validation and progress.

        Raises:
            TrainingDiverged: the loss became NaN or exceeded ``train.max_loss``; the newest
                checkpoint (written before it) is kept.
        """
        t = self.cfg.train
        total = total or t.head_iters
        meter = self.speed = _Speed()
        last_report = 0.0
        while self.step < total:
            started = time.perf_counter()
            stats = self.train_step()
            meter.add(time.perf_counter() - started, stats.samples)
            if not math.isfinite(stats.loss) or stats.loss > t.max_loss:
                raise TrainingDiverged(
                    f"training diverged at step {self.step} (loss {stats.loss:.4g})",
                    hint=f"{self._newest_checkpoint_text()}; lower train.lr_grid / train.lr_net and re-run: "
                    "training resumes from that checkpoint",
                )
            self.history.loss.append(stats.loss)
            self.history.mse.append(stats.mse)
            now = time.monotonic()
            if now - last_report >= 0.5 or self.step == total:
                last_report = now
                report_progress(STAGE, self.step, total, self._progress_text(meter, total))
            if self.step % 100 == 0 or self.step == total:
                self.log_rows.append(self._log_row(meter))
            if self.step % t.checkpoint_every == 0 or self.step == total:
                self.save()
                if on_checkpoint is not None:
                    on_checkpoint(self)
            if t.val_every and self.step % t.val_every == 0 and self.step < total:
                self.validate_progress()
        self.speed = meter

    def _progress_text(self, meter: _Speed, total: int) -> str:
        recent = self.history.mse[-50:]
        psnr = losses.psnr(sum(recent) / len(recent)) if recent else float("nan")
        if len(meter.times) < 10:  # the first steps pay for warm-up: their rate would promise hours
            return f"loss {self.history.loss[-1]:.4f}, PSNR {psnr:.1f} dB, measuring speed"
        eta = meter.seconds_per_step() * (total - self.step)
        return (f"loss {self.history.loss[-1]:.4f}, PSNR {psnr:.1f} dB, "
                f"{meter.steps_per_second():.1f} it/s, {meter.steps_per_second() * self.cfg.train.num_rays / 1e3:.0f}k "
                f"rays/s, ETA {_clock(eta)}")

    def _log_row(self, meter: _Speed) -> dict:
        recent = self.history.mse[-100:]
        return {"step": self.step, "loss": round(self.history.loss[-1], 6),
                "psnr": round(losses.psnr(sum(recent) / len(recent)), 3),
                "lr_grid": self.optimizer.param_groups[0]["lr"], "steps_per_second": round(meter.steps_per_second(), 2),
                "occupancy": round(self.grid.occupancy_rate, 4)}

    # -- checkpoints --------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.paths.checkpoints("head")

    def _header(self, kind: str) -> dict:
        """What a resumable checkpoint and the exported head both hold: enough to rebuild the model."""
        return {
            "kind": kind,
            "step": self.step,
            "settings": self.settings,
            "data": self.data_fingerprint,
            "audio_channels": int(self.train_set.audio.shape[-1]),
            "num_frames": len(self.train_set),
            "grid": self.grid.state_dict(),
        }

    def state_dict(self) -> dict:
        state = {
            **self._header("head-train"),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"cpu": self.generator.get_state()},
            "history": self.history.state_dict(),
            "log": [dict(r) for r in self.log_rows],
        }
        if self.device_generator is not self.generator:
            state["rng"]["device"] = self.device_generator.get_state()
        return state

    def save(self) -> Path:
        """Write a resumable checkpoint of the current step (atomic), keep the newest ``train.keep_checkpoints``."""
        bad = [n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise TrainingDiverged(f"training diverged before step {self.step}: {bad[0]} holds NaN or inf",
                                   hint=f"{self._newest_checkpoint_text()}; lower the learning rates and re-run")
        path = save_checkpoint(self.paths.checkpoint("head", self.step), self.state_dict())
        prune(self.checkpoint_dir, self.cfg.train.keep_checkpoints)
        return path

    def _newest_checkpoint_text(self) -> str:
        files = checkpoint_files(self.checkpoint_dir)
        return f"the last good checkpoint is {files[-1][1]}" if files else "no checkpoint was written yet"

    def resume(self, overwrite: bool = False) -> int:
        """Continue from the newest checkpoint, if any; returns its step (0 when starting afresh).

        - An unfinished run (a killed one) continues where it stopped, if its settings and the
          person's data are the same; ``train.head_iters`` may differ (the learning rate follows the
          new total). Other settings or changed data are refused, naming what differs: hours of
          training are not thrown away without ``overwrite=true``.
        - A finished run with the same settings and data continues to a larger ``train.head_iters``.
          If anything else changed (a parameter sweep, ``dvc repro`` after an upstream stage re-ran)
          it starts over: its head is stale and no training in progress is lost.

        Raises:
            InputError: the newest checkpoint is unreadable or not a head checkpoint.
            ConfigError: an unfinished run with other settings or on other data
                (``overwrite=true`` deletes its checkpoints and starts over).
        """
        files = checkpoint_files(self.checkpoint_dir)
        if not files:
            return 0
        if overwrite:
            log.info("train-head: overwrite=true, starting over (deleting %d checkpoints)", len(files))
            shutil.rmtree(self.checkpoint_dir)
            return 0
        step, path = files[-1]
        data = load_checkpoint(path, kind="head-train")
        saved = dict(data["settings"])
        saved_total = int(saved.get("train", {}).get("head_iters", step + 1))
        without_total = [{**d, "train": {k: v for k, v in d.get("train", {}).items() if k != "head_iters"}}
                         for d in (saved, self.settings)]
        diffs = differences(*without_total)
        if data.get("data") != self.data_fingerprint:
            diffs.append("the person's data (poses, images or audio features) changed since")
        if step > self.cfg.train.head_iters:
            diffs.append(f"it is at step {step}, past train.head_iters={self.cfg.train.head_iters}")
        if diffs and step >= saved_total:
            log.info("train-head: %s finished with other settings or data (%s); starting over", path.name, diffs[0])
            shutil.rmtree(self.checkpoint_dir)
            return 0
        if diffs:
            more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
            raise ConfigError(
                f"{path} (an unfinished run) was trained with other settings: {'; '.join(diffs[:3])}{more}",
                hint="train on with its settings, or add overwrite=true to start over (deletes its checkpoints)",
            )
        self.load_state_dict(data)
        log.info("train-head: resuming from %s (step %d of %d)", path.name, step, self.cfg.train.head_iters)
        return step

    def load_state_dict(self, data: dict) -> None:
        self.model.load_state_dict(data["model"])
        self.grid.load_state_dict(data["grid"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.ema.load_state_dict(data["ema"])
        self.scaler.load_state_dict(data["scaler"])
        self.generator.set_state(data["rng"]["cpu"])
        if "device" in data["rng"] and self.device_generator is not self.generator:
            self.device_generator.set_state(data["rng"]["device"].cpu())
        self.history.load_state_dict(data["history"])
        self.log_rows = [dict(r) for r in data.get("log", [])]
        self.step = int(data["step"])

    # -- validation and export ----------------------------------------------------

    @torch.no_grad()
    def render(self, dataset: PersonDataset, i: int, train_index: int | None = None) -> np.ndarray:
        """Frame ``i`` of ``dataset`` with the averaged weights: ``[H, W, 3]`` float32 in [0, 1]."""
        self.model.eval()
        with self.ema.average():
            cond = self.condition(dataset, i, train_index)
            pose = torch.from_numpy(dataset.poses[i]).to(self.device)
            bg = torch.from_numpy(dataset.head_background(i)).to(self.device, torch.float32) / 255.0
            out = render_image(pose, self.intrinsics, dataset.height, dataset.width, self.grid, self._field(cond),
                               options=self.cfg.render, background=bg)
        return out["rgb"].clamp(0, 1).cpu().numpy()

    def validate_progress(self) -> float:
        """Render ``train.val_frames`` val frames into ``head/progress/``; returns their mean PSNR."""
        n = min(self.cfg.train.val_frames, len(self.val_set))
        picks = np.linspace(0, len(self.val_set) - 1, n).round().astype(int) if n else []
        values = []
        folder = self.paths.progress_renders("head")
        for i in picks:
            pred = self.render(self.val_set, int(i))
            gt = self.val_set.image(int(i))
            values.append(losses.psnr_images(pred, gt.astype(np.float32) / 255.0))
            write_side_by_side(folder / f"step_{self.step:07d}_{int(self.val_set.img_ids[i])}.png", gt, pred)
        value = float(np.mean(values)) if values else float("nan")
        if self.log_rows:
            self.log_rows[-1]["val_psnr"] = round(value, 3)
        log.info("train-head: step %d, val PSNR %.2f dB on %d frames", self.step, value, len(values))
        return value

    def validate(self, out_dir: Path | None = None) -> dict[str, float]:
        """Every val frame: PSNR of the full frame, the face and the lip rectangles (mean over frames, dB).

        Writes ``ground truth | render`` PNGs to ``out_dir`` when given.
        """
        full, face, lips = [], [], []
        ds = self.val_set
        for i in range(len(ds)):
            pred = self.render(ds, i)
            gt = ds.image(i).astype(np.float32) / 255.0
            full.append(losses.psnr_images(pred, gt))
            face.append(losses.psnr_images(*(_crop(x, ds.face_rects[i]) for x in (pred, gt))))
            lips.append(losses.psnr_images(*(_crop(x, ds.lips_rects[i]) for x in (pred, gt))))
            if out_dir is not None:
                write_side_by_side(out_dir / f"{int(ds.img_ids[i])}.png", ds.image(i), pred)
            report_progress(f"{STAGE} validation", i + 1, len(ds), "")
        return {"val_psnr": float(np.mean(full)), "val_psnr_face": float(np.mean(face)),
                "val_psnr_lips": float(np.mean(lips)), "val_frames": float(len(ds))}

    def export(self, path: Path, metrics: dict | None = None) -> None:
        """Write the finished head (averaged weights, grid, settings): what rendering loads."""
        save_checkpoint(path, {
            **self._header("head"),
            "model": self.ema.averaged_state_dict(),
            "intrinsics": list(self.intrinsics),
            "image_size": [self.train_set.height, self.train_set.width],
            "metrics": dict(metrics or {}),
        })

    def write_log(self, path: Path) -> None:
        keys: list[str] = []
        for row in self.log_rows:
            keys += [k for k in row if k not in keys]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.log_rows)


# -- the finished head ---------------------------------------------------------------


@dataclass
class TrainedHead:
    """A finished head as rendering uses it (:func:`load_head`)."""

    model: HeadModel
    grid: OccupancyGrid
    render: RenderConfig
    """The render settings it was trained with (marching speed knobs from the caller's config)."""
    settings: dict
    data: dict
    """``audio_features`` name, ``audio_channels``, ``intrinsics``, ``image_size``, ``metrics``, ``step``."""


def load_head(path: str | Path, device: str | torch.device = "cpu", render: RenderConfig | None = None) -> TrainedHead:
    """Load ``head/head.pt`` (safely) and rebuild the model it holds.

    Raises:
        InputError: missing, corrupt or not a finished head.
    """
    data = load_checkpoint(path, kind="head", map_location=device)
    settings = data["settings"]
    model = build_head(model_config(settings["model"]), int(data["audio_channels"]), int(data["num_frames"]))
    model.load_state_dict(data["model"])
    model.to(device).eval()
    rcfg = render_config(settings["render"], render)
    grid = OccupancyGrid.from_config(rcfg, model.bound).to(device)
    grid.load_state_dict(data["grid"])
    meta = {k: data[k] for k in ("audio_channels", "intrinsics", "image_size", "metrics", "step") if k in data}
    meta["audio_features"] = settings["audio_features"]
    return TrainedHead(model=model, grid=grid, render=rcfg, settings=settings, data=meta)


# -- the stage ---------------------------------------------------------------------------


def data_fingerprint(paths: PersonPaths, cfg: RadNerfConfig) -> dict[str, str]:
    """Fingerprints of what the head reads: the upstream stages' manifests (or, for a dataset imported
    from RAD-NeRF without them, a listing of its files)."""
    from radnerf.audio.backends import manifest_stage
    from radnerf.formats.manifests import read_manifest
    from radnerf.stage_io import sha256_json

    out: dict[str, str] = {}
    for stage in (*UPSTREAM, manifest_stage(cfg.audio_features)):
        manifest = read_manifest(paths.manifest(stage))
        if manifest is not None and manifest.get("fingerprint"):
            out[stage] = str(manifest["fingerprint"])
    if len(out) < len(UPSTREAM) + 1:
        files = [paths.transforms("train"), paths.transforms("val"), paths.regions, paths.background_image,
                 paths.gt_imgs, paths.torso_imgs]
        listing = []
        for f in files:
            for p in sorted(f.rglob("*")) if f.is_dir() else [f]:
                if p.is_file():
                    listing.append((str(p.relative_to(paths.root)), p.stat().st_size, p.stat().st_mtime_ns))
        out["files"] = sha256_json(listing)
    return out


def train_head(cfg: RadNerfConfig) -> StageResult:
    """``radnerf train-head``: train the head of ``cfg.person`` (resuming from its newest checkpoint).

    Returns:
        The stage's :class:`StageResult`; its metrics hold val PSNR (full frame,
        face and lip rectangles), steps, steps and rays per second, peak memory.
    """
    from radnerf.stage_io import sha256_json

    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    rel = paths.rel
    outputs = [rel(paths.final_weights("head")), rel(paths.val_renders("head")), rel(paths.train_log("head"))]
    upstream: dict[str, str] = {}

    def read_upstream() -> dict[str, str]:
        upstream.update(data_fingerprint(paths, cfg))
        return upstream

    plan = StagePlan(STAGE, outputs=outputs, settings=run_settings(cfg), upstream=read_upstream,
                     algorithm=ALGORITHM_VERSION)

    def work(w: StageWriter) -> dict:
        trainer = HeadTrainer(cfg)
        trainer.data_fingerprint = sha256_json(upstream)
        start = trainer.resume(overwrite=cfg.overwrite)
        began = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - began
        log.info("train-head: %d steps in %.0f s; validating on %d val frames", trainer.step - start, seconds,
                 len(trainer.val_set))
        staged = w.staged
        w.path(rel(paths.val_renders("head"))).mkdir(parents=True)
        metrics = trainer.validate(staged.val_renders("head"))
        speed = trainer.speed
        metrics.update(
            steps=float(trainer.step),
            steps_per_second=round(speed.steps_per_second(), 3),
            rays_per_second=round(speed.steps_per_second() * cfg.train.num_rays, 1),
            samples_per_ray=round(speed.samples_per_step() / cfg.train.num_rays, 3),
            occupancy=round(trainer.grid.occupancy_rate, 4),
            peak_memory_mb=round(peak_memory_mb(trainer.device), 1),
        )
        if trainer.log_rows:
            trainer.log_rows[-1]["val_psnr"] = round(metrics["val_psnr"], 3)
        w.path(rel(paths.final_weights("head")))
        trainer.export(staged.final_weights("head"), metrics)
        trainer.write_log(w.path(rel(paths.train_log("head"))))
        log.info("train-head: val PSNR %.2f dB (face %.2f, lips %.2f), %.1f steps/s",
                 metrics["val_psnr"], metrics["val_psnr_face"], metrics["val_psnr_lips"], metrics["steps_per_second"])
        return {**{k: round(v, 4) for k, v in metrics.items()}, "device": str(trainer.device)}

    return run_stage(paths, plan, work, overwrite=cfg.overwrite)


# -- helpers -------------------------------------------------------------------------


class _Speed:
    """Steps per second and samples per step over the most recent steps (validation and saving excluded)."""

    def __init__(self, window: int = 200):
        self.times: deque[float] = deque(maxlen=window)
        self.samples: deque[int] = deque(maxlen=window)
        self.total_time = 0.0
        self.total_steps = 0

    def add(self, seconds: float, samples: int) -> None:
        self.times.append(seconds)
        self.samples.append(samples)
        self.total_time += seconds
        self.total_steps += 1

    def seconds_per_step(self) -> float:
        return sum(self.times) / len(self.times) if self.times else 0.0

    def steps_per_second(self) -> float:
        """Over the whole run (what the stage reports)."""
        return self.total_steps / self.total_time if self.total_time > 0 else 0.0

    def samples_per_step(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 0.0


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def _crop(image: np.ndarray, rect: np.ndarray) -> np.ndarray:
    r0, r1, c0, c1 = (int(v) for v in rect)
    return image[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)]


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on a GPU, resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_side_by_side(path: Path, gt: np.ndarray, pred: np.ndarray) -> None:
    """``ground truth | render`` as one PNG (uint8 ``[H, W, 3]`` and float ``[H, W, 3]`` in [0, 1])."""
    from radnerf.media.images import png_bytes
    from radnerf.stage_io import atomic_file

    pred8 = (np.clip(pred, 0, 1) * 255 + 0.5).astype(np.uint8)
    with atomic_file(path) as tmp:
        tmp.write_bytes(png_bytes(np.concatenate([gt, pred8], axis=1)))
