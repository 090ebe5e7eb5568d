"""Mouth-audio correlation: the parts on constructed signals, then the whole measure on real and demo clips.

The clip tests are the measure's validation: a clip with its own audio should
score clearly positive with its best offset at 0; the same clip with its audio
moved by 5 frames (200 ms) should score lower at 0 and find the shift; a still
face should get no number at all.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from radnerf.config import DemoConfig
from radnerf.errors import InputError
from radnerf.eval.lipsync import (
    MOVING_STD,
    SAMPLE_RATE,
    audio_openness,
    envelope_openness,
    face_landmarks,
    mouth_audio_sync,
    mouth_opening,
    opening_from_landmarks,
    phone_openness,
    score_video,
    shifted_corr,
)
from radnerf.media import load_audio, probe, run_ffmpeg
from radnerf.preprocess.landmark_backends import Face, make_backend
from tests.conftest import real_clip

HOP = SAMPLE_RATE // 25  # audio samples per 25 fps frame


def _face_points(gap: float, eyes: float) -> np.ndarray:
    """``[68, 2]`` points: eye centres ``eyes`` apart, inner lips ``gap`` apart, everything else at 0."""
    pts = np.zeros((68, 2))
    pts[36:42] = (-eyes / 2, -50.0)
    pts[42:48] = (eyes / 2, -50.0)
    for top, bottom in ((61, 67), (62, 66), (63, 65)):
        pts[top] = (top, 0.0)
        pts[bottom] = (top, gap)
    return pts


def _smooth_noise(n: int, seed: int) -> np.ndarray:
    """``[n]`` seeded noise smoothed over a few frames, like a mouth signal."""
    x = np.random.default_rng(seed).standard_normal(n + 8)
    return np.convolve(x, np.hanning(7), "valid")[:n]


def _delay(audio: np.ndarray, frames: int) -> np.ndarray:
    """``audio`` played ``frames`` video frames late (negative: early), same length."""
    s = frames * HOP
    if s >= 0:
        return np.concatenate([np.zeros(s, np.float32), audio[: len(audio) - s]])
    return np.concatenate([audio[-s:], np.zeros(-s, np.float32)])


def _decode(path: Path, frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``([N, H, W, 3] uint8 RGB frames at 25 fps, [S] 16 kHz audio)`` of a clip, on the ingest stage's clock."""
    info = probe(path)
    assert info.video is not None
    args = ["-i", str(path), "-map", "0:v:0", "-an", "-vf", "fps=fps=25:start_time=0:round=near"]
    if frames is not None:
        args += ["-frames:v", str(frames)]
    proc = run_ffmpeg([*args, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], what="decoding", capture_stdout=True)
    video = np.frombuffer(proc.stdout, np.uint8).reshape(-1, info.video.height, info.video.width, 3)
    return video, load_audio(path, SAMPLE_RATE)


# -- mouth opening -------------------------------------------------------------------


def test_opening_is_the_inner_lip_gap_over_the_eye_distance():
    lms = np.stack([_face_points(6.0, 60.0), _face_points(0.0, 60.0), _face_points(12.0, 40.0)])
    assert np.allclose(opening_from_landmarks(lms), [0.1, 0.0, 0.3])
    # A face twice as large (closer to the camera) opens its mouth just as wide.
    assert np.allclose(opening_from_landmarks(lms * 2.0), opening_from_landmarks(lms))


def test_opening_is_nan_without_a_face():
    lms = np.stack([_face_points(6.0, 60.0), np.full((68, 2), np.nan)])
    out = opening_from_landmarks(lms)
    assert out[0] == pytest.approx(0.1) and math.isnan(out[1])


def test_opening_refuses_other_landmark_layouts():
    with pytest.raises(InputError, match=r"\[N, 68, 2\]"):
        opening_from_landmarks(np.zeros((3, 98, 2)))


class _ScriptedDetector:
    """Returns the faces listed for each call, in order."""

    name = "scripted"

    def __init__(self, per_frame: list[list[Face]]):
        self.per_frame = iter(per_frame)

    def detect(self, image: np.ndarray) -> list[Face]:
        return next(self.per_frame)


def _face(width: float, gap: float) -> Face:
    return Face(box=np.array([0.0, 0.0, width, width]), points=_face_points(gap, 60.0), score=1.0)


