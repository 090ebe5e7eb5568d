"""Speed of rendering one head frame: rays, ray marching, field queries, compositing.

Scene: a stand-in "trained" head, an analytic soft ellipsoid (half axes 0.55,
0.45, 0.6 in the box of bound 1) whose maximum occupancy grid (128^3, RAD-NeRF's
update and dilation) has ~8 % of its cells occupied, seen from RAD-NeRF's
default GUI camera (distance 3.35, vertical field of view 21.24 degrees).

Fields:

* ``analytic``: the ellipsoid's closed-form density and a positional colour;
  the time is then almost all renderer.
* ``mlp``: the same density, plus the per-sample networks of RAD-NeRF's head
  at its sizes (ambient MLP 96-64-64-2, density MLP 64-64-64-65, colour MLP
  84-64-3, random weights) fed by cheap stand-in encodings; the hash-grid
  encoders (issue 6's other half) are not included, their cost comes on top.

Usage::

    python benchmarks/bench_render.py                  # 256x256, 2 threads, best of 5
    python benchmarks/bench_render.py --threads 1 --size 256 --repeats 3

Prints a markdown table; with CUDA available it adds 512x512 rows (FPS).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch

from radnerf.config import RenderConfig
from radnerf.render import (
    OccupancyGrid,
    get_rays,
    render_image,
    render_rays,
    sample_pixels,
)

AXES = (0.55, 0.45, 0.6)


def head_density(xyz: torch.Tensor) -> torch.Tensor:
    """``[N, 3] -> [N]``: soft ellipsoid, density 50 inside."""
    a = torch.tensor(AXES, device=xyz.device, dtype=xyz.dtype)
    r = (xyz / a).norm(dim=-1)
    return 50.0 * torch.sigmoid((1.0 - r) * 40.0)


def analytic_field(xyz: torch.Tensor, dirs: torch.Tensor):
    return head_density(xyz), torch.sigmoid(3.0 * xyz)


class RadNerfSizedField(torch.nn.Module):
    """RAD-NeRF's per-sample MLPs at their sizes, with stand-in encodings instead of hash grids."""

    def __init__(self, device: torch.device):
        super().__init__()

        def mlp(sizes):
            layers = []
            for i in range(len(sizes) - 1):
                layers.append(torch.nn.Linear(sizes[i], sizes[i + 1], bias=False))
                if i < len(sizes) - 2:
                    layers.append(torch.nn.ReLU())
            return torch.nn.Sequential(*layers)

        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj_xyz", torch.randn(3, 16, generator=g) * 4)
        self.register_buffer("proj_dir", torch.randn(3, 8, generator=g))
        self.register_buffer("audio", torch.randn(1, 64, generator=g))
        self.ambient = mlp([32 + 64, 64, 64, 2])
        self.sigma = mlp([32 + 32, 64, 64, 1 + 64])
        self.color = mlp([16 + 64 + 4, 64, 3])
        self.register_buffer("ind_code", torch.zeros(1, 4))
        self.to(device)

    def forward(self, xyz: torch.Tensor, dirs: torch.Tensor):
        n = xyz.shape[0]
        h = xyz @ self.proj_xyz
        enc_x = torch.cat([h.sin(), h.cos()], dim=-1)  # stands in for the 3D grid's 32 features
        amb = torch.tanh(self.ambient(torch.cat([enc_x, self.audio.expand(n, -1)], dim=-1)))
        enc_a = torch.cat(
            [(amb @ self.proj_xyz[:2]).sin(), (amb @ self.proj_xyz[:2]).cos()], dim=-1
        )
        out = self.sigma(torch.cat([enc_x, enc_a], dim=-1))
        sigma = head_density(xyz) * (1.0 + 0.01 * torch.tanh(out[:, 0]))
        hd = dirs @ self.proj_dir
        enc_d = torch.cat([hd.sin(), hd.cos()], dim=-1)
        rgb = torch.sigmoid(
            self.color(torch.cat([enc_d, out[:, 1:], self.ind_code.expand(n, -1)], dim=-1))
        )
        return sigma, rgb


def camera(size: int, device: torch.device):
    """RAD-NeRF's default GUI camera in normalised space, looking at the head down +z."""
    pose = torch.eye(4, device=device)
    pose[2, 3] = -3.35
    focal = size / 2 / math.tan(math.radians(21.24 / 2))
    return pose, (focal, focal, size / 2, size / 2)


def bench(grid, field, size, opts, repeats, device):
    """Best of ``repeats`` frames after one warm-up: ``(wall s, process CPU s, breakdown)``.

    The CPU time (all threads) is reported too because on a shared machine the
    wall time of a frame includes time the scheduler gave to other processes.
    """
    pose, intr = camera(size, device)
    runs = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            prof: dict[str, float] = {}
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
            render_image(
                pose, intr, size, size, grid, field, options=opts, background=1.0, profile=prof
            )
            if device.type == "cuda":
                torch.cuda.synchronize()
            runs.append((time.perf_counter() - start, time.process_time() - cpu_start, prof))
    return min(runs[1:], key=lambda run: run[0])


