"""Mouth-audio correlation: an offline lip-sync measure that needs no downloaded weights.

SyncNet's scores (LSE-C / LSE-D) need weights that cannot be fetched on every
machine, so this measure is built from parts that ship in packages:

- the mouth's opening in each frame, from 68-point landmarks: the inner-lip
  gap over the inter-ocular distance, so head size and camera distance cancel;
- how open the audio says the mouth should be at each frame;
- their Pearson correlation at the clip's own alignment and at every shift up
  to ``max_offset`` frames, so lips that trail or lead the sound show up as a
  best offset away from 0.

It is a correlation, not a SyncNet confidence: compare its numbers with each
other (a render against its ground truth, one model against another), never
with published LSE-C values.

What the validation found (``tests/eval/test_lipsync.py``; numbers at 25 fps):

- The F2-band envelope (1-3 kHz) beats both the wideband envelope and phone
  openness. On the 33 s LivePortrait driving clip with MediaPipe landmarks it
  gives 0.42 at offset 0, the best offset is 0, and shifting the audio by
  +-5 frames moves the best offset by exactly that (wideband: 0.19; phones:
  0.05, best offset +6). On the demo sample, whose jaw follows loudness
  (dlib landmarks): 0.88 against phones' 0.65, and +-5 frame shifts found.
- The landmark backend matters. On the driving clip dlib's inner-lip points
  give 0.31 at 0 but a best offset of +5; MediaPipe's follow real lips better.
  On the demo's synthetic jaw it is the other way round: MediaPipe's mesh
  barely moves (std 0.015 against dlib's 0.07) and scores 0.29-0.48.
- On short clips the best offset is unreliable: 8 s windows of that clip
  land within +-1 frame of 0 in 11 of 13 cases (MediaPipe), 16 s windows in
  all. On the 8 s HDTF clip (Katie Hill) no variant finds offset 0: she smiles
  with her mouth open through a pause and voices half a second with her lips
  shut (the phone loop hears M ... M), neither of which an envelope predicts (0.08 at offset 0, best +6 with dlib, -11 with
  MediaPipe). Score clips of 15 s or more, and read ``corr_at_0`` first.
"""

from __future__ import annotations

import math
from typing import Literal, TypedDict

import numpy as np

from radnerf.errors import InputError
from radnerf.preprocess.landmark_backends import LandmarkBackend

SAMPLE_RATE = 16000
"""Rate of the audio every function here takes, in Hz."""

OpennessSource = Literal["envelope", "phones"]
"""Where :func:`audio_openness` reads the expected mouth opening from."""

# iBUG 68 layout, 0-indexed: upper and lower inner-lip points facing each other.
_INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
_RIGHT_EYE = slice(36, 42)
_LEFT_EYE = slice(42, 48)

_ENVELOPE_WINDOW = 0.040  # seconds: one 25 fps frame's worth of audio, centred on the frame
# Grant & Seitz (2000): the envelope of the F2 region tracks lip area better
# than the wideband one. It also leaves out the low murmur of /m/, /n/ (lips
# closed, voice on) and the hiss of /s/ (lips nearly closed, loud above 4 kHz).
_ENVELOPE_BAND = (1000.0, 3000.0)
_ENVELOPE_RANGE_DB = 40.0  # quieter than the loud frames by more than this reads as silence
_ABSOLUTE_FLOOR_DB = -100.0  # digital silence, whatever the clip's level

_MIN_FRAMES = 10  # fewer frames with both signals than this give no correlation
# Std of the opening (gap / eye distance) below which the mouth counts as still:
# speech gives 0.07-0.12; a still frame with sensor noise (sigma 4 grey levels)
# jitters by 0.002-0.006 with dlib or MediaPipe.
MOVING_STD = 0.01


class SyncScore(TypedDict):
    """What :func:`mouth_audio_sync` returns."""

    corr_at_0: float
    """Pearson correlation of mouth opening and audio openness at the clip's own alignment; NaN: undefined."""
    best_corr: float
    """The highest correlation over all offsets; NaN when every offset is undefined."""
    best_offset: int | None
    """Offset in frames of ``best_corr``; positive: the video lags the audio. None when ``best_corr`` is NaN."""
    moving: bool
    """Whether the mouth moves (std of the opening above :data:`MOVING_STD`); if not, the correlations mean nothing."""


