"""What the per-frame preprocessing stages share that has no better room.

The stages (landmarks, parse, background, torso, regions) are written on
:func:`radnerf.stage_io.run_stage`; beside it they share:

- upstream fingerprints (:func:`stage_fingerprint`), including the one-time
  adoption of frames radnerf did not ingest (:func:`adopt_frames`);
- when a foreign folder of per-frame files is complete enough to use as it is
  (:func:`all_frames_present`);
- a worker pool that fans frames out over processes in contiguous chunks, so
  a backend that follows a face from frame to frame keeps its state inside one
  chunk (:func:`worker_count`, :func:`chunks`, :func:`map_chunks`), or over a
  Dask cluster with ``preprocess.executor=dask`` (:func:`dask_target`);
- which frames get overlays (:func:`overlay_indices`) and how a message names
  frames (:func:`frames_text`).
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from radnerf.errors import InputError, RadNerfError
from radnerf.formats.frames import frame_count
from radnerf.media.images import image_size
from radnerf.paths import PersonPaths
from radnerf.stage_io import (
    all_outputs_present,
    foreign_outputs,
    person_lock,
    read_manifest,
    report_progress,
    sha256_file,
    sha256_json,
    write_json_atomic,
)

if TYPE_CHECKING:
    from distributed import Client

    from radnerf.config import PreprocessConfig

log = logging.getLogger(__name__)


def stage_fingerprint(paths: PersonPaths, stage: str) -> str:
    """Fingerprint of a finished stage's outputs, for the manifests of the stages that consume them.

    Stages written by radnerf (or adopted as they are) record a ``fingerprint``;
    a dataset imported from RAD-NeRF has no manifests, so its frames are hashed
    instead (once: see :func:`adopt_frames`).

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
    for this fingerprint, so it goes into an ``imported`` ingest manifest (the
    shape :func:`radnerf.stage_io.adopt` writes, plus the frame count and size
    that :mod:`radnerf.formats.frames` reads), written once, that answers them
    from then on. The fingerprint hashes the frames' bytes rather than listing
    their sizes and times, so copying a dataset elsewhere does not redo its
    stages. Ingest still treats such frames as not its own: it replaces them
    only with ``overwrite``. Takes the person lock (re-entrant: a stage holding
    it may call this).
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


def all_frames_present(n: int, per_frame: Mapping[str, Callable[[int], Path]]) -> Callable[[list[str]], str | None]:
    """An ``accept_foreign`` for :func:`~radnerf.stage_io.run_stage` whose outputs are one file per frame.

    A foreign folder (``parsing/``, ``gt_imgs/``) exists as soon as one file is
    in it, so the runner's default (every output present) would take a half
    copied dataset as complete. This one accepts only when every frame's file
    is there, and otherwise names the frames that lack one.

    Args:
        n: the person's frame count.
        per_frame: ``{"parsing/<i>.png": paths.parsing_image}``: how each output
            is named in a message, and where frame ``i``'s file of it lies. It
            must cover every output of the stage.
    """

    def accept(missing: list[str]) -> str | None:
        for name, path in per_frame.items():
            absent = [i for i in range(n) if not path(i).exists()]
            if absent:
                return f"no {name} for frames {frames_text(absent)}"
        return all_outputs_present(missing)

    return accept


def worker_count(requested: int) -> int:
    """``requested`` worker processes, or (0) one per core this process may run on."""
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


@dataclass(frozen=True)
class DaskTarget:
    """Where :func:`map_chunks` sends chunks of frames with ``preprocess.executor=dask``."""

    address: str | None = None
    """Scheduler address (``tcp://host:8786``); None starts a ``LocalCluster`` for the call and closes it after."""
    chunks: int = 0
    """Chunks a call is split into; 0: one per thread of the cluster."""
    local_workers: int = 1
    """Processes of a local cluster started for the call (one thread each)."""


def dask_target(opts: PreprocessConfig) -> DaskTarget | None:
    """The Dask cluster of ``preprocess.executor=dask`` (None with ``executor=local``).

    The scheduler is ``preprocess.dask_address``, else ``$DASK_SCHEDULER_ADDRESS`` (Dask's own variable),
    else a local cluster of :func:`worker_count` processes.
    """
    if opts.executor != "dask":
        return None
    address = opts.dask_address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    return DaskTarget(address, max(opts.workers, 0), worker_count(opts.workers))


