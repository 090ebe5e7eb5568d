"""A person's model package as an MLflow pyfunc: speech in, a talking video out.

::

    info = log_package(paths.package_archive, name="talking-portrait")          # inside an MLflow run
    model = mlflow.pyfunc.load_model(info.model_uri)                              # anywhere radnerf is installed
    model.predict({"audio": ["hello.wav"]})                                       # -> ["renders/hello.mp4"]
    model.predict({"waveform": samples, "rate": 16000, "out_dir": "clips", "overrides": ["eyes=auto"]})

The package zip (:mod:`radnerf.talk.package`) is the pyfunc's only artifact, so the loaded model renders
with none of the person's training data; rendering is :func:`radnerf.talk.render.render`'s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow.pyfunc
import numpy as np

from radnerf import __version__
from radnerf.errors import InputError


class TalkingPortrait(mlflow.pyfunc.PythonModel):
    """The pyfunc of a model package. ``predict`` takes audio files (``{"audio": [paths]}``, a list of paths,
    a path, or a DataFrame with an ``audio`` column) or one waveform (``{"waveform": [S] floats, "rate": Hz}``)
    and returns the paths of the rendered MP4s, one per input, under the input's ``out_dir`` (default
    ``renders/`` in the working folder); its ``overrides``: more ``key=value`` render settings (``eyes=auto``).
    (In the input, not in MLflow's ``params``: those reach a model only through a logged signature, and one
    input schema cannot cover both files and waveforms.)"""

    def load_context(self, context) -> None:
        self.package = Path(context.artifacts["package"])

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would infer a schema from them
        from radnerf.config import load_config
        from radnerf.media import write_wav
        from radnerf.talk import render

        options = model_input if isinstance(model_input, dict) else {}
        out_dir = Path(str(options.get("out_dir") or Path.cwd() / "renders")).expanduser()
        overrides = [str(o) for o in options.get("overrides") or []]
        with tempfile.TemporaryDirectory() as tmp:
            audios = _audio_inputs(model_input, Path(tmp), write_wav)
            videos = []
            for audio in audios:
                cfg = load_config([f"package={self.package}", f"audio={audio}", f"out={out_dir / (audio.stem + '.mp4')}",
                                   *overrides])
                videos.append(str(render(cfg).video))
        return videos


def _audio_inputs(model_input, tmp: Path, write_wav) -> list[Path]:
    """The audio files a ``predict`` input names (a waveform is written to ``tmp`` first)."""
    if hasattr(model_input, "to_dict") and hasattr(model_input, "columns"):  # a pandas DataFrame
        model_input = {k: list(v.values()) for k, v in model_input.to_dict().items()}
    if isinstance(model_input, dict) and "waveform" in model_input:
        rate = model_input.get("rate")
        rate = int(rate[0] if isinstance(rate, (list, tuple, np.ndarray)) else rate or 0)
        if rate <= 0:
            raise InputError("a waveform needs its sample rate", hint='predict({"waveform": samples, "rate": 16000})')
        samples = np.asarray(model_input["waveform"], np.float32).reshape(-1)
        path = tmp / "speech.wav"
        write_wav(path, samples, rate)
        return [path]
    if isinstance(model_input, dict):
        model_input = model_input.get("audio")
    if isinstance(model_input, (str, Path)):
        model_input = [model_input]
    if not model_input:
        raise InputError("no audio to render", hint='predict({"audio": ["speech.wav"]}) or {"waveform": ..., "rate": ...}')
    paths = [Path(str(a)).expanduser() for a in model_input]
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path} does not exist", hint="audio paths must be readable where the model runs")
    return paths


def log_package(archive: str | Path, name: str = "talking-portrait", registered_model_name: str | None = None):
    """Log a model package zip as a :class:`TalkingPortrait` pyfunc in the active MLflow run (MLflow 3
    ``name=``); returns MLflow's ``ModelInfo`` (``model_uri`` loads it back)."""
    archive = Path(archive)
    if not archive.is_file():
        raise InputError(f"{archive} does not exist", hint="make it with `radnerf package person=NAME`")
    return mlflow.pyfunc.log_model(name=name, python_model=TalkingPortrait(), artifacts={"package": str(archive)},
                                   pip_requirements=[f"radnerf=={__version__}"],
                                   registered_model_name=registered_model_name)
