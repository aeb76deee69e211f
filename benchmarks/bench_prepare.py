"""Throughput of the preparation step (``leafseg.data.prepare``) on synthetic-format pairs.

    python benchmarks/bench_prepare.py --count 300 --workers 2
    python benchmarks/bench_prepare.py --input data/synthetic --workers 4

Without ``--input`` it writes ``--count`` pairs of ``--size`` px images into a temporary folder
(``leafseg.synth.rosettes.write_dataset``: 4..22 leaves a plant; or, if that module cannot be
imported, random ellipses with 15 distinct colours), then times ``prepare_dataset`` into a fresh
output folder (``--output-parent /dev/shm`` keeps the disk out of it), process-pool
start-up included. Target: 100 images/s on 2 cores (10,000
images in under 2 minutes). The load average is printed because shared machines skew timings,
and so is the kernel time of the file system: a sample is 3 new directories and about 15 new
files, and on some virtual disks that costs more than decoding and encoding (the probe line says
what this disk costs now; ``--output-parent /dev/shm`` measures the program without it).
"""
import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from leafseg.data.prepare import prepare_dataset


def _ellipse_pairs(out_dir: Path, count: int, size: int, leaves: int = 15) -> None:
    """Fallback data: ``leaves`` filled ellipses per image, one hue-wheel colour each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hues = (np.arange(leaves) * 180 // leaves).astype(np.uint8)
    colours = cv2.cvtColor(np.stack([hues, np.full(leaves, 255, np.uint8), np.full(leaves, 255, np.uint8)], -1)[None],
                           cv2.COLOR_HSV2BGR)[0]
    for i in range(count):
        rng = np.random.default_rng([0, i])
        image = rng.integers(40, 90, (size, size, 3), np.uint8)
        label = np.zeros((size, size, 3), np.uint8)
        for colour in colours:
            centre = tuple(int(v) for v in rng.integers(size // 5, 4 * size // 5, 2))
            axes = tuple(int(v) for v in rng.integers(size // 25, size // 8, 2))
            angle = int(rng.integers(0, 180))
            cv2.ellipse(label, centre, axes, angle, 0, 360, tuple(int(c) for c in colour), -1)
            cv2.ellipse(image, centre, axes, angle, 0, 360, (40, int(rng.integers(120, 200)), 60), -1)
        cv2.imwrite(str(out_dir / f"plant{i:05d}_rgb.png"), image)
        cv2.imwrite(str(out_dir / f"plant{i:05d}_label.png"), label)


def _cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process and its finished children."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime for u in usage), sum(u.ru_stime for u in usage)


def _filesystem_probe(parent: Path, count: int = 300) -> float:
    """Kernel CPU ms to create one directory with one small file in it, under ``parent``.

    Preparing a sample creates 3 directories and about 15 files; on some virtual disks each
    costs a millisecond of kernel time (tmpfs: microseconds), enough to dominate the run.
    """
    with tempfile.TemporaryDirectory(prefix="bench_fs_", dir=parent) as tmp:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        for i in range(count):
            os.mkdir(f"{tmp}/{i}")
            with open(f"{tmp}/{i}/f", "wb") as f:
                f.write(b"x" * 600)
        return 1000 * (resource.getrusage(resource.RUSAGE_SELF).ru_stime - before) / count


def _make_pairs(out_dir: Path, count: int, size: int, workers: int) -> str:
    try:
        from leafseg.synth.rosettes import write_dataset
    except ImportError as err:
        print(f"leafseg.synth.rosettes not importable ({err}); drawing ellipses", file=sys.stderr)
        _ellipse_pairs(out_dir, count, size)
        return "random ellipses, 15 leaves"
    write_dataset(out_dir, count, seed=0, size=size, workers=workers, progress=False)
    return "leafseg.synth.rosettes rosettes"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="existing folder of image/label pairs (default: generate them)")
    parser.add_argument("--count", type=int, default=300, help="pairs to generate (default 300)")
    parser.add_argument("--size", type=int, default=500, help="side of generated images (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="prepare worker processes (default 2)")
    parser.add_argument("--output-parent", help="make the output folder here, e.g. /dev/shm to leave the disk out "
                                                "(default: the temporary folder)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        if args.input:
            source, kind = Path(args.input), "given"
        else:
            source = Path(tmp) / "in"
            start = time.perf_counter()
            kind = _make_pairs(source, args.count, args.size, args.workers)
            print(f"generated {args.count} pairs ({kind}) in {time.perf_counter() - start:.1f} s")
        with tempfile.TemporaryDirectory(prefix="bench_prepare_out_", dir=args.output_parent or tmp) as out:
            out = Path(out)
            os.sync()  # flush the generated pairs first: their writeback is not preparation's cost
            probe_ms = _filesystem_probe(out.parent)
            load_before = os.getloadavg()
            cpu_before = _cpu_seconds()
            start = time.perf_counter()
            result = prepare_dataset(source, out, workers=args.workers, progress=False)
            seconds = time.perf_counter() - start
            user, system = (after - before for after, before in zip(_cpu_seconds(), cpu_before))
            cpu = user + system
            load_after = os.getloadavg()
            leaves = [len(os.listdir(out / subset / i / "masks")) for subset in ("train", "val")
                      for i in os.listdir(out / subset)]

    n = len(result.prepared)
    print(f"prepared {n} images ({np.mean(leaves):.1f} leaves per image, {sum(leaves)} mask PNGs), "
          f"bad {len(result.problems)}, workers {args.workers}, cpus {os.cpu_count()}")
    print(f"{seconds:.2f} s -> {n / seconds:.1f} images/s ({sum(leaves) / seconds:.0f} masks/s); "
          f"load average 1 min {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    # CPU time of this process and its (finished) workers: what the run would take with the
    # cores to itself, a figure less sensitive to other jobs on a shared machine.
    print(f"CPU {cpu:.2f} s = {1000 * cpu / n:.1f} ms per image -> {n * args.workers / cpu:.1f} images/s "
          f"on {args.workers} otherwise idle cores")
    print(f"  of which user {1000 * user / n:.1f} ms (decoding, splitting, PNG encoding) and kernel "
          f"{1000 * system / n:.1f} ms (file system); this file system: {probe_ms:.2f} kernel ms "
          "per new directory + file (tmpfs: ~0.02)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
