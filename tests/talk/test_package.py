"""The model package: a trained person in one folder / zip that renders with no training data present."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from radnerf.errors import ConfigError, InputError
from tests.talk.conftest import TINY, decoded_frames


@pytest.fixture
def packaged(trained, make_cfg):
    """The synthetic person with head and torso trained, then packaged: ``(person, package result)``."""
    from radnerf.talk.package import package
    from radnerf.train.torso import train_torso

    person, _ = trained
    cfg = make_cfg(*TINY)
    with pytest.raises(InputError, match="no trained torso") as e:
        package(cfg)  # a package renders with the trained torso
    assert "radnerf train-torso person=synth" in e.value.hint
    train_torso(cfg)
    return person, package(cfg)


def test_a_package_renders_the_same_video_with_the_persons_artifacts_deleted(packaged, make_cfg, wav, tmp_path,
                                                                               monkeypatch):
    from radnerf.talk import render

    person, result = packaged
    archive = person.root / "synth.radnerf.zip"
    assert not result.skipped and archive.is_file() and (person.root / "package" / "head.pt").is_file()
    from_person = render(make_cfg(*TINY, f"audio={wav}"))
    theirs = decoded_frames(from_person.video)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(archive, elsewhere)
    shutil.rmtree(tmp_path / "artifacts")  # no frames, no transforms, no features, no checkpoints
    monkeypatch.chdir(elsewhere)
    video = render(make_cfg(f"package={elsewhere / archive.name}", f"audio={wav}"))
    assert video.video == elsewhere / "renders" / "synth" / "speech.mp4"
    ours = decoded_frames(video.video)
    assert len(ours) == len(theirs) == from_person.frames
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(ours, theirs)) <= 1
    again = render(make_cfg(f"package={elsewhere / archive.name}", f"audio={wav}"))
    assert again.skipped

    # The package's own folder works as well as its zip, and out= puts the video where asked.
    with zipfile.ZipFile(elsewhere / archive.name) as z:
        z.extractall(elsewhere / "unzipped")
    out = elsewhere / "clips" / "hello.mp4"
    folder = render(make_cfg(f"package={elsewhere / 'unzipped' / 'package'}", f"audio={wav}", f"out={out}"))
    assert folder.video == out and len(decoded_frames(out)) == from_person.frames


def test_packaging_again_changes_nothing_and_gives_the_same_bytes(packaged, make_cfg):
    from radnerf.talk.package import package

    person, _ = packaged
    archive = person.root / "synth.radnerf.zip"
    first = archive.read_bytes()
    assert package(make_cfg(*TINY)).skipped
    archive.unlink()
    assert not package(make_cfg(*TINY)).skipped  # a missing output is made again ...
    assert archive.read_bytes() == first  # ... byte for byte (fixed timestamps, sorted entries)
    info = json.loads((person.root / "package" / "radnerf-model.json").read_text())
    assert info["person"] == "synth" and info["audio_features"]["name"] == "ph"
    assert info["audio_features"]["channels"] == 53 and info["frames"] == 15


def test_a_damaged_or_foreign_package_is_refused_with_what_to_do(packaged, make_cfg, wav, tmp_path):
    from radnerf.talk import render

    person, _ = packaged
    folder = tmp_path / "copy"
    shutil.copytree(person.root / "package", folder)
    with pytest.raises(InputError, match="no audio of its own"):
        render(make_cfg(f"package={folder}"))
    with pytest.raises(ConfigError, match="torso images"):
        render(make_cfg(f"package={folder}", f"audio={wav}", "render.torso=clip"))

    head = folder / "head.pt"
    data = bytearray(head.read_bytes())
    data[len(data) // 2] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(InputError, match="head.pt is corrupt") as e:
        render(make_cfg(f"package={folder}", f"audio={wav}"))
    assert "radnerf package" in e.value.hint

    not_zip = tmp_path / "model.zip"
    not_zip.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match="not a readable zip"):
        render(make_cfg(f"package={not_zip}", f"audio={wav}"))
    with pytest.raises(InputError, match="does not exist"):
        render(make_cfg(f"package={tmp_path / 'nowhere'}", f"audio={wav}"))
    (folder / "radnerf-model.json").write_text(json.dumps({"format": 99, "files": {}}))
    with pytest.raises(InputError, match="format 99"):
        render(make_cfg(f"package={folder}", f"audio={wav}"))


def test_model_equals_path_on_the_command_line_names_a_package():
    from radnerf.cli import package_alias

    assert package_alias(["model=radnerf", "model=alice.radnerf.zip", "audio=x.wav", "model.audio=false"]) == [
        "model=radnerf", "package=alice.radnerf.zip", "audio=x.wav", "model.audio=false"]
