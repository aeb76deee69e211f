"""Throughput of the procedural rosette generator (``leafseg.synth.rosettes``), rosettes/s.

    python benchmarks/bench_synthetic.py                      # 40 rosettes, 500x500
    python benchmarks/bench_synthetic.py --count 200 --workers 1 2 4
    python benchmarks/bench_synthetic.py --style classic random   # both styles

Times ``generate_rosette`` alone on one core (OpenCV limited to one thread), then
``write_dataset`` (generation + PNG encoding + atomic writes) into a fresh temporary folder for
each ``--workers`` value, process-pool start-up included. Both wall-clock and CPU rates are
printed with the load average: on a shared machine the wall-clock rate understates a free core.
Targets at 500x500: at least 20 rosettes/s generation on one core (classic), and at least 20
rosettes/s for ``write_dataset`` on 2 workers (either style).
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from leafseg.synth.rosettes import generate_rosette, rosette_rng, write_dataset  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="rosettes per measurement (default 40)")
    parser.add_argument("--size", type=int, default=500, help="image side in pixels (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="write_dataset workers to time")
    parser.add_argument("--style", nargs="+", choices=["classic", "random"], default=["classic"],
                        help="generator styles to time (default classic)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"{args.count} rosettes of {args.size}x{args.size}")
    for style in args.style:
        bench_style(args, style)


def bench_style(args, style):
    print(f"style {style}:")

    generate_rosette(rosette_rng(args.seed, 0), args.size, style=style)  # warm-up: imports, caches
    wall, cpu = time.perf_counter(), time.process_time()
    leaves = 0
    for i in range(args.count):
        leaves += generate_rosette(rosette_rng(args.seed, i), args.size, style=style).num_leaves
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"generate_rosette, 1 core:      {args.count / wall:6.1f} rosettes/s wall, "
          f"{args.count / cpu:6.1f} /s per CPU-second ({leaves / args.count:.1f} leaves a plant)")

    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="bench_synthetic_") as out:
            wall, cpu = time.perf_counter(), time.process_time()
            write_dataset(out, args.count, seed=args.seed, size=args.size, workers=workers, progress=False,
                          style=style)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            megabytes = sum(p.stat().st_size for p in Path(out).iterdir()) / 1e6
        # With workers > 1 the work runs in child processes: this process's CPU time means nothing.
        per_cpu = f"{args.count / cpu:6.1f} /s per CPU-second" if workers == 1 else "pool start-up included"
        print(f"write_dataset, workers={workers}:    {args.count / wall:6.1f} rosettes/s wall, {per_cpu} "
              f"(generation + PNG; {megabytes / args.count:.2f} MB a pair)")


if __name__ == "__main__":
    main()
