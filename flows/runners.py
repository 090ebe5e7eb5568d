"""Task runners of the flows that run tasks side by side (persons, the ablation sweep's variants).

Scaling out is configuration: ``threads`` runs the tasks in this process
(Prefect's ``ThreadPoolTaskRunner``), ``dask`` on a Dask cluster through
prefect-dask: the scheduler at ``$DASK_SCHEDULER_ADDRESS`` (``dask scheduler``
and ``dask worker`` on the machines), else a ``LocalCluster`` started for the
flow run and closed after it. A flow picks one with :func:`task_runner`, as a
parameter or from ``$RADNERF_TASK_RUNNER``.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from radnerf.config import check_choice

KINDS = ("threads", "dask")
ENV = "RADNERF_TASK_RUNNER"
"""Environment variable naming the default kind (a deployment's job variables can set it)."""


def task_runner(kind: str | None = None, *, address: str | None = None, workers: int | None = None) -> TaskRunner:
    """A task runner that runs a flow's submitted tasks in parallel.

    Args:
        kind: ``threads`` or ``dask``; None reads ``$RADNERF_TASK_RUNNER`` (default ``threads``).
        address: Dask scheduler (``tcp://host:8786``); None reads ``$DASK_SCHEDULER_ADDRESS``, and without it
            a local cluster runs for the flow run.
        workers: threads of ``threads`` (None: Prefect's ``PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS``,
            unbounded by default); processes of a local Dask cluster (None: one per core).

    Raises:
        ConfigError: an unknown ``kind``.
    """
    chosen = kind or os.environ.get(ENV) or "threads"
    check_choice("task_runner" if kind else ENV, chosen, KINDS)
    if chosen == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    address = address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if address:
        return RadnerfDaskTaskRunner(address=address)
    from radnerf.preprocess.common import worker_count

    # A person's pipeline (training) needs what it needs: the nanny's default limit, an equal share of the
    # machine's memory, would restart a worker the machine could hold. One thread per worker: each task is
    # one person's (or variant's) pipeline, and torch uses the cores.
    return RadnerfDaskTaskRunner(cluster_class=local_cluster, cluster_kwargs={
        "n_workers": workers or worker_count(0), "threads_per_worker": 1, "memory_limit": 0,
        "dashboard_address": None,
    })


def local_cluster(**kwargs: Any):
    """A ``distributed.LocalCluster`` whose workers may start processes of their own (a stage's process pool,
    the audio features' workers); Dask makes them daemons by default, which may not."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.daemon": False}):
        return LocalCluster(**kwargs)


class RadnerfDaskTaskRunner(DaskTaskRunner):
    """prefect-dask's task runner that also works with no Prefect server configured.

    Tasks on Dask workers report to the Prefect API of the settings they were
    submitted with. Without ``PREFECT_API_URL``, that is a temporary server
    Prefect started in this process, which a worker's own settings would not
    find (it would start a second one): its address is set for the tasks
    submitted here.
    """

    def __enter__(self) -> RadnerfDaskTaskRunner:
        super().__enter__()
        from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

        if get_current_settings().api.url is None:
            from prefect.server.api.server import SubprocessASGIServer

            server = SubprocessASGIServer()  # the process's temporary server, started already by the flow run
            server.start()
            self._exit_stack.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))
        return self
