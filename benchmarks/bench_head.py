"""The talking head on a real clip: quality against the no-audio baseline, speed, memory, the paper's ablations.

Sections (``--only`` picks some; each prints a markdown table and appends its rows to
``benchmarks/out/head/results.json``):

``quality``
    preprocesses the clip (default ``../shared/data/clips/hdtf_katiehill_8s.mp4``) with the
    preset, trains the head with the preset's settings, with ``model.audio=false`` (the
    baseline), and 4x longer (converged, not lucky); reports val PSNR on the full frame,
    the face and the lip rectangles, and the mouth landmark distance (LMD, points 48-67,
    each set mean-centred, pixels) of the offline landmark backend (dlib) between the
    rendered and the real val frames.
``speed``
    steps/s, rays/s and samples per ray of the full model (bfloat16 MLPs where the CPU has the units, and float32), and the baseline at the preset's
    rays per step, after a warm-up, on the trained heads' state; peak memory of the process.
``memory``
    a synthetic 5-minute clip at 512 px (7,500 frames, uint8 images on disk) trained for a few
    steps in a fresh process: its peak resident memory against the 12 GiB budget.
``ablations``
    each variant of the paper's ablation trains ``--ablation-steps`` steps: val PSNR, the
    time a step takes, and the time to render one val frame.

Usage::

    python benchmarks/bench_head.py                         # everything (hours on 2 cores)
    python benchmarks/bench_head.py --only speed            # a minute once quality has trained
    python benchmarks/bench_head.py --only ablations --ablation-steps 1000
    python benchmarks/bench_head.py --only ablations --ablation-steps 50 --variants implicit
    python benchmarks/bench_head.py --device cuda --preset paper   # on a GPU (not measured here yet)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "head"
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "clips" / "hdtf_katiehill_8s.mp4"

ABLATIONS = {
    "decomposed (paper)": [],
    "implicit": ["model.backbone=implicit"],
    "composed": ["model.backbone=composed"],
    "deform": ["model.backbone=deform"],
    "ambient_dim=1": ["model.ambient_dim=1"],
    "ambient_dim=3": ["model.ambient_dim=3"],
    "max_steps=8": ["render.max_steps=8"],
    "max_steps=32": ["render.max_steps=32"],
    "no eye feature": ["model.eye_feature=false"],
    "no audio": ["model.audio=false"],
}


def config(args, artifacts: Path, *overrides: str):
    from radnerf.config import load_config

    return load_config([f"preset={args.preset}", f"person={args.person}", f"paths.artifacts={artifacts}",
                        f"train.device={args.device}", "mlflow.enabled=false", *args.set, *overrides])


def prepared(args) -> Path:
    """The clip preprocessed once under ``OUT/data``; returns that artifacts root."""
    from radnerf.pipeline import preprocess

    root = OUT / "data"
    cfg = config(args, root, f"video={args.clip}")
    started = time.perf_counter()
    preprocess(cfg)
    print(f"preprocessed {args.clip.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return root


def variant_root(args, name: str) -> Path:
    """A copy of the preprocessed person for one variant (hard links: no data is duplicated)."""
    src = OUT / "data" / args.person
    root = OUT / "runs" / re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    dst = root / args.person
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
        shutil.rmtree(dst / "head", ignore_errors=True)
    return root


def train(args, name: str, *overrides: str) -> dict:
    from radnerf.train.head import train_head

    root = variant_root(args, name)
    cfg = config(args, root, *overrides)
    started = time.perf_counter()
    result = train_head(cfg)
    metrics = dict(result.metrics)
    metrics["seconds"] = time.perf_counter() - started
    metrics["lmd_mouth_px"], metrics["lmd_frames"] = mouth_lmd(root / args.person / "head" / "val")
    return metrics


def mouth_lmd(val_dir: Path) -> tuple[float, float]:
    """Mean mouth landmark distance (points 48-67, each set mean-centred) between the real (left half)
    and rendered (right half) val frames, dlib's 68 points; frames where either has no face are skipped."""
    from radnerf.media.images import read_rgb
    from radnerf.preprocess.landmark_backends import make_backend

    backend = make_backend("dlib")
    distances = []
    for png in sorted(val_dir.glob("*.png")):
        pair = read_rgb(png)
        w = pair.shape[1] // 2
        faces = [backend.detect(np.ascontiguousarray(pair[:, k * w:(k + 1) * w])) for k in (0, 1)]
        if not faces[0] or not faces[1]:
            continue
        real, fake = (max(f, key=lambda x: x.width).points[48:68] for f in faces)
        real, fake = real - real.mean(0), fake - fake.mean(0)
        distances.append(float(np.linalg.norm(real - fake, axis=1).mean()))
    return (float(np.mean(distances)) if distances else float("nan")), float(len(distances))


