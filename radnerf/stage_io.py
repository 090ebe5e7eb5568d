"""Atomic stage outputs, manifests and the per-person lock.

A stage writes everything into ``<person>/.staging/<stage>-<random>/`` and only
on success moves each output into place, then writes its manifest last. The
manifest is the commit record: outputs without a manifest are an interrupted
run and are redone; a manifest whose recorded inputs match the current ones
means the stage is finished and a re-run does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from radnerf.errors import RadNerfError

MANIFEST_VERSION = 1


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex sha256 of a JSON-serialisable value (keys sorted), for config fingerprints."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(
    stage: str, inputs: dict[str, str], settings: Any, algorithm: int, libraries: dict[str, str | None] | None = None
) -> str:
    """What decides a stage's outputs: its inputs' fingerprints, its settings and the code that computes them.

    Args:
        algorithm: the stage's algorithm version, bumped when its code changes its outputs.
        libraries: versions of outside libraries whose numbers end up in the outputs (a
            phone decoder, a model's runtime), so upgrading one redoes the stage.
    """
    # Read here, not imported at the top, so a test can change it.
    from radnerf import __version__

    what = {"stage": stage, "inputs": inputs, "settings": settings, "version": [algorithm, __version__]}
    if libraries is not None:
        what["libraries"] = libraries
    return sha256_json(what)


def library_versions(*names: str) -> dict[str, str | None]:
    """``{distribution: installed version}``; None for one that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def read_manifest(path: str | Path) -> dict | None:
    """The manifest at ``path``, or None if absent or unreadable (treated as unfinished)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def up_to_date(root: str | Path, stage: str, fingerprint: str, outputs: Sequence[str]) -> bool:
    """True when ``stage`` finished with inputs and settings whose fingerprint is ``fingerprint``
    and all its ``outputs`` (paths relative to ``root``) are still there: a re-run has nothing to do."""
    root = Path(root)
    manifest = read_manifest(manifest_path(root, stage))
    return (
        manifest is not None
        and manifest.get("fingerprint") == fingerprint
        and all((root / o).exists() for o in outputs)
    )


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; renamed onto ``path`` when the block ends without error.

    Readers see the old file or the whole new one, never a partial write; on an
    error (or Ctrl-C) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # gone already after the rename
            os.unlink(tmp)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace``."""
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def person_lock(root: str | Path, timeout: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on a person's folder for the duration of a stage.

    Two runs on the same person (two Prefect flow runs, a CLI call beside a
    deployment) would otherwise interleave their renames.

    Raises:
        RadNerfError: another process holds the lock after ``timeout`` seconds.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RadNerfError(
                        f"{root} is being processed by another run",
                        hint="wait for it to finish, or stop it",
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


class StageWriter:
    """Collects a stage's outputs in a staging folder and commits them at once.

    Usage::

        with StageWriter(person_root, "ingest", outputs=["ori_imgs", "aud.wav"]) as w:
            extract_frames(..., w.path("ori_imgs"))
            write_wav(w.path("aud.wav"), ...)
            w.manifest.update(frames=n)
        # on success: old manifest removed, outputs renamed into place, manifest written

    On an exception (or a kill), the staging folder is removed (or left in
    ``.staging`` for the next run to sweep) and existing outputs are untouched.
    """

    def __init__(self, root: str | Path, stage: str, outputs: Sequence[str]):
        self.root = Path(root)
        self.stage = stage
        self.outputs = list(outputs)
        self._declared = set(self.outputs)
        self.manifest: dict[str, Any] = {}
        self.tmp: Path | None = None

    def __enter__(self) -> StageWriter:
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        sweep_staging(staging)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.stage}-", dir=staging))
        return self

    def path(self, name: str) -> Path:
        """Where to write output ``name`` while the stage runs.

        A name may lie inside a folder another stage owns (``ori_imgs/0.lms``):
        its parent is made here, and the commit moves the file alone.
        """
        assert self.tmp is not None, "use StageWriter as a context manager"
        if name not in self._declared:
            raise ValueError(f"{name!r} is not a declared output of stage {self.stage!r}")
        out = self.tmp / name
        if "/" in name:
            out.parent.mkdir(parents=True, exist_ok=True)
        return out

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        try:
            if exc_type is None:
                self._commit()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _commit(self) -> None:
        assert self.tmp is not None
        manifest_file = manifest_path(self.root, self.stage)
        missing = [n for n in self.outputs if not (self.tmp / n).exists()]
        if missing:
            raise RuntimeError(f"stage {self.stage} did not write {missing}")
        # Invalidate first: from here until the new manifest lands, a crash
        # leaves outputs without a manifest but with the pending marker, which
        # tells the next run that they are ours, half-committed, and to redo them.
        pending = pending_marker(self.root, self.stage)
        write_json_atomic(pending, {"stage": self.stage, "started": time.time()})
        with contextlib.suppress(FileNotFoundError):
            manifest_file.unlink()
        trash = self.tmp / ".old"
        trash.mkdir()
        for name in self.outputs:
            dest = self.root / name
            if dest.exists() or dest.is_symlink():
                (trash / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(dest, trash / name)
            os.replace(self.tmp / name, dest)
        self.manifest.setdefault("stage", self.stage)
        self.manifest.setdefault("manifest_version", MANIFEST_VERSION)
        self.manifest.setdefault("outputs", self.outputs)
        write_json_atomic(manifest_file, self.manifest)
        pending.unlink()


def manifest_path(root: str | Path, stage: str) -> Path:
    """``<root>/manifests/<stage>.json``, where a stage records what it wrote."""
    return Path(root) / "manifests" / f"{stage}.json"


def pending_marker(root: str | Path, stage: str) -> Path:
    """Marker present only while a stage's outputs are being renamed into place."""
    return Path(root) / "manifests" / f".{stage}.pending"


def foreign_outputs(root: str | Path, stage: str, outputs: Sequence[str]) -> list[str]:
    """Outputs of ``stage`` that exist but were not written by radnerf.

    That is: there is no pending marker, and no manifest or only an
    ``imported`` one (recording files taken over as they are). Such outputs come
    from an imported RAD-NeRF dataset or were copied by hand, so a stage must
    not replace them without ``overwrite``, on its first run or any later one.
    """
    root = Path(root)
    if pending_marker(root, stage).exists():
        return []
    manifest = manifest_path(root, stage)
    if manifest.exists() and not (read_manifest(manifest) or {}).get("imported"):
        return []
    return [n for n in outputs if (root / n).exists()]


def sweep_staging(staging: Path) -> None:
    """Remove staging folders left by killed runs (the person lock is held)."""
    for entry in staging.iterdir():
        shutil.rmtree(entry, ignore_errors=True)
