"""The ``sweep`` flow: an ablation grid for one person, each variant trained and evaluated as its own task.

The base person is preprocessed and its no-audio baseline trained once; each variant then runs
in its own folder (the preprocessed files and the baseline hard-linked, its models its own) as a
task submitted to the task runner, so variants train side by side across its workers. In MLflow,
the sweep is one run of the experiment ``<mlflow.experiment>-sweep-<person>`` with a nested run
per variant (the person pipeline's run tree, named by the variant), all with the same metric
names, so the compare view lines them up. A variant that fails is recorded as failed; the others
go on. The comparison table ends up in ``<artifacts>/<person>/sweeps/<name>/``, in the sweep's
MLflow run and as a Prefect artifact.

The work is in :mod:`radnerf.experiments.sweep`; this module only runs it on Prefect.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow, task
from prefect.states import Completed, Failed

import flows  # noqa: F401  (Prefect defaults for a fresh machine, set before Prefect starts a server)
from flows.person import artifact_key, compose_lock, run_pipeline, stage_record, stage_result
from flows.runners import task_runner
from radnerf.config import config_from_dict, to_container
from radnerf.errors import RadNerfError
from radnerf.experiments.sweep import (
    SweepPlan,
    SweepRecorder,
    SweepResult,
    VariantOutcome,
    link_variant,
    plan_sweep,
    record_timings,
    split_multirun,
    variant_metrics,
    write_table,
)
from radnerf.paths import PersonPaths

log = logging.getLogger("flows.sweep")


@task(name="variant", task_run_name="{variant}")
def train_variant(variant: str, config: dict, stages: list[str], base_root: str, shares: bool,
                  tags: dict[str, str]) -> dict:
    """One variant: link the base person's preprocessed files into its folder, then run its stages
    (each a task, in one MLflow run tree named ``variant``).

    Returns:
        ``{"stages": {name: stage record}, "timings": {stage: seconds}}`` (plain JSON values).
    """
    cfg = config_from_dict(config)
    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    linked = link_variant(Path(base_root), paths.root, share_baseline=shares, refresh=shares)
    log.info("%s: %d files linked from %s", variant, linked, base_root)
    run = run_pipeline(cfg, stages=stages, run_name=variant, tags=tags)
    timings = record_timings(Path(cfg.paths.artifacts), run.stages)
    return {"stages": {n: stage_record(r) for n, r in run.stages.items()}, "timings": timings}


def train_variants(variants: list[dict], runner: str | None = None, workers: int | None = None) -> list[dict]:
    """Submit the variants to the task runner, at most ``workers`` at a time (None: all at once), and wait for
    all of them; a failed one is reported, not raised.

    Args:
        variants: :func:`train_variant`'s parameters, one dict per variant.
        runner, workers: :func:`flows.runners.task_runner`'s.

    Returns:
        Per variant, in order: ``{"state": "done", **its result}`` or ``{"state": "failed", "error": why}``.
    """
    from prefect.futures import as_completed

    limit = max(1, workers or len(variants))
    queue, running, futures = list(range(len(variants))), set(), {}
    with task_runner(runner, workers=workers) as pool:
        while queue or running:  # a remote Dask cluster takes everything at once: the limit is kept here
            while queue and len(running) < limit:
                i = queue.pop(0)
                futures[i] = pool.submit(train_variant, variants[i])
                running.add(futures[i])
            running.discard(next(as_completed(list(running))))
    out = []
    for i, v in enumerate(variants):
        future = futures[i]
        value = future.result(raise_on_failure=False)
        if future.state.is_completed():
            out.append({"state": "done", **value})
            continue
        # The variant's own error for the table: a RadNerfError's message, else the exception.
        why = getattr(value, "message", None) or (f"{type(value).__name__}: {value}"
                                                  if isinstance(value, BaseException) else future.state.name)
        log.warning("variant %s failed: %s", v["variant"], why)
        out.append({"state": "failed", "error": why})
    return out


def run_sweep(plan: SweepPlan, runner: str | None = None, workers: int | None = None) -> SweepResult:
    """Run a planned sweep inside a flow: the base person, then the variants in parallel, then the table."""
    base = plan.base
    recorder = SweepRecorder(plan)
    recorder.open()
    try:
        run_pipeline(base, stages=plan.base_stages, run_name=f"person/{plan.person} (sweep {plan.name})",
                     tags={"radnerf.sweep": plan.name})
        base_root = str(PersonPaths.for_person(base.paths.artifacts, plan.person).root)
        params = [{"variant": p.variant.name, "config": to_container(p.cfg), "stages": p.stages,
                   "base_root": base_root, "shares": p.shares_preprocessing, "tags": recorder.variant_tags(p)}
                  for p in plan.variants]
        finished = train_variants(params, runner, workers)
        outcomes = []
        for p, done in zip(plan.variants, finished):
            metrics: dict[str, float] = {}
            if done["state"] == "done":
                results = {n: stage_result(r) for n, r in done["stages"].items()}
                metrics = variant_metrics(results, done["timings"])
            run_id = recorder.find_variant_run(p)
            if run_id is not None:
                recorder.complete_variant(run_id, p, metrics)
            outcomes.append(VariantOutcome(p.variant.name, dict(p.variant.values), done["state"], metrics, run_id,
                                           done.get("error")))
        keys = [a.key for a in plan.axes]
        files = write_table(plan.folder, outcomes, keys, f"Sweep {plan.name} of {plan.person}")
    except BaseException:
        recorder.abort()
        raise
    result = SweepResult(plan.name, plan.person, keys, outcomes, {k: str(v) for k, v in files.items()},
                         plan.experiment if recorder.enabled else None, recorder.uri if recorder.enabled else None)
    recorder.close(files, failed=bool(result.failed))
    publish_table(plan, result, files["md"])
    log.info("%s", result.summary())
    return result


def publish_table(plan: SweepPlan, result: SweepResult, table: Path) -> None:
    """The table as a Prefect markdown artifact (``radnerf-<person>-sweep-<name>``)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(key=artifact_key(plan.person, "sweep", plan.name), markdown=table.read_text(),
                             description=f"ablation sweep {plan.name} of {plan.person}: one row per variant")


