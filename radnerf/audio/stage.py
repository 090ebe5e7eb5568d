"""The ``audio`` stage: ``<person>/aud.wav`` -> ``<person>/aud_<name>.npy`` (``[N, 16, C]``).

Skips when the output exists and its manifest records the same ``aud.wav``
hash, feature settings and code (radnerf's version, :data:`ALGORITHM_VERSION`
and the versions of the libraries that compute the backend's numbers). Each
feature file has its own manifest (``manifests/audio_<name>.json``), so
extracting another backend does not invalidate the first.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from radnerf import __version__
from radnerf.audio.backends import backend_libraries, feature_name, make_backend, manifest_stage
from radnerf.audio.config import AudioFeaturesConfig
from radnerf.audio.extract import load_input, write_features
from radnerf.audio.windows import SAMPLE_RATE, num_frames_for
from radnerf.config import to_container
from radnerf.errors import InputError, StageOutputExistsError
from radnerf.paths import PersonPaths
from radnerf.stage_io import (
    StageWriter,
    fingerprint,
    foreign_outputs,
    library_versions,
    person_lock,
    read_manifest,
    sha256_file,
    up_to_date,
)

log = logging.getLogger(__name__)

ALGORITHM_VERSION = 1
"""Bumped when the windowing, chunking or a backend's own code changes the numbers in ``aud_<name>.npy``."""


def feature_settings(fc: AudioFeaturesConfig) -> dict:
    """The settings that change the numbers in ``aud_<name>.npy`` (device and streaming do not)."""
    s = to_container(fc)
    keep = ["backend", "window", "fps", "chunk_seconds", "context_seconds", "lookahead_seconds"]
    if s["backend"] == "wav2vec2":
        keep.append("wav2vec2_checkpoint")
    elif s["backend"] == "hubert":
        keep += ["hubert_checkpoint", "hubert_layer"]
    else:
        keep.append("phone_beam")
    return {k: s[k] for k in keep}


def feature_path(cfg: Any) -> Path:
    """``<artifacts>/<person>/aud_<name>.npy`` for the root config ``cfg``."""
    return PersonPaths.for_person(cfg.paths.artifacts, cfg.person).audio_features(feature_name(cfg.audio_features))


def extract_person_features(cfg: Any) -> Path:
    """Stage function: write the person's per-frame audio windows; returns the ``.npy`` path.

    Reads ``cfg.person``, ``cfg.paths.artifacts``, ``cfg.paths.weights`` and
    ``cfg.overwrite`` (both optional) and ``cfg.audio_features`` of the root config.

    Raises:
        InputError: the person has no ``aud.wav`` (ingest has not run).
        StageOutputExistsError: the feature file exists and radnerf did not write it.
    """
    fc = cfg.audio_features
    name = feature_name(fc)
    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    out_name = paths.audio_features(name).name
    stage = manifest_stage(fc)
    wav = paths.audio_wav
    if not wav.is_file():
        raise InputError(f"{wav} does not exist", hint=f"run `radnerf ingest person={cfg.person}` first")
    settings = feature_settings(fc)
    audio_sha = sha256_file(wav)
    libraries = library_versions(*backend_libraries(fc))
    fp = fingerprint(stage, {"aud.wav": audio_sha}, settings, ALGORITHM_VERSION, libraries)
    with person_lock(paths.root):
        if up_to_date(paths.root, stage, fp, [out_name]):
            log.info("audio: %s is up to date, nothing to do", paths.root / out_name)
            return paths.root / out_name
        foreign = foreign_outputs(paths.root, stage, [out_name])
        if foreign and not getattr(cfg, "overwrite", False):
            raise StageOutputExistsError(
                f"{paths.root / out_name} exists and radnerf did not write it",
                hint="use it as it is, or add overwrite=true to recompute it",
            )
        started = time.time()
        audio = load_input(wav, window=fc.window)
        ingest = read_manifest(paths.manifest("ingest")) or {}
        frames = int(ingest.get("frames") or num_frames_for(len(audio), fc.fps))
        if abs(frames - len(audio) / (SAMPLE_RATE / fc.fps)) > 1:
            log.warning("audio: aud.wav lasts %.2f s but the video has %d frames; padding/cutting to the frames",
                        len(audio) / SAMPLE_RATE, frames)
        backend = make_backend(fc, getattr(cfg.paths, "weights", None))
        with StageWriter(paths.root, stage, [out_name]) as w:
            shape = write_features(w.path(out_name), audio, fc, frames, backend)
            w.manifest.update(
                {
                    "person": cfg.person,
                    "fingerprint": fp,
                    "inputs": {"aud.wav": {"sha256": audio_sha, "samples": len(audio)}},
                    "settings": settings,
                    "shape": list(shape),
                    "feature_rate": 50,
                    "tools": {"radnerf": __version__, **libraries},
                    "seconds": round(time.time() - started, 3),
                }
            )
        log.info("audio: %s %s in %.1f s", out_name, shape, time.time() - started)
        return paths.root / out_name