def opening_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Mouth opening from 68-point landmarks.

    Args:
        landmarks: ``[N, 68, 2]`` iBUG-layout points in pixels; NaN rows where no face was found.

    Returns:
        ``[N]`` mean inner-lip gap (pairs 61-67, 62-66, 63-65) over the distance
        between the eye centres (means of 36-41 and of 42-47); NaN where a row is NaN.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise InputError(
            f"landmarks have shape {lm.shape}, not [N, 68, 2]",
            hint="pass iBUG 68-point landmarks, one [68, 2] array per frame",
        )
    upper = lm[:, [a for a, _ in _INNER_LIP_PAIRS]]
    lower = lm[:, [b for _, b in _INNER_LIP_PAIRS]]
    gap = np.linalg.norm(upper - lower, axis=-1).mean(axis=1)
    eyes = np.linalg.norm(lm[:, _RIGHT_EYE].mean(axis=1) - lm[:, _LEFT_EYE].mean(axis=1), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(eyes > 0, gap / eyes, np.nan)


def face_landmarks(frames: np.ndarray, detector: LandmarkBackend) -> np.ndarray:
    """Landmarks of the largest face in each frame.

    Args:
        frames: ``[N, H, W, 3]`` uint8 RGB.
        detector: a landmark backend (:func:`radnerf.preprocess.landmark_backends.make_backend`).

    Returns:
        ``[N, 68, 2]`` in pixels; NaN rows for frames without a face.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(
            f"frames are {frames.dtype} {frames.shape}, not uint8 [N, H, W, 3]",
            hint="pass RGB frames as one uint8 array",
        )
    out = np.full((len(frames), 68, 2), np.nan)
    for i, frame in enumerate(frames):
        faces = detector.detect(frame)
        if faces:
            # The speaker fills a talking-head frame; smaller faces are bystanders or prints.
            out[i] = max(faces, key=lambda f: f.width).points
    return out


def mouth_opening(frames: np.ndarray, detector: LandmarkBackend) -> np.ndarray:
    """``frames [N, H, W, 3]`` uint8 RGB -> ``[N]`` mouth opening (:func:`opening_from_landmarks`), NaN where no face."""
    return opening_from_landmarks(face_landmarks(frames, detector))


def envelope_openness(
    audio: np.ndarray, num_frames: int, fps: int = 25, band_hz: tuple[float, float] = _ENVELOPE_BAND
) -> np.ndarray:
    """Speech level at each video frame, as an openness signal.

    Args:
        audio: ``[S]`` float mono at 16 kHz; sample 0 is at frame 0's time.
        num_frames: N, the video's frame count (audio past its end counts as silence).
        fps: video frame rate.
        band_hz: the band whose level is measured; ``(0, 8000)`` is the wideband envelope.

    Returns:
        ``[N]`` RMS level in dB, in ``band_hz``, of the Hann-windowed 40 ms
        centred on each frame, floored 40 dB under the clip's loud frames
        (95th percentile) so that pauses, whose noise says nothing about the
        lips, all read as closed.
    """
    audio = _check_audio(audio)
    if num_frames <= 0:
        return np.zeros(0)
    win = int(round(_ENVELOPE_WINDOW * SAMPLE_RATE))
    centres = np.round(np.arange(num_frames) * SAMPLE_RATE / fps).astype(np.int64)
    padded = np.pad(audio.astype(np.float64), (win // 2, max(0, int(centres[-1]) + win - len(audio))))
    window = np.hanning(win)
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[centres] * window  # [N, win]
    freqs = np.fft.rfftfreq(win, 1.0 / SAMPLE_RATE)
    in_band = (freqs >= band_hz[0]) & (freqs < band_hz[1])
    # Parseval: twice the one-sided band power over win * sum(w^2) is the band's mean square.
    power = np.abs(np.fft.rfft(frames, axis=1)[:, in_band]) ** 2
    mean_square = 2.0 * power.sum(axis=1) / (win * float(window @ window))
    db = 10.0 * np.log10(np.maximum(mean_square, 10 ** (_ABSOLUTE_FLOOR_DB / 10)))
    return np.maximum(db, float(np.percentile(db, 95)) - _ENVELOPE_RANGE_DB)


# Expected jaw opening per phone, 0 (lips closed) to 1 (wide open vowel), after
# the viseme classes of lip-reading work: open vowels > mid > close vowels and
# /h/ > tongue consonants > sibilants > labiodentals > bilabials and silence.
_PHONE_OPENNESS = {
    "SIL": 0.0, "+NSN+": 0.0, "+SPN+": 0.0,
    "AA": 1.0, "AE": 0.9, "AH": 0.7, "AO": 0.9, "AW": 0.9, "AY": 0.9, "EH": 0.7, "EY": 0.6, "ER": 0.5,
    "IH": 0.5, "IY": 0.35, "OW": 0.6, "OY": 0.7, "UH": 0.45, "UW": 0.3,
    "HH": 0.5, "K": 0.4, "G": 0.4, "NG": 0.35, "R": 0.35, "L": 0.35,
    "T": 0.3, "D": 0.3, "N": 0.3, "TH": 0.3, "DH": 0.3,
    "S": 0.2, "Z": 0.2, "SH": 0.25, "ZH": 0.25, "CH": 0.25, "JH": 0.25,
    "W": 0.2, "F": 0.1, "V": 0.1, "B": 0.0, "P": 0.0, "M": 0.0,
}


def phone_openness(audio: np.ndarray, num_frames: int, fps: int = 25) -> np.ndarray:
    """Expected jaw opening of the phones heard at each video frame.

    Args:
        audio: ``[S]`` float mono at 16 kHz; sample 0 is at frame 0's time.
        num_frames: N, the video's frame count (audio past its end counts as silence).
        fps: video frame rate.

    Returns:
        ``[N]`` in [0, 1]: the offline phone loop's 50 Hz phone shares
        (:func:`radnerf.audio.phonetic.phone_posteriors`) weighted by each
        phone's openness, read at the frame times (at 25 fps, the mean of the
        two 20 ms features either side of the frame).
    """
    from radnerf.audio.phonetic import PHONES, phone_posteriors
    from radnerf.audio.windows import FEATURE_RATE, HOP

    audio = _check_audio(audio)
    if num_frames <= 0:
        return np.zeros(0)
    # One feature past the last frame time, so the last frame has features on both sides.
    features = int(math.ceil((num_frames - 1) * FEATURE_RATE / fps)) + 1
    audio = np.pad(audio, (0, max(0, features * HOP - len(audio))))[: features * HOP]
    weights = np.array([_PHONE_OPENNESS[p] for p in PHONES])
    per_feature = phone_posteriors(audio) @ weights  # [features]
    centres = (np.arange(features) + 0.5) / FEATURE_RATE
    return np.interp(np.arange(num_frames) / fps, centres, per_feature)


def audio_openness(
    audio: np.ndarray, num_frames: int, fps: int = 25, source: OpennessSource = "envelope"
) -> np.ndarray:
    """``audio [S]`` at 16 kHz -> ``[N]`` expected mouth opening per video frame.

    ``source="envelope"`` (the default, :func:`envelope_openness`): the level of
    the 1-3 kHz band. ``"phones"`` (:func:`phone_openness`): the offline phone
    loop's phones weighted by jaw opening. The envelope is the default because
    it correlated better with the lips on every clip tried (module docstring);
    the phone loop's frame-level errors cost more than phone identity gains.
    """
    if source == "envelope":
        return envelope_openness(audio, num_frames, fps)
    if source == "phones":
        return phone_openness(audio, num_frames, fps)
    raise InputError(f"openness source {source!r} is unknown", hint="use 'envelope' or 'phones'")


def shifted_corr(opening: np.ndarray, openness: np.ndarray, offset: int) -> float:
    """Pearson correlation of ``opening[t]`` with ``openness[t - offset]`` over the frames where both are finite.

    Args:
        opening: ``[N]`` mouth opening.
        openness: ``[N]`` audio openness.
        offset: frames by which the video lags the audio (negative: leads).

    Returns:
        The correlation; NaN with fewer than 10 common frames or when either signal is constant there.
    """
    n = len(opening)
    if abs(offset) >= n:
        return math.nan
    a, b = (opening[offset:], openness[: n - offset]) if offset >= 0 else (opening[:offset], openness[-offset:])
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < _MIN_FRAMES:
        return math.nan
    a, b = a[keep], b[keep]
    da, db = a - a.mean(), b - b.mean()
    # Centring a constant leaves rounding noise (~1e-16 of its size), not zeros.
    if _is_constant(da, a) or _is_constant(db, b):
        return math.nan
    return float(da @ db / math.sqrt(float(da @ da) * float(db @ db)))


def _is_constant(centred: np.ndarray, values: np.ndarray) -> bool:
    return float(np.abs(centred).max()) <= 1e-9 * max(float(np.abs(values).max()), 1e-300)


def mouth_audio_sync(opening: np.ndarray, openness: np.ndarray, max_offset: int = 15) -> SyncScore:
    """Correlation of mouth opening and audio openness, at offset 0 and at the best offset.

    Args:
        opening: ``[N]`` mouth opening per frame (:func:`mouth_opening`); NaN where no face.
        openness: ``[N]`` audio openness per frame (:func:`audio_openness`).
        max_offset: offsets ``-max_offset..max_offset`` frames are tried.

    Returns:
        :class:`SyncScore`. A positive ``best_offset`` means the video lags the
        audio: ``opening[t]`` follows ``openness[t - best_offset]`` (audio
        that plays 200 ms late against its video gives -5 at 25 fps). The
        correlations are NaN where a signal is constant (a still face,
        silence). A mouth that barely moves (``moving`` False) can still get
        a number, from landmark jitter: check ``moving`` before reading it.
    """
    opening = np.asarray(opening, np.float64)
    openness = np.asarray(openness, np.float64)
    if opening.ndim != 1 or opening.shape != openness.shape:
        raise InputError(
            f"mouth opening {opening.shape} and audio openness {openness.shape} are not two [N] signals",
            hint="compute both for the same frames: audio_openness(audio, num_frames=len(opening))",
        )
    if max_offset < 0:
        raise InputError(f"max_offset={max_offset} is negative", hint="pass the largest shift to try, in frames")
    offsets = np.arange(-max_offset, max_offset + 1)
    corrs = np.array([shifted_corr(opening, openness, int(k)) for k in offsets])
    seen = opening[np.isfinite(opening)]
    moving = bool(len(seen) > 1 and seen.std() > MOVING_STD)
    if np.all(np.isnan(corrs)):
        return SyncScore(corr_at_0=math.nan, best_corr=math.nan, best_offset=None, moving=moving)
    best = int(np.nanargmax(corrs))
    return SyncScore(
        corr_at_0=float(corrs[max_offset]), best_corr=float(corrs[best]), best_offset=int(offsets[best]), moving=moving
    )


def score_video(
    frames: np.ndarray,
    audio16k: np.ndarray,
    detector: LandmarkBackend,
    fps: int = 25,
    *,
    source: OpennessSource = "envelope",
    max_offset: int = 15,
) -> SyncScore:
    """Mouth-audio correlation of a clip.

    Args:
        frames: ``[N, H, W, 3]`` uint8 RGB at ``fps``.
        audio16k: ``[S]`` float mono at 16 kHz, sample 0 at frame 0's time (``radnerf.media.load_audio``).
        detector: a landmark backend (``make_backend("dlib")`` or ``"mediapipe"``, both offline;
            on real faces MediaPipe's lips validated better, module docstring).
        fps: frame rate of ``frames``.
        source: what the audio openness comes from (:func:`audio_openness`).
        max_offset: largest shift tried, in frames.
    """
    opening = mouth_opening(frames, detector)
    return mouth_audio_sync(opening, audio_openness(audio16k, len(opening), fps, source), max_offset)


def _check_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise InputError(f"audio has shape {audio.shape}, not [S]", hint="pass mono 16 kHz samples (load_audio)")
    return audio
