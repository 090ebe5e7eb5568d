"""Atomic stage outputs, manifests and the per-person lock.

A stage writes everything into ``<person>/.staging/<stage>-<random>/`` and only
on success moves each output into place, then writes its manifest last. The
manifest is the commit record: outputs without a manifest are an interrupted
run and are redone; a manifest whose recorded inputs match the current ones
means the stage is finished and a re-run does nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radnerf.errors import RadNerfError
from radnerf.formats.manifests import read_manifest
from radnerf.paths import PersonPaths

log = logging.getLogger(__name__)

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
    # The same suffix: writers that pick a format by it (cv2.imwrite, np.save) see the real one.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    # mkstemp makes the file 0600; the result is an ordinary file, readable as
    # the umask allows (a team's shared machine), like every other output.
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # gone already after the rename
            os.unlink(tmp)


def current_umask() -> int:
    """The process's umask, read without changing it (``os.umask`` can only swap, which races threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace``."""
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


_held = threading.local()
"""Per thread: ``{person root: [fd, depth]}`` of the locks this thread holds."""


@contextlib.contextmanager
def person_lock(root: str | Path, timeout: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on a person's folder for the duration of a stage.

    Two runs on the same person (two Prefect flow runs, a CLI call beside a
    deployment) would otherwise interleave their renames. The lock is
    re-entrant within a thread, so a stage that holds it may call helpers that
    take it too (adopting an imported dataset's frames); other threads and
    processes wait for it or fail.

    Raises:
        RadNerfError: another process holds the lock after ``timeout`` seconds.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    key = str(root.resolve())
    held = _held.__dict__.setdefault("locks", {})
    if key in held:
        held[key][1] += 1
        try:
            yield
        finally:
            held[key][1] -= 1
        return
    fd = os.open(PersonPaths(root).lock, os.O_RDWR | os.O_CREAT, 0o644)
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
        held[key] = [fd, 0]
        try:
            yield
        finally:
            del held[key]
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

    def __init__(self, root: str | Path, stage: str, outputs: Sequence[str], keep: Sequence[str] = ()):
        """
        Args:
            keep: glob patterns (relative to ``root``) of files inside an output folder that
                belong to other stages (``ori_imgs/*.lms`` beside ingest's frames): the commit
                carries them into the new folder instead of throwing them away with the old one.
        """
        self.root = Path(root)
        self.stage = stage
        self.outputs = list(outputs)
        self.keep = list(keep)
        self._declared = set(self.outputs)
        self.manifest: dict[str, Any] = {}
        self.tmp: Path | None = None

    def __enter__(self) -> StageWriter:
        staging = PersonPaths(self.root).staging
        staging.mkdir(parents=True, exist_ok=True)
        sweep_staging(staging)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.stage}-", dir=staging))
        return self

    @property
    def staged(self) -> PersonPaths:
        """The person's layout inside the staging folder: ``w.staged.gt_image(i)`` is where frame
        ``i`` of the declared output ``gt_imgs`` goes (make the folder with ``w.path("gt_imgs")``)."""
        assert self.tmp is not None, "use StageWriter as a context manager"
        return PersonPaths(self.tmp)

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
        self._carry_over()
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


    def _carry_over(self) -> None:
        """Hard-link the ``keep`` files of the old output folders into the new ones (until the
        rename, the old ones still hold them: a crash here loses nothing)."""
        assert self.tmp is not None
        for pattern in self.keep:
            for old in self.root.glob(pattern):
                rel = old.relative_to(self.root)
                new = self.tmp / rel
                if rel.parts[0] not in self._declared or new.exists() or not new.parent.is_dir():
                    continue
                try:
                    os.link(old, new)
                except OSError:  # a file system without hard links
                    shutil.copy2(old, new)


def manifest_path(root: str | Path, stage: str) -> Path:
    """``<root>/manifests/<stage>.json``, where a stage records what it wrote."""
    return PersonPaths(Path(root)).manifest(stage)


def pending_marker(root: str | Path, stage: str) -> Path:
    """Marker present only while a stage's outputs are being renamed into place."""
    return PersonPaths(Path(root)).pending_marker(stage)


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


# -- the stage runner ----------------------------------------------------------


@dataclass(frozen=True)
class StageResult:
    """What one stage did: ran, found its outputs up to date, or took over foreign ones.

    Every stage function returns one; the CLI, the Prefect task, ``radnerf
    preprocess`` and MLflow read it instead of guessing from files.
    """

    stage: str
    """Manifest name of the stage (``audio_ph`` for the offline audio features)."""
    root: Path
    """The person's folder."""
    outputs: tuple[Path, ...]
    """The outputs a user looks at (folders or files), the main one first."""
    skipped: bool
    """True when nothing was computed: up to date, or foreign outputs adopted as they are."""
    seconds: float
    """Wall time of this call, checks included."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Numbers of the manifest (counts, shares, errors), flattened: what MLflow logs."""
    started: float = 0.0
    """Unix time the call began (MLflow records a stage's real start and end)."""
    adopted: bool = False
    """The outputs were not written by radnerf and are used as they are."""

    @property
    def output(self) -> Path:
        """The main output (the person's folder for a stage that lists none)."""
        return self.outputs[0] if self.outputs else self.root

    @property
    def manifest(self) -> Path:
        return manifest_path(self.root, self.stage)

    @property
    def ended(self) -> float:
        return self.started + self.seconds

    @property
    def state(self) -> str:
        """How summaries name the outcome: 'done', 'up to date' or 'adopted'."""
        return "adopted" if self.adopted else ("up to date" if self.skipped else "done")

    def summary(self) -> str:
        return f"{self.stage}: {self.state} in {self.seconds:.1f} s -> {self.output}"


def manifest_metrics(data: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a manifest, flattened (``reprojection_px.rigid_median``); lists count."""
    out: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool) or key == "manifest_version":
            continue
        if isinstance(value, (int, float)):
            out[f"{prefix}{key}"] = float(value)
        elif isinstance(value, list) and key not in ("outputs", "shape"):
            out[f"{prefix}{key}_count"] = float(len(value))  # flagged / interpolated frame lists
        elif isinstance(value, dict) and key not in ("settings", "inputs", "probe", "tools", "source"):
            out.update(manifest_metrics(value, f"{prefix}{key}."))
    return out


ProgressFn = Callable[[str, int, int, str], None]
"""``fn(stage, done, total, message)``: how a long stage says how far it is."""

_progress: contextvars.ContextVar[ProgressFn | None] = contextvars.ContextVar("radnerf_progress", default=None)


@contextlib.contextmanager
def progress_to(fn: ProgressFn | None) -> Iterator[None]:
    """Send the progress of stages run inside the block to ``fn`` (a CLI bar, a Prefect artifact)."""
    token = _progress.set(fn)
    try:
        yield
    finally:
        _progress.reset(token)


def report_progress(stage: str, done: int, total: int, message: str = "") -> None:
    """Tell whoever listens (:func:`progress_to`) that ``stage`` is ``done`` of ``total`` steps in."""
    fn = _progress.get()
    if fn is not None:
        fn(stage, done, total, message)


@dataclass
class StagePlan:
    """What a stage declares before any work: its outputs, and what decides their content.

    The runner (:func:`run_stage`) fingerprints ``upstream``, ``settings``,
    ``algorithm`` and ``libraries`` with radnerf's version; an unchanged
    fingerprint with every ``check`` output present means nothing to do.
    """

    stage: str
    """Manifest name (``manifests/<stage>.json``)."""
    outputs: Sequence[str]
    """Every file or folder the stage writes, relative to the person's folder."""
    settings: Any = None
    """The settings that change the outputs (JSON-serialisable)."""
    upstream: dict[str, str] | Callable[[], dict[str, str]] = field(default_factory=dict)
    """Fingerprints of what the stage consumes, or a function giving them (run under the lock,
    after the foreign-output check, so an imported dataset is taken over first)."""
    algorithm: int = 1
    """Bumped when the stage's code changes its outputs."""
    libraries: dict[str, str | None] | None = None
    """Versions of outside libraries whose numbers end up in the outputs."""
    check: Sequence[str] | None = None
    """Outputs whose presence the up-to-date check requires (default: all)."""
    shown: Sequence[str] | None = None
    """Outputs reported to the user, main one first (default: all)."""
    listed: Sequence[str] | None = None
    """How the manifest lists the outputs, when naming each would be long (``ori_imgs/{0..N-1}.lms``)."""
    keep: Sequence[str] = ()
    """Glob patterns of other stages' files inside this stage's output folders, kept when the
    folder is replaced (see :class:`StageWriter`)."""


def all_outputs_present(missing: list[str]) -> str | None:
    """The default ``accept_foreign``: foreign outputs are usable when none is missing."""
    return f"{', '.join(missing)} missing" if missing else None


def run_stage(
    paths: Any,
    plan: StagePlan,
    work: Callable[[StageWriter], dict | None],
    *,
    overwrite: bool = False,
    after: Callable[[], None] | None = None,
    accept_foreign: Callable[[list[str]], str | None] | None = None,
    guard: Callable[[dict | None], None] | None = None,
) -> StageResult:
    """Run one stage: the skeleton every stage shares, so a stage's own code is its work.

    Under the person lock:

    1. **Foreign outputs** (present, not written by radnerf: an imported RAD-NeRF
       dataset, files copied by hand) are never replaced without ``overwrite``.
       When ``accept_foreign(missing)`` finds nothing wrong with them (by default:
       every output is present) they are adopted as they are, recorded in an
       ``imported`` manifest; otherwise the stage refuses, naming why.
    2. ``guard(manifest)`` may refuse on the previous manifest (ingest: another video).
    3. Up to date: the fingerprint of ``plan`` matches the manifest's and the
       ``check`` outputs exist -> nothing is done.
    4. Otherwise ``work(writer)`` writes every output to ``writer.path(name)`` and
       returns numbers for the manifest; on success they are renamed into place
       and the manifest is written last; then ``after()`` (overlays) runs.

    A manifest records what was consumed and what was written, nothing about
    the run itself (no timings, no absolute paths): the same inputs give the same
    bytes, so DVC, which tracks manifests as outputs, sees an unchanged stage.
    Timings are in the :class:`StageResult` (and MLflow).

    Args:
        paths: the person's :class:`~radnerf.paths.PersonPaths` (anything with ``root``).

    Returns:
        The :class:`StageResult`.

    Raises:
        StageOutputExistsError: foreign outputs the stage cannot use, without ``overwrite``.
    """
    from radnerf.errors import StageOutputExistsError

    started = time.time()
    root = Path(paths.root)
    shown = tuple(root / o for o in (plan.shown if plan.shown is not None else plan.outputs))

    def result(skipped: bool, manifest: dict | None, adopted: bool = False) -> StageResult:
        return StageResult(
            plan.stage, root, shown, skipped, time.time() - started, manifest_metrics(manifest or {}), started, adopted
        )

    with person_lock(root):
        foreign = [] if overwrite else foreign_outputs(root, plan.stage, plan.outputs)
        if foreign:
            missing = [o for o in plan.outputs if not (root / o).exists()]
            why = (accept_foreign or all_outputs_present)(missing)
            if why is not None:
                raise StageOutputExistsError(
                    f"{root} already holds {_names(foreign)} that radnerf did not write ({why})",
                    hint="use that dataset as it is, choose another person=NAME, or add overwrite=true to replace them",
                )
            return result(True, adopt(root, plan.stage, plan.outputs), adopted=True)
        previous = read_manifest(manifest_path(root, plan.stage))
        if guard is not None:
            guard(previous)
        upstream = plan.upstream() if callable(plan.upstream) else plan.upstream
        fp = fingerprint(plan.stage, upstream, plan.settings, plan.algorithm, plan.libraries)
        if up_to_date(root, plan.stage, fp, plan.check if plan.check is not None else plan.outputs):
            log.info("%s: %s is up to date, nothing to do", plan.stage, root)
            return result(True, previous)
        with StageWriter(root, plan.stage, plan.outputs, keep=plan.keep) as w:
            numbers = work(w) or {}
            w.manifest = {
                "stage": plan.stage,
                "manifest_version": MANIFEST_VERSION,
                "outputs": list(plan.listed if plan.listed is not None else plan.outputs),
                "fingerprint": fp,
                "inputs": upstream,
                "settings": plan.settings,
                **({"tools": plan.libraries} if plan.libraries else {}),
                **numbers,
            }
            manifest = w.manifest
        if after is not None:
            after()
    done = result(False, manifest)
    log.info("%s: done in %.1f s -> %s", plan.stage, done.seconds, done.output)
    return done


def _names(outputs: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(outputs[:limit])
    return shown + (f" and {len(outputs) - limit} more" if len(outputs) > limit else "")


def adopt(root: Path, stage: str, outputs: Sequence[str]) -> dict:
    """Record foreign outputs as they are in an ``imported`` manifest; returns it.

    The fingerprint lists every file's name, size and mtime: it is re-recorded on
    each run, so a file edited by hand redoes the stages after it. Said loudly
    only the first time.
    """
    listing = []
    for o in outputs:
        p = root / o
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        listing += [(str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    first = read_manifest(manifest_path(root, stage)) is None
    manifest = {"stage": stage, "imported": True, "fingerprint": sha256_json(listing), "outputs": list(outputs)}
    write_json_atomic(manifest_path(root, stage), manifest)
    log.log(
        logging.WARNING if first else logging.INFO,
        "%s: using the existing %s in %s as they are (not written by radnerf); add overwrite=true to redo them",
        stage, _names(list(outputs)), root,
    )
    return manifest
