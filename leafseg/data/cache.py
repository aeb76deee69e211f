"""Large photographs decoded and shrunk once, before training, not at every step.

A training step sees an image at the model's size: in the ``square`` resize mode (every
leafseg preset) a photograph whose longer side exceeds ``IMAGE_MAX_DIM`` is shrunk to it. The
input pipeline (:func:`mrcnn.pipeline.load_image_gt`) does it for every sample of every epoch:
decoding a 2048 px photograph, its leaf masks (one PNG each in the prepared layout) and
resizing them takes most of a CPU training step. ``leafseg train`` therefore shrinks such
photographs once (:func:`resized_for_training`) and trains on the small copies::

    <--logs>/.image_cache/<key>.npz     image uint8 [h, w, 3], masks bool [h, w, N], class_ids [N]

- **The same pixels.** The copy is made by the very calls the pipeline makes
  (:func:`mrcnn.utils.resize_image` with the config's IMAGE_MIN_DIM, IMAGE_MAX_DIM and
  IMAGE_MIN_SCALE, bilinear; :func:`mrcnn.utils.resize_mask`, nearest neighbour), without the
  padding: the pipeline then finds it at the model's size (scale 1) and only pads it, so a
  training step gets the same image, masks, boxes and class ids as from the photograph (only
  the original size recorded in the image meta, unused in training, differs). Masks keep
  nearest-neighbour sampling, as the pipeline's: a leaf narrower than the shrink factor can
  vanish from the copy exactly as it would from the pipeline's own resize (and is dropped
  there as an empty mask); class ids, crowd and ignore regions (negative ids) are kept as
  ``load_mask`` gives them.
- **Only what gains.** Images whose longer side is at most IMAGE_MAX_DIM, other resize modes
  (``crop`` and ``pad64`` never shrink) and LabelMe images kept only inside their JSON are read
  as before. A sample that cannot be read is left to the pipeline, which reports it as usual.
- **Keyed on the sources.** ``<key>`` is a hash of the sample's id and kind, its files (path,
  size and modification time: the image, its masks, ignore regions, label or annotation file,
  every file of a prepared sample's folder and the JSON files beside the subsets, such as a
  class list), its other registered values, the dataset's classes and the resize settings:
  changing any of them makes a new copy. The photographs and labels are only read.
- **Written atomically** (a temporary file, then a rename): an interrupted build leaves no
  partial copy, and two trainings may build it at once. The folder may be deleted at any time;
  old copies are not removed.

One log line says how many images were shrunk, into which folder, how many copies were reused
and how long it took. ``leafseg train --no-image-cache`` trains from the photographs as before.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mrcnn import utils
from mrcnn.fileio import atomic_path

__all__ = ["CACHE_DIR", "CACHE_FORMAT", "ResizedDataset", "resized_for_training", "shrink_scale"]

logger = logging.getLogger(__name__)

# The cache folder's name, under --logs (hidden: not a run folder).
CACHE_DIR = ".image_cache"
# Part of every key: a change to what a copy holds makes new copies.
CACHE_FORMAT = 1


def shrink_scale(height, width, config):
    """The factor the pipeline scales an image of this size by (:func:`mrcnn.utils.resize_image`
    in ``square`` mode with the config's sizes), or None in another mode."""
    if config.IMAGE_RESIZE_MODE != "square":
        return None
    scale = 1
    if config.IMAGE_MIN_DIM:
        scale = max(1, config.IMAGE_MIN_DIM / min(height, width))
    if config.IMAGE_MIN_SCALE and scale < config.IMAGE_MIN_SCALE:
        scale = config.IMAGE_MIN_SCALE
    if round(max(height, width) * scale) > config.IMAGE_MAX_DIM:
        scale = config.IMAGE_MAX_DIM / max(height, width)
    return scale


class ResizedDataset:
    """A prepared dataset whose images in ``files`` ({image id: cache file}) load from their
    shrunk copies; everything else (other images, classes, references) is the dataset's own."""

    def __init__(self, dataset, files):
        self.dataset = dataset
        self.files = dict(files)

    def __getattr__(self, name):
        return getattr(self.dataset, name)

    def load_image(self, image_id):
        path = self.files.get(image_id)
        if path is None:
            return self.dataset.load_image(image_id)
        with np.load(path) as data:
            return data["image"]

    def load_mask(self, image_id):
        path = self.files.get(image_id)
        if path is None:
            return self.dataset.load_mask(image_id)
        with np.load(path) as data:
            return data["masks"], data["class_ids"]


def _image_size(path):
    from PIL import Image

    with Image.open(path) as image:  # the header only
        width, height = image.size
    return height, width


def _stat(path: Path):
    if path.is_file():
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    if path.is_dir():
        return [_stat(p) for p in sorted(path.rglob("*")) if p.is_file()]
    return [str(path), None]


def _sources(info):
    """The files a sample is read from (see the module docstring)."""
    paths = [Path(info[key]) for key in ("path", "label_path", "mask_dir", "ignore_dir") if info.get(key)]
    if info.get("kind") == "instance_masks":  # <root>/<subset>/<id>/images/<id>.png
        sample_dir = Path(info["path"]).parent.parent
        paths += [sample_dir] + sorted(sample_dir.parent.parent.glob("*.json"))
    return paths


def _key(dataset, image_id, config):
    info = dataset.image_info[image_id]
    values = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool)) or v is None}
    document = {
        "format": CACHE_FORMAT,
        "sizes": [config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, config.IMAGE_MIN_SCALE, config.IMAGE_RESIZE_MODE],
        "classes": [[c.get("source"), c.get("id"), c.get("name")] for c in dataset.class_info],
        "info": values,
        "files": [_stat(p) for p in _sources(info)],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _build(dataset, image_id, config, path):
    """Write the shrunk copy of one sample; False when the pipeline should read it itself."""
    image = np.asarray(dataset.load_image(image_id))
    masks, class_ids = dataset.load_mask(image_id)
    masks, class_ids = np.asarray(masks, bool), np.asarray(class_ids, np.int32).reshape(-1)
    if image.ndim != 3 or masks.ndim != 3 or masks.shape[:2] != image.shape[:2] or masks.shape[-1] != class_ids.size:
        return False  # (the pipeline raises its own error naming the sample)
    resized, window, scale, _, _ = utils.resize_image(image, min_dim=config.IMAGE_MIN_DIM,
                                                      min_scale=config.IMAGE_MIN_SCALE,
                                                      max_dim=config.IMAGE_MAX_DIM, mode="square")
    y1, x1, y2, x2 = window
    small = np.ascontiguousarray(resized[y1:y2, x1:x2])
    small_masks = utils.resize_mask(masks, scale, [(0, 0), (0, 0), (0, 0)])
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, image=small, masks=small_masks, class_ids=class_ids,
                            original_shape=np.asarray(image.shape))
    return True


