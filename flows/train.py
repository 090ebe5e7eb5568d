"""The ``train`` flow: the GPU part of a person's pipeline, for a deployment on a GPU work pool.

A person's preprocessing runs on any machine; the stages after it (training,
the no-audio baseline, the package, evaluation, the preview) run where this
flow's deployment sends them: ``train/gpu`` in ``prefect.yaml``, on the work
pool ``radnerf-gpu`` (a process worker on a GPU machine, or a Docker or
Kubernetes pool that asks for a GPU). Which pool is configuration: the code
does not change. :func:`train_on_pool` hands a preprocessed person over to
that deployment from another flow and waits for it.

The GPU worker reads and writes the person's folder: ``paths.artifacts``
must name the same files there (a shared mount, at an absolute path).
"""

from __future__ import annotations

from prefect import flow

from flows.person import compose, run_pipeline
from radnerf import pipeline
from radnerf.errors import RadNerfError

TRAIN_STAGES = [s.name for s in pipeline.STAGES if s.name not in pipeline.PREPROCESS]
"""What the flow runs by default: every stage after preprocessing, in pipeline order."""
DEPLOYMENT = "train/gpu"
"""The deployment in ``prefect.yaml`` (flow ``train``, deployment ``gpu``, pool ``radnerf-gpu``)."""


# The result is stored (as JSON), so a flow that handed training over can read it back from the API.
@flow(name="train", log_prints=True, persist_result=True, result_serializer="json")
def train(person: str, preset: str | None = "cpu_tiny", overrides: list[str] | None = None,
          stages: list[str] | None = None) -> dict:
    """Train, package and evaluate a person whose preprocessing is done.

    Args:
        person: name of the person (folder under artifacts/).
        preset: config preset (cpu_tiny, paper), None for the defaults.
        overrides: further Hydra overrides, e.g. ``["train.device=cuda"]``.
        stages: the stages to run (default :data:`TRAIN_STAGES`).

    Returns:
        :meth:`flows.person.PersonRun.to_dict` of the stages run; MLflow has them as ``train/<person>``.
    """
    cfg = compose(person, None, None, preset, list(overrides or []))
    return run_pipeline(cfg, stages=list(stages or TRAIN_STAGES), run_name=f"train/{person}").to_dict()


def train_on_pool(person: str, preset: str | None, overrides: list[str], stages: list[str] | None = None,
                  deployment: str = DEPLOYMENT, timeout: float | None = None) -> dict:
    """Run :func:`train` for ``person`` as a run of ``deployment`` and wait for it to finish.

    Called inside a flow, the run is that flow's child in the UI. A worker of
    the deployment's pool picks it up; until one does, the run waits in the
    pool (Scheduled).

    Args:
        person, preset, overrides, stages: :func:`train`'s parameters (give the overrides the person's
            preprocessing had, so both compose the same config).
        deployment: ``flow/deployment`` name.
        timeout: seconds to wait; None waits for as long as the run takes.

    Returns:
        :func:`train`'s result.

    Raises:
        RadNerfError: no such deployment; the run did not finish in ``timeout`` (no worker on the pool?);
            it ended in another state than Completed.
    """
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    parameters = {"person": person, "preset": preset, "overrides": list(overrides), "stages": stages}
    try:
        run = run_deployment(deployment, parameters=parameters, timeout=timeout)
    except ObjectNotFound:
        raise RadNerfError(f"there is no deployment {deployment!r} to train {person} on",
                           hint="`prefect deploy --all` creates the ones in prefect.yaml (train/gpu)") from None
    state = run.state
    if state is None or not state.is_final():
        raise RadNerfError(
            f"training of {person} ({deployment}, flow run {run.name}) is still "
            f"{state.name if state else 'not started'} after {timeout} s",
            hint="start a worker on the deployment's pool on a GPU machine (`prefect worker start --pool "
            "radnerf-gpu`); the run starts when one picks it up (cancel it in the UI if it should not)",
        )
    if not state.is_completed():
        raise RadNerfError(f"training of {person} ({deployment}, flow run {run.name}) ended {state.name}: "
                           f"{state.message}", hint="its logs are in the flow run in the Prefect UI")
    return state.result()