def count_samples(grid, size, opts, device):
    """Mean samples marched and fields evaluated per ray that meets the box, for one frame."""
    pose, intr = camera(size, device)
    calls = []

    def counting(xyz, dirs):
        calls.append(xyz.shape[0])
        return analytic_field(xyz, dirs)

    rays = get_rays(pose, intr, size, size)
    with torch.no_grad():
        out = render_rays(
            rays.origins, rays.directions, grid, counting, options=opts, differentiable=False
        )
    hit = int((out["num_samples"] > 0).sum())
    return int(out["num_samples"].sum()) / max(hit, 1), sum(calls) / max(hit, 1), hit


def bench_train(grid, field, size, rays_per_step, repeats, device):
    """Best ``(wall s, CPU s)`` of a training-style step: random rays, differentiable path, backward."""
    pose, intr = camera(size, device)
    g = torch.Generator(device=device).manual_seed(0)
    # A learnable gain, so a field without parameters (the analytic one) has a backward too.
    gain = torch.ones((), device=device, requires_grad=True)

    def trained(xyz, dirs):
        sigma, rgb = field(xyz, dirs)
        return sigma * gain, rgb * gain

    runs = []
    for _ in range(repeats + 1):
        pixels = sample_pixels(size, size, rays_per_step, generator=g, device=device)
        rays = get_rays(pose, intr, size, size, pixels=pixels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        out = render_rays(
            rays.origins, rays.directions, grid, trained, background=1.0, perturb=True, generator=g
        )
        out["rgb"].square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        runs.append((time.perf_counter() - start, time.process_time() - cpu_start))
    return min(runs[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="CPU frame side in pixels")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the best is reported")
    parser.add_argument("--grid-size", type=int, default=128)
    parser.add_argument(
        "--steps", type=int, nargs="*", default=[16, 8, 32], help="max_steps values"
    )
    parser.add_argument(
        "--train-rays", type=int, default=4096, help="rays of the training-step row (0: skip)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    train_rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        size = args.size if device.type == "cpu" else 512
        grid = OccupancyGrid(args.grid_size, bound=1.0, density_thresh=10.0).to(device)
        grid.update(lambda x, c: head_density(x), lambda: None, generator=None)
        grid.empty_distance()  # computed once per grid update, not per frame
        fields = {"analytic": analytic_field, "mlp": RadNerfSizedField(device).eval()}
        for max_steps in args.steps:
            opts = RenderConfig(max_steps=max_steps)
            marched, evaluated, hit = count_samples(grid, size, opts, device)
            for name, field in fields.items():
                if name == "mlp" and max_steps != args.steps[0]:
                    continue
                total, cpu, prof = bench(grid, field, size, opts, args.repeats, device)
                rows.append(
                    {
                        "device": device.type
                        if device.type == "cpu"
                        else torch.cuda.get_device_name(),
                        "size": size,
                        "field_name": name,
                        "max_steps": max_steps,
                        "occ": grid.occupancy_rate,
                        "hit": hit,
                        "marched": marched,
                        "evaluated": evaluated,
                        "total": total,
                        "cpu": cpu,
                        **prof,
                    }
                )
        if args.train_rays > 0:
            rays_per_step = args.train_rays if device.type == "cpu" else 65536
            for name, field in fields.items():
                wall, cpu = bench_train(grid, field, size, rays_per_step, args.repeats, device)
                train_rows.append((device, name, rays_per_step, wall, cpu))

    print(
        f"\nRender benchmark: torch {torch.__version__}, {args.threads} CPU threads, "
        f"{platform.processor() or platform.machine()}, best of {args.repeats}; "
        f"grid {args.grid_size}^3, times in ms\n"
    )
    print(
        "| device | frame | field | max_steps | occupied cells | rays with samples | samples/ray marched "
        "| evaluated | rays | near/far | march | field | composite | total ms | CPU ms | FPS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ms = {k: 1e3 * r.get(k, 0.0) for k in ("rays", "near_far", "march", "field", "composite")}
        print(
            f"| {r['device']} | {r['size']}x{r['size']} | {r['field_name']} | {r['max_steps']} "
            f"| {100 * r['occ']:.1f}% | {r['hit']} | {r['marched']:.1f} | {r['evaluated']:.1f} "
            f"| {ms['rays']:.1f} | {ms['near_far']:.1f} | {ms['march']:.1f} | {ms['field']:.1f} "
            f"| {ms['composite']:.1f} | {1e3 * r['total']:.1f} | {1e3 * r['cpu']:.1f} "
            f"| {1.0 / r['total']:.1f} |"
        )
    if train_rows:
        print(
            "\nTraining step (random rays, perturbed, differentiable path, forward + backward, "
            "max_steps 16)\n"
        )
        print("| device | field | rays | total ms | CPU ms | rays/s |")
        print("|---|---|---|---|---|---|")
        for device, name, n, wall, cpu in train_rows:
            label = device.type if device.type == "cpu" else torch.cuda.get_device_name()
            print(
                f"| {label} | {name} | {n} | {1e3 * wall:.1f} | {1e3 * cpu:.1f} | {n / wall:,.0f} |"
            )
    print(
        "\nColumns: samples/ray over rays with samples; 'evaluated' = field queries per such ray "
        "after early termination; phase times (ms, wall) from the best frame; CPU ms = process CPU "
        "time of that frame over all threads; load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} while measuring."
    )


if __name__ == "__main__":
    main()