def on_dask_worker() -> bool:
    """True inside a task on a Dask worker (a person's pipeline run by a Dask task runner)."""
    if "distributed" not in sys.modules:  # nothing started a worker in this process
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def map_chunks(fn: Callable[..., Any], n: int, workers: int, *args: Any, stage: str | None = None,
               dask: DaskTarget | None = None) -> list[Any]:
    """``[fn(range_k, *args) for each contiguous chunk]``, in worker processes when ``workers > 1``,
    or on a Dask cluster.

    Processes, not threads: dlib and the geometry in numpy hold the GIL for
    most of a frame. Workers are spawned (not forked) so a parent that has
    started torch or mediapipe threads cannot hand them a locked mutex. The
    first chunk runs in this process, which has its imports done already.

    On a Dask worker (whose process may not start children) chunks that would
    go to worker processes go to that worker's own cluster instead.

    Args:
        stage: when given, each finished chunk is reported as progress of that
            stage (:func:`~radnerf.stage_io.report_progress`, in frames).
        dask: send every chunk to this Dask cluster (:func:`dask_target`);
            ``workers`` is then unused (:attr:`DaskTarget.chunks` sets the split).
            ``fn`` and ``args`` must pickle, and paths in them must name the
            same files on the cluster's machines.

    Returns:
        ``fn``'s results in chunk (frame) order.

    Raises:
        RadNerfError: the Dask scheduler cannot be reached, or a worker died
            on a chunk. An exception raised by ``fn`` comes back as it is.
    """
    done = 0

    def finished(part: range) -> None:
        nonlocal done
        done += len(part)
        if stage is not None:
            report_progress(stage, done, n, "frames")

    if dask is not None or (workers > 1 and n > 1 and on_dask_worker()):
        return _map_on_dask(fn, n, args, dask or DaskTarget(chunks=workers), stage, finished)
    parts = chunks(n, workers)
    if workers <= 1 or len(parts) <= 1:
        results = []
        for r in parts:
            results.append(fn(r, *args))
            finished(r)
        return results
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=len(parts) - 1, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(fn, r, *args) for r in parts[1:]]
        results = [fn(parts[0], *args)]
        finished(parts[0])
        for r, f in zip(parts[1:], futures):
            results.append(f.result())
            finished(r)
        return results


def _map_on_dask(fn: Callable[..., Any], n: int, args: tuple, target: DaskTarget, stage: str | None,
                 finished: Callable[[range], None]) -> list[Any]:
    """:func:`map_chunks` on Dask: every chunk a task, progress as each one finishes (in any order)."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    what = stage or "per-frame work"
    with dask_client(target, what) as client:
        parts = chunks(n, target.chunks or sum(client.nthreads().values()))
        # pure=False: a chunk reads files, so equal arguments are no reason to reuse an earlier result.
        futures = [client.submit(fn, r, *args, pure=False) for r in parts]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(parts)
        try:
            for f in as_completed(futures, loop=client.loop):
                i = index[f.key]
                results[i] = f.result()
                finished(parts[i])
        except KilledWorker as e:
            raise RadNerfError(
                f"{what}: a Dask worker died on a chunk of frames ({e})",
                hint="give the workers more memory (`dask worker --memory-limit ...`), fewer frames per chunk "
                "(a larger preprocess.workers), or use preprocess.executor=local",
            ) from e
        finally:
            client.cancel([f for f in futures if not f.done()])
    log.debug("%s: %d chunks on Dask", what, len(parts))
    return results


@contextmanager
def dask_client(target: DaskTarget, what: str = "per-frame work") -> Iterator[Client]:
    """A Dask client for ``target``: its scheduler, the cluster of the worker this runs on, or a local cluster
    that lives as long as the block.

    Raises:
        RadNerfError: the scheduler at ``target.address`` cannot be reached.
    """
    from distributed import Client, LocalCluster, worker_client

    if on_dask_worker():
        # worker_client secedes this task from the worker's thread pool while it waits, so the chunks it
        # submits can run there too instead of waiting behind it.
        with worker_client() as client:
            yield client
    elif target.address:
        try:
            client = Client(target.address, set_as_default=False)  # waits distributed.comm.timeouts.connect
        except (OSError, TimeoutError) as e:
            raise RadNerfError(
                f"{what}: cannot reach the Dask scheduler at {target.address} ({e})",
                hint="start it (`dask scheduler`, then `dask worker ADDRESS` on each machine), or unset "
                "preprocess.dask_address and DASK_SCHEDULER_ADDRESS for a local cluster",
            ) from e
        with client:
            yield client
    else:
        with LocalCluster(n_workers=target.local_workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as client:
            yield client


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