def test_the_largest_face_is_the_speaker():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    detector = _ScriptedDetector([[_face(20, 30.0), _face(100, 6.0)], [], [_face(50, 12.0)]])
    lms = face_landmarks(frames, detector)
    assert np.isnan(lms[1]).all()
    assert np.allclose(opening_from_landmarks(lms[[0, 2]]), [0.1, 0.2])


def test_frames_must_be_uint8_rgb():
    with pytest.raises(InputError, match="uint8"):
        mouth_opening(np.zeros((2, 8, 8, 3), np.float32), _ScriptedDetector([]))


# -- audio openness ------------------------------------------------------------------


def _tone(hz: float, seconds: float, level: float = 0.3) -> np.ndarray:
    return (level * np.sin(2 * np.pi * hz * np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE)).astype(np.float32)


def test_envelope_is_loud_where_the_speech_is_and_floored_elsewhere():
    audio = np.concatenate([np.zeros(SAMPLE_RATE), _tone(1500, 1.0), np.zeros(SAMPLE_RATE)])
    env = envelope_openness(audio, 75)
    assert env.shape == (75,)
    assert env[28:47].min() > env.min() + 35  # the tone, one frame in from its edges
    assert np.ptp(env[:23]) == 0 and np.ptp(env[52:]) == 0  # silence sits on one floor
    assert env[:23].max() == pytest.approx(env[28:47].max() - 40, abs=0.5)


def test_envelope_listens_to_the_f2_band():
    # Same amplitude: the 200 Hz murmur (as of a closed-lip /m/) is far quieter in 1-3 kHz than a 1.5 kHz tone.
    low = envelope_openness(np.concatenate([_tone(200, 1.0), _tone(1500, 1.0)]), 50)
    assert low[5:20].mean() < low[30:45].mean() - 20
    wide = envelope_openness(np.concatenate([_tone(200, 1.0), _tone(1500, 1.0)]), 50, band_hz=(0, 8000))
    assert abs(wide[5:20].mean() - wide[30:45].mean()) < 1.0


def test_audio_past_its_end_is_silence():
    env = envelope_openness(_tone(1500, 1.0), 50)
    assert env.shape == (50,) and env[30:].max() < env[:20].min() - 30


def test_phone_openness_is_zero_in_silence_and_one_value_per_frame():
    out = phone_openness(np.zeros(2 * SAMPLE_RATE, np.float32), 51)
    assert out.shape == (51,) and np.all(out == 0.0)


def test_unknown_openness_source_is_refused():
    with pytest.raises(InputError, match="envelope"):
        audio_openness(np.zeros(SAMPLE_RATE, np.float32), 25, source="syncnet")  # type: ignore[arg-type]


# -- correlation ---------------------------------------------------------------------


def test_positive_offset_means_the_video_lags_the_audio():
    sound = _smooth_noise(200, seed=1)
    lips = np.concatenate([np.zeros(3), sound[:-3]])  # the lips do at t what the sound did at t - 3
    score = mouth_audio_sync(lips, sound)
    assert score["best_offset"] == 3 and score["best_corr"] == pytest.approx(1.0)
    assert score["corr_at_0"] < 0.9 and score["moving"]
    assert shifted_corr(lips, sound, 3) == pytest.approx(1.0)


def test_frames_without_a_face_are_left_out():
    sound = _smooth_noise(200, seed=2)
    lips = 0.1 * sound + 0.2
    lips[50:80] = np.nan
    score = mouth_audio_sync(lips, sound)
    assert score["corr_at_0"] == pytest.approx(1.0) and score["best_offset"] == 0


def test_a_constant_signal_has_no_correlation():
    sound = _smooth_noise(200, seed=3)
    still = mouth_audio_sync(np.full(200, 0.123), sound)
    assert math.isnan(still["corr_at_0"]) and math.isnan(still["best_corr"]) and still["best_offset"] is None
    assert not still["moving"]
    silence = mouth_audio_sync(0.1 * sound, envelope_openness(np.zeros(8 * SAMPLE_RATE, np.float32), 200))
    assert math.isnan(silence["corr_at_0"]) and silence["moving"]


def test_jitter_alone_does_not_count_as_moving():
    jitter = 0.15 + 0.5 * MOVING_STD * np.random.default_rng(0).standard_normal(200)
    assert not mouth_audio_sync(jitter, _smooth_noise(200, seed=4))["moving"]


