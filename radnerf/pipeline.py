"""The person pipeline: its stages in order, and what each finished stage reports.

One list serves everyone: the CLI makes a subcommand of each stage, the Prefect
``person`` flow makes a task of each, ``radnerf preprocess`` runs them in order
and ``dvc.yaml`` mirrors them. A stage appears here when its function works.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from radnerf.stage_io import StageResult

if TYPE_CHECKING:  # annotations only: the CLI imports this module before it needs omegaconf
    from radnerf.config import RadNerfConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plot:
    """A CSV file a stage writes that DVC draws: one chart per person, experiments overlaid by ``dvc plots diff``."""

    path: str
    """Relative to the person's folder."""
    x: str
    """Column on the x axis."""
    y: str
    """Column on the y axis."""
    title: str
    x_label: str
    y_label: str
    template: str | None = None
    """A DVC plot template (``.dvc/plots/<name>.json``); None: DVC's line chart."""

    def props(self) -> dict:
        """Its entry in a ``dvc.yaml`` stage's ``plots:``."""
        out = {"x": self.x, "y": self.y, "title": self.title, "x_label": self.x_label, "y_label": self.y_label}
        return out | ({"template": self.template} if self.template else {})


def training_curve(folder: str, what: str) -> Plot:
    """The training PSNR over the steps of a model's ``log.csv``."""
    return Plot(f"{folder}/log.csv", "step", "psnr", f"${{key}}: {what}, PSNR of the training rays", "step",
                "PSNR (dB)")


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: a plain function ``fn(cfg) -> StageResult`` and how the CLI and DVC present it."""

    name: str
    """CLI subcommand, Prefect task and DVC stage name."""
    target: str
    """``module:function`` that does the work."""
    help: str
    example: str
    takes: str = "config"
    """'config': ``fn(cfg)``; 'overrides': an entry point that composes the config itself (``radnerf demo``)."""
    reads: tuple[str, ...] = ()
    """What it consumes, relative to the person's folder (``${item.video}``: the person's video in persons.yaml)."""
    writes: tuple[str, ...] = ()
    """Outputs DVC caches, relative to the person's folder (its metrics and plots are listed apart)."""
    metrics: tuple[str, ...] = ()
    """JSON files of numbers it writes (relative to the person's folder): ``dvc metrics show`` / ``dvc exp show``."""
    plots: tuple[Plot, ...] = ()
    """CSV files it writes that ``dvc plots show`` draws."""
    manifest_out: bool = False
    """List ``manifests/<name>.json`` as an uncached, persistent DVC output: for stages whose files
    share a folder with another stage's (``ori_imgs/``), which their manifest stands for."""
    groups: tuple[str, ...] = ()
    """Sections of the config (top-level keys of the composed ``params.yaml``) whose settings change its
    outputs: its DVC params, so ``dvc params diff`` names what an experiment changed."""
    code: tuple[str, ...] = ()
    """Its own code (files or folders); the code every stage shares is :data:`SHARED_CODE`."""

    def function(self) -> Callable[[RadNerfConfig], StageResult]:
        return resolve(self.target)


SHARED_CODE = ("radnerf/stage_io.py", "radnerf/paths.py", "radnerf/config.py", "radnerf/formats", "radnerf/media")
"""Code every stage runs through: a change here re-runs every stage under ``dvc repro``."""
PREPROCESS_CODE = ("radnerf/preprocess/common.py",)
"""What the per-frame preprocessing stages share besides :data:`SHARED_CODE`."""
TRAIN_CODE = ("radnerf/data", "radnerf/models", "radnerf/train", "radnerf/render", "radnerf/encoding",
              "radnerf/devices.py")
"""The code of the training stages (the head, the lips, the torso) besides :data:`SHARED_CODE`."""
PERSON_DATA = ("transforms_train.json", "transforms_val.json", "gt_imgs", "torso_imgs", "bc.jpg", "regions.csv",
               "{audio_features}")
"""What the training stages read of a person's preprocessed files (:class:`radnerf.data.PersonDataset`)."""


EVAL_REPORT = ("records.json", "report.html", "report.md", "mouth.png", "psnr.png", "side_by_side.mp4", "val")
"""What ``radnerf evaluate`` writes in ``eval/`` beside its DVC metrics and plots (the same as
:data:`radnerf.eval.evaluate.OUTPUTS`, which a test checks; this module stays cheap to import)."""


def resolve(target: str) -> Callable:
    """The function ``module:function`` names, imported on first use (imports stay cheap)."""
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


