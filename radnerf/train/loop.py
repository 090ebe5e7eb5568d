"""What the training stages share: the step loop, resumable checkpoints, validation, the speed meter, the log.

:class:`TrainingRun` is the loop of one training stage around its subclass's
``train_step`` (RAD-NeRF's ``Trainer``, torch-ngp's schedule): Adam with an
exponentially decaying learning rate, an EMA of the weights (what validation
and export use), a checkpoint every ``train.checkpoint_every`` steps that a
killed run resumes from, progress through the stage runner's callback, a
``log.csv`` row every 100 steps, a stop with a message when the loss
diverges, validation renders and the export of the finished model. The torso
(:mod:`radnerf.train.torso`) trains on it; :class:`radnerf.train.head.HeadTrainer`
uses its pieces (:class:`History`, :class:`Speed`, the log) but still carries
its own loop.
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

import numpy as np
import torch

from radnerf.config import RadNerfConfig
from radnerf.data import PersonDataset
from radnerf.devices import cpu_has_bfloat16_units
from radnerf.errors import ConfigError, RadNerfError
from radnerf.models import set_low_precision
from radnerf.paths import PersonPaths
from radnerf.stage_io import StageWriter, report_progress
from radnerf.train import losses
from radnerf.train.checkpoint import checkpoint_files, differences, load_checkpoint, prune, save_checkpoint
from radnerf.train.ema import EMA

log = logging.getLogger(__name__)


@dataclass
class StepStats:
    """Numbers of one training step."""

    loss: float
    mse: float
    samples: int
    """Points the field evaluated (the torso: pixels)."""


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


class Speed:
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


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


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


def ready_to_render(model: torch.nn.Module, state: dict, device: str | torch.device, amp: bool) -> None:
    """Load a finished model's averaged weights ``state``, move it to ``device`` in eval mode, and let its MLPs
    multiply in bfloat16 when ``amp`` (``render.amp``) and it is a CPU with bfloat16 units."""
    model.load_state_dict(state)
    model.to(device).eval()
    set_low_precision(model, torch.device(device).type == "cpu" and amp and cpu_has_bfloat16_units())


def write_log_csv(rows: list[dict], path: Path) -> None:
    """``log.csv``: one row per logged step, columns in the order they first appear (val_psnr only on some)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


