"""The ``person`` flow: one person's pipeline, stage by stage, as Prefect tasks.

Parameters are plain values (person, video, preset, Hydra overrides), so a
deployment run from the UI or ``prefect deployment run`` needs nothing else.
Each task calls one stage function from the library; the stages that exist
today run and the summary names the ones still to come.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import asdict, dataclass, field

from prefect import flow, task
from prefect.states import Completed

import flows  # noqa: F401  (the package sets Prefect defaults; imported as flows.person it ran first)
from radnerf import pipeline
from radnerf.config import RadNerfConfig, config_from_dict, load_config, to_container
from radnerf.errors import RadNerfError
from radnerf.experiments.tracking import pipeline_run
from radnerf.paths import PersonPaths

log = logging.getLogger("flows.person")

# Hydra's composition state is process-global; flows may run in threads.
_compose_lock = threading.Lock()


def compose(person: str, video: str | None, audio: str | None, preset: str | None,
            overrides: list[str]) -> RadNerfConfig:
    """The typed config of a flow run from its parameters."""
    extra = [f"person={person}"]
    if video:
        extra.append(f"video={video}")
    if audio:
        extra.append(f"audio={audio}")
    if preset:
        extra.append(f"preset={preset}")
    with _compose_lock:
        return load_config([*overrides, *extra])


def transient_io_error(task, task_run, state) -> bool:
    """Retry a stage only after an I/O hiccup (a busy disk, a network mount), never after a
    :class:`RadNerfError`: bad input or a missing weight file fails the same way every time."""
    try:
        state.result()
    except RadNerfError:
        return False
    except OSError:
        return True
    except BaseException:
        return False
    return False


@task(name="stage", task_run_name="{name}", retries=2, retry_delay_seconds=5,
      retry_condition_fn=transient_io_error)
def run_stage(name: str, config: dict):
    """Run one pipeline stage on the config (a plain dict, as Prefect parameters are).

    A stage whose inputs and settings are unchanged keeps its outputs (the
    stage function compares content fingerprints in its manifest); the task
    then ends in a state named ``Cached``, so the UI shows what was skipped.
    """
    report = asdict(pipeline.run_stage(pipeline.BY_NAME[name], config_from_dict(config)))
    if report["skipped"]:
        return Completed(name="Cached", message="inputs and settings unchanged: outputs kept", data=report)
    return report


@dataclass
class PersonRun:
    """What a person flow did."""

    person: str
    stages: dict[str, dict] = field(default_factory=dict)
    not_built: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"person {self.person}:"]
        lines += [pipeline.report_line(rep) for rep in self.stages.values()]
        if self.not_built:
            lines.append(f"  not built yet: {', '.join(self.not_built)}")
        return "\n".join(lines)


def run_pipeline(cfg: RadNerfConfig) -> PersonRun:
    """Run every built stage for ``cfg.person`` in order, each as a task, recorded in MLflow."""
    config = to_container(cfg)
    run = PersonRun(person=cfg.person or "?", not_built=list(pipeline.PLANNED))
    with pipeline_run(cfg, name=f"person/{cfg.person}") as mlrun:
        for name in pipeline.stages_to_run(cfg):
            report = run_stage(name, config, return_state=True).result()
            run.stages[name] = report
            if mlrun is not None:
                manifest = pipeline.BY_NAME[name].manifest(cfg)
                overlays = sorted(PersonPaths.for_person(cfg.paths.artifacts, cfg.person).overlays.glob(f"{name}_*.jpg"))
                mlrun.log_stage(name, report["metrics"], report["seconds"], artifacts=[manifest, *overlays])
    publish_summary(cfg, run)
    log.info("%s", run.summary())
    return run


def publish_summary(cfg: RadNerfConfig, run: PersonRun) -> None:
    """Prefect artifacts of the run: a table per stage and links to its overlay images."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = re.sub(r"[^a-z0-9-]+", "-", f"radnerf-{run.person}".lower()).strip("-")
    rows = []
    for name, rep in run.stages.items():
        row = {"stage": name, "state": pipeline.state_text(rep["skipped"]), "seconds": round(rep["seconds"], 2)}
        row.update({k: round(v, 4) for k, v in rep["metrics"].items() if k in SUMMARY_METRICS})
        rows.append(row)
    rows += [{"stage": name, "state": "not built yet"} for name in run.not_built]
    create_table_artifact(key=key, table=rows, description=f"radnerf pipeline of {run.person}")
    paths = PersonPaths.for_person(cfg.paths.artifacts, run.person)
    images = sorted(paths.overlays.glob("*.jpg")) + sorted((paths.root / "track").glob("*.png"))
    if images:
        links = "\n".join(f"- [{p.name}]({p.resolve().as_uri()})" for p in images)
        create_markdown_artifact(key=f"{key}-overlays", markdown=f"# Overlays of {run.person}\n\n{links}",
                                 description="per-stage overlay images for a visual check")


SUMMARY_METRICS = {
    "frames", "width", "height", "duration", "interpolated_count", "competing_faces_count", "cut_frames_count",
    "side_view_frames_count", "face_width", "unseen_share", "frames_without_neck_paint_count", "focal",
    "flagged_frames_count", "reprojection_px.rigid_median", "reprojection_px.rigid_p90",
}
"""Manifest numbers shown in the Prefect summary table (all of them go to MLflow)."""


@flow(name="person", log_prints=True)
def person(person: str, video: str | None = None, audio: str | None = None,
           preset: str | None = "cpu_tiny", overrides: list[str] | None = None) -> dict:
    """One person's pipeline from a video: what a deployment run per new person calls.

    Args:
        person: name of the person (folder under artifacts/).
        video: the person's video; None reuses what was ingested before.
        audio: separate audio file for a video without sound.
        preset: config preset (cpu_tiny, paper), None for the defaults.
        overrides: further Hydra overrides, e.g. ["ingest.size=512"].
    """
    cfg = compose(person, video, audio, preset, list(overrides or []))
    return asdict(run_pipeline(cfg))
