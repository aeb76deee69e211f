"""Find and measure the leaves in a batch of images with a trained model.

    leafseg predict photos/              # leaf-small, the pretrained model; results in predictions/
    leafseg predict --weights logs/leaf20260101T1200/mask_rcnn_leaf_0040.weights.h5 \\
        --out results/ --mm-per-pixel 0.12 --coco-json photos/ extra/*.jpg plant7.tif
    leafseg predict --coco-json polygons photos/   # COCO polygons, for Label Studio (see below)
    python scripts/predict.py ...        # the same command

Inputs are files, folders (their files with an image suffix, not recursing unless
``--recursive``; other files are listed as ignored) and glob patterns (``**`` recurses). With
``--recursive`` the outputs of a subfolder's image keep the subfolder (``overlays/dish_a/
p1_overlay.png``, image ``dish_a/p1`` in the CSVs), so same-named photographs of two subfolders
do not clash. A folder that holds no image but whose subfolders do is refused before the model
is loaded, naming the subfolders, unless ``--recursive``. Any size; grayscale, 16-bit and RGBA
images are converted to RGB as for training (``mrcnn.dataset.load_image_file``). A file that
cannot be read (missing, truncated, not an image file) is reported by name and skipped; the
others go on. The exit status is 0 when at least one image was predicted, 1 when none could be,
2 on a usage or model error.

Label images are not photos: an input whose name ends with ``--label-suffix`` (default
``_label.png``, what ``leafseg prepare`` takes as a label) and CVPPP's ``_fg.png`` /
``_centers.png`` masks are skipped and counted in the summary, so a folder of image + label
pairs (``plant00005_rgb.png`` + ``plant00005_label.png``) predicts its photos only.
``--include-labels`` predicts them too.

Outputs in ``--out`` (each written atomically, so an interrupted run leaves no partial file)::

    overlays/<name>_overlay.png   the image with each leaf in its colour, its outline and its id
    labels/<name>_label.png       CVPPP label: palette PNG, index = leaf id, 0 = background
    leaves.csv             one row per leaf (see leafseg.measure.phenotype.measure_leaves)
    plants.csv             one row per image: leaf count, rosette area, convex hull area,
                           compactness, diameter (see leafseg.measure.phenotype.measure_plant)
    predictions_coco.json  with --coco-json: COCO format, one "score" per leaf (see below)

``<name>`` is the file name without its suffix and without a final ``_rgb`` (``_2``, ``_3``, ...
added when two inputs share one): ``plant00005_rgb.png`` and ``plant00005.jpg`` both give
``plant00005``, the sample id ``leafseg prepare`` gives them. The label is named as the seed data
and CVPPP name theirs (``<name>`` + ``--label-suffix``), so predictions go back into training:
copy ``labels/*_label.png`` next to the input images, correct them, and ``leafseg prepare``
pairs each with its image. Units: pixels, or mm and mm² with ``--mm-per-pixel`` (columns
``*_px``, ``*_mm``, ``*_mm2``); boxes and centroids always in pixels. Values are rounded to what
the measurement supports (``leafseg.measure.phenotype.round_traits``): areas in px to whole pixels,
lengths to 0.01 px, mm and mm² to the matching decimals, scores and compactness to 4 decimals.

Leaves are the *visible* parts of the detections, as in CVPPP labels: Mask R-CNN's masks may
overlap, so they are flattened with the more confident detection on top
(``leafseg.measure.metrics.label_from_detections``) and a detection hidden entirely is dropped. Leaf
ids are 1..N in descending score; the label PNG, the overlay, both CSVs and the COCO file all
describe these same pixels.

Weights and config: ``--weights`` is a ``.weights.h5`` checkpoint written by training, a
Matterport ``.h5``, or a training run folder (its newest checkpoint). ``--config`` is a preset
name, a YAML file or a run folder holding ``config.yaml``; without it the config stored in the
weights file is used (every ``.weights.h5`` leafseg writes has one), else the ``config.yaml``
beside the weights, else the ``leaf_r101`` preset (:mod:`leafseg.models.loading`).
``--set KEY=VALUE`` changes a value of that config before the model is built (``--set
IMAGE_MAX_DIM=1024 --set IMAGE_MIN_DIM=1024``); the config, these values included, is part of
the run's settings.

``--tta [N]`` (test-time augmentation, :mod:`leafseg.inference.tta`): each model call (a whole
photograph, or each plant's crop in a scene) runs in N flipped and rotated views (4 when N is
left out; 1, 2, 4 or 8), and the leaves most views agree on are kept, their masks fused by vote;
it takes N times as long. N is recorded in the settings; without ``--tta`` they are as before.

COCO JSON, made to be imported as pre-annotations into CVAT (Upload annotations, "COCO 1.0")
and Label Studio (``label-studio-converter import coco``), and read back by ``leafseg prepare
--coco``: ``--coco-json`` (or ``--coco-json rle``) writes each leaf's visible mask as compressed
RLE (exact; CVAT imports it as a mask); ``--coco-json polygons`` as polygons
(:func:`leafseg.data.annotations.mask_to_polygons`: the same pixels, holes filled, a leaf split in
pieces by another one polygon per piece, the largest first), which both tools import as
polygons (Label Studio's converter reads polygons, not RLE). ``file_name`` is the image's base
name, as both tools match it to the task's images (the input path is kept in ``path``);
annotations have ``iscrowd: 0``, ``area`` (pixels), ``bbox`` (x, y, width, height), ``score``
and ``leaf_id``; ids start at 1; categories have a ``supercategory`` (``plant``).
``--coco-json`` followed by a value other than ``rle`` / ``polygons`` means RLE, and the value is
the first input (``--coco-json photos/``, as before the option took a value).

Several classes: a model trained on several (its config's CLASS_NAMES, e.g. leaf and stem; see
docs/CLASSES.md) gives every detection a class. Its outputs then carry it: ``leaves.csv`` gets a
``class`` column (the name) after ``leaf``; the COCO file one category per class (``category_id``
= the class id, 1..N in CLASS_NAMES order); the overlay colours each instance by its class, with
a legend at the top left; ``plants.csv``'s ``leaf_count`` and plant traits (rosette area, hull,
compactness, diameter) count and measure the instances of class "leaf" only (all instances
when no class is named leaf), and each other class gets a ``<class>_count`` column. Labels stay
instance labels (index = instance id, whatever its class). A one-class model's outputs are as
they always were (no ``class`` column).
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from leafseg import counted
from leafseg.data.annotations import mask_to_polygons
from leafseg.precision import PRECISION_POLICIES
from leafseg.data.masks import leaf_palette, masks_to_label, save_indexed_png
from leafseg.measure.metrics import write_csv
from leafseg.inference.plants import PLANT_MODES, PlantsFirst, parse_grid
from leafseg.inference.tta import TTAModel, view_names
from leafseg.measure.phenotype import measure_leaves, measure_plants, round_traits
from leafseg.data.dataset import PLANTS_SUFFIX
from leafseg.data.prepare import DEFAULT_LABEL_SUFFIX
from mrcnn.dataset import load_image_file
from mrcnn.fileio import atomic_path, write_text_atomic
from mrcnn.pipeline import raw_image

__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "find_inputs", "images_in_subfolders", "input_names", "is_label_file", "output_name", "read_image",
           "visible_leaves", "visible_label", "OutputOptions", "finish_image", "predict_pending", "predict_chunk", "PredictReport",
           "predict_images", "default_batch_size"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")
_GLOB_CHARS = re.compile(r"[*?\[]")
# CVPPP's other per-plant masks (foreground, leaf centres): not photos either; prepare ignores them.
_CVPPP_MASK_SUFFIXES = ("_fg.png", "_centers.png")
_RGB_SUFFIX = "_rgb"
# The first bytes of the formats PIL decodes: a file that starts like one but cannot be decoded
# is a broken image; a file that starts like none is not an image file.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"RIFF", "WebP"))


class ImageReadError(OSError):
    """An input image that cannot be read; the message names the file."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason

    def __reduce__(self):  # (cluster workers send it back)
        return type(self), (str(self.path), self.reason)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def is_label_file(path, label_suffix=DEFAULT_LABEL_SUFFIX) -> bool:
    """Whether ``path`` names a label image rather than a photo: its name ends with
    ``label_suffix`` (``leafseg prepare``'s rule for labels) or with CVPPP's ``_fg.png`` /
    ``_centers.png``, or it is a scene's plant label ``<sample>_plants.png`` beside its leaf
    label ``<sample>`` + ``label_suffix`` (``leafseg synth --scene``, predict's ``plants/``)."""
    path = Path(path)
    name = path.name
    if name.endswith(PLANTS_SUFFIX):
        sample = name[:-len(PLANTS_SUFFIX)]
        if (path.parent / f"{sample}{label_suffix}").exists() or path.parent.name == "plants":
            return True
    return name.endswith(label_suffix) or name.endswith(_CVPPP_MASK_SUFFIXES)


