"""Tracking: the solver's derivatives, accuracy on synthetic clips, bad input, RAD-NeRF files, the stage."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from radnerf.config import ModelConfig, PathsConfig, RadNerfConfig, TrackConfig
from radnerf.errors import InputError, StageOutputExistsError
from radnerf.geometry import euler_deg, pose_angles_deg, rotation_from_euler_deg
from radnerf.preprocess import face_shape
from radnerf.preprocess import tracking as T
from radnerf.preprocess import tracking_ba as ba
from radnerf.preprocess.tracking_synth import make_clip, rotation_errors_deg

FAST = {"focal_profile": False, "overlay_frames": 0, "plots": False}


# --------------------------------------------------------------------------- the generic shape


def test_mean_shape_is_symmetric_metric_and_golden():
    S = face_shape.MEAN_SHAPE
    assert S.shape == (68, 3)
    mirrored = S[list(face_shape.MIRROR)] * [-1, 1, 1]
    np.testing.assert_allclose(mirrored, S, atol=1e-9)
    # MediaPipe's canonical mesh, cm -> m, origin moved to the head centre.
    np.testing.assert_allclose(S[30], [0.0, (-0.463170 - 1.5) / 100, (7.586580 + 2.0) / 100], atol=1e-9)
    np.testing.assert_allclose(S[36], [-0.04445859, (2.663991 - 1.5) / 100, (3.173422 + 2.0) / 100], atol=1e-9)
    # A human face: outer eye corners 8.9 cm apart, chin 12 cm below the brows, nose in front.
    assert 0.08 < np.linalg.norm(S[36] - S[45]) < 0.10
    assert 0.10 < S[19, 1] - S[8, 1] < 0.16
    assert S[30, 2] == S[:, 2].max()


def test_head_box_holds_the_face_and_fits_radnerf_bound():
    box = T.head_box(face_shape.MEAN_SHAPE, ModelConfig().pose_scale)
    lo, hi = np.array(box["min"]), np.array(box["max"])
    assert (lo <= face_shape.MEAN_SHAPE.min(0)).all() and (hi >= face_shape.MEAN_SHAPE.max(0)).all()
    assert hi[1] - lo[1] > 0.22  # chin to the top of the skull
    assert box["bound_at_scale_4"] <= 1.0  # inside RAD-NeRF's default --bound 1 at --scale 4
    # Another model.pose_scale: the key names the scale the bound is for.
    other = T.head_box(face_shape.MEAN_SHAPE, 2.5)
    assert "bound_at_scale_4" not in other and other["bound_at_scale_2.5"] == pytest.approx(box["bound_at_scale_4"] * 2.5 / 4, abs=2e-3)


# --------------------------------------------------------------------------- solver internals


def _state(seed=0, n=3):
    rng = np.random.default_rng(seed)
    return ba.FitState(
        rvec=rng.normal(size=(n, 3)) * 0.3,
        uv=rng.uniform(200, 300, (n, 2)),
        logs=np.log(rng.uniform(1000, 1500, n)),
        shape=face_shape.MEAN_SHAPE + rng.normal(size=(68, 3)) * 0.002,
        log_focal=np.log(900.0),
    )


def test_projection_jacobians_match_central_differences():
    st = _state()
    _, Jf, Js, Jl = ba.project(st, 256, 256, jacobians=True)
    eps = 1e-6

    def diff(mutate):
        p, m = st.copy(), st.copy()
        mutate(p, eps)
        mutate(m, -eps)
        return (ba.project(p, 256, 256) - ba.project(m, 256, 256)) / (2 * eps)

    for j in range(6):
        def mut(s, e, j=j):
            if j < 3:
                s.rvec[:, j] += e
            elif j < 5:
                s.uv[:, j - 3] += e
            else:
                s.logs += e
        np.testing.assert_allclose(diff(mut), Jf[..., j], rtol=1e-5, atol=1e-4)
    for j in range(3):
        def mut(s, e, j=j):
            s.shape[:, j] += e
        np.testing.assert_allclose(diff(mut), Js[..., j], rtol=1e-5, atol=1e-3)

    def mutf(s, e):
        s.log_focal += e
    np.testing.assert_allclose(diff(mutf), Jl, rtol=1e-5, atol=1e-5)


def test_projection_is_the_pinhole_of_camera_from_head():
    st = _state(1)
    R, t = ba.camera_from_head(st, 256, 240)
    cam = np.einsum("nij,kj->nki", R, st.shape) + t[:, None]
    f = st.focal
    expected = np.stack([256 + f * cam[..., 0] / -cam[..., 2], 240 - f * cam[..., 1] / -cam[..., 2]], -1)
    np.testing.assert_allclose(ba.project(st, 256, 240), expected, atol=1e-9)
    assert (cam[..., 2] < 0).all()  # in front of an OpenGL camera


def test_normal_equations_gradient_matches_the_cost():
    clip = make_clip(frames=6, noise_px=1.0, drop=0.0, seed=2)
    st = T._settings(TrackConfig(), 512, 512, None)
    state = ba.initial_state(clip.lms, clip.valid, face_shape.MEAN_SHAPE, st.point_weights, 1000.0)
    state.rvec += 0.03
    prob = ba._Problem(clip.lms, clip.valid, 256, 256, face_shape.MEAN_SHAPE, st, float(np.exp(state.logs.mean())))
    _, _, _, g_f, g_g = prob.normal_equations(state)
    g = np.concatenate([g_f, g_g])
    n = 6 * 6

    def vec_to_state(x):
        s = state.copy()
        f = x[:n].reshape(6, 6)
        s.rvec, s.uv, s.logs = f[:, :3].copy(), f[:, 3:5].copy(), f[:, 5].copy()
        s.shape = x[n:-1].reshape(68, 3).copy()
        s.log_focal = float(x[-1])
        return s

    x0 = np.concatenate([np.concatenate([state.rvec, state.uv, state.logs[:, None]], 1).ravel(), state.shape.ravel(), [state.log_focal]])
    rng = np.random.default_rng(0)
    for i in rng.choice(len(x0), 25, replace=False):
        e = np.zeros_like(x0)
        e[i] = 1e-6
        num = (prob.cost(vec_to_state(x0 + e)) - prob.cost(vec_to_state(x0 - e))) / 2e-6 / 2
        assert num == pytest.approx(g[i], rel=1e-4, abs=1e-2)


# --------------------------------------------------------------------------- accuracy (the numbers)


@pytest.mark.parametrize("focal", [600.0, 1200.0])
def test_synthetic_accuracy_1px(focal):
    clip = make_clip(frames=500, focal=focal, noise_px=1.0, drop=0.03, seed=11)
    tr = T.track_landmarks(clip.lms, 512, 512, TrackConfig(**FAST), valid=clip.valid)
    err = rotation_errors_deg(clip.R, tr.R)
    assert np.median(err) <= 0.5
    assert err.max() <= 1.5  # dropped frames included: they are filled from neighbours
    assert tr.focal == pytest.approx(focal, rel=0.05)
    assert sorted(tr.report["frames_filled"]) == sorted(np.flatnonzero(~clip.valid).tolist())
    assert tr.report["reprojection_px"]["rigid_median"] < 1.5


@pytest.mark.parametrize("focal", [600.0, 1200.0])
def test_synthetic_accuracy_2px(focal):
    clip = make_clip(frames=500, focal=focal, noise_px=2.0, drop=0.03, seed=12)
    tr = T.track_landmarks(clip.lms, 512, 512, TrackConfig(**FAST), valid=clip.valid)
    err = rotation_errors_deg(clip.R, tr.R)
    assert np.median(err) <= 1.0


def test_synthetic_translation_is_metric_up_to_the_shape_scale():
    clip = make_clip(frames=120, focal=900.0, noise_px=0.5, drop=0.0, seed=13)
    tr = T.track_landmarks(clip.lms, 512, 512, TrackConfig(**FAST, focal=900.0))
    # Depth is known only up to the person's size relative to the generic face (a few percent).
    ratio = tr.t[:, 2] / clip.t[:, 2]
    assert np.std(ratio) / np.mean(ratio) < 0.01
    assert 0.85 < np.mean(ratio) < 1.15


def test_focal_profile_tells_a_constrained_clip_from_a_still_one(caplog):
    moving = make_clip(frames=200, focal=600.0, noise_px=1.0, drop=0.0, seed=14)
    tr = T.track_landmarks(moving.lms, 512, 512, TrackConfig(overlay_frames=0, plots=False))
    assert tr.report["focal"]["constrained_by_clip"]
    prof = {round(r["focal_px"] / tr.focal, 1): r["relative_cost"] for r in tr.report["focal"]["profile"]}
    assert prof[1.0] == 1.0 and min(prof[0.5], prof[2.0]) > 1.01

    small = make_clip(frames=200, focal=600.0, noise_px=1.0, drop=0.0, yaw=6, pitch=5, roll=3, seed=15)
    with caplog.at_level(logging.WARNING):
        tr = T.track_landmarks(small.lms, 512, 512, TrackConfig(overlay_frames=0, plots=False))
    assert not tr.report["focal"]["constrained_by_clip"]
    assert "barely constrains the focal" in caplog.text


# --------------------------------------------------------------------------- pose angles (radnerf.geometry's convention)


@pytest.mark.parametrize("yaw,pitch", [(20.0, 0.0), (0.0, 15.0), (-10.0, -10.0)])
def test_pose_angles_are_absolute_and_the_transforms_say_the_same(yaw, pitch):
    """A head held turned or tipped reads those angles (not only their changes), in report, plot and transforms."""
    clip = make_clip(frames=200, focal=900.0, yaw=10, pitch=6, roll=4, drop=0.0, seed=50, yaw_offset=yaw, pitch_offset=pitch)
    tr = T.track_landmarks(clip.lms, 512, 512, TrackConfig(**FAST))
    truth, est = euler_deg(clip.R), euler_deg(tr.R)
    np.testing.assert_allclose(truth.mean(0), [yaw, pitch, 0.0], atol=1e-9)
    # The person's own shape differs from the generic one by a few mm: a degree or two of offset.
    assert np.abs(est - truth).max() < 3.0
    for j, name in enumerate(("yaw", "pitch", "roll")):
        assert tr.report["pose_deg"][name]["min"] == pytest.approx(est[:, j].min(), abs=1e-3)
        assert tr.report["pose_deg"][name]["max"] == pytest.approx(est[:, j].max(), abs=1e-3)
    train, val = T.transforms(tr)
    c2w = np.array([f["transform_matrix"] for f in train["frames"] + val["frames"]])
    np.testing.assert_allclose(pose_angles_deg(c2w), est, atol=1e-5)


def test_still_head_warning_quotes_the_report_and_keeps_the_face_frontal(caplog):
    """The demo's frontal portrait (no head motion) read a constant pitch of -30 degrees: with the
    face's depth free the shape absorbed a tipped head. A still head keeps the generic depth."""
    import re

    clip = make_clip(frames=120, focal=700.0, yaw=0.5, pitch=0.5, roll=5.0, noise_px=1.0, drop=0.0, seed=30)
    with caplog.at_level(logging.WARNING):
        tr = T.track_landmarks(clip.lms, 512, 512, TrackConfig(**FAST))
    m = re.search(r"yaw range ([\d.]+), pitch range ([\d.]+) degrees", caplog.text)
    assert m, caplog.text
    motion = tr.report["motion_range_deg"]
    assert float(m.group(1)) == round(motion["yaw"], 1) and float(m.group(2)) == round(motion["pitch"], 1)
    assert tr.report["shape_depth"].startswith("generic")
    assert np.abs(euler_deg(tr.R)[:, :2]).max() < 4.0  # frontal: yaw and pitch near 0
    assert np.abs(tr.shape[:, 2] - face_shape.MEAN_SHAPE[:, 2]).max() < 1e-9


