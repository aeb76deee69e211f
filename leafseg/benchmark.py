"""Model speed: mean training-step time, inference time and peak memory of a configuration.

    python benchmarks/bench_model.py                         # leaf ResNet101, 512x512, batch 1
    python benchmarks/bench_model.py --config configs/leaf_r101.yaml --set BACKBONE=resnet50
    python benchmarks/bench_model.py --peer-json peer.txt    # + ratios to torchvision's figures

The input is the one of ``benchmarks/peer_torchvision.py`` (torchvision's Mask R-CNN of the
same sizes, run in its own virtual environment), so the two figures compare: a random image
and ``--leaves`` rectangles of 40 x 60 pixels (width x height) at x = 40 + 30 i,
y = 60 + 25 i, every layer trainable, SGD with learning rate 0.001 and momentum 0.9.

* Training step: the function ``fit`` calls per batch (Keras' ``train_function``, a
  ``tf.function`` of ``MaskRCNNTrainer.train_step``: forward pass, the five losses, L2
  decay, gradients, clipping, the SGD update) on one fixed batch. The input pipeline is left
  out, as the peer leaves out its data loading: the batch is built once by
  :func:`mrcnn.pipeline.build_sample` (the RPN targets and mini masks of the real pipeline) and
  held as tensors.
* Inference: :meth:`MaskRCNN.detect` on one original image, so molding, the model and
  unmolding the masks to full size are all in, as the peer's ``m([img])`` includes its
  transform and post-processing.
* Peak memory: the process's resident set size high-water mark (``ru_maxrss``) after each
  phase. Training runs first, so the inference figure is a maximum over both.

Figures are means over ``--steps`` calls after ``--warmup`` calls (the first traces the graph).
Output: one line per figure, then one JSON line (prefix ``json:``) with everything.

Reading the ratio: both models start from random weights, and the work of their second stage
depends on what those weights propose. Both add the ground-truth boxes to the proposals (the
leaf configs set ADD_GT_AS_PROPOSALS) and train the mask head on the positive ROIs only, so
both do that work for about the 12 leaves. At inference the peer finds no detection and runs
no mask head; leafseg runs it on every detection it finds (``detections`` in the JSON: up to
50 at random initialisation, each a mask head pass). When it finds any, the benchmark also
times detect with DETECTION_MIN_CONFIDENCE 1.0, which keeps none: the peer's case. leafseg's
RPN convolution is twice as wide (RPN_CONV_CHANNELS 512, as Matterport's weight files need,
against 256): ``--set RPN_CONV_CHANNELS=256`` measures the peer's architecture.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from leafseg.cliargs import add_verbose_argument, parse_overrides, quiet_tensorflow
from leafseg.config import load_config

__all__ = ["measured_config", "peer_input", "timed", "benchmark_training", "benchmark_inference", "read_peer", "main"]

DEFAULT_CONFIG = "leaf_r101"
# The peer's ground truth: leaf i is the rectangle x in [40 + 30 i, 80 + 30 i), y in [60 + 25 i, 120 + 25 i).
LEAF_WIDTH, LEAF_HEIGHT = 40, 60
LEAF_X0, LEAF_DX, LEAF_Y0, LEAF_DY = 40, 30, 60, 25
# The peer's SGD learning rate; the momentum is config.LEARNING_MOMENTUM (0.9, as the peer's).
LEARNING_RATE = 0.001


def measured_config(spec: str = DEFAULT_CONFIG, overrides: dict | None = None, batch: int | None = None,
                    size: int | None = None):
    """The config to measure: ``spec`` (a preset such as "leaf_r101", or a YAML file) by
    :func:`leafseg.config.load_config`, with ``overrides`` applied, then ``batch`` (IMAGES_PER_GPU,
    on one GPU) and ``size`` (the square side: IMAGE_MIN_DIM = IMAGE_MAX_DIM) on top of them."""
    values = dict(overrides or {})
    if batch is not None:
        values.update(IMAGES_PER_GPU=int(batch), GPU_COUNT=1)
    if size is not None:
        values.update(IMAGE_MIN_DIM=int(size), IMAGE_MAX_DIM=int(size))
    return load_config(spec, **values)


def peer_image(size: int, seed: int = 0) -> np.ndarray:
    """A random uint8 RGB image [size, size, 3] (the peer uses torch.rand, i.e. noise too)."""
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def peer_masks(size: int, leaves: int) -> np.ndarray:
    """bool [size, size, leaves]: the peer's rectangles, cut to the image where they leave it."""
    masks = np.zeros((size, size, leaves), dtype=bool)
    for i in range(leaves):
        x, y = LEAF_X0 + LEAF_DX * i, LEAF_Y0 + LEAF_DY * i
        masks[y:y + LEAF_HEIGHT, x:x + LEAF_WIDTH, i] = True
    return masks


