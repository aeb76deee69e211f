"""Instance annotations in COCO or LabelMe JSON -> per image: image path, size, leaf regions.

    images, problems = read_coco("annotations/instances_default.json", "images/")
    images, problems = read_labelme("labelme_folder/")
    masks, crowd = region_masks(images[0])     # bool [H, W, N], bool [N]
    polygons = mask_to_polygons(mask)          # the writing side: a mask as COCO polygons

``leafseg prepare --coco/--labelme`` and ``LeafDataset.load_coco/load_labelme`` both read
through here, so they see the same leaves. Polygons are rasterised and RLE decoded with
pycocotools, exactly as COCO's own tools do: a polygon gives the pixels pycocotools gives it
(clipped to the image), an RLE mask gives back the original mask. Several polygons of one
annotation (or LabelMe shapes sharing a ``group_id`` and label) are one leaf, their union.
LabelMe shapes are drawn as LabelMe draws them instead (below).

COCO. ``images`` (id, file_name, height, width), ``annotations`` (id, image_id, category_id,
segmentation: polygons ``[[x, y, x, y, ...], ...]``, uncompressed RLE ``{"counts": [...],
"size": [h, w]}`` or compressed RLE ``{"counts": "...", "size": [h, w]}``; iscrowd) and
``categories`` (id, name). ``file_name`` is resolved as given when absolute, then relative to
the images folder, then by its base name in the images folder; so the variants the tools write
all resolve:

* CVAT "COCO 1.0" (its images in ``images/default/``, found in subfolders; by the end of their
  path when folders repeat a file name): relative ``file_name``, possibly with subfolders; categories from id 1; polygons, or uncompressed RLE
  with ``iscrowd: 1`` for every object it exports as a mask: brush and AI (SAM) mask shapes,
  ellipses (CVAT 2.x turns them into masks), and objects given CVAT's ``is_crowd`` attribute.
  Datumaro's COCO writer sets ``iscrowd = 1`` whenever it writes RLE (cvat-ai/cvat#7030), so a
  leaf drawn with the brush comes as a crowd; and it drops ``is_crowd`` from the ``attributes``
  it writes, so the two cannot be told apart. An RLE annotation with ``iscrowd: 1`` whose
  ``attributes`` has CVAT's ``occluded`` (CVAT writes it on every object) is therefore read as a
  leaf, not a crowd (logged once per file). Rectangles come box-only (``segmentation: []``).
* Label Studio (``result.json`` with its ``images/`` beside it; ``info.contributor`` "Label
  Studio"): ``images/<hash>-name.png`` (``images\\...`` exported on Windows) or
  ``/data/upload/<project>/<hash>-name.png`` (the upload path on the Label Studio server, when
  the image could not be fetched): found by base name in the images folder. Categories and ids
  from 0; polygons only (rectangles box-only; its converter does not export brush labels). A
  photograph turned by 90 degrees by its EXIF orientation gets its stored size written while
  its polygons are percentages of it as shown, multiplied by that size (label-studio#6608):
  such polygons are rescaled to the photograph as shown, and its size turned.
* Roboflow: an extra category (id 0, named after the dataset) that is the supercategory of the
  real classes; it has no annotations, so it never matters.
* ``leafseg predict --coco-json``: ``file_name`` the image's base name (its path in ``path``),
  compressed RLE, or polygons (``--coco-json polygons``, from :func:`mask_to_polygons`).

LabelMe. One JSON file per image (the ``*.json`` files directly in the folder): ``imagePath``
relative to the JSON file (tried as given, then by base name next to the JSON), ``imageData``
(base64 image, used when the image file is missing), ``imageHeight``, ``imageWidth`` and
``shapes`` (label, points, shape_type, group_id, and for ``mask`` shapes ``mask``). The shapes
that cover an area are leaves, drawn exactly as LabelMe's own ``shape_to_mask`` /
``shapes_to_label`` draw them (PIL's ImageDraw, pixels touched by the outline included):

* ``polygon`` (or no shape_type): the polygon of its points (at least 3, with an area);
* ``rectangle``: two opposite corners, either order; ``circle``: the centre, then a point on
  the circle;
* ``mask`` (LabelMe 5's AI-assisted masks): ``mask`` is a base64 PNG (nonzero inside) pasted at
  ``points`` [[x1, y1], [x2, y2]], the corners truncated to integers, covering columns x1..x2
  and rows y1..y2: the PNG must be (x2 - x1 + 1) x (y2 - y1 + 1) pixels, as LabelMe requires.

LabelMe annotates a photograph as it shows it, turned by its EXIF orientation (``imageHeight`` and
``imageWidth`` are the turned size), as CVAT and the browser Label Studio runs in do too; the
masks of such a photograph are turned onto its stored pixels, which leafseg reads
(:func:`to_stored_pixels`; ``prepare`` and ``LeafDataset.load_mask``).

As in LabelMe's label image, a later shape hides what it covers of the earlier ones: a leaf is
the pixels whose last covering shape is one of its own. Shapes of labels that are not read
(``categories``) hide too; shapes reported as problems do not. ``point``, ``line`` and
``linestrip`` shapes (and unknown types) cover no area: a problem naming the shape, left out.

Categories. ``categories=None`` makes every annotated category (LabelMe: every label) a leaf;
otherwise only the named ones are, and annotations of other categories are ignored. A name the
file does not have is an error listing the names it has.
Each region keeps its category's name (and COCO id): with several classes (``leafseg prepare
--classes``) the named categories are the classes, in the order given; :func:`class_names` gives
every category that has a region, COCO's in id order, LabelMe's by name.

Crowd regions (``iscrowd: 1``, but for CVAT's masks, above) are never leaves. They are kept as
crowd regions: ``LeafDataset.load_coco`` gives them class id -1, which mrcnn treats as crowd
boxes (anchors and proposals on a crowd are neither positive nor negative), so a crowd of leaves
is never learned as background. The prepared folder layout has no place for them, so ``leafseg prepare`` does not
prepare an image with a crowd region and reports it by name.

Sample ids: the image file's stem, characters other than letters, digits, ``.``, ``-`` and
``_`` replaced by ``_``. Images sharing a stem each get a suffix, with a warning: COCO
``_<image id>``, LabelMe ``_<JSON file stem>`` (both prepared; not a problem).

Bad input: a ``Problem`` naming the JSON file and the image or annotation id (LabelMe: the
shape's index and label), and that annotation (or image) is left out; the rest is read. Missing
images, annotations of unknown image or category ids, annotations without segmentation (boxes
only), polygons with fewer than 3 points or no area, polygons wholly outside the image (only that
polygon when the annotation has another to keep: the region stays, and the problem says so), RLE
of another size, duplicate image ids (every image with that id is left out: its annotations
cannot be told apart), duplicate annotation ids (an identical copy is dropped; a different one is
kept and reported), LabelMe shapes with a wrong number of points or no area, or a ``mask`` that
is not a PNG of its box's size. A file that is not JSON is a ValueError naming the file, line and
column (a LabelMe file: a problem).
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

__all__ = ["Problem", "Region", "Shape", "AnnotatedImage", "read_coco", "read_labelme", "region_masks", "class_names",
           "read_embedded_image", "mask_to_polygons", "exif_orientation", "to_stored_pixels", "LABELME_AREA_SHAPES"]

# LabelMe shape types that cover an area (leaves); point, line and linestrip do not.
LABELME_AREA_SHAPES = ("polygon", "rectangle", "circle", "mask")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """Why an input was not (wholly) used. ``reason`` is a short category (summaries count by
    it), ``detail`` the specifics."""

    path: Path
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class Region:
    """One annotated instance: polygons (a list of flat [x, y, ...] lists), an RLE dict, or (a
    LabelMe region) a tuple of indices into its image's ``shapes``."""

    annotation: str   # "annotation id 7" / "shape 2", for messages
    segmentation: list | dict | tuple
    crowd: bool = False
    category: str = "leaf"   # the category (COCO) or label (LabelMe) name, as the file gives it
    category_id: int | None = None  # COCO's category id (classes are in id order); None for LabelMe


