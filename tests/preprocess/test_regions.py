"""Regions table: eye area, face and lip rectangles as RAD-NeRF's provider computes them."""

from __future__ import annotations

import json

import numpy as np

from radnerf.formats.regions import read_regions
from radnerf.preprocess import regions as R
from tests.preprocess.test_landmarks import synthetic_points


def test_polygon_area_of_a_square_and_a_triangle():
    assert R.polygon_area(np.array([0.0, 2, 2, 0]), np.array([0.0, 0, 2, 2])) == 4
    assert R.polygon_area(np.array([0.0, 4, 0]), np.array([0.0, 0, 3])) == 6


def test_eye_area_is_percent_of_the_image():
    pts = np.zeros((1, 68, 2))
    square = np.array([[0, 0], [10, 0], [10, 10], [10, 10], [0, 10], [0, 10]], float)  # 100 px^2
    pts[0, 36:42] = square
    pts[0, 42:48] = square + 50
    assert R.eye_area(pts, 100, 200)[0] == 200 / 20000 * 100


def test_lip_square_follows_radnerf_and_is_clamped():
    pts = synthetic_points(cx=100, cy=80, width=80)  # lips: x 84..116, y 97.6..110.4
    # rows 97..110 -> centre 103, cols 84..116 -> centre 100, half side max(13, 32) // 2 = 16
    np.testing.assert_array_equal(R.lips_rect(pts, 200, 200), [87, 119, 84, 116])
    np.testing.assert_array_equal(R.lips_rect(pts - [90, 0], 200, 200), [87, 119, 0, 26])


def test_face_rect_from_the_nose_down():
    pts = synthetic_points(cx=100, cy=80, width=80)
    row0, row1, col0, col1 = R.face_rect(pts)
    assert row0 == int(pts[31:36, 1].min()) and row1 == int(pts[:, 1].max())
    assert (col0, col1) == (60, 140)


def test_stage_writes_the_table(tmp_path):
    from tests.preprocess.faces import config, make_person

    root = make_person(tmp_path / "p", [np.zeros((200, 200, 3), np.uint8)] * 3)
    for i in range(3):
        np.savetxt(root / "ori_imgs" / f"{i}.lms", synthetic_points(cx=100 + i, cy=80), "%f")
    (root / "manifests" / "landmarks.json").write_text(json.dumps({"fingerprint": "l", "interpolated": [1]}))
    out = R.regions(config(tmp_path, "p")).output
    rows = read_regions(out)
    assert [r["frame"] for r in rows] == [0, 1, 2]
    assert [r["interpolated"] for r in rows] == [0, 1, 0]
    assert 0 < rows[0]["eye_area"] < 2
    assert rows[2]["face_col0"] == 62


def test_stage_rerun_is_skipped_with_the_same_numbers_and_new_landmarks_redo_it(tmp_path):
    from tests.preprocess.faces import config, make_person

    root = make_person(tmp_path / "p", [np.zeros((200, 200, 3), np.uint8)] * 2)
    for i in range(2):
        np.savetxt(root / "ori_imgs" / f"{i}.lms", synthetic_points(cx=100 + i, cy=80), "%f")
    (root / "manifests" / "landmarks.json").write_text(json.dumps({"fingerprint": "l", "interpolated": []}))
    cfg = config(tmp_path, "p")
    first = R.regions(cfg)
    assert not first.skipped and first.metrics["frames"] == 2 and first.metrics["eye_area.max"] > 0
    stamp = first.output.stat().st_mtime_ns
    again = R.regions(cfg)
    assert again.skipped and again.metrics == first.metrics and first.output.stat().st_mtime_ns == stamp
    (root / "manifests" / "landmarks.json").write_text(json.dumps({"fingerprint": "l2", "interpolated": [1]}))
    redone = R.regions(cfg)
    assert not redone.skipped
    assert [r["interpolated"] for r in read_regions(redone.output)] == [0, 1]
