"""Ablation sweeps: a grid of overrides, one trained and evaluated variant each, one comparison table.

The pieces the ``sweep`` flow (``flows/sweep.py``) and ``radnerf train -m`` put together, as plain
functions:

- :func:`parse_grid` / :func:`expand`: Hydra's multirun syntax (``model.ambient_dim=1,2,3``,
  ``render.max_steps=range(8,33,8)``, ``model.backbone=choice(implicit,decomposed)``, quoted values),
  read by Hydra's own override parser, and the cartesian product of the axes.
- :func:`plan_sweep`: every variant's config composed up front, so a bad key or value stops the sweep
  before anything trains, naming the override.
- :func:`link_variant`: a variant's person folder that shares the preprocessed data with the base
  person by hard links and has its own model folders (and lock).
- :func:`comparison_rows` / :func:`write_table`: the table (markdown, CSV, HTML).
- :class:`SweepRecorder`: the MLflow side: one experiment per person's sweeps, a run per sweep with
  the variants' runs nested under it.

Layout::

    <artifacts>/<person>/sweeps/<sweep name>/
      table.md, table.csv, table.html     the comparison, one row per variant
      <variant folder>/<person>/          a variant's person folder (ambient_dim-1/alice/: preprocessed files hard-linked)
      <variant folder>/timings.json       seconds each of its stages took when it last ran
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radnerf import pipeline
from radnerf.errors import RadNerfError
from radnerf.paths import PersonPaths

if TYPE_CHECKING:
    from radnerf.config import RadNerfConfig

log = logging.getLogger(__name__)

GRID_HINT = ("write each swept key as Hydra's multirun syntax: key=v1,v2 (model.ambient_dim=1,2,3), "
             "key=range(start,stop[,step]) or key=choice(a,b)")

FIXED_KEYS = ("person", "video", "audio", "package", "out", "paths", "mlflow", "registry", "hydra")
"""Keys a sweep cannot vary: who is trained, where outputs and runs go (the sweep decides that)."""

PREPROCESS_GROUPS = frozenset(g for s in pipeline.STAGES if s.name in pipeline.PREPROCESS for g in s.groups)
"""Config groups whose settings change preprocessed data: a variant that differs here preprocesses on its own."""

VARIANT_STAGES = [*pipeline.TRAINING, "evaluate"]
"""What a variant runs when it shares the base person's preprocessing and no-audio baseline."""

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,119}$")
"""A sweep's name: a folder, also written unquoted in Hydra overrides (no ``=`` or ``,``)."""


