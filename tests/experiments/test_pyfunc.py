"""The model package as an MLflow pyfunc: logged, loaded back where no training data is, made to speak."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from radnerf.errors import InputError
from tests.talk.conftest import RATE, SECONDS, decoded_frames, speech_like, trained, wav  # noqa: F401 (fixtures)
from tests.talk.test_package import packaged  # noqa: F401


def test_a_logged_package_loads_back_and_renders_with_the_artifacts_gone(packaged, make_cfg, wav,  # noqa: F811
                                                                          tmp_path, monkeypatch):
    import mlflow

    from radnerf.experiments.pyfunc import log_package

    person, _ = packaged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # this test's store only
    mlflow.set_experiment("pyfunc-test")
    with mlflow.start_run():
        info = log_package(person.root / "synth.radnerf.zip", registered_model_name="synth-portrait")
    shutil.rmtree(tmp_path / "artifacts")  # the person's data and checkpoints are gone
    monkeypatch.chdir(tmp_path)

    model = mlflow.pyfunc.load_model("models:/synth-portrait/1")
    assert model.metadata.model_uuid == info.model_uuid
    out = tmp_path / "clips"
    videos = model.predict({"audio": [str(wav)], "out_dir": str(out)})
    assert videos == [str(out / "speech.mp4")]
    assert len(decoded_frames(videos[0])) == round(SECONDS * 25)

    waveform = model.predict({"waveform": speech_like(1.0, seed=2).tolist(), "rate": RATE, "out_dir": str(out),
                              "overrides": ["eyes=open"]})
    assert len(decoded_frames(waveform[0])) == 25
    with pytest.raises(InputError, match="sample rate"):
        model.predict({"waveform": np.zeros(100).tolist()})
    with pytest.raises(InputError, match="does not exist"):
        model.predict({"audio": [str(tmp_path / "nothing.wav")]})