def output_name(path) -> str:
    """The name of an input's outputs: the file name without its suffix and a final ``_rgb``
    (``leafseg prepare``'s sample id for a file directly in its input folder)."""
    stem = Path(path).stem
    return stem[: -len(_RGB_SUFFIX)] if stem.endswith(_RGB_SUFFIX) and len(stem) > len(_RGB_SUFFIX) else stem


def find_inputs(inputs, exclude=None, label_suffix=DEFAULT_LABEL_SUFFIX, recursive=False, folders=None):
    """Expand files, folders and glob patterns into the image files to predict.

    inputs: paths or patterns (str or Path).
    exclude: a folder whose files are never inputs (the output folder).
    label_suffix: files that :func:`is_label_file` finds to be labels are left out, whether
        named, in a folder or matched by a pattern; None keeps them.
    recursive: a folder's subfolders are searched too (hidden ones and ``exclude`` left out).
    folders: a dict to fill with {file: the folder input it was found in} for the files of a
        subfolder (with ``recursive``), whose output names keep the subfolder
        (:func:`input_names`).

    Returns: (files, problems, ignored, labels): files in the given order (each folder's and
    pattern's files in natural order), duplicates removed; problems: [(input, reason)] for
    inputs that match nothing; ignored: files of folders skipped for not having an image
    suffix; labels: the label images left out.
    """
    exclude = Path(exclude).resolve() if exclude is not None else None
    files, problems, ignored, labels, seen = [], [], [], [], set()

    def add(path: Path):
        resolved = path.resolve()
        if resolved in seen or (exclude is not None and exclude in resolved.parents):
            return
        seen.add(resolved)
        if label_suffix is not None and is_label_file(path, label_suffix):
            labels.append(path)
            return
        files.append(path)

    def add_folder(folder: Path, top=None):
        for path in sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                           key=_natural_key):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                add(path)
                if top is not None and folders is not None and files and files[-1] == path:
                    folders.setdefault(path, top)
            else:
                ignored.append(path)
        if recursive:
            for sub in _subfolders(folder, exclude):
                add_folder(sub, top or folder)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            add_folder(path)
        elif path.is_file():
            add(path)
        elif _GLOB_CHARS.search(str(item)):
            matches = sorted((Path(p) for p in glob.glob(str(item), recursive=True)), key=_natural_key)
            if not matches:
                problems.append((str(item), "no file matches this pattern"))
            for match in matches:
                if match.is_dir():
                    add_folder(match)
                else:
                    add(match)
        else:
            problems.append((str(item), "no such file or folder"))
    return files, problems, ignored, labels


