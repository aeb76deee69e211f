"""LeafDataset: leaf images and their per-leaf masks, as an ``mrcnn`` Dataset (class "leaf").

Three ways in, all giving the same thing to the input pipeline:

    train = LeafDataset()
    train.load_leaves("data/leaves", "train")        # the prepared layout (scripts/prepare_masks.py)
    train.prepare()

    raw = LeafDataset()
    raw.load_color_masks("synthetic/", subset="train")   # plantNNNNN_rgb.png + _label.png, no preparing
    raw.prepare()

    cvppp = LeafDataset()
    cvppp.load_cvppp("CVPPP2017_LSC_training/training/A1")   # indexed labels, 0 = background
    cvppp.prepare()

The prepared layout is data-science-bowl-2018's: ``ROOT/<subset>/<id>/images/<id>.png`` and
``ROOT/<subset>/<id>/masks/*.png`` (one binary PNG per leaf, 255 inside). Raw folders are paired
and split into train/val exactly as ``leafseg.prepare`` does (same ids, same seeded split), and
their labels are split into leaves with ``leafseg.masks`` each time a mask is loaded.
"""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mrcnn.dataset import Dataset

from leafseg.masks import DEFAULT_MIN_AREA, read_label, split_instances
from leafseg.prepare import (DEFAULT_IMAGE_GLOB, DEFAULT_LABEL_SUFFIX, SIZE_MISMATCH_RULES, SUBSETS, assign_subset,
                             find_samples, fit_label)

__all__ = ["LeafDataset", "SOURCE"]

SOURCE = "leaf"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _natural_key(path: Path):
    """plant_2.png before plant_10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


class LeafDataset(Dataset):
    """Leaves of plant images: one class, "leaf" (internal id 1)."""

    def __init__(self, class_map=None):
        super().__init__(class_map)
        self.add_class(SOURCE, 1, "leaf")

    # ------------------------------------------------------------------------ registering

    def load_leaves(self, root, subset):
        """Register the samples of ``ROOT/<subset>/`` in the prepared layout.

        Raises FileNotFoundError when the folder is missing and ValueError when it holds no
        sample (a folder with ``images/<id>.png``).
        """
        folder = Path(root) / subset
        if not folder.is_dir():
            raise FileNotFoundError(f"no {subset!r} folder in {root}: expected {folder}/<id>/images/<id>.png "
                                    "(run scripts/prepare_masks.py to lay the data out)")
        count = 0
        for sample_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            images = sorted(p for p in (sample_dir / "images").glob(f"{sample_dir.name}.*")
                            if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not images:
                continue
            self.add_image(SOURCE, image_id=sample_dir.name, path=str(images[0]), kind="instance_masks",
                           mask_dir=str(sample_dir / "masks"))
            count += 1
        if count == 0:
            raise ValueError(f"{folder} holds no samples (expected <id>/images/<id>.png and <id>/masks/*.png)")
        return count

    def load_color_masks(self, folder, subset=None, *, val_fraction=0.2, seed=0, image_glob=DEFAULT_IMAGE_GLOB,
                         label_suffix=DEFAULT_LABEL_SUFFIX, size_mismatch="resize", min_area=DEFAULT_MIN_AREA):
        """Register image + colour-label pairs straight from a raw folder (no preparation step).

        subset: None for every pair, or "train" / "val" for the part that ``leafseg.prepare``
            would put there with the same ``val_fraction`` and ``seed``.
        image_glob, label_suffix, size_mismatch, min_area: as for scripts/prepare_masks.py.
        Unpaired files are ignored here (prepare_masks reports them); a folder with no pair
        raises ValueError.
        """
        if subset is not None and subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS} or None, got {subset!r}")
        if size_mismatch not in SIZE_MISMATCH_RULES:
            raise ValueError(f"size_mismatch must be one of {SIZE_MISMATCH_RULES}, got {size_mismatch!r}")
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"no such folder: {folder}")
        samples, _, _ = find_samples(folder, image_glob=image_glob, label_suffix=label_suffix)
        if not samples:
            raise ValueError(f"{folder} holds no image/label pairs matching {image_glob!r} + {label_suffix!r}")
        count = 0
        for sample in samples:
            if subset is not None and assign_subset(sample.id, seed, val_fraction) != subset:
                continue
            self.add_image(SOURCE, image_id=sample.id, path=str(sample.image), kind="label_image",
                           label_path=str(sample.label), size_mismatch=size_mismatch, min_area=min_area)
            count += 1
        return count

    def load_cvppp(self, folder, subset=None, **kwargs):
        """Register a CVPPP folder (``plantNNN_rgb.png`` + indexed ``plantNNN_label.png``).

        The label's palette index is the leaf id (0 = background); ``_fg`` and ``_centers``
        files are ignored. Arguments as :meth:`load_color_masks`.
        """
        return self.load_color_masks(folder, subset, **kwargs)

    # --------------------------------------------------------------------------- loading

    def load_mask(self, image_id):
        """Leaf masks bool [H, W, N] (H, W of the image) and class ids int32 [N] (all 1)."""
        info = self.image_info[image_id]
        if info.get("kind") == "instance_masks":
            masks = self._read_instance_masks(Path(info["mask_dir"]))
        else:
            masks = self._split_label(info)
        return masks, np.ones([masks.shape[-1]], dtype=np.int32)

    def image_reference(self, image_id):
        info = self.image_info[image_id]
        if info.get("label_path"):
            return f"{info['path']} (label {info['label_path']})"
        return info["path"]

    @staticmethod
    def _read_instance_masks(mask_dir: Path) -> np.ndarray:
        paths = sorted((p for p in mask_dir.glob("*") if p.suffix.lower() in _IMAGE_SUFFIXES), key=_natural_key)
        masks = []
        for path in paths:
            mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if mask is None:
                raise OSError(f"cannot read mask {path}")
            masks.append(mask > 127)
        if not masks:
            raise ValueError(f"no mask PNGs in {mask_dir}")
        shapes = {m.shape for m in masks}
        if len(shapes) > 1:
            raise ValueError(f"masks in {mask_dir} have different sizes: {sorted(shapes)}")
        return np.stack(masks, axis=-1)

    @staticmethod
    def _split_label(info) -> np.ndarray:
        label_path = Path(info["label_path"])
        label = read_label(label_path)
        with Image.open(info["path"]) as image:  # reads the header only
            width, height = image.size
        label, _ = fit_label(label, height, width, info["size_mismatch"], label_path)
        background = 0 if label.ndim == 2 else (0,) * label.shape[-1]
        return split_instances(label, background=background, min_area=info["min_area"]).masks
