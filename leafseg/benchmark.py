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

import json
import os
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

from leafseg.config import load_config

__all__ = ["measured_config", "peer_input", "timed", "benchmark_training", "benchmark_inference", "read_peer", "parse_peer"]

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


def benchmark_inference(config, image, warmup=2, steps=5, model_dir=None, runtime="tensorflow", precision="float32",
                        model=None):
    """Time ``MaskRCNN.detect([image])``: mold, the inference model, unmold to full-size masks.

    runtime, precision: what runs the network (:func:`leafseg.models.runtime.apply_runtime`);
    its conversion and compilation, for OpenVINO, happen in the untimed first calls and are
    reported apart (``convert_s``: what they took, 0 for TensorFlow). model: an inference model of
    ``config`` to reuse (so that several runtimes run the same weights); default a new one.
    """
    from mrcnn.model import MaskRCNN

    from leafseg.models.runtime import apply_runtime, runtime_description

    if model is None:
        inference_config = config.replace(IMAGES_PER_GPU=1, GPU_COUNT=1)
        model = MaskRCNN("inference", inference_config, model_dir or os.devnull)
    apply_runtime(model, runtime, precision)
    detections = []

    def step():
        detections[:] = model.detect([image])

    result = timed(step, warmup, steps)
    result["detections"] = int(len(detections[0]["class_ids"]))
    result["peak_rss_mib"] = _rss_mib()
    result["runtime"] = runtime_description(model)
    runtime_used = getattr(model, "runtime", None)  # (OpenVINO converts and compiles per shape, lazily)
    result["convert_s"] = (sum(runtime_used.convert_seconds.values()) + sum(runtime_used.compile_seconds.values())
                           if runtime_used is not None else 0.0)
    return result


def read_peer(path) -> dict:
    """The peer's figures from a file: its JSON, or the line benchmarks/peer_torchvision.py prints.

    Returns a dict with at least train_step_s and infer_s (floats), plus any other values.
    """
    return parse_peer(Path(path).read_text(encoding="utf-8"), path)


def parse_peer(text, source="the peer's output") -> dict:
    """:func:`read_peer` of the text itself (``source`` names it in errors)."""
    path = source
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
