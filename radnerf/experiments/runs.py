"""MLflow runs for a person's pipeline: a parent run, one nested run per stage.

The store is ``mlflow.tracking_uri`` from the config, else
``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working
directory (``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows it).
MLflow records; it never decides whether a stage runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

from radnerf.config import RadNerfConfig, flatten, to_container
from radnerf.stage_io import StageResult

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(cfg: RadNerfConfig) -> str:
    """The MLflow store this config points at."""
    return cfg.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def default_artifact_location(uri: str) -> Optional[str]:
    """Artifacts of a SQLite store go beside the database (``mlflow.db`` -> ``mlruns/``).

    MLflow's own default is ``./mlruns`` under whatever folder the process runs
    in, which scatters artifacts when a Prefect worker runs in another folder.
    """
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):]).expanduser().resolve()
    return (db.parent / "mlruns").as_uri()


STATE_TAG = "radnerf.state"
"""Tag of a stage's nested run: 'done', 'up to date' or 'adopted' (:attr:`StageResult.state`)."""
ALL_UP_TO_DATE_TAG = "radnerf.all_up_to_date"
"""Tag of a finished parent run: 'true' when no stage computed anything (a repeated demo)."""


@contextlib.contextmanager
def fluent_tracking(uri: str | None) -> Iterator[None]:
    """MLflow's fluent API (``log_model``, ``register_model``) aimed at ``uri`` inside the block only.

    ``mlflow.set_tracking_uri`` is process-wide: flows of different stores share a process (a test session,
    a worker running several deployments), and a URI left behind would send the next one's runs astray.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    if not uri:
        yield
        return
    with _use_tracking_uri(uri):
        yield


def ms(unix_seconds: float) -> int:
    """MLflow's timestamps: integer milliseconds since the epoch."""
    return int(round(unix_seconds * 1000))


class PipelineRun:
    """A parent MLflow run; :meth:`log_stage` adds a nested run per finished stage."""

    def __init__(self, client: Any, run_id: str, experiment_id: str, uri: str | None = None):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.uri = uri
        """The tracking URI (for MLflow's fluent API, which logs models)."""
        self.results: list[StageResult] = []
        self.stage_runs: dict[str, str] = {}
        """``{stage: its nested run's id}``."""
        self.model: Any = None
        """MLflow's ``ModelInfo`` of the model package logged in this run tree (None when the package was up to date)."""

    def log_stage(self, name: str, result: StageResult, artifacts: Sequence[Path] = (),
                  model: Path | None = None, curve: Path | None = None) -> None:
        """A nested run named ``name`` spanning the stage's real start and end, with its metrics,
        its state as the ``radnerf.state`` tag, and ``artifacts`` (manifest, overlays) that exist.
        ``model``: a model package zip, logged in that run as the ``talking-portrait`` pyfunc
        (:mod:`radnerf.experiments.pyfunc`) when the stage made it (not when it was up to date).
        ``curve``: a training log (``log.csv``: step, loss, psnr, ...), logged as metric histories
        (``train/loss``, ``train/psnr``, ``val/psnr`` ... by step) so MLflow draws the training curves.
        The parent run gets the stage's numbers too (:func:`parent_metrics`), so runs compare side by side.

        The run is recorded after the stage returned (MLflow records, it never decides), so its
        times come from ``result`` rather than the clock.
        """
        from mlflow.entities import Metric
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        tags = {MLFLOW_PARENT_RUN_ID: self.run_id, MLFLOW_RUN_NAME: name, STATE_TAG: result.state}
        child = self.client.create_run(self.experiment_id, start_time=ms(result.started), tags=tags)
        at = ms(result.ended)
        batch = [Metric(k, float(v), at, 0) for k, v in {**result.metrics, "seconds": result.seconds}.items()]
        for i in range(0, len(batch), 500):
            self.client.log_batch(child.info.run_id, metrics=batch[i : i + 500])
        if curve is not None and Path(curve).is_file():
            curves = curve_metrics(Path(curve), first_ms=ms(result.started), last_ms=at)
            for i in range(0, len(curves), 1000):
                self.client.log_batch(child.info.run_id, metrics=curves[i : i + 1000])
        for path in artifacts:
            if Path(path).is_file():
                self.client.log_artifact(child.info.run_id, str(path))
        if model is not None and not result.skipped and Path(model).is_file():
            import mlflow

            from radnerf.experiments.pyfunc import log_package

            with fluent_tracking(self.uri), mlflow.start_run(run_id=child.info.run_id, nested=True):
                self.model = log_package(model)
        self.client.set_terminated(child.info.run_id, status="FINISHED", end_time=at)
        parent = [Metric(k, v, at, 0) for k, v in parent_metrics(name, {**result.metrics,
                                                                        "seconds": result.seconds}).items()]
        for i in range(0, len(parent), 500):
            self.client.log_batch(self.run_id, metrics=parent[i : i + 500])
        self.stage_runs[name] = child.info.run_id
        self.results.append(result)

    @property
    def all_up_to_date(self) -> bool:
        """True when stages were logged and none of them computed anything."""
        return bool(self.results) and all(r.skipped for r in self.results)


