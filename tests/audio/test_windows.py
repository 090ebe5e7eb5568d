import numpy as np
import pytest

from radnerf.audio.windows import feature_range, frame_windows, num_frames_for
from radnerf.errors import ConfigError


def test_window_of_frame_i_is_centred_on_its_time():
    n, w = 5, 16
    start, stop = feature_range(n, w)
    assert (start, stop) == (-8, 2 * (n - 1) + 8)
    feats = np.arange(start, stop, dtype=np.float32)[:, None]  # feature value = its index
    out = frame_windows(feats, n, w)
    assert out.shape == (n, w, 1)
    for i in range(n):
        np.testing.assert_array_equal(out[i, :, 0], np.arange(2 * i - 8, 2 * i + 8))
        # Features 2i-1 and 2i straddle t = i/25 s: eight feature centres before it, eight after.
        centres = (out[i, :, 0] + 0.5) * 0.02
        assert np.sum(centres < i / 25) == 8 and np.sum(centres > i / 25) == 8


def test_matches_rad_nerf_unfold():
    """RAD-NeRF cuts windows with F.unfold(kernel 16, padding 8, stride 2) from 50 Hz features."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    m, c = 40, 3
    feats50 = rng.standard_normal((m, c)).astype(np.float32)
    x = torch.from_numpy(feats50).T.reshape(1, c, m, 1)
    ref = torch.nn.functional.unfold(x, kernel_size=(16, 1), padding=(8, 0), stride=(2, 1))
    ref = ref.view(c, 16, -1).permute(2, 1, 0).numpy()  # [m/2 + 1, 16, C]
    n = m // 2
    padded = np.concatenate([np.zeros((8, c), np.float32), feats50, np.zeros((6, c), np.float32)])
    np.testing.assert_array_equal(frame_windows(padded, n, 16), ref[:n])


def test_frame_count():
    assert num_frames_for(640 * 200) == 200
    assert num_frames_for(640 * 200 + 1) == 201
    assert num_frames_for(1) == 1


@pytest.mark.parametrize("window,fps", [(15, 25), (0, 25), (16, 30)])
def test_bad_geometry(window, fps):
    with pytest.raises(ConfigError):
        feature_range(10, window, fps)
