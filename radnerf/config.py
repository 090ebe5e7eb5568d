"""Typed configuration: one dataclass per component, registered with Hydra.

The YAML files in ``conf/`` pick values; these dataclasses are their schema,
so Hydra rejects an unknown key or a value of the wrong type with a message
that names it. Each field carries a one-line docstring (the string literal
under it) that ``radnerf <stage> --help`` and the README quote.

Groups (``conf/<group>/<option>.yaml``): paths, ingest, preprocess, model,
train, eval, render, mlflow, demo, preset. A preset (``preset=cpu_tiny`` or
``preset=paper``) overrides values across groups at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING  # noqa: F401  (re-exported for stage configs)


def check_choice(key: str, value: Any, options: tuple[str, ...]) -> None:
    """Raise :class:`~radnerf.errors.ConfigError` unless ``value`` is one of ``options``."""
    if value not in options:
        from radnerf.errors import ConfigError

        raise ConfigError(f"{key}={value!r} is not one of {', '.join(options)}")


def check_at_least(key: str, value: float, low: float) -> None:
    """Raise :class:`~radnerf.errors.ConfigError` unless ``value >= low``."""
    if not value >= low:
        from radnerf.errors import ConfigError

        raise ConfigError(f"{key}={value!r} must be at least {low:g}")


@dataclass
class PathsConfig:
    """Where inputs and outputs live."""

    artifacts: str = "artifacts"
    """Root of per-person outputs: ``<artifacts>/<person>/...``."""
    data: str = "data"
    """Raw inputs (videos, audio) tracked by DVC through ``data.dvc``."""
    weights: Optional[str] = None
    """Cache of external model files; default ``$RADNERF_WEIGHTS`` or ``~/.cache/radnerf``."""


@dataclass
class IngestConfig:
    """Video ingestion: frames at a fixed rate plus aligned 16 kHz mono audio."""

    fps: int = 25
    """Output frame rate; RAD-NeRF's audio windows assume 25 (two 50 Hz features a frame)."""
    sample_rate: int = 16000
    """Output audio sample rate in Hz (the ASR feature extractors expect 16 kHz)."""
    crop: str = "none"
    """'none', 'center' (largest centred square) or 'x,y,w,h' in source pixels."""
    size: Optional[int] = None
    """Resize so the longer side has this many pixels (even); null keeps the source size."""
    start: float = 0.0
    """Seconds to skip at the start of the source."""
    max_duration: Optional[float] = None
    """Keep at most this many seconds; null keeps everything."""
    min_duration: float = 1.0
    """Refuse clips shorter than this many seconds."""
    recommended_duration: float = 60.0
    """Warn below this many seconds: RAD-NeRF learns a person from 3-5 minutes."""
    jpeg_quality: int = 2
    """ffmpeg ``-q:v`` for the frames: 1 (best) to 31."""
    max_decode_loss: float = 0.02
    """Share of expected frames that may fail to decode before the stream counts as corrupt."""
    min_speech_share: float = 0.2
    """Refuse a clip whose audio is speech (silero-vad) for less than this share of its length: the head
    would learn nothing from its audio. 0 accepts any audio."""

    def __post_init__(self) -> None:
        from radnerf.errors import ConfigError

        if self.fps <= 0:
            raise ConfigError(f"ingest.fps must be positive, got {self.fps}")
        if self.sample_rate < 8000:
            raise ConfigError(f"ingest.sample_rate={self.sample_rate} is too low", hint="use 16000")
        if self.size is not None and self.size < 32:
            raise ConfigError(f"ingest.size={self.size} is too small", hint="use null or 256-512")
        if self.start < 0:
            raise ConfigError(f"ingest.start must be >= 0, got {self.start}")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ConfigError(f"ingest.max_duration must be positive, got {self.max_duration}")
        if not 1 <= self.jpeg_quality <= 31:
            raise ConfigError(f"ingest.jpeg_quality must be 1..31, got {self.jpeg_quality}")
        if not 0.0 <= self.min_speech_share <= 1.0:
            raise ConfigError(f"ingest.min_speech_share={self.min_speech_share!r} must lie in [0, 1]")