def _in_memory_dataset(image, masks):
    from mrcnn.dataset import Dataset

    class _OneImage(Dataset):
        def load_image(self, image_id):
            return image

        def load_mask(self, image_id):
            keep = masks.reshape(-1, masks.shape[-1]).any(axis=0)
            return masks[:, :, keep], np.ones([int(keep.sum())], dtype=np.int32)

    dataset = _OneImage()
    dataset.add_class("leaf", 1, "leaf")
    dataset.add_image("leaf", image_id=0, path=None)
    dataset.prepare()
    return dataset


def peer_input(config, leaves: int = 12, seed: int = 0):
    """One training batch of the peer's input, as the input pipeline yields it.

    Returns (batch, image): ``batch`` a dict of numpy arrays keyed by Matterport's input
    names with config.BATCH_SIZE copies of the sample (input_image molded), ``image`` the
    original uint8 image for inference.
    """
    from mrcnn.pipeline import build_sample, mold_image, pipeline_anchors

    size = int(config.IMAGE_SHAPE[0])
    image = peer_image(size, seed)
    dataset = _in_memory_dataset(image, peer_masks(size, leaves))
    sample = build_sample(dataset, config, 0, pipeline_anchors(config), rng=np.random.default_rng(seed))
    if sample is None:
        raise ValueError(f"--leaves {leaves} at size {size} leaves no rectangle inside the image")
    sample["input_image"] = mold_image(sample["input_image"], config)
    batch = {name: np.stack([value] * config.BATCH_SIZE) for name, value in sample.items()}
    return batch, image


def _rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (ru_maxrss is KiB on Linux)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def timed(fn, warmup: int, steps: int) -> dict:
    """Call ``fn`` warmup + steps times; mean, min and max seconds of the last ``steps``."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"mean_s": float(np.mean(times)), "min_s": float(np.min(times)), "max_s": float(np.max(times)),
            "warmup_s": first, "times_s": [round(t, 4) for t in times]}


def benchmark_training(config, batch, warmup=2, steps=5, jit_compile=False, model_dir=None):
    """Time the trainer's ``train_function`` (what ``fit`` runs per batch) on a fixed batch."""
    import tensorflow as tf

    from mrcnn.model import MaskRCNN
    from mrcnn.trainable import LAYER_REGEX, set_trainable

    model = MaskRCNN("training", config, model_dir or os.devnull)
    set_trainable(model.keras_model, LAYER_REGEX["all"], train_bn=config.TRAIN_BN)
    trainer = model.compile_trainer(learning_rate=LEARNING_RATE, jit_compile=jit_compile)
    inputs = {name: tf.constant(value) for name, value in batch.items()}
    # The function fit() runs per batch (keras' one_step_on_data: a tf.function of train_step),
    # called directly so that nothing of fit's or train_on_batch's bookkeeping is timed.
    trainer.make_train_function()
    losses = {}

    def step():
        logs = trainer.train_function([inputs])
        losses.update({name: float(value) for name, value in logs.items()})  # waits for the step

    result = timed(step, warmup, steps)
    result["losses"] = dict(losses)
    result["peak_rss_mib"] = _rss_mib()
    return result


def benchmark_inference(config, image, warmup=2, steps=5, model_dir=None):
    """Time ``MaskRCNN.detect([image])``: mold, the inference model, unmold to full-size masks."""
    from mrcnn.model import MaskRCNN

    inference_config = config.replace(IMAGES_PER_GPU=1, GPU_COUNT=1)
    model = MaskRCNN("inference", inference_config, model_dir or os.devnull)
    detections = []

    def step():
        detections[:] = model.detect([image])

    result = timed(step, warmup, steps)
    result["detections"] = int(len(detections[0]["class_ids"]))
    result["peak_rss_mib"] = _rss_mib()
    return result


