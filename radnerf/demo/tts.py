"""Offline speech for the embedded sample: eSpeak NG.

The library and its voice data ship inside the ``espeakng-loader`` wheel, so
this works on a fresh machine with no system packages and no network. A
system ``espeak-ng`` binary is used when the wheel's library cannot load.

The same text always gives the same samples. eSpeak NG keeps state from one
utterance to the next that no call of its API resets (neither
``espeak_ng_SetRandSeed`` nor ``espeak_Terminate`` + ``espeak_Initialize``):
the same sentence spoken five times in one process comes out five ways, a few
samples longer or shorter each time. The first utterance of a process is
always the same, so :func:`synthesize` speaks in a fresh Python process
(``python -m radnerf.demo.tts``, about 0.2 s) and reads back its WAV.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from radnerf.errors import RadNerfError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# Exit status of the speaking process for a RadNerfError (its message and hint
# are the last line of its stderr, as JSON).
_EXIT_USER_ERROR = 3
# The folder holding the ``radnerf`` package, put on the speaking process's path.
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]


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


def _speak_library(out: Path, text: str, voice: str, words_per_minute: int) -> None:
    """Speak ``text`` with the wheel's library into the 16-bit mono WAV ``out`` (once per process)."""
    lib, rate = _library()
    chunks: list[np.ndarray] = []

    def on_audio(wav, n, _events):  # called by espeak for each block of samples
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = _CALLBACK(on_audio)
    data = text.encode("utf-8")
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise RadNerfError(f"eSpeak NG has no voice {voice!r}", hint="use an eSpeak voice name such as 'en-us'")
    lib.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0)
    err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    if err != 0 or not chunks:
        raise RadNerfError(f"eSpeak NG failed to speak (error {err})")
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.concatenate(chunks).astype("<i2").tobytes())


def _speak_binary(out: Path, text: str, voice: str, words_per_minute: int) -> None:
    """Speak ``text`` with a system ``espeak-ng`` (or ``espeak``) into the WAV ``out``."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise RadNerfError(
            "no text-to-speech available for the demo sample",
            hint="pip install espeakng-loader (a declared dependency), or apt-get install espeak-ng, "
            "or run the demo on your own clip: radnerf demo video=PATH",
        )
    subprocess.run([exe, "-v", voice, "-s", str(words_per_minute), "-w", str(out), text], check=True,
                   capture_output=True)


def _speak_here(out: Path, text: str, voice: str, words_per_minute: int) -> None:
    """Speak ``text`` in this process into the WAV ``out`` (the speaking process's work)."""
    try:
        _speak_library(out, text, voice, words_per_minute)
    except OSError:
        _speak_binary(out, text, voice, words_per_minute)


def synthesize(text: str, voice: str = "en-us", words_per_minute: int = 150) -> tuple[np.ndarray, int]:
    """Speak ``text``: ``([S] float32 in [-1, 1], sample_rate)``, the same samples on every call.

    Runs eSpeak NG in a fresh process (see the module docstring for why).

    Raises:
        RadNerfError: no such voice, no text-to-speech available, or eSpeak NG failed.
    """
    from radnerf.media import read_wav

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_PARENT), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        proc = subprocess.run(
            [sys.executable, "-m", "radnerf.demo.tts", str(out), voice, str(words_per_minute)],
            input=text.encode("utf-8"), capture_output=True, env=env, check=False,
        )
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        if proc.returncode == _EXIT_USER_ERROR:
            problem = json.loads(lines[-1])
            raise RadNerfError(problem["message"], hint=problem["hint"])
        if proc.returncode != 0 or not out.exists():
            raise RadNerfError(f"eSpeak NG failed to speak: {lines[-1] if lines else f'exit status {proc.returncode}'}")
        return read_wav(out)


def _main(argv: list[str]) -> int:
    """``python -m radnerf.demo.tts OUT.wav VOICE WPM`` < text: speak once, in this fresh process."""
    out, voice, words_per_minute = Path(argv[0]), argv[1], int(argv[2])
    text = sys.stdin.buffer.read().decode("utf-8")
    try:
        _speak_here(out, text, voice, words_per_minute)
    except RadNerfError as e:
        print(json.dumps({"message": e.message, "hint": e.hint}), file=sys.stderr)
        return _EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
