"""The stage function on a person folder laid out as ingest leaves it."""

import json
from dataclasses import dataclass, field

import numpy as np
import pytest

from radnerf.audio import AudioFeaturesConfig, extract_person_features, feature_path
from radnerf.config import PathsConfig
from radnerf.errors import InputError, MissingWeightsError, StageOutputExistsError
from radnerf.media import write_wav
from tests.audio.audio_helpers import EnergyBackend


@dataclass
class RootConfig:
    """The fields of the root config the stage reads."""

    person: str = "alice"
    overwrite: bool = False
    paths: PathsConfig = field(default_factory=PathsConfig)
    audio_features: AudioFeaturesConfig = field(default_factory=AudioFeaturesConfig)


def ingested_person(tmp_path):
    """``alice`` with 30 frames' worth of aud.wav and an ingest manifest; the config that names her."""
    cfg = RootConfig(paths=PathsConfig(artifacts=str(tmp_path / "artifacts")))
    root = tmp_path / "artifacts" / "alice"
    root.mkdir(parents=True)
    frames = 30
    x = np.random.default_rng(0).standard_normal(frames * 640).astype(np.float32) * 0.1
    write_wav(root / "aud.wav", x, 16000)
    (root / "manifests").mkdir()
    (root / "manifests" / "ingest.json").write_text(json.dumps({"frames": frames}))
    return cfg, root


@pytest.fixture
def person(tmp_path, monkeypatch):
    cfg, root = ingested_person(tmp_path)
    built = []

    def fake_backend(fc, weights_dir=None):
        built.append(fc.backend)
        return EnergyBackend()

    monkeypatch.setattr("radnerf.audio.stage.make_backend", fake_backend)
    return cfg, root, built


def test_writes_windows_and_manifest_then_skips(person):
    cfg, root, built = person
    res = extract_person_features(cfg)
    out = res.output
    assert out == root / "aud_ph.npy" == feature_path(cfg) and res.stage == "audio_ph" and not res.skipped
    feats = np.load(out)
    assert feats.shape == (30, 16, 2) and feats.dtype == np.float32
    manifest = json.loads((root / "manifests" / "audio_ph.json").read_text())
    assert manifest["shape"] == [30, 16, 2] and manifest["settings"]["backend"] == "offline"
    assert not list((root / ".staging").iterdir())  # nothing left behind
    mtime = out.stat().st_mtime_ns
    again = extract_person_features(cfg)
    assert again.output == out and again.skipped and built == ["offline"]  # unchanged inputs: no work
    assert out.stat().st_mtime_ns == mtime


def test_changed_settings_or_audio_recompute(person):
    cfg, root, built = person
    extract_person_features(cfg)
    cfg.audio_features.context_seconds = 0.3
    extract_person_features(cfg)
    assert len(built) == 2
    cfg.audio_features.device = "cpu"  # does not change the numbers
    extract_person_features(cfg)
    assert len(built) == 2
    write_wav(root / "aud.wav", np.zeros(30 * 640, np.float32), 16000)
    extract_person_features(cfg)
    assert len(built) == 3
    assert np.all(np.load(root / "aud_ph.npy")[:, :, 0] < -10)


def test_matches_library_api(person):
    from radnerf.audio import extract_features

    cfg, root, _ = person
    out = np.load(extract_person_features(cfg).output)
    np.testing.assert_array_equal(out, extract_features(root / "aud.wav", cfg.audio_features, backend=EnergyBackend()))


def test_foreign_file_is_not_replaced_without_overwrite(person):
    cfg, root, _ = person
    np.save(root / "aud_ph.npy", np.zeros((1, 16, 2), np.float32))
    with pytest.raises(StageOutputExistsError, match=r"shape \[1, 16, 2\] does not fit"):
        extract_person_features(cfg)
    cfg.overwrite = True
    assert np.load(extract_person_features(cfg).output).shape == (30, 16, 2)