def read_peer(path) -> dict:
    """The peer's figures from a file: its JSON, or the line benchmarks/peer_torchvision.py prints.

    Returns a dict with at least train_step_s and infer_s (floats), plus any other values.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = {}
        for key, value in re.findall(r"(\w+)=([-+0-9.eE]+)", text):
            values[key] = float(value)
        version = re.search(r"torchvision (\S+)", text)
        if version:
            values["torchvision"] = version.group(1)
    missing = [key for key in ("train_step_s", "infer_s") if key not in values]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} in the peer's result (expected its JSON or the "
                         "'train_step_s=... infer_s=...' line of benchmarks/peer_torchvision.py)")
    return values


def _tf_memory_info():
    """TensorFlow's own allocator statistics, where the device reports them (not on every CPU build)."""
    import tensorflow as tf

    try:
        info = tf.config.experimental.get_memory_info("CPU:0")
    except (ValueError, RuntimeError, tf.errors.OpError):
        return None
    return {key: round(value / 2**20, 1) for key, value in info.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leafseg bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help="'leaf_r101' (leafseg.config.LeafConfig, the default) or a YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config attribute (YAML value), e.g. --set BACKBONE=resnet50; repeatable")
    parser.add_argument("--batch", type=int, default=1, help="images per training step (default 1)")
    parser.add_argument("--size", type=int, default=512, help="square image side in pixels (default 512)")
    parser.add_argument("--leaves", type=int, default=12, help="ground-truth rectangles (default 12)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default 2)")
    parser.add_argument("--steps", type=int, default=5, help="timed calls to average (default 5)")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=False,
                        help="compile the training step with XLA (jit_compile; default off)")
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow intra-op threads (default: TensorFlow's choice, one per core)")
    parser.add_argument("--inter-threads", type=int, default=None,
                        help="TensorFlow inter-op threads (default: TensorFlow's choice)")
    parser.add_argument("--skip", choices=("training", "inference"), action="append", default=[],
                        help="leave out a phase")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image and of TensorFlow (default 0)")
    parser.add_argument("--peer-json", metavar="PATH",
                        help="the peer's result (its JSON, or the line benchmarks/peer_torchvision.py "
                             "prints): print ratios")
    parser.add_argument("--target", type=float, default=0.8, help="ratio to the peer to meet (default 0.8)")
    add_verbose_argument(parser)
    return parser


def run(args) -> dict:
    import keras
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.inter_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
    keras.utils.set_random_seed(args.seed)
    config = measured_config(args.config, parse_overrides(args.overrides), batch=args.batch, size=args.size)
    batch, image = peer_input(config, args.leaves, args.seed)
    label = f"{config.BACKBONE if isinstance(config.BACKBONE, str) else 'custom'}-FPN {args.size}px"
    result = {
        "config": args.config, "backbone": str(config.BACKBONE), "size": args.size, "batch": config.BATCH_SIZE,
        "leaves": args.leaves, "warmup": args.warmup, "steps": args.steps, "jit": bool(args.jit),
        "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
        "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0],
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }
    if "training" not in args.skip:
        try:
            train = benchmark_training(config, batch, args.warmup, args.steps, jit_compile=args.jit)
        except tf.errors.InvalidArgumentError as err:
            if not args.jit:
                raise
            # Proposal NMS, detection NMS and crop_and_resize have no XLA kernels.
            first = str(err).strip().splitlines()[0]
            raise SystemExit(f"--jit: XLA cannot compile this training step ({first[:200]}); run without --jit")
        result["train"] = train
        result["train_step_s"] = train["mean_s"]
        print(f"leafseg {label} batch {config.BATCH_SIZE}: train_step_s={train['mean_s']:.3f} "
              f"(min {train['min_s']:.3f}, max {train['max_s']:.3f}, first {args.warmup} took "
              f"{train['warmup_s']:.1f} s) peak_rss_mib={train['peak_rss_mib']:.0f}", flush=True)
    if "inference" not in args.skip:
        infer = benchmark_inference(config, image, args.warmup, args.steps)
        result["infer"] = infer
        result["infer_s"] = infer["mean_s"]
        print(f"leafseg {label} detect 1 image: infer_s={infer['mean_s']:.3f} (min {infer['min_s']:.3f}, "
              f"max {infer['max_s']:.3f}, {infer['detections']} detections) peak_rss_mib={infer['peak_rss_mib']:.0f}",
              flush=True)
        if infer["detections"]:
            # The peer's random weights detect nothing, so it runs no mask head: the same case here.
            bare = benchmark_inference(config.replace(DETECTION_MIN_CONFIDENCE=1.0), image, args.warmup, args.steps)
            result["infer_no_detections"] = bare
            result["infer_no_detections_s"] = bare["mean_s"]
            print(f"leafseg {label} detect 1 image, no detection (the peer's case): infer_s={bare['mean_s']:.3f} "
                  f"(min {bare['min_s']:.3f}, max {bare['max_s']:.3f}, {bare['detections']} detections)", flush=True)
    result["peak_rss_mib"] = _rss_mib()
    result["tf_memory_mib"] = _tf_memory_info()
    result["load_avg_end"] = os.getloadavg()[0]
    print(f"peak_rss_mib={result['peak_rss_mib']:.0f} load_avg_1min start {result['load_avg_start']:.2f} "
          f"end {result['load_avg_end']:.2f}")
    if args.peer_json:
        peer = read_peer(args.peer_json)
        result["peer"] = peer
        for key, peer_key, name in (("train_step_s", "train_step_s", "train step"), ("infer_s", "infer_s", "inference"),
                                    ("infer_no_detections_s", "infer_s", "inference, no detection")):
            if key in result:
                ratio = result[key] / peer[peer_key]
                result[f"{key}_ratio"] = ratio
                verdict = "meets" if ratio <= args.target else "misses"
                print(f"{name}: leafseg {result[key]:.3f} s / peer {peer[peer_key]:.3f} s = {ratio:.2f}x "
                      f"({verdict} the {args.target}x target)")
    print("json: " + json.dumps(result))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``leafseg bench`` and ``benchmarks/bench_model.py`` entry point: parse ``argv`` (default ``sys.argv[1:]``) and run."""
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    args = build_parser().parse_args(argv)
    quiet_tensorflow(args.verbose)
    run(args)
    return 0