def resized_for_training(dataset, config, cache_dir, workers=None):
    """``dataset`` with its photographs larger than the model's size read from shrunk copies in
    ``cache_dir`` (made now when missing; see the module docstring): a :class:`ResizedDataset`,
    or ``dataset`` itself when no image needs it."""
    if config.IMAGE_RESIZE_MODE != "square":
        return dataset
    large = []
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        sample = info.get("sample")
        if getattr(sample, "embedded", False) or not info.get("path") or not os.path.isfile(info["path"]):
            continue
        try:
            height, width = _image_size(info["path"])
        except OSError:
            continue  # (the pipeline reports it)
        if shrink_scale(height, width, config) < 1:
            large.append(image_id)
    if not large:
        return dataset
    cache_dir = Path(cache_dir)
    started = time.monotonic()
    paths = {image_id: cache_dir / f"{_key(dataset, image_id, config)}.npz" for image_id in large}
    missing = [image_id for image_id, path in paths.items() if not path.is_file()]

    def build(image_id):
        try:
            return image_id, _build(dataset, image_id, config, paths[image_id])
        except Exception as err:  # noqa: BLE001 (a sample that fails is the pipeline's to report)
            logger.debug("image cache: %s left to the pipeline: %s", dataset.image_reference(image_id), err)
            return image_id, False

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        failed = [image_id for image_id, done in pool.map(build, missing) if not done]
    for image_id in failed:
        del paths[image_id]
    from leafseg import counted

    logger.info("image cache: %s larger than IMAGE_MAX_DIM %d; training reads copies shrunk to it once, in %s "
                "(%d made now, %d reused, %.1f s%s; --no-image-cache reads the photographs)",
                counted(len(large), "image"), config.IMAGE_MAX_DIM, cache_dir, len(missing) - len(failed),
                len(large) - len(missing), time.monotonic() - started,
                f"; {len(failed)} left to the pipeline" if failed else "")
    return ResizedDataset(dataset, paths)