# -- the grid ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One swept key and its values, as Hydra override strings (``'1'``, ``'"a b"'``)."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Variant:
    """One point of the grid."""

    name: str
    """Readable, in Hydra's ``key=value,key=value`` form (``ambient_dim=1,max_steps=8``): the MLflow run,
    the Prefect task and the table's row."""
    folder: str
    """Its folder under the sweep's, readable and safe both as a path and unquoted in a Hydra override
    (``paths.artifacts=.../ambient_dim-1+max_steps-8``)."""
    overrides: tuple[str, ...]
    """Its Hydra overrides, one per axis: ``("model.ambient_dim=1", "render.max_steps=8")``."""
    values: tuple[tuple[str, str], ...]
    """``((key, value as text), ...)`` one per axis, unquoted: what the table and MLflow show."""


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _parse(text: str, hint: str = GRID_HINT):
    """Hydra's :class:`Override` of ``text``, or a :class:`RadNerfError` naming it."""
    from hydra.errors import HydraException

    try:
        return _parser().parse_override(text)
    except (HydraException, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RadNerfError(f"cannot read the override '{text}': {reason}", hint=hint) from None


def split_multirun(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """Hydra's ``-m``: ``(base overrides, sweep overrides)`` of a command line.

    An override with several values (``key=1,2``, ``range(...)``, ``choice(...)``) is an axis of
    the sweep; every other one applies to every variant, as in ``python app.py -m``.
    """
    base, grid = [], []
    for text in overrides:
        (grid if _parse(text).is_sweep_override() else base).append(text)
    return base, grid


def parse_grid(grid: Sequence[str]) -> list[Axis]:
    """The axes of ``grid`` (Hydra override strings), in order.

    Raises:
        RadNerfError: an override Hydra cannot read, a non-discrete sweep (``interval``), ``glob``,
            a key given twice, an added or deleted key, or a key no sweep may vary (:data:`FIXED_KEYS`).
    """
    from hydra.errors import HydraException

    axes: list[Axis] = []
    for text in grid:
        ov = _parse(text)
        key = ov.get_key_element()
        if ov.is_add() or ov.is_delete() or ov.is_force_add():
            raise RadNerfError(f"sweep override '{text}' adds or deletes a key; radnerf's config has a fixed schema",
                               hint="sweep an existing key; `radnerf config` lists them")
        if key.split(".")[0].split("@")[0] in FIXED_KEYS:
            raise RadNerfError(f"sweep override '{text}': a sweep cannot vary '{key}'",
                               hint="give it once, outside the grid (every variant shares it)")
        if any(a.key == key for a in axes):
            raise RadNerfError(f"sweep override '{text}': '{key}' is swept twice", hint="list its values once: key=a,b,c")
        if not ov.is_sweep_override():
            values = [ov.get_value_element_as_str()]
        elif not ov.is_discrete_sweep():
            raise RadNerfError(f"sweep override '{text}': a continuous range cannot be trained variant by variant",
                               hint="list the values: key=0.1,0.2 or key=range(1,4)")
        else:
            try:
                values = list(ov.sweep_string_iterator())
            except HydraException as e:
                raise RadNerfError(f"sweep override '{text}': {e}", hint=GRID_HINT) from None
        if not values:
            raise RadNerfError(f"sweep override '{text}' gives no values", hint=GRID_HINT)
        axes.append(Axis(key, tuple(values)))
    if not axes:
        raise RadNerfError("no sweep given", hint="e.g. radnerf train -m person=alice model.ambient_dim=1,2,3")
    return axes


def plain_value(key: str, value: str) -> str:
    """The value of ``key=value`` as text without Hydra's quoting (``'"a b"'`` -> ``a b``)."""
    parsed = _parse(f"{key}={value}").value()
    if isinstance(parsed, bool) or parsed is None:
        return str(parsed).lower() if parsed is not None else "null"
    return str(parsed)


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """``{key: its last component}`` where that is unique among ``keys``, else the whole key."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def safe_name(text: str, allowed: str = "A-Za-z0-9_.+-") -> str:
    """``text`` with runs of characters outside ``allowed`` (a regex class) as ``_``, at most 120 characters.

    The default keeps what a folder name and an unquoted Hydra value both take.
    """
    name = re.sub(f"[^{allowed}]+", "_", text).strip("_.") or "variant"
    if len(name) > 120:  # file systems cap names at 255 bytes; the rest of a long value goes to a hash
        import hashlib

        name = f"{name[:111]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return name


def expand(axes: Sequence[Axis]) -> list[Variant]:
    """The cartesian product of ``axes``, first axis slowest (Hydra's order), each a named :class:`Variant`."""
    short = short_keys([a.key for a in axes])
    variants: list[Variant] = []
    seen: set[str] = set()
    for i, combo in enumerate(itertools.product(*(a.values for a in axes))):
        values = tuple((a.key, plain_value(a.key, v)) for a, v in zip(axes, combo))
        name = safe_name(",".join(f"{short[k]}={v}" for k, v in values), "A-Za-z0-9_.,=+-")
        folder = safe_name("+".join(f"{short[k]}-{v}" for k, v in values))
        if name in seen or folder in seen:  # values that read alike once made safe ("a b" and "a_b")
            name, folder = f"{name}-{i + 1}", f"{folder}-{i + 1}"
        seen.update((name, folder))
        variants.append(Variant(name, folder, tuple(f"{a.key}={v}" for a, v in zip(axes, combo)), values))
    return variants


def default_name(axes: Sequence[Axis]) -> str:
    """A sweep's name when none is given: its swept keys (``ambient_dim``, ``ambient_dim+max_steps``).

    The same grid gets the same name, so running it again finds its variants' finished stages.
    """
    short = short_keys([a.key for a in axes])
    return safe_name("+".join(short[a.key] for a in axes))


def check_name(name: str) -> str:
    """``name`` if it can name a sweep folder, else a :class:`RadNerfError`."""
    if not NAME_RE.match(name) or ".." in name:
        raise RadNerfError(f"invalid sweep name {name!r}",
                           hint="use up to 120 letters, digits and _ . , = + -, starting with a letter or digit")
    return name


# -- the plan ---------------------------------------------------------------------------------------


def sweep_folder(cfg: RadNerfConfig, name: str) -> Path:
    """``<artifacts>/<person>/sweeps/<name>/``: the sweep's table and its variants' folders."""
    return PersonPaths.for_person(cfg.paths.artifacts, cfg.person).root / "sweeps" / name


def sweep_experiment(cfg: RadNerfConfig) -> str:
    """The MLflow experiment every sweep of ``cfg.person`` goes to: ``<mlflow.experiment>-sweep-<person>``."""
    return f"{cfg.mlflow.experiment}-sweep-{cfg.person}"


@dataclass
class PlannedVariant:
    """A variant with its composed config and what it runs."""

    variant: Variant
    cfg: RadNerfConfig
    stages: list[str]
    """The stages it runs: :data:`VARIANT_STAGES`, after its own preprocessing and baseline when
    its preprocessing settings differ from the base's."""
    shares_preprocessing: bool
    """Its folder links the base person's preprocessed files and no-audio baseline (else it makes its own)."""

    @property
    def folder(self) -> Path:
        """``<sweep folder>/<variant>/``: the variant's ``paths.artifacts``."""
        return Path(self.cfg.paths.artifacts)


@dataclass
class SweepPlan:
    """Everything a sweep runs, decided before anything trains."""

    name: str
    base: RadNerfConfig
    """The base person's config (the base overrides without the grid)."""
    base_stages: list[str]
    """What runs on the base person first: its preprocessing and, when a variant shares it, the baseline."""
    axes: list[Axis]
    variants: list[PlannedVariant]
    base_overrides: list[str]
    grid: list[str]

    @property
    def person(self) -> str:
        return self.base.person or ""

    @property
    def folder(self) -> Path:
        return sweep_folder(self.base, self.name)

    @property
    def experiment(self) -> str:
        return sweep_experiment(self.base)


def hydra_quote(text: str) -> str:
    """``text`` as a quoted Hydra value (a path with spaces, ``=`` or ``,`` stays one value)."""
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text)  # backslashes before a quote are escaped
    return "'" + escaped.replace("'", "\\'") + "'"


def _key(text: str) -> str:
    return text.split("=", 1)[0].lstrip("+~")


def plan_sweep(overrides: Sequence[str], grid: Sequence[str], name: str | None = None,
               load: Callable[[list[str]], RadNerfConfig] | None = None) -> SweepPlan:
    """Compose the base config and every variant's config; decide what each runs.

    Args:
        overrides: the base overrides (``person=alice``, ``preset=smoke``, ``video=...``): every
            variant has them, unless it sweeps the same key.
        grid: the sweep (:func:`parse_grid`).
        name: the sweep's name (default: :func:`default_name`).
        load: composes a config from overrides (default :func:`radnerf.config.load_config`).

    Raises:
        RadNerfError: a bad grid; a variant whose config cannot be composed, naming the override
            at fault; a swept ingest setting without ``video=``.
    """
    import dataclasses

    from radnerf.config import load_config

    load = load or load_config
    axes = parse_grid(grid)
    swept = {a.key for a in axes}
    base_overrides = [o for o in overrides if _key(o) not in swept]
    base = load(base_overrides)
    if not base.person:
        raise RadNerfError("no person given", hint="add person=NAME: the person whose variants are trained")
    name = check_name(name or default_name(axes))
    folder = sweep_folder(base, name)
    fixed = [f"mlflow.experiment={sweep_experiment(base)}", "registry.enabled=false"]  # compared, not shipped

    planned: list[PlannedVariant] = []
    for v in expand(axes):
        extra = [*v.overrides, f"paths.artifacts={hydra_quote(str(folder / v.folder))}", *fixed]
        cfg = _compose_variant(load, base_overrides, v, extra)
        own = any(getattr(cfg, g) != getattr(base, g) for g in PREPROCESS_GROUPS)
        stages = list(VARIANT_STAGES)
        if own and cfg.ingest != base.ingest and not base.video:
            raise RadNerfError(f"variant {v.name} ({' '.join(v.overrides)}) ingests the video differently",
                               hint="give video=PATH so each such variant ingests it, or sweep other keys")
        if not (own and cfg.ingest != base.ingest):
            cfg = dataclasses.replace(cfg, video=None)  # only a variant that ingests again reads the video
        if own:
            stages = [*pipeline.stages_to_run(cfg, pipeline.PREPROCESS), "train-baseline", *stages]
        planned.append(PlannedVariant(v, cfg, stages, shares_preprocessing=not own))
    base_stages = list(pipeline.stages_to_run(base, pipeline.PREPROCESS))  # a copy: it may be PREPROCESS itself
    if any(p.shares_preprocessing for p in planned):
        base_stages.append("train-baseline")
    return SweepPlan(name, base, base_stages, axes, planned, list(overrides), list(grid))


def _compose_variant(load: Callable, base: list[str], v: Variant, extra: list[str]) -> RadNerfConfig:
    """``load(base + extra)``; a failure names the variant's override at fault (each is tried alone)."""
    try:
        return load([*base, *extra])
    except RadNerfError as e:
        culprit = None
        for ov in v.overrides:
            try:
                load([*base, ov])
            except RadNerfError:
                culprit = ov
                break
        what = f"sweep override '{culprit}'" if culprit else f"variant {v.name} ({' '.join(v.overrides)})"
        raise RadNerfError(f"{what}: {e.message}",
                           hint=e.hint or "fix the grid; nothing was trained") from None


# -- the variant's folder -----------------------------------------------------------------------------


def model_outputs(person_root: Path) -> set[str]:
    """Top-level names in a person's folder that trained models and later stages write (never shared)."""
    names = {"renders"}
    archive = PersonPaths(person_root).package_archive.name
    for st in pipeline.STAGES:
        if st.name in pipeline.PREPROCESS:
            continue
        files = (*st.writes, *st.metrics, *(p.path for p in st.plots))
        names.update(archive if w == "{archive}" else w.split("/")[0] for w in files)
    return names


def link_variant(base_root: Path, variant_root: Path, share_baseline: bool = True, refresh: bool = True) -> int:
    """Make ``variant_root`` (a person folder) share the base person's preprocessed files.

    Every file of ``base_root`` is hard-linked (copied where the file system cannot link) into
    ``variant_root``, except what must stay the variant's own: the person lock (a shared lock file
    would make variants wait for each other), the staging folder, ``sweeps/``, pending markers, and
    the outputs of the model stages and their manifests; the no-audio baseline is shared when
    ``share_baseline``. Stages replace their outputs by renaming new files into place, never by
    writing into them, so a variant that redoes a stage leaves the base person's files as they are.

    Args:
        refresh: replace a variant's file that is not the base's (the base was preprocessed again);
            false keeps what the variant has (it preprocesses on its own) and adds what is missing.

    Returns:
        The number of files linked or copied.
    """
    base_root, variant_root = Path(base_root), Path(variant_root)
    own = model_outputs(base_root) | {".lock", ".staging", "sweeps"}
    own_manifests = {f"{s.name}.json" for s in pipeline.STAGES if s.name not in pipeline.PREPROCESS}
    if share_baseline:
        own.discard("baseline")
        own_manifests.discard("train-baseline.json")
    manifests = PersonPaths(base_root).manifests.name
    made = 0
    copied = False
    variant_root.mkdir(parents=True, exist_ok=True)
    for top in sorted(os.listdir(base_root)):
        if top in own:
            continue
        for src in _files(base_root / top):
            rel = src.relative_to(base_root)
            if rel.parts[0] == manifests and (rel.name in own_manifests or rel.name.endswith(".pending")):
                continue
            dst = variant_root / rel
            if dst.exists() or dst.is_symlink():
                if not refresh or _same_file(src, dst):
                    continue
                dst.unlink()
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst, follow_symlinks=False)
            except OSError:  # another file system, or one without hard links
                shutil.copy2(src, dst, follow_symlinks=False)
                copied = True
            made += 1
    if copied:
        log.warning("sweep: %s could not be hard-linked from %s; copied instead (uses disk space)",
                    variant_root, base_root)
    return made


def _files(path: Path) -> Iterable[Path]:
    if path.is_dir() and not path.is_symlink():
        for dirpath, _dirs, names in os.walk(path):
            for n in sorted(names):
                yield Path(dirpath) / n
    elif path.exists() or path.is_symlink():
        yield path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# -- timings ----------------------------------------------------------------------------------------


def record_timings(folder: Path, results: dict[str, Any]) -> dict[str, float]:
    """``{stage: seconds}`` of the variant's stages when they last ran, kept in ``<folder>/timings.json``.

    A stage that was up to date took no time now; its seconds are those of the run that made it.

    Args:
        results: ``{stage: StageResult}`` of this run.
    """
    path = Path(folder) / "timings.json"
    try:
        timings = json.loads(path.read_text())
    except (OSError, ValueError):
        timings = {}
    for stage, result in results.items():
        if not result.skipped or stage not in timings:
            timings[stage] = round(float(result.seconds), 2)
    from radnerf.stage_io import write_json_atomic

    write_json_atomic(path, timings)
    return timings


def variant_metrics(results: dict[str, Any], timings: dict[str, float]) -> dict[str, float]:
    """The numbers a variant is compared on: its evaluation's, ``train_seconds`` (the three training
    stages when they ran) and ``render_fps`` where a stage measured it.

    Args:
        results: ``{stage: StageResult}`` of the variant's run.
    """
    out: dict[str, float] = {}
    for result in results.values():
        if "render_fps" in result.metrics:
            out["render_fps"] = float(result.metrics["render_fps"])
    if "evaluate" in results:  # the table uses the evaluation's own names, as the MLflow runs do
        from radnerf.experiments.runs import evaluation_metrics

        out.update({k: float(v) for k, v in evaluation_metrics(results["evaluate"].metrics).items()})
    if all(s in timings for s in pipeline.TRAINING):
        out["train_seconds"] = round(sum(timings[s] for s in pipeline.TRAINING), 1)
    return out


# -- the table --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    metric: str
    """The metric name: the evaluation's (``eval/metrics.json``), as in every variant's MLflow run."""
    header: str
    digits: int
    better: str | None = None
    """'max' or 'min': the best value is bold in the markdown table."""


COLUMNS = (
    Column("psnr", "PSNR dB", 2, "max"),
    Column("psnr_face", "face PSNR", 2, "max"),
    Column("psnr_lips", "lips PSNR", 2, "max"),
    Column("lmd", "LMD px", 3, "min"),
    Column("lpips", "LPIPS", 4, "min"),
    Column("lse_d_clip", "LSE-D", 3, "min"),
    Column("lse_c_clip", "LSE-C", 3, "max"),
    Column("mouth_audio_corr_clip", "mouth-audio r", 3, "max"),
    Column("psnr_no_audio", "no-audio PSNR", 2),
    Column("train_seconds", "train s", 0),
    Column("render_fps", "render fps", 1, "max"),
)
"""The table's numbers, in order; a column shows when some variant has it (LPIPS and LSE need weights)."""


@dataclass
class VariantOutcome:
    """What became of one variant."""

    name: str
    values: dict[str, str]
    """``{swept key: value}``."""
    state: str
    """'done' or 'failed'."""
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    """Its MLflow run."""
    error: str | None = None


def comparison_rows(outcomes: Sequence[VariantOutcome]) -> tuple[list[dict], list[Column]]:
    """One row per variant (``variant``, the swept keys, ``state``, the :data:`COLUMNS` some variant
    has, ``mlflow_run``) and those columns."""
    columns = [c for c in COLUMNS if any(c.metric in o.metrics for o in outcomes)]
    rows = []
    for o in outcomes:
        row: dict[str, Any] = {"variant": o.name, **o.values, "state": o.state}
        row.update({c.metric: o.metrics.get(c.metric) for c in columns})
        row["mlflow_run"] = o.run_id
        rows.append(row)
    return rows, columns


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(outcomes: Sequence[VariantOutcome], keys: Sequence[str]) -> str:
    """The comparison as a markdown table; the best value of a quality column in bold, failures listed below."""
    rows, columns = comparison_rows(outcomes)
    header = ["variant", *keys, *(c.header for c in columns), "MLflow run"]
    best = {}
    for c in columns:
        values = [r[c.metric] for r in rows if r[c.metric] is not None]
        if c.better and len(values) > 1:
            best[c.metric] = max(values) if c.better == "max" else min(values)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        cells = [r["variant"] if r["state"] == "done" else f"{r['variant']} (failed)", *(str(r[k]) for k in keys)]
        for c in columns:
            text = _cell(r[c.metric], c.digits)
            cells.append(f"**{text}**" if c.metric in best and r[c.metric] == best[c.metric] else text)
        cells.append((r["mlflow_run"] or "-")[:8])
        lines.append("| " + " | ".join(cells) + " |")
    failed = [o for o in outcomes if o.state != "done"]
    if failed:
        lines.append("")
        lines += [f"- {o.name} failed: {o.error or 'see its run'}" for o in failed]
    return "\n".join(lines) + "\n"


def csv_table(outcomes: Sequence[VariantOutcome]) -> str:
    """The comparison as CSV: headers are the metric names of the MLflow runs, numbers unrounded."""
    rows, _ = comparison_rows(outcomes)
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r)) + ["error"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r, o in zip(rows, outcomes):
        writer.writerow({**{k: ("" if v is None else v) for k, v in r.items()}, "error": o.error or ""})
    return buf.getvalue()


def html_table(outcomes: Sequence[VariantOutcome], keys: Sequence[str], title: str) -> str:
    """The comparison as a standalone HTML page."""
    rows, columns = comparison_rows(outcomes)
    header = ["variant", *keys, "state", *(c.header for c in columns), "MLflow run"]
    body = []
    for r in rows:
        cells = [r["variant"], *(r[k] for k in keys), r["state"], *(_cell(r[c.metric], c.digits) for c in columns),
                 r["mlflow_run"] or "-"]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style>"
            f"<h1>{html.escape(title)}</h1><table><tr>{head}</tr>{''.join(body)}</table>\n")


