"""A tiny Mask R-CNN trained once per test run, for the evaluate, predict and export tests.

The toy model of ``tests/toy_data.py`` (quarter-width ResNet-18, 64 x 64 inputs) trained for
``TRAIN_STEPS`` steps with Adam, all layers, from random initialisation, on six toy-shape
images: long enough that it finds some shapes and misses or merges others (mask AP50 from 0.3
to 1 across images), so the metrics under test take varied values. BatchNorm is frozen
(``TRAIN_BN = False``): these tests need a model, not the best one, and frozen statistics
keep the training step free of batch statistics over a varying number of ROIs. Tracing the
training step takes most of the 25-50 s. The result looks like a training run folder::

    <root>/run/mask_rcnn_toy_0001.weights.h5     MaskRCNN.save_weights
    <root>/run/config.yaml                       Config.to_yaml

Training happens once per test run: the first test module (or pytest-xdist worker) to ask
trains under a file lock, the others read the record it left. ``write_prepared`` writes toy
images in the prepared layout (``ROOT/<subset>/<id>/images/<id>.png`` + ``masks/``) that
``leafseg evaluate`` reads.
"""
import fcntl
import functools
import json
import os
from pathlib import Path

import cv2
import keras
import numpy as np

from mrcnn.model import MaskRCNN
from tests.toy_data import ToyConfig, shapes_dataset

TRAIN_STEPS = 60
TRAIN_IMAGES = 6
LEARNING_RATE = 1e-3
WEIGHTS_NAME = "mask_rcnn_toy_0001.weights.h5"
# The tiny model's config: ToyConfig with these values, for training and inference alike.
OVERRIDES = {"TRAIN_BN": False}


def _train(root: Path) -> dict:
    keras.utils.set_random_seed(0)
    config = ToyConfig(STEPS_PER_EPOCH=TRAIN_STEPS, **OVERRIDES)
    model = MaskRCNN("training", config, root / "logs")
    model.train(shapes_dataset(TRAIN_IMAGES), None, learning_rate=LEARNING_RATE, epochs=1, layers="all",
                optimizer=keras.optimizers.Adam(LEARNING_RATE, global_clipnorm=config.GRADIENT_CLIP_NORM),
                seed=0, verbose=0)
    run = root / "run"
    weights = model.save_weights(run / WEIGHTS_NAME)
    config.to_yaml(run / "config.yaml")
    return {"run": str(run), "weights": str(weights), "config": str(run / "config.yaml")}


def trained_run(tmp_path_factory) -> dict:
    """{"run": folder, "weights": .weights.h5 path, "config": config.yaml path} of the tiny model."""
    base = tmp_path_factory.getbasetemp()
    # xdist workers' temporary directories share the run's directory.
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "tiny_trained_leafseg"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = root / "record.json"
        if not record.exists():
            record.write_text(json.dumps(_train(root)))
        return json.loads(record.read_text())


@functools.lru_cache(maxsize=2)
def inference_model(weights: str, min_score: float = ToyConfig.DETECTION_MIN_CONFIDENCE) -> MaskRCNN:
    """The inference model with ``weights``, built once per process: the config the commands
    build from ``config.yaml`` (one image per batch), detections scoring ``min_score`` or more."""
    model = MaskRCNN("inference", ToyConfig(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=min_score, **OVERRIDES),
                     Path(weights).parent)
    model.load_weights(weights)
    return model


def write_prepared(dataset, root, subset) -> list:
    """Write a toy dataset's images and masks in the prepared layout; returns the sample ids."""
    ids = []
    for image_id in dataset.image_ids:
        sample = f"toy{image_id:03d}"
        folder = Path(root) / subset / sample
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        cv2.imwrite(str(folder / "images" / f"{sample}.png"), dataset.load_image(image_id)[..., ::-1])
        masks, _ = dataset.load_mask(image_id)
        for k in range(masks.shape[-1]):
            cv2.imwrite(str(folder / "masks" / f"{sample}_{k}.png"), masks[..., k].astype(np.uint8) * 255)
        ids.append(sample)
    return ids
