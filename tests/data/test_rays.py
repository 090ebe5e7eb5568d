"""Ray batches of a person's frames: the right pixels, colours and face mask; a bounded image cache."""

from __future__ import annotations

import numpy as np
import torch

from radnerf.data import PersonDataset
from radnerf.data.rays import HeadRays, TorsoPixels
from radnerf.paths import PersonPaths
from radnerf.render.rays import get_rays
from tests.train.synthetic_person import make_synthetic_person


def test_batches_carry_the_frames_pixels(tmp_path):
    make_synthetic_person(tmp_path / "synth", n_train=6, n_val=2, size=20)
    ds = PersonDataset.load(PersonPaths(tmp_path / "synth"), "train")
    rays = HeadRays(ds, num_rays=64)
    batch = rays.sample(torch.Generator().manual_seed(0))
    i, pixels = batch.index, batch.rays.pixels
    rows, cols = (pixels // 20).numpy(), (pixels % 20).numpy()
    np.testing.assert_allclose(batch.rgb.numpy() * 255, ds.image(i)[rows, cols], atol=1e-3)
    np.testing.assert_allclose(batch.background.numpy() * 255, ds.head_background(i)[rows, cols], atol=1e-3)
    r0, r1, c0, c1 = ds.face_rects[i]
    assert batch.face.tolist() == ((rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)).tolist()
    expected = get_rays(torch.from_numpy(ds.poses[i]), tuple(ds.intrinsics), 20, 20, pixels)
    assert torch.allclose(batch.rays.directions, expected.directions)
    assert batch.eye == float(ds.eye[i]) and batch.aud_id == int(ds.aud_ids[i])
    assert len(rays.batch(0).rays) == 400  # no pixels given: the whole frame


def test_the_image_cache_keeps_to_its_budget(tmp_path):
    make_synthetic_person(tmp_path / "synth", n_train=6, n_val=2, size=20)
    ds = PersonDataset.load(PersonPaths(tmp_path / "synth"), "train")
    image = 20 * 20 * 3
    small = HeadRays(ds, num_rays=8, cache_bytes=3 * image)
    for _ in range(2):
        for i in range(4):
            small.batch(i)
    assert small.cache.decoded == 16  # 2 images a frame, never all in 3 slots: decoded again on each pass
    roomy = HeadRays(ds, num_rays=8, cache_bytes=100 * image)
    for _ in range(2):
        for i in range(4):
            roomy.batch(i)
    assert roomy.cache.decoded == 8


def test_torso_batches_carry_the_target_and_the_background_at_the_pixels(tmp_path):
    make_synthetic_person(tmp_path / "synth", n_train=6, n_val=2, size=20, torso=True)
    ds = PersonDataset.load(PersonPaths(tmp_path / "synth"), "train")
    g = torch.Generator().manual_seed(0)
    batch = TorsoPixels(ds, num_rays=64).sample(g)
    i, pixels = batch.index, batch.pixels
    rows, cols = (pixels // 20).numpy(), (pixels % 20).numpy()
    head = HeadRays(ds, num_rays=64).sample(torch.Generator().manual_seed(0))
    assert i == head.index and torch.equal(pixels, head.rays.pixels)  # the head's draw: same frame, same pixels
    np.testing.assert_allclose(batch.target.numpy() * 255, ds.head_background(i)[rows, cols], atol=1e-3)
    np.testing.assert_allclose(batch.background.numpy() * 255, ds.background[rows, cols], atol=1e-3)
    frame = TorsoPixels(ds, num_rays=64, target="frame").batch(i, pixels)
    np.testing.assert_allclose(frame.target.numpy() * 255, ds.image(i)[rows, cols], atol=1e-3)
    assert len(TorsoPixels(ds, num_rays=8).batch(0).pixels) == 400  # no pixels given: the whole frame
