"""PersonDataset on a tiny person folder written by hand with the project's writers (6 frames of 32x24)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from radnerf.data import PersonDataset
from radnerf.errors import InputError
from radnerf.formats.regions import COLUMNS, write_regions
from radnerf.media.images import write_rgb
from radnerf.paths import PersonPaths
from radnerf.render.rays import nerf_to_ngp_pose

N, W, H, C = 6, 32, 24, 53
TRAIN, VAL = [0, 1, 2, 3, 4], [5]  # RAD-NeRF's split of a 6-frame clip: the last 1/11, at least one frame
FOCAL, CX, CY = 40.0, 16.0, 12.0
GREY = 100  # a uniform grey JPEG decodes back exactly


@dataclass
class Person:
    paths: PersonPaths
    matrices: np.ndarray  # [N, 4, 4] as written to the transforms
    audio: np.ndarray  # [N, 16, C]
    rows: list[dict]
    torso: np.ndarray  # [N, H, W, 4]


def _pose(i: int) -> list[list[float]]:
    a = 0.1 * i
    rot = [[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]]
    t = [0.01 * i, -0.02, 0.7 + 0.003 * i]
    return [[*rot[r], t[r]] for r in range(3)] + [[0.0, 0.0, 0.0, 1.0]]


def _transforms(ids: list[int], eye: bool = True) -> dict:
    frames = []
    for i in ids:
        f = {"img_id": i, "aud_id": i, "transform_matrix": _pose(i)}
        if eye:
            f["eye_ratio"] = 0.25 + 0.01 * i
        frames.append(f)
    return {"focal_len": FOCAL, "cx": CX, "cy": CY, "frames": frames}


def _write_transforms(paths: PersonPaths, split: str, data: dict) -> None:
    paths.transforms(split).write_text(json.dumps(data))


@pytest.fixture
def person(tmp_path) -> Person:
    paths = PersonPaths.for_person(tmp_path, "tiny")
    for folder in (paths.root, paths.gt_imgs, paths.torso_imgs):
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    torso = np.zeros((N, H, W, 4), np.uint8)
    for i in range(N):
        write_rgb(paths.gt_image(i), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        torso[i, H // 2 :] = (30 * i, 60, 90, 255)  # opaque torso in the lower half
        torso[i, 3, 5] = (200, 100, 0, 64)  # a quarter-transparent pixel
        write_rgb(paths.torso_image(i), torso[i])
    write_rgb(paths.background_image, np.full((H, W, 3), GREY, np.uint8))
    rows = [
        dict(zip(COLUMNS, (i, 0.3 + 0.01 * i, 2, 20, 4, 28, 14, 18, 10 + i, 22, 0)))
        for i in range(N)
    ]
    write_regions(paths.regions, rows)
    _write_transforms(paths, "train", _transforms(TRAIN))
    _write_transforms(paths, "val", _transforms(VAL))
    audio = rng.standard_normal((N, 16, C)).astype(np.float32)
    np.save(paths.audio_features("ph"), audio)
    matrices = np.array([_pose(i) for i in range(N)], np.float32)
    return Person(paths, matrices, audio, rows, torso)


def test_loads_the_train_split(person):
    ds = PersonDataset.load(person.paths, "train")
    assert len(ds) == 5 and ds.img_ids.tolist() == TRAIN and ds.aud_ids.tolist() == TRAIN
    assert ds.poses.shape == (5, 4, 4) and ds.poses.dtype == np.float32
    assert ds.intrinsics.tolist() == [FOCAL, FOCAL, CX, CY] and ds.intrinsics.dtype == np.float32
    assert (ds.height, ds.width) == (H, W)
    for i in range(len(ds)):
        assert ds.image(i).shape == (H, W, 3) and ds.image(i).dtype == np.uint8
        assert ds.torso(i).shape == (H, W, 4) and ds.torso(i).dtype == np.uint8
        assert ds.head_background(i).shape == (H, W, 3) and ds.head_background(i).dtype == np.uint8
        assert np.array_equal(ds.torso(i), person.torso[i])  # PNG: exact
    assert ds.background.shape == (H, W, 3) and ds.background.dtype == np.uint8
    assert (ds.background == GREY).all()
    # Eye ratio from the transforms; rectangles from regions.csv as row0, row1, col0, col1.
    assert np.allclose(ds.eye, [0.25 + 0.01 * i for i in TRAIN]) and ds.eye.dtype == np.float32
    assert ds.face_rects.tolist() == [[2, 20, 4, 28]] * 5
    assert ds.lips_rects.tolist() == [[14, 18, 10 + i, 22] for i in TRAIN]
    assert ds.face_rects.dtype.kind == "i" and ds.lips_rects.shape == (5, 4)
    # Audio windows: the whole file memory-mapped, the split's rows by aud_id.
    assert isinstance(ds.audio, np.memmap) and ds.audio.shape == (N, 16, C)
    assert np.array_equal(ds.auds, person.audio[TRAIN]) and ds.auds.shape == (5, 16, C)


def test_pose_is_nerf_to_ngp_pose_of_the_file(person):
    ds = PersonDataset.load(person.paths, "train")
    expected = nerf_to_ngp_pose(torch.from_numpy(person.matrices[TRAIN])).numpy()
    assert np.array_equal(ds.poses, expected)
    # The model's pose_scale and pose_offset are passed through.
    moved = PersonDataset.load(person.paths, "train", scale=2.0, offset=(0.5, 0.0, -0.25))
    expected = nerf_to_ngp_pose(torch.from_numpy(person.matrices[TRAIN]), scale=2.0, offset=(0.5, 0.0, -0.25))
    assert np.array_equal(moved.poses, expected.numpy())
    assert not np.allclose(moved.poses[:, :3, 3], ds.poses[:, :3, 3])


def test_val_split_holds_only_val_frames(person):
    ds = PersonDataset.load(person.paths, "val")
    assert len(ds) == 1 and ds.img_ids.tolist() == VAL and ds.aud_ids.tolist() == VAL
    assert np.array_equal(ds.auds, person.audio[VAL])
    assert ds.lips_rects.tolist() == [[14, 18, 15, 22]]
    assert np.array_equal(ds.torso(0), person.torso[5])


def test_eye_ratio_falls_back_to_regions(person):
    _write_transforms(person.paths, "train", _transforms(TRAIN, eye=False))
    ds = PersonDataset.load(person.paths, "train")
    assert np.allclose(ds.eye, [0.3 + 0.01 * i for i in TRAIN])


def test_head_background_is_the_torso_over_the_background(person):
    ds = PersonDataset.load(person.paths, "train")
    target = ds.head_background(2)
    # (200, 100, 0) at alpha 64 over grey 100: (c * 64 + 100 * 191) / 255, rounded.
    assert target[3, 5].tolist() == [125, 100, 75]
    assert target[0, 0].tolist() == [GREY] * 3  # transparent: the background
    assert target[H - 1, 0].tolist() == [60, 60, 90]  # opaque: the torso (frame 2: 30 * 2)


def _drop_gt(p: Person) -> None:
    p.paths.gt_image(3).unlink()


def _drop_torso(p: Person) -> None:
    p.paths.torso_image(1).unlink()


def _short_audio(p: Person) -> None:
    np.save(p.paths.audio_features("ph"), p.audio[:3])


def _short_regions(p: Person) -> None:
    write_regions(p.paths.regions, p.rows[:4])


def _nan_pose(p: Person) -> None:
    data = _transforms(TRAIN)
    data["frames"][2]["transform_matrix"][0][3] = float("nan")
    _write_transforms(p.paths, "train", data)


@pytest.mark.parametrize(
    "break_it, names, hint",
    [
        (_drop_gt, ["3.jpg", "img_id 3"], "radnerf torso person=tiny"),
        (_drop_torso, ["1.png", "img_id 1"], "radnerf torso person=tiny"),
        (_short_audio, ["aud_ph.npy has 3 windows", "transforms_train.json uses aud_id up to 4"],
         "radnerf audio person=tiny"),
        (_short_regions, ["regions.csv has 4 rows", "img_id 4"], "radnerf regions person=tiny"),
        (_nan_pose, ["transforms_train.json", "img_id 2", "not finite"], "radnerf track person=tiny"),
    ],
    ids=["missing gt image", "missing torso image", "short audio", "short regions", "NaN pose"],
)
def test_mismatched_files_raise_naming_the_file(person, break_it, names, hint):
    break_it(person)
    with pytest.raises(InputError) as err:
        PersonDataset.load(person.paths, "train")
    for name in names:
        assert name in err.value.message
    assert hint in err.value.hint


def test_missing_audio_features_name_the_backend(person):
    with pytest.raises(InputError) as err:
        PersonDataset.load(person.paths, "train", audio_features="hu")
    assert "aud_hu.npy does not exist" in err.value.message
    assert "radnerf audio person=tiny audio_features=hubert" in err.value.hint