def write_table(folder: Path, outcomes: Sequence[VariantOutcome], keys: Sequence[str], title: str) -> dict[str, Path]:
    """Write ``table.md``, ``table.csv`` and ``table.html`` into ``folder``; ``{format: path}``."""
    from radnerf.stage_io import atomic_file

    texts = {"md": f"# {title}\n\n" + markdown_table(outcomes, keys), "csv": csv_table(outcomes),
             "html": html_table(outcomes, keys, title)}
    files = {}
    for fmt, text in texts.items():
        path = Path(folder) / f"table.{fmt}"
        with atomic_file(path) as tmp:
            tmp.write_text(text)
        files[fmt] = path
    return files


@dataclass
class SweepResult:
    """What a sweep did: its variants' outcomes and where the table is."""

    name: str
    person: str
    keys: list[str]
    outcomes: list[VariantOutcome]
    files: dict[str, str] = field(default_factory=dict)
    """``{format: path}`` of the table."""
    experiment: str | None = None
    """The MLflow experiment of the variants' runs (None: MLflow off)."""
    tracking_uri: str | None = None

    @property
    def failed(self) -> list[VariantOutcome]:
        return [o for o in self.outcomes if o.state != "done"]

    @property
    def exit_code(self) -> int:
        """The CLI's exit status: 1 when a variant failed."""
        return 1 if self.failed else 0

    def summary(self) -> str:
        lines = [f"sweep {self.name} of {self.person}: {len(self.outcomes) - len(self.failed)} of "
                 f"{len(self.outcomes)} variants done", "", markdown_table(self.outcomes, self.keys).rstrip()]
        if self.files:
            lines += ["", f"table: {self.files.get('md')} (also .csv, .html)"]
        if self.experiment:
            lines.append(f"MLflow: experiment {self.experiment}, runs tagged radnerf.sweep={self.name} "
                         f"(mlflow ui --backend-store-uri {self.tracking_uri})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain JSON values (what the flow returns)."""
        import dataclasses

        return {**dataclasses.asdict(self), "outcomes": [dataclasses.asdict(o) for o in self.outcomes]}

    @classmethod
    def from_dict(cls, data: dict) -> SweepResult:
        return cls(**{**data, "outcomes": [VariantOutcome(**o) for o in data["outcomes"]]})


# -- MLflow ----------------------------------------------------------------------------------------

SWEEP_TAG = "radnerf.sweep"
"""Tag of a sweep's runs: the sweep's name (``tags.radnerf.sweep = 'ambient_dim'`` in the search box)."""
VARIANT_TAG = "radnerf.variant"
"""Tag of a variant's run: the variant's name."""


class SweepRecorder:
    """A sweep in MLflow: one run per sweep (its grid, its table) with the variants' runs nested under it.

    The variants' runs themselves are the person pipeline's parent runs
    (:func:`radnerf.experiments.runs.pipeline_run`), opened with :meth:`variant_tags`; this class
    adds what makes them a sweep: ``sweep.overrides`` and each swept key as params, the table's
    numbers that the pipeline did not log, and the table as the sweep run's artifacts.
    Everything is a no-op when ``mlflow.enabled`` is false.
    """

    def __init__(self, plan: SweepPlan):
        from radnerf.experiments.runs import tracking_uri

        self.plan = plan
        self.enabled = plan.base.mlflow.enabled
        self.uri = tracking_uri(plan.base)
        self.client: Any = None
        self.experiment_id: str | None = None
        self.run_id: str | None = None

    def open(self) -> None:
        """Create the experiment (if new) and the sweep's run."""
        if not self.enabled:
            return
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        from radnerf.experiments.runs import default_artifact_location

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(self.plan.experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            self.plan.experiment, artifact_location=default_artifact_location(self.uri))
        run = self.client.create_run(self.experiment_id, run_name=f"sweep {self.plan.name}",
                                     tags={SWEEP_TAG: self.plan.name, "person": self.plan.person,
                                           "preset": self.plan.base.preset})
        self.run_id = run.info.run_id
        params = {"sweep.grid": " ".join(self.plan.grid), "sweep.overrides": " ".join(self.plan.base_overrides),
                  "sweep.variants": str(len(self.plan.variants))}
        self.client.log_batch(self.run_id, params=[Param(k, v[:6000]) for k, v in params.items()])

    def variant_tags(self, v: PlannedVariant) -> dict[str, str]:
        """Tags of a variant's run: the sweep, the variant, and the sweep's run as its parent."""
        tags = {SWEEP_TAG: self.plan.name, VARIANT_TAG: v.variant.name}
        if self.run_id:
            tags["mlflow.parentRunId"] = self.run_id
        return tags

    def find_variant_run(self, v: PlannedVariant) -> str | None:
        """The id of the variant's run in this sweep, once its pipeline opened it."""
        if not self.enabled or self.client is None:
            return None
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.run_id}' and tags.`{VARIANT_TAG}` = '{v.variant.name}'",
            order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def complete_variant(self, run_id: str, v: PlannedVariant, metrics: dict[str, float]) -> None:
        """Params ``sweep.overrides`` and each swept key, and the table's numbers the run lacks."""
        from mlflow.entities import Metric, Param

        from radnerf.config import flatten, to_container

        run = self.client.get_run(run_id)
        config = flatten(to_container(v.cfg))
        params = {"sweep.overrides": " ".join(v.variant.overrides), "sweep.name": self.plan.name}
        params.update({k: str(config.get(k, value)) for k, value in v.variant.values})
        new = [Param(k, p[:6000]) for k, p in params.items() if k not in run.data.params]
        import time

        now = int(time.time() * 1000)
        missing = [Metric(k, float(x), now, 0) for k, x in metrics.items() if k not in run.data.metrics]
        if new or missing:
            self.client.log_batch(run_id, metrics=missing, params=new)

    def abort(self) -> None:
        """End the sweep's run FAILED: the sweep stopped before its table (the base person's stages failed)."""
        if self.enabled and self.run_id is not None:
            self.client.set_terminated(self.run_id, status="FAILED")

    def close(self, files: dict[str, Path], failed: bool) -> None:
        """Attach the table to the sweep's run and end it (FAILED when a variant failed)."""
        if not self.enabled or self.run_id is None:
            return
        for path in files.values():
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