def test_foreign_file_that_fits_is_used_as_it_is(person):
    """A RAD-NeRF dataset's feature file of the right shape: adopted, never recomputed without overwrite."""
    cfg, root, built = person
    theirs = np.random.default_rng(1).standard_normal((30, 16, 2)).astype(np.float32)
    np.save(root / "aud_ph.npy", theirs)
    res = extract_person_features(cfg)
    assert res.adopted and res.output == root / "aud_ph.npy"
    np.testing.assert_array_equal(np.load(res.output), theirs)
    assert json.loads((root / "manifests" / "audio_ph.json").read_text())["imported"] is True
    assert extract_person_features(cfg).adopted
    np.save(root / "aud_ph.npy", np.zeros((30, 16, 5), np.float32))  # another backend's features
    with pytest.raises(StageOutputExistsError, match=r"shape \[30, 16, 5\] does not fit \[30, 16, 2\]"):
        extract_person_features(cfg)


def test_needs_ingest_first(tmp_path):
    cfg = RootConfig(person="bob", paths=PathsConfig(artifacts=str(tmp_path)))
    with pytest.raises(InputError, match="radnerf ingest person=bob"):
        extract_person_features(cfg)


def test_accepts_a_composed_omegaconf_config(person):
    """The CLI and flows pass the composed Hydra config (a DictConfig), not the dataclass."""
    from omegaconf import OmegaConf

    cfg, root, _ = person
    out = extract_person_features(OmegaConf.structured(cfg)).output
    assert np.load(out).shape == (30, 16, 2)
    manifest = json.loads((root / "manifests" / "audio_ph.json").read_text())
    assert manifest["settings"]["window"] == 16


def test_real_offline_backend_on_ingested_speech(tmp_path, speech_8s):
    """No fakes: the default config on an ingest-shaped folder gives RAD-NeRF-shaped windows."""
    root = tmp_path / "carol"
    root.mkdir()
    x = speech_8s[: 640 * 100]  # 100 frames, 4 s
    write_wav(root / "aud.wav", x, 16000)
    cfg = RootConfig(person="carol", paths=PathsConfig(artifacts=str(tmp_path)))
    out = np.load(extract_person_features(cfg).output)
    assert out.shape == (100, 16, 53)
    phones = out[:, 8, :41]
    np.testing.assert_allclose(phones.sum(1), 1.0, atol=1e-6)
    assert (phones[:, 0] < 1).mean() > 0.5  # speech, not silence


def test_new_code_versions_recompute(person, monkeypatch):
    """A new radnerf, a new audio algorithm or a new phone decoder can change the numbers: redo aud_ph.npy."""
    import importlib.metadata

    import radnerf
    import radnerf.audio.stage

    cfg, root, built = person
    extract_person_features(cfg)
    installed = importlib.metadata.version("pocketsphinx")
    assert json.loads((root / "manifests" / "audio_ph.json").read_text())["tools"]["pocketsphinx"] == installed
    real_version = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "999.0" if name == "pocketsphinx" else real_version(name)
    )
    extract_person_features(cfg)
    assert len(built) == 2
    extract_person_features(cfg)
    assert len(built) == 2  # the same decoder again: nothing to do
    monkeypatch.setattr(radnerf, "__version__", "999.0")
    extract_person_features(cfg)
    assert len(built) == 3
    monkeypatch.setattr(radnerf.audio.stage, "ALGORITHM_VERSION", radnerf.audio.stage.ALGORITHM_VERSION + 1)
    extract_person_features(cfg)
    assert len(built) == 4



def test_transformers_checkpoint_from_paths_weights(tmp_path, monkeypatch, tiny_checkpoints, hf_offline):
    """``paths.weights`` is where the weights manager put the HuBERT checkpoint: the stage finds it there."""
    import huggingface_hub.constants

    from radnerf import weights

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # not the machine's copy
    monkeypatch.setenv("RADNERF_WEIGHTS", str(tmp_path / "default-cache"))
    folder = tmp_path / "my-weights"
    weights.import_file(tiny_checkpoints["hubert"], "hubert-large", str(folder))
    cfg, root = ingested_person(tmp_path)
    cfg.audio_features = AudioFeaturesConfig(backend="hubert", chunk_seconds=1.0)
    with pytest.raises(MissingWeightsError, match="hubert-large"):
        extract_person_features(cfg)
    cfg.paths.weights = str(folder)
    out = extract_person_features(cfg).output
    assert out == root / "aud_hu.npy" and np.load(out).shape == (30, 16, 16)
    tools = json.loads((root / "manifests" / "audio_hu.json").read_text())["tools"]
    assert tools["transformers"] and tools["torch"]
