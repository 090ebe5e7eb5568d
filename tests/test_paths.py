from __future__ import annotations

from pathlib import Path

import pytest

from radnerf.errors import ConfigError
from radnerf.paths import PersonPaths, validate_person


@pytest.mark.parametrize("name", ["alice", "Bob_2", "obama-2020", "a.b", "x" * 64])
def test_valid_person_names(name):
    assert validate_person(name) == name


@pytest.mark.parametrize("name", ["", None, "../x", "a/b", "a\\\\b", "..", ".hidden", "x" * 65, "a b", "é"])
def test_invalid_person_names_are_refused(name):
    with pytest.raises(ConfigError):
        validate_person(name)


def test_rad_nerf_names(tmp_path):
    p = PersonPaths.for_person(tmp_path, "alice")
    assert p.frame(12) == tmp_path / "alice" / "ori_imgs" / "12.jpg"
    assert p.audio_wav.name == "aud.wav"
    assert p.manifest("ingest") == tmp_path / "alice" / "manifests" / "ingest.json"


def test_model_eval_and_render_locations():
    from radnerf.paths import PersonPaths

    p = PersonPaths(Path("/a/alice"))
    assert p.checkpoint("head", 1200) == Path("/a/alice/head/checkpoints/step_0001200.pt")
    assert sorted([p.checkpoint("head", 999), p.checkpoint("head", 10000)])[0].name == "step_0000999.pt"
    assert p.final_weights("torso") == Path("/a/alice/torso/torso.pt") and p.torso != p.torso_imgs
    assert p.metrics == Path("/a/alice/eval/metrics.json")
    assert p.render_video("musetalk") == Path("/a/alice/renders/musetalk.mp4")
    assert p.rel(p.background_image) == "bc.jpg" and p.rel(p.parsing_image(3)) == "parsing/3.png"
    assert p.final_weights("lips") == Path("/a/alice/lips/lips.pt")
    with pytest.raises(ValueError):
        p.model_dir("mouth")