# --------------------------------------------------------------------------- bad input


def test_fixed_focal_is_used_as_is():
    clip = make_clip(frames=80, focal=1000.0, seed=16)
    tr = T.track_landmarks(clip.lms, 512, 512, TrackConfig(**FAST, focal=777.0), valid=clip.valid)
    assert tr.focal == 777.0
    assert tr.report["focal"]["source"] == "fixed (track.focal)"


def test_too_few_frames_is_a_clear_error():
    clip = make_clip(frames=60, seed=17)
    valid = np.zeros(60, bool)
    valid[:10] = True
    with pytest.raises(InputError, match="only 10 of 60 frames"):
        T.track_landmarks(clip.lms, 512, 512, TrackConfig(**FAST), valid=valid)


def test_no_head_motion_assumes_the_prior_focal_and_says_so(caplog):
    clip = make_clip(frames=100, focal=600.0, yaw=0.5, pitch=0.5, roll=0.5, seed=18)
    with caplog.at_level(logging.WARNING):
        tr = T.track_landmarks(clip.lms, 512, 512, TrackConfig(**FAST), valid=clip.valid)
    assert tr.focal == pytest.approx(1024.0)  # 2 x the longer side
    assert tr.report["focal"]["source"].startswith("assumed")
    assert "focal is unconstrained" in caplog.text and "1024" in caplog.text