STAGES: list[Stage] = [
    Stage("ingest", "radnerf.preprocess.ingest:ingest",
          "decode a video into 25 fps frames and aligned 16 kHz mono audio",
          "radnerf ingest person=alice video=alice.mp4 [audio=speech.wav] [ingest.size=512]",
          reads=("${item.video}",), writes=("aud.wav",), manifest_out=True, groups=("ingest",),
          code=("radnerf/preprocess/ingest.py", "radnerf/audio/vad.py")),
    Stage("landmarks", "radnerf.preprocess.landmarks:landmarks",
          "68-point landmarks per frame (dlib | fan | mediapipe), gaps filled and flagged",
          "radnerf landmarks person=alice [preprocess.landmarks=fan]",
          reads=("manifests/ingest.json",), manifest_out=True, groups=("preprocess",),
          code=(*PREPROCESS_CODE, "radnerf/preprocess/landmarks.py", "radnerf/preprocess/landmark_backends.py")),
    Stage("parse", "radnerf.preprocess.parsing:parse",
          "head / neck / torso / background parsing per frame (offline | bisenet)",
          "radnerf parse person=alice [preprocess.parsing=bisenet]",
          reads=("manifests/landmarks.json",), writes=("parsing",), groups=("preprocess",),
          code=(*PREPROCESS_CODE, "radnerf/preprocess/parsing.py")),
    Stage("background", "radnerf.preprocess.background:background",
          "the static background image bc.jpg",
          "radnerf background person=alice",
          reads=("parsing",), writes=("bc.jpg",), groups=("preprocess",),
          code=(*PREPROCESS_CODE, "radnerf/preprocess/background.py")),
    Stage("torso", "radnerf.preprocess.torso:torso",
          "frames on the background (gt_imgs) and RGBA torso images with the neck in-painted",
          "radnerf torso person=alice",
          reads=("parsing", "bc.jpg"), writes=("gt_imgs", "torso_imgs"), groups=("preprocess",),
          code=(*PREPROCESS_CODE, "radnerf/preprocess/torso.py")),
    Stage("regions", "radnerf.preprocess.regions:regions",
          "eye-area ratio, face and lip rectangles per frame (regions.csv)",
          "radnerf regions person=alice",
          reads=("manifests/landmarks.json",), writes=("regions.csv",),
          code=(*PREPROCESS_CODE, "radnerf/preprocess/regions.py")),
    Stage("track", "radnerf.preprocess.tracking:track",
          "head pose per frame and camera intrinsics from the landmarks (transforms_*.json)",
          "radnerf track person=alice [track.focal=1200]",
          reads=("manifests/landmarks.json", "regions.csv"),
          writes=("transforms_train.json", "transforms_val.json", "track"), groups=("track",),
          code=(*PREPROCESS_CODE, "radnerf/geometry.py", "radnerf/preprocess/tracking.py",
                "radnerf/preprocess/tracking_ba.py", "radnerf/preprocess/tracking_viz.py",
                "radnerf/preprocess/face_shape.py")),
    Stage("audio", "radnerf.audio:extract_person_features",
          "per-frame audio feature windows aud_<name>.npy (offline | wav2vec2 | hubert)",
          "radnerf audio person=alice [audio_features=hubert]",
          reads=("aud.wav",), writes=("{audio_features}",), groups=("audio_features",),
          code=("radnerf/audio",)),
    Stage("train-head", "radnerf.train.head:train_head",
          "train the talking head (decomposed audio-spatial NeRF); resumes from its newest checkpoint",
          "radnerf train-head person=alice [preset=cpu_tiny] [model.audio=false]",
          reads=PERSON_DATA,
          writes=("head/head.pt", "head/val"), plots=(training_curve("head", "head"),),
          groups=("model", "train", "render", "seed"), code=TRAIN_CODE),
    Stage("finetune-lips", "radnerf.train.lips:finetune_lips",
          "fine-tune the head on lip patches (MSE + LPIPS); rendering prefers the result",
          "radnerf finetune-lips person=alice [train.lips_loss=mse]",
          reads=("head/head.pt", *PERSON_DATA),
          writes=("lips/lips.pt", "lips/val"), plots=(training_curve("lips", "lip fine-tuning"),),
          groups=("model", "train", "render", "seed"), code=TRAIN_CODE),
    Stage("train-torso", "radnerf.train.torso:train_torso",
          "train the pseudo-3D deformable torso below the head; resumes from its newest checkpoint",
          "radnerf train-torso person=alice [train.torso_iters=1000]",
          reads=("head/head.pt", "lips/lips.pt", *PERSON_DATA),
          writes=("torso/torso.pt", "torso/val"), plots=(training_curve("torso", "torso"),),
          groups=("model", "train", "render", "seed"), code=TRAIN_CODE),
    Stage("train-baseline", "radnerf.train.head:train_baseline",
          "train the no-audio head (model.audio=false) that evaluation sets beside the model",
          "radnerf train-baseline person=alice",
          reads=PERSON_DATA, writes=("baseline/baseline.pt", "baseline/val"),
          plots=(training_curve("baseline", "no-audio head"),),
          groups=("model", "train", "render", "seed"), code=TRAIN_CODE),
    Stage("package", "radnerf.talk.package:package",
          "the trained person as one self-contained model (folder + zip) that renders without the training data",
          "radnerf package person=alice  ->  radnerf render model=artifacts/alice/alice.radnerf.zip audio=x.wav",
          reads=("head/head.pt", "lips/lips.pt", "torso/torso.pt", *PERSON_DATA),
          writes=("package", "{archive}"),
          code=("radnerf/talk/package.py", "radnerf/talk/clip.py")),
    Stage("evaluate", "radnerf.eval.evaluate:evaluate",
          "PSNR, LPIPS, LMD on held-out frames, lip sync, baselines beside the model; eval/report.html",
          "radnerf evaluate person=alice [eval.audio=[other_speaker.wav]]",
          reads=("head/head.pt", "lips/lips.pt", "torso/torso.pt", "baseline/baseline.pt", "aud.wav", *PERSON_DATA),
          writes=tuple(f"eval/{n}" for n in EVAL_REPORT), metrics=("eval/metrics.json",),
          plots=(Plot("eval/psnr_frames.csv", "frame", "psnr", "${key}: PSNR of each frame (val frames held out)",
                      "frame (gt_imgs/<frame>.jpg)", "PSNR (dB)", template="by_variant"),),
          groups=("eval", "render"),
          code=(*TRAIN_CODE, "radnerf/eval", "radnerf/talk", "radnerf/preprocess/landmark_backends.py")),
    Stage("preview", "radnerf.talk.preview:preview",
          "the person saying a sentence it never heard (render.preview_text), rendered from its model package",
          "radnerf preview person=alice [render.preview_text='Any sentence.']",
          reads=("{archive}",), writes=("preview",), groups=("render",),
          code=(*TRAIN_CODE, "radnerf/talk", "radnerf/demo/tts.py")),
]
BY_NAME = {s.name: s for s in STAGES}