@dataclass
class PreprocessConfig:
    """Backends of the per-frame preprocessing models."""

    landmarks: str = "dlib"
    """68-point landmark backend: 'fan' (face-alignment, weights needed), 'dlib' (offline) or 'mediapipe'."""
    parsing: str = "offline"
    """Semantic parsing backend: 'bisenet' (facexlib, weights needed) or 'offline'."""
    device: str = "auto"
    """Torch device for the neural backends: 'auto', 'cpu' or 'cuda'."""
    workers: int = 0
    """Worker processes for per-frame work; 0 uses every core this process may run on. With
    ``executor=dask``: the chunks of frames a stage is split into (0: one per thread of the cluster)."""
    executor: str = "local"
    """Where per-frame work runs: 'local' (worker processes on this machine) or 'dask' (chunks of frames on a
    Dask cluster: ``dask_address``, else a local cluster started for each stage)."""
    dask_address: Optional[str] = None
    """Dask scheduler of ``executor=dask`` (``tcp://host:8786``); null reads ``$DASK_SCHEDULER_ADDRESS``, and
    without it a ``distributed.LocalCluster`` of ``workers`` processes runs for the stage."""
    max_missing_share: float = 0.1
    """Fail when more than this share of frames has no usable face."""
    max_gap: int = 25
    """Fail when a run of consecutive frames without a face is longer than this (frames)."""
    min_face_size: float = 0.12
    """Smallest face accepted, as its width over the shorter image side."""
    max_cut_share: float = 0.1
    """Fail when more than this share of frames has landmarks at or beyond the image edge."""
    max_side_view_share: float = 0.1
    """Fail when more than this share of frames is an extreme side view."""
    side_view_yaw: float = 0.75
    """Asymmetry of the nose between the jaw ends (0 frontal, 1 full profile) that counts as a side view."""
    second_face_ratio: float = 0.6
    """A second face at least this fraction of the main face's width is a competing face."""
    ambiguous_share: float = 0.3
    """Refuse when competing faces are present in more than this share of frames."""
    smooth_sigma: float = 1.0
    """Temporal Gaussian sigma (frames) for jaw, brow and nose landmarks; eyes and lips are never smoothed."""
    background_stride: int = 0
    """Use every n-th frame for the background; 0 picks a stride giving about 60 frames."""
    background_margin: float = 0.05
    """A pixel counts as seen background only in frames where it is this far from the person (share of the shorter side; RAD-NeRF: 5 px)."""
    overlay_frames: int = 4
    """Frames per stage drawn as overlay images under ``overlays/``; 0 disables them."""

    def __post_init__(self) -> None:
        check_choice("preprocess.landmarks", self.landmarks, ("fan", "dlib", "mediapipe"))
        check_choice("preprocess.parsing", self.parsing, ("bisenet", "offline"))
        check_choice("preprocess.device", self.device, ("auto", "cpu", "cuda"))
        check_choice("preprocess.executor", self.executor, ("local", "dask"))


@dataclass
class TrackConfig:
    """Head tracking and camera calibration from landmarks (the root config's ``track``)."""

    focal: Optional[float] = None
    """Focal length in pixels to use as is; null estimates it under the prior."""
    focal_prior: Optional[float] = None
    """Centre of the focal prior in pixels; null means 2 x the longer image side."""
    focal_prior_sigma: float = 0.7
    """Standard deviation of the focal prior in log space (0.7: a factor 2 is one sigma)."""
    weight_rigid: float = 1.0
    """Weight of the eye corners and nose, which carry the pose."""
    weight_brows: float = 0.5
    """Weight of the eyebrows (they move a little with expression)."""
    weight_eyelids: float = 0.3
    """Weight of the eyelids (blinks)."""
    weight_jaw: float = 0.05
    """Weight of the jaw outline (a silhouette that slides as the head turns)."""
    weight_lips: float = 0.05
    """Weight of the lips (speech)."""
    shape_reg: float = 0.002
    """Pull of the person's shape toward the generic shape, relative to one frame's data."""
    symmetry_reg: float = 0.01
    """Pull of the person's shape toward left-right symmetry, relative to one frame's data."""
    smooth_rotation: float = 6.0
    """Weight of rotation second differences (temporal smoothing of the poses; 0 disables)."""
    smooth_translation: float = 1.0
    """Weight of image position and scale second differences."""
    calib_frames: int = 600
    """Frames (in 8 stretches spread over the clip) on which shape and focal are estimated, before all poses."""
    calib_smooth_rotation: float = 1.0
    """Lighter rotation smoothing while shape and focal are estimated (heavy smoothing biases them)."""
    calib_smooth_translation: float = 0.05
    """Lighter position smoothing while shape and focal are estimated."""
    smooth_huber_deg: float = 0.3
    """Rotation second difference (degrees per frame squared) above which smoothing relaxes, keeping fast real motion."""
    smooth_huber_px: float = 2.0
    """Position second difference (pixels per frame squared) above which smoothing relaxes."""
    huber_px: float = 2.0
    """Landmark error (pixels) above which a landmark counts as an outlier (Huber loss)."""
    iterations: int = 50
    """Maximum Levenberg-Marquardt iterations."""
    tol: float = 1e-5
    """Stop when an iteration lowers the cost by less than this fraction."""
    outlier_px: float = 8.0
    """A frame whose median rigid-point error exceeds this (pixels) is refitted from its neighbours."""
    jump_deg: float = 15.0
    """Rotation between consecutive frames (degrees) that no head makes: flags the frame."""
    jump_shift: float = 0.3
    """Movement between consecutive frames, in face widths, that no head makes: flags the frame."""
    max_flagged_share: float = 0.05
    """Fail when more than this share of frames is flagged."""
    min_frames: int = 25
    """Fail with fewer usable frames than this."""
    min_motion_deg: float = 5.0
    """Below this range of yaw and pitch (degrees) the focal is not estimated: the prior is assumed."""
    constrained_sigma: float = 0.1
    """The clip constrains the focal only if the landmarks alone pin log(focal) to this standard deviation..."""
    profile_min_increase: float = 0.01
    """...and fits at half and twice the focal cost at least this fraction more (the focal profile)."""
    focal_profile: bool = True
    """Refit at half and twice the focal to measure how well the clip constrains it (about 2 s)."""
    overlay_frames: int = 4
    """Frames drawn with the projected shape under ``track/``; 0 disables them."""
    plots: bool = True
    """Write ``track/pose_curves.png``."""


