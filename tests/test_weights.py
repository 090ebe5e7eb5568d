"""The weights manager on temporary caches (conftest points every cache at tmp)."""

from __future__ import annotations

import hashlib
import urllib.error

import pytest

from radnerf import weights
from radnerf.errors import ConfigError, MissingWeightsError
from tests.conftest import run_cli

EVERY_MODEL = {"fan", "s3fd", "bisenet", "alexnet", "wav2vec2-esperanto", "hubert-large", "syncnet"}


def test_registry_covers_every_external_model():
    assert set(weights.REGISTRY) == EVERY_MODEL
    for s in weights.REGISTRY.values():
        assert s.licence and s.offline_alternative and s.used_by
        assert (s.url and s.filename) or s.repo_id


def test_caches_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("RADNERF_WEIGHTS", str(tmp_path / "rw"))
    assert weights.target_path(weights.spec("fan")) == tmp_path / "th" / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar"
    assert weights.target_path(weights.spec("bisenet")) == tmp_path / "rw" / "parsing_bisenet.pth"
    assert weights.target_path(weights.spec("bisenet"), str(tmp_path / "cfg")) == tmp_path / "cfg" / "parsing_bisenet.pth"


def test_missing_weight_error_says_what_to_do():
    with pytest.raises(MissingWeightsError) as e:
        weights.require("fan")
    assert "2DFAN4-11f355bf06.pth.tar" in e.value.message
    assert "radnerf weights fetch fan" in e.value.hint and "preprocess.landmarks=dlib" in e.value.hint


def test_status_lists_every_model_as_missing_on_a_fresh_cache():
    rows = weights.status()
    assert {r["name"] for r in rows} == EVERY_MODEL and not any(r["present"] for r in rows)


def test_import_a_file_without_known_hash(tmp_path):
    src = tmp_path / "parsing_bisenet.pth"
    src.write_bytes(b"x" * 1000)
    name, dest = weights.import_file(src)  # name inferred from the file name
    assert name == "bisenet" and dest.read_bytes() == src.read_bytes()
    assert weights.require("bisenet") == dest
    assert weights.verify("bisenet", dest) is None


def test_import_checks_the_known_hash(tmp_path, monkeypatch):
    src = tmp_path / "alexnet-owt-7be5be79.pth"
    src.write_bytes(b"not alexnet")
    with pytest.raises(MissingWeightsError, match="sha256 does not start with 7be5be79"):
        weights.import_file(src)
    assert weights.local_path("alexnet") is None
    # A file whose hash does match its prefix is accepted and verified.
    digest = hashlib.sha256(b"not alexnet").hexdigest()
    spec = weights.REGISTRY["alexnet"]
    monkeypatch.setitem(weights.REGISTRY, "alexnet", type(spec)(**{**spec.__dict__, "sha256_prefix": digest[:8]}))
    name, dest = weights.import_file(src)
    assert weights.verify(name, dest) is True


def test_import_hugging_face_folder(tmp_path):
    folder = tmp_path / "hubert"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"w")
    with pytest.raises(ConfigError, match="cannot tell which model"):
        weights.import_file(folder)
    name, dest = weights.import_file(folder, "hubert-large")
    assert weights.require("hubert-large") == dest and (dest / "model.safetensors").exists()
    with pytest.raises(ConfigError, match="folder that holds its config.json"):
        weights.import_file(folder / "model.safetensors", "wav2vec2-esperanto")


def test_fetch_without_network_is_a_clear_error(monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(weights.urllib.request, "urlopen", offline)
    with pytest.raises(MissingWeightsError) as e:
        weights.fetch("syncnet")
    assert "could not download" in e.value.message and "radnerf weights import" in e.value.hint
    assert not weights.target_path(weights.spec("syncnet")).exists()


def test_fetch_hugging_face_offline_is_a_clear_error():
    # HF_HUB_OFFLINE=1 (conftest) makes the hub refuse at once, as no network would.
    with pytest.raises(MissingWeightsError, match="could not download facebook/hubert-large-ls960-ft"):
        weights.fetch("hubert-large")


def test_cli_weights_list_and_import(tmp_path):
    out = run_cli("weights", "list")
    assert out.returncode == 0
    for name in EVERY_MODEL:
        assert name in out.stdout
    assert "missing" in out.stdout
    src = tmp_path / "syncnet_v2.model"
    src.write_bytes(b"s" * 10)
    out = run_cli("weights", "import", str(src))
    assert out.returncode == 0 and "imported syncnet" in out.stdout
    out = run_cli("weights", "list")
    assert any(line.startswith("syncnet") and "present" in line for line in out.stdout.splitlines())
    out = run_cli("weights", "import", str(tmp_path / "nothing.pth"))
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_cli_weights_actions_honour_paths_weights(tmp_path):
    # import and verify must use the folder the stages read (cfg.paths.weights),
    # not the default cache, when the override is given.
    folder = tmp_path / "team-weights"
    src = tmp_path / "syncnet_v2.model"
    src.write_bytes(b"s" * 10)
    out = run_cli("weights", "import", str(src), f"paths.weights={folder}")
    assert out.returncode == 0, out.stderr
    assert weights.local_path("syncnet", str(folder)) is not None
    out = run_cli("weights", "verify", "syncnet", f"paths.weights={folder}")
    assert out.returncode == 0 and str(folder) in out.stdout
    out = run_cli("weights", "list", f"paths.weights={folder}")
    assert any(line.startswith("syncnet") and "present" in line for line in out.stdout.splitlines())