PREPROCESS = [s.name for s in STAGES[: [s.name for s in STAGES].index("train-head")]]
"""What ``radnerf preprocess`` runs: everything before training."""
TRAINING = ["train-head", "finetune-lips", "train-torso"]
"""What ``radnerf train`` runs: the models, in order (the head, its lips, the torso)."""

PLANNED: list[str] = []
"""Stages of the full RAD-NeRF pipeline not built yet (named in summaries, never run)."""


def run_stage(stage: Stage, cfg: RadNerfConfig) -> StageResult:
    """Run one stage; it skips itself when up to date and says so in its :class:`StageResult`."""
    return stage.function()(cfg)


def report_line(name: str, result: StageResult) -> str:
    """One summary line of the result of stage ``name`` (the command, ``audio``, not its manifest, ``audio_ph``)."""
    width = max(len(s.name) for s in STAGES)  # the columns line up under the longest stage name
    return f"  {name:<{width}} {result.state:<10} {result.seconds:6.1f} s  {result.output}"


def stages_to_run(cfg: RadNerfConfig, names: list[str] | None = None) -> list[str]:
    """``names`` (default: every built stage) in order, from ingestion when ``cfg.video`` is given, else
    from the frames already ingested."""
    names = [s.name for s in STAGES] if names is None else names
    return list(names) if cfg.video else [n for n in names if n != "ingest"]  # a new list: callers may append


@dataclass
class StagesResult:
    results: dict[str, StageResult]
    """``{stage name: its result}`` in the order they ran."""

    def summary(self) -> str:
        return "\n".join(report_line(name, r) for name, r in self.results.items())


def preprocess(cfg: RadNerfConfig) -> StagesResult:
    """``radnerf preprocess``: every stage before training, in order, each skipped when up to date.

    With ``video=PATH`` it starts from ingestion; without, from the frames already ingested.
    """
    return StagesResult({n: run_stage(BY_NAME[n], cfg) for n in stages_to_run(cfg, PREPROCESS)})


def train(cfg: RadNerfConfig) -> StagesResult:
    """``radnerf train``: every model stage in order, each skipped when up to date or resumed from its newest
    checkpoint."""
    return StagesResult({n: run_stage(BY_NAME[n], cfg) for n in TRAINING})


PARAMS_FILE = "params.yaml"
"""The config the DVC stages read: ``conf/params.yaml`` composed (by ``radnerf dvc-yaml``, and by DVC on each
``dvc exp run -S key=value``, with Hydra enabled in ``.dvc/config``)."""
PARAMS_CONFIG = "params"
"""Its root config in ``conf/`` (``.dvc/config``: ``hydra.config_name``)."""
PERSONS_FILE = "persons.yaml"
"""The persons ``dvc repro`` processes: ``{persons: {name: {video: path}}}``."""


