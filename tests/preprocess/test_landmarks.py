"""The landmarks stage: track choice, gap filling, smoothing, bad-input errors, RAD-NeRF files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from radnerf.config import PreprocessConfig
from radnerf.errors import InputError, StageOutputExistsError
from radnerf.formats.landmarks import load_landmarks
from radnerf.preprocess import landmarks as lm
from radnerf.preprocess.landmark_backends import Face
from tests.preprocess.faces import astronaut, config, make_person, noise, two_faces


def synthetic_points(cx: float = 100.0, cy: float = 100.0, width: float = 80.0) -> np.ndarray:
    """A plausible frontal ``[68, 2]`` face: jaw arc, brows, nose, eyes, lips."""
    pts = np.zeros((68, 2))
    t = np.linspace(np.pi, 0, 17)
    pts[0:17] = np.stack([cx + width / 2 * np.cos(t), cy + width / 2 * np.sin(t)], 1)
    pts[17:27] = np.stack([np.linspace(cx - 0.4 * width, cx + 0.4 * width, 10), np.full(10, cy - 0.25 * width)], 1)
    pts[27:36] = np.stack([np.full(9, cx), np.linspace(cy - 0.2 * width, cy + 0.15 * width, 9)], 1)
    for k, ex in enumerate((cx - 0.2 * width, cx + 0.2 * width)):
        a = np.linspace(0, 2 * np.pi, 7)[:-1]
        pts[36 + 6 * k: 42 + 6 * k] = np.stack([ex + 0.08 * width * np.cos(a), cy - 0.12 * width + 0.03 * width * np.sin(a)], 1)
    a = np.linspace(0, 2 * np.pi, 13)[:-1]
    pts[48:60] = np.stack([cx + 0.2 * width * np.cos(a), cy + 0.3 * width + 0.08 * width * np.sin(a)], 1)
    a = np.linspace(0, 2 * np.pi, 9)[:-1]
    pts[60:68] = np.stack([cx + 0.12 * width * np.cos(a), cy + 0.3 * width + 0.03 * width * np.sin(a)], 1)
    return pts


def face(cx: float = 100.0, cy: float = 100.0, width: float = 80.0) -> Face:
    pts = synthetic_points(cx, cy, width)
    return Face(box=np.array([cx - width / 2, cy - width / 2, cx + width / 2, cy + width / 2]), points=pts, score=1.0)


OPTS = PreprocessConfig()
SIZE = (256, 256)


def test_gap_is_interpolated_linearly_and_flagged():
    dets = [[face(100 + 2 * i)] for i in range(20)]
    dets[4] = dets[5] = []
    track = lm.select_track(dets, OPTS, SIZE)
    assert list(np.flatnonzero(~track.detected)) == [4, 5]
    # Linear between frames 3 and 6: the face moved 2 px per frame.
    np.testing.assert_allclose(track.points[4], synthetic_points(108), atol=1e-9)
    np.testing.assert_allclose(track.points[5], synthetic_points(110), atol=1e-9)


def test_too_many_frames_without_a_face_fail_naming_them():
    dets = [[face()] if i % 3 else [] for i in range(30)]
    with pytest.raises(InputError, match=r"no face found in 10 of 30 frames.*0, 3, 6"):
        lm.select_track(dets, OPTS, SIZE)


def test_a_long_gap_fails():
    dets = [[face()] for _ in range(100)]
    for i in range(40, 70):
        dets[i] = []
    opts = PreprocessConfig(max_missing_share=0.5, max_gap=25)
    with pytest.raises(InputError, match="frames 40-69"):
        lm.select_track(dets, opts, SIZE)


def test_no_face_at_all_fails():
    with pytest.raises(InputError, match="no face found in any of the 5 frames"):
        lm.select_track([[] for _ in range(5)], OPTS, SIZE)


def test_two_similar_faces_are_ambiguous():
    dets = [[face(60), face(190)] for _ in range(10)]
    with pytest.raises(InputError, match="more than one face"):
        lm.select_track(dets, OPTS, SIZE)


def test_a_small_background_face_is_ignored_and_the_person_followed():
    dets = [[face(100 + i, width=80), face(220, 40, width=20)] for i in range(10)]
    track = lm.select_track(dets, OPTS, SIZE)
    assert track.detected.all() and not track.competing
    np.testing.assert_allclose(track.points[9], synthetic_points(109))


def test_a_brief_second_face_is_tolerated_but_reported():
    dets = [[face(70)] for _ in range(20)]
    dets[5].append(face(190))
    track = lm.select_track(dets, OPTS, SIZE)
    assert track.competing == [5]
    np.testing.assert_allclose(track.points[5], synthetic_points(70))


def test_smoothing_leaves_eyes_and_lips_exact():
    rng = np.random.default_rng(0)
    pts = synthetic_points()[None].repeat(20, 0) + rng.normal(0, 2, (20, 68, 2))
    out = lm.smooth(pts, 1.0)
    np.testing.assert_array_equal(out[:, 36:68], pts[:, 36:68])
    # Jitter on the jaw is reduced.
    assert np.diff(out[:, :17], axis=0).std() < 0.7 * np.diff(pts[:, :17], axis=0).std()


def test_yaw_asymmetry_is_zero_frontal_and_large_in_profile():
    front = synthetic_points()
    assert lm.yaw_asymmetry(front) == pytest.approx(0, abs=1e-9)
    profile = front.copy()
    profile[30] = profile[16] + [-3, 0]  # nose tip next to one jaw end
    assert lm.yaw_asymmetry(profile) > 0.9


def track_of(points: np.ndarray, width: float = 80) -> lm.TrackResult:
    n = len(points)
    return lm.TrackResult(points=points, detected=np.ones(n, bool), widths=np.full(n, width))


def test_face_too_small_fails():
    with pytest.raises(InputError, match="min_face_size"):
        lm.check_track(track_of(synthetic_points(width=20)[None].repeat(5, 0), width=20), OPTS, SIZE)


def test_face_cut_by_the_edge_in_many_frames_fails():
    pts = synthetic_points(cx=30)[None].repeat(10, 0)  # jaw reaches x = -10
    with pytest.raises(InputError, match="cut by the frame edge in 10 of 10"):
        lm.check_track(track_of(pts), OPTS, SIZE)


def test_side_views_fail_beyond_the_share():
    pts = synthetic_points()[None].repeat(10, 0)
    pts[:5, 30] = pts[:5, 16] - [3, 0]
    with pytest.raises(InputError, match="side in 5 of 10"):
        lm.check_track(track_of(pts), OPTS, SIZE)
    report = lm.check_track(track_of(pts), PreprocessConfig(max_side_view_share=0.6), SIZE)
    assert report["side_view_frames"] == [0, 1, 2, 3, 4]


def test_stage_writes_radnerf_lms_files_and_skips_a_rerun(tmp_path):
    make_person(tmp_path / "a" / "alice", [astronaut()] * 3)
    cfg = config(tmp_path / "a", "alice")
    first = lm.landmarks(cfg)
    out = first.output
    assert out == tmp_path / "a" / "alice" / "ori_imgs"
    assert not first.skipped
    pts = np.loadtxt(out / "1.lms")
    assert pts.shape == (68, 2)
    assert 200 < pts[30, 0] < 250 and 100 < pts[30, 1] < 150  # the nose tip
    manifest = json.loads((tmp_path / "a" / "alice" / "manifests" / "landmarks.json").read_text())
    assert manifest["interpolated"] == [] and manifest["frames"] == 3
    assert (tmp_path / "a" / "alice" / "overlays" / "landmarks_0.jpg").exists()
    stamp = (out / "0.lms").stat().st_mtime_ns
    again = lm.landmarks(cfg)
    assert (out / "0.lms").stat().st_mtime_ns == stamp
    assert again.skipped and not again.adopted and again.metrics == first.metrics
    assert again.metrics["frames"] == 3 and again.metrics["interpolated_count"] == 0
    # Another backend is another result: the stage runs again.
    cfg.preprocess.landmarks = "mediapipe"
    lm.landmarks(cfg)
    assert (out / "0.lms").stat().st_mtime_ns != stamp
    assert np.abs(np.loadtxt(out / "0.lms")[36:48] - pts[36:48]).max() < 5


def test_lms_files_radnerf_did_not_write_for_some_frames_are_refused_then_replaced_with_overwrite(tmp_path):
    """Foreign .lms for only some frames are neither used (a half copied dataset) nor silently replaced."""
    root = make_person(tmp_path / "half", [astronaut()] * 3)
    (root / "manifests" / "ingest.json").unlink()  # frames and .lms as another tool left them
    theirs = synthetic_points(220, 130, 90)
    for i in (0, 2):
        np.savetxt(root / "ori_imgs" / f"{i}.lms", theirs, "%f")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    cfg = config(tmp_path, "half")
    with pytest.raises(StageOutputExistsError, match=r"ori_imgs/0.lms.*did not write.*no ori_imgs/<i>.lms for frames 1 \(1 frame\)"):
        lm.landmarks(cfg)
    assert {p: p.read_bytes() for p in before} == before  # every file still there, unchanged
    assert sorted(p.name for p in (root / "ori_imgs").glob("*.lms")) == ["0.lms", "2.lms"]
    assert not (root / "manifests" / "landmarks.json").exists()
    cfg.overwrite = True
    result = lm.landmarks(cfg)
    assert not result.skipped and not result.adopted
    assert all((root / "ori_imgs" / f"{i}.lms").exists() for i in range(3))
    assert not np.allclose(np.loadtxt(root / "ori_imgs" / "0.lms"), theirs)
    assert "imported" not in json.loads((root / "manifests" / "landmarks.json").read_text())


def test_stage_interpolates_a_frame_without_a_face(tmp_path):
    frames = [astronaut()] * 5
    frames[2] = noise(512)
    make_person(tmp_path / "bob", frames)
    cfg = config(tmp_path, "bob", max_missing_share=0.25)
    lm.landmarks(cfg)
    manifest = json.loads((tmp_path / "bob" / "manifests" / "landmarks.json").read_text())
    assert manifest["interpolated"] == [2]
    np.testing.assert_allclose(np.loadtxt(tmp_path / "bob" / "ori_imgs" / "2.lms"),
                               np.loadtxt(tmp_path / "bob" / "ori_imgs" / "1.lms"), atol=0.01)


def test_stage_refuses_noise(tmp_path):
    make_person(tmp_path / "nobody", [noise(256, s) for s in range(3)])
    with pytest.raises(InputError, match="no face found"):
        lm.landmarks(config(tmp_path, "nobody"))
    assert not (tmp_path / "nobody" / "ori_imgs" / "0.lms").exists()


@pytest.mark.parametrize("backend", ["dlib", "mediapipe"])
def test_stage_refuses_two_faces(tmp_path, backend):
    make_person(tmp_path / "twins", [two_faces()] * 3)
    with pytest.raises(InputError, match="more than one face"):
        lm.landmarks(config(tmp_path, "twins", landmarks=backend))


def test_stage_with_two_worker_processes_matches_one(tmp_path):
    frames = [np.roll(astronaut(), 4 * i, axis=1) for i in range(4)]
    make_person(tmp_path / "one" / "p", frames)
    make_person(tmp_path / "two" / "p", frames)
    lm.landmarks(config(tmp_path / "one", "p", workers=1))
    lm.landmarks(config(tmp_path / "two", "p", workers=2))
    for i in range(4):
        np.testing.assert_array_equal(np.loadtxt(tmp_path / "one" / "p" / "ori_imgs" / f"{i}.lms"),
                                      np.loadtxt(tmp_path / "two" / "p" / "ori_imgs" / f"{i}.lms"))


def test_stage_with_fan_and_no_weights_fails_before_any_work(tmp_path):
    from radnerf.errors import MissingWeightsError

    make_person(tmp_path / "f", [astronaut()])
    with pytest.raises(MissingWeightsError, match="radnerf weights fetch fan"):
        lm.landmarks(config(tmp_path, "f", landmarks="fan"))
    assert not (tmp_path / "f" / "ori_imgs" / "0.lms").exists()


def test_loading_landmarks_with_gaps_for_tracking(tmp_path):
    """Tracking reads the same files as the other stages but tolerates a missing one and skips non-detections."""
    from radnerf.paths import PersonPaths

    paths = PersonPaths(tmp_path / "p")
    paths.ori_imgs.mkdir(parents=True)
    pts = synthetic_points(100, 80, 60)
    for i in (0, 2, 3):
        np.savetxt(paths.lms(i), pts + i, "%f")
    with pytest.raises(InputError, match="1.lms is missing"):
        load_landmarks(paths, 4)
    lms = load_landmarks(paths, 4, missing="nan")
    assert np.isnan(lms[1]).all()
    np.testing.assert_allclose(lms[3], pts + 3, atol=1e-5)
    assert lm.detected_frames(lms, None).tolist() == [True, False, True, True]
    paths.manifests.mkdir()
    paths.manifest("landmarks").write_text(json.dumps({"fingerprint": "x", "interpolated": [2]}))
    manifest = json.loads(paths.manifest("landmarks").read_text())
    assert lm.detected_frames(lms, manifest).tolist() == [True, False, False, True]
