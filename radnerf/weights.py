"""Registry of every external model file the pipeline can use.

Each entry says where the file comes from, where it is cached (the place its
own library looks: ``$TORCH_HOME`` for torch-hub files, ``$HF_HOME`` for
Hugging Face checkpoints, ``$RADNERF_WEIGHTS`` for the rest), how to check it
and which offline backend avoids it. Stages call :func:`require` and get a
path or a :class:`MissingWeightsError` that names the file, the command that
fetches it and the offline alternative.

``radnerf weights list | fetch NAME... | import PATH [--name NAME] | verify``
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from radnerf.errors import ConfigError, MissingWeightsError
from radnerf.stage_io import atomic_file, sha256_file


@dataclass(frozen=True)
class WeightSpec:
    """One external model."""

    name: str
    """Short name used on the command line (``radnerf weights fetch fan``)."""
    description: str
    used_by: str
    """The stage and backend that need it."""
    offline_alternative: str
    """The config override that avoids it."""
    licence: str
    location: str
    """'torch_hub' ($TORCH_HOME/hub/checkpoints), 'radnerf' ($RADNERF_WEIGHTS) or 'hf' (Hugging Face)."""
    filename: Optional[str] = None
    url: Optional[str] = None
    sha256_prefix: Optional[str] = None
    """Leading hex digits of the sha256, as torch.hub names its files; None when unknown."""
    repo_id: Optional[str] = None
    """Hugging Face model id, for location='hf'."""


REGISTRY: dict[str, WeightSpec] = {
    s.name: s
    for s in [
        WeightSpec(
            name="fan",
            description="2D-FAN-4 68-point face landmarks (face-alignment)",
            used_by="landmarks (preprocess.landmarks=fan)",
            offline_alternative="preprocess.landmarks=dlib",
            licence="BSD-3-Clause code (face-alignment); check the training data's terms",
            location="torch_hub",
            filename="2DFAN4-11f355bf06.pth.tar",
            url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
            sha256_prefix="11f355bf06",
        ),
        WeightSpec(
            name="s3fd",
            description="S3FD face detector used by face-alignment",
            used_by="landmarks (preprocess.landmarks=fan)",
            offline_alternative="preprocess.landmarks=dlib",
            licence="BSD-3-Clause code (face-alignment)",
            location="torch_hub",
            filename="s3fd-619a316812.pth",
            url="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
            sha256_prefix="619a316812",
        ),
        WeightSpec(
            name="bisenet",
            description="BiSeNet 19-class face parsing (facexlib, CelebAMask-HQ)",
            used_by="parse (preprocess.parsing=bisenet)",
            offline_alternative="preprocess.parsing=offline",
            licence="MIT code (facexlib); CelebAMask-HQ is for non-commercial research",
            location="radnerf",
            filename="parsing_bisenet.pth",
            url="https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth",
        ),
        WeightSpec(
            name="alexnet",
            description="AlexNet ImageNet backbone of the LPIPS metric and loss",
            used_by="finetune-lips and evaluate (LPIPS)",
            offline_alternative="eval.metrics without lpips",
            licence="BSD-3-Clause (torchvision)",
            location="torch_hub",
            filename="alexnet-owt-7be5be79.pth",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            sha256_prefix="7be5be79",
        ),
        WeightSpec(
            name="wav2vec2-esperanto",
            description="wav2vec2 XLSR-53 fine-tuned on Esperanto, CTC logits (RAD-NeRF's aud_eo.npy)",
            used_by="audio (audio_features.backend=wav2vec2)",
            offline_alternative="audio_features.backend=offline",
            licence="Apache-2.0",
            location="hf",
            repo_id="cpierse/wav2vec2-large-xlsr-53-esperanto",
        ),
        WeightSpec(
            name="hubert-large",
            description="HuBERT large fine-tuned on LibriSpeech 960 h, hidden states (ER-NeRF's aud_hu.npy)",
            used_by="audio (audio_features.backend=hubert)",
            offline_alternative="audio_features.backend=offline",
            licence="Apache-2.0",
            location="hf",
            repo_id="facebook/hubert-large-ls960-ft",
        ),
        WeightSpec(
            name="syncnet",
            description="SyncNet v2 audio-visual sync model (the Sync metric)",
            used_by="evaluate (sync)",
            offline_alternative="eval.metrics without sync",
            licence="MIT code (syncnet_python); model for research use",
            location="radnerf",
            filename="syncnet_v2.model",
            url="http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
        ),
    ]
}


def radnerf_cache(weights_dir: Optional[str] = None) -> Path:
    """``weights_dir`` (config), else ``$RADNERF_WEIGHTS``, else ``~/.cache/radnerf``."""
    base = weights_dir or os.environ.get("RADNERF_WEIGHTS") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "radnerf"
    )
    return Path(base).expanduser()


def torch_hub_checkpoints() -> Path:
    """Where ``torch.hub`` caches files, computed as torch does (without importing it)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch"
    )
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def spec(name: str) -> WeightSpec:
    """The registry entry ``name``, or a :class:`ConfigError` listing the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}", hint=f"known: {', '.join(REGISTRY)}"
        ) from None


def target_path(s: WeightSpec, weights_dir: Optional[str] = None) -> Path:
    """Where ``s`` lives once fetched or imported (a file, or a folder for 'hf')."""
    if s.location == "torch_hub":
        assert s.filename
        return torch_hub_checkpoints() / s.filename
    if s.location == "radnerf":
        assert s.filename
        return radnerf_cache(weights_dir) / s.filename
    return radnerf_cache(weights_dir) / "hf" / s.name


def _hf_cached(repo_id: str) -> Optional[Path]:
    """The snapshot folder of ``repo_id`` in the Hugging Face cache, if complete enough to load."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(found, str):
        return Path(found).parent
    return None