def test_a_cut_is_flagged_and_left_out_of_the_transforms():
    clip = make_clip(frames=200, focal=900.0, yaw=10, pitch=5, roll=3, drop=0.0, seed=19)
    # Frames 120.. come from another shot: the head is suddenly turned 40 degrees.
    lms = clip.lms.copy()

    Rcut = rotation_from_euler_deg(np.full(80, 40.0), np.zeros(80), np.zeros(80)) @ clip.R[120:]
    cam = np.einsum("nij,kj->nki", Rcut, clip.shape) + clip.t[120:, None]
    lms[120:] = np.stack([256 + 900 * cam[..., 0] / -cam[..., 2], 256 - 900 * cam[..., 1] / -cam[..., 2]], -1)
    tr = T.track_landmarks(lms, 512, 512, TrackConfig(**FAST))
    assert 120 in tr.flagged and len(tr.flagged) <= 3
    train, val = T.transforms(tr)
    ids = [f["img_id"] for f in train["frames"] + val["frames"]]
    assert 120 not in ids and len(ids) == 200 - len(tr.flagged)


def test_landmarks_that_jump_everywhere_are_a_clear_error():
    clip = make_clip(frames=100, seed=21, drop=0.0)
    lms = clip.lms.copy()
    lms[::2] = lms[::2, ::-1]  # every other frame the points are scrambled (another face, a broken detector)
    lms[::2] += np.random.default_rng(0).normal(scale=30, size=lms[::2].shape)
    with pytest.raises(InputError):
        T.track_landmarks(lms, 512, 512, TrackConfig(**FAST))


