#!/usr/bin/env python
"""Inference time and accuracy of a model in float32 and in bfloat16 (or float16), on this machine.

    python benchmarks/bench_precision.py                          # leaf-small, 20 classic rosettes
    python benchmarks/bench_precision.py --images 10 --train-steps 0
    python benchmarks/bench_precision.py --precisions float32,bfloat16,float16 --train-config leaf_r101
    python benchmarks/bench_precision.py --runtime openvino --train-steps 0   # OpenVINO's float32 and bfloat16

Inference: for each precision the model is built under that precision's Keras policy
(``leafseg.models.loading.load_inference_model(precision=...)``, the weights stay float32), detects once
untimed (the graph is traced), then ``MaskRCNN.detect`` runs on each of ``--images`` held-out
rosettes of 500 px (``leafseg.synth.rosettes.write_dataset``, style ``--style``, seed ``--seed``:
by default the classic held-out set of leaf-small's card), timed image by image. The same
detections are scored as ``leafseg evaluate`` scores them (``leafseg.measure.evaluate.evaluate_model``):
SBD, |DiC|, mask AP50. Issue 16's criterion: SBD moves by less than 0.005 (half a point) from
float32 to bfloat16; the table says whether it does. ``--runtime openvino``: OpenVINO runs the
network instead (``predict --runtime openvino --precision ...``), its precision hint set as asked.

Training: the training step of ``--train-config`` in each precision, as ``benchmarks/bench_model.py``
times it (``leafseg.benchmark.benchmark_training``: the trainer's train_function on one fixed batch
of the peer's input, after ``--train-warmup`` untimed steps).

16 bits pay where the hardware computes in them: GPUs (bfloat16 from Ampere on), and CPUs with
bfloat16 units (avx512_bf16, amx_bf16), where TensorFlow's oneDNN kernels use them. The output
says which this CPU is. Prints a table, then one JSON line (prefix ``json:``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from leafseg.cli.options import parse_overrides, quiet_tensorflow

from leafseg.precision import PRECISIONS, cpu_has_bfloat16, precision_policy

# leaf-small's classic held-out rosettes: leafseg.training.recipe's HELD_OUT ("classic", seed offset 2)
# from the recipe's seed 2026.
HELD_OUT_SEED = 2028
SIZE = 500
SBD_TOLERANCE = 0.005


class TimedDetect:
    """A model whose ``detect`` is timed call by call (what evaluate_model calls, and only that)."""

    def __init__(self, model):
        self.model = model
        self.seconds = []

    def detect(self, images):
        start = time.perf_counter()
        results = self.model.detect(images)
        self.seconds.append(time.perf_counter() - start)
        return results


def rosettes(folder, count, seed, style):
    """The held-out rosettes as an evaluation dataset (written to ``folder`` unless there)."""
    from leafseg.measure.evaluate import load_eval_dataset
    from leafseg.synth.rosettes import write_dataset

    write_dataset(folder, count, seed=seed, size=SIZE, style=style, progress=False)
    return load_eval_dataset(folder, "all")


def bench_inference(weights, config, precision, dataset, image_ids, runtime="tensorflow"):
    """Seconds per image and the evaluation summary of ``weights`` computing in ``precision`` in ``runtime``."""
    from leafseg.measure.evaluate import evaluate_model
    from leafseg.models.loading import load_inference_model

    model, _, _ = load_inference_model(weights, config, model_dir=tempfile.gettempdir(), precision=precision,
                                       runtime=runtime)
    start = time.perf_counter()
    model.detect([dataset.load_image(image_ids[0])])  # traces the graph
    first = time.perf_counter() - start
    timed = TimedDetect(model)
    per_image, summary = evaluate_model(timed, dataset, image_ids, progress=False)
    return {"s_per_image": float(np.mean(timed.seconds)), "min_s": float(np.min(timed.seconds)),
            "max_s": float(np.max(timed.seconds)), "first_s": first,
            "sbd": summary["sbd_mean"], "abs_dic": summary["abs_dic_mean"], "ap50": summary["ap50_mean"],
            "sbd_per_image": [round(row["sbd"], 4) for row in per_image],
            "count_per_image": [row["pred_count"] for row in per_image]}


def bench_training(spec, overrides, precision, warmup, steps):
    """The mean training-step time of config ``spec`` computing in ``precision``."""
    from leafseg.benchmark import benchmark_training, measured_config, peer_input

    config = measured_config(spec, overrides, batch=1)
    batch, _ = peer_input(config)
    with precision_policy(precision):
        result = benchmark_training(config, batch, warmup=warmup, steps=steps)
    return {"step_s": result["mean_s"], "min_s": result["min_s"], "max_s": result["max_s"],
            "first_s": result["warmup_s"], "loss": result["losses"].get("loss")}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    parser.add_argument("--weights", default="leaf-small",
                        help="the weights to evaluate (a zoo name, file or run folder; default leaf-small)")
    parser.add_argument("--config", help="its config: preset, YAML file or run folder (default: the config "
                                         "stored in the weights)")
    parser.add_argument("--images", type=int, default=20, help="held-out rosettes to detect on (default 20)")
    parser.add_argument("--style", choices=("classic", "random"), default="classic",
                        help="rosette style (default classic)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED,
                        help=f"seed of the rosettes (default {HELD_OUT_SEED}: leaf-small's classic held-out set)")
    parser.add_argument("--data", metavar="DIR", help="keep the rosettes in DIR (default: a temporary folder)")
    parser.add_argument("--precisions", default="float32,bfloat16",
                        help=f"comma-separated, the first the reference (of {', '.join(PRECISIONS)}; "
                             "default float32,bfloat16)")
    parser.add_argument("--train-config", default="leaf_small",
                        help="preset or YAML file whose training step is timed (default leaf_small)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of --train-config (YAML value); repeatable")
    parser.add_argument("--train-steps", type=int, default=5, help="timed training steps (default 5; 0: none)")
    parser.add_argument("--train-warmup", type=int, default=2, help="untimed training steps first (default 2)")
    parser.add_argument("--runtime", choices=("tensorflow", "openvino"), default="tensorflow",
                        help="what runs the network for detection (default tensorflow; openvino: float32 and "
                             "bfloat16 only); training steps always run in TensorFlow")
    parser.add_argument("--verbose", action="store_true", help="keep TensorFlow's log lines")
    return parser


def run(args):
    import keras
    import tensorflow as tf

    from mrcnn.conv import onednn_enabled

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise SystemExit(f"--precisions {args.precisions!r}: each must be one of {', '.join(PRECISIONS)}")
    overrides = parse_overrides(args.overrides)
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    result = {"weights": args.weights, "config": args.config, "runtime": args.runtime, "images": args.images,
              "style": args.style,
              "seed": args.seed, "size": SIZE, "precisions": precisions, "tensorflow": tf.__version__,
              "keras": keras.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
              "cpu_bfloat16": cpu_has_bfloat16(), "onednn": onednn_enabled(), "gpus": gpus,
              "load_avg_start": os.getloadavg()[0], "inference": {}, "training": {}}
    print(f"{os.cpu_count()} CPUs, bfloat16 units: {'yes' if result['cpu_bfloat16'] else 'no'}, "
          f"oneDNN kernels: {'on' if result['onednn'] else 'off'}, GPUs: {', '.join(gpus) or 'none'}", flush=True)

    if args.images > 0:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(args.data) if args.data else Path(scratch) / "rosettes"
            dataset = rosettes(folder, args.images, args.seed, args.style)
            image_ids = list(dataset.image_ids)[:args.images]
            for precision in precisions:
                figures = bench_inference(args.weights, args.config, precision, dataset, image_ids, args.runtime)
                result["inference"][precision] = figures
                print(f"detect {precision}: {figures['s_per_image']:.3f} s/image (min {figures['min_s']:.3f}, "
                      f"max {figures['max_s']:.3f}; first call {figures['first_s']:.1f} s), SBD {figures['sbd']:.4f}, "
                      f"|DiC| {figures['abs_dic']:.2f}, AP50 {figures['ap50']:.3f}", flush=True)
    if args.train_steps > 0:
        for precision in precisions:
            figures = bench_training(args.train_config, overrides, precision, args.train_warmup, args.train_steps)
            result["training"][precision] = figures
            print(f"training step {args.train_config} {precision}: {figures['step_s']:.3f} s "
                  f"(min {figures['min_s']:.3f}, max {figures['max_s']:.3f}; first {args.train_warmup} took "
                  f"{figures['first_s']:.1f} s), loss {figures['loss']:.3f}", flush=True)
    result["load_avg_end"] = os.getloadavg()[0]
    print(table(result, precisions[0]))
    print("json: " + json.dumps(result))
    return result


def table(result, reference):
    """The figures as a Markdown table, each precision against ``reference``."""
    inference, training = result["inference"], result["training"]
    lines = ["| precision | detect s/image | speed-up | SBD | SBD change | abs DiC | AP50 | training step s "
             "| speed-up |", "|---|---|---|---|---|---|---|---|---|"]
    for precision in result["precisions"]:
        cells = [precision]
        if precision in inference:
            mine, base = inference[precision], inference[reference]
            change = mine["sbd"] - base["sbd"]
            met = abs(change) < SBD_TOLERANCE
            verdict = "" if precision == reference else \
                f" ({'<' if met else '>='} {SBD_TOLERANCE}: {'met' if met else 'NOT met'})"
            cells += [f"{mine['s_per_image']:.3f}", f"{base['s_per_image'] / mine['s_per_image']:.2f}x",
                      f"{mine['sbd']:.4f}", f"{change:+.4f}{verdict}", f"{mine['abs_dic']:.2f}", f"{mine['ap50']:.3f}"]
        else:
            cells += [""] * 6
        if precision in training:
            mine, base = training[precision], training[reference]
            cells += [f"{mine['step_s']:.3f}", f"{base['step_s'] / mine['step_s']:.2f}x"]
        else:
            cells += ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"(load average {result['load_avg_start']:.2f} at the start, {result['load_avg_end']:.2f} at the end)")
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    quiet_tensorflow(args.verbose)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
