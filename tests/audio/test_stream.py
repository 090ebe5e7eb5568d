import numpy as np
import pytest

from radnerf.audio import AudioFeaturesConfig, FeatureStream, extract_features, stream_features
from tests.audio.audio_helpers import ChunkSensitiveBackend, EnergyBackend


def random_chunks(x: np.ndarray, seed: int = 0):
    """20-40 ms pieces, as a microphone or a network would deliver them."""
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(x):
        n = int(rng.integers(320, 641))
        yield x[i: i + n]
        i += n


@pytest.mark.parametrize("seconds", [3.0, 3.013, 0.05])
def test_stream_equals_offline_with_the_same_chunk(seconds):
    """A backend whose output depends on the chunk: equal only because the chunk grid is shared."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(int(16000 * seconds)) * np.repeat(rng.random(int(seconds * 50) + 1), 320)[: int(16000 * seconds)]).astype(np.float32)
    cfg = AudioFeaturesConfig(stream_chunk_seconds=0.2, context_seconds=0.3, lookahead_seconds=0.1)
    be = ChunkSensitiveBackend()
    streamed = np.stack(list(stream_features(random_chunks(x), cfg, be)))
    offline = extract_features(x, cfg, backend=be, chunk_seconds=cfg.stream_chunk_seconds)
    assert streamed.shape == offline.shape
    np.testing.assert_array_equal(streamed, offline)
    # The default offline chunk (10 s) is a different grid: close, not equal.
    if seconds > 1:
        assert not np.array_equal(extract_features(x, cfg, backend=be), offline)


def test_frame_local_backend_is_chunk_independent():
    x = np.random.default_rng(3).standard_normal(16000 * 2).astype(np.float32) * 0.1
    cfg = AudioFeaturesConfig()
    streamed = np.stack(list(stream_features(random_chunks(x, 4), cfg, EnergyBackend())))
    np.testing.assert_allclose(streamed, extract_features(x, cfg, backend=EnergyBackend()), rtol=0, atol=1e-5)


def test_windows_leave_with_bounded_lookahead():
    """Frame i is out once the audio reaches at most (W/2 - 1 + chunk + look-ahead) x 20 ms past i/25 s."""
    cfg = AudioFeaturesConfig(stream_chunk_seconds=0.2, lookahead_seconds=0.2)
    stream = FeatureStream(cfg, EnergyBackend())
    best, worst = stream.lookahead_range_seconds
    assert (best, worst) == pytest.approx((0.36, 0.54))
    x = np.random.default_rng(5).standard_normal(16000 * 3).astype(np.float32) * 0.1
    received = 0
    for chunk in random_chunks(x, 6):
        before = stream.frames_emitted
        received += len(chunk)
        got = stream.push(chunk)
        now = received / 16000
        for i in range(before, before + len(got)):
            assert now - i / 25 <= worst + 0.04 + 1e-9  # plus at most one input chunk of waiting
        # Every frame that could be final is out.
        assert stream.frames_emitted >= int((now - worst - 0.04) * 25)
    before_finish = stream.frames_emitted
    rest = stream.finish()
    assert 0 < len(rest) and before_finish + len(rest) == 75 == stream.frames_emitted
    assert len(stream.finish()) == 0
    with pytest.raises(RuntimeError):
        stream.push(x[:320])


def test_stream_keeps_memory_bounded():
    stream = FeatureStream(AudioFeaturesConfig(), EnergyBackend())
    x = np.zeros(16000 * 20, np.float32)
    for chunk in random_chunks(x, 7):
        stream.push(chunk)
        assert len(stream._audio) <= 16000 * (0.5 + 0.2 + 0.2 + 0.05)
        assert len(stream._feats) <= 16 + 10 + 2


def test_stream_with_no_audio_is_an_error():
    from radnerf.errors import InputError

    with pytest.raises(InputError):
        FeatureStream(AudioFeaturesConfig(), EnergyBackend()).finish()