def test_a_glitched_frame_is_refitted_from_its_neighbours():
    clip = make_clip(frames=150, focal=900.0, drop=0.0, seed=22)
    lms = clip.lms.copy()
    lms[70] = lms[70] + np.random.default_rng(1).normal(scale=25, size=(68, 2))
    tr = T.track_landmarks(lms, 512, 512, TrackConfig(**FAST))
    assert 70 in tr.report["outlier_frames"]
    err = rotation_errors_deg(clip.R, tr.R)
    assert err[70] < 1.5


# --------------------------------------------------------------------------- RAD-NeRF files


def test_transforms_follow_radnerf_format_and_camera_convention():
    clip = make_clip(frames=110, focal=1000.0, noise_px=0.0, drop=0.0, mouth=False, seed=23)
    tr = T.track_landmarks(clip.lms, 512, 512, TrackConfig(**FAST, focal=1000.0))
    eye = np.linspace(0.1, 0.3, 110)
    train, val = T.transforms(tr, eye)
    assert len(train["frames"]) == 100 and len(val["frames"]) == 10  # int(110 * 10 / 11)
    assert set(train) == {"focal_len", "cx", "cy", "frames"}
    assert train["focal_len"] == 1000.0 and train["cx"] == 256.0 and train["cy"] == 256.0
    f = val["frames"][3]
    assert f["img_id"] == f["aud_id"] == 103 and f["eye_ratio"] == pytest.approx(eye[103])
    # A ray through a landmark's pixel, built as RAD-NeRF/NeRF build rays (camera looks down -z,
    # y up), passes through that landmark's 3D point in the world (head) frame.
    c2w = np.array(f["transform_matrix"])
    assert c2w.shape == (4, 4)
    for k in face_shape.RIGID:
        x, y = clip.lms[103, k]
        d = c2w[:3, :3] @ np.array([(x - 256) / 1000.0, -(y - 256) / 1000.0, -1.0])
        o = c2w[:3, 3]
        p = tr.shape[k]
        dist = np.linalg.norm(np.cross(p - o, d)) / np.linalg.norm(d)
        assert dist < 1e-3  # metres


