"""Puzzles per second of the dataset builder, per task, at 1 and 2 workers (not a test: it prints numbers).

    python scripts/bench_build.py [--images 80] [--repeats 3] [--tasks rotation,jigsaw,position,contrastive]

The input is an MMBench-style parquet (base64 JPEG in an ``image`` column, so decoding is part of the work) of
real photographs: crops and resizes of the bundled demo photos, between 180x256 and 1600x1200 pixels. The
baseline is plain decode + re-encode of the same images (base64 -> JPEG decode -> JPEG q95 encode) in one
process; "x decode+encode" is puzzles/s divided by that rate. Each figure is the best of ``--repeats`` full
builds (wall time of ``build()``, pool start-up included). Timings on a shared machine are noisy: the load
average is printed with the table.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from verl_ext.builder import BuildConfig, build
from verl_ext.sources.demo import DEMO_DIR, bundled_photos

# Sizes seen in MMBench-like benchmarks, from small thumbnails to camera photos.
SIZES = [(180, 256), (256, 256), (320, 240), (400, 300), (448, 448), (512, 384), (512, 512), (640, 480),
         (600, 800), (800, 600), (1024, 768), (1280, 720), (1280, 960), (1600, 1200)]  # fmt: skip
TARGETS = {"rotation": 100, "jigsaw": 110, "position": 300, "contrastive": 90}
SSL4RL = {"rotation": 9.7, "jigsaw": 11.3, "position": 66, "contrastive": 4.5}


def make_photos(n: int, seed: int = 0) -> list[bytes]:
    """``n`` distinct JPEGs (q90) cut from the real demo photographs at MMBench-like sizes."""
    rng = np.random.default_rng(seed)
    sources = [Image.open(DEMO_DIR / p["file"]).convert("RGB") for p in bundled_photos()]
    out = []
    for i in range(n):
        photo = sources[i % len(sources)]
        width, height = SIZES[int(rng.integers(len(SIZES)))]
        # A random crop with the target's aspect ratio, then resized to the target size.
        aspect = width / height
        crop_w = int(min(photo.width, photo.height * aspect) * rng.uniform(0.5, 1.0))
        crop_h = int(crop_w / aspect)
        left, top = int(rng.integers(0, photo.width - crop_w + 1)), int(rng.integers(0, photo.height - crop_h + 1))
        image = photo.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def write_parquet(folder: Path, jpegs: list[bytes]) -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    path = folder / "data" / "test-00000-of-00001.parquet"
    table = pa.table({"index": list(range(len(jpegs))), "question": ["q"] * len(jpegs),
                      "image": [base64.b64encode(j).decode() for j in jpegs]})  # fmt: skip
    pq.write_table(table, path)
    return folder


def baseline_rate(jpegs: list[bytes], repeats: int) -> float:
    """Images/s of base64 decode + JPEG decode + JPEG q95 encode, one process."""
    encoded = [base64.b64encode(j).decode() for j in jpegs]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for text in encoded:
            image = Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB")
            image.save(io.BytesIO(), "JPEG", quality=95, subsampling=0)
        best = min(best, time.perf_counter() - start)
    return len(encoded) / best


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def parallel_headroom(workers: int, n: int = 4_000_000) -> float:
    """Speed-up of ``workers`` processes over one on pure-Python busy work: how many free cores there are now.

    On a shared machine this is the ceiling for any worker-count comparison taken at the same time.
    """
    import multiprocessing

    start = time.perf_counter()
    for _ in range(workers):
        _burn(n)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_burn, [1000] * workers)
        start = time.perf_counter()
        pool.map(_burn, [n] * workers)
        parallel = time.perf_counter() - start
    return serial / parallel


def build_rate(task: str, data: Path, out: Path, workers: int, repeats: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        manifest = build(
            BuildConfig(task=task, source="mmbench", input=data, output=out, workers=workers, progress=False)
        )
        best = min(best, time.perf_counter() - start)
        rows = sum(manifest["splits"].values())
    return rows / best, rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=80)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tasks", default=",".join(TARGETS))
    p.add_argument("--workers", default="1,2", help="worker counts to compare")
    args = p.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]

    jpegs = make_photos(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_parquet(Path(tmp) / "MMBench", jpegs)
        base = baseline_rate(jpegs, args.repeats)
        headroom = parallel_headroom(max(worker_counts))
        # One throw-away build starts the worker server, which a real build pays once, not per task.
        build(BuildConfig(task="rotation", source="mmbench", input=data, output=Path(tmp) / "warm", limit=4,
                          workers=max(worker_counts), progress=False))  # fmt: skip
        results = {}
        for task in args.tasks.split(","):
            results[task] = [build_rate(task, data, Path(tmp) / f"out-{task}-{w}", w, args.repeats)
                             for w in worker_counts]  # fmt: skip

    load = os.getloadavg()
    print(f"\n{args.images} photographs, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"plain decode + encode baseline: {base:.0f} images/s (1 process)")
    print(f"free cores now: {max(worker_counts)} processes of pure-Python busy work ran {headroom:.2f}x as fast as 1\n")
    head = " | ".join(f"{w} worker{'s' * (w > 1)} p/s" for w in worker_counts)
    print(f"| task | rows | {head} | speed-up | x decode+encode (1 worker) | target 1 worker | SSL4RL |")
    print("|---" * (6 + len(worker_counts)) + "|")
    for task, runs in results.items():
        rates = [rate for rate, _ in runs]
        speedup = rates[-1] / rates[0] if len(rates) > 1 else 1.0
        cells = " | ".join(f"{r:.0f}" for r in rates)
        print(f"| {task} | {runs[0][1]} | {cells} | {speedup:.2f}x | {rates[0] / base:.2f} | "
              f">= {TARGETS.get(task, '-')} | {SSL4RL.get(task, '-')} |")  # fmt: skip


if __name__ == "__main__":
    main()
