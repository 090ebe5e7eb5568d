"""A trained person talking: rendering speed offline and streaming, and whether the lips follow the audio.

Three tables, on the person the head benchmark trained (``benchmarks/bench_head.py --only quality``)
or any trained person (``--artifacts``, ``--person``):

- offline: frames per second of the head, the torso and the whole frame as ``radnerf render`` renders
  them, at 256x256 and 512x512 (the head's camera scaled to the size);
- streaming: ``radnerf stream``'s path (audio chunks of 40 ms in, frames out) on ``--speech``: FPS as
  fast as it renders, the look-ahead a frame waits for, and the latency audio in -> frame out when the
  audio arrives at its own pace (on a CPU slower than real time it grows with every frame: the
  first frame's and the median are shown);
- lips: the mouth opening (inner lip gap over the eye distance, dlib landmarks on the rendered frames)
  and its correlation with the audio (:mod:`radnerf.eval.lipsync`), for ``--speech`` (another speaker), for silence of the same length,
  and for the training clip itself (the real video and its audio, the reference).

Usage::

    python benchmarks/bench_talk.py                          # the HDTF head of bench_head, CPU
    python benchmarks/bench_talk.py --device cuda --frames 200 --sections offline stream
    python benchmarks/bench_talk.py --artifacts artifacts --person alice --sizes 512
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULT_ARTIFACTS = REPO / "benchmarks" / "out" / "head" / "runs" / "full_model_seed_0"
DEFAULT_SPEECH = REPO.parent / "shared" / "data" / "speech" / "sadtalker_rd_radio31_8s.wav"


def timed(fn, frames: int, device: torch.device, warmup: int = 2) -> float:
    """Frames per second of ``fn(k)`` over ``frames`` calls after ``warmup`` ones."""
    for k in range(warmup):
        fn(k)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for k in range(frames):
        fn(k)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - started)


def measure(size: int, head, torso, train, windows: list, device: torch.device, frames: int) -> list[dict]:
    """Rows of frames per second at ``size`` x ``size``: the head alone, the torso alone, the whole frame."""
    from PIL import Image

    from radnerf.render import render_image
    from radnerf.train.torso import render_frame, torso_coords, torso_over

    model = head.model
    scale = size / train.width
    sized = replace(head, data={**head.data, "intrinsics": [v * scale for v in head.data["intrinsics"]]})
    bc = np.array(Image.fromarray(train.background).resize((size, size), Image.BILINEAR))  # writable
    bg = torch.from_numpy(bc).to(device, torch.float32) / 255.0
    coords = torso_coords(size, size).to(device)

    def condition(k: int):
        i = k % len(train)
        cond = model.condition(windows[i].to(device), float(train.eye[i]), None)
        return cond, torch.from_numpy(train.poses[i]).to(device)

    @torch.no_grad()
    def head_only(k: int) -> None:
        cond, pose = condition(k)
        render_image(pose, sized.data["intrinsics"], size, size, head.grid,
                     lambda x, d: model(x, d, cond), options=head.render, background=bg)

    rows = [{"size": size, "part": "head (audio code + NeRF)", "fps": timed(head_only, frames, device)}]
    if torso is None:
        return rows
    code = torso.model.code(None).detach()

    @torch.no_grad()
    def torso_only(k: int) -> None:
        torso_over(torso.model, coords, condition(k)[1], code, bg.reshape(-1, 3))

    @torch.no_grad()
    def whole(k: int) -> None:
        cond, pose = condition(k)
        render_frame(sized, torso.model, pose, cond, code, bg)

    rows.append({"size": size, "part": "torso (2D field)", "fps": timed(torso_only, frames, device)})
    rows.append({"size": size, "part": "whole frame (head over torso)", "fps": timed(whole, frames, device)})
    return rows


def sized(head, clip, size: int):
    """The head and clip rendering ``size`` x ``size`` frames (the camera scaled, the background resized)."""
    from PIL import Image

    from radnerf.talk.clip import Clip

    scale = size / clip.width
    head = replace(head, data={**head.data, "intrinsics": [v * scale for v in head.data["intrinsics"]]})
    bc = np.array(Image.fromarray(clip.background).resize((size, size), Image.BILINEAR))
    return head, Clip(clip.poses, clip.eyes, bc, clip.intrinsics * scale)


def measure_stream(size: int, head, clip, torso, audio_cfg, speech: np.ndarray, device: torch.device) -> dict:
    """One streaming row at ``size``: FPS as fast as it renders, the look-ahead, the paced latencies."""
    from radnerf.talk.stream import SAMPLE_RATE, Chunk, TalkingStream, run_stream

    head, clip = sized(head, clip, size)

    def chunks(paced: bool):
        step = SAMPLE_RATE * 40 // 1000
        start = time.perf_counter()
        for i in range(0, len(speech), step):
            due = start + (i + step) / SAMPLE_RATE
            if paced and due > time.perf_counter():
                time.sleep(due - time.perf_counter())
            yield Chunk(speech[i:i + step], due if paced else time.perf_counter())

    results = {}
    for paced in (False, True):
        talking = TalkingStream(head, clip, audio_cfg, device, torso)
        _, latencies, seconds = run_stream(talking, chunks(paced), lambda frame: None)
        results[paced] = (len(latencies) / seconds, latencies)
    best, worst = talking.lookahead_seconds
    fast, paced = results[False], results[True]
    return {"size": size, "fps": fast[0], "lookahead": f"{best:.2f}-{worst:.2f}",
            "first": paced[1][0], "median": float(np.median(paced[1])), "frames": len(paced[1])}


def measure_lips(head, clip, torso, audio_cfg, speech: np.ndarray, train, device: torch.device) -> list[dict]:
    """Rows of mouth motion: rendered from ``speech``, rendered from silence, and the real training clip."""
    from radnerf.audio import extract_features
    from radnerf.audio.extract import load_input
    from radnerf.eval.lipsync import audio_openness, mouth_audio_sync, mouth_opening
    from radnerf.preprocess.landmark_backends import make_backend
    from radnerf.talk.render import render_frames, video_controls

    detector = make_backend("dlib")

    def row(name: str, frames: list, audio: np.ndarray) -> dict:
        mouth = mouth_opening(np.stack(frames), detector)
        score = mouth_audio_sync(mouth, audio_openness(audio, len(frames)))
        return {"video": name, "frames": len(frames), "found": int(np.isfinite(mouth).sum()),
                "mean": np.nanmean(mouth), "std": np.nanstd(mouth), "corr": score["corr_at_0"]}

    rows = []
    for name, audio in (("rendered from speech of another speaker (still pose)", speech),
                        ("rendered from silence (still pose)", np.zeros_like(speech))):
        features = extract_features(audio, audio_cfg)
        # A still head with open eyes: only the audio can move the mouth (with the clip's poses, a head that
        # learnt little from audio replays the expressions it saw at each pose).
        controls = video_controls(clip, len(features), pose="still", eyes="open", model=head.settings["model"])
        rows.append(row(name, list(render_frames(head, clip, features, device, torso, controls)), audio))
    # The real clip, frames in time order with the stretch of its audio they span.
    order = np.argsort(train.img_ids)
    own = load_input(train.paths.audio_wav)
    first = int(train.img_ids[order[0]]) * 640
    rows.append(row("the training clip (real frames, own audio)", [train.image(int(i)) for i in order],
                    own[first: first + len(order) * 640]))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    p.add_argument("--person", default="katie")
    p.add_argument("--preset", default="cpu_tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--sections", nargs="+", default=["offline", "stream", "lips"],
                   choices=["offline", "stream", "lips"])
    p.add_argument("--speech", type=Path, default=DEFAULT_SPEECH,
                   help="speech of another speaker (streaming and lips; default: a clip of ../shared)")
    p.add_argument("--stream-seconds", type=float, default=4.0)
    p.add_argument("--lip-seconds", type=float, default=6.0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from radnerf.audio.extract import load_input
    from radnerf.config import load_config
    from radnerf.models import attention_indices, gather_windows
    from radnerf.paths import PersonPaths
    from radnerf.talk.clip import Clip
    from radnerf.train.head import load_head, person_splits
    from radnerf.train.lips import final_head
    from radnerf.train.torso import load_torso

    cfg = load_config([f"preset={args.preset}", f"person={args.person}", f"paths.artifacts={args.artifacts}"])
    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    if not paths.final_weights("head").is_file():
        sys.exit(f"{paths.final_weights('head')} is missing: run `python benchmarks/bench_head.py --only quality` "
                 "or pass --artifacts/--person of a trained person")
    device = torch.device(args.device)
    head = load_head(final_head(paths), device, cfg.render)
    torso_file = paths.final_weights("torso")
    torso = load_torso(torso_file, device, cfg.render) if torso_file.is_file() else None
    train, val = person_splits(paths, cfg, head.data["audio_features"])
    clip = Clip.from_splits((train, val))
    print(f"# bench_talk: {paths.root}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {device}, head {paths.rel(final_head(paths))}, torso {'trained' if torso else 'none'}\n")
    needs_speech = {"stream", "lips"} & set(args.sections)
    if needs_speech and not args.speech.is_file():
        sys.exit(f"{args.speech} is missing: pass --speech FILE (any speech ffmpeg reads)")
    speech = load_input(args.speech) if needs_speech else None

    if "offline" in args.sections:
        window = head.model.cfg.attention_window
        windows = [gather_windows(train.audio, attention_indices([k], len(train.audio), window))
                   for k in range(len(train))]
        rows = []
        for size in args.sizes:
            rows += measure(size, head, torso, train, windows, device, args.frames)
            for row in rows[-3:] if torso is not None else rows[-1:]:
                print(row, flush=True)
        print("\n### Rendering speed (offline, frames per second)\n")
        print("| size | part | fps | ms per frame |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['size']}x{r['size']} | {r['part']} | {r['fps']:.2f} | {1000 / r['fps']:.0f} |")

    if "stream" in args.sections:
        part = speech[: int(args.stream_seconds * 16000)]
        rows = []
        for size in args.sizes:
            rows.append(measure_stream(size, head, clip, torso, cfg.audio_features, part, device))
            print(rows[-1], flush=True)
        print(f"\n### Streaming (40 ms chunks of {len(part) / 16000:.1f} s of speech, whole frame)\n")
        print("| size | fps, as fast as it renders | look-ahead (s) | latency at the audio's pace: first frame (s) "
              "| median (s) |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['size']}x{r['size']} | {r['fps']:.2f} | {r['lookahead']} | {r['first']:.2f} | "
                  f"{r['median']:.2f} |")

    if "lips" in args.sections:
        part = speech[: int(args.lip_seconds * 16000)]
        rows = measure_lips(head, clip, torso, cfg.audio_features, part, train, device)
        print(f"\n### Lips and the audio ({args.speech.name}, {len(part) / 16000:.1f} s; mouth opening = inner "
              "lip gap / eye distance)\n")
        print("| video | frames (face found) | mouth opening mean | std | mouth-audio corr. at offset 0 |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['video']} | {r['frames']} ({r['found']}) | {r['mean']:.3f} | {r['std']:.3f} | "
                  f"{r['corr']:+.2f} |")


if __name__ == "__main__":
    main()