def test_track_params_pt_converts_like_radnerf():
    torch = pytest.importorskip("torch")
    params = {
        "focal": torch.tensor([1100.0]),
        "euler": torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.2, 0.05]]),
        "trans": torch.tensor([[0.0, 0.0, -5.0], [0.1, 0.2, -6.0]]),
    }
    train, val = T.transforms_from_track_params(params, 512, 512)
    assert train["focal_len"] == pytest.approx(1100.0)
    assert [f["img_id"] for f in train["frames"]] == [0] and [f["img_id"] for f in val["frames"]] == [1]
    np.testing.assert_allclose(np.array(train["frames"][0]["transform_matrix"])[:3, 3], [0, 0, 0.5], atol=1e-7)
    # RAD-NeRF: pose = [R^T | -R^T trans/10] with R = Rx Ry Rz from the euler angles; their
    # euler2rot builds Rz with the sine signs swapped (a rotation by -gamma), kept as they have it.
    a, b, g = 0.1, -0.2, 0.05
    Rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    Ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    Rz = np.array([[np.cos(g), np.sin(g), 0], [-np.sin(g), np.cos(g), 0], [0, 0, 1]])
    R = Rx @ Ry @ Rz
    pose = np.array(val["frames"][0]["transform_matrix"])
    np.testing.assert_allclose(pose[:3, :3], R.T, atol=1e-7)
    np.testing.assert_allclose(pose[:3, 3], -R.T @ np.array([0.01, 0.02, -0.6]), atol=1e-7)


# --------------------------------------------------------------------------- the stage


def _person(tmp_path: Path, frames: int = 40, seed: int = 24):
    import cv2

    clip = make_clip(frames=frames, focal=900.0, size=128, face_px=60.0, drop=0.0, seed=seed)
    root = tmp_path / "artifacts" / "alice"
    (root / "ori_imgs").mkdir(parents=True)
    (root / "manifests").mkdir()
    img = np.full((128, 128, 3), 90, np.uint8)
    for i in range(frames):
        cv2.imwrite(str(root / "ori_imgs" / f"{i}.jpg"), img)
        if i != 5:  # frame 5: no face found
            np.savetxt(root / "ori_imgs" / f"{i}.lms", clip.lms[i], "%f")
    (root / "manifests" / "ingest.json").write_text(json.dumps({"frames": frames, "width": 128, "height": 128, "fps": 25}))
    cfg = RadNerfConfig(
        person="alice",
        paths=PathsConfig(artifacts=str(tmp_path / "artifacts")),
        track=TrackConfig(focal_profile=False, overlay_frames=2, min_frames=10),
    )
    return cfg, root, clip


def test_stage_writes_radnerf_files_report_and_pictures_then_skips(tmp_path):
    cfg, root, _ = _person(tmp_path)
    out = T.track(cfg)
    assert out.root == root and out.output == root / "transforms_train.json" and not out.skipped
    train = json.loads((root / "transforms_train.json").read_text())
    val = json.loads((root / "transforms_val.json").read_text())
    assert len(train["frames"]) + len(val["frames"]) == 40 and len(val["frames"]) == 40 - int(40 * 10 / 11)
    assert all("eye_ratio" in f for f in train["frames"])
    report = json.loads((root / "track" / "report.json").read_text())
    assert report["frames_filled"] == [5]
    assert report["eye_ratio_source"] == "landmarks"
    for name in ("pose_curves.png", "overlay_0.jpg", "overlay_39.jpg", "params.npz"):
        assert (root / "track" / name).stat().st_size > 0
    manifest = json.loads((root / "manifests" / "track.json").read_text())
    assert manifest["fingerprint"] and manifest["frames"] == 40
    assert not list((root / ".staging").iterdir())

    before = (root / "transforms_train.json").stat().st_mtime_ns
    assert T.track(cfg).skipped
    assert (root / "transforms_train.json").stat().st_mtime_ns == before  # unchanged inputs: nothing to do
    cfg.track = TrackConfig(focal_profile=False, overlay_frames=0, min_frames=10, focal=500.0)
    T.track(cfg)
    assert json.loads((root / "transforms_train.json").read_text())["focal_len"] == 500.0