@dataclass(frozen=True)
class Shape:
    """A LabelMe shape that covers an area, as LabelMe draws it (module docstring): ``kind`` is
    its shape_type, ``points`` its (x, y) points, ``mask`` the bool mask of a ``mask`` shape
    (pasted with its top-left corner at ``points[0]``), ``region`` the index of the region it
    belongs to, -1 for a shape of a label that is not read (it only hides)."""

    kind: str
    points: tuple[tuple[float, float], ...]
    region: int
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class AnnotatedImage:
    """An image and its regions. ``label`` is the JSON file; ``image`` is the image file, or the
    JSON file itself when ``embedded`` (LabelMe imageData is the only copy). ``shapes``: a
    LabelMe image's area shapes in file order (later ones hide earlier ones); empty for COCO."""

    id: str
    image: Path
    label: Path
    ref: str          # "image id 3 (a.png)" / "a.json", for messages
    height: int
    width: int
    regions: tuple[Region, ...]
    embedded: bool = False
    shapes: tuple[Shape, ...] = ()

    @property
    def has_crowd(self) -> bool:
        return any(region.crowd for region in self.regions)


class _Skip(Exception):
    """An annotation or image that cannot be used; the message is the problem's detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _load_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {path}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None


def _select(names_by_id: dict, categories, path: Path) -> set | None:
    """The ids of the categories named in ``categories`` (None: all)."""
    if categories is None:
        return None
    unknown = sorted(set(categories) - set(names_by_id.values()))
    if unknown:
        raise ValueError(f"{path}: no category named {', '.join(map(repr, unknown))}; its categories are "
                         f"{', '.join(map(repr, sorted(set(names_by_id.values())))) or 'none'}")
    return {key for key, name in names_by_id.items() if name in set(categories)}


def _sanitise(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem) or "_"


def _assign_ids(stems: list[str], suffixes: list[str], path: Path) -> list[str]:
    """Sanitised stems; a stem shared by several images gets ``_<suffix>`` on each (logged)."""
    counts = Counter(_sanitise(stem) for stem in stems)
    ids = []
    for stem, suffix in zip(stems, suffixes):
        base = _sanitise(stem)
        if counts[base] > 1:
            ids.append(f"{base}_{_sanitise(suffix)}")
            logger.warning("%s: %d images have the stem %r; this one gets the sample id %r", path, counts[base],
                           base, ids[-1])
        else:
            ids.append(base)
    return ids


def _resolve(name: str, folder: Path, index: dict | None = None) -> tuple[Path | None, list[Path]]:
    """The first existing of: ``name`` if absolute, ``folder/name``, ``folder/basename``; else the
    one file of that basename in a subfolder of ``folder`` (CVAT's ``images/default/<file>``,
    ``index``: :func:`_subfolder_index`, built by the caller on its first miss), or when several
    have it, the one whose path ends with ``name`` (CVAT's ``images/default/tray_a/IMG_1.jpg``
    and ``images/default/tray_b/IMG_1.jpg``, named ``tray_a/IMG_1.jpg`` and ``tray_b/IMG_1.jpg``)."""
    name = name.replace("\\", "/")
    candidates = [Path(name)] if Path(name).is_absolute() else []
    candidates += [folder / name.lstrip("/"), folder / Path(name).name]
    tried = list(dict.fromkeys(candidates))
    found = next((path for path in tried if path.is_file()), None)
    if found is None and index is not None:
        matches = index.get(Path(name).name, [])
        if len(matches) > 1:  # one file name in several folders: the one whose path ends with the name's
            parts = Path(name.lstrip("/")).parts
            matches = [path for path in matches if path.parts[-len(parts):] == parts]
        if len(matches) == 1:
            return matches[0], tried
        tried.append(folder / "**" / Path(name).name)
    return found, tried


def _subfolder_index(folder: Path) -> dict:
    """{file name: [paths]} of the files in the subfolders of ``folder`` (any depth)."""
    index: dict = {}
    for path in sorted(folder.rglob("*")):
        if path.parent != folder and path.is_file():
            index.setdefault(path.name, []).append(path)
    return index


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, UnidentifiedImageError) as err:
        raise _Skip("unreadable image", f"cannot read the size of {path}: {err}") from None


def _polygons(parts, height: int, width: int, dropped: list | None = None) -> list[list[float]]:
    """The polygons of a segmentation. A part with no area (fewer than 3 points, or collinear) or
    wholly outside the image is left out, noted in ``dropped`` as (reason, detail), when the
    segmentation has another part to keep: tools that turn masks into polygons write such
    slivers beside the real outline. Raises _Skip when no part is left."""
    if not isinstance(parts, list) or not parts:
        raise _Skip("no segmentation", "no polygon or RLE (a box only?)")
    kept, skipped = [], []
    for part in parts:
        if not isinstance(part, list) or len(part) % 2 or not all(isinstance(v, (int, float)) for v in part):
            raise _Skip("bad polygon", "a polygon must be a flat list [x, y, x, y, ...] of numbers")
        xs, ys = np.asarray(part[0::2], np.float64), np.asarray(part[1::2], np.float64)
        # Fewer than 3 points: pycocotools would read 2 points as a box [x, y, w, h].
        if len(xs) < 3 or abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) == 0:
            skipped.append(_Skip("degenerate polygon", f"a polygon of {len(xs)} points with no area"))
        elif xs.max() <= 0 or ys.max() <= 0 or xs.min() >= width or ys.min() >= height:
            skipped.append(_Skip("outside the image", f"a polygon lies wholly outside the {width}x{height} image"))
        else:
            kept.append([float(v) for v in part])
    if not kept:
        raise skipped[0]
    if dropped is not None:
        dropped.extend((skip.reason, f"{skip}; left out, its other {len(kept)} polygon(s) kept") for skip in skipped)
    return kept


def _rle(segmentation: dict, height: int, width: int) -> dict:
    counts, size = segmentation.get("counts"), segmentation.get("size")
    if list(size or ()) != [height, width]:
        raise _Skip("bad RLE", f"RLE size {size} differs from the image's [{height}, {width}] (height, width)")
    if isinstance(counts, list):
        if sum(counts) != height * width or any(not isinstance(c, int) or c < 0 for c in counts):
            raise _Skip("bad RLE", f"uncompressed RLE counts must be non-negative integers summing to {height * width}")
    elif not isinstance(counts, str):
        raise _Skip("bad RLE", "RLE counts must be a list (uncompressed) or a string (compressed)")
    return {"size": [height, width], "counts": counts}


def _segmentation(segmentation, height: int, width: int, dropped: list | None = None):
    if isinstance(segmentation, dict):
        return _rle(segmentation, height, width)
    return _polygons(segmentation, height, width, dropped)


def _label_studio_unturned(path: Path, height: int, width: int) -> tuple[float, float] | None:
    """Label Studio's COCO export of a photograph turned by 90 degrees by its EXIF orientation
    (label-studio#6608): the browser shows it turned and its polygons are percentages of the
    turned photograph, but the converter takes the size from the stored pixels (PIL's ``size``),
    writes it, and multiplies the percentages by it. The (x, y) scale that makes the polygons the
    turned photograph's pixels, when the written size is the stored one; else None."""
    try:
        with Image.open(path) as image:
            orientation, stored = exif_orientation(image), (image.height, image.width)
    except (OSError, UnidentifiedImageError):
        return None
    if orientation < 5 or stored != (height, width) or height == width:
        return None
    return height / width, width / height


def _rescale(parts: list, sx: float, sy: float) -> list:
    """Polygons ``[[x, y, ...], ...]`` scaled by (sx, sy); anything else left for _polygons to judge."""
    return [[v * (sy if k % 2 else sx) for k, v in enumerate(part)]
            if isinstance(part, list) and all(isinstance(v, (int, float)) for v in part) else part
            for part in parts]


def _cvat_mask(annotation: dict, segmentation) -> bool:
    """Whether an ``iscrowd`` annotation is a mask CVAT exported (module docstring): RLE, with
    CVAT's ``occluded`` among its ``attributes``."""
    attributes = annotation.get("attributes")
    return isinstance(segmentation, dict) and isinstance(attributes, dict) and "occluded" in attributes


def read_coco(json_path, images_dir, categories=None) -> tuple[list[AnnotatedImage], list[Problem]]:
    """Images of a COCO instances file whose image files are found (rules in the module
    docstring), sorted by sample id, and the problems found.

    Raises FileNotFoundError (no such file), ValueError (not JSON, not a COCO instances file, or
    an unknown category name).
    """
    path, images_dir = Path(json_path), Path(images_dir)
    document = _load_json(path)
    if not isinstance(document, dict) or not all(isinstance(document.get(k), list) for k in ("images", "annotations")):
        raise ValueError(f"{path}: not a COCO instances file (needs 'images' and 'annotations' lists)")
    names = {c.get("id"): str(c.get("name")) for c in document.get("categories") or [] if isinstance(c, dict)}
    selected = _select(names, categories, path)
    problems: list[Problem] = []

    entries = [e for e in document["images"] if isinstance(e, dict)]
    id_counts = Counter(e.get("id") for e in entries)
    for image_id, count in id_counts.items():
        if count > 1:
            files = ", ".join(str(e.get("file_name")) for e in entries if e.get("id") == image_id)
            problems.append(Problem(path, "duplicate image id", f"image id {image_id} is used by {count} images "
                                    f"({files}); none of them is used, their annotations cannot be told apart"))
    images, subfolders = {}, None
    info = document.get("info")
    label_studio = isinstance(info, dict) and info.get("contributor") == "Label Studio"
    scales: dict = {}  # image id -> (x, y) scale of a Label Studio polygon (_label_studio_unturned)
    for entry in entries:
        image_id, name = entry.get("id"), str(entry.get("file_name", ""))
        if id_counts[image_id] > 1:
            continue
        ref = f"image id {image_id} ({name})"
        found, tried = _resolve(name, images_dir)
        if found is None:
            if subfolders is None:
                subfolders = _subfolder_index(images_dir) if images_dir.is_dir() else {}
            found, tried = _resolve(name, images_dir, subfolders)
        try:
            if found is None:
                raise _Skip("missing image", f"not found; tried {', '.join(map(str, tried))}")
            height, width = entry.get("height"), entry.get("width")
            if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
                height, width = _image_size(found)
        except _Skip as skip:
            problems.append(Problem(path, skip.reason, f"{ref}: {skip}"))
            continue
        if label_studio:
            unturned = _label_studio_unturned(found, height, width)
            if unturned:
                height, width = width, height  # the photograph as shown, as annotated
                scales[image_id] = unturned
        images[image_id] = (ref, found, height, width, [])
    if scales:
        logger.info("%s: Label Studio wrote the size of %d photograph(s) with an EXIF orientation unturned "
                    "(label-studio#6608); their polygons are rescaled to the photograph as shown", path, len(scales))

    seen: dict = {}
    cvat_masks = 0
    for annotation in document["annotations"]:
        if not isinstance(annotation, dict):
            continue
        annotation_id, image_id = annotation.get("id"), annotation.get("image_id")
        where = f"annotation id {annotation_id} (image id {image_id})"
        if annotation_id in seen:
            same = seen[annotation_id] == annotation
            problems.append(Problem(path, "duplicate annotation id", f"{where}: the id is used before; " + (
                "an identical copy, dropped" if same else "a different annotation, kept")))
            if same:
                continue
        seen[annotation_id] = annotation
        if image_id not in images:
            if id_counts[image_id] == 0:
                problems.append(Problem(path, "unknown image id", f"{where}: no image has id {image_id}"))
            continue
        category = annotation.get("category_id")
        if category not in names:
            problems.append(Problem(path, "unknown category", f"{where}: no category has id {category}"))
            continue
        if selected is not None and category not in selected:
            continue
        _, _, height, width, regions = images[image_id]
        dropped: list = []
        try:
            segmentation = annotation.get("segmentation")
            if image_id in scales and isinstance(segmentation, list):
                segmentation = _rescale(segmentation, *scales[image_id])
            segmentation = _segmentation(segmentation, height, width, dropped)
        except _Skip as skip:
            problems.append(Problem(path, skip.reason, f"{where}: {skip}"))
            continue
        problems.extend(Problem(path, f"{reason} part", f"{where}: {detail}") for reason, detail in dropped)
        crowd = bool(annotation.get("iscrowd"))
        if crowd and _cvat_mask(annotation, segmentation):
            crowd, cvat_masks = False, cvat_masks + 1
        regions.append(Region(f"annotation id {annotation_id}", segmentation, crowd, names[category], category))
    if cvat_masks:
        logger.info("%s: %d RLE annotation(s) marked iscrowd are CVAT masks (brush, AI tools, ellipses), read as "
                    "leaves: CVAT marks every mask it exports as a crowd", path, cvat_masks)

    keys = list(images)
    ids = _assign_ids([images[k][1].stem for k in keys], [str(k) for k in keys], path)
    result = [AnnotatedImage(sample_id, found, path, ref, height, width, tuple(regions))
              for sample_id, (ref, found, height, width, regions) in zip(ids, images.values())]
    return sorted(result, key=lambda image: image.id), problems


def _points(shape, count: int | None = None) -> list[tuple[float, float]]:
    """A LabelMe shape's points as (x, y); ``count``: exactly that many."""
    points = shape.get("points")
    if not isinstance(points, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p) for p in points):
        raise _Skip("bad shape", "points must be a list of [x, y] numbers")
    if count is not None and len(points) != count:
        raise _Skip("bad shape", f"a {shape.get('shape_type')} needs {count} points, got {len(points)}")
    return [(float(x), float(y)) for x, y in points]


def _labelme_mask(shape, height: int, width: int) -> tuple[list[tuple[float, float]], np.ndarray]:
    """(points, bool mask) of a ``mask`` shape; its PNG must fill the box of its two corners."""
    points = _points(shape, 2)
    (x1, y1), (x2, y2) = [(int(x), int(y)) for x, y in points]  # truncated, as LabelMe does
    try:
        with Image.open(io.BytesIO(base64.b64decode(shape.get("mask") or "", validate=True))) as png:
            mask = np.asarray(png) != 0
    except (TypeError, ValueError, binascii.Error, OSError, UnidentifiedImageError) as err:
        raise _Skip("bad mask", f"'mask' is not a base64 image ({type(err).__name__}: {err})") from None
    if mask.ndim == 3:
        mask = mask.any(axis=-1)
    if mask.shape != (y2 - y1 + 1, x2 - x1 + 1):
        raise _Skip("bad mask", f"the mask is {mask.shape[1]}x{mask.shape[0]} px but its box ({x1}, {y1})-({x2}, "
                                f"{y2}) is {x2 - x1 + 1}x{y2 - y1 + 1} (width x height)")
    if not mask.any() or x2 < 0 or y2 < 0 or x1 >= width or y1 >= height:
        raise _Skip("empty mask", f"the mask covers no pixel of the {width}x{height} image")
    return [(float(x1), float(y1)), (float(x2), float(y2))], mask


def _labelme_shape(shape, height: int, width: int) -> tuple[str, list[tuple[float, float]], np.ndarray | None]:
    """(kind, points, mask) of a LabelMe shape that covers an area; raises _Skip otherwise."""
    kind = shape.get("shape_type") or "polygon"
    if kind not in LABELME_AREA_SHAPES:
        raise _Skip("not an area", f"shape_type {kind!r} covers no area; leaves are "
                                   f"{', '.join(LABELME_AREA_SHAPES)} shapes")
    if kind == "mask":
        return (kind, *_labelme_mask(shape, height, width))
    points = _points(shape, None if kind == "polygon" else 2)  # a polygon's count: _polygons
    if kind == "polygon":
        _polygons([[v for point in points for v in point]], height, width)  # no area, or outside: _Skip
        return kind, points, None
    (x1, y1), (x2, y2) = points
    if kind == "rectangle":
        if x1 == x2 or y1 == y2:
            raise _Skip("degenerate shape", f"a rectangle of width {abs(x2 - x1):g} and height {abs(y2 - y1):g}")
        x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)  # dragged either way
        box = x1, y1, x2, y2
        points = [(x1, y1), (x2, y2)]
    else:
        radius = math.hypot(x2 - x1, y2 - y1)
        if radius == 0:
            raise _Skip("degenerate shape", "a circle of radius 0")
        box = x1 - radius, y1 - radius, x1 + radius, y1 + radius
    if box[2] < 0 or box[3] < 0 or box[0] >= width or box[1] >= height:
        raise _Skip("outside the image", f"a {kind} lies wholly outside the {width}x{height} image")
    return kind, points, None