def local_path(name: str, weights_dir: Optional[str] = None) -> Optional[Path]:
    """Path of model ``name`` if present (our cache first, then the library's own), else None."""
    s = spec(name)
    p = target_path(s, weights_dir)
    if s.location == "hf":
        if (p / "config.json").is_file():
            return p
        assert s.repo_id
        return _hf_cached(s.repo_id)
    return p if p.is_file() and p.stat().st_size > 0 else None


def require(name: str, weights_dir: Optional[str] = None) -> Path:
    """Path of model ``name``, or :class:`MissingWeightsError` saying how to get it."""
    p = local_path(name, weights_dir)
    if p is not None:
        return p
    s = spec(name)
    where = target_path(s, weights_dir)
    raise MissingWeightsError(
        f"model '{name}' ({s.filename or s.repo_id}) is not in {where.parent}",
        hint=f"run `radnerf weights fetch {name}` (needs internet), or `radnerf weights import PATH "
        f"--name {name}` with a copy, or use the offline backend: {s.offline_alternative}",
    )


def verify(name: str, path: Path) -> Optional[bool]:
    """True/False when the file's sha256 matches the known prefix; None when none is known."""
    s = spec(name)
    if s.sha256_prefix is None or path.is_dir():
        return None
    return sha256_file(path).startswith(s.sha256_prefix)


def _download(url: str, dest: Path, timeout: float = 30.0) -> None:
    with atomic_file(dest) as tmp, urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
        shutil.copyfileobj(r, f, length=1 << 20)


def fetch(name: str, weights_dir: Optional[str] = None) -> Path:
    """Download model ``name`` into its cache and verify it.

    Raises:
        MissingWeightsError: the download failed (no internet, moved URL) or the
            file does not match its known hash.
    """
    s = spec(name)
    dest = target_path(s, weights_dir)
    manual = f"download it where you have internet and run `radnerf weights import PATH --name {name}`, or use {s.offline_alternative}"
    if s.location == "hf":
        assert s.repo_id
        try:
            from huggingface_hub import snapshot_download

            snapshot_download(repo_id=s.repo_id, local_dir=str(dest), etag_timeout=30)
        except Exception as e:  # network, auth and hub errors all mean the same to the user
            shutil.rmtree(dest, ignore_errors=True)
            raise MissingWeightsError(
                f"could not download {s.repo_id} from the Hugging Face Hub: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                hint=manual,
            ) from None
        return dest
    assert s.url
    try:
        _download(s.url, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        raise MissingWeightsError(f"could not download {s.url}: {reason}", hint=manual) from None
    if verify(name, dest) is False:
        dest.unlink(missing_ok=True)
        raise MissingWeightsError(
            f"{s.url} downloaded, but its sha256 does not start with {s.sha256_prefix}", hint=manual
        )
    return dest


def import_file(path: str | Path, name: Optional[str] = None, weights_dir: Optional[str] = None) -> tuple[str, Path]:
    """Copy a model obtained elsewhere into the cache, verified; returns ``(name, destination)``.

    Args:
        path: the file (or, for Hugging Face models, the folder saved with ``save_pretrained``).
        name: registry name; inferred from the file name when omitted.

    Raises:
        ConfigError: the name cannot be inferred or the path is of the wrong kind.
        MissingWeightsError: the file is missing or does not match its known hash.
    """
    src = Path(path).expanduser()
    if not src.exists():
        raise MissingWeightsError(f"{src} does not exist", hint="check the path")
    if name is None:
        matches = [s.name for s in REGISTRY.values() if s.filename and s.filename == src.name]
        if not matches:
            raise ConfigError(
                f"cannot tell which model {src.name} is", hint=f"add --name, one of {', '.join(REGISTRY)}"
            )
        name = matches[0]
    s = spec(name)
    dest = target_path(s, weights_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if s.location == "hf":
        if not (src.is_dir() and (src / "config.json").is_file()):
            raise ConfigError(
                f"{name} is a Hugging Face model: import the folder that holds its config.json",
                hint="e.g. the folder written by save_pretrained() or `huggingface-cli download`",
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=dest.parent))
        try:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return name, dest
    if src.is_dir():
        raise ConfigError(f"{src} is a folder; {name} is a single file ({s.filename})")
    ok = verify(name, src)
    if ok is False:
        raise MissingWeightsError(
            f"{src} is not {s.filename}: its sha256 does not start with {s.sha256_prefix}",
            hint="download it again from " + (s.url or "its source"),
        )
    with atomic_file(dest) as tmp:
        shutil.copyfile(src, tmp)
    return name, dest


def status(weights_dir: Optional[str] = None, names: Iterable[str] | None = None) -> list[dict]:
    """One row per model: name, present, path, size, used_by, offline alternative, licence."""
    rows = []
    for name in names or REGISTRY:
        s = spec(name)
        p = local_path(name, weights_dir)
        size = None
        if p is not None:
            size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        rows.append(
            {
                "name": name,
                "present": p is not None,
                "path": str(p or target_path(s, weights_dir)),
                "size_mb": round(size / 1e6, 1) if size is not None else None,
                "used_by": s.used_by,
                "offline": s.offline_alternative,
                "licence": s.licence,
                "description": s.description,
            }
        )
    return rows
