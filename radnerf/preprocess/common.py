"""What the per-frame preprocessing stages share: options, frame lists, fingerprints, workers.

Every stage here (landmarks, parse, background, torso, regions) reads the
frames ingest wrote, keys its manifest on the fingerprints of the stages it
consumes plus its own options, and fans frames out over worker processes in
contiguous chunks, so a backend that follows a face from frame to frame keeps
its state inside one chunk.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from typing import Any, TypeVar

import numpy as np

from radnerf import stage_io
from radnerf.config import PreprocessConfig
from radnerf.errors import InputError
from radnerf.formats.frames import frame_count, frame_size  # noqa: F401  (stages call common.frame_count)
from radnerf.media.images import image_size
from radnerf.paths import PersonPaths, validate_person
from radnerf.stage_io import (
    foreign_outputs,
    person_lock,
    read_manifest,
    sha256_file,
    sha256_json,
    write_json_atomic,
)

log = logging.getLogger(__name__)

# Bumped when an algorithm changes its outputs, so finished stages are redone.
ALGORITHM_VERSION = 1


T = TypeVar("T")

# The thresholds and knobs live in the root config's schema (``cfg.preprocess``).
PreprocessOptions = PreprocessConfig


def section(cfg: Any, name: str, cls: type[T]) -> T:
    """``cls`` from the section ``name`` of a root config (a dataclass, an omegaconf node or a
    dict, the section likewise); fields it lacks, or a missing section, keep their defaults."""
    node = cfg.get(name) if isinstance(cfg, dict) else getattr(cfg, name, None)
    if isinstance(node, cls):
        return node
    values = {f.name: _get(node, f.name) for f in fields(cls) if node is not None and _has(node, f.name)}
    return cls(**values)


def options(cfg: Any) -> PreprocessOptions:
    """:class:`PreprocessOptions` from ``cfg.preprocess``; fields it lacks keep their defaults."""
    return section(cfg, "preprocess", PreprocessOptions)


def _has(obj: Any, name: str) -> bool:
    if isinstance(obj, dict):
        return name in obj
    # A dataclass, or an omegaconf node (whose unknown keys raise in struct mode).
    return name in obj if hasattr(obj, "__contains__") else hasattr(obj, name)


def _get(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def person_paths(cfg: Any) -> PersonPaths:
    return PersonPaths.for_person(cfg.paths.artifacts, validate_person(cfg.person))


def resolve_device(cfg: Any) -> str:
    """``preprocess.device`` with 'auto' resolved (imports torch: call only for the torch backends)."""
    from radnerf.devices import resolve_device as resolve

    return resolve(str(getattr(cfg.preprocess, "device", "auto")), "preprocess.device")


def stage_fingerprint(paths: PersonPaths, stage: str) -> str:
    """Fingerprint of a finished stage's outputs, for the manifests of the stages that consume them.

    Stages written by radnerf record a ``fingerprint``; a dataset imported from
    RAD-NeRF has no manifests, so its frames are hashed instead (once: see
    :func:`adopt_frames`).

    Raises:
        InputError: the stage has not run.
    """
    manifest = read_manifest(paths.manifest(stage))
    if manifest is not None and manifest.get("fingerprint"):
        return str(manifest["fingerprint"])
    if stage == "ingest":
        return adopt_frames(paths)
    raise InputError(
        f"stage {stage!r} has not run for {paths.root}",
        hint=f"run `radnerf {stage} person={paths.root.name}` first",
    )


def adopt_frames(paths: PersonPaths) -> str:
    """Fingerprint frames that radnerf did not ingest (a RAD-NeRF dataset) and record it; returns it.

    Hashing every frame takes seconds on a long clip and each later stage asks
    for this fingerprint, so it goes into an ``imported`` ingest manifest (as
    :func:`adopt_foreign` writes for the other stages) that answers them from
    then on. Ingest still treats such frames as not its own: it replaces them
    only with ``overwrite``. Call it without holding the person lock.
    """
    n = frame_count(paths)
    fp = sha256_json([sha256_file(paths.frame(i)) for i in range(n)])
    outputs = [paths.ori_imgs.name, paths.audio_wav.name]
    with person_lock(paths.root):
        current = read_manifest(paths.manifest("ingest"))
        if current is not None and current.get("fingerprint"):  # ingest finished meanwhile
            return str(current["fingerprint"])
        # With a pending marker the frames are ours, half committed: ingest must
        # still see them as its own to redo, so nothing is recorded.
        if foreign_outputs(paths.root, "ingest", outputs):
            width, height = image_size(paths.frame(0))
            write_json_atomic(paths.manifest("ingest"), {
                "stage": "ingest", "imported": True, "fingerprint": fp, "frames": n, "width": width, "height": height,
                "outputs": [o for o in outputs if (paths.root / o).exists()],
            })
            log.info("ingest: adopted the %d frames in %s as they are (not written by radnerf)", n, paths.ori_imgs)
    return fp


def fingerprint(stage: str, upstream: dict[str, str], settings: Any, algorithm: int = ALGORITHM_VERSION) -> str:
    """What decides a stage's outputs: its inputs' fingerprints, settings, algorithm and radnerf version."""
    return stage_io.fingerprint(stage, upstream, settings, algorithm)


def adopt_foreign(paths: PersonPaths, stage: str, outputs: Sequence[str], overwrite: bool) -> bool:
    """Take over a stage's outputs that radnerf did not write (a dataset RAD-NeRF processed).

    When every output exists but there is neither a manifest nor a pending
    marker, and ``overwrite`` is off, a manifest is written that fingerprints
    the files as they are, so later stages accept them and the stage is done.

    Returns:
        True when the outputs were adopted (the stage has nothing to do).
    """
    if overwrite or not foreign_outputs(paths.root, stage, outputs):
        return False
    if not all((paths.root / o).exists() for o in outputs):
        return False
    listing = []
    for o in outputs:
        p = paths.root / o
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        listing += [(str(f.relative_to(paths.root)), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    first = read_manifest(paths.manifest(stage)) is None
    write_json_atomic(paths.manifest(stage), {
        "stage": stage, "imported": True, "fingerprint": sha256_json(listing), "outputs": list(outputs),
    })
    # Re-recorded on every run (a file edited by hand changes the fingerprint
    # and so redoes the stages after it); said loudly only the first time.
    log.log(
        logging.WARNING if first else logging.INFO,
        "%s: using the existing %s in %s as they are (not written by radnerf); add overwrite=true to redo them",
        stage, ", ".join(outputs), paths.root,
    )
    return True


def worker_count(requested: int) -> int:
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def chunks(n: int, parts: int) -> list[range]:
    """Split ``range(n)`` into ``parts`` contiguous, nearly equal ranges (none empty)."""
    parts = max(1, min(parts, n))
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def map_chunks(fn: Callable[..., Any], n: int, workers: int, *args: Any) -> list[Any]:
    """``[fn(range_k, *args) for each contiguous chunk]``, in worker processes when ``workers > 1``.

    Processes, not threads: dlib and the geometry in numpy hold the GIL for
    most of a frame. Workers are spawned (not forked) so a parent that has
    started torch or mediapipe threads cannot hand them a locked mutex. The
    first chunk runs in this process, which has its imports done already.
    """
    parts = chunks(n, workers)
    if workers <= 1 or len(parts) <= 1:
        return [fn(r, *args) for r in parts]
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=len(parts) - 1, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(fn, r, *args) for r in parts[1:]]
        first = fn(parts[0], *args)
        return [first] + [f.result() for f in futures]


def overlay_indices(n: int, count: int) -> list[int]:
    """``count`` frame indices spread over ``range(n)`` (first, last and between)."""
    if count <= 0 or n <= 0:
        return []
    return sorted({round(x) for x in np.linspace(0, n - 1, min(count, n))})


def frames_text(frames: Sequence[int], limit: int = 12) -> str:
    """``"3, 4, 5, ... (17 frames)"``: frame numbers for a message, shortened."""
    frames = list(frames)
    shown = ", ".join(str(f) for f in frames[:limit])
    if len(frames) > limit:
        shown += ", ..."
    return f"{shown} ({len(frames)} frame{'s' if len(frames) != 1 else ''})"
