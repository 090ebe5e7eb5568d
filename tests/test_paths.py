from __future__ import annotations

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