AUDIO_BACKENDS = ("offline", "wav2vec2", "hubert")
"""The feature extractors ``audio_features.backend`` may name."""


@dataclass
class AudioFeaturesConfig:
    """Per-frame audio features: which ASR backend, how it is windowed and chunked."""

    backend: str = "offline"
    """'offline' (pocketsphinx phones + normalised MFCC, no download), 'wav2vec2' (CTC logits) or 'hubert' (hidden states)."""
    wav2vec2_checkpoint: str = "cpierse/wav2vec2-large-xlsr-53-esperanto"
    """Hub id or local folder of a CTC model for backend=wav2vec2 (RAD-NeRF's esperanto model: 44 logits)."""
    hubert_checkpoint: str = "facebook/hubert-large-ls960-ft"
    """Hub id or local folder of a HuBERT-like encoder for backend=hubert (ER-NeRF's: 1024-d)."""
    hubert_layer: int = -1
    """Hidden layer whose states are the hubert features; -1 is the last (ER-NeRF's choice)."""
    window: int = 16
    """Feature frames (50 Hz) in the window of one video frame, centred on the frame time; even."""
    fps: int = 25
    """Video frame rate the windows are centred on; must divide 50."""
    chunk_seconds: float = 10.0
    """Audio processed per model call when extracting a whole file (bounds memory on long files)."""
    context_seconds: float = 0.5
    """Audio before each chunk given to the model as context and then dropped."""
    lookahead_seconds: float = 0.2
    """Audio after each chunk given to the model as context: the streaming look-ahead beyond the window."""
    workers: int = 2
    """Processes computing chunks at once in whole-file extraction (offline backend; torch uses its own threads)."""
    stream_chunk_seconds: float = 0.2
    """Chunk of the streaming extractor; its latency is about window/100 + this + lookahead_seconds."""
    device: str = "auto"
    """Torch device of the transformers backends: 'auto', 'cpu' or 'cuda'."""
    dtype: str = "auto"
    """Weights and activations of the transformers backends: 'auto' (float16 on CUDA, float32 on CPU), 'float32', 'bfloat16' or 'float16'."""
    phone_beam: float = 1e-48
    """Viterbi beam of the offline backend's pocketsphinx phone decoder (wider is slower)."""

    def __post_init__(self) -> None:
        check_choice("audio_features.backend", self.backend, AUDIO_BACKENDS)
        check_choice("audio_features.device", self.device, ("auto", "cpu", "cuda"))
        check_choice("audio_features.dtype", self.dtype, ("auto", "float32", "bfloat16", "float16"))


@dataclass
class GridConfig:
    """A multiresolution hash grid (tiny-cuda-nn semantics)."""

    num_levels: int = 16
    """Number of resolution levels."""
    level_dim: int = 2
    """Features per level."""
    base_resolution: int = 16
    """Resolution of the coarsest level."""
    desired_resolution: int = 2048
    """Resolution of the finest level (multiplied by the bound for the spatial grid)."""
    log2_hashmap_size: int = 16
    """log2 of the table size per level; levels that fit are stored densely."""
    grid_type: str = "hash"
    """'hash' (tiny-cuda-nn's HashGrid, runs on tcnn), 'tiled' (RAD-NeRF's tiledgrid: torch-ngp indexing, no
    hashing; it stops adding dimensions once a level's row-major stride outgrows the table, so its fine 3D
    levels ignore the third axis) or 'hash_ngp' (torch-ngp's hash). Load RAD-NeRF checkpoints with 'tiled'."""
    per_level_scale: Optional[float] = None
    """Growth factor between levels; null derives it from desired_resolution as exp2(log2(desired/base)/(L-1))."""

    def __post_init__(self) -> None:
        check_choice("grid_type", self.grid_type, ("hash", "tiled", "hash_ngp"))