def test_too_few_frames_give_nan():
    assert math.isnan(shifted_corr(np.arange(12.0), np.arange(12.0), 5))


def test_signals_must_match():
    with pytest.raises(InputError, match="num_frames"):
        mouth_audio_sync(np.zeros(10), np.zeros(11))


# -- the demo sample: runs on any machine ---------------------------------------------


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The embedded sample (jaw driven by loudness, 242 frames): ``(frames, audio, dlib mouth opening)``."""
    from radnerf.demo.sample import make_sample

    sample = make_sample(tmp_path_factory.mktemp("demo") / "demo.mp4", DemoConfig(size=192))
    frames, audio = _decode(sample.video)
    return frames, audio, mouth_opening(frames, make_backend("dlib"))


def test_demo_sample_scores_high_at_its_own_alignment(demo_clip):
    frames, audio, _ = demo_clip
    score = score_video(frames, audio, make_backend("dlib"))
    # Measured: 0.88 at 0 (phones: 0.65).
    assert score["corr_at_0"] > 0.7 and score["best_offset"] == 0 and score["moving"]


@pytest.mark.parametrize("shift", [5, -5])
def test_demo_sample_finds_its_audio_shifted(demo_clip, shift):
    _, audio, opening = demo_clip
    own = mouth_audio_sync(opening, audio_openness(audio, len(opening)))
    moved = mouth_audio_sync(opening, audio_openness(_delay(audio, shift), len(opening)))
    # Measured: 0.20 at 0 either way, best offset exactly -shift.
    assert moved["corr_at_0"] < own["corr_at_0"] - 0.4
    assert abs(moved["best_offset"] + shift) <= 1


def test_demo_still_face_gets_no_score(demo_clip):
    frames, audio, _ = demo_clip
    score = score_video(np.repeat(frames[:1], 50, axis=0), audio[: 50 * HOP], make_backend("dlib"))
    assert math.isnan(score["corr_at_0"]) and score["best_offset"] is None and not score["moving"]


# -- real clips (../shared) ------------------------------------------------------------


@pytest.fixture(scope="module")
def katie() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HDTF, 8 s, 512 px: ``(frames, audio, dlib mouth opening)``."""
    frames, audio = _decode(real_clip("hdtf_katiehill_8s.mp4"), frames=200)
    return frames, audio, mouth_opening(frames, make_backend("dlib"))


@pytest.mark.real_data
def test_real_still_face_gets_no_score(katie):
    frames, audio, _ = katie
    still = mouth_opening(np.repeat(frames[:1], 50, axis=0), make_backend("dlib"))
    score = mouth_audio_sync(still, audio_openness(audio[: 50 * HOP], 50))
    assert math.isnan(score["corr_at_0"]) and math.isnan(score["best_corr"]) and not score["moving"]


@pytest.fixture(scope="module")
def driving_clip() -> tuple[np.ndarray, np.ndarray]:
    """LivePortrait's d6 driving video, 33.6 s at 25 fps: ``(audio, MediaPipe mouth opening)``."""
    frames, audio = _decode(real_clip("liveportrait_d6_33s.mp4"))
    return audio, mouth_opening(frames, make_backend("mediapipe"))


@pytest.mark.real_data
def test_long_real_clip_is_in_sync_and_shifts_are_found(driving_clip):
    audio, opening = driving_clip
    own = mouth_audio_sync(opening, audio_openness(audio, len(opening)))
    # Measured: 0.42 at 0; audio 5 frames late: 0.32 at 0, best -5; 5 early: 0.16 at 0, best +5.
    assert own["corr_at_0"] > 0.3 and own["best_offset"] == 0 and own["moving"]
    for shift in (5, -5):
        moved = mouth_audio_sync(opening, audio_openness(_delay(audio, shift), len(opening)))
        assert moved["corr_at_0"] < own["corr_at_0"] - 0.05
        assert abs(moved["best_offset"] + shift) <= 1


@pytest.mark.real_data
def test_envelope_beats_phones_on_real_speech(driving_clip):
    """The reason the envelope is the default: phone openness barely follows the lips (0.05 against 0.42)."""
    audio, opening = driving_clip
    envelope = mouth_audio_sync(opening, audio_openness(audio, len(opening), source="envelope"))
    phones = mouth_audio_sync(opening, audio_openness(audio, len(opening), source="phones"))
    assert envelope["corr_at_0"] > phones["corr_at_0"] + 0.2
