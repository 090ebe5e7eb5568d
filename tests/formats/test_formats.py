"""RAD-NeRF's files: what the readers accept and what they refuse, naming why."""

from __future__ import annotations

import json

import numpy as np
import pytest

from radnerf.errors import InputError
from radnerf.formats.regions import COLUMNS, read_regions, write_regions
from radnerf.formats.transforms import read_transforms, split_index


def test_transforms_reader_names_what_is_wrong(tmp_path):
    good = {"focal_len": 1000.0, "cx": 256.0, "cy": 256.0,
            "frames": [{"img_id": 0, "aud_id": 0, "transform_matrix": np.eye(4).tolist()}]}
    (tmp_path / "t.json").write_text(json.dumps(good))
    assert read_transforms(tmp_path / "t.json")["frames"][0]["img_id"] == 0
    bad = dict(good, frames=[{"img_id": 0, "transform_matrix": [[1, 0, 0]]}])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match="frame entry 0: transform_matrix is not 4x4"):
        read_transforms(tmp_path / "bad.json")
    (tmp_path / "nokeys.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(InputError, match="missing cx, cy, focal_len"):
        read_transforms(tmp_path / "nokeys.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        read_transforms(tmp_path / "broken.json")
    with pytest.raises(InputError, match="does not exist"):
        read_transforms(tmp_path / "absent.json")
    assert split_index(11) == 10 and split_index(200) == 181  # RAD-NeRF: the last 1/11 is val


def test_regions_round_trip_and_refusal(tmp_path):
    row = {c: i for i, c in enumerate(COLUMNS)} | {"eye_area": 0.25}
    write_regions(tmp_path / "regions.csv", [row])
    assert read_regions(tmp_path / "regions.csv") == [row]
    (tmp_path / "bad.csv").write_text(",".join(COLUMNS) + "\n" + "x," * (len(COLUMNS) - 1) + "x\n")
    with pytest.raises(InputError, match="cannot read .*bad.csv"):
        read_regions(tmp_path / "bad.csv")
