"""``radnerf render``: a trained head speaking new audio, as an MP4 a player shows with its sound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radnerf.errors import ConfigError
from radnerf.talk.controls import pingpong, smooth_poses
from tests.talk.conftest import FPS, SECONDS, TINY, decoded_frames
from tests.train.synthetic_person import euler_rotation


def expected_first_frame(cfg, wav, torso=None) -> tuple[np.ndarray, np.ndarray]:
    """What the head renders for frame 0 (the first clip frame's smoothed pose, eyes and background,
    the audio windows around time 0, no earlier code to smooth with) and that background alone:
    ``[H, W, 3]`` each, in [0, 1]. With a ``torso`` (:func:`load_torso`), the head over it over bc.jpg."""
    from radnerf.audio import extract_features
    from radnerf.data import PersonDataset
    from radnerf.models import attention_indices, gather_windows
    from radnerf.paths import PersonPaths
    from radnerf.render import render_image
    from radnerf.train.head import load_head

    paths = PersonPaths.for_person(cfg.paths.artifacts, "synth")
    head = load_head(paths.final_weights("head"))
    load = dict(audio_features="ph", scale=cfg.model.pose_scale, offset=cfg.model.pose_offset)
    train, val = PersonDataset.load(paths, "train", **load), PersonDataset.load(paths, "val", **load)
    features = extract_features(wav, cfg.audio_features)
    windows = gather_windows(features, attention_indices([0], len(features), cfg.model.attention_window))
    cond = head.model.condition(windows, float(train.eye[0]), None)
    pose = smooth_poses(np.concatenate([train.poses, val.poses]))[0]
    if torso is not None:
        from radnerf.train.torso import render_frame

        bc = torch.from_numpy(train.background).float() / 255
        rgb = render_frame(head, torso.model, torch.from_numpy(pose), cond, torso.model.code(None), bc)
        return rgb.numpy(), train.background / 255.0
    background = torch.from_numpy(train.head_background(0)).float() / 255
    with torch.no_grad():
        rgb = render_image(torch.from_numpy(pose), tuple(float(v) for v in train.intrinsics), 24, 24, head.grid,
                           lambda x, d: head.model(x, d, cond), options=head.render, background=background)["rgb"]
    return rgb.numpy(), train.head_background(0) / 255.0


def test_renders_an_mp4_of_the_audio_with_its_sound_then_is_up_to_date(trained, make_cfg, wav):
    from radnerf.media.probe import probe
    from radnerf.talk import render

    person, _ = trained
    cfg = make_cfg(*TINY, f"audio={wav}")
    result = render(cfg)
    assert not result.skipped
    assert result.video == person.root / "renders" / "speech.mp4" and result.video.is_file()

    info = probe(result.video)
    frames = round(SECONDS * FPS)
    assert info.video is not None and abs(info.video.frames - frames) <= 1 and info.video.frames == result.frames
    assert info.video.fps == FPS and (info.video.width, info.video.height) == (24, 24)
    assert info.audio is not None and abs(info.audio.duration - info.video.frames / FPS) < 0.05

    # Frame 0 of the file is the head's render of frame 0 (H.264 at 24 px costs a little colour).
    decoded = decoded_frames(result.video)
    assert len(decoded) == result.frames
    expected, background = expected_first_frame(cfg, wav)
    assert np.abs(expected - background).mean() > 0.03  # the head shows: a bare background would fail below
    assert np.abs(decoded[0] / 255.0 - expected).mean() < 0.015

    stamp = result.video.stat().st_mtime_ns
    again = render(cfg)
    assert again.skipped and again.video == result.video and again.frames == result.frames
    assert result.video.stat().st_mtime_ns == stamp and "up to date" in again.summary()


def test_the_trained_torso_goes_under_the_head_once_there_is_one(trained, make_cfg, wav):
    from radnerf.errors import InputError
    from radnerf.paths import PersonPaths
    from radnerf.talk import render
    from radnerf.train.torso import load_torso, train_torso

    person, _ = trained
    with pytest.raises(InputError, match="no trained torso") as e:
        render(make_cfg(*TINY, f"audio={wav}", "render.torso=model"))
    assert "radnerf train-torso person=synth" in e.value.hint
    cfg = make_cfg(*TINY, f"audio={wav}")
    assert not render(cfg).skipped  # auto without a torso model: the clip's torso images

    train_torso(make_cfg(*TINY))
    result = render(cfg)
    assert not result.skipped  # a torso model appeared: the video is redone with it
    torso = load_torso(PersonPaths.for_person(cfg.paths.artifacts, "synth").final_weights("torso"))
    expected, _ = expected_first_frame(cfg, wav, torso)
    clip_frame, _ = expected_first_frame(cfg, wav)
    assert np.abs(expected - clip_frame).max() > 0.02  # the torso model is not the clip's torso image
    decoded = decoded_frames(result.video)[0] / 255.0
    assert np.abs(decoded - expected).mean() < np.abs(decoded - clip_frame).mean()
    from radnerf.audio import extract_features
    from radnerf.talk.clip import Clip
    from radnerf.talk.render import render_frames
    from radnerf.train.head import load_head, person_splits

    paths = PersonPaths.for_person(cfg.paths.artifacts, "synth")
    frames = render_frames(load_head(paths.final_weights("head")), Clip.from_splits(person_splits(paths, cfg, "ph")),
                           extract_features(wav, cfg.audio_features), torch.device("cpu"), torso)
    np.testing.assert_allclose(next(frames) / 255.0, expected, atol=0.6 / 255)  # before H.264: the same frame
    assert not render(make_cfg(*TINY, f"audio={wav}", "render.torso=clip")).skipped


def test_a_head_refuses_features_of_another_audio_backend_before_extracting(trained, make_cfg, wav, monkeypatch):
    import radnerf.audio
    from radnerf.talk import render

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted (a model would have been loaded or downloaded)")

    monkeypatch.setattr(radnerf.audio, "extract_features", no_extraction)
    with pytest.raises(ConfigError) as info:
        render(make_cfg(*TINY, f"audio={wav}", "audio_features=wav2vec2"))
    assert "'ph'" in info.value.message and "'eo'" in info.value.message and "wav2vec2" in info.value.message
    assert "offline: ph" in info.value.hint
    assert not (trained[0].root / "renders" / "speech.mp4").exists()


def test_pingpong_goes_forward_then_back():
    assert pingpong(7, 4).tolist() == [0, 1, 2, 3, 2, 1, 0]
    assert pingpong(9, 3).tolist() == [0, 1, 2, 1, 0, 1, 2, 1, 0]
    assert pingpong(3, 1).tolist() == [0, 0, 0]
    assert pingpong(0, 5).tolist() == []


def test_smoothed_poses_keep_rotations_and_leave_a_still_head_still():
    rng = np.random.default_rng(0)
    n = 20
    k = np.arange(n)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = euler_rotation(15 * np.sin(k / 3) + rng.normal(0, 3, n), rng.normal(0, 3, n), rng.normal(0, 3, n))
    poses[:, :3, 3] = rng.normal(0, 0.01, (n, 3)) + [0, 0, 0.5]
    smooth = smooth_poses(poses)
    rot = smooth[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9)
    np.testing.assert_array_equal(smooth[:, 3], poses[:, 3])
    # Smoothing takes out the jitter: consecutive poses move less.
    assert np.abs(np.diff(smooth[:, :3, 3], axis=0)).mean() < 0.5 * np.abs(np.diff(poses[:, :3, 3], axis=0)).mean()

    still = np.tile(poses[3], (n, 1, 1))
    np.testing.assert_allclose(smooth_poses(still), still, atol=1e-12)
    np.testing.assert_array_equal(smooth_poses(poses, window=1), poses)


def test_pose_eyes_and_background_controls_reach_the_video(trained, make_cfg, wav):
    from radnerf.talk import render

    controls = (f"audio={wav}", "pose=still", "eyes=open", "render.torso=clip")
    white = render(make_cfg(*TINY, *controls, "bg=white"))
    white_corner = decoded_frames(white.video)[0][:3, :3].astype(float).mean()
    assert render(make_cfg(*TINY, *controls, "bg=white")).skipped
    black = render(make_cfg(*TINY, *controls, "bg=black"))
    assert not black.skipped  # another background is another video
    # The few-step head leaves a little fog over the corner; what shows through is the chosen background.
    assert white_corner - decoded_frames(black.video)[0][:3, :3].astype(float).mean() > 60


def test_frames_as_png_on_request_are_the_videos_frames(trained, make_cfg, wav):
    from radnerf.media.images import read_rgb
    from radnerf.talk import render

    plain = render(make_cfg(*TINY, f"audio={wav}"))
    pngs = plain.video.with_name("speech_frames")
    assert not pngs.exists()
    result = render(make_cfg(*TINY, f"audio={wav}", "render.png=true"))
    assert not result.skipped  # the video was there, its frames as PNG were not
    files = sorted(pngs.glob("*.png"))
    assert [f.name for f in files[:2]] == ["00000.png", "00001.png"] and len(files) == result.frames
    decoded = decoded_frames(result.video)
    assert np.abs(read_rgb(files[5]).astype(float) - decoded[5]).mean() < 4  # the frame before H.264
    assert render(make_cfg(*TINY, f"audio={wav}", "render.png=true")).skipped
