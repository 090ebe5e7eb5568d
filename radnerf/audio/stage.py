"""The ``audio`` stage: ``<person>/aud.wav`` -> ``<person>/aud_<name>.npy`` (``[N, 16, C]``).

Skips when the output exists and its manifest records the same ``aud.wav``
hash, feature settings and code (radnerf's version, :data:`ALGORITHM_VERSION`
and the versions of the libraries that compute the backend's numbers). Each
feature file has its own manifest (``manifests/audio_<name>.json``), so
extracting another backend does not invalidate the first. A feature file
radnerf did not write (a RAD-NeRF dataset's ``aud_eo.npy``) is used as it is
when its shape fits the person's frames and the backend, and refused otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from radnerf import __version__
from radnerf.audio.backends import backend_libraries, feature_name, make_backend, manifest_stage
from radnerf.audio.config import AudioFeaturesConfig
from radnerf.audio.extract import load_input, write_features
from radnerf.audio.windows import SAMPLE_RATE, num_frames_for
from radnerf.config import RadNerfConfig, to_container
from radnerf.errors import InputError
from radnerf.formats.manifests import read_manifest
from radnerf.paths import PersonPaths
from radnerf.stage_io import StagePlan, StageResult, StageWriter, library_versions, run_stage, sha256_file

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


def feature_path(cfg: RadNerfConfig) -> Path:
    """``<artifacts>/<person>/aud_<name>.npy`` for the root config ``cfg``."""
    return PersonPaths.for_person(cfg.paths.artifacts, cfg.person).audio_features(feature_name(cfg.audio_features))


def _frames(paths: PersonPaths, fps: int, audio_samples: Callable[[], int]) -> int:
    """The person's frame count: ingest's, else as many as ``aud.wav`` lasts (``audio_samples()`` long)."""
    ingest = read_manifest(paths.manifest("ingest")) or {}
    return int(ingest.get("frames") or num_frames_for(audio_samples(), fps))


def _accept_foreign(cfg: RadNerfConfig, paths: PersonPaths, out_name: str):
    """The stage's ``accept_foreign``: a feature file of another tool is used when its shape is
    ``[frames, window, the backend's feature dim]``; otherwise the shape that does not fit is the reason."""
    fc = cfg.audio_features

    def accept(missing: list[str]) -> str | None:
        path = paths.root / out_name
        try:
            shape = tuple(np.load(path, mmap_mode="r").shape)
        except (OSError, ValueError) as e:
            return f"not a .npy array: {e}"
        from radnerf.media import read_wav

        frames = _frames(paths, fc.fps, lambda: len(read_wav(paths.audio_wav)[0]))
        if len(shape) != 3 or shape[:2] != (frames, fc.window):
            return f"shape {list(shape)} does not fit [{frames}, {fc.window}, C] ({frames} frames, audio_features.window={fc.window})"
        dim = make_backend(fc, cfg.paths.weights).dim
        if shape[2] != dim:
            return f"shape {list(shape)} does not fit [{frames}, {fc.window}, {dim}] (the {fc.backend} backend's {dim} features)"
        return None

    return accept


def extract_person_features(cfg: RadNerfConfig) -> StageResult:
    """Stage function: write the person's per-frame audio windows ``aud_<name>.npy``.

    Reads ``cfg.person``, ``cfg.paths.artifacts``, ``cfg.paths.weights``,
    ``cfg.overwrite`` and ``cfg.audio_features`` of the root config.

    Returns:
        The stage's result; its ``output`` is the ``.npy`` file.

    Raises:
        InputError: the person has no ``aud.wav`` (ingest has not run).
        StageOutputExistsError: the feature file exists, radnerf did not write it and its shape does not fit.
    """
    fc = cfg.audio_features
    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    out_name = paths.rel(feature_path(cfg))
    wav = paths.audio_wav
    if not wav.is_file():
        raise InputError(f"{wav} does not exist", hint=f"run `radnerf ingest person={cfg.person}` first")
    libraries = library_versions(*backend_libraries(fc))
    plan = StagePlan(
        manifest_stage(fc), [out_name],
        settings=feature_settings(fc),
        upstream=lambda: {"aud.wav": sha256_file(wav)},
        algorithm=ALGORITHM_VERSION,
        libraries=libraries,
    )

    def work(w: StageWriter) -> dict:
        audio = load_input(wav, window=fc.window)
        frames = _frames(paths, fc.fps, lambda: len(audio))
        if abs(frames - len(audio) / (SAMPLE_RATE / fc.fps)) > 1:
            log.warning("audio: aud.wav lasts %.2f s but the video has %d frames; padding/cutting to the frames",
                        len(audio) / SAMPLE_RATE, frames)
        backend = make_backend(fc, cfg.paths.weights)
        shape = write_features(w.path(out_name), audio, fc, frames, backend)
        log.info("audio: %s %s", out_name, shape)
        return {
            "person": cfg.person,
            "shape": list(shape),
            "feature_rate": 50,
            "tools": {"radnerf": __version__, **libraries},
        }

    return run_stage(paths, plan, work, overwrite=cfg.overwrite, accept_foreign=_accept_foreign(cfg, paths, out_name))
