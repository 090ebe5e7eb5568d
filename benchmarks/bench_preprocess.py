"""Speed of the per-frame preprocessing with the offline backends (landmarks, parse, background, torso, regions).

Run: ``python benchmarks/bench_preprocess.py`` (about 2-4 minutes on 2 free
cores). Options: ``--clip PATH`` (default the shared 33 s clip),
``--size 512`` (frames are resized to a square of this side, the issue's
budget is stated at 512x512), ``--frames N`` (first N frames; default all),
``--workers 2``, ``--repeat 2``.

Prints a markdown table: wall seconds and milliseconds per frame for each
stage (best of ``--repeat`` runs; the machine may be shared, so the best run
is the one least disturbed), and the CPU milliseconds per frame the stage
consumed over all its processes, which is what a quiet machine's wall time
times the number of cores would be. The issue's budget: landmarks + parse +
background + torso <= 100 ms per frame at 512x512 on 2 cores (the 33 s clip in
under 90 s).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_CLIP = ROOT / ".." / "shared" / "data" / "clips" / "liveportrait_d6_33s.mp4"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def make_person(root: Path, clip: Path, size: int, frames: int | None) -> int:
    import json

    from radnerf.media import extract_frames

    vf = f"fps=fps=25:round=near,scale={size}:{size}:flags=area"
    n, _ = extract_frames(clip, root / "ori_imgs", video_filter=vf, frames=frames, jpeg_quality=2)
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    (root / "manifests" / "ingest.json").write_text(json.dumps(
        {"frames": n, "width": size, "height": size, "fps": 25, "fingerprint": f"bench-{clip.name}-{size}-{n}"}
    ))
    return n


def run_once(frames_dir: Path, n: int, workers: int) -> dict[str, tuple[float, float]]:
    from radnerf import pipeline
    from radnerf.config import RadNerfConfig

    work = Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    try:
        person = work / "bench"
        person.mkdir()
        shutil.copytree(frames_dir / "ori_imgs", person / "ori_imgs")
        shutil.copytree(frames_dir / "manifests", person / "manifests")
        cfg = RadNerfConfig()
        cfg.person = "bench"
        cfg.paths.artifacts = str(work)
        cfg.preprocess.landmarks = "dlib"
        cfg.preprocess.parsing = "offline"
        cfg.preprocess.workers = workers
        times = {}
        for name in ("landmarks", "parse", "background", "torso", "regions"):
            wall, cpu = time.perf_counter(), cpu_seconds()
            pipeline.run_stage(pipeline.BY_NAME[name], cfg)
            times[name] = (time.perf_counter() - wall, cpu_seconds() - cpu)
        return times
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if not args.clip.exists():
        sys.exit(f"{args.clip} not found; pass --clip PATH")

    src = Path(tempfile.mkdtemp(prefix="bench_frames_"))
    try:
        n = make_person(src, args.clip, args.size, args.frames)
        runs = [run_once(src, n, args.workers) for _ in range(args.repeat)]
    finally:
        shutil.rmtree(src, ignore_errors=True)

    best = {k: (min(r[k][0] for r in runs), min(r[k][1] for r in runs)) for k in runs[0]}
    load = os.getloadavg()[0]
    print(f"\n{args.clip.name}: {n} frames at {args.size}x{args.size}, {args.workers} workers, "
          f"best of {args.repeat}; load average {load:.1f} on {os.cpu_count()} cores\n")
    print("| stage | wall s | wall ms/frame | CPU ms/frame |")
    print("|---|---:|---:|---:|")
    budget = ("landmarks", "parse", "background", "torso")
    for name, (wall, cpu) in best.items():
        print(f"| {name} | {wall:.1f} | {1000 * wall / n:.1f} | {1000 * cpu / n:.1f} |")
    wall = sum(best[k][0] for k in budget)
    cpu = sum(best[k][1] for k in budget)
    print(f"| **landmarks+parse+background+torso** | **{wall:.1f}** | **{1000 * wall / n:.1f}** | "
          f"**{1000 * cpu / n:.1f}** |")
    print(f"\nbudget: 100 ms/frame wall on 2 cores; CPU ms/frame / {args.workers} = "
          f"{1000 * cpu / n / args.workers:.1f} ms/frame if the cores were free")


if __name__ == "__main__":
    main()
