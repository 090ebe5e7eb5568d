"""The ``persons`` flow: several persons' pipelines side by side, one task per person.

Each task runs :func:`flows.person.run_pipeline` on that person's own
config, so persons never collide: each has its own folder under
``paths.artifacts``, its own person lock and its own MLflow run tree. The
tasks go to :func:`flows.runners.task_runner`: threads in the flow's process by
default, or a Dask cluster (``runner="dask"``). One person failing does not
stop the others; the flow then ends Failed, naming who failed and why.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from prefect import flow, task
from prefect.states import Failed

from flows.person import artifact_key, compose, run_pipeline
from flows.runners import task_runner
from radnerf.errors import ConfigError, RadNerfError

log = logging.getLogger("flows.persons")


@dataclass
class PersonSpec:
    """One entry of the flow's ``people``."""

    person: str
    """Name of the person (their folder under ``paths.artifacts``)."""
    video: str | None = None
    """Their video; None reuses what was ingested before."""
    audio: str | None = None
    """Separate audio file for a video without sound."""
    overrides: list[str] = field(default_factory=list)
    """Hydra overrides for this person only, over the flow's ``overrides``."""


def person_specs(people: list[dict]) -> list[PersonSpec]:
    """The flow's ``people`` as :class:`PersonSpec` s.

    Raises:
        ConfigError: an entry without ``person``, with an unknown key, or a person listed twice (two
            pipelines would write one folder).
    """
    keys = {f.name for f in dataclasses.fields(PersonSpec)}
    specs, seen = [], set()
    for i, entry in enumerate(people):
        unknown = sorted(set(entry) - keys)
        if unknown or not entry.get("person"):
            raise ConfigError(f"people[{i}] = {entry!r}: " + (f"unknown keys {unknown}" if unknown else "no person"),
                              hint=f"each entry is a dict with 'person' and optionally {sorted(keys - {'person'})}")
        spec = PersonSpec(**entry)
        if spec.person in seen:
            raise ConfigError(f"person {spec.person!r} is listed twice in people",
                              hint="give each entry its own person name (its folder under paths.artifacts)")
        seen.add(spec.person)
        specs.append(spec)
    return specs


def override_key(override: str) -> str:
    """The key an override sets: ``ingest.size`` for ``ingest.size=512``, ``+x.y=1`` and ``~x.y``."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(shared: list[str], own: list[str]) -> list[str]:
    """``shared`` then ``own``; a key set in both is taken from ``own`` (Hydra refuses a key given twice)."""
    mine = {override_key(o) for o in own}
    return [o for o in shared if override_key(o) not in mine] + list(own)


@task(name="person", task_run_name="{person}")
def person_task(person: str, video: str | None, audio: str | None, preset: str | None, overrides: list[str],
                stages: list[str] | None = None) -> dict:
    """One person's pipeline (what the ``person`` flow runs), its stages nested under this task."""
    cfg = compose(person, video, audio, preset, overrides)
    return run_pipeline(cfg, stages=stages).to_dict()


class PersonsFailed(RadNerfError):
    """Some persons of a ``persons`` run failed; :attr:`result` holds what every person did."""

    def __init__(self, message: str, result: dict):
        super().__init__(message, hint="fix what the message names and run those persons again; "
                                       "finished stages are skipped")
        self.result = result
        """:func:`persons`' result: ``{"done": {person: run}, "failed": {person: why}}``."""

    def __reduce__(self):  # Prefect pickles a failed run's exception; the default would drop ``result``
        return type(self), (self.message, self.result)


@flow(name="persons", log_prints=True)
def persons(people: list[dict], preset: str | None = "cpu_tiny", overrides: list[str] | None = None,
            stages: list[str] | None = None, runner: str | None = None, workers: int | None = None) -> dict:
    """Several persons' pipelines at once.

    Args:
        people: one dict per person: ``{"person": "alice", "video": "/data/alice.mp4"}``, optionally
            ``"audio"`` and ``"overrides"`` (a list, over the shared ones).
        preset: config preset of every person (cpu_tiny, paper), None for the defaults.
        overrides: Hydra overrides of every person, e.g. ``["ingest.size=512"]``.
        stages: the stages to run (default: every built stage).
        runner: ``threads`` (in this process) or ``dask`` (a Dask cluster: ``$DASK_SCHEDULER_ADDRESS``, else a
            local one); None reads ``$RADNERF_TASK_RUNNER``, default ``threads``.
        workers: persons at most at once (threads), or processes of a local Dask cluster; None: no limit
            (threads), one per core (Dask).

    Returns:
        ``{"done": {person: PersonRun.to_dict()}, "failed": {}}`` when every person finished.

    Raises:
        PersonsFailed: some persons failed (the run ends Failed, naming them); its ``result`` is the dict
            above, with ``failed`` as ``{person: "ErrorType: message"}``.
    """
    specs = person_specs(people)
    shared = list(overrides or [])
    with task_runner(runner, workers=workers) as pool:
        futures = {
            s.person: pool.submit(person_task, {
                "person": s.person, "video": s.video, "audio": s.audio, "preset": preset,
                "overrides": merge_overrides(shared, s.overrides), "stages": stages,
            })
            for s in specs
        }
        states = {name: _final_state(f) for name, f in futures.items()}
    result: dict = {"done": {}, "failed": {}}
    for name, state in states.items():
        if state.is_completed():
            result["done"][name] = state.result()
        else:
            error = state.result(raise_on_failure=False)
            why = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(state.message)
            result["failed"][name] = why
            log.error("person %s failed: %s", name, why)
    publish_outcome(result)
    if result["failed"]:
        names = ", ".join(f"{n} ({why})" for n, why in result["failed"].items())
        message = f"{len(result['failed'])} of {len(specs)} persons failed: {names}"
        return Failed(message=message, data=PersonsFailed(message, result))
    return result


def _final_state(future):
    future.wait()
    return future.state


def publish_outcome(result: dict) -> None:
    """A Prefect table artifact: each person's state, stages, and why it failed."""
    from prefect.artifacts import create_table_artifact

    rows = [{"person": name, "state": "done", "stages": len(run["stages"])} for name, run in result["done"].items()]
    rows += [{"person": name, "state": "failed", "error": why} for name, why in result["failed"].items()]
    create_table_artifact(key=artifact_key("persons"), table=rows, description="radnerf persons run")