BACKBONES = ("decomposed", "implicit", "composed", "deform")
"""How the head combines space and audio (``model.backbone``, the paper's ablations)."""


@dataclass
class ModelConfig:
    """Head and torso networks (paper, Section 3.2 and Appendix A.2; RAD-NeRF's ``nerf/network.py``)."""

    backbone: str = "decomposed"
    """'decomposed' (3D spatial grid + 2D audio grid on a learned audio coordinate: the paper), 'implicit'
    (AD-NeRF-style MLP on positional encoding + audio code), 'composed' (one 5D grid over xyz + audio
    coordinate) or 'deform' (the audio moves points instead of modulating features)."""
    audio: bool = True
    """Condition the head on audio at all; false is the no-audio baseline (a static head, eyes still move)."""
    encoding: str = "auto"
    """Grid backend: 'tcnn' (tiny-cuda-nn, CUDA), 'torch' (ours) or 'auto' (tcnn if it imports with CUDA)."""
    bound: float = 1.0
    """Half side of the head's bounding cube in the normalised space."""
    pose_scale: float = 4.0
    """Scale from tracked camera positions to the normalised space (RAD-NeRF --scale)."""
    pose_offset: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    """Offset added after scaling (RAD-NeRF --offset)."""
    spatial_grid: GridConfig = field(default_factory=GridConfig)
    """3D spatial hash grid."""
    audio_grid: GridConfig = field(default_factory=GridConfig)
    """2D grid addressed by the learned audio coordinate."""
    torso_grid: GridConfig = field(default_factory=GridConfig)
    """2D grid of the pseudo-3D deformable torso."""
    audio_dim: int = 64
    """Dimension of the audio condition code (output of the audio net)."""
    audio_window: int = 16
    """Feature frames in the audio window of one video frame."""
    attention_window: int = 8
    """Video frames smoothed by the audio attention module ([i-4, i+4), zero-padded); 1 turns it off."""
    ambient_dim: int = 2
    """Dimension of the learned audio coordinate (the paper's 2D; 1 or 3 for the ablation)."""
    ambient_layers: int = 3
    """Layers of the MLP that maps spatial features + audio code to the audio coordinate."""
    hidden_dim: int = 64
    """Width of the ambient, density and colour MLPs."""
    geo_feat_dim: int = 64
    """Geometry features the density MLP passes to the colour MLP."""
    density_layers: int = 3
    """Layers of the density MLP."""
    color_layers: int = 2
    """Layers of the colour MLP."""
    eye_feature: bool = True
    """Condition on the 1-D eye-area ratio for blink control."""
    appearance_dim: int = 4
    """Per-frame latent appearance code (RAD-NeRF's individual code); 0 turns it off."""
    appearance_at_test: str = "first"
    """Appearance code used for frames not trained on: 'first' (RAD-NeRF: frame 0's) or 'mean'."""
    implicit_layers: int = 8
    """Layers of the implicit backbone's MLP (AD-NeRF: 8)."""
    implicit_width: int = 256
    """Width of the implicit backbone's MLP (AD-NeRF: 256)."""
    implicit_frequencies: int = 10
    """Positional-encoding octaves of the implicit backbone (AD-NeRF: 10)."""
    deform_scale: float = 0.1
    """Largest audio-driven offset of the deform backbone, as a share of the bound."""
    composed_log2_hashmap_size: int = 19
    """log2 table size per level of the composed backbone's 5D hash grid."""

    def __post_init__(self) -> None:
        check_choice("model.backbone", self.backbone, BACKBONES)
        check_choice("model.encoding", self.encoding, ("auto", "tcnn", "torch"))
        check_choice("model.appearance_at_test", self.appearance_at_test, ("first", "mean"))
        for key in ("ambient_dim", "attention_window", "audio_dim", "hidden_dim", "geo_feat_dim"):
            check_at_least(f"model.{key}", getattr(self, key), 1)
        for key in ("ambient_layers", "density_layers", "color_layers", "implicit_layers"):
            check_at_least(f"model.{key}", getattr(self, key), 1)
        check_at_least("model.appearance_dim", self.appearance_dim, 0)
        if self.ambient_dim > 3:
            from radnerf.errors import ConfigError

            raise ConfigError(f"model.ambient_dim={self.ambient_dim} is not supported", hint="use 1, 2 or 3")


