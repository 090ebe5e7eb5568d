"""The ``person`` flow: one person's pipeline, stage by stage, as Prefect tasks.

Parameters are plain values (person, video, preset, Hydra overrides), so a
deployment run from the UI or ``prefect deployment run`` needs nothing else.
Each task calls one stage function from the library; the stages that exist
today run and the summary names the ones still to come. radnerf's own log
lines (per-stage messages, warnings, the summary) and the progress of long
stages appear in the flow run in the UI, not only in the worker's terminal.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.exceptions import MissingContextError
from prefect.logging.handlers import APILogHandler
from prefect.states import Completed

import flows  # noqa: F401  (the package sets Prefect defaults; imported as flows.person it ran first)
from radnerf import pipeline
from radnerf.config import RadNerfConfig, config_from_dict, load_config, to_container
from radnerf.errors import RadNerfError
from radnerf.experiments.runs import evaluation_metrics, pipeline_run
from radnerf.paths import PersonPaths
from radnerf.stage_io import StageResult, progress_to

log = logging.getLogger("flows.person")

RUN_LOGGERS = ("radnerf", "flows")
"""Loggers whose lines go to the flow run's logs (children included: ``radnerf.preprocess.tracking``)."""


class RunLogHandler(APILogHandler):
    """Prefect's API log handler, quiet outside a flow or task run.

    radnerf's loggers serve the CLI and plain Python too: a line logged outside
    a run (the demo building its sample clip) has no run to go to and stays in
    the terminal, where Prefect's own handler would add a warning for each one.
    """

    def emit(self, record: logging.LogRecord) -> None:
        from prefect.context import get_run_context

        try:
            get_run_context()
        except MissingContextError:
            return
        super().emit(record)


def send_logs_to_runs() -> None:
    """Make the :data:`RUN_LOGGERS` part of the flow run's logs in the Prefect UI.

    Prefect's own switch, ``PREFECT_LOGGING_EXTRA_LOGGERS``, is read once when
    ``prefect`` is imported, and a deployment run's process imports prefect
    (from a temporary folder, before the deployment's pull step moves to the
    checkout) before it loads this module: the setting would have to be in
    every worker's environment. Attaching the handler here works wherever the
    flow runs. INFO is the CLI's level; a worker leaves loggers at WARNING,
    which would drop every per-stage line.
    """
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        # Someone who lists radnerf in PREFECT_LOGGING_EXTRA_LOGGERS has Prefect's handler on it already.
        if not any(isinstance(h, APILogHandler) for h in logger.handlers):
            logger.addHandler(RunLogHandler())


send_logs_to_runs()

# Hydra's composition state is process-global; flows may run in threads.
compose_lock = threading.Lock()


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
    with compose_lock:
        return load_config([*overrides, *extra])


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) from ``parts``."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(["radnerf", *parts]).lower()).strip("-")