EVALUATION_STAGE = "evaluate"
"""Whose numbers the parent run keeps under their own names (``psnr``, ``lmd``, ``psnr_no_audio`` ...): what
the MLflow compare view and the registry's ``compare_on`` read."""


def parent_metrics(stage: str, metrics: dict[str, float]) -> dict[str, float]:
    """A stage's numbers as the parent run keeps them: the evaluation's under their own names, every other
    stage's as ``<stage>.<name>`` (``train-head.val_psnr``); numbers only (a manifest may hold text)."""
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if stage == EVALUATION_STAGE:
        return {f"{stage}.seconds" if k == "seconds" else k: v for k, v in evaluation_metrics(numbers).items()}
    return {f"{stage}.{k}": v for k, v in numbers.items()}


def evaluation_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The evaluation's numbers by their names (``psnr``, ``lmd`` ...) from its stage result, whose manifest
    keeps them under ``metrics.``."""
    return {k.removeprefix("metrics."): v for k, v in metrics.items()}


CURVE_NAMES = {"loss": "train/loss", "psnr": "train/psnr", "val_psnr": "val/psnr", "lr_grid": "train/lr_grid",
               "lr_net": "train/lr_net", "steps_per_second": "train/steps_per_second", "occupancy": "train/occupancy"}
"""Training-log columns (``log.csv``) -> the metric histories MLflow plots; other columns keep their name."""


def curve_metrics(log_csv: Path, first_ms: int, last_ms: int) -> list:
    """The rows of a training log as MLflow metrics: one history per column, by ``step``.

    Empty cells (the val PSNR between validations) and non-numbers are left out. Timestamps are spread
    linearly from ``first_ms`` to ``last_ms`` over the steps, since the log keeps no clock.
    """
    import csv
    import math

    from mlflow.entities import Metric

    with open(log_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if (r.get("step") or "").strip()]
    if not rows:
        return []
    last_step = max(int(float(r["step"])) for r in rows) or 1
    out = []
    for row in rows:
        step = int(float(row["step"]))
        at = first_ms + (last_ms - first_ms) * step // last_step
        for column, text in row.items():
            if column == "step" or column is None or not (text or "").strip():
                continue
            try:
                value = float(text)
            except ValueError:
                continue
            if math.isfinite(value):
                out.append(Metric(CURVE_NAMES.get(column, column), value, at, step))
    return out


def experiment(client: Any, name: str, uri: str) -> str:
    """The id of experiment ``name``, created when missing (persons starting at once on a new store may race to
    create it: the loser takes the winner's)."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=default_artifact_location(uri))
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@contextlib.contextmanager
def pipeline_run(cfg: RadNerfConfig, name: str, tags: dict[str, str] | None = None) -> Iterator[Optional[PipelineRun]]:
    """Open a parent run named ``name`` with the flattened config as params and ``tags`` besides its own.

    Yields None when ``mlflow.enabled`` is false. The run ends FAILED if the
    body raises, so failed attempts stay visible in the UI; a finished run is
    tagged ``radnerf.all_up_to_date`` ('true' when no stage computed anything).
    """
    if not cfg.mlflow.enabled:
        yield None
        return
    from mlflow.tracking import MlflowClient

    # mlflow logs its own table migrations at INFO on a fresh store (and sets
    # its logger's level on import): keep the console for what radnerf does.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    uri = tracking_uri(cfg)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = experiment(client, cfg.mlflow.experiment, uri)
    run = client.create_run(experiment_id, run_name=name,
                            tags={"person": cfg.person or "", "preset": cfg.preset, **(tags or {})})
    params = flatten(to_container(cfg))
    from mlflow.entities import Param

    batch = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(batch), 100):
        client.log_batch(run.info.run_id, params=batch[i : i + 100])
    status = "FAILED"
    pipeline = None
    try:
        pipeline = PipelineRun(client, run.info.run_id, experiment_id, uri)
        yield pipeline
        # A repeated run finds everything up to date: it still records a run tree (the
        # config and the metrics as they are), marked so a search can leave it out.
        client.set_tag(run.info.run_id, ALL_UP_TO_DATE_TAG, str(pipeline.all_up_to_date).lower())
        status = "FINISHED"
    finally:
        client.set_terminated(run.info.run_id, status=status)
        nothing_ran = ", every stage up to date" if status == "FINISHED" and pipeline.all_up_to_date else ""
        log.info("MLflow run %s (%s%s) in %s", run.info.run_id[:8], status.lower(), nothing_ran, uri)
