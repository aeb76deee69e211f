"""Turn image + label-image pairs into the data-science-bowl-2018 layout Mask R-CNN trains on.

    python scripts/prepare_masks.py --input synthetic/ --output data/leaves --workers 4
    leafseg prepare --input CVPPP2017_LSC_training/training --output data/cvppp
    leafseg prepare --coco annotations.json --input images/ --output data/leaves --category leaf

Output::

    OUT/<subset>/<id>/images/<id>.<ext>     the image, its bytes kept (.png, .jpg, .tif, .bmp)
    OUT/<subset>/<id>/masks/<id>_<k>.png    uint8, 255 inside leaf k, 0 outside; k = 0 .. N-1
    OUT/<subset>/<id>/sample.json           where the sample came from, what was done to it
    OUT/manifest.csv                        id, subset, leaf_count, height, width,
                                            source_image, source_label, note
    OUT/classes.json                        with --classes: the class names, in id order 1..N

``<subset>`` is ``train`` or ``val``. The rules, in the order a sample meets them:

Pairs. Files are searched recursively under ``--input`` (hidden folders and the output folder
are skipped). An *image* is a file whose name matches ``--image-glob`` (shell pattern on the
file name, case-sensitive; default ``*_rgb.png``) and does not end with ``--label-suffix``. The
label of image ``DIR/BASE.EXT`` or ``DIR/BASE_rgb.EXT`` is ``DIR/BASE`` + ``--label-suffix``
(default ``_label.png``). So the defaults pair the synthetic data's ``plant00001_rgb.png`` with
``plant00001_label.png`` and CVPPP's ``plant001_rgb.png`` with ``plant001_label.png`` (CVPPP's
``_fg.png`` and ``_centers.png`` match neither and are ignored); ``--image-glob '*.jpg'
--label-suffix _mask.png`` pairs ``a.jpg`` with ``a_mask.png``. An image without its label, or
a label (a file ending with the suffix) without an image of the same BASE, is reported.

Annotations. ``--coco FILE`` (images in ``--input``) or ``--labelme FOLDER`` read leaves from
COCO or LabelMe JSON instead of label images, through ``leafseg.data.annotations`` (formats, tool
variants, sample ids, categories and the crowd rule are described there). Every other rule
here holds, except pairing, ``--min-area`` (an annotation covering no pixel is dropped, noted)
and ids; ``--size-mismatch`` applies to an image whose file differs from its annotated size. An
image with a crowd region (``iscrowd: 1``; not CVAT's masks, which it marks so) is reported and
not prepared: the layout has no place for crowd regions (``LeafDataset.load_coco`` reads them as
crowd boxes). An image with no annotation (of the chosen categories) is left out and counted as
"not annotated", not as bad: exports list every image of a task, annotated or not, and such an
image has nothing to teach. ``source_label`` is the
JSON file; ``sample.json`` names the annotation of each mask. A photograph stored with an EXIF
orientation (a phone's portrait photo: landscape pixels, "turn 90 degrees") is annotated as the
tools show it, turned; its bytes are kept, and its masks turned onto its stored pixels, which is
what training and ``predict`` read (noted; rules in ``annotations.to_stored_pixels``).

Classes. Without ``--classes`` every leaf is one class, leaf (``--category`` choosing which
categories are leaves). ``--classes leaf,stem`` keeps those categories as classes, ids 1..N in
that order, and ignores the others; ``--classes all`` keeps every category that has
annotations, COCO's in category id order, LabelMe's labels by name (Roboflow's dataset-named
parent category has none). Then ``OUT/classes.json`` is the JSON list of class names in id
order (``["leaf", "stem"]``), written atomically before any sample, and each ``sample.json``
has ``classes``: the class name of each mask in mask order (``<id>_<k>.png`` -> ``classes[k]``).
One output holds one set of classes: a rerun with other ``--classes`` (or without, into an
output that has a ``classes.json``, or with, into one prepared without) is an error naming both,
unless ``--overwrite`` (which redoes every sample and rewrites or removes ``classes.json``). The
summary counts the instances of each class prepared.

COCO exports of several files. ``--coco`` is repeatable, and takes an export folder too: its
``*/*.json`` (else its ``*.json``). Roboflow writes one folder per split, ``train/``, ``valid/``
and ``test/``, each with its ``_annotations.coco.json`` and the images beside it; CVAT and Label
Studio write one file. Without ``--input`` each file's images are looked for beside it
(``images/`` beside it or beside its folder, else its own folder; subfolders searched too).

* Split. A file in a folder named ``train`` (``training``) goes to train; ``valid``, ``val``,
  ``validation`` and ``test`` (``testing``) to val: the layout has train and val only, and
  ``leafseg evaluate`` reads val, so a held-out test set is evaluated there (to keep it unseen,
  leave its file out and prepare it into another output). The files' split is kept when they
  name both a train and a val split, and then overrides the seeded split: ``--val-fraction``
  and ``--val-ids`` apply only to the samples of files in no split folder (``--val-ids`` naming
  another sample is an error). One split alone (only ``train/``) is split by the seed as usual.
* Ids. A file in a split folder prefixes its folder's name to its sample ids, always (not only
  on a clash, so ids stay the same whether one split or the whole export is prepared):
  ``valid/_annotations.coco.json``'s ``IMG_1_jpg.rf.3f2a.jpg`` -> ``valid_IMG_1_jpg.rf.3f2a``.
  An id that two files still share is a problem ("duplicate id"); the later file's image is left out.

Sample ids. ``BASE`` for files directly in ``--input``; in a subfolder the relative folder is
prefixed, its parts joined by ``_``: ``train/plant00001_rgb.png`` -> ``train_plant00001``.
Always prefixing (not only on a clash) keeps ids stable when folders are added later; CVPPP's
A1..A4 all hold a ``plant001``.

Split. A sample goes to ``val`` iff ``sha256("<seed>:<id>")``, read as a fraction in [0, 1), is
below ``--val-fraction``. It depends on (seed, id) alone: not on ``--workers``, file order or
the other samples, so adding samples never moves the existing ones. The val share is
``--val-fraction`` on average (binomial spread: 20 % +- 4 % for 100 samples, +- 0.4 % for 10,000).
A few samples can leave val empty; the warning then names the smallest ``--val-fraction`` that
puts one there. ``--val-ids a,b`` (or ``@FILE``, one id per line) chooses the val samples
instead: exactly those, every other one to train; an id that names no sample is an error.

Instances. One per distinct label colour (full RGB triple) or id, in ascending colour / id
order; colours covering fewer than ``--min-area`` pixels are dropped as noise (noted). See
``leafseg.data.masks``.

Size mismatch. When image and label sizes differ, ``--size-mismatch`` decides:

* ``resize`` (default): the label is scaled to the image size by nearest neighbour (pixel
  centres matched), so leaves stay crisp and no new colours appear.
* ``crop``: the label is centre-cropped (or padded with background) to the image size.
* ``error``: the sample is reported as bad and not prepared.

``resize`` is the default because such pairs are, as far as we know, the same camera view saved
at two resolutions: the seed post's 500x500 images with 550x550 masks have the same aspect ratio
and the generator renders both at 550x550, i.e. the images were scaled, not cropped. A scaled
label lines up with its image; a cropped one would be off by up to 25 px at the border. It is
never silent: every mismatch is counted in the summary, the first ones are logged, each is
noted in ``manifest.csv`` (with "aspect ratio changed" when the label is stretched), and
``--size-mismatch error`` lists them all as bad samples instead.

Images. An image file is kept byte for byte when it is a PNG, JPEG (MPO too), TIFF or BMP (the formats
``LeafDataset.load_leaves`` finds and ``mrcnn.dataset.load_image_file`` reads): written as
``<id>/images/<id><suffix>``, its own suffix lower-cased (``.JPG`` -> ``.jpg``), or the format's
(``.jpg``, ``.png``, ``.tif``, ``.bmp``) when its name says another. A PNG is checked without
decoding (chunk CRCs); the others are decoded once, so a truncated JPEG is a bad sample. Only
other formats (WebP, GIF, ...) are read with ``load_image_file`` (RGB uint8) and re-encoded as
PNG, noted in ``manifest.csv``. LabelMe's embedded ``imageData`` is written the same way, its
bytes kept when its format is one of the four. ``sample.json`` names the image file written
(``image``) and whether its bytes were ``kept`` or ``re-encoded`` (``image_bytes``).

Reruns. A sample is written into ``OUT/<subset>/.tmp-<id>-<pid>`` and renamed into place when
complete, so a sample folder with its ``sample.json`` is a finished sample and an interrupted
run leaves only temporary folders, removed by the next run (do not run two prepares into one
output at once). A rerun skips finished samples (changed options or inputs need
``--overwrite``), moves a finished sample whose subset changed (another ``--seed``,
``--val-fraction`` or ``--val-ids``: give ``--val-ids`` again on reruns, or the samples move
back to the seeded split), and rebuilds ``manifest.csv`` from the ``sample.json`` files on disk,
rewriting it only when its content changes. The input folder is only read.

Bad input. An unreadable, truncated or non-image file, a missing partner, a label without
leaves, more than ``--max-leaves`` colours (a photo or a JPEG-compressed label) or a size
mismatch under ``error``: one log line naming the file and the reason, nothing written for that
sample, counted by reason in the summary. The command exits with 1 when nothing could be
prepared, or with ``--strict`` when anything was bad; 2 for unusable arguments.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from mrcnn.dataset import load_image_file
from mrcnn.fileio import write_text_atomic

from leafseg import counted
from leafseg.data.annotations import (AnnotatedImage, Problem, _sanitise, class_names, exif_orientation, read_coco,
                                      read_embedded_image, read_labelme, region_masks, to_stored_pixels)
from leafseg.data.masks import DEFAULT_MIN_AREA, LabelError, read_label, split_instances

__all__ = [
    "DEFAULT_IMAGE_GLOB", "DEFAULT_LABEL_SUFFIX", "DEFAULT_MAX_LEAVES", "SIZE_MISMATCH_RULES",
    "SUBSETS", "MANIFEST_COLUMNS", "CLASSES_NAME", "KEPT_IMAGE_FORMATS", "Sample", "Problem", "SampleReport",
    "PrepareResult", "SPLIT_FOLDERS", "CocoFile", "coco_files", "default_images_folder",
    "find_samples", "assign_subset", "smallest_val_fraction", "read_id_list", "fit_label", "prepare_dataset",
    "write_manifest",
    ]

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_GLOB = "*_rgb.png"
DEFAULT_LABEL_SUFFIX = "_label.png"
# A plant has at most a few dozen visible leaves (CVPPP A1: 11..20, the generator: 4..22);
# hundreds of colours mean a photograph or a lossy (JPEG) label.
DEFAULT_MAX_LEAVES = 500
SIZE_MISMATCH_RULES = ("resize", "crop", "error")
SUBSETS = ("train", "val")
# An export's split folders (lower-cased) -> subset. The layout has no test subset: test goes to val.
SPLIT_FOLDERS = {"train": "train", "training": "train", "valid": "val", "val": "val", "validation": "val",
                 "test": "val", "testing": "val"}
MANIFEST_NAME = "manifest.csv"
CLASSES_NAME = "classes.json"
MANIFEST_COLUMNS = ("id", "subset", "leaf_count", "height", "width", "source_image", "source_label", "note")
SAMPLE_META = "sample.json"
_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"
_RGB_SUFFIX = "_rgb"
# Masks are mostly long runs of 0 and 255: no PNG row filter plus zlib's run-length strategy at
# level 1 encodes a 500x500 mask in about 0.5 ms (vs about 4 ms with OpenCV's defaults).
_MASK_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
                    cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
_IMAGE_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]
# Image formats kept byte for byte (LeafDataset.load_leaves finds these suffixes, mrcnn's
# load_image_file reads them), with their suffixes: the file's own when it is one of them, else the first.
# MPO is a JPEG with more pictures appended (phones and stereo cameras write it as .jpg); the first is read.
KEPT_IMAGE_FORMATS = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "MPO": (".jpg", ".jpeg"), "TIFF": (".tif", ".tiff"),
                      "BMP": (".bmp",)}
_MISMATCHES_LOGGED = 10


# ---------------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """An image and its label image; ``id`` names the output folder."""

    id: str
    image: Path
    label: Path


@dataclass(frozen=True)
class SampleReport:
    """The outcome of ``prepare_sample``: ``problem`` is set iff the sample was bad."""

    id: str
    subset: str
    problem: Problem | None = None
    leaf_count: int = 0
    mismatch: str = ""  # what was done about a size mismatch, "" if there was none
    dropped: int = 0    # regions below min_area
    classes: tuple[str, ...] = ()  # with --classes: the class of each mask


@dataclass
class PrepareResult:
    """What ``prepare_dataset`` did; the lists hold sample ids."""

    output_dir: Path
    manifest: Path
    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # finished by an earlier run
    moved: list[str] = field(default_factory=list)     # finished earlier, subset changed
    problems: list[Problem] = field(default_factory=list)
    size_mismatches: list[tuple[str, str]] = field(default_factory=list)  # (id, what was done)
    dropped_regions: int = 0
    ignored_files: int = 0
    subset_counts: dict[str, int] = field(default_factory=dict)  # samples per subset in the manifest
    export_split: dict[str, str] = field(default_factory=dict)  # COCO file -> the subset its folder gives
    classes: list[str] | None = None  # with --classes: OUT/classes.json
    class_instances: Counter = field(default_factory=Counter)  # instances of each class prepared by this run
    unannotated: list[str] = field(default_factory=list)  # annotated inputs' images without an annotation: left out

    @property
    def bad_by_reason(self) -> dict[str, int]:
        return dict(Counter(problem.reason for problem in self.problems))

    @property
    def finished(self) -> int:
        """Samples of this input that are prepared in the output after this run."""
        return len(self.prepared) + len(self.skipped) + len(self.moved)

    def summary(self) -> str:
        bad = ", ".join(f"{reason} {count}" for reason, count in sorted(self.bad_by_reason.items()))
        subsets = ", ".join(f"{name} {self.subset_counts.get(name, 0)}" for name in SUBSETS)
        lines = ["split kept from the export: " + ", ".join(f"{path} -> {subset}" for path, subset
                                                             in self.export_split.items())] if self.export_split else []
        lines += [
            f"prepared {len(self.prepared)}, skipped (already prepared) {len(self.skipped)}, "
            f"moved to another subset {len(self.moved)}, bad {len(self.problems)}" + (f" ({bad})" if bad else "")
            + (f", not annotated (left out) {len(self.unannotated)}" if self.unannotated else ""),
            f"size mismatches resolved: {len(self.size_mismatches)}; regions under --min-area dropped: "
            f"{self.dropped_regions}; other files ignored: {self.ignored_files}",
            *([f"classes ({CLASSES_NAME}): " + (", ".join(f"{name} {self.class_instances[name]}"
                                                   for name in self.classes) or "none") + " instances prepared"]
              if self.classes is not None else []),
            f"manifest: {self.manifest} ({subsets})" if self.manifest.exists() else
            f"nothing prepared: no output folder left at {self.output_dir}",
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Options:
    size_mismatch: str
    min_area: int
    max_leaves: int
    classes: bool = False  # write each mask's class (the region's category) into sample.json


class _BadSample(Exception):
    def __init__(self, path, reason: str, detail: str):
        super().__init__(f"{path}: {reason}: {detail}")
        self.problem = Problem(Path(path), reason, detail)


# ---------------------------------------------------------------------------------------------
# Finding pairs and assigning subsets
# ---------------------------------------------------------------------------------------------

def _base(name: str) -> str:
    stem = Path(name).stem
    return stem[: -len(_RGB_SUFFIX)] if stem.endswith(_RGB_SUFFIX) and len(stem) > len(_RGB_SUFFIX) else stem


def find_samples(input_dir, image_glob: str = DEFAULT_IMAGE_GLOB, label_suffix: str = DEFAULT_LABEL_SUFFIX,
                 exclude: Iterable = ()) -> tuple[list[Sample], list[Problem], int]:
    """Pair images with labels under ``input_dir`` (rules in the module docstring).

    Args:
        exclude: folders not to search (e.g. the output folder when it lies inside the input).

    Returns:
        (samples sorted by id, problems: unpaired files and duplicate ids, number of other files).
    """
    input_dir = Path(input_dir)
    excluded = {Path(p).resolve() for p in exclude}
    samples: dict[str, Sample] = {}
    problems: list[Problem] = []
    ignored = 0
    for dirpath, dirnames, filenames in os.walk(input_dir):
        folder = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (folder / d).resolve() not in excluded)
        rel = folder.relative_to(input_dir)
        prefix = "_".join(rel.parts) + "_" if rel.parts else ""
        labels = {name for name in filenames if name.endswith(label_suffix)}
        paired: set[str] = set()
        for name in sorted(set(filenames) - labels):
            if not fnmatchcase(name, image_glob):
                ignored += 1
                continue
            base = _base(name)
            label_name = base + label_suffix
            if label_name not in labels:
                problems.append(Problem(folder / name, "image without label", f"no {label_name} next to it"))
                continue
            paired.add(label_name)
            sample = Sample(prefix + base, folder / name, folder / label_name)
            if sample.id in samples:
                problems.append(Problem(sample.image, "duplicate id",
                                        f"sample id {sample.id!r} is already used by {samples[sample.id].image}"))
                continue
            samples[sample.id] = sample
        for name in sorted(labels - paired):
            problems.append(Problem(folder / name, "label without image",
                                    f"no file matching {image_glob!r} with base {name[: -len(label_suffix)]!r} next to it"))
    return sorted(samples.values(), key=lambda s: s.id), problems, ignored


def assign_subset(sample_id: str, seed: int = 0, val_fraction: float = 0.2) -> str:
    """``"val"`` iff sha256("<seed>:<id>") as a fraction in [0, 1) is below val_fraction."""
    return "val" if _split_value(sample_id, seed) < val_fraction else "train"


def _split_value(sample_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def smallest_val_fraction(sample_ids: Iterable[str], seed: int = 0, step: float = 0.01) -> float:
    """The smallest multiple of ``step`` that :func:`assign_subset` turns into at least one val
    sample among ``sample_ids`` (at most 1.0)."""
    lowest = min(_split_value(sample_id, seed) for sample_id in sample_ids)
    multiple = int(lowest / step) + 1
    while round(multiple * step, 10) <= lowest:  # lowest / step rounded down past a multiple
        multiple += 1
    return min(1.0, round(multiple * step, 10))


def read_id_list(text: str) -> list[str]:
    """Sample ids from ``a,b,c``, or from a text file (``@FILE`` or an existing path) of one id
    per line (blank lines and lines starting with ``#`` are skipped)."""
    path = Path(text[1:]) if text.startswith("@") else Path(text)
    if text.startswith("@") or path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise ValueError(f"cannot read the id list {path}: {err.strerror or err}") from err
        ids = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    else:
        ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise ValueError(f"no sample ids in {text!r}")
    return ids


# ---------------------------------------------------------------------------------------------
# COCO exports of several files
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CocoFile:
    """A COCO file, the folder of its images, and its export split folder's name ("" if its
    folder names no split) and the subset that name means."""

    path: Path
    images: Path
    split: str = ""
    subset: str | None = None


def default_images_folder(coco) -> Path:
    """Where an export keeps the images of its COCO file: ``images/`` beside it (Label Studio's
    result.json; labelme2coco leaves the images where they were: give ``--input``),
    ``images/`` beside its folder (CVAT's annotations/instances_default.json), else the JSON's
    own folder (Roboflow's train/_annotations.coco.json, its images beside it)."""
    here = Path(coco).resolve().parent
    return next((folder for folder in (here / "images", here.parent / "images") if folder.is_dir()), here)


def coco_files(coco, images_dir=None) -> list[CocoFile]:
    """The COCO files of ``coco``: a file, an export folder (its ``*/*.json``, else its
    ``*.json``), or a list of them; each with its images folder (``images_dir``, else
    :func:`default_images_folder`) and the split its folder names (module docstring).

    Raises FileNotFoundError naming a path that is missing or a folder without a JSON file.
    """
    paths = [coco] if isinstance(coco, (str, os.PathLike)) else list(coco)
    found: dict[Path, Path] = {}  # resolved -> as given
    for given in map(Path, paths):
        if given.is_dir():
            files = sorted(given.glob("*/*.json")) or sorted(given.glob("*.json"))
            if not files:
                raise FileNotFoundError(f"no COCO *.json file in {given} or in its split folders "
                                        f"({', '.join(f'{name}/' for name in SPLIT_FOLDERS)})")
        elif given.is_file():
            files = [given]
        else:
            raise FileNotFoundError(f"annotation file not found: {given}")
        for path in files:
            found.setdefault(path.resolve(), path)
    result = []
    for path in found.values():
        split = path.parent.resolve().name
        subset = SPLIT_FOLDERS.get(split.lower())
        result.append(CocoFile(path, Path(images_dir) if images_dir is not None else default_images_folder(path),
                               split if subset else "", subset))
    return result


def _read_coco_files(files: list[CocoFile], categories) -> tuple[list[AnnotatedImage], list[Problem], dict]:
    """(images of every file, their ids prefixed with their split folder's name, sorted by id;
    problems; {sample id: subset} when the files' folders name both a train and a val split)."""
    keep_split = {"train", "val"} <= {file.subset for file in files}
    samples, problems, subsets, owners = [], [], {}, {}
    for file in files:
        images, found = read_coco(file.path, file.images, categories)
        problems.extend(found)
        for image in images:
            if file.split:
                image = replace(image, id=f"{_sanitise(file.split)}_{image.id}")
            if image.id in owners:
                problems.append(Problem(file.path, "duplicate id", f"{image.ref}: sample id {image.id!r} is "
                                        f"already used by {owners[image.id]}; left out"))
                continue
            owners[image.id] = f"{image.ref} of {file.path}"
            samples.append(image)
            if keep_split and file.subset:
                subsets[image.id] = file.subset
    return sorted(samples, key=lambda image: image.id), problems, subsets


# ---------------------------------------------------------------------------------------------
# One sample
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _ImageOut:
    """The image file to write: ``data`` (None: copy the source file as it is) as ``<id><suffix>``;
    ``note``: why it was re-encoded, "" when its bytes are kept."""

    data: bytes | None
    suffix: str
    note: str = ""
    orientation: int = 1  # the file's EXIF orientation: how viewers (and annotation tools) turn it


def _inspect_image(path: Path, data: bytes | None = None) -> tuple[int, int, _ImageOut]:
    """(height, width, what to write). A file in a kept format is checked and kept byte for byte
    (module docstring); any other is read with ``load_image_file`` and re-encoded as PNG.

    data: the image file's bytes when they are not in a file of their own (LabelMe imageData;
    ``path`` then names the file they come from).
    """
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as im:
            width, height, kind = im.width, im.height, im.format
            if kind == "PNG":
                im.verify()  # chunk CRCs: catches truncated / corrupt files without decoding
            elif kind in KEPT_IMAGE_FORMATS:
                im.load()  # decodes: a truncated JPEG fails here (OpenCV would fill it with grey)
            orientation = exif_orientation(im)
    except UnidentifiedImageError:
        raise _BadSample(path, "unreadable image", "not an image (unrecognised file format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise _BadSample(path, "unreadable image", f"cannot decode ({err}); truncated or corrupt file?") from err
    if kind in KEPT_IMAGE_FORMATS:
        own = path.suffix.lower() if data is None else ""
        return height, width, _ImageOut(data, own if own in KEPT_IMAGE_FORMATS[kind] else KEPT_IMAGE_FORMATS[kind][0],
                                        orientation=orientation)
    try:
        if data is None:
            rgb = load_image_file(path)
        else:
            with Image.open(io.BytesIO(data)) as im:
                rgb = np.asarray(im.convert("RGB"))
    except OSError as err:
        raise _BadSample(path, "unreadable image", str(err)) from err
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), _IMAGE_PNG_PARAMS)
    if not ok:
        raise OSError(f"PNG encoding failed for the image of {path}")
    return rgb.shape[0], rgb.shape[1], _ImageOut(png.tobytes(), ".png", f"image re-encoded as PNG (a {kind} file)",
                                                 orientation)  # its stored pixels, unturned