def test_stage_reads_missing_frames_from_the_landmarks_manifest(tmp_path):
    cfg, root, _ = _person(tmp_path)
    np.savetxt(root / "ori_imgs" / "5.lms", np.zeros((68, 2)), "%f")  # an interpolated file, not a detection
    (root / "manifests" / "landmarks.json").write_text(json.dumps({"fingerprint": "abc", "missing_frames": [5], "interpolated": [7, 8]}))
    T.track(cfg)
    report = json.loads((root / "track" / "report.json").read_text())
    assert report["frames_filled"] == [5, 7, 8]


def test_stage_uses_a_radnerf_dataset_as_is(tmp_path):
    cfg, root, _ = _person(tmp_path)
    theirs = {"focal_len": 1200.0, "cx": 64.0, "cy": 64.0, "frames": [{"img_id": 0, "aud_id": 0, "transform_matrix": np.eye(4).tolist()}]}
    for split in ("train", "val"):
        (root / f"transforms_{split}.json").write_text(json.dumps(theirs))
    res = T.track(cfg)
    assert res.root == root and res.adopted
    assert json.loads((root / "transforms_train.json").read_text()) == theirs
    assert not (root / "track").exists()
    assert T.track(cfg).adopted  # and on every later run: never refitted over without overwrite


def test_stage_converts_track_params_pt(tmp_path):
    torch = pytest.importorskip("torch")
    cfg, root, _ = _person(tmp_path)
    torch.save({"focal": torch.tensor([1100.0]), "euler": torch.zeros(11, 3), "trans": torch.tensor([[0.0, 0.0, -5.0]] * 11)},
               root / "track_params.pt")
    assert T.track(cfg).adopted
    train = json.loads((root / "transforms_train.json").read_text())
    assert train["focal_len"] == pytest.approx(1100.0) and len(train["frames"]) == 10


def test_stage_refuses_foreign_transforms_it_cannot_use(tmp_path):
    cfg, root, _ = _person(tmp_path)
    (root / "transforms_train.json").write_text(json.dumps({"focal_len": 1200.0, "frames": []}))
    with pytest.raises(StageOutputExistsError, match="did not write .*transforms_val.json missing"):
        T.track(cfg)  # half a dataset
    (root / "transforms_val.json").write_text(json.dumps({"focal_len": 1200.0, "frames": []}))
    with pytest.raises(InputError, match="not a RAD-NeRF transforms file .*missing cx, cy"):
        T.track(cfg)
    assert not (root / "manifests" / "track.json").exists()
    cfg.overwrite = True  # fits its own poses over them
    res = T.track(cfg)
    assert not res.adopted and len(json.loads((root / "transforms_train.json").read_text())["frames"]) == 36


def test_stage_report_names_the_model_pose_scale(tmp_path):
    cfg, root, _ = _person(tmp_path)
    cfg.model = ModelConfig(pose_scale=2.0)
    T.track(cfg)
    box = json.loads((root / "track" / "report.json").read_text())["head_box_m"]
    assert set(box) == {"min", "max", "bound_at_scale_2"}


def test_stage_without_landmarks_is_a_clear_error(tmp_path):
    cfg, root, _ = _person(tmp_path)
    for f in (root / "ori_imgs").glob("*.lms"):
        f.unlink()
    with pytest.raises(InputError, match="no landmarks"):
        T.track(cfg)


def test_stage_is_redone_for_new_code(tmp_path, monkeypatch):
    """A new radnerf or a new fit can move the poses: the finished track is not up to date any more."""
    import radnerf

    cfg, root, _ = _person(tmp_path)
    cfg.track = TrackConfig(focal_profile=False, overlay_frames=0, plots=False, min_frames=10)
    fits = []
    real_fit = T.track_landmarks
    monkeypatch.setattr(T, "track_landmarks", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    T.track(cfg)
    T.track(cfg)
    assert len(fits) == 1
    monkeypatch.setattr(radnerf, "__version__", "999.0")
    T.track(cfg)
    assert len(fits) == 2
    monkeypatch.setattr(T, "ALGORITHM_VERSION", T.ALGORITHM_VERSION + 1)
    T.track(cfg)
    assert len(fits) == 3