def quality(args) -> list[dict]:
    prepared(args)
    iters = config(args, OUT / "data").train.head_iters
    runs = [(f"full model, seed {seed}", ["model.audio=true", f"seed={seed}"]) for seed in args.seeds]
    runs += [(f"no audio, seed {seed}", ["model.audio=false", f"seed={seed}"]) for seed in args.seeds]
    if not args.skip_long:
        runs.append((f"full model, 4x longer, seed {args.seeds[0]}",
                     [f"train.head_iters={4 * iters}", f"seed={args.seeds[0]}"]))
    rows = []
    for name, overrides in runs:
        m = train(args, name, *overrides)
        rows.append({"variant": name, "steps": int(m["steps"]), "train_min": round(m["seconds"] / 60, 1),
                     "val_psnr": round(m["val_psnr"], 2), "val_psnr_face": round(m["val_psnr_face"], 2),
                     "val_psnr_lips": round(m["val_psnr_lips"], 2), "lmd_mouth_px": round(m["lmd_mouth_px"], 2),
                     "steps_per_s": round(m["steps_per_second"], 2)})
        print(rows[-1], flush=True)
    for kind in ("full model", "no audio"):
        same = [r for r in rows if r["variant"].startswith(kind + ", seed")]
        if len(same) > 1:
            mean = {k: round(float(np.mean([r[k] for r in same])), 2) for k in
                    ("val_psnr", "val_psnr_face", "val_psnr_lips", "lmd_mouth_px", "steps_per_s")}
            spread = round(max(r["val_psnr_lips"] for r in same) - min(r["val_psnr_lips"] for r in same), 2)
            rows.append({"variant": f"{kind}, mean of {len(same)} seeds (lips spread {spread} dB)",
                         "steps": same[0]["steps"], "train_min": "", **mean})
    table("Quality on the val frames", rows)
    return rows


def speed(args) -> list[dict]:
    from radnerf.train.checkpoint import checkpoint_files, load_checkpoint
    from radnerf.train.head import HeadTrainer

    prepared(args)
    rows = []
    for name, kind, overrides in (("full model", "full model", ["model.audio=true"]),
                                  ("full model, float32 MLPs (train.amp=false)", "full model",
                                   ["model.audio=true", "train.amp=false"]),
                                  ("no audio (baseline)", "no audio", ["model.audio=false"])):
        # The state the quality run of the first seed ended in (its fog cleared, its occupancy grid
        # tight), read without resuming: nothing of that run is written. Without one, from scratch.
        root = variant_root(args, f"{kind}, seed {args.seeds[0]}")
        trainer = HeadTrainer(config(args, root, *overrides, f"seed={args.seeds[0]}"))
        files = checkpoint_files(trainer.checkpoint_dir)
        if files:
            trainer.load_state_dict(load_checkpoint(files[-1][1], kind="head-train"))
        for _ in range(args.warmup):
            trainer.train_step()
        samples, started = 0, time.perf_counter()
        for _ in range(args.steps):
            samples += trainer.train_step().samples
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        rows.append({"variant": name, "step": trainer.step, "rays_per_step": trainer.cfg.train.num_rays,
                     "steps_per_s": round(args.steps / seconds, 2),
                     "rays_per_s": round(args.steps * trainer.cfg.train.num_rays / seconds),
                     "samples_per_ray": round(samples / args.steps / trainer.cfg.train.num_rays, 2),
                     "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
        print(rows[-1], flush=True)
    table(f"Training speed ({args.device}, {torch.get_num_threads()} threads)", rows)
    return rows


def memory(args) -> list[dict]:
    """A 5-minute, 512 px synthetic person trained for a few steps in a fresh process."""
    root = OUT / "memory"
    person = root / "long"
    if not (person / "transforms_val.json").exists():
        write_long_person(person, frames=args.memory_frames, size=512)
    code = (
        "import resource, sys, torch; from radnerf.config import load_config; "
        "from radnerf.train.head import HeadTrainer; "
        f"cfg = load_config(['preset={args.preset}', 'person=long', 'paths.artifacts={root}', 'train.num_rays=4096']); "
        "t = HeadTrainer(cfg); [t.train_step() for _ in range(int(sys.argv[1]))]; "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, t.rays.cache.decoded)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(args.memory_steps)], capture_output=True, text=True,
                         check=True, cwd=REPO)
    peak, decoded = (float(v) for v in out.stdout.split()[-2:])
    rows = [{"frames": args.memory_frames, "size": 512, "steps": args.memory_steps, "images_decoded": int(decoded),
             "peak_rss_gib": round(peak / 1024, 2), "budget_gib": 12}]
    table("Memory of a 5-minute clip at 512 px", rows)
    return rows