def _subfolders(folder: Path, exclude=None):
    """The folders directly in ``folder``, in natural order, without hidden ones and ``exclude``."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and (exclude is None or p.resolve() != exclude)), key=_natural_key)


def images_in_subfolders(inputs, exclude=None, label_suffix=DEFAULT_LABEL_SUFFIX):
    """The folders of ``inputs`` that hold no image themselves but whose subfolders do:
    [(folder, [(subfolder, number of images in it and its own subfolders), ...]), ...], the
    subfolders without an image left out. What ``predict`` without ``--recursive`` would miss."""
    exclude = Path(exclude).resolve() if exclude is not None else None
    found = []
    for item in inputs:
        folder = Path(item)
        if not folder.is_dir() or find_inputs([folder], exclude, label_suffix)[0]:
            continue
        counts = [(sub, len(find_inputs([sub], exclude, label_suffix, recursive=True)[0]))
                  for sub in _subfolders(folder, exclude)]
        counts = [(sub, count) for sub, count in counts if count]
        if counts:
            found.append((folder, counts))
    return found


def read_image(path) -> np.ndarray:
    """An input image as RGB uint8 [H, W, 3]; raises :class:`ImageReadError` naming the file.

    PIL decodes the whole file first, because OpenCV returns a partly grey image for some
    truncated files instead of failing; files PIL does not know go to OpenCV / imageio. A file
    none of them reads is "not an image file", or a "truncated or corrupt" one when it starts
    as an image format does.
    """
    path = Path(path)
    unidentified = False
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not an image") from None
    except UnidentifiedImageError:
        unidentified = True  # not for PIL: OpenCV and imageio decide below
    except Image.DecompressionBombError:
        pass  # too large for PIL's safety limit: the readers below decide
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"cannot decode ({err}); truncated or corrupt file?") from err
    if unidentified:
        with open(path, "rb") as handle:
            head = handle.read(16)
        kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
        if kind is not None:
            raise ImageReadError(path, f"cannot decode this {kind} file; truncated or corrupt file?")
    try:
        return load_image_file(path)
    except OSError as err:
        if unidentified:  # imageio's message (plugins to install) would mislead: it is no image
            raise ImageReadError(path, "not an image file (its content is in no image format)") from None
        raise ImageReadError(path, f"not a readable image ({err})") from err


def input_names(paths, folders=None):
    """The output names of input files: :func:`output_name`, with ``_2``, ``_3``, ... added when
    two share one. A file of ``folders`` ({file: the folder input it was found in}, from
    :func:`find_inputs` with ``recursive``) keeps its subfolder: ``photos/dish_a/p1.jpg`` found
    in ``photos`` is ``dish_a/p1`` (outputs ``overlays/dish_a/p1_overlay.png``, ...)."""
    return _unique_names(paths, folders)


def _unique_names(paths, folders=None):
    names, used = [], set()
    for path in paths:
        base = output_name(path)
        top = (folders or {}).get(path)
        if top is not None:
            base = Path(path).parent.relative_to(top).joinpath(base).as_posix()
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# One image
# ---------------------------------------------------------------------------------------------

def visible_leaves(result):
    """Detections -> the visible leaves, one id each (see the module docstring).

    result: MaskRCNN.detect's dict for one image (masks bool [H, W, N], scores [N], ...).
    Returns: (label [H, W] uint8 (uint16 above 255 leaves), 0 = background, leaf k at id k + 1;
    masks bool [H, W, n] of the visible pixels; {"scores", "class_ids", "rois", "plant_ids"} [n]
    of the kept detections), leaves in descending score; with ``plant_ids`` in the result (a
    scene, :class:`leafseg.inference.plants.PlantsFirst`) by plant, then descending score.
    """
    label, details = visible_label(result)
    return label, label[..., np.newaxis] == np.arange(1, len(details["scores"]) + 1), details


def visible_label(result):
    """:func:`visible_leaves` without the [H, W, n] stack of visible masks: (label, details)."""
    scores = np.asarray(result["scores"], np.float64)
    n = len(scores)
    plant_ids = np.asarray(result.get("plant_ids", np.ones(n, np.int32)), np.int32)
    order = np.lexsort((np.arange(n), -scores, plant_ids))  # the leaves' order in the outputs
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    # The higher score on top; among equal scores the leaf first in ``order``. Leaf k gets id k + 1.
    painted = masks_to_label(np.asarray(result["masks"], bool), order=np.lexsort((-rank, scores)),
                             boxes=result.get("rois"))
    present = np.bincount(painted.ravel(), minlength=n + 1)[1:] > 0  # (np.unique sorts or hashes)
    kept = order[present[order]]
    # Renumber the detections that kept a pixel 1..count, in output order.
    lookup = np.zeros(n + 1, painted.dtype)
    lookup[kept + 1] = np.arange(1, len(kept) + 1)
    details = {name: np.asarray(result[name])[kept] for name in ("scores", "class_ids", "rois")}
    details["plant_ids"] = plant_ids[kept]
    return lookup[painted], details


COCO_FORMATS = ("rle", "polygons")


def _coco_annotations(visible, details, image_id, first_id, coco_format="rle", plant_names=None):
    from pycocotools import mask as mask_utils

    annotations = []
    for k in range(visible.shape[-1]):
        rle = mask_utils.encode(np.asfortranarray(visible[..., k], dtype=np.uint8))
        if coco_format == "polygons":
            segmentation = mask_to_polygons(visible[..., k])
        else:
            segmentation = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
        annotations.append({
            "id": first_id + k, "image_id": image_id, "category_id": int(details["class_ids"][k]),
            "segmentation": segmentation,
            "area": int(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "iscrowd": 0, "score": float(details["scores"][k]), "leaf_id": k + 1,
            "plant": plant_names[int(details["plant_ids"][k])] if plant_names else "1",
        })
    return annotations


def _save_label(label, path):
    if label.max(initial=0) <= 255:
        return save_indexed_png(label.astype(np.uint8), path)
    import cv2  # more leaves than a palette holds: a 16-bit gray PNG, still index = leaf id

    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), label.astype(np.uint16)):
            raise OSError(f"could not write {path}")
    return Path(path)


# ---------------------------------------------------------------------------------------------
# A batch
# ---------------------------------------------------------------------------------------------

@dataclass
class PredictReport:
    """What :func:`predict_images` did."""

    predicted: list = field(default_factory=list)   # [(input path, output name, leaf count)]
    skipped: list = field(default_factory=list)     # [(input, reason)]
    ignored: list = field(default_factory=list)     # folder files without an image suffix
    labels: list = field(default_factory=list)      # label images left out (see is_label_file)
    outputs: dict = field(default_factory=dict)     # {"leaves.csv": path, ...}
    resumed: int = 0                                # images predicted by an earlier run into the folder
    classes: dict = field(default_factory=dict)     # {class name: instances}, a model of several classes

    def summary(self) -> str:
        leaves = sum(count for _, _, count in self.predicted)
        found = (f"{_counted(leaves, 'instance')}: " + ", ".join(f"{count} {name}" for name, count in self.classes.items())
                 if self.classes else _counted(leaves, 'leaf', 'leaves'))
        lines = [f"predicted {_counted(len(self.predicted), 'image')} ({found}), "
                 f"skipped {len(self.skipped)}"
                 + (f" (and {_counted(len(self.labels), 'label image')})" if self.labels else "")
                 + (f"; {self.resumed} of them {'was' if self.resumed == 1 else 'were'} predicted by an earlier run "
                    "into this folder" if self.resumed else "")]
        lines += [f"  skipped {item}: {reason}" for item, reason in self.skipped]
        if self.labels:
            lines.append(f"  skipped {_counted(len(self.labels), 'label image')} ({_shown(self.labels)}); "
                         "--include-labels predicts them too")
        if self.ignored:
            lines.append(f"  ignored {_counted(len(self.ignored), 'file')} of the input folders without an image "
                         f"suffix: {_shown(self.ignored)}")
        lines += [f"  {name:22} {path}" for name, path in self.outputs.items()]
        return "\n".join(lines)


_counted = counted  # ``1 image``, ``2 images`` (leafseg.cli.options, shared by the commands)


def _shown(paths, count=5):
    return ", ".join(p.name for p in paths[:count]) + (", ..." if len(paths) > count else "")


def _leaf_columns(mm_per_pixel, class_names=None):
    columns = list(measure_leaves(np.ones((1, 1, 1), bool), [1.0], "", mm_per_pixel)[0])
    columns = columns[:1] + ["plant"] + columns[1:]
    if class_names:  # several classes: each row's class after its leaf id
        columns.insert(columns.index("leaf") + 1, "class")
    return columns


def _plant_columns(mm_per_pixel, class_names=None):
    row = measure_plants(np.zeros((1, 1), np.uint8), [], [(1, "1", (0, 0, 1, 1))], "", mm_per_pixel)[0]
    columns = ["image", "file"] + [key for key in row if key != "image"]
    if class_names:
        at = columns.index("leaf_count") + 1
        columns[at:at] = _class_count_columns(class_names)
    return columns


# Several classes: the class that leaf_count counts and plant traits measure (the others get counts).
LEAF_CLASS = "leaf"
# The overlay's colour of each class (RGB), in class id order, when a model has several: well apart
# from each other and from soil and foliage greens where possible.
CLASS_COLOURS = np.array([(60, 220, 60), (255, 140, 0), (30, 144, 255), (255, 0, 200), (255, 235, 0),
                          (0, 230, 230), (180, 80, 255), (255, 60, 60)], np.uint8)


def _class_count_columns(class_names):
    return [f"{name}_count" for name in class_names if name != LEAF_CLASS]


def class_colours(count):
    """[count, 3] uint8 RGB, the overlay colour of classes 1..count (repeating after 8)."""
    return CLASS_COLOURS[np.arange(count) % len(CLASS_COLOURS)]


def draw_class_legend(overlay, class_names, colours):
    """``overlay`` with a legend at its top left: a swatch of each class's colour and its name."""
    import cv2

    out = np.ascontiguousarray(overlay).copy()
    scale = max(0.4, max(out.shape[:2]) / 1600)
    thickness = max(1, round(scale * 1.5))
    line = int(round(22 * scale)) + 4
    widths = [cv2.getTextSize(str(n), cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for n in class_names]
    box_width = line + 8 + max(widths, default=0) + 6
    region = out[:line * len(class_names) + 6, :box_width]
    region[:] = (region * 0.35).astype(np.uint8)  # darkened, so that the names read on any photograph
    for k, (name, colour) in enumerate(zip(class_names, colours)):
        y = 3 + k * line
        cv2.rectangle(out, (4, y + 3), (4 + line - 6, y + line - 3), tuple(int(c) for c in colour), -1)
        cv2.putText(out, str(name), (line + 4, y + line - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
    return out


@dataclass(frozen=True)
class OutputOptions:
    """What predict writes for each image (picklable: cluster workers get it)."""

    out_dir: str
    mm_per_pixel: float | None = None
    coco_json: str | None = None
    label_suffix: str = DEFAULT_LABEL_SUFFIX
    plants: str = "auto"            # how a photograph goes to the model (leafseg.inference.plants)
    grid: tuple | None = None       # (rows, cols) of a regular tray, or None
    tta: int | None = None          # test-time augmentation views (leafseg.inference.tta), None: off
    class_names: tuple | None = None  # a model of several classes: the names of classes 1..N; None: one, leaf

    def settings(self):
        """The part of a run's settings (leafseg.inference.results) that these options make."""
        settings = {"mm_per_pixel": self.mm_per_pixel, "coco_json": self.coco_json, "label_suffix": self.label_suffix,
                    "plants": self.plants, "grid": list(self.grid) if self.grid else None}
        if self.tta:  # (only when on: a folder predicted without it keeps its settings and resumes)
            settings["tta"] = self.tta
        if self.class_names:
            settings["classes"] = list(self.class_names)
        return settings


def finish_image(image, result, path, name, options: OutputOptions) -> dict:
    """Write one image's overlay, label and plant label from its detections; returns its record
    (leaf rows, plant rows, COCO entries with image-local ids; see leafseg.inference.results).

    result: MaskRCNN.detect's dict, or :class:`leafseg.inference.plants.PlantsFirst`'s (with
    ``plant_ids`` and ``plants``); without them the image is one plant, "1", the whole frame.
    """
    from mrcnn import visualize

    out_dir, mm_per_pixel = Path(options.out_dir), options.mm_per_pixel
    label, details = visible_label(result)
    count = len(details["scores"])
    height, width = label.shape
    plants = result.get("plants") or [_whole_frame(height, width)]
    names = {plant.id: plant.name for plant in plants}
    colors = leaf_palette(255)[np.arange(count) % 255]
    plan = result.get("plan")
    scene = plan is not None and plan.mode == "plants"
    ids = [str(k) for k in range(1, count + 1)]
    if scene:  # a scene's small leaves keep their colour and outline, not an id hiding them
        areas = np.bincount(label.ravel(), minlength=count + 1)[1:]
        ids = [text if area >= SCENE_LABEL_AREA * max(1.0, min(label.shape) / 900) ** 2 else ""
               for text, area in zip(ids, areas)]
    class_names = list(options.class_names or ())
    class_ids = np.asarray(details["class_ids"], np.int64).reshape(-1)
    if class_names:  # several classes: each instance in its class's colour, and a legend
        colors = class_colours(len(class_names))[np.clip(class_ids - 1, 0, len(class_names) - 1)]
    overlay = visualize.draw_label(image, label, labels=ids, colors=colors)  # (draw_instances' overlay of visible)
    if scene:
        overlay = draw_plants(overlay, label, details["plant_ids"], plants)
    if class_names:
        overlay = draw_class_legend(overlay, class_names, class_colours(len(class_names)))
    visualize.save_image(overlay, out_dir / "overlays" / f"{name}_overlay.png")
    _save_label(label, out_dir / "labels" / f"{name}{options.label_suffix}")
    plant_label = np.concatenate([[0], details["plant_ids"]]).astype(np.uint16 if len(plants) > 255 else np.uint8)[label]
    _save_label(plant_label, out_dir / "plants" / f"{name}{PLANTS_SUFFIX}")
    leaves = round_traits(measure_leaves(None, details["scores"], name, mm_per_pixel, label=label), mm_per_pixel)
    for row, plant_id in zip(leaves, details["plant_ids"]):
        row["plant"] = names[int(plant_id)]
    measured = label
    if class_names:
        for row, class_id in zip(leaves, class_ids):
            row["class"] = class_names[class_id - 1] if 1 <= class_id <= len(class_names) else f"class_{class_id}"
        if LEAF_CLASS in class_names:  # the plant's traits are its leaves'; the other classes are counted
            counted = np.flatnonzero(class_ids == class_names.index(LEAF_CLASS) + 1) + 1
            measured = np.where(np.isin(label, counted), label, 0).astype(label.dtype)
    rows = round_traits(measure_plants(measured, details["plant_ids"], [(p.id, p.name, p.crop) for p in plants],
                                       name, mm_per_pixel), mm_per_pixel)
    if class_names:
        for row, plant in zip(rows, plants):
            own = np.asarray(details["plant_ids"]) == plant.id
            for k, class_name in enumerate(class_names, start=1):
                if class_name != LEAF_CLASS:
                    row[f"{class_name}_count"] = int(np.count_nonzero(own & (class_ids == k)))
    record = {"name": name, "file": str(path), "count": count, "leaves": leaves,
              "plants": [{"image": name, "file": str(path), **{k: v for k, v in row.items() if k != "image"}}
                         for row in rows],
              "coco": None}
    if options.coco_json:
        record["coco"] = {"image": {"file_name": Path(path).name, "height": int(image.shape[0]),
                                    "width": int(image.shape[1]), "name": name, "path": str(path)},
                          "annotations": _coco_annotations(label[..., np.newaxis] == np.arange(1, count + 1),
                                                           details, 0, 1, options.coco_json, names)}
    return record


# In a scene's overlay a leaf shows its id when it covers this many pixels (times the square of
# the overlay's text scale): room for about three characters, loosely.
SCENE_LABEL_AREA = 1200


def _whole_frame(height, width):
    from leafseg.inference.plants import Plant

    return Plant(1, "1", (0, 0, height, width), (0, 0, height, width))


def draw_plants(overlay, label, plant_of_leaf, plants):
    """``overlay`` with each plant's outline (the convex hull of its leaves, white) and its name
    at the outline's top left; a plant without leaves is left out."""
    import cv2

    out = np.ascontiguousarray(overlay).copy()
    thickness = max(2, round(max(out.shape[:2]) / 700))
    scale = max(0.6, max(out.shape[:2]) / 1400)
    for plant in plants:
        y1, x1, y2, x2 = plant.crop
        ids = np.flatnonzero(np.asarray(plant_of_leaf) == plant.id) + 1
        own = np.isin(label[y1:y2, x1:x2], ids)
        if not own.any():
            continue
        ys, xs = np.nonzero(own)
        hull = cv2.convexHull(np.stack([xs + x1, ys + y1], axis=1).astype(np.int32))
        cv2.polylines(out, [hull], True, (255, 255, 255), thickness, cv2.LINE_AA)
        top = (int(xs.min()) + x1, max(int(ys.min()) + y1 - 2 * thickness, int(20 * scale)))
        cv2.putText(out, plant.name, top, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3 * thickness, cv2.LINE_AA)
        cv2.putText(out, plant.name, top, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


# How far reading runs ahead of the model, in batches, and how many images may wait to be written.
PREFETCH_BATCHES = 2
MAX_WRITING = 4


def _write_image(image, result, path, name, options, records_dir):
    """The writer's part of one image: its outputs, then its record; returns its leaf count."""
    from leafseg.inference.results import ResultStore

    record = finish_image(image, result, path, name, options)
    ResultStore.attach(records_dir).save(record)
    return record["count"]


# The writer's niceness: it runs on what the model leaves of the CPU. At the same priority it
# preempts one of the model's threads, and the model's parallel layers wait for that thread.
# (On 2 cores, a writer process drawing and saving all the time beside OpenVINO's detect: the
# model at 0.94x its rate alone with the writer niced, 0.70x not; for the writer thread predict
# measured no difference.) Niced, not idle-only: on a machine busy with other work it still gets
# its share.
WRITER_NICENESS = 10


def _lower_priority(niceness, thread=False):
    """Lower this process's (``thread``: this thread's, on Linux) scheduling priority by
    ``niceness``; where the system cannot, leave it."""
    import sys
    import threading

    try:
        if not thread:
            os.nice(niceness)
        elif sys.platform.startswith("linux"):  # a Linux thread has a priority of its own
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + niceness)
    except (AttributeError, OSError):
        pass


def _writer_pool(writer):
    """The writer, at a lower priority (WRITER_NICENESS): a thread ("auto"), or a process of its own.

    A thread is the default: drawing, measuring and encoding run in numpy, OpenCV and the PNG
    encoders, which release the GIL, and the detections reach it without a copy. A process gets
    each image and its [H, W, N] masks pickled through a pipe (5 MB for a 500 px rosette, GBs for
    a large tray), and on 2 cores was slower: end to end at 0.77x the model-only rate against
    0.85-0.88x with the thread (benchmarks/bench_predict.py, docs/BENCHMARKS.md)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    if writer == "auto":
        writer = "thread"
    if writer == "process":
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_lower_priority, initargs=(WRITER_NICENESS,))
    if writer == "thread":
        return ThreadPoolExecutor(1, thread_name_prefix="predict-write", initializer=_lower_priority,
                                  initargs=(WRITER_NICENESS, True))
    raise ValueError(f"writer must be auto, process or thread, got {writer!r}")


def predict_pending(model, todo, options: OutputOptions, store, batch_size=1, on_done=None, writer="auto"):
    """Predict ``todo`` [(path, name)] with ``model`` as a pipeline: while the model runs,
    threads decode the next images (and mold those that go to it whole: ``PlantsFirst.prepare``),
    and a writer writes each image's outputs and record. Batches of ``batch_size`` images go to
    the model in one call.

    on_done(path, name, outcome) is called in input order; outcome is the leaf count or an
    :class:`ImageReadError`. writer: "thread", "process" or "auto" (a thread; see
    :func:`_writer_pool`). Returns {name: outcome}.
    """
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    batch_size = max(1, int(batch_size))
    outcomes = {}
    items = iter(todo)
    model = PlantsFirst(TTAModel(model, options.tta) if options.tta else model, options.plants, options.grid)

    def read(path):  # decoded, and molded for the model where the image goes to it whole
        return model.prepare(read_image(path))

    def write(image, result, path, name):
        return writers.submit(_write_image, raw_image(image), result, path, name, options, str(store.out_dir))

    def failed(error):
        future = Future()
        future.set_result(error)
        return future

    with ThreadPoolExecutor(2, thread_name_prefix="predict-read") as readers, _writer_pool(writer) as writers:
        reading, writing, batch = deque(), deque(), []

        def refill():
            while len(reading) < batch_size * (PREFETCH_BATCHES + 1):
                item = next(items, None)
                if item is None:
                    return
                reading.append((*item, readers.submit(read, item[0])))

        def settle(limit):
            while len(writing) > limit:
                path, name, future = writing.popleft()
                outcomes[name] = future.result()
                if on_done:
                    on_done(path, name, outcomes[name])

        def run_batch():
            images = [image for _, _, image in batch if not isinstance(image, ImageReadError)]
            shown = [name for _, name, image in batch if not isinstance(image, ImageReadError)]
            results = iter(model.detect(images, names=shown) if images else [])
            for path, name, image in batch:
                if isinstance(image, ImageReadError):  # reported in its place in the input order
                    writing.append((path, name, failed(image)))
                else:
                    writing.append((path, name, write(image, next(results), path, name)))
            batch.clear()
            settle(MAX_WRITING)

        refill()
        ready = 0  # images of the batch that could be read
        while reading:
            path, name, future = reading.popleft()
            refill()
            try:
                batch.append((path, name, future.result()))
                ready += 1
            except ImageReadError as err:
                batch.append((path, name, err))
            if ready == batch_size:
                run_batch()
                ready = 0
        if batch:
            run_batch()
        settle(0)
    return outcomes


def predict_chunk(spec, items, options: OutputOptions):
    """A cluster task (leafseg.inference.cluster): predict ``items`` [(path, name)] on this worker with the
    model of ``spec`` (a :class:`leafseg.inference.cluster.ModelSpec`, loaded once per worker); returns
    {name: outcome}. Images recorded already (a rerun of a task whose worker died) are not
    predicted again."""
    from leafseg.inference.cluster import worker_model
    from leafseg.inference.results import STATE_DIR, ResultStore

    store = ResultStore.attach(options.out_dir)
    todo = [(Path(path), name) for path, name in items if not store.done(name, path)]
    outcomes = {name: store.load(name)["count"] for path, name in items if (Path(path), name) not in todo}
    if todo:
        model = worker_model(spec, Path(options.out_dir) / STATE_DIR / "logs")
        outcomes.update(predict_pending(model, todo, options, store, batch_size=spec.batch_size or default_batch_size(),
                                        writer="thread"))
    return outcomes


def _settings(weights_id, config, policy, options, runtime="tensorflow"):
    if hasattr(config, "to_yaml_text"):
        config_text = config.to_yaml_text()
    else:  # a stand-in model's config: its upper-case attributes
        config_text = repr({key: getattr(config, key) for key in dir(config) if key.isupper()})
    return {"weights": weights_id, "config": config_text, "precision": policy, "runtime": runtime,
            **options.settings()}


def predict_images(model, inputs, out_dir, mm_per_pixel=None, coco_json=None, progress=True,
                   class_names=None, label_suffix=DEFAULT_LABEL_SUFFIX, include_labels=False,
                   overwrite=False, batch_size=1, weights_id=None, cluster=None, plants="auto",
                   grid=None, tta=None, recursive=False, writer="auto") -> PredictReport:
    """Predict every input image and write the outputs of the module docstring to ``out_dir``.

    model: an inference-mode MaskRCNN (or an object with its ``detect`` and ``config``), or with
        ``cluster`` a :class:`leafseg.inference.cluster.ModelSpec` that each worker loads once.
    inputs: files, folders and patterns (see :func:`find_inputs`).
    recursive: the folders' subfolders too; their outputs keep the subfolder (``overlays/dish_a/
        p1_overlay.png``; ``dish_a/p1`` in the CSVs' image column, see :func:`input_names`).
    mm_per_pixel: pixel size for mm / mm² columns; None for pixels.
    coco_json: None, or how predictions_coco.json stores the masks: "rle" or "polygons".
    class_names: {class id: name} for the COCO categories, over the config's names (its
        CLASS_NAMES; without them {1: "leaf"}, "class_<id>" for any other id).
    label_suffix: the label images' suffix (``leafseg prepare``'s ``--label-suffix``, ending in
        ``.png``): input files named so are skipped, and predicted labels are named so.
    include_labels: predict label images too.
    overwrite: predict every image again; by default an image predicted before into ``out_dir``
        with the same settings is not (see :mod:`leafseg.inference.results`).
    batch_size: images per model call (a GPU gains from several; on a CPU 1 is as fast).
    weights_id: what identifies the weights in the run's settings (the CLI: the file's sha256);
        default a hash of the model's weight values (a stand-in model: its class name).
    cluster: None (this process), or a Dask cluster: "local:N", "tcp://HOST:PORT" or a YAML
        file (see :mod:`leafseg.inference.cluster`).
    plants: "auto" (a scene much larger than the model is split by plant; one plant goes
        through whole) or "one" (every photograph whole); grid: "ROWSxCOLS" or (rows, cols), the
        pots of a regular tray, named A1, A2, ... (:mod:`leafseg.inference.plants`).
    tta: None (off), or test-time augmentation with 1, 2, 4 or 8 views: each model call (a whole
        photograph, or each plant's crop) in that many flipped and rotated views, fused by vote
        (:mod:`leafseg.inference.tta`); N times the detection time. Part of the settings when on.
    writer: where the outputs are written while the model runs on: "thread", "process" or
        "auto" (see :func:`predict_pending`).
    Raises :class:`leafseg.inference.results.SettingsMismatch` when ``out_dir`` holds results of other settings.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from leafseg.inference.results import ResultStore, merge_records, weights_fingerprint

    if coco_json not in (None, *COCO_FORMATS):
        raise ValueError(f"coco_json must be None or one of {', '.join(COCO_FORMATS)}, got {coco_json!r}")
    if not str(label_suffix).lower().endswith(".png"):
        raise ValueError(f"label suffix must end with .png (labels are written as PNG), got {label_suffix!r}")
    if plants not in PLANT_MODES:
        raise ValueError(f"plants must be one of {', '.join(PLANT_MODES)}, got {plants!r}")
    if tta is not None:
        view_names(tta)
    out_dir = Path(out_dir)
    options = OutputOptions(str(out_dir), mm_per_pixel, coco_json, label_suffix, plants, parse_grid(grid),
                            int(tta) if tta else None)
    folders = {}
    files, problems, ignored, labels = find_inputs(inputs, exclude=out_dir,
                                                   label_suffix=None if include_labels else label_suffix,
                                                   recursive=recursive, folders=folders)
    report = PredictReport(skipped=list(problems), ignored=ignored, labels=labels)
    for item, reason in problems:
        logger.warning("skipped %s: %s", item, reason)
    if labels:
        logger.info("skipped %s (%s; --include-labels predicts them too)", _counted(len(labels), "label image"),
                    _shown(labels))
    names = _unique_names(files, folders)
    if cluster is not None:
        config = model.config_object()
        weights_id = weights_id or model.weights_id()
        # (OpenVINO's network is built in float32: its precision is the runtime's, see leafseg.models.runtime)
        policy = PRECISION_POLICIES[model.precision if model.runtime == "tensorflow" else "float32"]
    else:
        config = model.config
        keras_model = getattr(model, "keras_model", None)  # (None: a stand-in with detect() and config)
        if weights_id is None:
            weights_id = weights_fingerprint(keras_model) if keras_model is not None else type(model).__name__
        policy = keras_model.dtype_policy.name if keras_model is not None else None
    from dataclasses import replace

    from leafseg.config import class_names as config_class_names

    classes = config_class_names(config)
    if len(classes) > 1:  # a model of several classes: its outputs carry the class (module docstring)
        options = replace(options, class_names=tuple(classes))
    from leafseg.models.runtime import runtime_setting

    store = ResultStore(out_dir, _settings(weights_id, config, policy, options, runtime_setting(model)),
                        overwrite=overwrite)
    todo = [(path, name) for path, name in zip(files, names) if not store.done(name, path)]
    report.resumed = len(files) - len(todo)
    if report.resumed:
        logger.info("%d of %s %s predicted before into %s; predicting the other %d", report.resumed,
                    _counted(len(files), "image"), "was" if report.resumed == 1 else "were", out_dir, len(todo))

    with logging_redirect_tqdm(), tqdm(total=len(todo), unit="image", desc="predict",
                                       disable=not progress) as bar:
        def done(path, name, outcome):
            if isinstance(outcome, ImageReadError):
                logger.warning("skipped %s", outcome)
            bar.update()

        if cluster is not None:
            from leafseg.inference.cluster import predict_on_cluster

            outcomes = predict_on_cluster(cluster, model, todo, options, predict_chunk, on_done=done)
        else:
            outcomes = predict_pending(model, todo, options, store, batch_size=batch_size, on_done=done, writer=writer)

    records = []
    for path, name in zip(files, names):
        outcome = outcomes.get(name)
        if isinstance(outcome, ImageReadError):
            report.skipped.append((str(path), outcome.reason))
            continue
        record = store.load(name)
        if record is None:  # (a cluster task that failed for good: predict_on_cluster reported it)
            report.skipped.append((str(path), "not predicted (see the errors above)"))
            continue
        records.append(record)
        report.predicted.append((str(path), name, record["count"]))
        for row in record["leaves"]:
            if "class" in row:  # several classes: the summary counts each
                report.classes[row["class"]] = report.classes.get(row["class"], 0) + 1

    if records:
        leaves_rows, plant_rows, coco_images, coco_annotations = merge_records(records, coco=bool(coco_json))
        report.outputs["overlays/"] = out_dir / "overlays"
        report.outputs["labels/"] = out_dir / "labels"
        report.outputs["plants/"] = out_dir / "plants"
        report.outputs["leaves.csv"] = write_csv(leaves_rows, out_dir / "leaves.csv",
                                                 _leaf_columns(mm_per_pixel, options.class_names))
        report.outputs["plants.csv"] = write_csv(plant_rows, out_dir / "plants.csv",
                                                 _plant_columns(mm_per_pixel, options.class_names))
        if coco_json:
            names_by_id = {**dict(enumerate(classes, start=1)), **(class_names or {})}
            ids = range(1, config.NUM_CLASSES)
            document = {
                "info": {"description": f"leafseg predictions: visible leaf masks, {coco_json}, with scores"},
                "licenses": [], "images": coco_images, "annotations": coco_annotations,
                "categories": [{"id": c, "name": names_by_id.get(c, f"class_{c}"), "supercategory": "plant"}
                               for c in ids],
            }
            report.outputs["predictions_coco.json"] = write_text_atomic(
                out_dir / "predictions_coco.json", json.dumps(document) + "\n")
    return report


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def default_batch_size():
    """4 images per model call on a GPU, 1 on a CPU."""
    import tensorflow as tf

    return 4 if tf.config.list_physical_devices("GPU") else 1
