"""The MLflow model registry: each new model package a version, the ``champion`` alias on the best one.

A person flow that built a package and evaluated it registers the package's pyfunc as a new
version of ``radnerf-<person>`` (``registry.name``), with the evaluation's numbers as version tags.
The alias (``registry.alias``, ``champion``) moves to it only when it beats the version the
alias points at on every metric ``registry.compare_on`` names (at least as good on all, better
on one): a retrained model that is worse stays registered, for the record, but is not served.
The decision and its reason are tags of the version and of the flow's run, and a log line.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from radnerf.config import RegistryConfig

log = logging.getLogger(__name__)

METRIC_TAG = "metric."
"""Prefix of the version tags that hold the evaluation's numbers (``metric.psnr``)."""
DECISION_TAG = "radnerf.decision"


def model_name(cfg: RegistryConfig, person: str) -> str:
    """The registered model of ``person``."""
    return cfg.name or f"radnerf-{person}"


def goals(compare_on: list[str]) -> list[tuple[str, str]]:
    """``["psnr:max", "lmd:min"]`` -> ``[("psnr", "max"), ("lmd", "min")]`` (checked by :class:`RegistryConfig`)."""
    return [(item.partition(":")[0], item.partition(":")[2]) for item in compare_on]


def compare(new: dict[str, float], old: Optional[dict[str, float]], compare_on: list[str]) -> tuple[bool, str]:
    """Does a version with metrics ``new`` take the alias from one with ``old`` (None: nobody holds it, and
    the first version takes it)? A version lacking a compared metric cannot take it from another.

    Returns ``(takes it, why)``; the reason names every metric compared, with both values.
    """
    wanted = goals(compare_on)
    missing = [name for name, _ in wanted if name not in new]
    if old is None:  # nothing to beat: a served model, however it was measured, is better than none
        return True, "first version: " + ", ".join(f"{n} {new[n]:.4g}" if n in new else f"no {n}" for n, _ in wanted)
    if missing:
        return False, f"not compared: this evaluation has no {', '.join(missing)}"
    better, worse, parts = [], [], []
    for name, goal in wanted:
        if name not in old:  # the champion predates this metric: it cannot win on it
            better.append(name)
            parts.append(f"{name} {new[name]:.4g} (champion has none)")
            continue
        a, b = new[name], old[name]
        sign = 1.0 if goal == "max" else -1.0
        if sign * (a - b) > 1e-9:
            better.append(name)
            op = ">" if goal == "max" else "<"
        elif sign * (b - a) > 1e-9:
            worse.append(name)
            op = "<" if goal == "max" else ">"
        else:
            op = "="
        parts.append(f"{name} {a:.4g} {op} {b:.4g}")
    takes = bool(better) and not worse
    verdict = "beats the champion" if takes else ("worse on " + ", ".join(worse) if worse else "no better")
    return takes, f"{verdict}: {'; '.join(parts)}"


@dataclass
class Decision:
    """What registering one model package did."""

    name: str
    version: str
    alias: str
    moved: bool
    """The alias now points at ``version``."""
    reason: str
    champion_before: Optional[str] = None
    """The version the alias pointed at before (None: none)."""
    metrics: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        where = f"{self.name} version {self.version}"
        if self.moved:
            return f"registry: {where} is now @{self.alias} ({self.reason})"
        held = f"@{self.alias} stays on version {self.champion_before}" if self.champion_before else f"no @{self.alias}"
        return f"registry: {where} registered, {held} ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def version_metrics(version: Any) -> dict[str, float]:
    """The evaluation numbers a version was registered with (its ``metric.*`` tags)."""
    out = {}
    for key, value in (version.tags or {}).items():
        if key.startswith(METRIC_TAG):
            try:
                out[key[len(METRIC_TAG):]] = float(value)
            except ValueError:
                continue
    return out


def registered_version(client: Any, name: str, package_sha256: str) -> Optional[Any]:
    """The version of ``name`` made from the package with this sha256, if there is one."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:  # no such registered model yet
        return None
    return next((v for v in versions if (v.tags or {}).get(PACKAGE_TAG) == package_sha256), None)


PACKAGE_TAG = "radnerf.package_sha256"
"""Version tag: the sha256 of the package zip (deterministic), so the same model is never registered twice."""


def register(tracking_uri: str, archive: str | Path, person: str, metrics: dict[str, float], cfg: RegistryConfig,
             model_uri: Optional[str] = None, run_id: Optional[str] = None) -> Decision:
    """Register a model package as a new version of the person's model and decide the alias.

    A package registered before (same sha256) is not registered again: the decision says which version it is.

    Args:
        tracking_uri: the MLflow store (its registry).
        archive: the package zip (``<person>.radnerf.zip``).
        person: whose model it is (names the registered model unless ``cfg.name`` does).
        metrics: the evaluation's numbers (``evaluate``'s metrics: psnr, lmd, ...).
        cfg: ``registry`` of the config.
        model_uri: the package already logged as a pyfunc (``ModelInfo.model_uri``); None logs it now, in the
            run ``run_id`` (the package stage's run) when given.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from radnerf.experiments.pyfunc import log_package
    from radnerf.experiments.runs import fluent_tracking
    from radnerf.stage_io import sha256_file

    name = model_name(cfg, person)
    client = MlflowClient(tracking_uri=tracking_uri)
    sha = sha256_file(Path(archive))
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    compared = {n: numbers[n] for n, _ in goals(cfg.compare_on) if n in numbers}
    # Every number, not only those compared today: a later compare_on can still read this version.
    tags = {f"{METRIC_TAG}{k}": repr(v) for k, v in numbers.items()}
    version = registered_version(client, name, sha)
    if version is None:
        with fluent_tracking(tracking_uri):
            if model_uri is None:
                with mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=f"package/{person}"):
                    model_uri = log_package(archive).model_uri
            version = mlflow.register_model(model_uri, name, tags={**tags, PACKAGE_TAG: sha})
        again = ""
    else:  # the same model evaluated again (a newer evaluation, or the first one with these metrics)
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        again = f"this package is version {version.version} already; "
    try:
        champion = client.get_model_version_by_alias(name, cfg.alias)
    except MlflowException:  # no version holds the alias yet
        champion = None
    if champion is not None and str(champion.version) == str(version.version):
        moved, reason = True, f"{again}it holds @{cfg.alias}"
    else:
        moved, reason = compare(compared, version_metrics(champion) if champion is not None else None, cfg.compare_on)
        reason = again + reason
        if moved:
            client.set_registered_model_alias(name, cfg.alias, version.version)
    client.set_model_version_tag(name, version.version, DECISION_TAG, f"{'@' + cfg.alias if moved else 'kept'}: {reason}")
    decision = Decision(name, str(version.version), cfg.alias, moved, reason,
                        str(champion.version) if champion is not None else None, compared)
    log.info("%s", decision.summary())
    return decision
