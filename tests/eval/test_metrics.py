"""The metric functions against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radnerf.eval.metrics import crop, lmd, psnr


def test_psnr_of_a_known_mse():
    a = np.zeros((4, 4, 3))
    b = np.full((4, 4, 3), 0.1)  # MSE 0.01 -> 20 dB
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)) == pytest.approx(0.0)
    assert psnr(b, b) == math.inf
    with pytest.raises(ValueError, match="shape"):
        psnr(a, b[:2])


def test_lmd_ignores_where_the_mouth_is_and_measures_its_shape():
    rng = np.random.default_rng(0)
    real = rng.uniform(0, 200, (3, 68, 2))
    moved = real + [7.0, -2.0]  # the whole face moved: the mouth's shape is the same
    assert lmd(moved, real) == (pytest.approx(0.0, abs=1e-9), 3)

    lips = real.copy()
    lips[:, 50] += [3.0, 4.0]  # one mouth point off by 5 px; centring spreads 1/20 of it over all 20
    # point 50 ends 5 * 19/20 away, the other 19 points 5/20 away: mean (4.75 + 19 * 0.25) / 20
    assert lmd(lips, real)[0] == pytest.approx((4.75 + 19 * 0.25) / 20)

    lips[1] = np.nan  # no face found in frame 1: left out
    assert lmd(lips, real)[1] == 2
    assert math.isnan(lmd(np.full((2, 68, 2), np.nan), real[:2])[0])


def test_crop_clips_a_rectangle_to_the_image():
    image = np.arange(100).reshape(10, 10)
    assert crop(image, (2, 4, 3, 6)).tolist() == [[23, 24, 25], [33, 34, 35]]
    assert crop(image, (-5, 2, 8, 20)).shape == (2, 2)
