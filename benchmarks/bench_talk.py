"""Rendering speed of a trained person: frames per second of the head, the torso and the whole frame.

Offline rendering as ``radnerf render`` does it (audio code, head over torso over the
background), at 256x256 and 512x512 (the head's camera scaled to the size), on the
person the head benchmark trained (``benchmarks/bench_head.py --only quality``) or any
trained person (``--artifacts``, ``--person``). Prints a markdown table.

Usage::

    python benchmarks/bench_talk.py                          # the HDTF head of bench_head, CPU
    python benchmarks/bench_talk.py --device cuda --frames 200
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
    bc = np.asarray(Image.fromarray(train.background).resize((size, size), Image.BILINEAR))
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    p.add_argument("--person", default="katie")
    p.add_argument("--preset", default="cpu_tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from radnerf.config import load_config
    from radnerf.models import attention_indices, gather_windows
    from radnerf.paths import PersonPaths
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
    train, _ = person_splits(paths, cfg, head.data["audio_features"])
    window = head.model.cfg.attention_window
    windows = [gather_windows(train.audio, attention_indices([k], len(train.audio), window))
               for k in range(len(train))]
    print(f"# bench_talk: {paths.root}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {device}, head {paths.rel(final_head(paths))}, torso {'trained' if torso else 'none'}\n")

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


if __name__ == "__main__":
    main()