@dataclass
class TrainConfig:
    """Optimisation of the head, the lips and the torso (paper, Section 4.1; RAD-NeRF's ``main.py``)."""

    head_iters: int = 200000
    """Steps of head training."""
    lips_iters: int = 50000
    """Steps of lip fine-tuning with LPIPS on lip patches."""
    lips_loss: str = "lpips"
    """Loss on the lip patches: 'lpips' (the paper's: MSE + lambda_lpips x LPIPS-Alex, needs
    `radnerf weights fetch alexnet`) or 'mse' (offline: MSE alone)."""
    torso_iters: int = 200000
    """Steps of torso training."""
    torso_target: str = "torso"
    """What the torso learns to reproduce: 'torso' (the paper's, Appendix A: the neck in-painted torso image over
    bc.jpg, the head playing no part) or 'frame' (the ground-truth frame behind the frozen head's render: the
    composite's own error, but the torso hidden behind the head is left unconstrained)."""
    num_rays: int = 65536
    """Rays per step (all from one frame)."""
    lr_grid: float = 5e-3
    """Initial learning rate of the feature grids (RAD-NeRF --lr)."""
    lr_net: float = 5e-4
    """Initial learning rate of the MLPs, the audio net and the appearance codes (RAD-NeRF --lr_net)."""
    lr_attention_scale: float = 5.0
    """The audio attention module learns this many times faster than the other MLPs (RAD-NeRF: 5)."""
    lr_final_ratio: float = 0.1
    """Final learning rate as a fraction of the initial one (exponential decay)."""
    ema_decay: float = 0.95
    """Exponential moving average of the weights, per step; the average is what validation and export use."""
    lambda_entropy: float = 1e-4
    """Weight of the binary entropy of each ray's opacity and of each torso pixel's alpha (pushes them to 0 or 1)."""
    lambda_ambient: float = 0.1
    """Weight of the L1 on the audio coordinate of rays outside the face box (paper Eq. 6)."""
    ambient_ramp: float = 1.0
    """Share of the run over which that weight grows linearly from 0 (RAD-NeRF: the whole run; 0: full weight at once)."""
    lambda_lpips: float = 0.01
    """Weight of the LPIPS loss during lip fine-tuning."""
    checkpoint_every: int = 5000
    """Steps between resumable checkpoints (one is always written at the end)."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept; older ones are deleted."""
    val_every: int = 10000
    """Steps between validation renders of a few val frames (PNG, ground truth beside the render); 0: only at the end."""
    val_frames: int = 2
    """Val frames rendered at each intermediate validation (the final one renders every val frame)."""
    amp: bool = True
    """Mixed precision: float16 autocast with loss scaling on CUDA; on a CPU with bfloat16 matrix units
    (AMX, AVX512-BF16) the MLPs multiply in bfloat16 (weights and everything else float32); float32 elsewhere."""
    image_cache_gb: float = 2.0
    """Decoded frames kept in memory (uint8); beyond it frames are decoded from disk when drawn."""
    max_loss: float = 1.0
    """A step whose loss is NaN or above this stops training as diverged (MSE of [0, 1] colours is at most 1)."""
    device: str = "auto"
    """'auto', 'cpu' or 'cuda'."""

    def __post_init__(self) -> None:
        check_choice("train.device", self.device, ("auto", "cpu", "cuda"))
        check_choice("train.lips_loss", self.lips_loss, ("lpips", "mse"))
        check_choice("train.torso_target", self.torso_target, ("torso", "frame"))
        for key in ("head_iters", "lips_iters", "torso_iters", "num_rays", "checkpoint_every", "keep_checkpoints"):
            check_at_least(f"train.{key}", getattr(self, key), 1)
        for key in ("val_every", "val_frames", "lambda_entropy", "lambda_ambient", "ambient_ramp", "image_cache_gb"):
            check_at_least(f"train.{key}", getattr(self, key), 0)
        for key in ("lr_grid", "lr_net", "lr_final_ratio", "ema_decay"):
            if not getattr(self, key) > 0:
                from radnerf.errors import ConfigError

                raise ConfigError(f"train.{key}={getattr(self, key)!r} must be positive")
        if self.ema_decay >= 1:
            from radnerf.errors import ConfigError

            raise ConfigError(f"train.ema_decay={self.ema_decay!r} must be below 1")


@dataclass
class EvalConfig:
    """Evaluation metrics (paper, Section 4)."""

    metrics: list[str] = field(default_factory=lambda: ["psnr", "lpips", "lmd", "sync"])
    """Metrics to compute ('lpips' and 'sync' need weights: reported as unavailable without them)."""
    lpips_net: str = "alex"
    """LPIPS backbone."""
    landmarks: str = "auto"
    """Landmark backend of LMD and mouth opening, the same for every row: 'auto' (FAN when its weights are
    present, as the papers use; dlib otherwise), 'fan', 'dlib' or 'mediapipe'."""
    audio: list[str] = field(default_factory=list)
    """Speech files the model is made to say for the cross-driven rows (``audio=`` adds one more)."""

    def __post_init__(self) -> None:
        check_choice("eval.landmarks", self.landmarks, ("auto", "fan", "dlib", "mediapipe"))
        check_choice("eval.lpips_net", self.lpips_net, ("alex",))
        for metric in self.metrics:
            check_choice("eval.metrics", metric, ("psnr", "lpips", "lmd", "sync"))


