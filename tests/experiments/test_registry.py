"""The model registry: each new package a version, ``@champion`` moved only by a better one, the decision kept."""

from __future__ import annotations

import shutil
import zipfile

import pytest

from radnerf.config import RegistryConfig
from radnerf.errors import ConfigError
from radnerf.experiments.registry import compare
from tests.talk.conftest import RATE, SECONDS, decoded_frames, speech_like, trained, wav  # noqa: F401 (fixtures)
from tests.talk.test_package import packaged  # noqa: F401

GOALS = ["psnr:max", "lmd:min"]


def test_the_alias_moves_only_to_a_version_at_least_as_good_on_all_and_better_on_one():
    assert compare({"psnr": 20.0, "lmd": 2.0}, None, GOALS) == (True, "first version: psnr 20, lmd 2")
    assert compare({"psnr": 20.0}, None, GOALS) == (True, "first version: psnr 20, no lmd")  # better than none
    takes, why = compare({"psnr": 21.0, "lmd": 1.5}, {"psnr": 20.0, "lmd": 2.0}, GOALS)
    assert takes and why == "beats the champion: psnr 21 > 20; lmd 1.5 < 2"
    takes, why = compare({"psnr": 21.0, "lmd": 2.5}, {"psnr": 20.0, "lmd": 2.0}, GOALS)
    assert not takes and why == "worse on lmd: psnr 21 > 20; lmd 2.5 > 2"
    assert compare({"psnr": 20.0, "lmd": 2.0}, {"psnr": 20.0, "lmd": 2.0}, GOALS)[0] is False  # a tie is no better
    takes, why = compare({"psnr": 25.0}, {"psnr": 20.0, "lmd": 2.0}, GOALS)
    assert not takes and why == "not compared: this evaluation has no lmd"
    assert compare({"psnr": 21.0, "lmd": 2.0}, {"psnr": 20.0}, GOALS)[0]  # the champion predates lmd


def test_compare_on_names_a_direction():
    with pytest.raises(ConfigError, match="'psnr' is not <metric>:max"):
        RegistryConfig(compare_on=["psnr"])


def _another(archive, tmp_path, tag: str):
    """The same model as a different package file (another sha256): a zip comment changes the bytes only."""
    out = tmp_path / f"{tag}.radnerf.zip"
    shutil.copyfile(archive, out)
    with zipfile.ZipFile(out, "a") as z:
        z.comment = tag.encode()
    return out


@pytest.mark.slow
def test_versions_register_and_the_champion_moves_only_when_beaten(packaged, tmp_path, monkeypatch):  # noqa: F811
    import mlflow
    from mlflow import MlflowClient

    from radnerf.experiments.registry import DECISION_TAG, register

    person, _ = packaged
    archive = person.root / "synth.radnerf.zip"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = RegistryConfig(compare_on=GOALS)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the fluent API's store for this test only
    mlflow.set_experiment("registry-test")
    client = MlflowClient(uri)

    first = register(uri, archive, "synth", {"psnr": 20.0, "lmd": 2.0, "psnr_no_audio": 19.0}, cfg)
    assert (first.name, first.version, first.moved) == ("radnerf-synth", "1", True)
    again = register(uri, archive, "synth", {"psnr": 20.0, "lmd": 2.0}, cfg)  # the same package: no new version
    assert (again.version, again.moved) == ("1", True)
    assert again.reason == "this package is version 1 already; it holds @champion"

    worse = register(uri, _another(archive, tmp_path, "v2"), "synth", {"psnr": 21.0, "lmd": 2.5}, cfg)
    assert (worse.version, worse.moved, worse.champion_before) == ("2", False, "1")
    assert str(client.get_model_version_by_alias("radnerf-synth", "champion").version) == "1"
    assert client.get_model_version("radnerf-synth", "2").tags[DECISION_TAG].startswith("kept: worse on lmd")

    better = register(uri, _another(archive, tmp_path, "v3"), "synth", {"psnr": 21.0, "lmd": 1.5}, cfg)
    assert (better.version, better.moved) == ("3", True)
    champion = client.get_model_version_by_alias("radnerf-synth", "champion")
    assert str(champion.version) == "3" and float(champion.tags["metric.lmd"]) == 1.5
    assert len(client.search_model_versions("name='radnerf-synth'")) == 3

    # What a serving system does: load the champion by its alias, with the training data gone.
    shutil.rmtree(person.root)
    monkeypatch.chdir(tmp_path)
    model = mlflow.pyfunc.load_model("models:/radnerf-synth@champion")
    videos = model.predict({"waveform": speech_like(1.0, seed=3).tolist(), "rate": RATE, "out_dir": str(tmp_path)})
    assert len(decoded_frames(videos[0])) == 25
