"""Audio features: speed of every backend, streaming latency, memory, and speaker independence.

Run: ``python benchmarks/bench_audio.py`` (CPU; 5-10 minutes on 2 shared cores;
``--quick`` skips the large random-init models and the 10-minute file).
Prints markdown tables.

Speed is x real time = audio seconds / wall seconds, best of ``--repeat`` runs.
The transformers rows use randomly initialised models (no weights can be
downloaded here): the "tiny" ones are the test models; the "large" ones have
the exact architecture of the real checkpoints (wav2vec2-large-xlsr-53:
24 layers, 1024 wide, 44 CTC outputs; hubert-large: the same encoder), so their
cost is the real cost.

Speaker independence: espeak-ng (shipped by espeakng-loader) says the same
sentences in three voices. For each feature type, the DTW distance between two
voices saying the same sentence (content equal, speaker differs) is divided by
the distance between two sentences in the same voice (speaker equal, content
differs); below 1 means the features follow what is said more than who says it.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from radnerf.audio import AudioFeaturesConfig, FeatureStream, extract_features
from radnerf.audio.extract import to_mono_16k
from radnerf.audio.phonetic import PHONES, PhoneticBackend, cepstra, log_mel, phone_posteriors

SPEECH = ROOT / ".." / "shared" / "data" / "speech"

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "She sells sea shells by the sea shore every summer morning.",
    "Please call Stella and ask her to bring these things from the store.",
    "We will meet at half past nine to open the big wooden box.",
    "My mother made apple pie for the whole family on Sunday.",
    "Turn left at the old church and follow the road to the village.",
]
VOICES = [("en-us", 40, 150), ("en-us+f3", 85, 175), ("en-gb-x-rp+m3", 55, 135)]
"""(espeak-ng voice, pitch 0-100, words per minute): a low male, a high fast female, a slow British male."""


class _Event(ctypes.Structure):
    """espeak_EVENT (speak_lib.h); only phoneme events (type 7) are read."""

    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
        ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8),
    ]


class Espeak:
    """espeak-ng through ctypes: text -> 16 kHz float32 samples and the phonemes it said, with their start samples."""

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_parent = os.path.dirname(espeakng_loader.get_data_path())
        # 2: synchronous output; option 1: report phoneme events.
        self.rate = self.lib.espeak_Initialize(2, 0, data_parent.encode(), 1)
        if self.rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
        self._chunks: list[np.ndarray] = []
        self._phonemes: list[tuple[int, str]] = []

        def collect(wav, n, events):
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            i = 0
            while events[i].type != 0:
                if events[i].type == 7:
                    name = events[i].id.decode(errors="replace").strip("',")
                    self._phonemes.append((events[i].sample, name))
                i += 1
            return 0

        self._callback = callback_type(collect)
        self.lib.espeak_SetSynthCallback(self._callback)

    def __call__(self, text: str, voice: str = "en-us", pitch: int = 50, rate: int = 160) -> np.ndarray:
        return self.say(text, voice, pitch, rate)[0]

    def say(self, text: str, voice: str = "en-us", pitch: int = 50, rate: int = 160) -> tuple[np.ndarray, np.ndarray]:
        """``([S] samples at 16 kHz, [S // 320] phoneme label of each 20 ms frame)``."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice}")
        self.lib.espeak_SetParameter(3, pitch, 0)  # espeakPITCH
        self.lib.espeak_SetParameter(1, rate, 0)  # espeakRATE (words per minute)
        self._chunks, self._phonemes = [], []
        raw = text.encode() + b"\0"
        self.lib.espeak_Synth(raw, ctypes.c_size_t(len(raw)), 0, 1, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        x = to_mono_16k(np.concatenate(self._chunks).astype(np.float32) / 32768.0, self.rate)
        centres = (np.arange(len(x) // 320) + 0.5) * 320 * self.rate / 16000
        starts = np.array([p[0] for p in self._phonemes])
        names = np.array(["_"] + [p[1] if not p[1].startswith("_") else "_" for p in self._phonemes])
        return x, names[np.searchsorted(starts, centres, side="right")]


CPU_TIMES: list[float] = []
"""Process CPU seconds of the best run of each :func:`best_time` call, in call order."""


def best_time(fn, repeat: int) -> float:
    """Best wall seconds of ``repeat`` runs; its CPU seconds go to ``CPU_TIMES``.

    The machine is shared, so wall time can be several times the work; CPU time
    (all threads of this process) is the cost when the cores are ours.
    """
    def cpu_now() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, once joined
        return time.process_time() + children.ru_utime + children.ru_stime

    best, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), cpu_now()
        fn()
        wall = time.perf_counter() - t
        if wall < best:
            best, cpu = wall, cpu_now() - c
    CPU_TIMES.append(cpu)
    return best


def speech(seconds: float) -> np.ndarray:
    path = SPEECH / "musetalk_eng_60s.wav"
    if path.exists():
        from radnerf.media import load_audio

        x = np.clip(load_audio(path), -1, 1)
    else:
        x = Espeak()(" ".join(SENTENCES * 4))
    reps = int(np.ceil(seconds * 16000 / len(x)))
    return np.tile(x, reps)[: int(seconds * 16000)]


# -- speed -------------------------------------------------------------------------------


def tiny_or_large(kind: str, size: str, folder: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    if size == "tiny":
        kw = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
              "conv_dim": (8,) * 7, "num_conv_pos_embeddings": 8, "num_conv_pos_embedding_groups": 2}
    elif size == "base":
        kw = {}  # transformers' defaults: the base architecture (12 x 768)
    else:
        kw = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}
    kw.update(do_stable_layer_norm=(size != "base"), feat_extract_norm="layer" if size != "base" else "group")
    if kind == "wav2vec2":
        model = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(vocab_size=44, **kw))
    else:
        model = transformers.HubertModel(transformers.HubertConfig(**kw))
    path = folder / f"{kind}-{size}"
    model.save_pretrained(path)
    return path


def speed_rows(args) -> list[tuple]:
    import tempfile

    rows = []
    x = speech(args.seconds)
    cfg = AudioFeaturesConfig()
    be = PhoneticBackend()
    extract_features(x[:16000], cfg, backend=be)
    for workers in (1, 2):
        c = AudioFeaturesConfig(workers=workers)
        t = best_time(lambda c=c: extract_features(x, c, backend=be), args.repeat)
        label = f"offline (pocketsphinx phones + MFCC), 10 s chunks, {workers} process{'es' if workers > 1 else ''}"
        rows.append((label, "53", f"{args.seconds:.0f} s", t, args.seconds / t))
    t = best_time(lambda: phone_posteriors(x[: len(x) // 320 * 320]), args.repeat)
    rows.append(("  of which: phone loop alone, one call", "41", f"{args.seconds:.0f} s", t, args.seconds / t))
    t = best_time(lambda: cepstra(x[: len(x) // 320 * 320]), args.repeat)
    rows.append(("  of which: MFCC alone", "12", f"{args.seconds:.0f} s", t, args.seconds / t))

    def stream_all(backend, c, audio):
        s = FeatureStream(c, backend)
        for i in range(0, len(audio), 480):
            s.push(audio[i: i + 480])
        s.finish()

    t = best_time(lambda: stream_all(be, cfg, x), args.repeat)
    rows.append(("offline backend, streaming (0.2 s chunks, 30 ms pushes)", "53", f"{args.seconds:.0f} s", t, args.seconds / t))

    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    torch.set_num_threads(2)
    sizes = ["tiny", "base"] + ([] if args.quick else ["large"])
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("wav2vec2", "hubert"):
            for size in sizes:
                folder = tiny_or_large(kind, size, Path(tmp))
                field = "wav2vec2_checkpoint" if kind == "wav2vec2" else "hubert_checkpoint"
                c = AudioFeaturesConfig(backend=kind, device="cpu", **{field: str(folder)})
                from radnerf.audio import make_backend

                be = make_backend(c)
                secs = args.seconds if size == "tiny" else min(args.seconds, 20.0)
                y = x[: int(secs * 16000)]
                extract_features(y[:16000], c, backend=be)
                t = best_time(lambda y=y, c=c, be=be: extract_features(y, c, backend=be), 1 if size == "large" else args.repeat)
                nparams = sum(p.numel() for p in be.model.parameters()) / 1e6
                label = f"{kind} {size} random init ({nparams:.0f} M params), CPU, 10 s chunks"
                rows.append((label, str(be.dim), f"{secs:.0f} s", t, secs / t))
                if size == "large":
                    t = best_time(lambda y=y, c=c, be=be: stream_all(be, c, y[: 5 * 16000]), 1)
                    rows.append((f"{kind} large, streaming 0.2 s chunks, CPU", str(be.dim), "5 s", t, 5 / t))
    return rows


# -- latency and memory ----------------------------------------------------------------------


def latency_rows() -> list[tuple]:
    cfg = AudioFeaturesConfig()
    be = PhoneticBackend()
    s = FeatureStream(cfg, be)
    best, worst = s.lookahead_range_seconds
    x = speech(20.0)
    compute, parts = [], []
    for i in range(0, len(x), 480):
        t = time.perf_counter()
        out = s.push(x[i: i + 480])
        if len(out):
            compute.append(time.perf_counter() - t)
            parts.append(out)
    streamed = np.concatenate(parts + [s.finish()])
    offline = extract_features(x, cfg, backend=be)
    p = len(PHONES)
    same_phone = np.mean(streamed[:, 8, :p].argmax(1) == offline[:, 8, :p].argmax(1))
    ceps = np.abs(streamed[:, :, p:] - offline[:, :, p:]).max()
    return [
        ("look-ahead past the frame time, best / worst (algorithmic)", f"{best * 1000:.0f} / {worst * 1000:.0f} ms"),
        ("compute per push that emits frames, median / max", f"{np.median(compute) * 1000:.1f} / {np.max(compute) * 1000:.1f} ms"),
        ("end-to-end latency, worst (look-ahead + 30 ms push + max compute)", f"{(worst + 0.03 + np.max(compute)) * 1000:.0f} ms"),
        ("vs offline 10 s chunks: same phone at the window centre", f"{same_phone:.1%} of frames"),
        ("vs offline 10 s chunks: max abs difference of the cepstra", f"{ceps:.1e}"),
    ]


def memory_row(tmp: Path) -> tuple:
    """A 10-minute file through write_features in a fresh process (its peak RSS is not polluted by the models above)."""
    import json
    import subprocess

    code = f"""
import json, resource, sys, time
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "benchmarks")!r})
from bench_audio import speech
from radnerf.audio import AudioFeaturesConfig
from radnerf.audio.extract import write_features
from radnerf.audio.phonetic import PhoneticBackend
x = speech(600.0)
t = time.perf_counter()
shape = write_features({str(tmp / "aud_ph.npy")!r}, x, AudioFeaturesConfig(), len(x) // 640, PhoneticBackend())
dt = time.perf_counter() - t
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps([list(shape), dt, own, kids]))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    shape, dt, own, kids = json.loads(out.strip().splitlines()[-1])
    return tuple(shape), dt, own, kids


# -- speaker independence ---------------------------------------------------------------------


def dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Length-normalised DTW distance between ``[n, C]`` and ``[m, C]``."""
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).mean(-1))
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row, prev = acc[i], acc[i - 1]
        diag_up = np.minimum(prev[:-1], prev[1:]) + cost[i - 1]
        for j in range(1, m + 1):
            row[j] = min(diag_up[j - 1], row[j - 1] + cost[i - 1, j - 1])
    return float(acc[n, m] / (n + m))


def feature_sets(x: np.ndarray) -> dict[str, np.ndarray]:
    x = x[: len(x) // 320 * 320]
    be = PhoneticBackend()
    raw = be(x)
    feats = be.normalizer()(raw)
    p = len(PHONES)
    return {
        "log-mel (40)": log_mel(x),
        "MFCC c1-c12": raw[:, p + 1:],
        "MFCC c1-c12, live CMN": feats[:, p:],
        "phones (pocketsphinx, 41)": feats[:, :p],
        "offline backend: phones + MFCC live CMN (53)": feats,
    }


def speaker_rows() -> list[tuple]:
    """Per feature type: content retrieval accuracy across voices, and the DTW distance ratio."""
    import itertools

    synth = Espeak()
    utts = {(v, s): feature_sets(synth(text, v, p, r)) for v, p, r in VOICES for s, text in enumerate(SENTENCES)}
    keys = list(utts)
    rows = []
    for name in utts[keys[0]]:
        pooled = np.concatenate([utts[k][name] for k in keys])
        mu, sd = pooled.mean(0), pooled.std(0) + 1e-6
        z = {k: (utts[k][name] - mu) / sd for k in keys}
        d = {}
        for a, b in itertools.combinations(keys, 2):
            d[a, b] = d[b, a] = dtw(z[a], z[b])
        # For each utterance, is the nearest utterance by another voice the same sentence?
        hits = [min((k for k in keys if k[0] != q[0]), key=lambda k: d[q, k])[1] == q[1] for q in keys]
        content = np.mean([d[a, b] for a, b in itertools.combinations(keys, 2) if a[1] == b[1]])
        speaker = np.mean([d[a, b] for a, b in itertools.combinations(keys, 2) if a[0] == b[0]])
        rows.append((name, float(np.mean(hits)), content, speaker, content / speaker))
    return rows


PROBE_SENTENCES = SENTENCES + [
    "Good morning everyone, thank you all for coming here today.",
    "How much wood would a woodchuck chuck if it could chuck wood.",
    "Bring your umbrella because the weather looks rather gloomy outside.",
    "Five yellow jars of fresh orange juice were left on the table.",
]
PROBE_VOICES = [("en-us", 40, 150), ("en-us+f3", 85, 175), ("en-us+m3", 55, 135), ("en-us+f4", 70, 160)]


def _stack(z: np.ndarray, k: int = 2) -> np.ndarray:
    """Each frame with its k neighbours on each side: ``[n, C] -> [n, (2k + 1) C]`` (a small window)."""
    p = np.pad(z, ((k, k), (0, 0)), mode="edge")
    return np.concatenate([p[i: i + len(z)] for i in range(2 * k + 1)], axis=1)


def probe_rows() -> list[tuple]:
    """Linear phone probe: which features let a ridge classifier trained on some voices read another's phonemes.

    espeak-ng's own phoneme labels (from its events) are the targets, each 20 ms
    frame with +-2 frames of context the input; pauses are left out. Train on half
    the sentences said by three voices; test on the other half, said by the fourth
    voice (unseen speaker) and by the three (seen speakers); every voice and half
    in turn. The ratio is how much of the phonetic information survives a change
    of speaker.
    """
    synth = Espeak()
    data = {}
    for v, pitch, rate in PROBE_VOICES:
        for s, text in enumerate(PROBE_SENTENCES):
            x, labels = synth.say(text, v, pitch, rate)
            data[v, s] = (feature_sets(x), labels[: len(x) // 320])
    classes = sorted({lab for _, labels in data.values() for lab in labels} - {"_"})
    index = {c: i for i, c in enumerate(classes)}

    def accuracy(name, train_keys, test_keys):
        def xy(keys):
            xs, ys = [], []
            for k in keys:
                feats, labels = data[k]
                keep = labels != "_"
                xs.append(_stack(feats[name])[keep])
                ys.append(np.array([index[lab] for lab in labels[keep]]))
            return np.concatenate(xs), np.concatenate(ys)

        xtr, ytr = xy(train_keys)
        xte, yte = xy(test_keys)
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
        xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
        xtr, xte = np.c_[xtr, np.ones(len(xtr))], np.c_[xte, np.ones(len(xte))]
        targets = np.eye(len(classes))[ytr]
        w = np.linalg.solve(xtr.T @ xtr + 10.0 * np.eye(xtr.shape[1]), xtr.T @ targets)
        return float(np.mean((xte @ w).argmax(1) == yte))

    voices = [v for v, _, _ in PROBE_VOICES]
    n = len(PROBE_SENTENCES)
    folds = [range(n // 2), range(n // 2, n)]
    rows = []
    for name in data[voices[0], 0][0]:
        cross, seen = [], []
        for held in voices:
            others = [v for v in voices if v != held]
            for f, test_sents in enumerate(folds):
                train_sents = folds[1 - f]
                train = [(v, s) for v in others for s in train_sents]
                cross.append(accuracy(name, train, [(held, s) for s in test_sents]))
                seen.append(accuracy(name, train, [(v, s) for v in others for s in test_sents]))
        cross, seen = float(np.mean(cross)), float(np.mean(seen))
        rows.append((name, cross, seen))
    return rows


def microphone_rows() -> list[tuple]:
    """Real speech through a duller, quieter 'microphone': how far the cepstra move (speech frames after 4 s)."""
    from scipy.signal import lfilter

    x = speech(30.0)
    x = x[: len(x) // 320 * 320]
    be = PhoneticBackend()
    p = len(PHONES)
    rows = []
    for label, taps in (("duller (1 + 0.7 z^-1), -6 dB", [1.0, 0.7]), ("brighter (1 - 0.7 z^-1), -6 dB", [1.0, -0.7])):
        y = lfilter(taps, [1.0], x).astype(np.float32) * 0.5
        rx, ry = be(x), be(y)
        nx, ny = be.normalizer()(rx), be.normalizer()(ry)
        m = (np.arange(len(rx)) >= 200) & (rx[:, 0] < 1)
        rows.append((label, np.abs(rx[m, p + 1:] - ry[m, p + 1:]).mean(), np.abs(nx[m, p:] - ny[m, p:]).mean()))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="audio per timing run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; the best is reported")
    ap.add_argument("--quick", action="store_true", help="skip large random models and the 10-minute file")
    ap.add_argument("--only", choices=["speed", "latency", "memory", "speakers"], default=None)
    args = ap.parse_args()
    print(f"CPU threads: {os.cpu_count()}; torch threads 2; best of {args.repeat}\n")
    if args.only in (None, "speed"):
        print("| backend | C | audio | wall s | x real time (wall) | CPU s (all threads) |\n|---|---|---|---|---|---|")
        for (name, c, audio, t, x), cpu in zip(speed_rows(args), CPU_TIMES):
            print(f"| {name} | {c} | {audio} | {t:.2f} | {x:.1f} | {cpu:.2f} |", flush=True)
        print()
    if args.only in (None, "latency"):
        print("| streaming (offline backend, defaults) | value |\n|---|---|")
        for name, v in latency_rows():
            print(f"| {name} | {v} |")
        print()
    if args.only in (None, "memory") and not args.quick:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            shape, dt, own, kids = memory_row(Path(tmp))
        print("| 10-minute file, offline backend, write_features (2 processes) | value |\n|---|---|")
        print(f"| output shape | {shape} |\n| wall | {dt:.1f} s ({600 / dt:.1f} x real time) |")
        print(f"| peak RSS, main process / largest worker | {own:.0f} / {kids:.0f} MiB |\n")
    if args.only in (None, "speakers"):
        print("| features (espeak-ng, 3 voices x 6 sentences) | same sentence found across voices | "
              "DTW same sentence, other voice | DTW same voice, other sentence | ratio (lower: content over speaker) |")
        print("|---|---|---|---|---|")
        for name, hit, a, b, r in speaker_rows():
            print(f"| {name} | {hit:.2f} | {a:.3f} | {b:.3f} | {r:.3f} |", flush=True)
        print()
        print("| features (espeak-ng phoneme labels, 4 en-us voices x 8 sentences) | linear probe, unseen voice | "
              "seen voice, unseen sentences | unseen / seen |\n|---|---|---|---|")
        for name, cross, seen in probe_rows():
            print(f"| {name} | {cross:.3f} | {seen:.3f} | {cross / seen:.2f} |", flush=True)
        print()
        print("| real speech through another microphone | mean abs change of MFCC, raw | with live CMN |\n|---|---|---|")
        for label, raw, norm in microphone_rows():
            print(f"| {label} | {raw:.3f} | {norm:.3f} |")


if __name__ == "__main__":
    main()