@dataclass
class RenderConfig:
    """Ray marching and volume rendering."""

    max_steps: int = 16
    """Samples per ray in occupied space (the paper's ablation: 8 / 16 / 32)."""
    grid_size: int = 128
    """Side of the maximum occupancy grid."""
    density_thresh: float = 10.0
    """Occupancy threshold on density."""
    min_transmittance: float = 1e-4
    """Stop marching a ray when its transmittance falls below this."""
    dt_gamma: float = 0.00390625
    """Step growth with distance: dt = clamp(t * dt_gamma, 2*sqrt(3)/max_steps, 2*sqrt(3)/grid_size) (RAD-NeRF 1/256)."""
    min_near: float = 0.05
    """Rays start at least this far from the camera (RAD-NeRF --min_near)."""
    steps_per_round: int = 4
    """Inference: samples per ray evaluated between early-termination checks."""
    march_chunk: int = 8
    """Candidate points tested per ray per marching round (speed only)."""
    grid_decay: float = 0.95
    """Each occupancy update keeps max(old * grid_decay, new)."""
    grid_update_interval: int = 16
    """Training steps between occupancy updates (none during lip fine-tuning)."""
    grid_conditions: int = 1
    """Random audio conditions probed per occupancy update (RAD-NeRF: 1)."""
    fps: int = 25
    """Frame rate of rendered videos."""
    amp: bool = True
    """Render with the MLPs multiplying in bfloat16 on a CPU with bfloat16 matrix units (speed only; as ``train.amp``)."""
    smooth_audio: bool = True
    """Keep 0.35 of the previous frame's audio code at test time (paper A.2); false: each frame's own."""
    png: bool = False
    """``radnerf render``: also write every frame as a PNG, ``<video name>_frames/<k>.png`` beside the video."""
    realtime: bool = True
    """``radnerf stream``: feed a file at its own pace, as a live source (false: as fast as it renders)."""
    stream_chunk_ms: int = 40
    """``radnerf stream``: milliseconds of audio per chunk that arrives (a microphone's block)."""
    mic_seconds: float = 10.0
    """``radnerf stream audio=mic``: how long to listen."""
    torso: str = "auto"
    """What is under the head in a rendered video: 'model' (the trained torso, ``radnerf train-torso``),
    'clip' (the torso images of the clip frame whose pose is used, as the head trained on) or 'auto'
    (the model when there is one)."""
    preview_text: str = (
        "Now I can say things I never heard before, like this sentence, rendered from the sound alone."
    )
    """``radnerf preview``: what the trained person says in its preview video (eSpeak NG speech, offline): words
    that are not in its training audio."""

    def __post_init__(self) -> None:
        # Zero here would divide by zero or loop forever deep in the marcher.
        positive = ("max_steps", "steps_per_round", "march_chunk", "grid_update_interval", "grid_conditions", "fps",
                    "stream_chunk_ms")
        for key in positive:
            check_at_least(f"render.{key}", getattr(self, key), 1)
        check_at_least("render.grid_size", self.grid_size, 2)
        check_choice("render.torso", self.torso, ("auto", "model", "clip"))
        from radnerf.errors import ConfigError

        if not 0.0 <= self.min_transmittance < 1.0:  # 0: no early termination
            raise ConfigError(f"render.min_transmittance={self.min_transmittance!r} must lie in [0, 1)")
        if not 0.0 <= self.grid_decay <= 1.0:
            raise ConfigError(f"render.grid_decay={self.grid_decay!r} must lie in [0, 1]")


@dataclass
class MlflowConfig:
    """Experiment tracking."""

    tracking_uri: Optional[str] = None
    """MLflow store; null means ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db`` here."""
    experiment: str = "radnerf"
    """Experiment name runs are filed under."""
    enabled: bool = True
    """Log runs at all."""


@dataclass
class RegistryConfig:
    """The MLflow model registry: each person's model package as a registered model with a ``champion``."""

    enabled: bool = True
    """Register the package of a person flow that built one and evaluated it (needs ``mlflow.enabled``)."""
    name: Optional[str] = None
    """Registered model name; null: ``radnerf-<person>``."""
    alias: str = "champion"
    """The alias that points at the best version so far: what a serving system loads (``models:/NAME@champion``)."""
    compare_on: list[str] = field(default_factory=lambda: ["psnr:max", "lmd:min"])
    """Evaluation metrics (``<name>:max`` or ``<name>:min``) a new version must match on all and beat on one
    to take the alias; the first version takes it when it has them all."""

    def __post_init__(self) -> None:
        from radnerf.errors import ConfigError

        for item in self.compare_on:
            name, _, goal = str(item).partition(":")
            if not name or goal not in ("max", "min"):
                raise ConfigError(f"registry.compare_on: {item!r} is not <metric>:max or <metric>:min",
                                  hint="e.g. registry.compare_on=[psnr:max,lmd:min] (the evaluation's metrics: psnr, psnr_lips, lmd ...)")