def _labelme_regions(shapes, selected, height: int, width: int, path: Path,
                     problems: list[Problem]) -> tuple[list[Region], list[Shape]]:
    """The regions of a LabelMe file's shapes, and its area shapes in file order (module
    docstring): shapes of one label and ``group_id`` are one region."""
    groups: dict = {}  # (label, group_id, or the shape's index when it has none) -> [shape index]
    drawn: list[tuple[int, str, str, list, np.ndarray | None]] = []  # (index, label, kind, points, mask)
    for index, shape in enumerate(shapes):
        label = str(shape.get("label"))
        try:
            kind, points, mask = _labelme_shape(shape, height, width)
        except _Skip as skip:
            if selected is None or label in selected:  # other labels are not read: no problem
                problems.append(Problem(path, skip.reason, f"shape {index} (label {label!r}): {skip}"))
            continue
        drawn.append((index, label, kind, points, mask))
        if selected is None or label in selected:
            group = shape.get("group_id")
            groups.setdefault((label, index if group is None else f"group {group}"), []).append(index)
    region_of = {index: k for k, indices in enumerate(groups.values()) for index in indices}
    numbers = {index: n for n, (index, *_) in enumerate(drawn)}  # shape index -> index in shapes
    regions = [Region("shape " + ", ".join(map(str, indices)), tuple(numbers[i] for i in indices), category=label)
               for (label, _), indices in groups.items()]
    return regions, [Shape(kind, tuple(points), region_of.get(index, -1), mask)
                     for index, label, kind, points, mask in drawn]


