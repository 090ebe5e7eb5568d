"""The transformers backends: CTC logits (wav2vec2 and kin) and encoder hidden states (HuBERT).

Checkpoints are hub ids or local folders. Hub ids are looked up in the local
Hugging Face cache only, never downloaded here: a missing one is a
:class:`MissingWeightsError` that names the ``radnerf weights fetch`` command.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from radnerf import weights
from radnerf.audio.windows import HOP
from radnerf.devices import resolve_device
from radnerf.errors import ConfigError, MissingWeightsError

log = logging.getLogger(__name__)

WEIGHT_NAMES = {s.repo_id: s.name for s in weights.REGISTRY.values() if s.repo_id}
"""Hub ids the weights manager knows, by its names (``radnerf weights fetch NAME``)."""


def resolve_checkpoint(checkpoint: str, backend: str, weights_dir: str | None = None) -> Path:
    """The local folder of ``checkpoint`` (a folder, or a hub id already in the cache).

    A hub id the weights manager knows is looked up in ``weights_dir`` (``paths.weights``;
    None: ``$RADNERF_WEIGHTS`` or the default cache) first, then in the Hugging Face cache.

    Raises:
        MissingWeightsError: neither a folder nor a downloaded hub model.
    """
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return path
    name = WEIGHT_NAMES.get(checkpoint)
    if name is not None:
        # Fetched or imported through the weights manager (its folder, or the HF cache).
        local = weights.local_path(name, weights_dir)
        if local is not None:
            return local
    where = f" paths.weights={weights_dir}" if weights_dir else ""
    fetch = f"run `radnerf weights fetch {name}{where}`" if name else f"download {checkpoint} into a folder and pass that folder"
    hint = f"{fetch}, or use audio_features.backend=offline, which needs no download"
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(checkpoint, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError) as e:
        log.debug("looking up %s in the hub cache: %s", checkpoint, e)
        raise MissingWeightsError(
            f"the {backend} checkpoint {checkpoint!r} is not a folder and is not downloaded", hint=hint
        ) from None


def torch_dtype(dtype: str, device: str):
    """The torch dtype for ``audio_features.dtype``; 'auto' is float16 on CUDA, float32 on CPU."""
    import torch

    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def _conv_geometry(config) -> tuple[int, int]:
    """(receptive field, stride) in samples of the model's convolutional feature encoder."""
    field, stride = 1, 1
    for k, s in zip(config.conv_kernel, config.conv_stride):
        field += (k - 1) * stride
        stride *= s
    return field, stride


def _load_config(folder: Path, checkpoint: str, backend: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{checkpoint!r} is not a transformers checkpoint for backend={backend}: {e}",
            hint="pass a folder holding config.json and the model weights",
        ) from None


class _TransformersBackend:
    """Shared input handling: per-chunk normalisation and padding onto the 50 Hz clock."""

    def __init__(self, checkpoint: str, backend: str, device: str, dtype: str = "auto", weights_dir: str | None = None):
        self.checkpoint = checkpoint
        self.folder = resolve_checkpoint(checkpoint, backend, weights_dir)
        self.config = _load_config(self.folder, checkpoint, backend)
        if not hasattr(self.config, "conv_kernel"):
            raise ConfigError(
                f"{checkpoint!r} is a {self.config.model_type} model, not a wav2vec2-style speech encoder",
                hint=f"backend={backend} needs a wav2vec2 / HuBERT / XLS-R checkpoint",
            )
        field, stride = _conv_geometry(self.config)
        if stride != HOP:
            raise ConfigError(f"{checkpoint!r} makes a frame every {stride} samples, not every {HOP} (50 Hz)")
        # Centre output frame k on (k + 0.5) * 20 ms: frame j of the padded input
        # reads samples [320 j, 320 j + field), whose centre moves back by pad.
        self.pad_left = (field - HOP) // 2
        self.pad_right = field - HOP - self.pad_left
        self.do_normalize = self._reads_normalize()
        self.device = resolve_device(device, "audio_features.device")
        self.dtype = torch_dtype(dtype, self.device)

    def _reads_normalize(self) -> bool:
        import json

        pre = self.folder / "preprocessor_config.json"
        if pre.exists():
            return bool(json.loads(pre.read_text()).get("do_normalize", True))
        # Both reference checkpoints normalise; a folder without the file is ours.
        return True

    def _inputs(self, audio: np.ndarray):
        import torch

        x = np.asarray(audio, np.float64)
        if self.do_normalize:
            # Wav2Vec2FeatureExtractor's zero-mean unit-variance, over the chunk.
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        x = np.pad(x, (self.pad_left, self.pad_right))
        return torch.from_numpy(x.astype(np.float32))[None].to(self.device, self.dtype)

    def _check_frames(self, out: np.ndarray, m: int) -> np.ndarray:
        if out.shape[0] != m:
            raise RuntimeError(f"{self.checkpoint} gave {out.shape[0]} frames for {m} x 20 ms of audio")
        return out.astype(np.float32)


class CtcLogitsBackend(_TransformersBackend):
    """CTC logits of a ``*ForCTC`` checkpoint, ``[M, vocab]`` (44 for RAD-NeRF's esperanto model)."""

    def __init__(self, checkpoint: str, device: str = "auto", dtype: str = "auto", weights_dir: str | None = None):
        super().__init__(checkpoint, "wav2vec2", device, dtype, weights_dir)
        archs = list(getattr(self.config, "architectures", None) or [])
        if not any(a.endswith("ForCTC") for a in archs):
            raise ConfigError(
                f"{checkpoint!r} is not a CTC model (architectures: {archs or 'not stated'}); "
                "backend=wav2vec2 uses the CTC logits",
                hint="pass a *ForCTC checkpoint, or use audio_features.backend=hubert for encoder hidden states",
            )
        from transformers import AutoModelForCTC

        self.model = AutoModelForCTC.from_pretrained(self.folder, local_files_only=True, dtype=self.dtype)
        self.model = self.model.eval().to(self.device)
        self.dim = int(self.config.vocab_size)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.model(self._inputs(audio)).logits[0]
        return self._check_frames(logits.float().cpu().numpy(), len(audio) // HOP)


class HiddenStatesBackend(_TransformersBackend):
    """Hidden states of a HuBERT-style encoder, ``[M, hidden]`` (1024 for hubert-large)."""

    def __init__(
        self, checkpoint: str, layer: int = -1, device: str = "auto", dtype: str = "auto", weights_dir: str | None = None
    ):
        super().__init__(checkpoint, "hubert", device, dtype, weights_dir)
        from transformers import AutoModel

        # AutoModel drops a CTC head if the checkpoint has one (hubert-large-ls960-ft does).
        self.model = AutoModel.from_pretrained(self.folder, local_files_only=True, dtype=self.dtype)
        self.model = self.model.eval().to(self.device)
        n = int(self.config.num_hidden_layers)
        if not -(n + 1) <= layer <= n:
            raise ConfigError(f"audio_features.hubert_layer={layer} but {checkpoint!r} has {n} layers")
        self.layer = layer
        self.dim = int(self.config.hidden_size)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            if self.layer == -1:
                states = self.model(self._inputs(audio)).last_hidden_state[0]
            else:
                states = self.model(self._inputs(audio), output_hidden_states=True).hidden_states[self.layer][0]
        return self._check_frames(states.float().cpu().numpy(), len(audio) // HOP)
