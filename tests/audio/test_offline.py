import numpy as np
import pytest

from radnerf.audio import AudioFeaturesConfig, FeatureStream, extract_features, make_backend
from radnerf.audio.phonetic import NUM_CEPS, PHONES, PhoneticBackend, cepstra, phone_posteriors


def test_cepstra_golden():
    """Seeded chirp -> hard-coded MFCC slice (catches any change of window, filterbank or lifter)."""
    t = np.arange(3200) / 16000
    x = (0.3 * np.sin(2 * np.pi * (200 + 2000 * t) * t)).astype(np.float32)
    c = cepstra(x)
    assert c.shape == (10, NUM_CEPS)
    np.testing.assert_allclose(c[4, :6], GOLDEN_CEPS, rtol=1e-4, atol=1e-4)


GOLDEN_CEPS = [2.30864, -0.31366, -3.49011, -5.77528, -5.79941, -3.08272]


def test_cepstra_ignore_level_and_are_frame_local():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(6400) * 0.2).astype(np.float32)
    # No c0: above the -70 dB floor the recording level does not show.
    np.testing.assert_allclose(cepstra(x), cepstra(2 * x), atol=0.01)
    np.testing.assert_allclose(cepstra(x)[6:15], cepstra(x[1600:])[1:10], atol=1e-5)  # frame 0 reads the edge padding


def test_silence_is_silence():
    p = phone_posteriors(np.zeros(16000, np.float32))
    assert p.shape == (50, len(PHONES))
    assert np.all(p[:, PHONES.index("SIL")] == 1)


def test_speech_gives_varied_phones(speech_8s):
    x = speech_8s[: len(speech_8s) // 320 * 320]
    p = phone_posteriors(x)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert set(np.unique(p)) <= {0.0, 0.5, 1.0}
    used = {PHONES[i] for i in p.argmax(1)}
    assert len(used) >= 15, used
    assert np.mean(p[:, PHONES.index("SIL")] == 1) < 0.5  # it is mostly speech
    np.testing.assert_array_equal(p, phone_posteriors(x))  # deterministic across calls


def test_offline_backend_end_to_end(speech_8s):
    cfg = AudioFeaturesConfig()
    be = make_backend(cfg)
    assert isinstance(be, PhoneticBackend) and be.dim == 53
    out = extract_features(speech_8s, cfg, backend=be)
    assert out.shape == (200, 16, 53)
    assert np.isfinite(out).all()
    # Streaming with its own (short) chunk equals offline extraction on that chunk.
    stream = FeatureStream(cfg, be)
    parts = [stream.push(speech_8s[i: i + 480]) for i in range(0, len(speech_8s), 480)]
    streamed = np.concatenate(parts + [stream.finish()])
    np.testing.assert_array_equal(streamed, extract_features(speech_8s, cfg, backend=be, chunk_seconds=0.2))
    # Against the default 10 s chunk: the cepstra agree exactly, most phones too.
    np.testing.assert_allclose(streamed[:, :, len(PHONES):], out[:, :, len(PHONES):], atol=1e-5)
    same_phone = streamed[:, 8, : len(PHONES)].argmax(1) == out[:, 8, : len(PHONES)].argmax(1)
    assert same_phone.mean() > 0.5


@pytest.mark.parametrize("backend", ["nope", "deepspeech"])
def test_unknown_backend(backend):
    from radnerf.errors import ConfigError

    with pytest.raises(ConfigError, match="backend"):
        make_backend(AudioFeaturesConfig(backend=backend))


def test_live_cmn_removes_a_microphone_colouring(speech_8s):
    """The same speech through a brighter microphone: raw cepstra shift, normalised ones converge."""
    from scipy.signal import lfilter

    be = PhoneticBackend()
    x = speech_8s[: len(speech_8s) // 320 * 320]
    y = lfilter([1.0, 0.7], [1.0], x).astype(np.float32) * 0.5  # duller and quieter
    raw_x, raw_y = be(x), be(y)
    p = len(PHONES)
    norm_x, norm_y = be.normalizer()(raw_x), be.normalizer()(raw_y)
    late = (np.arange(len(raw_x)) >= 200) & (raw_x[:, 0] < 1)  # speech after 4 s, once the mean has adapted
    raw_gap = np.abs(raw_x[late, p + 1:] - raw_y[late, p + 1:]).mean()
    norm_gap = np.abs(norm_x[late, p:] - norm_y[late, p:]).mean()
    assert norm_gap < 0.4 * raw_gap, (raw_gap, norm_gap)


def test_live_cmn_is_split_invariant(speech_8s):
    be = PhoneticBackend()
    raw = be(speech_8s[: 320 * 150])
    whole = be.normalizer()(raw)
    norm = be.normalizer()
    parts = np.concatenate([norm(raw[:7]), norm(raw[7:61]), norm(raw[61:])])
    np.testing.assert_array_equal(parts, whole)


def test_worker_processes_give_the_same_features(speech_8s):
    be = PhoneticBackend()
    one = extract_features(speech_8s, AudioFeaturesConfig(workers=1, chunk_seconds=3.0), backend=be)
    two = extract_features(speech_8s, AudioFeaturesConfig(workers=2, chunk_seconds=3.0), backend=be)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize(
    "voice,text",
    [
        ("de", "Guten Morgen, wie geht es dir heute? Das Wetter ist wunderbar."),
        ("fr", "Bonjour tout le monde, nous allons au marché demain matin."),
        ("es", "Buenos días, me gustaría comprar pan y un poco de queso."),
        ("eo", "Bonan matenon, mi ŝatas lerni la lingvon Esperanto."),
    ],
)
def test_other_languages_give_phones_not_silence(voice, text):
    """The English phone loop still labels foreign speech with its nearest phones."""
    from tests.audio.audio_helpers import espeak

    x = espeak(text, voice)
    out = extract_features(x, AudioFeaturesConfig(workers=1))
    centre = out[:, 8, : len(PHONES)]
    speech = centre[:, PHONES.index("SIL")] < 1
    assert speech.mean() > 0.6
    assert len({PHONES[i] for i in centre[speech].argmax(1)}) >= 10
    assert np.isfinite(out).all() and np.abs(out[:, :, len(PHONES):]).max() < 50
