#!/usr/bin/env python
"""NMS on the CPU: tf.image.combined_non_max_suppression against mrcnn.nms.batched_nms_gather.

    python benchmarks/bench_nms.py               # default sizes, 7 runs each
    python benchmarks/bench_nms.py --runs 15

The sizes are the model's: proposals (one class, every box a candidate) for 6000 -> 2000
(PRE_NMS_LIMIT, POST_NMS_ROIS_TRAINING), 6000 -> 1000 (inference) and 2000 -> 1000 / 300
(leaf-small), batches 1 and 2, at RPN_NMS_THRESHOLD 0.7; detections (per class) for 1000
ROIs -> 100 at 0.3 with 3 classes. The boxes are decoded from random anchors and deltas as
the proposal layer decodes them, so clusters of overlapping boxes are common, as in a model.
Each is timed under tf.function: the op, batched_nms in the TensorFlow graph, and
batched_nms under XLA (jit_compile=True). Prints median milliseconds (min in brackets) and
checks that the three keep the same rows.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from mrcnn.nms import batched_nms_gather


def proposal_like(rng, batch, num):
    """Sorted scores and clipped decoded boxes, like ProposalLayer's input to NMS."""
    centre = rng.uniform(0, 1, (batch, num, 2))
    size = rng.choice([0.03, 0.06, 0.12, 0.25, 0.5], (batch, num, 1)) * np.exp(rng.normal(0, 0.3, (batch, num, 2)))
    boxes = np.clip(np.concatenate([centre - size / 2, centre + size / 2], -1), 0, 1).astype(np.float32)
    # Distinct scores (neither implementation promises an order for ties).
    scores = -np.sort(-rng.permutation(batch * num).reshape(batch, num), axis=1) / (batch * num)
    scores = scores.astype(np.float32)
    return boxes, scores


def timed(fn, args, runs):
    out = fn(*args)  # trace / compile
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn(*args)
        _ = [np.asarray(t) for t in out]
        times.append(1000 * (time.perf_counter() - start))
    return np.median(times), min(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = [("proposals", b, n, m, 0.7, 1) for b in (1, 2) for n, m in ((6000, 2000), (6000, 1000), (2000, 1000), (2000, 300))]
    cases += [("detections", b, 1000, 100, 0.3, 3) for b in (1, 2)]
    print(f"{'case':34s} {'combined op':>16s} {'batched_nms':>16s} {'batched_nms XLA':>16s}  same")
    for kind, batch, num, m, thr, num_classes in cases:
        boxes, scores = proposal_like(rng, batch, num)
        if num_classes == 1:
            op = tf.function(lambda b, s: tf.image.combined_non_max_suppression(
                b[:, :, None], s[:, :, None], m, m, thr, float("-inf"), clip_boxes=False))
            new = lambda b, s: batched_nms_gather(b, s, m, thr)
            inputs = (boxes, scores)
        else:
            classes = rng.integers(0, num_classes, (batch, num)).astype(np.int32)
            scores = rng.permutation(scores.size).reshape(scores.shape).astype(np.float32) / scores.size
            table = (np.eye(num_classes, dtype=np.float32)[classes] * scores[..., None])
            op = tf.function(lambda b, t, s, c: tf.image.combined_non_max_suppression(
                b[:, :, None], t, m, m, thr, 0.0, clip_boxes=False))
            new = lambda b, t, s, c: batched_nms_gather(b, s, m, thr, classes=c)
            inputs = (boxes, table, scores, classes)
        results = [timed(op, inputs, args.runs), timed(tf.function(new), inputs, args.runs),
                   timed(tf.function(new, jit_compile=True), inputs, args.runs)]
        same = all(np.allclose(np.asarray(a), np.asarray(b)) for r in results[1:]
                   for a, b in zip(results[0][2], r[2]))
        cells = " ".join(f"{med:8.1f} ({low:5.1f})" for med, low, _ in results)
        print(f"{kind} batch {batch} {num:5d} -> {m:5d} at {thr}".ljust(34), cells, " ", same)


if __name__ == "__main__":
    main()
