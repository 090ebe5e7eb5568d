import logging
import subprocess

import numpy as np
import pytest

from radnerf.audio import AudioFeaturesConfig, extract_features
from radnerf.audio.extract import to_mono_16k
from radnerf.errors import InputError
from tests.audio.audio_helpers import CLIPS, EnergyBackend


def click_train(frames: list[int], num_frames: int, offset: int = 160) -> np.ndarray:
    """Silence with one click per listed frame, ``offset`` samples after the frame time."""
    x = np.zeros(num_frames * 640, np.float32)
    for i in frames:
        x[640 * i + offset] = 0.9
    return x


@pytest.mark.parametrize("chunk_seconds", [10.0, 0.1, 0.26])
def test_click_train_lands_at_the_window_centre(chunk_seconds):
    """A click just after frame i's time is feature 2i: index 8 of frame i's window, 6 of frame i+1's."""
    n = 60
    clicks = [0, 7, 20, 33, 59]
    cfg = AudioFeaturesConfig(context_seconds=0.1, lookahead_seconds=0.06)
    out = extract_features(click_train(clicks, n), cfg, backend=EnergyBackend(), chunk_seconds=chunk_seconds)
    assert out.shape == (n, 16, 2)
    energy = out[:, :, 0]
    loud = energy > -10
    for i in range(n):
        expected = {8 + 2 * (c - i) for c in clicks if 0 <= 8 + 2 * (c - i) < 16}
        assert set(np.flatnonzero(loud[i])) == expected, i


def test_click_before_frame_time_is_index_7():
    out = extract_features(click_train([10], 30, offset=-100), AudioFeaturesConfig(), backend=EnergyBackend())
    assert np.flatnonzero(out[10, :, 0] > -10).tolist() == [7]


def test_num_frames_pads_and_cuts():
    x = click_train([3], 10)
    be = EnergyBackend()
    longer = extract_features(x, num_frames=14, backend=be)
    shorter = extract_features(x, num_frames=6, backend=be)
    assert longer.shape[0] == 14 and shorter.shape[0] == 6
    np.testing.assert_array_equal(shorter, longer[:6])
    assert np.all(longer[12:, :, 0] < -10)  # past the audio: silence


def test_chunks_bound_the_model_input():
    """A long file is fed to the model in pieces of chunk + context + look-ahead, never whole."""
    cfg = AudioFeaturesConfig(chunk_seconds=2.0, context_seconds=0.5, lookahead_seconds=0.2)
    be = EnergyBackend()
    x = np.random.default_rng(0).standard_normal(16000 * 30).astype(np.float32) * 0.1
    out = extract_features(x, cfg, backend=be)
    assert out.shape == (750, 16, 2)
    assert be.longest == int((2.0 + 0.5 + 0.2) * 16000)
    assert be.calls == 16


def test_channels_and_sample_rate_are_converted():
    rng = np.random.default_rng(1)
    t = np.arange(44100 * 2) / 44100
    mono = (0.3 * np.sin(2 * np.pi * 440 * t) * (rng.random(len(t)) > 0.5)).astype(np.float32)
    stereo = np.stack([mono, mono], axis=1)
    x = to_mono_16k(stereo, 44100)
    assert abs(len(x) - 32000) <= 1
    np.testing.assert_allclose(x, to_mono_16k(mono, 44100), atol=1e-6)
    pcm = (np.stack([mono, mono]) * 32767).astype(np.int16)  # [channels, S] int16
    np.testing.assert_allclose(to_mono_16k(pcm, 44100), x, atol=1e-3)
    assert extract_features(stereo, sample_rate=44100, backend=EnergyBackend()).shape == (50, 16, 2)


def test_empty_and_nonfinite_are_refused():
    with pytest.raises(InputError, match="empty"):
        extract_features(np.zeros(0, np.float32), backend=EnergyBackend())
    bad = np.zeros(16000, np.float32)
    bad[5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        extract_features(bad, backend=EnergyBackend())


def test_silence_clipping_and_short_audio_warn(caplog):
    caplog.set_level(logging.WARNING, logger="radnerf.audio")
    extract_features(np.zeros(16000, np.float32), backend=EnergyBackend())
    assert "silent" in caplog.text
    caplog.clear()
    loud = np.sign(np.sin(np.arange(16000) / 5.0)).astype(np.float32) * 1.5
    out = extract_features(loud, backend=EnergyBackend())
    assert "exceeds full scale" in caplog.text and "clipped" in caplog.text
    assert np.isfinite(out).all()
    caplog.clear()
    short = extract_features(np.full(1000, 0.1, np.float32), backend=EnergyBackend())
    assert "shorter than one 16-frame window" in caplog.text
    assert short.shape == (2, 16, 2)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        extract_features(tmp_path / "nope.wav", backend=EnergyBackend())
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + bytes(range(256)) * 8)
    with pytest.raises(InputError):
        extract_features(bad, backend=EnergyBackend())


def test_video_file_with_stereo_44k_audio(tmp_path):
    """Any file ffmpeg reads: the 8 s clip re-muxed with 44.1 kHz stereo audio gives 200 frames."""
    clip = CLIPS / "hdtf_katiehill_8s.mp4"
    if not clip.exists():
        pytest.skip(f"shared test data not found: {clip}")
    from radnerf.media import ffmpeg_exe

    dst = tmp_path / "stereo.mkv"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(clip), "-c:v", "copy", "-ac", "2", "-ar", "44100", str(dst)], check=True
    )
    out = extract_features(dst, backend=EnergyBackend())
    assert out.shape[0] in (200, 201)
    ref = extract_features(clip, backend=EnergyBackend())
    k = min(len(out), len(ref))
    # Same audio through two resampling paths: frame energies agree closely.
    assert np.median(np.abs(out[:k, 8, 0] - ref[:k, 8, 0])) < 0.5