@flow(name="sweep", log_prints=True)
def sweep(person: str, grid: list[str], video: str | None = None, audio: str | None = None,
          preset: str | None = "cpu_tiny", overrides: list[str] | None = None, name: str | None = None,
          runner: str | None = None, workers: int | None = None):
    """An ablation sweep of one person: every combination of ``grid``, trained and evaluated, compared.

    Args:
        person: name of the person (folder under artifacts/).
        grid: Hydra multirun overrides, e.g. ["model.ambient_dim=1,2,3", "render.max_steps=8,16"].
        video: the person's video; None uses what was ingested before.
        audio: separate audio file for a video without sound.
        preset: config preset (cpu_tiny, paper), None for the defaults.
        overrides: overrides every variant shares, e.g. ["train.head_iters=20000"].
        name: the sweep's name (default: its swept keys, ``ambient_dim``).
        runner: where the variants run: ``threads`` (this process) or ``dask`` (a Dask cluster:
            ``$DASK_SCHEDULER_ADDRESS``, else a local one); None reads ``$RADNERF_TASK_RUNNER``, default threads.
        workers: variants at most at once (one GPU holds a few); None: all of them (threads), one per core
            (a local Dask cluster).

    Returns:
        :meth:`SweepResult.to_dict`; the run ends Failed (with that result) when a variant failed.
    """
    extra = [f"person={person}", *([f"video={video}"] if video else []), *([f"audio={audio}"] if audio else []),
             *([f"preset={preset}"] if preset else [])]
    with compose_lock:  # Hydra's composition state is process-global
        plan = plan_sweep([*(overrides or []), *extra], grid, name=name)
    result = run_sweep(plan, runner, workers)
    if result.failed:
        return Failed(message=f"{len(result.failed)} of {len(result.outcomes)} variants failed: "
                      + ", ".join(o.name for o in result.failed), data=result.to_dict())
    return Completed(message=f"{len(result.outcomes)} variants compared", data=result.to_dict())


def from_overrides(overrides: list[str], name: str | None = None, runner: str | None = None,
                   workers: int | None = None) -> SweepResult:
    """``radnerf train -m key=a,b ...`` / ``radnerf sweep ...``: Hydra's multirun syntax on the command line.

    Overrides with several values are the grid; the rest apply to every variant. Every variant's
    config is composed here first, so a bad override is reported before Prefect starts.
    """
    base, grid = split_multirun(overrides)
    if not grid:
        raise RadNerfError("nothing to sweep: no override has several values",
                           hint="e.g. radnerf train -m person=alice model.ambient_dim=1,2,3")
    plan = plan_sweep(base, grid, name=name)
    state = sweep(person=plan.person, grid=grid, preset=None, overrides=base, name=name, runner=runner,
                  workers=workers, return_state=True)
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException):
        raise data
    return SweepResult.from_dict(data)