def write_long_person(root: Path, frames: int, size: int) -> None:
    """A person folder of ``frames`` frames: real image files of the right size (noise JPEGs, one RGBA
    PNG per frame), transforms, regions and audio windows; what matters here is what is held in memory."""
    import json as _json

    from radnerf.formats.regions import COLUMNS, write_regions
    from radnerf.media.images import png_bytes, write_rgb

    rng = np.random.default_rng(0)
    (root / "gt_imgs").mkdir(parents=True, exist_ok=True)
    (root / "torso_imgs").mkdir(parents=True, exist_ok=True)
    write_rgb(root / "bc.jpg", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    # Smooth texture: small JPEGs on disk; decoded, every frame is the same 786 kB as a real one.
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = (127 + 100 * np.sin(np.stack([9 * xx, 7 * yy, 5 * (xx + yy)], -1) * np.pi)).astype(np.uint8)
    torso = np.zeros((size, size, 4), np.uint8)
    torso[size // 2:, :, 3] = 255
    torso_png = png_bytes(torso)
    for i in range(frames):
        write_rgb(root / "gt_imgs" / f"{i}.jpg", np.roll(base, i, axis=1))
        (root / "torso_imgs" / f"{i}.png").write_bytes(torso_png)
    write_regions(root / "regions.csv", [dict(zip(COLUMNS, (i, 0.3, 300, 450, 150, 360, 330, 420, 200, 300, 0)))
                                         for i in range(frames)])
    np.save(root / "aud_ph.npy", rng.standard_normal((frames, 16, 53)).astype(np.float32))
    pose = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.6], [0, 0, 0, 1]]
    split = int(frames * 10 / 11)
    for name, ids in (("train", range(split)), ("val", range(split, frames))):
        data = {"focal_len": 2.0 * size, "cx": size / 2, "cy": size / 2,
                "frames": [{"img_id": i, "aud_id": i, "transform_matrix": pose, "eye_ratio": 0.3} for i in ids]}
        (root / f"transforms_{name}.json").write_text(_json.dumps(data))


def ablations(args) -> list[dict]:
    from radnerf.train.head import HeadTrainer

    prepared(args)
    rows = []
    for name, overrides in ABLATIONS.items():
        if args.variants and name not in args.variants:
            continue
        trainer = HeadTrainer(config(args, variant_root(args, f"ablation {name}"), f"train.head_iters={args.ablation_steps}",
                                     *overrides))
        started = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - started
        metrics = trainer.validate()
        t0 = time.perf_counter()
        trainer.render(trainer.val_set, 0)
        render_s = time.perf_counter() - t0
        rows.append({"variant": name, "steps": trainer.step, "val_psnr": round(metrics["val_psnr"], 2),
                     "val_psnr_lips": round(metrics["val_psnr_lips"], 2),
                     "ms_per_step": round(1000 * seconds / args.ablation_steps, 1),
                     "render_s_per_frame": round(render_s, 2)})
        print(rows[-1], flush=True)
    table(f"Ablations ({args.ablation_steps} steps each)", rows)
    return rows


def table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    print(f"\n### {title}\n")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")
    print(flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="quality,speed,memory,ablations")
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    p.add_argument("--person", default="katie")
    p.add_argument("--preset", default="cpu_tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every run")
    p.add_argument("--skip-long", action="store_true", help="skip the 4x longer run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the full and no-audio runs")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--ablation-steps", type=int, default=1000)
    p.add_argument("--variants", nargs="+", default=[], metavar="NAME",
                   help="ablations to run (default all); the implicit MLP takes seconds a step on a CPU")
    p.add_argument("--memory-frames", type=int, default=7500)
    p.add_argument("--memory-steps", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not args.clip.exists() and set(args.only.split(",")) & {"quality", "speed", "ablations"}:
        sys.exit(f"{args.clip} not found: pass --clip PATH (any talking-head clip with speech)")
    print(f"# bench_head: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, preset {args.preset}, device {args.device}\n", flush=True)
    results = {}
    for section in args.only.split(","):
        results[section] = {"quality": quality, "speed": speed, "memory": memory, "ablations": ablations}[section](args)
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "results.json"
    previous = json.loads(log.read_text()) if log.exists() else []
    previous.append({"time": time.strftime("%Y-%m-%d %H:%M"), "args": {k: str(v) for k, v in vars(args).items()},
                     "results": results})
    log.write_text(json.dumps(previous, indent=1))


if __name__ == "__main__":
    main()