class PrefectProgress:
    """Where a long stage's :func:`~radnerf.stage_io.report_progress` goes inside a Prefect task:
    a progress artifact (a bar in the UI) and a log line in the run's logs.

    Both are throttled, since training reports every step: the artifact at most
    every ``artifact_every`` seconds, the log line every ``log_every`` seconds,
    and both at the last step.
    """

    def __init__(self, key: str, artifact_every: float = 2.0, log_every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.key = key
        self.artifact_every = artifact_every
        self.log_every = log_every
        self.clock = clock
        self.artifact_id: Any = None
        self._shown_at = -math.inf
        self._logged_at = -math.inf
        self._broken = False

    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None:
        now = self.clock()
        last = total > 0 and done >= total
        percent = 100.0 * min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
        text = f"{stage}: {done}/{total}" + (f", {message}" if message else "")
        if last or now - self._shown_at >= self.artifact_every:
            self._shown_at = now
            self._show(percent, text)
        if last or now - self._logged_at >= self.log_every:
            self._logged_at = now
            log.info("%s (%.0f %%)", text, percent)

    def _show(self, percent: float, text: str) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        if self._broken:
            return
        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(progress=percent, key=self.key, description=text)
            else:
                update_progress_artifact(self.artifact_id, progress=percent, description=text)
        except Exception as e:  # a progress bar that cannot reach the API must not stop hours of training
            self._broken = True
            log.warning("progress of %s is not shown in the UI (%s); the stage goes on", self.key, e)


RESUMABLE = frozenset({*pipeline.TRAINING, "train-baseline"})
"""Stages that continue from their newest checkpoint: a retry costs only the steps since it."""


def worth_retrying(task, task_run, state) -> bool:
    """Retry a stage after an I/O hiccup (a busy disk, a network mount), and a training stage after any
    failure of the machine or the library (out of memory, a driver error), since it resumes from its newest
    checkpoint. Never after a :class:`RadNerfError` (bad input, a missing weight file, a diverged loss):
    those fail the same way every time and say what to change. A process that is killed outright (the OOM
    killer, a preempted node) leaves a crashed flow run: run it again (the UI's Retry, or the same deployment
    run) and the finished stages are skipped while training resumes from its checkpoint."""
    try:
        state.result()
    except RadNerfError:
        return False
    except OSError:
        return True
    except Exception:
        return (task_run.name or "") in RESUMABLE
    except BaseException:
        return False
    return False


@task(name="stage", task_run_name="{name}", retries=2, retry_delay_seconds=5,
      retry_condition_fn=worth_retrying)
def run_stage(name: str, config: dict) -> StageResult:
    """Run one pipeline stage on the config (a plain dict, as Prefect parameters are).

    A stage whose inputs and settings are unchanged keeps its outputs (the
    stage function compares content fingerprints in its manifest), and one
    given a dataset radnerf did not write uses it as it is; the task then ends
    in a state named ``Cached``, so the UI shows what was skipped. The result
    stays a :class:`StageResult` (Prefect pickles results when it stores them).
    """
    cfg = config_from_dict(config)
    with progress_to(PrefectProgress(artifact_key(cfg.person or "", name, "progress"))):
        result = pipeline.run_stage(pipeline.BY_NAME[name], cfg)
    if result.adopted:
        return Completed(name="Cached", message="outputs not written by radnerf: used as they are", data=result)
    if result.skipped:
        return Completed(name="Cached", message="inputs and settings unchanged: outputs kept", data=result)
    return result


def stage_record(result: StageResult) -> dict:
    """A :class:`StageResult` as plain JSON values (paths as strings), with its state."""
    record = dataclasses.asdict(result)
    record.update(root=str(result.root), outputs=[str(p) for p in result.outputs], state=result.state)
    return record


def stage_result(record: dict) -> StageResult:
    """The :class:`StageResult` back from :func:`stage_record`."""
    names = {f.name for f in dataclasses.fields(StageResult)}
    values = {k: v for k, v in record.items() if k in names}
    values.update(root=Path(record["root"]), outputs=tuple(Path(p) for p in record["outputs"]))
    return StageResult(**values)


@dataclass
class PersonRun:
    """What a person flow did."""

    person: str
    stages: dict[str, StageResult] = field(default_factory=dict)
    not_built: list[str] = field(default_factory=list)
    video: str | None = None
    """A video the run ended with (the demo's talking portrait)."""
    registry: Any = None
    """What registering the model package decided (:class:`radnerf.experiments.registry.Decision`), if it ran."""

    def summary(self) -> str:
        lines = [f"person {self.person}:"]
        lines += [pipeline.report_line(name, result) for name, result in self.stages.items()]
        if self.not_built:
            lines.append(f"  not built yet: {', '.join(self.not_built)}")
        if self.registry is not None:
            lines.append(f"  {self.registry.summary()}")
        if self.video:
            lines.append(f"  video: {self.video}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain JSON values: what the flow returns (a deployment run's result may be stored as JSON)."""
        return {"person": self.person, "stages": {n: stage_record(r) for n, r in self.stages.items()},
                "not_built": list(self.not_built), "video": self.video,
                "registry": self.registry.to_dict() if self.registry is not None else None}

    @classmethod
    def from_dict(cls, data: dict) -> PersonRun:
        from radnerf.experiments.registry import Decision

        registry = data.get("registry")
        return cls(data["person"], {n: stage_result(r) for n, r in data["stages"].items()}, list(data["not_built"]),
                   data.get("video"), Decision(**registry) if registry else None)


def run_pipeline(cfg: RadNerfConfig, stages: list[str] | None = None, run_name: str | None = None,
                 tags: dict[str, str] | None = None) -> PersonRun:
    """Run the stages of ``cfg.person`` in order, each as a task, recorded in one MLflow run tree, then
    register the model package when this run built one and evaluated it.

    Args:
        stages: stage names (default: every built stage; ingestion only with ``cfg.video``).
        run_name: the MLflow parent run's name (default ``person/<person>``).
        tags: more tags of the parent run (an ablation sweep's name and variant).
    """
    config = to_container(cfg)
    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    run = PersonRun(person=cfg.person or "?", not_built=list(pipeline.PLANNED))
    with pipeline_run(cfg, name=run_name or f"person/{cfg.person}", tags=tags) as mlrun:
        for name in pipeline.stages_to_run(cfg, stages):
            result = run_stage(name, config, return_state=True).result()
            run.stages[name] = result
            if mlrun is not None:
                part = TRAINED_PART.get(name)
                mlrun.log_stage(name, result, artifacts=[result.manifest, *stage_images(paths, result)],
                                model=paths.package_archive if name == "package" else None,
                                curve=paths.train_log(part) if part else None)
        if mlrun is not None and cfg.registry.enabled and {"package", "evaluate"} <= set(run.stages):
            decision = register_model(mlrun.uri, str(paths.package_archive), run.person,
                                      evaluation_metrics(run.stages["evaluate"].metrics), config,
                                      model_uri=mlrun.model.model_uri if mlrun.model is not None else None,
                                      run_id=mlrun.stage_runs.get("package"))
            run.registry = decision
            mlrun.client.set_tag(mlrun.run_id, "radnerf.registry", decision.summary())
            mlrun.client.log_dict(mlrun.run_id, decision.to_dict(), "registry.json")
    if "preview" in run.stages:
        run.video = str(paths.preview_video)
    publish_summary(cfg, run)
    log.info("%s", run.summary())
    return run


TRAINED_PART = {"train-head": "head", "finetune-lips": "lips", "train-torso": "torso", "train-baseline": "baseline"}
"""Training stages -> the folder of their model (its ``log.csv`` is the training curve)."""


@task(name="register", retries=2, retry_delay_seconds=5, retry_condition_fn=worth_retrying)
def register_model(uri: str, archive: str, person: str, metrics: dict, config: dict, model_uri: str | None = None,
                   run_id: str | None = None):
    """Register the model package as a new version (unless it is one already); move the ``champion`` alias to
    it only when it beats the current one on ``registry.compare_on`` (:mod:`radnerf.experiments.registry`)."""
    from radnerf.experiments.registry import register

    return register(uri, archive, person, metrics, config_from_dict(config).registry, model_uri=model_uri,
                    run_id=run_id)


def stage_images(paths: PersonPaths, result: StageResult, val_renders: int = 4) -> list[Path]:
    """What MLflow keeps of a stage besides its manifest: its overlays; for a trained model (the head, the
    lips, the torso, the no-audio baseline), its training log and a few of its val renders (ground truth |
    render), spread over the val frames; for the evaluation, its report."""
    images = sorted(paths.overlays.glob(f"{result.stage}_*.jpg"))
    if result.stage == "evaluate":  # the report: the page, its plots, the side-by-side video, every number
        return images + [paths.eval / n for n in ("report.html", "report.md", "metrics.json", "records.json",
                                                  "psnr_frames.csv", "mouth.png", "psnr.png", "side_by_side.mp4")]
    if result.stage == "preview":
        return images + [paths.preview_video]
    part = TRAINED_PART.get(result.stage)
    if part is not None:
        renders = sorted(paths.val_renders(part).glob("*.png"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
        step = max(1, len(renders) // val_renders)
        images += [paths.train_log(part), *renders[::step][:val_renders]]
    return images


def publish_summary(cfg: RadNerfConfig, run: PersonRun) -> None:
    """Prefect artifacts of the run: a table per stage and links to its overlay images."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = artifact_key(run.person)
    rows = []
    for name, result in run.stages.items():
        row = {"stage": name, "state": result.state, "seconds": round(result.seconds, 2)}
        row.update({k: round(v, 4) for k, v in result.metrics.items() if k in SUMMARY_METRICS})
        rows.append(row)
    rows += [{"stage": name, "state": "not built yet"} for name in run.not_built]
    if run.registry is not None:
        rows.append({"stage": "register", "state": f"@{run.registry.alias}" if run.registry.moved else "registered",
                     "version": run.registry.version, "decision": run.registry.reason})
    create_table_artifact(key=key, table=rows, description=f"radnerf pipeline of {run.person}")
    paths = PersonPaths.for_person(cfg.paths.artifacts, run.person)
    images = sorted(paths.overlays.glob("*.jpg")) + sorted(paths.track.glob("*.png"))
    if images:
        links = "\n".join(f"- [{p.name}]({p.resolve().as_uri()})" for p in images)
        create_markdown_artifact(key=f"{key}-overlays", markdown=f"# Overlays of {run.person}\n\n{links}",
                                 description="per-stage overlay images for a visual check")


SUMMARY_METRICS = {
    "frames", "width", "height", "duration", "speech_share", "interpolated_count", "competing_faces_count", "cut_frames_count",
    "side_view_frames_count", "face_width", "unseen_share", "frames_without_neck_paint_count", "focal",
    "flagged_frames_count", "reprojection_px.rigid_median", "reprojection_px.rigid_p90",
}
"""Manifest numbers shown in the Prefect summary table (all of them go to MLflow)."""


@flow(name="person", log_prints=True)
def person(person: str, video: str | None = None, audio: str | None = None,
           preset: str | None = "cpu_tiny", overrides: list[str] | None = None, train_on: str | None = None) -> dict:
    """One person's pipeline from a video: what a deployment run per new person calls.

    Args:
        person: name of the person (folder under artifacts/).
        video: the person's video; None reuses what was ingested before.
        audio: separate audio file for a video without sound.
        preset: config preset (cpu_tiny, paper), None for the defaults.
        overrides: further Hydra overrides, e.g. ["ingest.size=512"].
        train_on: a deployment (``train/gpu`` in prefect.yaml) whose work pool runs every stage after
            preprocessing (training, evaluation, the preview); None runs them here. Its workers must see the
            person's folder at the same path (``paths.artifacts`` on a shared mount).

    Returns:
        :meth:`PersonRun.to_dict`: ``{"person", "stages": {name: stage record}, "not_built", "video", "registry"}``.
    """
    cfg = compose(person, video, audio, preset, list(overrides or []))
    if not train_on:
        return run_pipeline(cfg).to_dict()
    from flows.train import train_on_pool

    here = run_pipeline(cfg, stages=list(pipeline.PREPROCESS))
    there = PersonRun.from_dict(train_on_pool(person, preset, list(overrides or []), deployment=train_on))
    here.stages.update(there.stages)
    here.video, here.registry = there.video, there.registry
    return here.to_dict()