def dvc_yaml(cfg: RadNerfConfig) -> str:
    """``dvc.yaml`` for :data:`STAGES`: each stage calls the same CLI (so the same stage function) on
    :data:`PARAMS_FILE`, for each person of :data:`PERSONS_FILE`.

    Args:
        cfg: the config in :data:`PARAMS_FILE` (names the audio feature file its backend writes).
    """
    import yaml

    from radnerf.audio.backends import feature_name
    from radnerf.paths import PersonPaths

    person = PersonPaths(Path("artifacts") / "${key}")  # a template: DVC fills in each person
    files = {"{audio_features}": person.audio_features(feature_name(cfg.audio_features)).name,
             "{archive}": person.package_archive.name}

    def person_file(name: str) -> str:
        return name if name.startswith("${") else f"{person.root.as_posix()}/{files.get(name, name)}"

    stages: dict[str, dict] = {}
    for st in STAGES:
        outs: list = [person_file(o) for o in st.writes]
        if st.manifest_out:
            manifest = person.manifest(st.name).relative_to(person.root).as_posix()
            outs.append({person_file(manifest): {"cache": False, "persist": True}})
        do: dict = {
            "cmd": f"radnerf {st.name} --config {PARAMS_FILE} person=${{key}}"
            + (" video=${item.video}" if "${item.video}" in st.reads else ""),
            "deps": [person_file(r) for r in st.reads] + list(SHARED_CODE) + list(st.code),
        }
        if st.groups:
            do["params"] = list(st.groups)
        do["outs"] = outs
        if st.metrics:
            do["metrics"] = [person_file(m) for m in st.metrics]
        if st.plots:
            do["plots"] = [{person_file(p.path): p.props()} for p in st.plots]
        stages[st.name] = {"foreach": "${persons}", "do": do}
    body = yaml.safe_dump({"vars": [PERSONS_FILE], "stages": stages}, sort_keys=False, width=120)
    return DVC_HEADER + body


DVC_HEADER = """\
# Generated from radnerf.pipeline.STAGES by `radnerf dvc-yaml` (which also writes params.yaml from conf/params.yaml):
# edit the stage list, not this file. Each stage calls the same CLI (so the same stage function) that Prefect and
# users call, on the config in params.yaml; its params are the sections of that config it reads. Outputs live
# under artifacts/, outside the DVC-tracked data/ folder; metrics and plots are cached like the other outputs
# (artifacts/ is not in git), so `dvc metrics diff` and `dvc exp show` read other revisions from the cache.
# Stages that share RAD-NeRF's ori_imgs/ folder (ingest writes the frames, landmarks adds <i>.lms beside them) are
# tracked by their manifests, which record the content hashes of what they wrote; the manifests persist so the
# stage functions can tell "up to date" themselves. Code deps: the stage's own modules plus the code every stage
# shares.
"""


def dvc_params() -> str:
    """The text of :data:`PARAMS_FILE`: ``conf/params.yaml`` composed and resolved by DVC's own Hydra
    composition (the code ``dvc exp run -S`` runs), so the two write the same bytes."""
    import tempfile

    from dvc.utils.hydra import compose_and_dump

    from radnerf.config import conf_dir, register_configs

    register_configs()  # in DVC's own process, hydra_plugins/radnerf_schema.py does this
    conf = conf_dir()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / PARAMS_FILE
        compose_and_dump(out, str(conf.resolve()), None, PARAMS_CONFIG, str(conf.resolve().parent), [])
        return out.read_text()


def dvc_files() -> dict[Path, str]:
    """``{path: text}`` of the generated DVC files: :data:`PARAMS_FILE` and ``dvc.yaml``, beside ``conf/``."""
    import tempfile

    from radnerf.config import conf_dir, load_config_file

    root = conf_dir().resolve().parent
    params = dvc_params()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / PARAMS_FILE).write_text(params)
        cfg = load_config_file(Path(tmp) / PARAMS_FILE)
    return {root / PARAMS_FILE: params, root / "dvc.yaml": dvc_yaml(cfg)}


def write_dvc_files(check: bool = False) -> list[Path]:
    """``radnerf dvc-yaml``: write the generated DVC files that differ from what they should be (``check``:
    only list them) and return those paths."""
    from radnerf.stage_io import atomic_file

    texts = dvc_files()
    stale = [path for path, text in texts.items() if not path.is_file() or path.read_text() != text]
    if not check:
        for path in stale:
            with atomic_file(path) as tmp:
                tmp.write_text(texts[path])
    return stale
