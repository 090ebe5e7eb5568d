"""Checkpoints: written atomically, read as untrusted input, refused with the setting that differs.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
``torch.load(..., weights_only=True)`` reads it (no pickled code runs from a
file someone sent you). It carries the config it was trained with; a
checkpoint of another model config is refused with the first settings that
differ named, instead of a wall of ``size mismatch`` lines from
``load_state_dict``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from radnerf.errors import InputError
from radnerf.stage_io import atomic_file

log = logging.getLogger(__name__)

FORMAT = "radnerf-checkpoint"
VERSION = 1

_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` (plus format and version) to ``path`` atomically: readers see the old file or the new one."""
    path = Path(path)
    data = {"format": FORMAT, "version": VERSION, **state}
    with atomic_file(path) as tmp:
        torch.save(data, tmp)
    return path


def load_checkpoint(path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely.

    Args:
        kind: the ``kind`` it must hold (``'head-train'``, ``'head'``), or None for any.

    Raises:
        InputError: missing, unreadable or corrupt, not a radnerf checkpoint, of
            a newer format, or of another kind; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist", hint="train first (`radnerf train-head person=NAME`)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated zip, random bytes, a pickle with code in it: all untrusted input
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(
            f"{path} is not a readable checkpoint ({reason[:200]})",
            hint="delete it (training resumes from the checkpoint before it) or retrain with overwrite=true",
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(
            f"{path} is not a radnerf checkpoint",
            hint="RAD-NeRF's own .pth files hold only weights; train with radnerf, or delete the file",
        )
    if int(data.get("version", 0)) > VERSION:
        raise InputError(f"{path} was written by a newer radnerf (format {data['version']})",
                         hint="upgrade radnerf to read it")
    if kind is not None and data.get("kind") != kind:
        raise InputError(f"{path} holds a {data.get('kind')!r} checkpoint, not a {kind!r} one")
    return data


def differences(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``'key: saved -> current'`` for every leaf setting that differs between two nested dicts."""
    out: list[str] = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differences(a, b, name + ".")
        elif _normal(a) != _normal(b):
            out.append(f"{name}: {a!r} in the checkpoint, {b!r} now")
    return out


def _normal(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_normal(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


def checkpoint_files(folder: str | Path) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of ``step_<n>.pt`` files in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_RE.match(p.name))]
    return sorted(found)


def prune(folder: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints in ``folder``."""
    files = checkpoint_files(folder)
    for _, path in files[: max(len(files) - keep, 0)]:
        path.unlink(missing_ok=True)
