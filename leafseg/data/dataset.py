"""LeafDataset: leaf images and their per-leaf masks, as an ``mrcnn`` Dataset (class "leaf").

Four ways in, all giving the same thing to the input pipeline:

    train = LeafDataset()
    train.load_leaves("data/leaves", "train")        # the prepared layout (scripts/prepare_masks.py)
    train.prepare()

    raw = LeafDataset()
    raw.load_color_masks("synthetic/", subset="train")   # plantNNNNN_rgb.png + _label.png, no preparing
    raw.prepare()

    cvppp = LeafDataset()
    cvppp.load_cvppp("CVPPP2017_LSC_training/training/A1")   # indexed labels, 0 = background
    cvppp.prepare()

    coco = LeafDataset()
    coco.load_coco("annotations.json", "images/", "train", categories=["leaf"])  # or load_labelme(folder)
    coco.prepare()

The prepared layout is data-science-bowl-2018's: ``ROOT/<subset>/<id>/images/<id>.png`` and
``ROOT/<subset>/<id>/masks/*.png`` (one binary PNG per leaf, 255 inside). A sample may also hold
``ROOT/<subset>/<id>/ignore/*.png`` (IGNORE_DIR): regions that are neither leaf nor background,
one binary PNG each, loaded as class id -1 like COCO's crowd regions (``leafseg adapt`` stores
the leaves its teacher was unsure of there; see docs/ADAPT.md). Raw folders are paired
and split into train/val exactly as ``leafseg.data.prepare`` does (same ids, same seeded split), and
their labels are split into leaves with ``leafseg.data.masks`` each time a mask is loaded. COCO and
LabelMe annotations are read with ``leafseg.data.annotations`` (the same ids and split as ``leafseg
prepare --coco/--labelme``); their crowd regions load as class id -1, mrcnn's crowd boxes.

Classes. One class, "leaf" (id 1), unless asked for more, as Matterport's datasets do: a prepared
root with ``classes.json`` (CLASSES_FILE: a JSON list of class names in id order 1..N, written by
``leafseg prepare --classes leaf,stem``) gives each mask the class its sample's ``sample.json``
names (key "classes": one name per mask, in the masks' natural order); ``load_coco`` /
``load_labelme`` with ``classes=["leaf", "stem"]`` give each annotation the class of its category
(COCO) or label (LabelMe). ``class_names`` is then ``["BG", "leaf", "stem"]``. Crowd and ignore
regions stay class id -1. Without classes.json (or without the key) every mask is a leaf.

Scenes (a tray of pots, a dish of seedlings) may also say which plant each leaf belongs to: a
plants file ``<sample>_plants.png`` beside ``<sample>_label.png`` (``<sample>`` + ``PLANTS_SUFFIX``
in place of the label suffix), an indexed or 8/16-bit gray PNG whose value is the plant id
(1..P, 0 = no plant). ``plants_path`` / ``load_plants`` find and read it, for raw label folders
only: ``leafseg prepare`` does not copy it, and COCO and LabelMe have none.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mrcnn.dataset import Dataset

from leafseg.data.annotations import (exif_orientation, read_coco, read_embedded_image, read_labelme, region_masks,
                                      to_stored_pixels)
from leafseg.data.masks import DEFAULT_MIN_AREA, read_label, split_instances
from leafseg.data.prepare import (CLASSES_NAME, DEFAULT_IMAGE_GLOB, DEFAULT_LABEL_SUFFIX, SAMPLE_META,
                                  SIZE_MISMATCH_RULES, SUBSETS, assign_subset, find_samples, fit_label)

__all__ = ["LeafDataset", "SOURCE", "PLANTS_SUFFIX", "IGNORE_DIR", "CLASSES_FILE", "read_classes_file"]

SOURCE = "leaf"
PLANTS_SUFFIX = "_plants.png"
# The folder of a prepared sample beside images/ and masks/ whose PNGs are ignore regions (class -1).
IGNORE_DIR = "ignore"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# The file of a prepared root that names its classes (a JSON list, ids 1..N in order); its samples'
# sample.json then name each mask's class under this key.
CLASSES_FILE = CLASSES_NAME
_CLASSES_KEY = "classes"


def _check_class_names(names, source) -> list:
    if not (isinstance(names, (list, tuple)) and names and all(isinstance(n, str) and n.strip() for n in names)):
        raise ValueError(f"{source}: expected a list of class names (e.g. [\"leaf\", \"stem\"]), got {names!r}")
    if len(set(names)) != len(names) or "BG" in names:
        raise ValueError(f"{source}: class names must be distinct and none of them BG (the background), got {names!r}")
    return [str(n) for n in names]


def read_classes_file(root):
    """The class names of a prepared root's ``classes.json`` (ids 1..N in order), or None when it
    has none. ValueError naming the file when it is not a list of distinct names."""
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    return _check_class_names(names, path)


def _natural_key(path: Path):
    """plant_2.png before plant_10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _check_subset(subset) -> None:
    if subset is not None and subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS} or None, got {subset!r}")


