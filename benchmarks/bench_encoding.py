"""Speed of the grid encoders: plain per-level PyTorch loop vs the fused C++ kernel.

Prints a markdown table (best and median of ``--repeats`` timings per row
after a warm-up; the rows take turns, one timing each per round, so that on a
shared machine a busy spell slows one timing of every row rather than all
timings of one row, and the best timing is the least disturbed). Rows:

- the issue's 3D hash grid: 16 levels x 2 features, 2^19 table, 16 -> 2048,
  65,536 points uniform in the cube; forward, and forward + backward (table
  gradient, ``params.grad`` set to None between steps as ``zero_grad`` does);
- RAD-NeRF's 2D grids (audio and torso): tiled, 16 x 2, 2^16 table,
  16 -> 2048; forward, forward + backward (table gradient), and forward +
  backward with the input gradient too, which both grids need in training
  (the audio coordinate and the torso deformation are learned);
- CUDA rows (plain path, and tiny-cuda-nn if it imports) when a GPU is present.

Usage: ``python benchmarks/bench_encoding.py [--threads 2] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from radnerf.encoding import GridEncoder, grid_layout
from radnerf.encoding.grid_fused import load_extension

#: Clock used by _time: wall time by default; --cpu-time switches to the calling
#: thread's CPU time, which on a crowded machine estimates a quiet one's wall
#: time for single-threaded runs (time spent descheduled is not counted).
_CLOCK = {"now": time.perf_counter}


def _time_round_robin(cases: list, repeats: list[int]) -> list[tuple[float, float]]:
    """Best and median seconds of each ``(fn, sync)`` in ``cases``.

    The cases take turns, one timing each per round (``repeats[i]`` rounds for
    case i), so every case samples the whole run: on a shared machine a busy
    minute then slows one timing of each case, not all timings of one case.
    """
    now = _CLOCK["now"]
    for fn, sync in cases:  # warm-up: build, caches, buffers
        fn()
        fn()
        sync()
    times: list[list[float]] = [[] for _ in cases]
    for r in range(max(repeats)):
        for i, (fn, sync) in enumerate(cases):
            if r >= repeats[i]:
                continue
            t0 = now()
            fn()
            sync()
            times[i].append(now() - t0)
    return [(min(t), statistics.median(t)) for t in times]


def _case(layout, path, n, device, input_grad, backward, bound=1.0):
    enc = GridEncoder(layout, bound=bound, path=path).to(device)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, layout.input_dim, generator=g) * 2 - 1).mul(bound).to(device)
    up = torch.randn(n, layout.output_dim, generator=g).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def fwd():
        with torch.no_grad():
            enc(x)

    def fwd_bwd():
        enc.params.grad = None
        xi = x.clone().requires_grad_() if input_grad else x
        out = enc(xi)
        out.backward(up)

    return (fwd_bwd if backward else fwd), sync


def _tcnn_case(layout, n):
    from radnerf.encoding import TcnnGridEncoder

    enc = TcnnGridEncoder(layout)
    x = torch.rand(n, layout.input_dim, device="cuda") * 2 - 1
    up = torch.randn(n, layout.output_dim, device="cuda")

    def fwd_bwd():
        enc.params.grad = None
        enc(x).backward(up)

    return fwd_bwd, torch.cuda.synchronize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--points", type=int, default=65536)
    ap.add_argument("--skip-plain", action="store_true", help="skip the slow plain CPU rows")
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the calling thread's CPU time (meaningful with --threads 1)",
    )
    args = ap.parse_args()
    if args.cpu_time:
        _CLOCK["now"] = time.thread_time
    torch.set_num_threads(args.threads)
    n = args.points

    grid3d = grid_layout(3, 16, 2, 16, 19, desired_resolution=2048, grid_type="hash")
    grid2d = grid_layout(2, 16, 2, 16, 16, desired_resolution=2048, grid_type="tiled")
    fused = load_extension() is not None
    goals = {
        ("3D", "fwd"): 5.0,
        ("3D", "fwd+bwd"): 2.5,
        ("2D", "fwd+bwd"): 8.0,
        ("2D+dx", "fwd+bwd"): 8.0,
    }

    cases = [
        ("3D hash 16x2, 2^19", "3D", grid3d, "fwd", False, False),
        ("3D hash 16x2, 2^19", "3D", grid3d, "fwd+bwd", False, True),
        ("2D audio/torso tiled 16x2, 2^16", "2D", grid2d, "fwd", False, False),
        ("2D audio/torso tiled 16x2, 2^16", "2D", grid2d, "fwd+bwd", False, True),
        ("2D audio/torso tiled 16x2, 2^16", "2D+dx", grid2d, "fwd+bwd", True, True),
    ]
    meta, timed, reps = [], [], []
    for name, kind, layout, pas, input_grad, backward in cases:
        paths = ([] if args.skip_plain else ["plain"]) + (["fused"] if fused else [])
        for path in paths:
            label = "plain per-level PyTorch" if path == "plain" else "fused C++"
            goal = goals.get((kind, pas)) if path == "fused" else None
            pas_label = pas + (" (+dx)" if input_grad else "")
            meta.append((name, f"{label}, cpu x{args.threads}", pas_label, goal))
            timed.append(_case(layout, path, n, "cpu", input_grad, backward))
            reps.append(max(2, args.repeats // 3) if path == "plain" else args.repeats)
    if torch.cuda.is_available():
        for name, _kind, layout, pas, input_grad, backward in cases:
            meta.append((name, "plain PyTorch, cuda", pas + (" (+dx)" if input_grad else ""), None))
            timed.append(_case(layout, "plain", n, "cuda", input_grad, backward))
            reps.append(args.repeats)
        from radnerf.encoding.grid import tcnn_status

        if tcnn_status()[0] is not None:
            meta.append((cases[1][0], "tiny-cuda-nn, cuda", "fwd+bwd", None))
            timed.append(_tcnn_case(grid3d, n))
            reps.append(args.repeats)
    results = _time_round_robin(timed, reps)
    rows = [(*m[:3], best, med, m[3]) for m, (best, med) in zip(meta, results)]

    clock = "thread CPU time" if args.cpu_time else "wall time"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"\n{n:,} points, torch {torch.__version__}, {args.threads} CPU threads, {clock}; "
        f"best (median) of the runs; load average {load} on {os.cpu_count()} CPUs\n"
    )
    print("| grid | implementation | pass | ms | M points/s | goal |")
    print("|---|---|---|---:|---:|---:|")
    for name, impl, pas, best, med, goal in rows:
        rate = n / best / 1e6
        goal_txt = "" if goal is None else f">= {goal:g} {'ok' if rate >= goal else 'MISSED'}"
        print(
            f"| {name} | {impl} | {pas} | {best * 1e3:.1f} ({med * 1e3:.1f}) | {rate:.2f} | "
            f"{goal_txt} |"
        )


if __name__ == "__main__":
    main()