@dataclass
class DemoConfig:
    """The embedded sample the demo builds when no video is given."""

    size: int = 256
    """Side in pixels of the generated clip."""
    text: str = (
        "Hello. This is the radnerf demo. A portrait speaks these words, "
        "so every stage of the pipeline has a face and a voice to work on."
    )
    """What the generated speaker says (English, espeak-ng)."""
    seed: int = 0
    """Seed of the head motion and blinks."""


@dataclass
class RadNerfConfig:
    """Root config: what every stage receives."""

    person: Optional[str] = None
    """Name of the person; outputs go to ``<paths.artifacts>/<person>/``."""
    video: Optional[str] = None
    """Source video of the person (any container ffmpeg reads)."""
    audio: Optional[str] = None
    """Separate audio file, for a video without an audio track (or to replace it)."""
    pose: str = "clip"
    """``radnerf render``: head poses 'clip' (looped, smoothed), 'still', or a pose file (.npy [K, 4, 4] / transforms json)."""
    eyes: str = "clip"
    """``radnerf render``: eye ratios 'clip', 'open', 'auto' (open with blinks) or a file of ratios, one per frame."""
    bg: str = "clip"
    """``radnerf render``: background 'clip' (bc.jpg), a colour (white, black, gray, green, blue, #rrggbb) or an image."""
    package: Optional[str] = None
    """``radnerf render``: a model package (the folder or ``.zip`` ``radnerf package`` writes) to render instead
    of a person's artifacts; the CLI also takes it as ``model=PATH``."""
    out: Optional[str] = None
    """``radnerf render``: the video's path (default ``<person>/renders/<audio name>.mp4``; from a package,
    ``renders/<person>/<audio name>.mp4`` in the working folder)."""
    overwrite: bool = False
    """Replace a person's outputs made from a different source."""
    seed: int = 0
    """Global random seed."""
    preset: str = "default"
    """Name of the preset that was applied (set by ``conf/preset/*.yaml``)."""
    paths: PathsConfig = field(default_factory=PathsConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    audio_features: AudioFeaturesConfig = field(default_factory=AudioFeaturesConfig)
    """Audio features: backend (offline | wav2vec2 | hubert), windows, chunks, streaming."""
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)

    def __post_init__(self) -> None:
        # One value per setting: conf/ derives the copies by interpolation
        # (${ingest.fps}); a copy set on its own would silently misalign frames,
        # audio windows and rendered video.
        from radnerf.errors import ConfigError

        for key, value, source in tied_settings(self):
            if value != source[1]:
                raise ConfigError(
                    f"{key}={value!r} differs from {source[0]}={source[1]!r}; they must agree",
                    hint=f"set {source[0]} only: {key} follows it",
                )


def tied_settings(cfg: RadNerfConfig) -> list[tuple[str, Any, tuple[str, Any]]]:
    """``(key, value, (source key, source value))`` of each setting that copies another."""
    return [
        ("audio_features.fps", cfg.audio_features.fps, ("ingest.fps", cfg.ingest.fps)),
        ("render.fps", cfg.render.fps, ("ingest.fps", cfg.ingest.fps)),
        ("model.audio_window", cfg.model.audio_window, ("audio_features.window", cfg.audio_features.window)),
    ]