def read_labelme(folder, categories=None) -> tuple[list[AnnotatedImage], list[Problem]]:
    """Images of the LabelMe JSON files in ``folder`` (rules in the module docstring), sorted by
    sample id, and the problems found (a file that is not LabelMe JSON is one of them).

    Raises FileNotFoundError / NotADirectoryError, ValueError for an unknown category name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise (NotADirectoryError if folder.exists() else FileNotFoundError)(f"no LabelMe folder {folder}")
    problems: list[Problem] = []
    documents = []
    for path in sorted(folder.glob("*.json")):
        try:
            document = _load_json(path)
        except ValueError as err:
            problems.append(Problem(path, "invalid JSON", str(err).removeprefix(f"{path}: ")))
            continue
        if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
            problems.append(Problem(path, "not LabelMe", "no 'shapes' list"))
            continue
        documents.append((path, document))
    labels = {str(s.get("label")) for _, d in documents for s in d["shapes"] if isinstance(s, dict)}
    selected = _select({label: label for label in labels}, categories, folder)

    found = []
    for path, document in documents:
        name = str(document.get("imagePath") or "")
        image, tried = _resolve(name, path.parent) if name else (None, [])
        embedded = image is None and bool(document.get("imageData"))
        try:
            if image is None and not embedded:
                tried_text = ", ".join(map(str, tried)) or "nothing"
                raise _Skip("missing image", f"image {name!r} not found (tried {tried_text}) and no imageData")
            height, width = document.get("imageHeight"), document.get("imageWidth")
            if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
                raise _Skip("bad LabelMe file", "imageHeight and imageWidth must be positive integers")
        except _Skip as skip:
            problems.append(Problem(path, skip.reason, str(skip)))
            continue
        shapes = [s for s in document["shapes"] if isinstance(s, dict)]
        regions, drawn = _labelme_regions(shapes, selected, height, width, path, problems)
        found.append((Path(name.replace("\\", "/")).stem if name else path.stem, path, image, embedded,
                      height, width, regions, drawn))
    ids = _assign_ids([f[0] for f in found], [f[1].stem for f in found], folder)
    result = [AnnotatedImage(sample_id, path if embedded else image, path, path.name, height, width, tuple(regions),
                             embedded, tuple(drawn))
              for sample_id, (_, path, image, embedded, height, width, regions, drawn) in zip(ids, found)]
    return sorted(result, key=lambda image: image.id), problems


def class_names(images: list[AnnotatedImage]) -> list[str]:
    """The categories of the regions of ``images`` as classes (``--classes all``): COCO's in
    category id order, LabelMe's labels by name. A category without regions is none (Roboflow's
    dataset-named parent category)."""
    first: dict[str, tuple] = {}
    for region in (region for image in images for region in image.regions):
        key = (0 if region.category_id is None else 1, region.category_id or 0, region.category)
        first[region.category] = min(first.get(region.category, key), key)
    return sorted(first, key=first.get)


def read_embedded_image(json_path) -> bytes:
    """The image bytes of a LabelMe file's ``imageData``."""
    document = _load_json(Path(json_path))
    try:
        return base64.b64decode(document["imageData"], validate=True)
    except (KeyError, TypeError, binascii.Error) as err:
        raise OSError(f"{json_path}: no usable imageData ({type(err).__name__}: {err})") from None


