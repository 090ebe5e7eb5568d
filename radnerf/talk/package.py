"""The model package: one folder (and one ``.zip`` of it) that renders a person with no training data present.

``radnerf package person=NAME`` writes ``artifacts/NAME/package/`` and ``artifacts/NAME/NAME.radnerf.zip``;
``radnerf render model=PATH audio=speech.wav`` renders from either, on any machine::

    package/
      radnerf-model.json   what the package is: format, person, camera, frame size, the audio feature
                           backend and its settings, the files with their sha256, the training metrics
      head.pt              the head rendering uses (the lip-fine-tuned one when current)
      torso.pt             the trained torso
      config.yaml          the config the package was made with (the head's own settings are in head.pt)
      background.jpg       bc.jpg, byte for byte
      poses.npy            [K, 4, 4] float32 the clip's head poses in the head's normalised space (train then val)
      eyes.npy             [K] float32 the clip's eye-area ratios

The torso images of the clip stay behind: a package renders with the trained torso. The zip holds the same
files with fixed timestamps, so the same model gives the same bytes (DVC and MLflow see no change).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radnerf.config import RadNerfConfig, to_container
from radnerf.errors import InputError
from radnerf.paths import PersonPaths
from radnerf.stage_io import StagePlan, StageResult, run_stage, sha256_file, sha256_json
from radnerf.talk.clip import Clip

log = logging.getLogger(__name__)

STAGE = "package"
FORMAT = 1
"""Version of the package layout; a reader refuses a newer one."""
INFO = "radnerf-model.json"
FILES = {"head": "head.pt", "torso": "torso.pt", "config": "config.yaml", "background": "background.jpg",
         "poses": "poses.npy", "eyes": "eyes.npy"}
"""Role -> file name inside the package."""
FOLDER = "package"
"""The top folder inside the zip."""


# -- writing -----------------------------------------------------------------------------


def package(cfg: RadNerfConfig) -> StageResult:
    """``radnerf package person=NAME``: the trained person as a self-contained model (folder and zip).

    Raises:
        InputError: no trained head or torso (the package renders with the trained torso).
    """
    from radnerf.audio.stage import feature_settings
    from radnerf.formats.manifests import read_manifest
    from radnerf.train.checkpoint import load_checkpoint
    from radnerf.train.head import person_splits
    from radnerf.train.lips import final_head

    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    person = paths.root.name
    head_file, torso_file = final_head(paths), paths.final_weights("torso")
    for part, path, stage in (("head", head_file, "train-head"), ("torso", torso_file, "train-torso")):
        if not path.is_file():
            raise InputError(f"{person} has no trained {part} ({paths.rel(path)} is missing); a package renders "
                             "with the trained head and torso", hint=f"run `radnerf {stage} person={person}` (or `radnerf train person={person}`) first")
    folder_name, zip_name = paths.package.name, paths.package_archive.name
    clip_files = [paths.transforms("train"), paths.transforms("val"), paths.background_image, paths.regions]

    def upstream() -> dict[str, str]:
        return {paths.rel(p): sha256_file(p) for p in (head_file, torso_file, *clip_files) if p.is_file()}

    plan = StagePlan(STAGE, outputs=(folder_name, zip_name), settings={"format": FORMAT},
                     upstream=upstream, shown=(zip_name, folder_name))

    def work(w) -> dict:
        head = load_checkpoint(head_file, kind="head")  # its header is what the package records, not a model
        feature = head["settings"]["audio_features"]
        audio_manifest = read_manifest(paths.manifest(f"audio_{feature}")) or {}
        # The settings the person's features were extracted with: any audio rendered later must get the same.
        audio = audio_manifest.get("settings") or feature_settings(cfg.audio_features)
        train, val = person_splits(paths, cfg, feature)
        clip = Clip.from_splits((train, val))
        folder = w.path(folder_name)
        folder.mkdir(parents=True)
        shutil.copyfile(head_file, folder / FILES["head"])
        shutil.copyfile(torso_file, folder / FILES["torso"])
        shutil.copyfile(paths.background_image, folder / FILES["background"])
        np.save(folder / FILES["poses"], clip.poses)
        np.save(folder / FILES["eyes"], clip.eyes)
        import yaml

        (folder / FILES["config"]).write_text(yaml.safe_dump(to_container(cfg), sort_keys=False))
        info = {
            "format": FORMAT,
            "person": person,
            "image_size": [clip.width, clip.height],
            "intrinsics": [float(v) for v in clip.intrinsics],
            "fps": int(cfg.render.fps),
            "frames": len(clip),
            "audio_features": {"name": feature, "channels": int(head["audio_channels"]), "settings": audio},
            "head_from": paths.rel(head_file),
            "metrics": {"head": head.get("metrics", {})},
            "files": {role: {"name": name, "sha256": sha256_file(folder / name)} for role, name in FILES.items()},
        }
        (folder / INFO).write_text(json.dumps(info, indent=2) + "\n")
        write_zip(folder, w.path(zip_name))
        size = (w.path(zip_name)).stat().st_size
        log.info("package: %s (%.1f MB) renders %s with `radnerf render model=%s audio=...`",
                 zip_name, size / 1e6, person, paths.package_archive)
        return {"person": person, "frames": len(clip), "archive_bytes": size,
                "model_sha256": sha256_json(info["files"])}

    return run_stage(paths, plan, work, overwrite=cfg.overwrite)


def write_zip(folder: Path, out: Path) -> None:
    """``folder``'s files in a zip under ``<folder name>/``, with fixed timestamps (the same files, the same bytes)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.iterdir()):
            entry = zipfile.ZipInfo(f"{FOLDER}/{path.name}", date_time=(2020, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            z.writestr(entry, path.read_bytes())


# -- reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPackage:
    """A package opened for rendering (:func:`open_package`)."""

    root: Path
    """The package's folder (a temporary one for a zip)."""
    info: dict
    """``radnerf-model.json``."""
    clip: Clip

    @property
    def person(self) -> str:
        return str(self.info["person"])

    def file(self, role: str) -> Path:
        """The file of ``role`` (a key of :data:`FILES`)."""
        return self.root / self.info["files"][role]["name"]

    @property
    def audio_settings(self) -> dict:
        """The audio feature settings the person's features were extracted with (``AudioFeaturesConfig`` fields)."""
        return dict(self.info["audio_features"]["settings"])


@contextlib.contextmanager
def open_package(path: str | Path) -> Iterator[ModelPackage]:
    """Open a package folder, or a ``.zip`` of one (unpacked into a temporary folder while open).

    Raises:
        InputError: not a package, a newer format, a file missing or corrupt (its sha256 differs).
    """
    path = Path(path).expanduser()
    hint = "model= takes the package folder or the .zip that `radnerf package person=NAME` writes"
    if path.is_file():
        with tempfile.TemporaryDirectory(prefix="radnerf-package-") as tmp:
            try:
                with zipfile.ZipFile(path) as z:
                    z.extractall(tmp)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise InputError(f"{path} is not a readable zip ({e})", hint=hint) from None
            found = sorted(Path(tmp).rglob(INFO))
            if not found:
                raise InputError(f"{path} holds no {INFO}: it is not a radnerf model package", hint=hint)
            yield read_package(found[0].parent, origin=path)
        return
    if not path.is_dir():
        raise InputError(f"{path} does not exist", hint=hint)
    yield read_package(path)


def read_package(folder: Path, origin: Path | None = None) -> ModelPackage:
    """Check and read the package in ``folder`` (``origin``: the zip it came from, for messages)."""
    from radnerf.media.images import read_rgb

    where = origin or folder
    hint = "make it again with `radnerf package person=NAME` (or copy it again: it is damaged)"
    info_file = folder / INFO
    if not info_file.is_file():
        raise InputError(f"{where} holds no {INFO}: it is not a radnerf model package",
                         hint="model= takes the folder or .zip that `radnerf package person=NAME` writes")
    try:
        info = json.loads(info_file.read_text())
        version, files = int(info["format"]), info["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{where}: {INFO} is unreadable ({e})", hint=hint) from None
    if version > FORMAT:
        raise InputError(f"{where} is a package of format {version}; this radnerf reads up to {FORMAT}",
                         hint="upgrade radnerf (pip install -U radnerf)")
    for role in FILES:
        entry = files.get(role)
        path = folder / entry["name"] if entry else None
        if path is None or not path.is_file():
            raise InputError(f"{where} lacks its {role} file ({FILES[role]})", hint=hint)
        if sha256_file(path) != entry["sha256"]:
            raise InputError(f"{where}: {entry['name']} is corrupt (its sha256 is not the one {INFO} records)",
                             hint=hint)
    poses = np.load(folder / files["poses"]["name"]).astype(np.float32)
    eyes = np.load(folder / files["eyes"]["name"]).astype(np.float32)
    background = read_rgb(folder / files["background"]["name"])
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or eyes.shape != (len(poses),):
        raise InputError(f"{where}: poses {poses.shape} and eyes {eyes.shape} are not [K, 4, 4] and [K]", hint=hint)
    clip = Clip(poses=poses, eyes=eyes, background=background, intrinsics=np.asarray(info["intrinsics"], np.float32))
    return ModelPackage(root=folder, info=info, clip=clip)
