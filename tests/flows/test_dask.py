"""Scaling out by configuration: preprocessing fanned out over a Dask cluster writes what the local
process pool writes, and the persons flow runs on a local Dask cluster (prefect-dask)."""

from __future__ import annotations

import filecmp

import pytest

PER_FRAME = {"_detect_chunk", "_parse_chunk", "_torso_chunk"}
"""The chunk functions of the landmarks, parse and torso stages (what map_chunks sends to the cluster)."""


@pytest.fixture
def dask_cluster():
    """Two worker processes with one thread and a little memory each, like a small real cluster."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1.5GiB", processes=True,
                      dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


def _same_files(a, b, pattern: str) -> int:
    names = sorted(p.name for p in a.glob(pattern))
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)
    return len(match)


@pytest.mark.slow
def test_preprocessing_on_a_dask_cluster_writes_what_the_local_pool_writes(talking_clip, make_cfg, tmp_path,
                                                                           dask_cluster):
    from distributed import get_task_stream

    from radnerf import pipeline
    from radnerf.pipeline import PREPROCESS

    stages = PREPROCESS[: PREPROCESS.index("torso") + 1]  # the per-frame ones and what they read
    local = make_cfg("person=local", f"video={talking_clip}", "preset=smoke", "preprocess.workers=2")
    for name in stages:
        pipeline.run_stage(pipeline.BY_NAME[name], local)
    on_dask = make_cfg("person=dask", f"video={talking_clip}", "preset=smoke", "preprocess.executor=dask",
                       f"preprocess.dask_address={dask_cluster.scheduler.address}")
    with get_task_stream(client=dask_cluster) as stream:
        results = {name: pipeline.run_stage(pipeline.BY_NAME[name], on_dask) for name in stages}
    assert not any(r.skipped for r in results.values())

    # Every per-frame stage ran on the cluster, its chunks on both workers.
    ran = {}
    for t in stream.data:
        ran.setdefault(t["key"].split("-")[0], set()).add(t["worker"])
    assert set(ran) == PER_FRAME and all(len(workers) == 2 for workers in ran.values()), ran

    # Two chunks either way: the same frames meet the same tracker state, so the outputs are the same bytes.
    a, b = tmp_path / "artifacts/local", tmp_path / "artifacts/dask"
    frames = int(results["ingest"].metrics["frames"])
    assert _same_files(a / "ori_imgs", b / "ori_imgs", "*.lms") == frames
    assert _same_files(a / "parsing", b / "parsing", "*.png") == frames
    assert _same_files(a / "torso_imgs", b / "torso_imgs", "*.png") == frames
    assert _same_files(a / "gt_imgs", b / "gt_imgs", "*.jpg") == frames


@pytest.mark.slow
def test_persons_flow_on_a_local_dask_cluster(prefect_harness, talking_clip, tmp_path, monkeypatch):
    """``runner=dask`` with no scheduler: prefect-dask starts a local cluster for the run; each person's
    pipeline is a task on a worker process, whose stages report to the flow run's Prefect server and whose
    per-frame chunks go to the same cluster."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    import flows.runners
    from flows.persons import persons

    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    started, real_cluster = [], flows.runners.local_cluster

    def recorded_cluster(**kwargs):
        cluster = real_cluster(**kwargs)
        started.append(len(cluster.scheduler_info["workers"]))
        return cluster

    monkeypatch.setattr(flows.runners, "local_cluster", recorded_cluster)
    stages = ["ingest", "landmarks"]
    people = [{"person": "ann", "video": str(talking_clip)}, {"person": "ben", "video": str(talking_clip)}]
    state = persons(people=people, preset="smoke", stages=stages, runner="dask", workers=2, return_state=True,
                    overrides=[f"paths.artifacts={tmp_path / 'a'}", "mlflow.enabled=false", "preprocess.workers=2"])
    assert started == [2]  # the run's own cluster, two worker processes
    result = state.result()
    assert sorted(result["done"]) == ["ann", "ben"] and not result["failed"]
    for name in ("ann", "ben"):
        frames = int(result["done"][name]["stages"]["ingest"]["metrics"]["frames"])
        assert len(list((tmp_path / "a" / name / "ori_imgs").glob("*.lms"))) == frames > 25

    # The tasks on the workers reported to this run's server: a task per person, a nested one per stage.
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    assert sorted(r.name for r in runs) == sorted(["ann", "ben", *stages, *stages])
    assert {r.state.type.value for r in runs} == {"COMPLETED"}


def test_the_task_runner_is_configuration(monkeypatch):
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.runners import task_runner
    from radnerf.errors import ConfigError

    monkeypatch.delenv("RADNERF_TASK_RUNNER", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert isinstance(task_runner(), ThreadPoolTaskRunner)
    local = task_runner("dask", workers=3)
    assert isinstance(local, DaskTaskRunner) and local.address is None and local.cluster_kwargs["n_workers"] == 3
    monkeypatch.setenv("RADNERF_TASK_RUNNER", "dask")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://scheduler:8786")
    assert task_runner().address == "tcp://scheduler:8786"
    assert isinstance(task_runner("threads"), ThreadPoolTaskRunner)  # a parameter wins over the environment
    monkeypatch.setenv("RADNERF_TASK_RUNNER", "ray")
    with pytest.raises(ConfigError, match="RADNERF_TASK_RUNNER='ray' is not one of threads, dask"):
        task_runner()


def test_tasks_on_dask_workers_report_to_the_temporary_server_of_a_run_without_api_url(prefect_harness):
    """Without PREFECT_API_URL a worker would start a Prefect server of its own, and the UI of the run
    would not show its tasks: the runner hands its tasks the address of this process's server."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from flows.runners import task_runner

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert get_current_settings().api.url is None
        with task_runner("dask", address="tcp://127.0.0.1:9"):  # connects on the first task only
            assert get_current_settings().api.url == SubprocessASGIServer().api_url
        assert get_current_settings().api.url is None