_GROUPS: dict[str, type] = {
    "paths": PathsConfig,
    "ingest": IngestConfig,
    "preprocess": PreprocessConfig,
    "track": TrackConfig,
    "audio_features": AudioFeaturesConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "render": RenderConfig,
    "mlflow": MlflowConfig,
    "demo": DemoConfig,
}


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent).

    ``conf/config.yaml`` lists ``radnerf_schema`` first in its defaults, and each
    group's YAML lists ``<group>_schema``, so composition validates against them.
    """
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="radnerf_schema", node=RadNerfConfig)
    for group, schema in _GROUPS.items():
        cs.store(group=group, name=f"{group}_schema", node=schema)


def to_container(cfg: Any) -> dict:
    """A plain, resolved ``dict`` of a config (for Prefect parameters and MLflow)."""
    import dataclasses

    from omegaconf import OmegaConf

    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``, as MLflow params want them."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def conf_dir() -> Path:
    """The ``conf/`` folder: ``$RADNERF_CONF_DIR``, else the one beside the package."""
    import os

    from radnerf.errors import ConfigError

    env = os.environ.get("RADNERF_CONF_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1] / "conf")
    for c in candidates:
        if (c / "config.yaml").is_file():
            return c
    raise ConfigError(
        f"no conf/config.yaml found (looked in {', '.join(str(c) for c in candidates)})",
        hint="run from a clone installed with `pip install -e .`, or set RADNERF_CONF_DIR",
    )


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys: list[str] = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            full = f"{prefix}{k}"
            keys.append(full)
            keys.extend(_all_keys(node._get_node(k), full + "."))
    return keys


def _explain(exc: BaseException, overrides: list[str]) -> str:
    """One readable sentence for a Hydra/OmegaConf composition failure."""
    import difflib
    import re

    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        text += "\n" + str(cause)
    key = None
    m = re.search(r"full_key: (\S+)", text)
    if m:
        key = m.group(1)
    if "not in struct" in text or re.search(r"Key '[^']+' not in '", text) or "Could not override" in text:
        m2 = re.search(r"Could not override '([^']+)'", text)
        bad = key or (m2.group(1) if m2 else None)
        if bad is None:
            m3 = re.search(r"Key '([^']+)'", text)
            bad = m3.group(1) if m3 else "?"
        from omegaconf import OmegaConf

        known = _all_keys(OmegaConf.structured(RadNerfConfig))
        close = difflib.get_close_matches(bad, known, n=1, cutoff=0.6)
        suggestion = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown config key '{bad}'{suggestion}"
    m = re.search(r"Value '([^']*)' of type '[^']+' could not be converted to (\w+)", text) or re.search(
        r"Value '([^']*)' is not a valid (\w+)", text
    )
    if m or "ValidationError" in type(exc).__name__ or "Error merging override" in text:
        where = f" for '{key}'" if key else ""
        if m:
            return f"bad value{where}: '{m.group(1)}' is not a valid {m.group(2).lower()}"
        return f"bad value{where}: {text.strip().splitlines()[-1].strip()}"
    m = re.search(r"Could not find '([^']+)'", text)
    if m:
        group = m.group(1).split("/")[0]
        opts = re.findall(r"^\s+(\S+)$", text, flags=re.M)
        avail = f" (available: {', '.join(opts)})" if opts else ""
        return f"no option '{m.group(1)}' in config group '{group}'{avail}"
    if "mismatched input" in text or "no viable alternative" in text or "extraneous input" in text:
        return f"cannot parse overrides {overrides}: {text.strip().splitlines()[0]}"
    return text.strip().splitlines()[0]


def load_config(overrides: list[str] | tuple[str, ...] = ()) -> RadNerfConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides into a typed :class:`RadNerfConfig`.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, a missing group
            option or an unparsable override, with a one-line explanation.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from radnerf.errors import ConfigError

    register_configs()
    overrides = list(overrides)
    for ov in overrides:
        if ov.startswith("+") or ov.startswith("~"):
            raise ConfigError(
                f"override {ov!r} adds or deletes a key; radnerf's config has a fixed schema",
                hint="set an existing key with key=value; `radnerf config` lists them",
            )
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="radnerf"):
            cfg = compose(config_name="config", overrides=overrides)
        obj = OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise ConfigError(_explain(e, overrides), hint="`radnerf config` prints every key and its value") from None
    assert isinstance(obj, RadNerfConfig)
    return obj


def load_config_file(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RadNerfConfig:
    """A whole config read from ``path`` (what ``radnerf config`` prints, e.g. DVC's ``params.yaml``), then
    ``overrides`` set on it: ``radnerf <stage> --config FILE key=value ...``.

    The file was composed already, so a config group choice (``preset=paper``, ``model=...``) cannot apply
    to it; overrides set keys only (``person=alice``).

    Raises:
        ConfigError: the file is missing or holds an unknown key or a value of the wrong type; an override
            picks a config group, adds or deletes a key, or is unparsable.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from radnerf.errors import ConfigError

    path, overrides = Path(path), list(overrides)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist",
                          hint="`radnerf config [key=value ...] > FILE` writes one; `radnerf dvc-yaml` writes params.yaml")
    groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(RadNerfConfig), OmegaConf.load(path))
        for ov in OverridesParser.create().parse_overrides(overrides):
            key = ov.key_or_group
            if key in groups or ov.is_add() or ov.is_delete() or ov.is_sweep_override():
                raise ConfigError(
                    f"override {ov.input_line!r} needs composition, but {path} is a composed config",
                    hint="set keys only (key=value); pick groups when composing it (DVC: `dvc exp run -S preset=...`)",
                )
            OmegaConf.update(cfg, key, ov.value(), merge=False)
        obj = OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise ConfigError(f"{path}: {_explain(e, overrides)}",
                          hint="`radnerf config` prints every key and its value") from None
    assert isinstance(obj, RadNerfConfig)
    return obj


def config_from_dict(data: dict) -> RadNerfConfig:
    """Rebuild a typed config from :func:`to_container`'s plain dict (Prefect tasks get dicts)."""
    from omegaconf import OmegaConf

    obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RadNerfConfig), data))
    assert isinstance(obj, RadNerfConfig)
    return obj
