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

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radnerf.config import ModelConfig, RadNerfConfig, RenderConfig, to_container
from radnerf.data import PersonDataset
from radnerf.data.rays import HeadBatch, HeadRays
from radnerf.devices import resolve_device
from radnerf.models import HeadCondition, HeadModel, attention_indices, build_head, gather_windows
from radnerf.paths import PersonPaths
from radnerf.render import OccupancyGrid, render_image, render_rays
from radnerf.stage_io import StagePlan, StageResult, StageWriter, report_progress, run_stage
from radnerf.train import losses
from radnerf.train.checkpoint import load_checkpoint
from radnerf.train.loop import (  # noqa: F401 (TrainingDiverged: re-exported)
    Speed,
    StepStats,
    TrainingDiverged,
    TrainingRun,
    ready_to_render,
    write_side_by_side,
)

log = logging.getLogger(__name__)

STAGE = "train-head"
ALGORITHM_VERSION = 2
"""Bumped when the training code changes what a finished head is (2: bfloat16 MLPs on CPUs with bfloat16 units)."""

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


def frame_windows(model: HeadModel, dataset: PersonDataset, i: int, device: torch.device) -> torch.Tensor | None:
    """``[1, T, W, C]`` the audio windows around frame ``i`` of ``dataset`` (None when ``model`` has no audio path)."""
    if not model.uses_audio:
        return None
    rows = attention_indices([int(dataset.aud_ids[i])], len(dataset.audio), model.cfg.attention_window)
    return gather_windows(dataset.audio, rows).to(device)


def frame_condition(model: HeadModel, dataset: PersonDataset, i: int, index: int | None,
                    device: torch.device) -> HeadCondition:
    """Frame ``i`` of ``dataset``'s condition of the head: its audio windows, its eye ratio and the appearance
    code of training frame ``index`` (None: a frame not trained on)."""
    return model.condition(frame_windows(model, dataset, i, device), float(dataset.eye[i]), index)


