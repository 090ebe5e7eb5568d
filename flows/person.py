"""The ``person`` flow: one person's pipeline, stage by stage, as Prefect tasks.

Parameters are plain values (person, video, preset, Hydra overrides), so a
deployment run from the UI or ``prefect deployment run`` needs nothing else.
Each task calls one stage function from the library; the stages that exist
today run and the summary names the ones still to come.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Optional

import flows  # noqa: F401  (Prefect defaults before prefect is imported)
from prefect import flow, task

from radnerf.config import RadNerfConfig, config_from_dict, load_config, to_container
from radnerf.experiments.tracking import pipeline_run

log = logging.getLogger("flows.person")

# (stage name, "module:function"): the person pipeline in order. A stage is
# added here when its function exists; nothing is listed that only pretends.
PIPELINE: list[tuple[str, str]] = [
    ("ingest", "radnerf.preprocess.ingest:ingest"),
]
# Stages of the full RAD-NeRF pipeline that are not built yet (said in the summary).
PLANNED = ["landmarks", "parse", "background", "torso", "track", "audio",
           "train-head", "finetune-lips", "train-torso", "evaluate", "render"]

# Hydra's composition state is process-global; flows may run in threads.
_compose_lock = threading.Lock()


def compose(person: str, video: Optional[str], audio: Optional[str], preset: Optional[str],
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


def _plain(result: Any) -> dict:
    data = asdict(result) if is_dataclass(result) else dict(result)
    return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


@task(name="stage", task_run_name="{name}")
def run_stage(name: str, target: str, config: dict) -> dict:
    """Run one stage function on the config (a plain dict, as Prefect parameters are)."""
    module, func = target.split(":")
    fn = getattr(importlib.import_module(module), func)
    return _plain(fn(config_from_dict(config)))


@dataclass
class PersonRun:
    """What a person flow did."""

    person: str
    stages: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    not_built: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"person {self.person}:"]
        for name, res in self.stages.items():
            state = "up to date" if res.get("skipped") else "done"
            lines.append(f"  {name:<14} {state:<10} {self.seconds[name]:6.1f} s  {res.get('root', '')}")
        if self.not_built:
            lines.append(f"  not built yet: {', '.join(self.not_built)}")
        return "\n".join(lines)


def run_pipeline(cfg: RadNerfConfig) -> PersonRun:
    """Run every built stage for ``cfg.person`` in order, each as a task, recorded in MLflow."""
    config = to_container(cfg)
    run = PersonRun(person=cfg.person or "?", not_built=list(PLANNED))
    with pipeline_run(cfg, name=f"person/{cfg.person}") as mlrun:
        for name, target in PIPELINE:
            t = time.time()
            result = run_stage(name, target, config)
            run.stages[name] = result
            run.seconds[name] = time.time() - t
            if mlrun is not None:
                manifest = Path(cfg.paths.artifacts) / str(cfg.person) / "manifests" / f"{name}.json"
                mlrun.log_stage(name, result, run.seconds[name], artifacts=[manifest])
    publish_summary(cfg, run)
    log.info("%s", run.summary())
    return run


def publish_summary(cfg: RadNerfConfig, run: PersonRun) -> None:
    """Prefect artifacts of the run: a table per stage and links to its overlay images."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = re.sub(r"[^a-z0-9-]+", "-", f"radnerf-{run.person}".lower()).strip("-")
    rows = []
    for name, res in run.stages.items():
        row = {"stage": name, "state": "up to date" if res.get("skipped") else "done",
               "seconds": round(run.seconds[name], 2)}
        row.update({k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        rows.append(row)
    rows += [{"stage": name, "state": "not built yet"} for name in run.not_built]
    create_table_artifact(key=key, table=rows, description=f"radnerf pipeline of {run.person}")
    overlays = sorted((Path(cfg.paths.artifacts) / run.person / "overlays").glob("*.jpg"))
    if overlays:
        links = "\n".join(f"- [{p.name}]({p.resolve().as_uri()})" for p in overlays)
        create_markdown_artifact(key=f"{key}-overlays", markdown=f"# Overlays of {run.person}\n\n{links}",
                                 description="per-stage overlay images for a visual check")


@flow(name="person", log_prints=True)
def person(person: str, video: Optional[str] = None, audio: Optional[str] = None,
           preset: Optional[str] = "cpu_tiny", overrides: Optional[list[str]] = None) -> dict:
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