class LeafDataset(Dataset):
    """Leaves of plant images: one class, "leaf" (internal id 1), or the classes of the data
    (module docstring)."""

    def __init__(self, class_map=None):
        super().__init__(class_map)
        self.add_class(SOURCE, 1, "leaf")

    @property
    def names(self) -> list:
        """The names of classes 1..N (class_names without "BG"), without needing prepare()."""
        return [info["name"] for info in self.class_info[1:]]

    def set_classes(self, names, source="classes"):
        """Make classes 1..N ``names``, in order. Images already registered keep their classes,
        so the names they use must keep their ids: the current names must begin ``names``
        (["leaf"] then ["leaf", "stem"] is fine); otherwise ValueError naming ``source``."""
        names = _check_class_names(list(names), source)
        current = self.names
        if names == current:
            return
        if self.image_info and names[:len(current)] != current:
            raise ValueError(f"{source}: classes {names} differ from the classes {current} of the images "
                             "registered before; load data of different classes into different datasets")
        self.class_info = self.class_info[:1] + [{"source": SOURCE, "id": i, "name": name}
                                                 for i, name in enumerate(names, start=1)]
        self._prepared = None

    # ------------------------------------------------------------------------ registering

    def load_leaves(self, root, subset):
        """Register the samples of ``ROOT/<subset>/`` in the prepared layout.

        With ``ROOT/classes.json`` the classes are its names, and each mask's class is the one
        its sample's ``sample.json`` names (module docstring).

        Raises FileNotFoundError when the folder is missing and ValueError when it holds no
        sample (a folder with ``images/<id>.png``) or its classes.json is not a list of names.
        """
        folder = Path(root) / subset
        if not folder.is_dir():
            raise FileNotFoundError(f"no {subset!r} folder in {root}: expected {folder}/<id>/images/<id>.png "
                                    "(run scripts/prepare_masks.py to lay the data out)")
        classes = read_classes_file(root)
        if classes is not None:
            self.set_classes(classes, Path(root) / CLASSES_FILE)
        count = 0
        for sample_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            images = sorted(p for p in (sample_dir / "images").glob(f"{sample_dir.name}.*")
                            if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not images:
                continue
            self.add_image(SOURCE, image_id=sample_dir.name, path=str(images[0]), kind="instance_masks",
                           mask_dir=str(sample_dir / "masks"), ignore_dir=str(sample_dir / IGNORE_DIR),
                           meta_path=str(sample_dir / SAMPLE_META) if classes is not None else None)
            count += 1
        if count == 0:
            raise ValueError(f"{folder} holds no samples (expected <id>/images/<id>.png and <id>/masks/*.png)")
        return count

    def load_color_masks(self, folder, subset=None, *, val_fraction=0.2, seed=0, image_glob=DEFAULT_IMAGE_GLOB,
                         label_suffix=DEFAULT_LABEL_SUFFIX, size_mismatch="resize", min_area=DEFAULT_MIN_AREA):
        """Register image + colour-label pairs straight from a raw folder (no preparation step).

        subset: None for every pair, or "train" / "val" for the part that ``leafseg.data.prepare``
            would put there with the same ``val_fraction`` and ``seed``.
        image_glob, label_suffix, size_mismatch, min_area: as for scripts/prepare_masks.py.
        Unpaired files are ignored here (prepare_masks reports them); a folder with no pair
        raises ValueError.
        """
        _check_subset(subset)
        if size_mismatch not in SIZE_MISMATCH_RULES:
            raise ValueError(f"size_mismatch must be one of {SIZE_MISMATCH_RULES}, got {size_mismatch!r}")
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"no such folder: {folder}")
        samples, _, _ = find_samples(folder, image_glob=image_glob, label_suffix=label_suffix)
        if not samples:
            raise ValueError(f"{folder} holds no image/label pairs matching {image_glob!r} + {label_suffix!r}")
        return self._add_samples(samples, subset, val_fraction, seed, "label_image", size_mismatch=size_mismatch,
                                 min_area=min_area, label_suffix=label_suffix)

    def load_cvppp(self, folder, subset=None, **kwargs):
        """Register a CVPPP folder (``plantNNN_rgb.png`` + indexed ``plantNNN_label.png``).

        The label's palette index is the leaf id (0 = background); ``_fg`` and ``_centers``
        files are ignored. Arguments as :meth:`load_color_masks`.
        """
        return self.load_color_masks(folder, subset, **kwargs)

    def load_coco(self, json_path, images_dir, subset=None, *, val_fraction=0.2, seed=0, categories=None,
                  classes=None):
        """Register the images of a COCO instances file (polygons or RLE; see leafseg.data.annotations).

        subset, val_fraction, seed: as :meth:`load_color_masks` (the split of ``leafseg prepare
        --coco``). categories: the category names that are leaves (None: all). Images without a
        leaf of those categories, and annotations that cannot be used, are left out
        (``leafseg prepare --coco`` reports them). Raises ValueError when no image is left.
        classes: None (every annotation is a leaf, class 1), or category names that become
            classes 1..N in this order, each annotation getting its category's class; only
            these categories are read (``categories`` defaults to them). A name the file does
            not have is a ValueError listing the names it has.
        """
        return self._add_annotated(read_coco(json_path, images_dir, self._categories(categories, classes))[0],
                                   json_path, subset, val_fraction, seed, classes)

    def load_labelme(self, folder, subset=None, *, val_fraction=0.2, seed=0, categories=None, classes=None):
        """Register the LabelMe JSON files of ``folder`` (polygons; imageData when the image file
        is missing). Arguments and rules as :meth:`load_coco` (``classes``: shape labels)."""
        return self._add_annotated(read_labelme(folder, self._categories(categories, classes))[0], folder, subset,
                                   val_fraction, seed, classes)

    @staticmethod
    def _categories(categories, classes):
        if classes is None:
            return categories
        if categories is not None and set(categories) - set(classes):
            raise ValueError(f"categories {sorted(set(categories) - set(classes))} are not among the classes "
                             f"{list(classes)}: every category read must be a class")
        return list(classes) if categories is None else categories

    def _add_annotated(self, images, source, subset, val_fraction, seed, classes=None):
        _check_subset(subset)
        if classes is not None:
            self.set_classes(classes, source)
        images = [image for image in images if not all(region.crowd for region in image.regions)]
        if not images:
            raise ValueError(f"{source} holds no image with a usable leaf annotation")
        return self._add_samples(images, subset, val_fraction, seed, "annotations",
                                 classes=None if classes is None else list(classes))

    def _add_samples(self, samples, subset, val_fraction, seed, kind, **info):
        """Register the ``samples`` (prepare's Sample or AnnotatedImage) that prepare puts in
        ``subset`` (None: all); returns how many."""
        chosen = [s for s in samples if subset is None or assign_subset(s.id, seed, val_fraction) == subset]
        for sample in chosen:
            self.add_image(SOURCE, image_id=sample.id, path=str(sample.image), kind=kind, label_path=str(sample.label),
                           sample=sample, **info)
        return len(chosen)

    # --------------------------------------------------------------------------- loading

    def load_image(self, image_id):
        """The image as RGB uint8 [H, W, 3]; LabelMe's imageData when it is the only copy."""
        info = self.image_info[image_id]
        if info.get("kind") == "annotations" and info["sample"].embedded:
            with Image.open(io.BytesIO(read_embedded_image(info["label_path"]))) as image:
                return np.asarray(image.convert("RGB"))
        return super().load_image(image_id)

    def load_mask(self, image_id):
        """Leaf masks bool [H, W, N] (H, W of the image) and class ids int32 [N]: 1 (or each
        mask's class, module docstring), and -1 for the crowd regions of COCO annotations and the
        ignore regions of a prepared sample (``<id>/ignore/*.png``, after its leaves)."""
        info = self.image_info[image_id]
        if info.get("kind") == "annotations":
            sample = info["sample"]
            masks, crowd = region_masks(sample)
            if not sample.embedded:  # LabelMe's imageData is stored turned already
                with Image.open(sample.image) as image:  # the header only
                    masks, _ = to_stored_pixels(masks, exif_orientation(image), image.height, image.width)
            if info.get("classes") is None:
                return masks, np.where(crowd, -1, 1).astype(np.int32)
            ids = {name: i for i, name in enumerate(info["classes"], start=1)}
            return masks, np.array([-1 if region.crowd else ids[region.category] for region in sample.regions],
                                   np.int32)
        if info.get("kind") == "instance_masks":
            masks = self._read_instance_masks(Path(info["mask_dir"]))
            class_ids = self._mask_classes(info, masks.shape[-1])
            ignore_dir = Path(info["ignore_dir"])
            if ignore_dir.is_dir() and any(p.suffix.lower() in _IMAGE_SUFFIXES for p in ignore_dir.iterdir()):
                ignore = self._read_instance_masks(ignore_dir)
                if ignore.shape[:2] != masks.shape[:2]:
                    raise ValueError(f"the ignore regions of {ignore_dir} are {ignore.shape[1]}x{ignore.shape[0]} but "
                                     f"the masks of {info['mask_dir']} {masks.shape[1]}x{masks.shape[0]} (width x height)")
                class_ids = np.r_[class_ids, -np.ones([ignore.shape[-1]])].astype(np.int32)
                return np.concatenate([masks, ignore], axis=-1), class_ids
            return masks, class_ids
        masks = self._split_label(info)
        return masks, np.ones([masks.shape[-1]], dtype=np.int32)

    def _mask_classes(self, info, count) -> np.ndarray:
        """The class ids of a prepared sample's ``count`` masks: from its sample.json's "classes"
        when its root has classes.json (a sample without the key: all leaves, class 1)."""
        meta_path = info.get("meta_path")
        names = None
        if meta_path and Path(meta_path).is_file():
            try:
                meta = json.loads(Path(meta_path).read_text(encoding="utf-8"))
            except ValueError as err:
                raise ValueError(f"{meta_path}: not valid JSON ({err})") from None
            names = meta.get(_CLASSES_KEY) if isinstance(meta, dict) else None
        if names is None:
            return np.ones([count], np.int32)
        if not isinstance(names, list) or len(names) != count:
            given = len(names) if isinstance(names, list) else repr(names)
            raise ValueError(f"{meta_path}: \"{_CLASSES_KEY}\" names {given} classes but {info['mask_dir']} holds "
                             f"{count} masks (one class per mask, in the masks' order)")
        ids = {name: i for i, name in enumerate(self.names, start=1)}
        unknown = sorted({str(n) for n in names if n not in ids})
        if unknown:
            raise ValueError(f"{meta_path}: class {', '.join(map(repr, unknown))} is not one of the classes "
                             f"{self.names} of classes.json")
        return np.array([ids[name] for name in names], np.int32)

    def plants_path(self, image_id):
        """The plants file of an image (module docstring) as a Path, or None: no such file, or an
        image not from a raw label folder (prepared layout, COCO, LabelMe)."""
        info = self.image_info[image_id]
        if info.get("kind") != "label_image":
            return None
        label = Path(info["label_path"])
        path = label.with_name(label.name[:-len(info["label_suffix"])] + PLANTS_SUFFIX)
        return path if path.is_file() else None

    def load_plants(self, image_id):
        """The plant label of an image: [H, W] (H, W of the image, fitted as its leaf label is:
        the same ``size_mismatch`` rule) uint8 or uint16, value = plant id, 0 = no plant; None
        when the image has no plants file (:meth:`plants_path`).

        Raises LabelError / ValueError naming the file when it cannot be read, is not one id per
        pixel (RGB), or differs in size from its label.
        """
        path = self.plants_path(image_id)
        if path is None:
            return None
        info = self.image_info[image_id]
        plants = read_label(path)
        if plants.ndim != 2:
            raise ValueError(f"{path}: a plants file holds one plant id per pixel (indexed or 8/16-bit gray PNG), "
                             f"got {plants.shape[2]} channels")
        with Image.open(info["label_path"]) as label:  # reads the header only
            label_width, label_height = label.size
        if plants.shape != (label_height, label_width):
            raise ValueError(f"{path} is {plants.shape[1]}x{plants.shape[0]} but its label {info['label_path']} is "
                             f"{label_width}x{label_height} (width x height)")
        height, width = self._image_size(info)
        return fit_label(plants, height, width, info["size_mismatch"], path)[0]

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
    def _image_size(info) -> tuple[int, int]:
        """(height, width) of an image from its file's header."""
        with Image.open(info["path"]) as image:
            width, height = image.size
        return height, width

    @staticmethod
    def _split_label(info) -> np.ndarray:
        label_path = Path(info["label_path"])
        label = read_label(label_path)
        height, width = LeafDataset._image_size(info)
        label, _ = fit_label(label, height, width, info["size_mismatch"], label_path)
        background = 0 if label.ndim == 2 else (0,) * label.shape[-1]
        return split_instances(label, background=background, min_area=info["min_area"]).masks
