#!/usr/bin/env python
"""Pyramid ROIAlign on the CPU: per-level tf.image.crop_and_resize against mrcnn.crop's gather path.

    python benchmarks/bench_roi_align.py               # default sizes, 7 runs each
    python benchmarks/bench_roi_align.py --runs 15 --side 1024

The sizes are the leaf ResNet101 config's at 512 px (P2 128 x 128 .. P5 16 x 16, 256
channels, batch 1): the inference classifier head (1000 proposals, 7 x 7), the training
classifier head (200 ROIs, 7 x 7) and mask head (66 ROIs, 14 x 14), the training ones forward
and backward (the gradient into the maps). The boxes are random, of the sizes proposals have,
so that every level gets some, kept off the image's edges (see random_boxes). Each is timed under tf.function: mrcnn.crop.pyramid_crop_and_resize
with implementation="op" (one crop_and_resize per level after a tf.where, then an inverse
permutation: what PyramidROIAlign runs in TensorFlow's graph), with "gather" (one gather for
all levels) and "gather" under XLA (jit_compile=True: what PyramidROIAlign runs there). Prints
median milliseconds (min in brackets) and the largest difference from the op's results.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from mrcnn.crop import pyramid_crop_and_resize
from mrcnn.roi_align import roi_pyramid_levels


def random_boxes(rng, batch, count):
    centre = rng.uniform(0.1, 0.9, (batch, count, 2))
    size = rng.choice([0.03, 0.06, 0.12, 0.25, 0.5], (batch, count, 1)) * np.exp(rng.normal(0, 0.3, (batch, count, 2)))
    # Kept off the image's edges, where the gather path reads the edge pixel and the op, for
    # some boxes, the extrapolation value (mrcnn.crop's module doc).
    return np.clip(np.concatenate([centre - size / 2, centre + size / 2], -1), 0.001, 0.999).astype(np.float32)


def timed(fn, args, runs):
    out = fn(*args)  # trace / compile
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = [np.asarray(t) for t in fn(*args)]
        times.append(1000 * (time.perf_counter() - start))
    return np.median(times), min(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--side", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--channels", type=int, default=256)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    side = args.side
    maps = [tf.constant(rng.normal(size=(1, side // s, side // s, args.channels)).astype(np.float32))
            for s in (4, 8, 16, 32)]
    meta = np.zeros((1, 14), np.float32)
    meta[0, 4:7] = side, side, 3
    meta = tf.constant(meta)
    print(f"{'case':40s} {'crop_and_resize':>16s} {'mrcnn.crop':>16s} {'mrcnn.crop XLA':>16s}  max diff")
    for name, count, pool, backward in (("inference classifier 1000 x 7x7", 1000, 7, False),
                                        ("training classifier 200 x 7x7 fwd+bwd", 200, 7, True),
                                        ("training mask 66 x 14x14 fwd+bwd", 66, 14, True)):
        boxes = tf.constant(random_boxes(rng, 1, count))
        weights = tf.constant(rng.normal(size=(count, pool, pool, args.channels)).astype(np.float32))
        levels = tf.reshape(roi_pyramid_levels(boxes, meta), [-1]) - 2
        indices = tf.zeros([count], tf.int32)

        def run(implementation):
            def fn(b, *m):
                with tf.GradientTape() as tape:
                    tape.watch(m)
                    out = pyramid_crop_and_resize(list(m), b[0], indices, levels, (pool, pool), implementation)
                    loss = tf.reduce_sum(out * weights)
                return [out] + (list(tape.gradient(loss, m)) if backward else [])
            return fn

        old, new = run("op"), run("gather")
        inputs = (boxes, *maps)
        results = [timed(tf.function(old), inputs, args.runs), timed(tf.function(new), inputs, args.runs),
                   timed(tf.function(new, jit_compile=True), inputs, args.runs)]
        diff = max(float(np.abs(a - b).max()) for r in results[1:] for a, b in zip(results[0][2], r[2]))
        cells = " ".join(f"{med:8.1f} ({low:5.1f})" for med, low, _ in results)
        print(name.ljust(40), cells, f"  {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
