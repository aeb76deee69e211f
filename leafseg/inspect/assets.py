"""The notebooks' built-in inputs: a few procedural rosettes, prepared into the training layout,
and a tiny Mask R-CNN (:data:`TINY_CONFIG`) trained on them with ``leafseg train`` in
:data:`TINY_STAGES`, made once per cache folder (see :mod:`leafseg.inspect`)."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from leafseg.models.loading import resolve_weights
from leafseg.models.runs import CONFIG_FILE

__all__ = ["CACHE_ENV", "SEED", "TINY_CONFIG", "TINY_STAGES", "Assets", "default_dataset", "default_assets"]

CACHE_ENV = "LEAFSEG_INSPECT_CACHE"
SEED = 0
# Rosettes of the built-in data: count and (height, width). Not square, so that resizing pads.
DEFAULT_IMAGES = 40
DEFAULT_SIZE = (112, 128)
# The tiny model, on top of LeafConfig: a quarter-width ResNet-18 on 128 px inputs with narrow
# FPN, RPN and heads. Frozen BatchNorm: with so few steps the moving statistics of trained
# BatchNorm would lag behind the weights and spoil inference.
TINY_CONFIG = {
    "NAME": "leaf_tiny", "BACKBONE": "resnet18", "BACKBONE_WIDTH": 0.25, "TRAIN_BN": False,
    "IMAGES_PER_GPU": 2, "IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128,
    "TOP_DOWN_PYRAMID_SIZE": 32, "RPN_CONV_CHANNELS": 32, "FPN_CLASSIF_FC_LAYERS_SIZE": 64,
    "MASK_HEAD_CHANNELS": 16, "RPN_TRAIN_ANCHORS_PER_IMAGE": 64, "PRE_NMS_LIMIT": 1000,
    "POST_NMS_ROIS_TRAINING": 200, "POST_NMS_ROIS_INFERENCE": 100, "TRAIN_ROIS_PER_IMAGE": 32,
    "MAX_GT_INSTANCES": 24, "DETECTION_MAX_INSTANCES": 24, "MINI_MASK_SHAPE": [28, 28],
    "DETECTION_MIN_CONFIDENCE": 0.5, "STEPS_PER_EPOCH": 20, "VALIDATION_STEPS": 2, "LEARNING_RATE": 0.002,
}
# The tiny run's stages, all layers with Adam: (train until this epoch, learning rate).
TINY_STAGES = ((4, 0.002), (6, 0.0005))
_FORMAT = 1  # bump when the cached files change meaning


@dataclasses.dataclass(frozen=True)
class Assets:
    """The built-in inputs: ``rosettes`` (plantNNNNN_rgb.png + _label.png), ``dataset`` (their
    prepared layout, train/ and val/), and once trained ``run_dir`` (a ``leafseg train`` run
    folder), ``weights`` (its newest checkpoint) and ``config`` (its config.yaml)."""
    root: Path
    rosettes: Path
    dataset: Path
    run_dir: Path | None = None
    weights: Path | None = None
    config: Path | None = None


def _cache_key():
    text = json.dumps({"config": TINY_CONFIG, "stages": TINY_STAGES, "images": DEFAULT_IMAGES,
                       "size": DEFAULT_SIZE, "seed": SEED, "format": _FORMAT}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _cache_root(cache_dir=None):
    base = cache_dir or os.environ.get(CACHE_ENV)
    if not base:
        user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
        base = Path(tempfile.gettempdir()) / f"leafseg-inspect-{user}"
    return Path(base).expanduser().resolve() / f"tiny-{_cache_key()}"


@contextlib.contextmanager
def _locked(path):
    """Hold an exclusive lock on ``path`` (other processes wait; POSIX file locks)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_dataset(cache_dir=None):
    """The built-in rosettes, generated and prepared once per cache folder (no model)."""
    from leafseg.data.prepare import prepare_dataset
    from leafseg.synth.rosettes import write_dataset

    from mrcnn.fileio import write_text_atomic

    root = _cache_root(cache_dir)
    assets = Assets(root, root / "rosettes", root / "prepared")
    with _locked(root / "data.lock"):
        done = root / "data.done"
        if not done.is_file():
            # Both steps skip what a killed earlier attempt finished and redo the rest.
            write_dataset(assets.rosettes, DEFAULT_IMAGES, seed=SEED, size=DEFAULT_SIZE, progress=False)
            prepare_dataset(assets.rosettes, assets.dataset, seed=SEED)
            write_text_atomic(done, "ok\n")
    return assets


def default_assets(cache_dir=None):
    """The built-in data and the tiny model trained on it, once per cache folder; see the module."""
    import yaml

    from mrcnn.fileio import write_text_atomic

    assets = default_dataset(cache_dir)
    root = assets.root
    with _locked(root / "train.lock"):
        record = root / "run.txt"
        run_dir = root / record.read_text().strip() if record.is_file() else None
        if run_dir is None or not list(run_dir.glob("mask_rcnn_*.weights.h5")):
            # Not trained yet, interrupted, or cleaned away since: train from the start.
            logs = root / "logs"
            shutil.rmtree(logs, ignore_errors=True)
            config_path = root / "tiny.yaml"
            write_text_atomic(config_path, yaml.safe_dump(TINY_CONFIG, sort_keys=False))
            run_dir = _train_tiny(config_path, assets.dataset, logs)
            write_text_atomic(record, os.path.relpath(run_dir, root) + "\n")
    return dataclasses.replace(assets, run_dir=run_dir, weights=resolve_weights(run_dir),
                               config=run_dir / CONFIG_FILE)


def _train_tiny(config_path, dataset, logs):
    """Train TINY_STAGES with ``leafseg train``; returns the run folder.

    TensorFlow's op determinism is on while it trains (seeds alone leave the multi-threaded CPU
    kernels free to sum in any order: two runs then differ after a few steps), and restored
    to what it was afterwards.
    """
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    from leafseg.training import train

    was_deterministic = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        result = None
        for i, (epochs, rate) in enumerate(TINY_STAGES):
            result = train.run(["--config", str(config_path), "--dataset", str(dataset), "--stage", "all",
                                "--epochs", str(epochs), "--weights", "none" if i == 0 else "last",
                                "--optimizer", "adam", "--lr", str(rate), "--logs", str(logs),
                                "--seed", str(SEED), "--keep-checkpoints", "1", "--verbose", "0"])
    finally:
        if not was_deterministic:
            tf_config.disable_op_determinism()
    return Path(result.run_dir)