class TrainingRun:
    """The loop of one training stage: steps, checkpoints, resuming, progress, divergence, validation, export.

    A subclass sets ``device``, ``model`` and ``val_set`` and calls :meth:`optimise` in its ``__init__``,
    and supplies :meth:`train_step` (which ends in :meth:`backward`), :meth:`render` and
    :meth:`header_extras` (what rebuilding the model needs besides its weights).

    Args:
        cfg: the root config (``train`` and ``seed`` are read here).
        stage: the stage's name (``train-torso``), in messages and progress.
        part: ``head`` or ``torso``: the folder its checkpoints go to (:meth:`PersonPaths.checkpoints`).
        total_key: the ``train`` setting that is the run's length (``torso_iters``).
        algorithm: the stage's algorithm version; a checkpoint of another one is not resumed.
    """

    model: torch.nn.Module
    device: torch.device
    val_set: PersonDataset

    def __init__(self, cfg: RadNerfConfig, stage: str, part: str, total_key: str, algorithm: int):
        self.cfg = cfg
        self.stage = stage
        self.part = part
        self.total_key = total_key
        self.algorithm = algorithm
        self.model_kind = part
        """What the exported model is (its file's ``kind``, which loaders check)."""
        self.paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
        self.settings: dict = {}
        """What decides the trained model (its stage's settings): a checkpoint must agree with them."""
        self.data_fingerprint = ""
        """Fingerprint of the person's data the run trains on (set by the stage); checkpoints must agree."""
        self.step = 0
        self.history = History()
        self.log_rows: list[dict] = []
        self.speed = Speed()
        # Frames and pixels are drawn on the CPU: the same draws on any device.
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def optimise(self, groups: list[dict]) -> None:
        """Adam on ``groups`` (RAD-NeRF's betas and eps), the learning-rate decay, the EMA of ``model``,
        mixed precision on ``device``."""
        t = self.cfg.train
        # fused: one kernel for all parameters (about 5% of a CPU step saved against the per-tensor loop).
        self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15, fused=True)
        total = self.total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: t.lr_final_ratio ** (min(step, total) / total)
        )
        self.ema = EMA(self.model, t.ema_decay)
        self.amp = self.device.type == "cuda" and t.amp
        set_low_precision(self.model, self.device.type == "cpu" and t.amp and cpu_has_bfloat16_units())
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    @property
    def total(self) -> int:
        """The run's length, ``train.<total_key>``."""
        return int(getattr(self.cfg.train, self.total_key))

    # -- what a subclass supplies -------------------------------------------------------

    def train_step(self) -> StepStats:
        raise NotImplementedError

    def render(self, dataset: PersonDataset, i: int, train_index: int | None = None) -> np.ndarray:
        """Frame ``i`` of ``dataset`` with the averaged weights: ``[H, W, 3]`` float32 in [0, 1]."""
        raise NotImplementedError

    def header_extras(self) -> dict:
        """What a checkpoint holds besides the weights to rebuild the model (sizes, counts)."""
        return {}

    def run_metrics(self) -> dict[str, float]:
        """More numbers of the finished run for the stage's metrics (rays/s, occupancy)."""
        return {}

    def backward(self, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss`` (loss scaling on CUDA), the learning-rate decay, the EMA, ``step += 1``."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.ema.update()
        self.step += 1

    # -- the loop -----------------------------------------------------------------------

    def fit(self, total: int | None = None) -> None:
        """Train until ``total`` steps (default :attr:`total`), with checkpoints, validation and progress.

        Raises:
            TrainingDiverged: the loss became NaN or exceeded ``train.max_loss``; the newest
                checkpoint (written before it) is kept.
        """
        t = self.cfg.train
        total = total or self.total
        meter = self.speed = Speed()
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
                report_progress(self.stage, self.step, total, self._progress_text(meter, total))
            if self.step % 100 == 0 or self.step == total:
                self.log_rows.append(self._log_row(meter))
            if self.step % t.checkpoint_every == 0 or self.step == total:
                self.save()
            if t.val_every and self.step % t.val_every == 0 and self.step < total:
                self.validate_progress()

    def _progress_text(self, meter: Speed, total: int) -> str:
        recent = self.history.mse[-50:]
        psnr = losses.psnr(sum(recent) / len(recent)) if recent else float("nan")
        if len(meter.times) < 10:  # the first steps pay for warm-up: their rate would promise hours
            return f"loss {self.history.loss[-1]:.4f}, PSNR {psnr:.1f} dB, measuring speed"
        eta = meter.seconds_per_step() * (total - self.step)
        return (f"loss {self.history.loss[-1]:.4f}, PSNR {psnr:.1f} dB, "
                f"{meter.steps_per_second():.1f} it/s, {meter.steps_per_second() * self.cfg.train.num_rays / 1e3:.0f}k "
                f"rays/s, ETA {clock(eta)}")

    def _log_row(self, meter: Speed) -> dict:
        recent = self.history.mse[-100:]
        return {"step": self.step, "loss": round(self.history.loss[-1], 6),
                "psnr": round(losses.psnr(sum(recent) / len(recent)), 3),
                "lr_grid": self.optimizer.param_groups[0]["lr"], "steps_per_second": round(meter.steps_per_second(), 2)}

    def record_val_psnr(self, value: float) -> None:
        """Put a validation's PSNR on the newest log row."""
        if self.log_rows:
            self.log_rows[-1]["val_psnr"] = round(value, 3)

    def write_log(self, path: Path) -> None:
        write_log_csv(self.log_rows, path)

    # -- validation and export ----------------------------------------------------------

    def validate_progress(self) -> float:
        """Render ``train.val_frames`` val frames into ``<part>/progress/``; returns their mean PSNR."""
        n = min(self.cfg.train.val_frames, len(self.val_set))
        picks = np.linspace(0, len(self.val_set) - 1, n).round().astype(int) if n else []
        values = []
        folder = self.paths.progress_renders(self.part)
        for i in picks:
            pred = self.render(self.val_set, int(i))
            gt = self.val_set.image(int(i))
            values.append(losses.psnr_images(pred, gt.astype(np.float32) / 255.0))
            write_side_by_side(folder / f"step_{self.step:07d}_{int(self.val_set.img_ids[i])}.png", gt, pred)
        value = float(np.mean(values)) if values else float("nan")
        self.record_val_psnr(value)
        log.info("%s: step %d, val PSNR %.2f dB on %d frames", self.stage, self.step, value, len(values))
        return value

    def validate(self, out_dir: Path | None = None) -> dict[str, float]:
        """Every val frame: PSNR of the full frame (mean over frames, dB); ``ground truth | render`` PNGs
        into ``out_dir`` when given."""
        ds = self.val_set
        full = []
        for i in range(len(ds)):
            pred, gt = self.render(ds, i), ds.image(i)
            full.append(losses.psnr_images(pred, gt.astype(np.float32) / 255.0))
            if out_dir is not None:
                write_side_by_side(out_dir / f"{int(ds.img_ids[i])}.png", gt, pred)
            report_progress(f"{self.stage} validation", i + 1, len(ds), "")
        return {"val_psnr": float(np.mean(full)), "val_frames": float(len(ds))}

    def export(self, path: Path, metrics: dict | None = None) -> None:
        """Write the finished model (averaged weights, what rebuilding it needs, its metrics): what rendering loads."""
        save_checkpoint(path, {**self.header(self.model_kind), "model": self.ema.averaged_state_dict(),
                               "metrics": dict(metrics or {})})

    def finish(self, w: StageWriter, start: int) -> dict[str, float]:
        """A training stage's work from ``start`` (the step it resumed at): train to the end, validate on
        every val frame into ``<part>/val/``, write ``<part>/<part>.pt`` and ``<part>/log.csv``; returns
        the metrics."""
        paths, part = self.paths, self.part
        began = time.perf_counter()
        self.fit()
        log.info("%s: %d steps in %.0f s; validating on %d val frames", self.stage, self.step - start,
                 time.perf_counter() - began, len(self.val_set))
        w.path(paths.rel(paths.val_renders(part))).mkdir(parents=True)
        metrics = self.validate(w.staged.val_renders(part))
        metrics.update(steps=float(self.step), steps_per_second=round(self.speed.steps_per_second(), 3),
                       peak_memory_mb=round(peak_memory_mb(self.device), 1))
        metrics.update(self.run_metrics())
        self.record_val_psnr(metrics["val_psnr"])
        w.path(paths.rel(paths.final_weights(part)))
        self.export(w.staged.final_weights(part), metrics)
        self.write_log(w.path(paths.rel(paths.train_log(part))))
        log.info("%s: val PSNR %.2f dB, %.1f steps/s", self.stage, metrics["val_psnr"], metrics["steps_per_second"])
        return metrics

    # -- checkpoints --------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """What resumable checkpoints of this stage are (``torso-train``); the finished model is ``part``."""
        return f"{self.part}-train"

    @property
    def checkpoint_dir(self) -> Path:
        return self.paths.checkpoints(self.part)

    def header(self, kind: str) -> dict:
        """What a resumable checkpoint and the exported model both hold: enough to rebuild the model."""
        return {"kind": kind, "step": self.step, "settings": self.settings, "data": self.data_fingerprint,
                "algorithm": self.algorithm, **self.header_extras()}

    def state_dict(self) -> dict:
        return {
            **self.header(self.kind),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"cpu": self.generator.get_state()},
            "history": self.history.state_dict(),
            "log": [dict(r) for r in self.log_rows],
        }

    def load_state_dict(self, data: dict) -> None:
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.ema.load_state_dict(data["ema"])
        self.scaler.load_state_dict(data["scaler"])
        self.generator.set_state(data["rng"]["cpu"])
        self.history.load_state_dict(data["history"])
        self.log_rows = [dict(r) for r in data.get("log", [])]
        self.step = int(data["step"])

    def save(self) -> Path:
        """Write a resumable checkpoint of the current step (atomic), keep the newest ``train.keep_checkpoints``."""
        bad = [n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise TrainingDiverged(f"training diverged before step {self.step}: {bad[0]} holds NaN or inf",
                                   hint=f"{self._newest_checkpoint_text()}; lower the learning rates and re-run")
        path = save_checkpoint(self.paths.checkpoint(self.part, self.step), self.state_dict())
        prune(self.checkpoint_dir, self.cfg.train.keep_checkpoints)
        return path

    def _newest_checkpoint_text(self) -> str:
        files = checkpoint_files(self.checkpoint_dir)
        return f"the last good checkpoint is {files[-1][1]}" if files else "no checkpoint was written yet"

    def resume(self, overwrite: bool = False) -> int:
        """Continue from the newest checkpoint, if any; returns its step (0 when starting afresh).

        - An unfinished run (a killed one) continues where it stopped, if its settings and the
          person's data are the same; the run's length (``train.<total_key>``) may differ (the
          learning rate follows the new total). Other settings or changed data are refused, naming
          what differs: hours of training are not thrown away without ``overwrite=true``.
        - A finished run with the same settings and data continues to a larger length. If anything
          else changed (a parameter sweep, ``dvc repro`` after an upstream stage re-ran) it starts
          over: its model is stale and no training in progress is lost.

        Raises:
            InputError: the newest checkpoint is unreadable or not one of this stage.
            ConfigError: an unfinished run with other settings or on other data
                (``overwrite=true`` deletes its checkpoints and starts over).
        """
        files = checkpoint_files(self.checkpoint_dir)
        if not files:
            return 0
        if overwrite:
            log.info("%s: overwrite=true, starting over (deleting %d checkpoints)", self.stage, len(files))
            shutil.rmtree(self.checkpoint_dir)
            return 0
        step, path = files[-1]
        data = load_checkpoint(path, kind=self.kind)
        saved = dict(data["settings"])
        key = self.total_key
        saved_total = int(saved.get("train", {}).get(key, step + 1))
        without_total = [{**d, "train": {k: v for k, v in d.get("train", {}).items() if k != key}}
                         for d in (saved, self.settings)]
        diffs = differences(*without_total)
        if data.get("data") != self.data_fingerprint:
            diffs.append("the person's data (or the model it builds on) changed since")
        saved_algorithm = data.get("algorithm", 1)  # checkpoints before the version was recorded: 1
        if saved_algorithm != self.algorithm:
            diffs.append(f"radnerf's training code changed since (algorithm {saved_algorithm}, now {self.algorithm})")
        if step > self.total:
            diffs.append(f"it is at step {step}, past train.{key}={self.total}")
        if diffs and step >= saved_total:
            log.info("%s: %s finished with other settings or data (%s); starting over", self.stage, path.name, diffs[0])
            shutil.rmtree(self.checkpoint_dir)
            return 0
        if diffs:
            more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
            raise ConfigError(
                f"{path} (an unfinished run) was trained with other settings: {'; '.join(diffs[:3])}{more}",
                hint="train on with its settings, or add overwrite=true to start over (deletes its checkpoints)",
            )
        self.load_state_dict(data)
        log.info("%s: resuming from %s (step %d of %d)", self.stage, path.name, step, self.total)
        return step
