"""Speed of tracking: seconds per 1,000 frames, landmarks given (the issue's limit: 10 s on 2 cores).

Prints a markdown table (best and median of ``--repeats`` runs; the machine
may be shared, so the best run is the one least disturbed). Rows: synthetic
clips of 500, 1,000 and 3,000 frames (head turning +-25 / 15 / 10 degrees,
mouth moving, 1 px noise, 3% dropped) with the default settings (focal
estimated, its profile measured), with a fixed focal, and without the focal
profile; and the real 8 s HDTF clip's dlib landmarks when ``--real`` is given
and ``../shared`` exists (landmark detection itself is not timed).

Usage: ``python benchmarks/bench_tracking.py [--repeats 3] [--threads 2] [--real]``
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

import numpy as np


def _time(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="BLAS threads (0: leave as is)")
    ap.add_argument("--real", action="store_true", help="also time the real 8 s clip (runs dlib first)")
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)

    from radnerf.config import TrackConfig
    from radnerf.preprocess.tracking import track_landmarks
    from radnerf.preprocess.tracking_synth import make_clip

    rows = []
    cases = [
        (500, "default (focal estimated + profile)", TrackConfig(overlay_frames=0, plots=False)),
        (1000, "default (focal estimated + profile)", TrackConfig(overlay_frames=0, plots=False)),
        (1000, "no focal profile", TrackConfig(overlay_frames=0, plots=False, focal_profile=False)),
        (1000, "focal fixed (track.focal=1200)", TrackConfig(overlay_frames=0, plots=False, focal=1200.0)),
        (3000, "default (focal estimated + profile)", TrackConfig(overlay_frames=0, plots=False)),
    ]
    for frames, label, cfg in cases:
        clip = make_clip(frames=frames, focal=1200.0, seed=frames)
        best, med = _time(lambda c=clip, k=cfg: track_landmarks(c.lms, 512, 512, k, valid=c.valid), args.repeats)
        rows.append((f"synthetic {frames} frames", label, best, med, frames))

    shared = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "clips" / "hdtf_katiehill_8s.mp4"
    if args.real and shared.exists():
        import tempfile

        import cv2
        import dlib

        from radnerf.media import extract_frames

        with tempfile.TemporaryDirectory() as tmp:
            n, _ = extract_frames(shared, tmp, fps=25, stream_start=0.0)
            model = Path(importlib.util.find_spec("face_recognition_models").submodule_search_locations[0])
            det = dlib.get_frontal_face_detector()
            pred = dlib.shape_predictor(str(model / "models" / "shape_predictor_68_face_landmarks.dat"))
            lms = np.full((n, 68, 2), np.nan)
            for i in range(n):
                img = cv2.cvtColor(cv2.imread(os.path.join(tmp, f"{i}.jpg")), cv2.COLOR_BGR2RGB)
                faces = det(img, 0) or det(img, 1)
                if faces:
                    lms[i] = [(p.x, p.y) for p in pred(img, max(faces, key=lambda r: r.area())).parts()]
        cfg = TrackConfig(overlay_frames=0, plots=False)
        best, med = _time(lambda: track_landmarks(lms, 512, 512, cfg), args.repeats)
        rows.append(("HDTF 8 s clip (dlib)", "default (focal estimated + profile)", best, med, n))

    print(f"tracking speed, landmarks given; {os.cpu_count()} CPUs visible, best / median of {args.repeats}\n")
    print("| clip | settings | best s | median s | s per 1,000 frames (best) |")
    print("|---|---|---:|---:|---:|")
    for clip, label, best, med, n in rows:
        print(f"| {clip} | {label} | {best:.2f} | {med:.2f} | {1000 * best / n:.2f} |")


if __name__ == "__main__":
    main()
