"""Offline speech for the embedded sample: eSpeak NG.

The library and its voice data ship inside the ``espeakng-loader`` wheel, so
this works on a fresh machine with no system packages and no network. A
system ``espeak-ng`` binary is used when the wheel's library cannot load.
"""

from __future__ import annotations

import ctypes
import functools
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from radnerf.errors import RadNerfError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _library() -> tuple[ctypes.CDLL, int]:
    import espeakng_loader

    lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        raise OSError(f"espeak_Initialize returned {rate}")
    return lib, rate


def _synthesize_library(text: str, voice: str, words_per_minute: int) -> tuple[np.ndarray, int]:
    lib, rate = _library()
    chunks: list[np.ndarray] = []

    def on_audio(wav, n, _events):  # called by espeak for each block of samples
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = _CALLBACK(on_audio)
    data = text.encode("utf-8")
    with _lock:
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RadNerfError(f"eSpeak NG has no voice {voice!r}", hint="use an eSpeak voice name such as 'en-us'")
        lib.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0)
        err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
    if err != 0 or not chunks:
        raise RadNerfError(f"eSpeak NG failed to speak (error {err})")
    return np.concatenate(chunks).astype(np.float32) / 32768.0, rate


def _synthesize_binary(text: str, voice: str, words_per_minute: int) -> tuple[np.ndarray, int]:
    from radnerf.media import read_wav

    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise RadNerfError(
            "no text-to-speech available for the demo sample",
            hint="pip install espeakng-loader (a declared dependency), or apt-get install espeak-ng, "
            "or run the demo on your own clip: radnerf demo video=PATH",
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-v", voice, "-s", str(words_per_minute), "-w", str(out), text], check=True,
                       capture_output=True)
        return read_wav(out)


def synthesize(text: str, voice: str = "en-us", words_per_minute: int = 150) -> tuple[np.ndarray, int]:
    """Speak ``text``: ``([S] float32 in [-1, 1], sample_rate)``."""
    try:
        return _synthesize_library(text, voice, words_per_minute)
    except OSError:
        return _synthesize_binary(text, voice, words_per_minute)