def region_masks(image: AnnotatedImage) -> tuple[np.ndarray, np.ndarray]:
    """(masks bool [H, W, N], crowd bool [N]), one per region in order, at the annotated size.
    Regions may overlap (not LabelMe's: later shapes hide earlier ones) and may be empty (a
    sliver between pixel centres, a LabelMe shape hidden by later ones)."""
    from pycocotools import mask as mask_utils

    if image.shapes:
        return _draw_labelme(image), np.zeros(len(image.regions), bool)
    masks = np.zeros((image.height, image.width, len(image.regions)), bool)
    for k, region in enumerate(image.regions):
        segmentation = region.segmentation
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, image.height, image.width))
        elif isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, image.height, image.width)
        else:
            rle = segmentation
        masks[..., k] = mask_utils.decode(rle) > 0
    return masks, np.array([region.crowd for region in image.regions], bool)


_EXIF_ORIENTATION = 0x0112
# How a viewer turns the stored pixels to show them (PIL.ImageOps.exif_transpose), by EXIF orientation.
_SHOWN_BY = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}


def exif_orientation(image) -> int:
    """The EXIF orientation (1..8) of an open PIL image; 1 when it has none (or a bad one). A PNG's
    is read only from an eXIf chunk before its pixels: one after them would need decoding."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError, TypeError):  # a broken EXIF block: shown as stored
        return 1
    return value if value in _SHOWN_BY else 1


def to_stored_pixels(masks: np.ndarray, orientation: int, height: int, width: int) -> tuple[np.ndarray, bool]:
    """Masks [h, w, N] drawn on a photograph as shown -> on its stored pixels [height, width].

    A phone stores a portrait photograph as landscape pixels and an EXIF orientation that tells
    viewers to turn it. The tools show it turned and annotate what they show: LabelMe
    (``apply_exif_orientation``; its ``imageHeight``/``imageWidth`` are the turned size), CVAT and
    the browser Label Studio runs in. leafseg reads the stored pixels, as mrcnn's
    ``load_image_file`` does (OpenCV's IMREAD_UNCHANGED ignores the orientation), so the masks are
    turned back onto them. Only when they have the size of the photograph as shown: masks of the
    stored size (a turn by 90 degrees of a photograph that is not square) were drawn by a tool that
    ignored the orientation and are kept as they are, as are masks of any other size.

    Returns (masks [height, width, N] or unchanged, whether they were turned).
    """
    shown_size = (width, height) if orientation >= 5 else (height, width)
    if orientation not in _SHOWN_BY or masks.shape[:2] != shown_size:
        return masks, False
    # Where each shown pixel is stored: turn an image of stored pixel indices as a viewer would.
    index = Image.fromarray(np.arange(height * width, dtype=np.int32).reshape(height, width))
    shown_index = np.asarray(index.transpose(_SHOWN_BY[orientation])).ravel()
    stored = np.empty((height * width,) + masks.shape[2:], masks.dtype)
    stored[shown_index] = masks.reshape((-1,) + masks.shape[2:])
    return stored.reshape((height, width) + masks.shape[2:]), True


def _draw_labelme(image: AnnotatedImage) -> np.ndarray:
    """The masks of a LabelMe image's regions: each shape drawn in file order as LabelMe draws it,
    the number of its region + 1 (0 for a shape that only hides) over what was there."""
    canvas = Image.new("I", (image.width, image.height), 0)
    draw = ImageDraw.Draw(canvas)
    for shape in image.shapes:
        value = shape.region + 1
        if shape.kind == "mask":
            (x1, y1), _ = shape.points
            canvas.paste(value, (int(x1), int(y1)), Image.fromarray(shape.mask))
        elif shape.kind == "rectangle":
            draw.rectangle(shape.points, outline=value, fill=value)
        elif shape.kind == "circle":
            (cx, cy), (px, py) = shape.points
            radius = math.hypot(px - cx, py - cy)
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=value, fill=value)
        else:
            draw.polygon(shape.points, outline=value, fill=value)
    owner = np.asarray(canvas)
    return owner[..., np.newaxis] == np.arange(1, len(image.regions) + 1)


def mask_to_polygons(mask) -> list[list[float]]:
    """A mask as COCO polygons ``[[x, y, x, y, ...], ...]`` that pycocotools rasterises back to
    the mask's pixels, holes filled: one polygon per 8-connected piece, the largest first.

    The outlines run along the pixels' edges, 0.25 px inside them (the contours of the mask
    upsampled 2x, in image coordinates where pixel (row i, column j) spans [j, j + 1] x
    [i, i + 1]), so every pixel's centre is inside and every other pixel's outside. Straight
    runs keep only their end points (OpenCV's CHAIN_APPROX_SIMPLE): no pixel is lost. A hole
    (a ring-shaped leaf) is filled: only outer contours are kept. Every polygon has at least 4
    points and an area.
    """
    import cv2

    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W], got shape {mask.shape}")
    upsampled = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1).astype(np.uint8)
    contours, _ = cv2.findContours(upsampled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=cv2.contourArea, reverse=True)
    return [[float(v) for v in (contour.reshape(-1) + 0.5) / 2] for contour in contours]
