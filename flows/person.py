"""The ``person`` flow: one person's pipeline, stage by stage, as Prefect tasks.

Each task calls one stage function from the library with the config as a
plain dict (Prefect parameters are never OmegaConf objects). The stages that
exist today run; the summary names the ones still to come.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import flows  # noqa: F401  (Prefect defaults before prefect is imported)
from prefect import flow, task

from radnerf.config import RadNerfConfig, config_from_dict, to_container
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


def _plain(result: Any) -> dict:
    data = asdict(result) if is_dataclass(result) else dict(result)
    return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


@task(name="stage", task_run_name="{name}")
def run_stage(name: str, target: str, config: dict) -> dict:
    """Run one stage function on the config (a plain dict)."""
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


@flow(name="person", log_prints=True)
def person(config: dict) -> dict:
    """Run the person pipeline for ``config`` (a :func:`radnerf.config.to_container` dict)."""
    cfg = config_from_dict(config)
    run = PersonRun(person=cfg.person or "?", not_built=list(PLANNED))
    with pipeline_run(cfg, name=f"person/{cfg.person}") as mlrun:
        for name, target in PIPELINE:
            t = time.time()
            result = run_stage(name, target, config)
            run.stages[name] = result
            run.seconds[name] = time.time() - t
            if mlrun is not None:
                manifest = Path(cfg.paths.artifacts) / cfg.person / "manifests" / f"{name}.json"
                mlrun.log_stage(name, result, run.seconds[name], artifacts=[manifest])
    log.info("%s", run.summary())
    return asdict(run)


def run_person(cfg: RadNerfConfig) -> PersonRun:
    """Run the person flow for a typed config (what the CLI calls)."""
    return PersonRun(**person(to_container(cfg)))
