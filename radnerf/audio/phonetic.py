"""The offline backend: pocketsphinx phones plus a gain-free spectral envelope, 50 Hz.

Why these features: the head model must follow a voice it was not trained on,
so the features should say *what* is said, not *who* says it. CMU Sphinx's
English acoustic model (it ships inside the ``pocketsphinx`` wheel) was trained
on many speakers; decoding with its phone loop gives one phone per 10 ms, which
we average to 50 Hz (41 channels: SIL, two noise classes, 38 ARPAbet phones).
A phone loop makes mistakes, and lips move continuously inside a phone, so 12
cepstra (MFCC c1..c12, no c0 so the recording level does not show) add a
smooth description of the spectral envelope. Their long-term mean carries the
speaker's vocal tract and the microphone rather than what is said, so it is
removed live (:class:`LiveCmn`: an exponential mean over the last few seconds
of speech, as live ASR front ends do), frame by frame in time order, so the
result does not depend on how the audio was chunked.

The measurement behind this choice (``benchmarks/bench_audio.py``): a linear
phone probe (ridge classifier over +-2 frames) trained on three espeak-ng
voices and tested on a fourth, on sentences it did not see, reads the
phonemes from log-mel at 23.1% (41.9% for a seen voice), MFCC 19.0%, phones
alone 22.5% (24.1% seen: the least speaker-dependent) and phones + live-CMN
MFCC 27.9% (32.2% seen): the best for an unseen speaker. Live CMN cuts the
change of the cepstra under a duller microphone from 0.43 to 0.10.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from radnerf.audio.windows import HOP, SAMPLE_RATE

PHONES = (
    "SIL", "+NSN+", "+SPN+",
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
    "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH",
    "T", "TH", "UH", "UW", "V", "W", "Z", "ZH",
)
"""Channel order of the phone part."""
NUM_CEPS = 12
"""Cepstra c1..c12 after the phones."""

# Sphinx frames are 410 samples (25.6 ms) every 160: frame j is centred at
# 160 j + 205. Prepending 125 samples centres frames 2k and 2k+1 on feature k
# (at 320 k + 160), so averaging each pair needs no resampling.
_PS_LEAD = 125

_WIN = 400  # 25 ms analysis window, centred on each 20 ms feature
_NFFT = 512
_NMEL = 40
_POWER_FLOOR = 1e-4  # about -70 dB re full scale: keeps silence from dominating the log


@lru_cache(maxsize=1)
def _mel_dct() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hamming window ``[400]``, mel filterbank ``[257, 40]`` (20-7600 Hz) and DCT-II ``[40, 12]``."""
    def hz2mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    mel_pts = np.linspace(hz2mel(20.0), hz2mel(7600.0), _NMEL + 2)
    hz_pts = 700.0 * (10 ** (mel_pts / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(_NFFT, 1.0 / SAMPLE_RATE)
    fb = np.zeros((len(freqs), _NMEL))
    for m in range(_NMEL):
        lo, c, hi = hz_pts[m], hz_pts[m + 1], hz_pts[m + 2]
        fb[:, m] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0.0, None)
    n = np.arange(_NMEL)
    dct = np.cos(np.pi / _NMEL * (n[:, None] + 0.5) * np.arange(1, NUM_CEPS + 1)[None, :]) * np.sqrt(2.0 / _NMEL)
    # Sinusoidal liftering (Sphinx's lifter 22) evens out the scales of the cepstra.
    lifter = 1.0 + 11.0 * np.sin(np.pi * np.arange(1, NUM_CEPS + 1) / 22.0)
    return np.hamming(_WIN).astype(np.float32), fb.astype(np.float32), (dct * lifter / 10.0).astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Frame-local log mel energies: ``[320 M]`` -> ``[M, 40]``, row k centred at ``(k + 0.5) * 20 ms``.

    Each row depends only on its own 25 ms of audio, so chunking cannot change it.
    """
    window, fb, _ = _mel_dct()
    m = len(audio) // HOP
    pad = (_WIN - HOP) // 2
    x = np.concatenate([np.zeros(pad + 1, np.float32), audio.astype(np.float32), np.zeros(pad, np.float32)])
    x = x[1:] - 0.97 * x[:-1]  # pre-emphasis
    frames = np.lib.stride_tricks.sliding_window_view(x, _WIN)[::HOP][:m] * window  # [M, 400]
    power = np.abs(np.fft.rfft(frames, _NFFT, axis=1)) ** 2
    return np.log(power @ fb + _POWER_FLOOR).astype(np.float32)


def cepstra(audio: np.ndarray) -> np.ndarray:
    """Frame-local MFCC c1..c12 (not mean-normalised): ``[320 M]`` -> ``[M, 12]``."""
    return log_mel(audio) @ _mel_dct()[2]


SPEECH_CEPSTRAL_MEAN = np.array(
    [-0.404, -0.58, -0.283, -1.11, -1.396, -1.639, -0.363, -0.589, -0.675, -0.56, -0.718, -0.506], np.float32
)
"""Mean c1..c12 of speech frames over four speakers (the shared test recordings): the start value of :class:`LiveCmn`."""


class LiveCmn:
    """Cepstral mean normalisation that runs forward in time, one 20 ms frame after the other.

    ``[n, 41 + 1 + 12]`` raw frames (phones, mean log mel, cepstra) -> ``[n, 41 + 12]``:
    the cepstra minus an exponential mean (time constant ``seconds``) of the
    cepstra of speech frames, a frame counting as speech when its mean log mel
    energy is ``gate`` nats above the floor. State carries from call to call,
    so any split of the same frames into calls gives the same output.
    """

    def __init__(self, seconds: float = 3.0, gate: float = 4.0):
        self.alpha = float(np.exp(-1.0 / (seconds * 50)))
        self.threshold = float(np.log(_POWER_FLOOR)) + gate
        self.mean = SPEECH_CEPSTRAL_MEAN.astype(np.float64).copy()

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        p = len(PHONES)
        energy, ceps = raw[:, p], raw[:, p + 1:].astype(np.float64)
        out = np.empty_like(ceps)
        mean, a = self.mean, self.alpha
        for t in range(len(raw)):
            if energy[t] > self.threshold:
                mean = a * mean + (1.0 - a) * ceps[t]
            out[t] = ceps[t] - mean
        self.mean = mean
        return np.concatenate([raw[:, :p], out.astype(np.float32)], axis=1)


@lru_cache(maxsize=4)
def _decoder(beam: float):
    import pocketsphinx

    model = pocketsphinx.get_model_path()
    config = pocketsphinx.Config(
        hmm=os.path.join(model, "en-us", "en-us"),
        allphone=os.path.join(model, "en-us", "en-us-phone.lm.bin"),
        lm=None,
        dict=None,
        allphone_ci=True,
        beam=beam,
        # Acoustic scores every second 10 ms frame: the output is 50 Hz anyway,
        # and it makes the phone loop about 1.7x faster.
        ds=2,
        cmn="batch",
        loglevel="FATAL",
    )
    return pocketsphinx.Decoder(config)


_DITHER_DB = -30.0
"""Level of the noise floor added for the phone loop, relative to the chunk's RMS."""


@lru_cache(maxsize=8)
def _noise(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(n).astype(np.float32)


def phone_posteriors(audio: np.ndarray, beam: float = 1e-48) -> np.ndarray:
    """Phone-loop decoding as 50 Hz phone shares: ``[320 M]`` -> ``[M, 41]`` (rows sum to 1)."""
    m = len(audio) // HOP
    pcm = np.concatenate([np.zeros(_PS_LEAD, np.float32), audio])
    # Sphinx's model was trained on recordings with a noise floor; digital
    # silence (zero padding, synthetic or gated audio) throws its cepstral mean
    # and energy normalisation off and much speech decodes as SIL (an English
    # espeak-ng sentence: 48% SIL frames with a -80 dBFS floor, 9% with this
    # one; French 92% / 2%; real recordings barely change). A seeded noise
    # floor 30 dB under the chunk's level; same chunk, same noise.
    level = max(float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) * 10 ** (_DITHER_DB / 20), 1e-4)
    pcm = pcm + level * _noise(len(pcm))
    pcm16 = np.clip(np.round(pcm * 32767.0), -32768, 32767).astype("<i2")
    index = {p: i for i, p in enumerate(PHONES)}
    labels = np.zeros(2 * m, np.int64)  # unlabelled 10 ms frames count as silence
    if np.any(pcm16):
        dec = _decoder(beam)
        # The decoder carries its cepstral mean (and more) from one utterance to
        # the next; a reinit (8 ms) makes a chunk's phones depend on that chunk
        # only, so streaming and offline extraction agree.
        dec.reinit()
        dec.start_utt()
        dec.process_raw(pcm16.tobytes(), no_search=False, full_utt=True)
        dec.end_utt()
        for seg in dec.seg():
            labels[max(seg.start_frame, 0): seg.end_frame + 1] = index.get(seg.word, 0)
    onehot = np.zeros((2 * m, len(PHONES)), np.float32)
    onehot[np.arange(2 * m), labels] = 1.0
    return onehot.reshape(m, 2, len(PHONES)).mean(axis=1)


class PhoneticBackend:
    """Offline features ``[M, 53]``: 41 phone shares then 12 mean-normalised cepstra.

    ``__call__`` gives the raw ``[M, 54]`` frames (with the mean log mel used
    to tell speech from silence); :meth:`normalizer` turns them into features.
    """

    dim = len(PHONES) + NUM_CEPS
    parallel = True
    """Single-threaded and stateless per chunk: chunks may run in separate processes."""

    def __init__(self, beam: float = 1e-48):
        self.beam = beam

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        mel = log_mel(audio)
        ceps = mel @ _mel_dct()[2]
        return np.concatenate([phone_posteriors(audio, self.beam), mel.mean(1, keepdims=True), ceps], axis=1)

    def normalizer(self) -> LiveCmn:
        return LiveCmn()