def _resize_nearest(label: np.ndarray, height: int, width: int) -> np.ndarray:
    # Pixel centres matched, (i + 0.5) * in / out, as mrcnn.utils resizes masks.
    rows = np.minimum(((np.arange(height) + 0.5) * label.shape[0] / height).astype(np.intp), label.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * label.shape[1] / width).astype(np.intp), label.shape[1] - 1)
    return label[rows[:, np.newaxis], cols]


def _centre_fit(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop and/or pad with background (0) to [height, width]."""
    out = np.zeros((height, width) + label.shape[2:], dtype=label.dtype)
    src, dst = [], []
    for have, want in zip(label.shape[:2], (height, width)):
        n = min(have, want)
        src.append(slice((have - n) // 2, (have - n) // 2 + n))
        dst.append(slice((want - n) // 2, (want - n) // 2 + n))
    out[tuple(dst)] = label[tuple(src)]
    return out


def fit_label(label: np.ndarray, height: int, width: int, rule: str, label_path: Path) -> tuple[np.ndarray, str]:
    """Make ``label`` [h, w(, C)] the image's size by ``rule`` (resize, crop or error; see above).

    Returns (label [height, width(, C)], a note describing what was done, "" if nothing).
    Raises an exception naming ``label_path`` under the "error" rule.
    """
    lh, lw = label.shape[:2]
    if (lh, lw) == (height, width):
        return label, ""
    sizes = f"from {lw}x{lh} to {width}x{height} (width x height)"
    if rule == "error":
        raise _BadSample(label_path, "size mismatch",
                         f"label is {lw}x{lh} but its image is {width}x{height} (width x height); "
                         "choose --size-mismatch resize or crop")
    if rule == "resize":
        note = f"label resized {sizes}, nearest neighbour"
        if abs(np.log((lw / lh) / (width / height))) > 0.01:
            note += "; aspect ratio changed"
        return _resize_nearest(label, height, width), note
    return _centre_fit(label, height, width), f"label centre-cropped/padded {sizes}"


def _is_finished(sample_dir: Path) -> bool:
    return (sample_dir / SAMPLE_META).is_file()


def _rmtree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _read_label_pair(sample: Sample, options: _Options):
    try:
        label = read_label(sample.label)
    except LabelError as err:
        raise _BadSample(sample.label, "unreadable label", err.reason) from err
    height, width, image = _inspect_image(sample.image)
    label, mismatch = fit_label(label, height, width, options.size_mismatch, sample.label)
    split = split_instances(label, 0, options.min_area)
    if split.count == 0:
        detail = "no leaves: every pixel is background"
        if len(split.dropped_areas):
            detail = f"no leaves: all {len(split.dropped_areas)} regions are under --min-area {options.min_area} px"
        raise _BadSample(sample.label, "empty label", detail)
    _check_leaf_count(sample, split.count, options, "distinct values", "; a photograph or a JPEG-compressed label?")
    notes = [note for note in (mismatch, image.note) if note]
    if len(split.dropped_areas):
        notes.append(f"{len(split.dropped_areas)} regions under {options.min_area} px dropped")
    details = {
        "leaf_values": [np.asarray(key).tolist() for key in split.keys],  # mask k <- label value k
        "leaf_areas": split.areas.tolist(),
        "dropped": [[np.asarray(key).tolist(), int(area)] for key, area in zip(split.dropped_keys, split.dropped_areas)],
    }
    # 0 / 255 uint8 in one SIMD pass (index is uint8 or uint16: max_leaves <= 65535).
    masks = (cv2.compare(split.index, k + 1, cv2.CMP_EQ) for k in range(split.count))
    return height, width, image, split.count, masks, mismatch, notes, len(split.dropped_areas), details


def _read_annotated(sample: AnnotatedImage, options: _Options):
    if sample.embedded:
        try:
            data = read_embedded_image(sample.label)
        except OSError as err:
            raise _BadSample(sample.label, "unreadable image", str(err)) from err
        height, width, image = _inspect_image(sample.label, data)
    else:
        height, width, image = _inspect_image(sample.image)
    masks, _ = region_masks(sample)  # images with crowd regions are not prepared (module docstring)
    masks, turned = to_stored_pixels(masks, image.orientation, height, width)
    masks, mismatch = fit_label(masks, height, width, options.size_mismatch, sample.label)
    areas = masks.sum(axis=(0, 1))
    kept = np.flatnonzero(areas)
    if not len(kept):
        raise _BadSample(sample.label, "empty label", f"{sample.ref}: no leaves (no leaf annotation covers a pixel)")
    _check_leaf_count(sample, len(kept), options, f"leaf annotations in {sample.ref}")
    notes = [note for note in (mismatch, image.note) if note]
    if turned:
        notes.append(f"masks turned from the photograph as shown (EXIF orientation {image.orientation}) onto its "
                     "stored pixels")
    if sample.embedded:
        notes.append("image from the JSON's imageData")
    dropped = [sample.regions[k].annotation for k in np.flatnonzero(areas == 0)]
    if dropped:
        notes.append(f"{len(dropped)} annotations covering no pixel dropped")
    details = {"annotations": [sample.regions[k].annotation for k in kept],  # mask k <- annotation k
               "leaf_areas": areas[kept].tolist(), "dropped": dropped}
    if options.classes:
        details["classes"] = [sample.regions[k].category for k in kept]  # mask k's class
    leaves = (masks[..., k].astype(np.uint8) * 255 for k in kept)
    return height, width, image, len(kept), leaves, mismatch, notes, len(dropped), details


def _check_leaf_count(sample, count: int, options: _Options, unit: str, hint: str = "") -> None:
    if count > options.max_leaves:
        raise _BadSample(sample.label, "too many leaves",
                         f"{count} {unit} (limit --max-leaves {options.max_leaves}){hint}")


def _prepare_one(job: tuple[Sample | AnnotatedImage, str, str, _Options]) -> SampleReport:
    """Write one sample to ``output_dir/subset/<id>``, replacing what is there. Bad input gives
    a report with ``problem`` set and writes nothing; failing to write (disk full) raises."""
    sample, output_dir, subset, options = job
    read = _read_annotated if isinstance(sample, AnnotatedImage) else _read_label_pair
    try:
        height, width, image, count, masks, mismatch, notes, dropped, details = read(sample, options)
    except _BadSample as bad:
        return SampleReport(sample.id, subset, problem=bad.problem)
    meta = {
        "id": sample.id,
        "leaf_count": count,
        "height": height,
        "width": width,
        "source_image": str(sample.image.resolve()),
        "source_label": str(sample.label.resolve()),
        "image": f"images/{sample.id}{image.suffix}",
        "image_bytes": "re-encoded" if image.note else "kept",
        "note": "; ".join(notes),
        **details,
    }
    _write_sample(sample, Path(output_dir) / subset, meta, image, masks)
    return SampleReport(sample.id, subset, leaf_count=count, mismatch=mismatch, dropped=dropped,
                        classes=tuple(details.get("classes", ())))


def _write_sample(sample: Sample | AnnotatedImage, subset_dir: Path, meta: dict, image: _ImageOut,
                  masks: Iterable[np.ndarray]) -> None:
    final = subset_dir / sample.id
    tmp = subset_dir / f"{_TMP_PREFIX}{sample.id}-{os.getpid()}"
    _rmtree(tmp)
    try:
        (tmp / "images").mkdir(parents=True)
        (tmp / "masks").mkdir()
        # A new folder each time: an --overwrite with another suffix leaves no older image beside.
        image_out = tmp / "images" / f"{sample.id}{image.suffix}"
        if image.data is None:
            shutil.copyfile(sample.image, image_out)
        else:
            image_out.write_bytes(image.data)
        for k, mask in enumerate(masks):
            ok, data = cv2.imencode(".png", mask, _MASK_PNG_PARAMS)
            if not ok:
                raise OSError(f"PNG encoding failed for mask {k} of {sample.label}")
            (tmp / "masks" / f"{sample.id}_{k}.png").write_bytes(data.tobytes())
        # One key per line: readable, and short lists stay on one line.
        (tmp / SAMPLE_META).write_text("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items())
                                       + "\n}\n")
        if final.exists():  # --overwrite, or a folder without sample.json
            old = subset_dir / f"{_OLD_PREFIX}{sample.id}-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------
# A dataset
# ---------------------------------------------------------------------------------------------

def _run_jobs(jobs: list, workers: int) -> Iterator[SampleReport]:
    if workers == 1 or len(jobs) <= 1:
        yield from map(_prepare_one, jobs)
        return
    # spawn: safe next to TensorFlow or other threaded libraries in the parent process.
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(_prepare_one, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))


def _remove_stale(subset_dir: Path) -> None:
    for entry in subset_dir.iterdir():
        if entry.name.startswith((_TMP_PREFIX, _OLD_PREFIX)) and entry.is_dir():
            logger.info("removing %s, left by an interrupted run", entry)
            shutil.rmtree(entry)


def write_manifest(output_dir) -> tuple[Path, dict[str, int]]:
    """Rebuild ``OUT/manifest.csv`` from the ``sample.json`` files on disk.

    Rows sorted by (subset, id); written atomically, and only when the content changes.
    Returns (path, samples per subset).
    """
    output_dir = Path(output_dir)
    rows, counts = [], {}
    for subset in SUBSETS:
        subset_dir = output_dir / subset
        names = sorted(os.listdir(subset_dir)) if subset_dir.is_dir() else []
        for name in names:
            sample_dir = subset_dir / name
            if name.startswith(".") or not sample_dir.is_dir():
                continue
            try:
                meta = json.loads((sample_dir / SAMPLE_META).read_text())
                rows.append([meta["id"], subset] + [meta[column] for column in MANIFEST_COLUMNS[2:]])
            except (OSError, ValueError, KeyError) as err:
                logger.warning("%s: not a finished sample (%s: %s); left out of the manifest",
                               sample_dir, type(err).__name__, err)
                continue
            counts[subset] = counts.get(subset, 0) + 1
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    path = output_dir / MANIFEST_NAME
    text = buffer.getvalue()
    if not path.is_file() or path.read_text() != text:
        write_text_atomic(path, text)
    return path, counts


def prepare_dataset(input_dir, output_dir, *, val_fraction: float = 0.2, seed: int = 0, workers: int = 1,
                    val_ids: Iterable[str] | None = None, overwrite: bool = False, size_mismatch: str = "resize",
                    image_glob: str = DEFAULT_IMAGE_GLOB, label_suffix: str = DEFAULT_LABEL_SUFFIX,
                    min_area: int = DEFAULT_MIN_AREA, max_leaves: int = DEFAULT_MAX_LEAVES,
                    coco=None, labelme: bool = False, categories: Iterable[str] | None = None,
                    classes: Sequence[str] | str | None = None, progress: bool | None = False) -> PrepareResult:
    """Prepare every image/label pair under ``input_dir`` into ``output_dir`` (see the module
    docstring for the rules). Problems are logged as they are found and returned.

    Args:
        coco: COCO instances JSON files instead of label images: a file, an export folder, or a
            list of them (:func:`coco_files`), their images in ``input_dir`` or, when it is None,
            beside each file (:func:`default_images_folder`); labelme: ``input_dir`` is a folder
            of LabelMe JSON files. Either reads through :mod:`leafseg.data.annotations`;
            ``categories``: the category names that are leaves (None: all).
        classes: with annotations, keep these categories as classes, in this order (instead of
            ``categories``: the others are ignored), or ``"all"`` for every category with
            annotations (:func:`leafseg.data.annotations.class_names`); writes ``classes.json``
            and each mask's class (module docstring). None: one class, leaf.
        val_ids: the ids of the val samples (every other sample goes to train); None: the
            seeded split by ``val_fraction``. Neither applies to the samples of COCO files whose
            export gives their split (module docstring).
        progress: tqdm progress bar; None shows it only on a terminal.

    Raises:
        FileNotFoundError / NotADirectoryError: ``input_dir`` is not a folder.
        ValueError: an option out of range, a ``val_ids`` id that names no sample, or the input
            is the output folder or inside the output's train/ or val/; for annotations also an
            unreadable COCO file or an unknown category name; ``classes`` other than those the
            output was prepared with (without ``overwrite``).
    """
    if input_dir is None and coco is None:
        raise ValueError("an input folder is needed unless COCO files are given")
    input_dir, output_dir = None if input_dir is None else Path(input_dir), Path(output_dir)
    if input_dir is not None and not input_dir.exists():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    if input_dir is not None and not input_dir.is_dir():
        raise NotADirectoryError(f"input is not a folder: {input_dir}")
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    if workers < 1 or min_area < 1 or not 1 <= max_leaves <= np.iinfo(np.uint16).max:
        raise ValueError(f"need workers >= 1, min_area >= 1 and max_leaves in 1..65535; "
                         f"got {workers}, {min_area}, {max_leaves}")
    if size_mismatch not in SIZE_MISMATCH_RULES:
        raise ValueError(f"size_mismatch must be one of {SIZE_MISMATCH_RULES}, got {size_mismatch!r}")
    if not label_suffix:
        raise ValueError("label_suffix must not be empty")
    if classes is not None:
        if coco is None and not labelme:
            raise ValueError("classes need COCO or LabelMe annotations (--coco or --labelme)")
        if categories is not None:
            raise ValueError("give classes or categories, not both: the classes are the categories read")
        if classes != "all":
            classes = [str(name) for name in ([classes] if isinstance(classes, str) else classes)]
            twice = sorted(name for name, count in Counter(classes).items() if count > 1)
            if not classes or twice:
                raise ValueError(f"classes must name each category once; got {classes}")
            categories = classes
    files = coco_files(coco, input_dir) if coco is not None else []
    resolved_out = output_dir.resolve()
    written = [resolved_out / subset for subset in SUBSETS]
    for folder in dict.fromkeys([input_dir] if input_dir is not None else [file.images for file in files]):
        resolved_in = folder.resolve()
        if resolved_in == resolved_out or any(w == resolved_in or w in resolved_in.parents for w in written):
            raise ValueError(f"the input folder {folder} must not be the output folder {output_dir} "
                             "or lie in its train/ or val/")

    export_subsets: dict[str, str] = {}  # sample id -> the subset its COCO file's split folder gives
    if coco is not None or labelme:
        if coco is not None:
            samples, problems, export_subsets = _read_coco_files(files, categories)
        else:
            samples, problems = read_labelme(input_dir, categories)
        ignored = 0
        for sample in [s for s in samples if s.has_crowd]:
            crowds = ", ".join(r.annotation for r in sample.regions if r.crowd)
            problems.append(Problem(sample.label, "crowd region",
                                    f"{sample.ref}: {crowds} marked iscrowd; the prepared layout has no place for "
                                    "crowd regions, so the image is not prepared (LeafDataset.load_coco reads it, "
                                    "crowds as crowd boxes)"))
            samples.remove(sample)
        # An image with no annotation of the chosen categories (exports list every image of a
        # task, annotated or not) teaches nothing: it is left out and counted, not a bad input.
        unannotated = [sample.id for sample in samples if not sample.regions]
        samples = [sample for sample in samples if sample.regions]
        if unannotated:
            logger.info("%s no leaf annotation, left out: %s%s", counted(len(unannotated), "image has", "images have"),
                        ", ".join(unannotated[:5]), ", ..." if len(unannotated) > 5 else "")
    else:
        unannotated = []
        samples, problems, ignored = find_samples(input_dir, image_glob, label_suffix, exclude=[output_dir])
    if val_ids is not None:
        val_ids = set(val_ids)
        where = input_dir if input_dir is not None else ", ".join(str(file.path) for file in files)
        unknown = sorted(val_ids - {sample.id for sample in samples})
        if unknown:
            known = ", ".join(sample.id for sample in samples[:3]) + (", ..." if len(samples) > 3 else "")
            raise ValueError(f"--val-ids names {len(unknown)} id(s) that are no sample of {where}: "
                             f"{', '.join(unknown)} (sample ids: {known or 'none found'})")
        given = sorted(val_ids & set(export_subsets))
        if given:
            raise ValueError(f"--val-ids names {len(given)} sample(s) whose subset the export's split folders give "
                             f"({', '.join(given[:5])}{', ...' if len(given) > 5 else ''}); --val-ids chooses only "
                             "among the samples of files outside train/, valid/ and test/ folders")
    if classes == "all":
        classes = class_names(samples)
    _check_classes(output_dir, classes, overwrite)
    result = PrepareResult(output_dir, output_dir / MANIFEST_NAME, problems=list(problems), ignored_files=ignored,
                           classes=classes, unannotated=unannotated)
    if export_subsets:
        result.export_split = {str(file.path): file.subset for file in files if file.subset}
        logger.debug("split kept from the export: %s", ", ".join(f"{p} -> {s}" for p, s in result.export_split.items()))
    for problem in problems:
        logger.warning("%s", problem)
    created = not output_dir.exists()
    for subset in SUBSETS:
        (output_dir / subset).mkdir(parents=True, exist_ok=True)
        _remove_stale(output_dir / subset)

    classes_path = output_dir / CLASSES_NAME
    if classes is not None:  # before the samples: a sample with classes is never without its classes.json
        text = json.dumps(classes) + "\n"
        if not classes_path.is_file() or classes_path.read_text() != text:
            write_text_atomic(classes_path, text)
    elif classes_path.is_file():  # --overwrite without --classes: one class again
        classes_path.unlink()
    options = _Options(size_mismatch, min_area, max_leaves, classes is not None)
    jobs = []
    for sample in samples:
        if sample.id in export_subsets:
            subset = export_subsets[sample.id]
        elif val_ids is None:
            subset = assign_subset(sample.id, seed, val_fraction)
        else:
            subset = "val" if sample.id in val_ids else "train"
        final = output_dir / subset / sample.id
        elsewhere = output_dir / _other(subset) / sample.id
        if not overwrite and _is_finished(final):
            result.skipped.append(sample.id)
        elif not overwrite and _is_finished(elsewhere):
            _rmtree(final)
            os.rename(elsewhere, final)
            result.moved.append(sample.id)
        else:
            jobs.append((sample, str(output_dir), subset, options))

    with logging_redirect_tqdm(), tqdm(total=len(samples), initial=len(samples) - len(jobs), unit="img",
                                        desc=f"prepare -> {output_dir}",
                                        disable=None if progress is None else not progress) as bar:
        labels = {sample.id: sample.label for sample, *_ in jobs}
        for report in _run_jobs(jobs, workers):
            bar.update()
            _record(result, report, output_dir, labels[report.id])
    if created and not result.finished and not any(any((output_dir / subset).iterdir()) for subset in SUBSETS):
        # Nothing prepared into a folder this call made: leave no empty layout behind.
        shutil.rmtree(output_dir, ignore_errors=True)
        return result
    result.manifest, result.subset_counts = write_manifest(output_dir)
    if result.finished and not result.subset_counts.get("val"):
        if export_subsets:
            logger.warning("the val subset is empty: none of the images of the export's val files could be prepared")
        elif val_ids is not None:
            logger.warning("the val subset is empty: none of the --val-ids could be prepared")
        elif val_fraction > 0:
            finished = result.prepared + result.skipped + result.moved
            fraction = smallest_val_fraction(finished, seed)
            count = sum(assign_subset(sample_id, seed, fraction) == "val" for sample_id in finished)
            logger.warning("the val subset is empty: with %d samples and --seed %d, --val-fraction %g puts none "
                           "in val; --val-fraction %g puts %d in val, or choose them with --val-ids ID,ID",
                           result.finished, seed, val_fraction, fraction, count)
    return result


def _describe_classes(classes: list[str] | None) -> str:
    return "one class, leaf (no --classes)" if classes is None else f"--classes {','.join(classes)}"


def _check_classes(output_dir: Path, classes: list[str] | None, overwrite: bool) -> None:
    """Refuse to mix classes in one output: its classes.json (or, when it holds samples, its
    having none) must agree with ``classes``, unless every sample is redone."""
    path = output_dir / CLASSES_NAME
    if path.is_file():
        try:
            have = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path}: not valid JSON ({err}); remove it or give --overwrite") from None
    elif any(_is_finished(d) for subset in SUBSETS if (output_dir / subset).is_dir()
             for d in (output_dir / subset).iterdir()):
        have = None
    else:
        return
    if have != classes and not overwrite:
        raise ValueError(f"{output_dir} was prepared with {_describe_classes(have)} ({path.name}), not "
                         f"{_describe_classes(classes)}: give the same classes, --overwrite to redo every sample, "
                         "or another --output")


def _other(subset: str) -> str:
    return SUBSETS[1 - SUBSETS.index(subset)]


def _record(result: PrepareResult, report: SampleReport, output_dir: Path, label: Path) -> None:
    if report.problem is not None:
        result.problems.append(report.problem)
        logger.warning("%s", report.problem)
        return
    result.prepared.append(report.id)
    result.dropped_regions += report.dropped
    result.class_instances.update(report.classes)
    # An --overwrite run can change a sample's subset: the old copy must not stay in both.
    _rmtree(output_dir / _other(report.subset) / report.id)
    if report.mismatch:
        result.size_mismatches.append((report.id, report.mismatch))
        if len(result.size_mismatches) <= _MISMATCHES_LOGGED:
            logger.warning("%s: %s", label, report.mismatch)
        if len(result.size_mismatches) == _MISMATCHES_LOGGED:
            logger.warning("further size mismatches are counted in the summary and noted in %s", MANIFEST_NAME)
