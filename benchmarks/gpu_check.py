#!/usr/bin/env python
"""GPU check: mixed-precision training and detection speed of the leaf ResNet101 model, and its export.

    python benchmarks/gpu_check.py                          # float16, 512 px: a few minutes on an H100 / H200
    python benchmarks/gpu_check.py --precision bfloat16
    python benchmarks/gpu_check.py --smoke                  # a tiny model on 64 px: checks the script on a CPU

Everything is made in the process, nothing is downloaded: the ``leaf_r101`` preset at ``--size``
pixels with random weights (seed 0), the training batch of ``benchmarks/bench_model.py`` (a random
image with 12 rectangular leaves, ``leafseg.benchmark.peer_input``) and generated rosettes to
detect on (``leafseg.synth.rosettes.generate_rosette``).

1. Training: one model built under the ``--precision`` policy (float16 trains with loss scaling,
   bfloat16 without), every layer trainable, SGD; the trainer's train_function (what ``fit`` runs
   per batch) at each batch of ``--train-batches``: ``--warmup`` untimed steps (the first traces),
   then ``--steps`` timed ones. Images/s = batch / mean step time. Target on an H100-class GPU:
   60 images/s or more.
2. Detect: ``MaskRCNN.detect`` of ``--detect-batches`` rosettes at a time, in the same precision,
   images/s. Random weights score every box about 0.5, so DETECTION_MIN_CONFIDENCE is
   ``--min-score`` (0: every detection up to DETECTION_MAX_INSTANCES gets a mask, as a photo with
   many leaves would).
3. Export: the float32 inference model written as a SavedModel (``mrcnn.export``, what ``leafseg
   export`` writes), reloaded with TensorFlow alone, run on a rosette (on the GPU when there is
   one), timed, and compared with ``MaskRCNN.detect``. With random weights many scores tie, so a
   difference in which tied boxes survive is reported, not failed.

Prints one line per figure and a last line ``json: {...}`` with them all.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

from leafseg.benchmark import timed
from leafseg.cli.options import parse_overrides, quiet_tensorflow
from leafseg.precision import precision_policy, precision_warning

TARGET_TRAIN_IMAGES_PER_S = 60
# --smoke: the smallest model with every stage (the README tests' "small steps") on 64 px images.
SMOKE = dict(BACKBONE="resnet18", BACKBONE_WIDTH=0.25, TOP_DOWN_PYRAMID_SIZE=32, RPN_CONV_CHANNELS=32,
             FPN_CLASSIF_FC_LAYERS_SIZE=64, MASK_HEAD_CHANNELS=16, PRE_NMS_LIMIT=300, POST_NMS_ROIS_TRAINING=64,
             POST_NMS_ROIS_INFERENCE=32, RPN_TRAIN_ANCHORS_PER_IMAGE=32, TRAIN_ROIS_PER_IMAGE=16, MAX_GT_INSTANCES=20,
             DETECTION_MAX_INSTANCES=20, MINI_MASK_SHAPE=(28, 28))
SMOKE_ARGS = dict(size=64, train_batches="1,2", detect_batches="1,2", warmup=1, steps=1, leaves=2)


def check_training(config, precision, batches, warmup, steps, leaves, model_dir):
    """{batch: figures} of the training step at each batch size (one model, one trace per size)."""
    import tensorflow as tf

    from leafseg.benchmark import LEARNING_RATE, peer_input
    from mrcnn.model import MaskRCNN
    from mrcnn.trainable import LAYER_REGEX, set_trainable

    config = config.replace(IMAGES_PER_GPU=max(batches), GPU_COUNT=1)
    batch, _ = peer_input(config, leaves)
    with precision_policy(precision):
        model = MaskRCNN("training", config, model_dir)
        set_trainable(model.keras_model, LAYER_REGEX["all"], train_bn=config.TRAIN_BN)
        trainer = model.compile_trainer(learning_rate=LEARNING_RATE)
    trainer.make_train_function()
    results = {}
    for size in batches:
        inputs = {name: tf.constant(value[:size]) for name, value in batch.items()}
        losses = []

        def step():
            losses.append(float(trainer.train_function([inputs])["loss"]))  # waits for the step

        figures = timed(step, warmup, steps)
        figures.update(images_per_s=size / figures["mean_s"], loss=losses[-1], finite=bool(np.all(np.isfinite(losses))),
                       loss_scaling=type(trainer.optimizer).__name__ == "LossScaleOptimizer")
        results[size] = figures
        print(f"train {precision} batch {size}: {figures['images_per_s']:.1f} images/s ({figures['mean_s']:.3f} s a "
              f"step, min {figures['min_s']:.3f}; first {warmup} took {figures['warmup_s']:.1f} s), loss "
              f"{figures['loss']:.3f}{'' if figures['finite'] else ' NOT FINITE'}", flush=True)
    return results


def check_detect(config, precision, batches, warmup, steps, images, model_dir):
    """{batch: figures} of MaskRCNN.detect on that many images at a time."""
    from mrcnn.model import MaskRCNN

    with precision_policy(precision):
        model = MaskRCNN("inference", config.replace(IMAGES_PER_GPU=1, GPU_COUNT=1), model_dir)
    results = {}
    for size in batches:
        found = []

        def step():
            found[:] = model.detect(images[:size])

        figures = timed(step, warmup, steps)
        figures.update(images_per_s=size / figures["mean_s"],
                       detections=[int(len(result["scores"])) for result in found])
        results[size] = figures
        print(f"detect {precision} batch {size}: {figures['images_per_s']:.1f} images/s ({figures['mean_s']:.3f} s a "
              f"call; first {warmup} took {figures['warmup_s']:.1f} s), detections {figures['detections']}", flush=True)
    return results


def check_export(config, image, steps, folder):
    """Export the float32 inference model, reload it, time it on ``image``, compare with detect."""
    import tensorflow as tf

    from mrcnn.export import compare_detections, export_saved_model, load_saved_model
    from mrcnn.model import MaskRCNN

    model = MaskRCNN("inference", config.replace(IMAGES_PER_GPU=1, GPU_COUNT=1), folder)
    start = time.perf_counter()
    path = export_saved_model(model, os.path.join(folder, "exported"))
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    detect = load_saved_model(path)
    load_s = time.perf_counter() - start
    served = {}

    def step():
        served.update(detect(image))

    figures = timed(step, 1, steps)
    problems = compare_detections(model.detect([image])[0], served)
    figures.update(export_s=export_s, load_s=load_s, images_per_s=1 / figures["mean_s"],
                   detections=int(len(served["scores"])), differences=len(problems), first_difference=problems[:1],
                   devices=[d.name for d in tf.config.list_logical_devices("GPU")] or ["CPU"])
    print(f"export float32: written in {export_s:.1f} s, reloaded in {load_s:.1f} s, served on "
          f"{', '.join(figures['devices'])} at {figures['images_per_s']:.1f} images/s ({figures['detections']} "
          f"detections); against MaskRCNN.detect: "
          f"{'the same' if not problems else f'{len(problems)} differences, e.g. {problems[0]}'}", flush=True)
    return figures


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--precision", choices=("float16", "bfloat16", "float32"), default="float16",
                        help="what training and detect compute in (default float16; the export is float32)")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny model on 64 px, batches 1 and 2, one timed step: checks the script on a CPU")
    parser.add_argument("--config", default="leaf_r101", help="preset or YAML file (default leaf_r101)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (YAML value); repeatable")
    parser.add_argument("--size", type=int, default=512, help="square image side (default 512)")
    parser.add_argument("--train-batches", default="4,8", help="training batch sizes (default 4,8)")
    parser.add_argument("--detect-batches", default="1,8", help="images per detect call (default 1,8)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--steps", type=int, default=20, help="timed calls (default 20)")
    parser.add_argument("--leaves", type=int, default=12, help="leaves of the training image (default 12)")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="DETECTION_MIN_CONFIDENCE of detect and the export (default 0: every detection)")
    parser.add_argument("--skip", choices=("training", "detect", "export"), action="append", default=[],
                        help="leave out a part; repeatable")
    parser.add_argument("--verbose", action="store_true", help="keep TensorFlow's log lines")
    return parser


def batches(text, option):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise SystemExit(f"{option} {text!r}: expected comma-separated batch sizes, e.g. 4,8")
    return values


def run(args):
    import keras
    import tensorflow as tf

    from leafseg.config import load_config
    from leafseg.synth.rosettes import generate_rosette

    if args.smoke:
        for key, value in SMOKE_ARGS.items():
            setattr(args, key, value)
    overrides = {**(SMOKE if args.smoke else {}), **parse_overrides(args.overrides),
                 "IMAGE_MIN_DIM": args.size, "IMAGE_MAX_DIM": args.size, "DETECTION_MIN_CONFIDENCE": args.min_score}
    config = load_config(args.config, **overrides)
    train_batches = batches(args.train_batches, "--train-batches")
    detect_batches = batches(args.detect_batches, "--detect-batches")
    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    warning = precision_warning(args.precision)
    print(f"{', '.join(names) or 'no GPU: ' + str(os.cpu_count()) + ' CPUs'}; TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}; {config.BACKBONE} {args.size} px, {args.precision}"
          f"{' (' + warning + ')' if warning else ''}", flush=True)
    summary = {"precision": args.precision, "smoke": args.smoke, "config": args.config,
               "backbone": str(config.BACKBONE),
               "size": args.size, "devices": names or ["CPU"], "tensorflow": tf.__version__,
               "python": platform.python_version(), "target_train_images_per_s": TARGET_TRAIN_IMAGES_PER_S}
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        if "training" not in args.skip:
            summary["train"] = check_training(config, args.precision, train_batches, args.warmup, args.steps,
                                              args.leaves, folder)
            best = max(figures["images_per_s"] for figures in summary["train"].values())
            summary["train_images_per_s"] = {str(b): round(f["images_per_s"], 2) for b, f in summary["train"].items()}
            # The target is for the real model on a GPU; a smoke run or a CPU gets no verdict.
            summary["meets_target"] = best >= TARGET_TRAIN_IMAGES_PER_S if gpus and not args.smoke else None
            verdict = {True: "met", False: "NOT met", None: "no verdict here"}[summary["meets_target"]]
            print(f"training: {best:.1f} images/s at best; target {TARGET_TRAIN_IMAGES_PER_S} on an H100-class GPU: "
                  f"{verdict}", flush=True)
        images = [generate_rosette(seed, args.size).image for seed in range(max(detect_batches))]
        if "detect" not in args.skip:
            summary["detect"] = check_detect(config, args.precision, detect_batches, args.warmup, args.steps, images,
                                             folder)
            summary["detect_images_per_s"] = {str(b): round(f["images_per_s"], 2) for b, f in summary["detect"].items()}
        if "export" not in args.skip:
            summary["export"] = check_export(config, images[0], max(2, min(args.steps, 10)), folder)
    finite = all(f["finite"] for f in summary.get("train", {}).values())
    summary["ok"] = finite
    print("json: " + json.dumps(summary, default=str))
    return summary


def main(argv=None):
    args = build_parser().parse_args(argv)
    quiet_tensorflow(args.verbose)
    summary = run(args)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
