"""The render controls: pose, eyes and background of a rendered video, and the mistakes they refuse."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from radnerf.errors import ConfigError, InputError
from radnerf.render.rays import nerf_to_ngp_pose
from radnerf.talk.controls import background_image, eye_track, frame_poses, over, pingpong, smooth_poses


def poses(n: int, seed: int = 0) -> np.ndarray:
    """``[n, 4, 4]`` camera-to-world matrices turning slowly about y, 1.5 m away."""
    g = np.random.default_rng(seed)
    out = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    for k, a in enumerate(np.linspace(-0.2, 0.2, n) + g.normal(0, 0.01, n)):
        out[k, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        out[k, :3, 3] = [0.0, 0.0, 1.5]
    return out


def test_clip_poses_loop_smoothed_and_still_holds_the_first():
    clip = poses(10)
    looped = frame_poses("clip", clip, 25)
    np.testing.assert_allclose(looped, smooth_poses(clip)[pingpong(25, 10)])
    still = frame_poses("still", clip, 25)
    assert still.shape == (25, 4, 4) and np.allclose(still, still[0]) and np.allclose(still[0], smooth_poses(clip)[0])


@pytest.mark.parametrize("kind", ["npy", "json"])
def test_a_pose_file_is_read_in_the_transforms_convention(tmp_path, kind):
    raw = poses(6, seed=1)
    if kind == "npy":
        path = tmp_path / "poses.npy"
        np.save(path, raw)
    else:
        path = tmp_path / "transforms_val.json"
        path.write_text(json.dumps({"frames": [{"transform_matrix": m.tolist()} for m in raw]}))
    got = frame_poses(str(path), poses(3), 10, scale=4.0, offset=(0.0, 0.0, 0.0))
    expected = nerf_to_ngp_pose(torch.from_numpy(raw), scale=4.0, offset=(0.0, 0.0, 0.0)).numpy()
    np.testing.assert_allclose(got, expected[pingpong(10, 6)], atol=1e-6)


def test_bad_pose_values_say_what_is_accepted(tmp_path):
    with pytest.raises(ConfigError, match="pose='wobble' is neither clip, still nor an existing file"):
        frame_poses("wobble", poses(3), 5)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 3)))
    with pytest.raises(InputError, match=r"not \[K, 4, 4\] poses"):
        frame_poses(str(bad), poses(3), 5)


def test_eyes_follow_the_clip_stay_open_or_blink():
    clip = np.linspace(0.1, 0.5, 20).astype(np.float32)
    order = pingpong(300, 20)
    np.testing.assert_allclose(eye_track("clip", clip, order), clip[order])
    opened = eye_track("open", clip, order)
    assert np.allclose(opened, np.percentile(clip, 90))
    auto = eye_track("auto", clip, order, fps=25)
    closed = auto < np.percentile(clip, 90) - 1e-6
    starts = np.flatnonzero(closed[1:] & ~closed[:-1]) + 1
    assert 2 <= len(starts) <= 6  # 12 s of video: a blink every 2-6 s
    assert auto.min() == pytest.approx(np.percentile(clip, 2), abs=0.02)  # each blink closes the eyes
    assert np.diff(starts).min() >= 0.5 * 4.0 * 25 - 1
    np.testing.assert_array_equal(auto, eye_track("auto", clip, order, fps=25))  # the same video twice


def test_eyes_from_a_file_loop_and_bad_files_are_refused(tmp_path):
    path = tmp_path / "eyes.txt"
    path.write_text("0.2\n0.3\n0.4\n")
    np.testing.assert_allclose(eye_track(str(path), np.ones(5), np.zeros(7, np.int64)),
                               np.array([0.2, 0.3, 0.4])[pingpong(7, 3)])
    bad = tmp_path / "bad.txt"
    bad.write_text("open\n")
    with pytest.raises(InputError, match="not a file of eye ratios"):
        eye_track(str(bad), np.ones(5), np.zeros(3, np.int64))
    with pytest.raises(ConfigError, match="eyes='shut'"):
        eye_track("shut", np.ones(5), np.zeros(3, np.int64))


def test_backgrounds_from_the_clip_a_colour_or_an_image(tmp_path):
    from PIL import Image

    bc = np.full((20, 30, 3), 7, np.uint8)
    assert background_image("clip", bc) is bc
    assert (background_image("white", bc) == 255).all()
    assert tuple(background_image("#102030", bc)[5, 5]) == (16, 32, 48)
    path = tmp_path / "beach.png"
    Image.fromarray(np.full((100, 50, 3), (200, 100, 50), np.uint8)).save(path)
    image = background_image(str(path), bc)
    assert image.shape == (20, 30, 3) and tuple(image[10, 10]) == (200, 100, 50)
    with pytest.raises(ConfigError, match="bg='#12'"):
        background_image("#12", bc)


def test_the_clips_torso_goes_over_a_new_background():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # torso
    rgba[1, 1] = (255, 0, 0, 0)  # transparent
    out = over(rgba, np.full((2, 2, 3), 255, np.uint8))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[1, 1]) == (255, 255, 255)