def model_config(data: dict) -> ModelConfig:
    """A typed :class:`ModelConfig` from a checkpoint's ``settings['model']``."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), data))  # type: ignore[return-value]


def render_config(data: dict, base: RenderConfig | None = None) -> RenderConfig:
    """A :class:`RenderConfig` with a checkpoint's ``settings['render']`` over ``base``'s other values."""
    from dataclasses import replace

    return replace(base or RenderConfig(), **data)


class HeadTrainer(TrainingRun):
    """The head of one person and everything that trains it (the loop, checkpoints, resuming: :class:`TrainingRun`).

    Args:
        cfg: the root config (``model``, ``train``, ``render``, ``audio_features``, ``seed``).
        device: overrides ``train.device``.
    """

    PART = "head"
    """Where its checkpoints, progress renders and outputs go (:meth:`PersonPaths.model_dir`)."""
    STAGE = STAGE
    TOTAL_KEY = "head_iters"
    """The ``train`` setting that says how many steps the run takes."""

    def __init__(self, cfg: RadNerfConfig, device: str | torch.device | None = None):
        from radnerf.audio.backends import feature_name

        super().__init__(cfg, self.STAGE, self.PART, self.TOTAL_KEY, ALGORITHM_VERSION)
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
        self.optimise(self.model.param_groups(t.lr_grid, t.lr_net, t.lr_attention_scale))
        # Jitter of samples and occupancy probes on the device (frames and pixels: self.generator, CPU).
        self.device_generator = (
            self.generator if self.device.type == "cpu" else torch.Generator(self.device).manual_seed(cfg.seed + 1)
        )
        self.perceptual: torch.nn.Module | None = None
        """LPIPS network (:mod:`radnerf.models.perceptual`); when set, validation reports LPIPS on the lips."""

    # -- conditions ---------------------------------------------------------------

    def windows(self, dataset: PersonDataset, i: int) -> torch.Tensor | None:
        """``[1, T, W, C]`` audio windows around frame ``i``'s (None without an audio path)."""
        return frame_windows(self.model, dataset, i, self.device)

    def condition(self, dataset: PersonDataset, i: int, train_index: int | None = None) -> HeadCondition:
        """Frame ``i`` of ``dataset``'s condition; ``train_index`` picks its appearance code (None: unseen frame)."""
        return frame_condition(self.model, dataset, i, train_index, self.device)

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
        return self.step_on(self.rays.sample(self.generator))

    def step_on(self, batch: HeadBatch, extra_loss: Any = None) -> StepStats:
        """Render ``batch``, take the losses (plus ``extra_loss(rgb [N, 3])`` when given), step the optimiser."""
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            cond = self.condition(self.train_set, batch.index, train_index=batch.index)
            out = render_rays(batch.rays.origins, batch.rays.directions, self.grid, self._field(cond),
                              options=self.cfg.render, background=batch.background, perturb=True,
                              generator=self.device_generator)
            loss, mse = self.loss(out, batch)
            if extra_loss is not None:
                loss = loss + extra_loss(out["rgb"].float())
        self.backward(loss)
        return StepStats(float(loss.detach()), float(mse), len(out["samples"]))

    def loss(self, out: dict[str, Any], batch: HeadBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's Eqs. 4-6 on one batch: ``(total, photometric MSE)``."""
        t = self.cfg.train
        mse = losses.photometric(out["rgb"].float(), batch.rgb)
        loss = mse + t.lambda_entropy * losses.opacity_entropy(out["opacity"].float())
        if "ambient" in out and t.lambda_ambient > 0:
            weight = t.lambda_ambient * losses.ramp(self.ramp_step, t.ambient_ramp * t.head_iters)
            loss = loss + weight * losses.ambient_outside_face(out["ambient"].float(), batch.face)
        return loss, mse.detach()

    @property
    def ramp_step(self) -> int:
        """The step the audio-coordinate weight's ramp reads (lip fine-tuning continues the head's run)."""
        return self.step

    def _log_row(self, meter: Speed) -> dict:
        return {**super()._log_row(meter), "occupancy": round(self.grid.occupancy_rate, 4)}

    def run_metrics(self) -> dict[str, float]:
        speed, rays = self.speed, self.cfg.train.num_rays
        return {"rays_per_second": round(speed.steps_per_second() * rays, 1),
                "samples_per_ray": round(speed.samples_per_step() / rays, 3),
                "occupancy": round(self.grid.occupancy_rate, 4)}

    # -- checkpoints --------------------------------------------------------------

    def header_extras(self) -> dict:
        return {
            "audio_channels": int(self.train_set.audio.shape[-1]),
            "num_frames": len(self.train_set),
            "grid": self.grid.state_dict(),
            "intrinsics": list(self.intrinsics),
            "image_size": [self.train_set.height, self.train_set.width],
        }

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.device_generator is not self.generator:
            state["rng"]["device"] = self.device_generator.get_state()
        return state

    def load_state_dict(self, data: dict) -> None:
        super().load_state_dict(data)
        self.grid.load_state_dict(data["grid"])
        if "device" in data["rng"] and self.device_generator is not self.generator:
            self.device_generator.set_state(data["rng"]["device"].cpu())

    # -- validation ---------------------------------------------------------------

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

    def validate(self, out_dir: Path | None = None) -> dict[str, float]:
        """Every val frame: PSNR of the full frame, the face and the lip rectangles (mean over frames, dB),
        and LPIPS on the lips when :attr:`perceptual` is set.

        Writes ``ground truth | render`` PNGs to ``out_dir`` when given.
        """
        full, face, lips, lpips = [], [], [], []
        ds = self.val_set
        for i in range(len(ds)):
            pred = self.render(ds, i)
            gt = ds.image(i).astype(np.float32) / 255.0
            full.append(losses.psnr_images(pred, gt))
            face.append(losses.psnr_images(*(_crop(x, ds.face_rects[i]) for x in (pred, gt))))
            pair = [_crop(x, ds.lips_rects[i]) for x in (pred, gt)]
            lips.append(losses.psnr_images(*pair))
            if self.perceptual is not None:
                lpips.append(float(losses.lpips_patch(self.perceptual, *(torch.from_numpy(x) for x in pair))))
            if out_dir is not None:
                write_side_by_side(out_dir / f"{int(ds.img_ids[i])}.png", ds.image(i), pred)
            report_progress(f"{self.STAGE} validation", i + 1, len(ds), "")
        metrics = {"val_psnr": float(np.mean(full)), "val_psnr_face": float(np.mean(face)),
                   "val_psnr_lips": float(np.mean(lips)), "val_frames": float(len(ds))}
        if lpips:
            metrics["val_lpips_lips"] = float(np.mean(lpips))
        return metrics


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
    rcfg = render_config(settings["render"], render)
    ready_to_render(model, data["model"], device, rcfg.amp)
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
    return _train_stage(cfg, HeadTrainer)


class NoAudioBaseline(HeadTrainer):
    """The baseline that evaluation sets beside the head: the same head and training without the audio path
    (``model.audio=false``), so every report shows what audio buys. Its files go to ``baseline/``."""

    PART = "baseline"
    STAGE = "train-baseline"

    def __init__(self, cfg: RadNerfConfig, device: str | torch.device | None = None):
        super().__init__(no_audio(cfg), device)
        self.model_kind = "head"  # a head like any other: load_head reads it


def no_audio(cfg: RadNerfConfig) -> RadNerfConfig:
    """``cfg`` with ``model.audio=false``."""
    from dataclasses import replace

    return replace(cfg, model=replace(cfg.model, audio=False))


def train_baseline(cfg: RadNerfConfig) -> StageResult:
    """``radnerf train-baseline``: the no-audio head of ``cfg.person`` (:class:`NoAudioBaseline`)."""
    return _train_stage(cfg, NoAudioBaseline)


def _train_stage(cfg: RadNerfConfig, trainer: type[HeadTrainer]) -> StageResult:
    from radnerf.stage_io import sha256_json

    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    rel, part = paths.rel, trainer.PART
    outputs = [rel(paths.final_weights(part)), rel(paths.val_renders(part)), rel(paths.train_log(part))]
    upstream: dict[str, str] = {}

    def read_upstream() -> dict[str, str]:
        upstream.update(data_fingerprint(paths, cfg))
        return upstream

    settings = run_settings(no_audio(cfg) if trainer is NoAudioBaseline else cfg)
    plan = StagePlan(trainer.STAGE, outputs=outputs, settings=settings, upstream=read_upstream,
                     algorithm=ALGORITHM_VERSION)

    def work(w: StageWriter) -> dict:
        run = trainer(cfg)
        run.data_fingerprint = sha256_json(upstream)
        start = run.resume(overwrite=cfg.overwrite)
        metrics = run.finish(w, start)
        return {**{k: round(v, 4) for k, v in metrics.items()}, "device": str(run.device)}

    return run_stage(paths, plan, work, overwrite=cfg.overwrite)


# -- helpers -------------------------------------------------------------------------


def _crop(image: np.ndarray, rect: np.ndarray) -> np.ndarray:
    r0, r1, c0, c1 = (int(v) for v in rect)
    return image[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)]
