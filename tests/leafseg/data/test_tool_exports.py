"""End to end: ``leafseg prepare`` on replicas of what the annotation tools really write.

Issue 26's done-when: every instance with a segmentation and an image comes back, within IoU
0.95 of pycocotools' rasterisation (LabelMe: 0.90 of LabelMe's own drawing, later shapes hiding
earlier ones), with exit 0. Each replica follows its exporter's source:

* CVAT "COCO 1.0": cvat/apps/dataset_manager/formats/coco.py exports through datumaro's
  ``coco_instances`` (datumaro/plugins/data_formats/coco/exporter.py): a zip of
  ``annotations/instances_default.json`` and ``images/default/<item id><ext>``, ``file_name`` the
  item id (with the task's subfolders); ``licenses``/``info`` of empty strings; categories from
  id 1 with ``supercategory: ""``; images with ``license``, ``flickr_url``, ``coco_url``,
  ``date_captured``; polygons as flat float lists, grouped shapes one annotation of several
  polygons; every mask (brush, AI tools; ellipses, turned into masks by cvat's bindings) as
  uncompressed column-major RLE with ``iscrowd: 1`` (``is_crowd = mask is not None``);
  ``attributes`` with CVAT's ``occluded`` (and ``rotation`` on rectangles, which come box-only).
* Label Studio: label_studio_sdk/converter/converter.py ``convert_to_coco``: ``result.json`` and
  ``images/<8 hex>-<name>``, ``file_name`` relative to the export (``images\\...`` when exported on
  Windows) or, when the image could not be fetched, the task's ``/data/upload/<project>/...``;
  categories sorted by name from id 0, no supercategory; image and annotation ids from 0;
  polygons from percentages (long floats), ``ignore: 0``, ``iscrowd: 0``; rectangles box-only;
  brush labels are not exported (the converter knows rectangle, polygon and keypoint labels).
  The size written is PIL's of the stored pixels, while the percentages are of the photo as the
  browser shows it, turned by its EXIF orientation (label-studio#6608): a phone's portrait photo.
* Roboflow "COCO Segmentation": ``train/``, ``valid/``, ``test/``, each with
  ``_annotations.coco.json`` and its images beside it, ``README.dataset.txt`` and
  ``README.roboflow.txt`` at the top; a category id 0 named after the project (supercategory
  "none"), the classes with the project as supercategory; ``<stem>_<ext>.rf.<32 hex>.jpg`` file
  names (a PNG upload is re-encoded as .jpg); ids from 0; ``extra.name`` the uploaded name;
  annotations ``[[x, y, ...]]`` or ``[]`` for a box-only one.
* LabelMe 5: ``version``, ``flags``, ``shapes`` (label, points, group_id, description,
  shape_type, flags, mask: ``null`` but on mask shapes, where it is a base64 PNG of 0/1 covering
  the box of its two points, both inclusive, as imgviz.instances.masks_to_bboxes gives it;
  labelme >= 5.6 leaves ``mask`` out of other shapes), ``imagePath`` relative to the JSON
  (backslashes when saved on Windows), ``imageData`` null or base64, ``imageHeight``/``Width``.
* labelme2coco (fcakyon/labelme2coco 0.2.x, through sahi.utils.coco): ``dataset.json`` (or
  ``train.json``/``val.json``) in its export folder, the images left where they are:
  ``file_name`` LabelMe's ``imagePath`` (0.1.x: prefixed with the LabelMe folder as given);
  categories from id 0, supercategory = name; image and annotation ids from 1; circles turned
  into polygons; every polygon rewritten by shapely (``int()``-truncated coordinates, the
  closing point dropped, a self-crossing outline made valid, so several polygons); rectangles
  box-only.

Every replica's images are JPEG photographs, kept byte for byte by ``prepare``.
"""
import base64
import csv
import hashlib
import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from leafseg.cli.prepare import main

H, W = 96, 128
COCO_MIN_IOU, LABELME_MIN_IOU = 0.95, 0.90


# ---------------------------------------------------------------------------------------------
# Photographs, leaves and references
# ---------------------------------------------------------------------------------------------

def _photo_bytes(seed: int, size=(H, W), fmt="JPEG", orientation=None) -> bytes:
    """A smooth photograph-like RGB image (JPEG compresses it as it would a photo); with an EXIF
    ``orientation``, ``size`` is the size it is shown at, its pixels stored unturned, as a phone
    stores a portrait photograph."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), np.uint8)
    image = Image.fromarray(small).resize((size[1], size[0]), Image.BILINEAR)
    options = {"quality": 90} if fmt == "JPEG" else {}
    if orientation:
        image = image.transpose(UNDO_TURN[orientation])
        exif = image.getexif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# How to undo the turn a viewer gives a photograph of this EXIF orientation (PIL.ImageOps.exif_transpose).
UNDO_TURN = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def _as_stored(masks, orientation):
    """Masks drawn on a photograph as shown, on its stored pixels (what leafseg reads)."""
    if not orientation:
        return masks
    return [np.asarray(Image.fromarray(m).transpose(UNDO_TURN[orientation])) for m in masks]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _leaf(cx, cy, length, width, angle, n=28, seed=0):
    """A leaf outline: a pointed ellipse, points as (x, y) floats with fractions."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1 + 0.04 * rng.standard_normal(n)
    x = length / 2 * np.cos(t) * r
    y = width / 2 * np.sin(t) * np.abs(np.cos(t / 2)) ** 0.3 * r
    a = math.radians(angle)
    return [(float(cx + x_ * math.cos(a) - y_ * math.sin(a)), float(cy + x_ * math.sin(a) + y_ * math.cos(a)))
            for x_, y_ in zip(x, y)]


def _flat(points):
    return [round(v, 6) for point in points for v in point]


def _coco_mask(segmentation, height=H, width=W) -> np.ndarray:
    """pycocotools' rasterisation of a COCO segmentation (the reference)."""
    if isinstance(segmentation, dict):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = mask_utils.merge(mask_utils.frPyObjects([p for p in segmentation if len(p) >= 6], height, width))
    return mask_utils.decode(rle) > 0


def _rasterised(points, height=H, width=W) -> np.ndarray:
    """A drawn (brush-like) mask: the pixels of a polygon."""
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1)
    return np.asarray(canvas) > 0


def _column_major_rle(mask: np.ndarray) -> dict:
    """Uncompressed RLE as datumaro's mask_tools.mask_to_rle writes it: column-major runs,
    starting with a run of 0s, counts a list of ints."""
    flat = mask.ravel(order="F")
    runs = [len(run) for run in np.split(flat, np.flatnonzero(np.diff(flat)) + 1)]
    return {"counts": [0] * bool(flat[0]) + runs, "size": list(mask.shape)}


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


# ---------------------------------------------------------------------------------------------
# Running prepare and comparing
# ---------------------------------------------------------------------------------------------

def _prepare(capsys, *args):
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def _prepared(out: Path) -> dict:
    """{source image (resolved): [mask bool [H, W], ...]} of a prepared output."""
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    found = {}
    for row in rows:
        folder = out / row["subset"] / row["id"]
        meta = json.loads((folder / "sample.json").read_text())
        masks = [np.asarray(Image.open(folder / "masks" / f"{row['id']}_{k}.png")) > 0
                 for k in range(int(row["leaf_count"]))]
        found[row["source_image"]] = (masks, meta)
    return found


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / union if union else 1.0


def _check(expected: dict, out: Path, min_iou: float) -> float:
    """Every expected instance comes back once; returns the smallest IoU seen."""
    found = _prepared(out)
    assert sorted(found) == sorted(str(Path(p).resolve()) for p in expected)
    worst = 1.0
    for source, reference in expected.items():
        masks, meta = found[str(Path(source).resolve())]
        assert len(masks) == len(reference), (source, meta)
        ious = np.array([[_iou(r, m) for m in masks] for r in reference])
        best = ious.argmax(axis=1)
        assert sorted(best) == list(range(len(masks))), (source, ious.round(3))  # one to one
        worst = min(worst, float(ious.max(axis=1).min()))
        assert meta["image_bytes"] == "kept" and meta["image"].endswith(".jpg"), meta
    assert worst >= min_iou
    print(f"smallest IoU {worst:.4f} over {sum(map(len, expected.values()))} instances")  # seen with -s
    return worst


def _nothing_lost(out_text: str, prepared: int, bad: str = ""):
    first = next(line for line in out_text.splitlines() if line.startswith("prepared "))
    assert first.startswith(f"prepared {prepared}, skipped (already prepared) 0, moved to another subset 0, "
                            f"bad {0 if not bad else bad}"), out_text
    assert "regions under --min-area dropped: 0" in out_text, out_text


# ---------------------------------------------------------------------------------------------
# CVAT "COCO 1.0"
# ---------------------------------------------------------------------------------------------

def _cvat_export(root: Path):
    """A CVAT task of two cameras' folders of photographs, each numbering from IMG_0001, exported as
    "COCO 1.0" with images, unzipped."""
    items = {"tray_a/IMG_0001": 11, "tray_a/IMG_0002": 12, "tray_b/IMG_0001": 13}
    categories = [{"id": 1, "name": "leaf", "supercategory": ""}, {"id": 2, "name": "stem", "supercategory": ""}]
    images, annotations, expected = [], [], {}
    for image_id, (item, seed) in enumerate(items.items(), start=1):
        path = _write(root / "images" / "default" / f"{item}.jpg", _photo_bytes(seed))
        images.append({"id": image_id, "width": W, "height": H, "file_name": f"{item}.jpg", "license": 0,
                       "flickr_url": "", "coco_url": "", "date_captured": 0})
        expected[path] = []

        def add(segmentation, category=1, crowd=0, attributes=None):
            mask = _coco_mask(segmentation)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "segmentation": segmentation, "area": float(mask.sum()), "bbox": _bbox(mask),
                                "iscrowd": crowd, "attributes": attributes or {"occluded": False}})
            expected[path].append(mask)

        # Polygons (CVAT keeps the client's float coordinates).
        add([_flat(_leaf(30 + seed, 30, 40, 16, 20 * seed, seed=seed))])
        add([_flat(_leaf(90, 60, 36, 14, -30, seed=seed + 1))], attributes={"occluded": True})
        # A stem polygon (another category).
        add([_flat([(60.25, 10.5), (63.75, 10.5), (63.75, 85.5), (60.25, 85.5)])], category=2)
        if image_id == 1:
            # A leaf split by the stem: two grouped polygons, one annotation.
            add([_flat(_leaf(45, 75, 22, 10, 0, seed=3)), _flat(_leaf(76, 75, 22, 10, 0, seed=4))])
            # A leaf painted with the brush: a mask, exported as RLE marked iscrowd.
            add(_column_major_rle(_rasterised(_leaf(100, 25, 30, 18, 60, seed=5))), crowd=1)
        if image_id == 2:
            # A leaf drawn with the AI tool (SAM) touching the image's left edge, and an ellipse
            # (CVAT 2.x turns ellipses into masks): both RLE, iscrowd 1.
            add(_column_major_rle(_rasterised(_leaf(6, 70, 30, 16, 80, seed=6))), crowd=1)
            ellipse = Image.new("L", (W, H), 0)
            ImageDraw.Draw(ellipse).ellipse([80, 5, 110, 25], fill=1)
            add(_column_major_rle(np.asarray(ellipse) > 0), crowd=1)
    document = {"licenses": [{"name": "", "id": 0, "url": ""}],
                "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "",
                         "year": ""},
                "categories": categories, "images": images, "annotations": annotations}
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_default.json").write_text(json.dumps(document))
    return expected


def test_cvat_coco_export(tmp_path, capsys):
    expected = _cvat_export(tmp_path / "task_leaves-2026_12_07-coco 1.0")
    export = tmp_path / "task_leaves-2026_12_07-coco 1.0"
    out = tmp_path / "out"
    # As the issue's user did: the JSON and --input images/ (its subset folder default/ is searched).
    status, text, err = _prepare(capsys, "--coco", str(export / "annotations" / "instances_default.json"),
                                 "--input", str(export / "images"), "--output", str(out))
    assert status == 0, err
    _nothing_lost(text, 3)
    _check(expected, out, COCO_MIN_IOU)
    # The zip as CVAT downloads it, unpacked anywhere, without --input: the same.
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(export.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(export).as_posix())
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unzipped")
    status, text, err = _prepare(capsys, "--coco", str(tmp_path / "unzipped" / "annotations" /
                                                       "instances_default.json"), "--output", str(tmp_path / "out2"))
    assert status == 0, err
    _nothing_lost(text, 3)
    moved = {str(tmp_path / "unzipped" / Path(p).relative_to(export)): m for p, m in expected.items()}
    _check(moved, tmp_path / "out2", COCO_MIN_IOU)


# ---------------------------------------------------------------------------------------------
# Label Studio
# ---------------------------------------------------------------------------------------------

def _label_studio_export(root: Path, windows: bool):
    names = {"3f2a9c1d-IMG_0001.jpg": 21, "b07e44a2-IMG_0002.jpg": 22, "9c1d0e7f-IMG_0003.jpg": 23}
    categories = [{"id": 0, "name": "leaf"}, {"id": 1, "name": "stem"}]  # sorted by name, from id 0
    images, annotations, expected = [], [], {}
    for image_id, (name, seed) in enumerate(names.items()):
        # The first is a phone's portrait photo, stored 96 wide and 128 high with EXIF orientation 6:
        # the browser shows it turned, 128 wide and 96 high, and the annotator draws on that.
        orientation = 6 if image_id == 0 else None
        path = _write(root / "images" / name, _photo_bytes(seed, orientation=orientation))
        # The converter writes the size PIL gives: the stored one (label-studio#6608).
        width, height = (H, W) if orientation else (W, H)
        # The third image could not be fetched at export time: its task's upload path stays.
        file_name = (f"/data/upload/4/{name}" if image_id == 2 else
                     ("images\\" if windows else "images/") + name)
        images.append({"width": width, "height": height, "id": image_id, "file_name": file_name})
        shown = []
        leaves = [_leaf(35, 35, 44, 18, 15 * seed, seed=seed), _leaf(88, 58, 40, 16, -25, seed=seed + 7)]
        for category, points in [(0, leaves[0]), (0, leaves[1]),
                                 (1, [(62.0, 8.0), (66.0, 8.0), (66.0, 90.0), (62.0, 90.0)])]:
            # Label Studio stores percentages of the photo as shown; the converter multiplies them by
            # the size it writes.
            percent = [(x / W * 100, y / H * 100) for x, y in points]
            absolute = [(px / 100 * width, py / 100 * height) for px, py in percent]
            xs, ys = zip(*absolute)
            segmentation = [[v for point in absolute for v in point]]
            annotations.append({"id": len(annotations), "image_id": image_id, "category_id": category,
                                "segmentation": segmentation,
                                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                                "ignore": 0, "iscrowd": 0, "area": 0.5 * abs(
                                    np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))})
            shown.append(_coco_mask([[v for point in points for v in point]]))  # what the annotator drew
        expected[path] = _as_stored(shown, orientation)
    document = {"images": images, "categories": categories, "annotations": annotations,
                "info": {"year": 2026, "version": "1.0", "description": "", "contributor": "Label Studio", "url": "",
                         "date_created": "2026-12-07 10:41:12.125671"}}
    (root / "result.json").write_text(json.dumps(document, indent=2))
    return expected


@pytest.mark.parametrize("windows", [False, True], ids=["posix", "windows-paths"])
def test_label_studio_coco_export(tmp_path, capsys, windows):
    expected = _label_studio_export(tmp_path / "project-4-at-2026-12-07-10-41-3f2a9c1d", windows)
    export = tmp_path / "project-4-at-2026-12-07-10-41-3f2a9c1d"
    out = tmp_path / "out"
    status, text, err = _prepare(capsys, "--coco", str(export / "result.json"), "--output", str(out))
    assert status == 0, err
    _nothing_lost(text, 3)
    _check(expected, out, COCO_MIN_IOU)


# ---------------------------------------------------------------------------------------------
# Roboflow "COCO Segmentation"
# ---------------------------------------------------------------------------------------------

def _roboflow_export(root: Path):
    project = "seedlings-wheat-x7k2p"
    categories = [{"id": 0, "name": project, "supercategory": "none"},
                  {"id": 1, "name": "leaf", "supercategory": project},
                  {"id": 2, "name": "root", "supercategory": project},
                  {"id": 3, "name": "stem", "supercategory": project}]
    splits = {"train": ["IMG_2041.JPG", "IMG_2042.JPG", "dish_07.png"], "valid": ["IMG_2043.JPG"],
              "test": ["IMG_2044.JPG"]}
    expected, box_only = {}, 0
    for split, uploads in splits.items():
        images, annotations = [], []
        for image_id, upload in enumerate(uploads):
            stem, ext = upload.rsplit(".", 1)
            seed = sum(upload.encode())
            name = f"{stem}_{ext}.rf.{hashlib.md5(upload.encode()).hexdigest()}.jpg"
            path = _write(root / split / name, _photo_bytes(seed))
            images.append({"id": image_id, "license": 1, "file_name": name, "height": H, "width": W,
                           "date_captured": "2026-12-01T09:12:44+00:00", "extra": {"name": upload}})
            expected[path] = []
            shapes = [(1, _leaf(30, 30, 44, 18, seed % 90, seed=seed)), (1, _leaf(92, 62, 38, 15, -40, seed=seed + 1)),
                      (2, [(20.5, 80.0), (110.25, 84.5), (110.0, 88.75), (20.0, 85.0)]),
                      (3, [(60.125, 12.5), (64.5, 12.5), (64.5, 80.0), (60.125, 80.0)])]
            for category, points in shapes:
                segmentation = [[round(v, 3) for v in _flat(points)]]
                mask = _coco_mask(segmentation)
                annotations.append({"id": len(annotations), "image_id": image_id, "category_id": category,
                                    "bbox": _bbox(mask), "area": float(mask.sum()), "segmentation": segmentation,
                                    "iscrowd": 0})
                expected[path].append(mask)
            if split == "train" and image_id == 0:  # a box drawn without a polygon
                annotations.append({"id": len(annotations), "image_id": image_id, "category_id": 1,
                                    "bbox": [5, 5, 10, 10], "area": 100, "segmentation": [], "iscrowd": 0})
                box_only += 1
        document = {"info": {"year": "2026", "version": "3", "description": "Exported from roboflow.com",
                             "contributor": "", "url": f"https://universe.roboflow.com/lab/{project}",
                             "date_created": "2026-12-01T09:12:44+00:00"},
                    "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}],
                    "categories": categories, "images": images, "annotations": annotations}
        (root / split / "_annotations.coco.json").write_text(json.dumps(document))
    (root / "README.dataset.txt").write_text(f"# {project} > 2026-12-01 9:12am\n")
    (root / "README.roboflow.txt").write_text("\nseedlings - v3 2026-12-01 9:12am\n==============================\n")
    return expected, box_only


def test_roboflow_coco_segmentation_export(tmp_path, capsys):
    expected, box_only = _roboflow_export(tmp_path / "seedlings.v3i.coco-segmentation")
    out = tmp_path / "out"
    status, text, err = _prepare(capsys, "--coco", str(tmp_path / "seedlings.v3i.coco-segmentation"),
                                 "--classes", "all", "--output", str(out))
    assert status == 0, err
    _nothing_lost(text, 5, bad=f"{box_only} (no segmentation {box_only})")  # the box is not a mask: said so
    assert "classes (classes.json): leaf 10, root 5, stem 5 instances prepared" in text, text
    assert "train 3, val 2" in text
    _check(expected, out, COCO_MIN_IOU)


# ---------------------------------------------------------------------------------------------
# LabelMe 5 (and labelme2coco's COCO of the same folder)
# ---------------------------------------------------------------------------------------------

def _labelme_mask_field(mask: np.ndarray) -> str:
    """labelme.utils.img_arr_to_b64(mask.astype(np.uint8)): a PNG of 0 and 1."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _labelme_shape(label, points, shape_type="polygon", group_id=None, mask=None, with_mask_key=True):
    shape = {"label": label, "points": [list(p) for p in points], "group_id": group_id, "description": "",
             "shape_type": shape_type, "flags": {}}
    if with_mask_key or mask is not None:
        shape["mask"] = mask
    return shape


def _labelme_reference(shapes, height=H, width=W) -> list[np.ndarray]:
    """LabelMe's own drawing (labelme.utils.shape: shape_to_mask, shapes_to_label): each shape drawn
    with PIL, its instance (label, group_id) written over what is there; the instance masks."""
    instances, ins = [], np.zeros((height, width), np.int32)
    for number, shape in enumerate(shapes):
        kind = shape["shape_type"]
        if kind not in ("polygon", "rectangle", "circle", "mask"):
            continue
        key = (shape["label"], shape["group_id"] if shape["group_id"] is not None else f"uuid {number}")
        if key not in instances:
            instances.append(key)
        points = shape["points"]
        if kind == "mask":
            mask = np.zeros((height, width), bool)
            (x1, y1), (x2, y2) = np.asarray(points).astype(int)
            patch = np.asarray(Image.open(io.BytesIO(base64.b64decode(shape["mask"])))).astype(bool)
            mask[y1:y2 + 1, x1:x2 + 1] = patch
        else:
            canvas = Image.new("L", (width, height), 0)
            draw = ImageDraw.Draw(canvas)
            xy = [tuple(p) for p in points]
            if kind == "circle":
                (cx, cy), (px, py) = xy
                d = math.hypot(cx - px, cy - py)
                draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
            elif kind == "rectangle":
                (x0, y0), (x1, y1) = xy  # Pillow >= 10 wants them ordered; older Pillow drew either way
                draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
            else:
                draw.polygon(xy=xy, outline=1, fill=1)
            mask = np.asarray(canvas) > 0
        ins[mask] = instances.index(key) + 1
    return [ins == k + 1 for k in range(len(instances))]


def _labelme_folder(root: Path):
    """A LabelMe 5 project: JSONs in labels/, photographs in photos/ (imagePath ../photos/...), one
    JSON whose photograph was moved away (its imageData the only copy), one saved on Windows; the
    first a phone's portrait photograph, stored landscape with EXIF orientation 6, which LabelMe
    shows (and so annotates) turned, imageHeight/imageWidth the turned size."""
    files, expected = {}, {}
    photos = {"IMG_0101.jpg": 31, "IMG_0102.jpg": 32, "IMG_0103.jpg": 33}
    for number, (name, seed) in enumerate(photos.items()):
        orientation = 6 if number == 0 else None
        data = _photo_bytes(seed, orientation=orientation)
        sam = _rasterised(_leaf(100, 70, 34, 18, 45, seed=seed + 2))
        ys, xs = np.nonzero(sam)
        y1, x1, y2, x2 = ys.min(), xs.min(), ys.max(), xs.max()  # imgviz masks_to_bboxes: inclusive
        shapes = [
            _labelme_shape("leaf", _leaf(30, 30, 44, 18, 10 * seed, seed=seed), with_mask_key=number != 2),
            _labelme_shape("leaf", _leaf(62, 52, 40, 16, -20, seed=seed + 1), with_mask_key=number != 2),
            # A leaf of two polygons (group_id), one hidden in part by a later leaf.
            _labelme_shape("leaf", _leaf(22, 75, 20, 10, 0, seed=seed + 3), group_id=1, with_mask_key=number != 2),
            _labelme_shape("leaf", _leaf(48, 80, 20, 10, 0, seed=seed + 4), group_id=1, with_mask_key=number != 2),
            # LabelMe 5's AI mask (SAM), its PNG covering the mask's inclusive box.
            _labelme_shape("leaf", [[float(x1), float(y1)], [float(x2), float(y2)]], "mask",
                           mask=_labelme_mask_field(sam[y1:y2 + 1, x1:x2 + 1])),
            # A rectangle dragged from its bottom-right corner, and a circle.
            _labelme_shape("leaf", [[122.4, 30.6], [104.2, 6.3]], "rectangle", with_mask_key=number != 2),
            _labelme_shape("leaf", [[80.5, 22.0], [88.0, 26.5]], "circle", with_mask_key=number != 2),
            # A stem drawn last, over the leaves it crosses.
            _labelme_shape("stem", [(58.5, 5.0), (61.5, 5.0), (61.5, 92.0), (58.5, 92.0)], with_mask_key=number != 2),
        ]
        if number == 2:
            image_path = "..\\photos\\" + name  # saved on Windows
        else:
            image_path = "../photos/" + name
        if number == 1:  # the photograph was moved away; imageData (LabelMe re-encodes a .jpg as JPEG) remains
            image_data, source = base64.b64encode(data).decode(), None
        else:
            image_data, source = None, _write(root / "photos" / name, data)
        document = {"version": "5.5.0" if number != 2 else "5.8.1", "flags": {}, "shapes": shapes,
                    "imagePath": image_path, "imageData": image_data, "imageHeight": H, "imageWidth": W}
        json_path = root / "labels" / (Path(name).stem + ".json")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document, indent=2))
        files[json_path] = document
        expected[source or json_path] = _as_stored(_labelme_reference(shapes), orientation)
    return files, expected


def test_labelme_5_folder(tmp_path, capsys):
    _, expected = _labelme_folder(tmp_path / "project")
    out = tmp_path / "out"
    status, text, err = _prepare(capsys, "--labelme", str(tmp_path / "project" / "labels"), "--output", str(out))
    assert status == 0, err
    _nothing_lost(text, 3)
    _check(expected, out, LABELME_MIN_IOU)


# A leaf outline that crosses itself (a bow tie), and what shapely's make_valid makes of it:
# two triangles meeting at the crossing.
BOW_TIE = [(100.0, 40.0), (120.0, 60.0), (120.0, 40.0), (100.0, 60.0)]
BOW_TIE_MADE_VALID = [[(100.0, 40.0), (110.0, 50.0), (100.0, 60.0)], [(110.0, 50.0), (120.0, 60.0), (120.0, 40.0)]]


def _sahi_polygons(points):
    """What sahi.utils.shapely does to labelme2coco's polygon: a shapely MultiPolygon (made valid
    when the outline crosses itself), written back as its exterior rings -- closed, so the closing
    point is dropped again -- with int()-truncated coordinates."""
    rings = BOW_TIE_MADE_VALID if [tuple(p) for p in points] == BOW_TIE else [[tuple(p) for p in points]]
    result = []
    for ring in rings:
        closed = ring + ring[:1]
        flat = [int(v) for point in closed for v in point]
        if flat[:2] == flat[-2:]:
            del flat[-2:]
        result.append(flat)
    return result


def _labelme2coco(files: dict, labelme_folder: str, legacy_prefix: bool) -> dict:
    """labelme2coco.convert(labelme_folder): sahi's Coco of the LabelMe JSONs, as its dataset.json."""
    categories, images, annotations = [], [], []
    for json_path in sorted(files):
        data = files[json_path]
        file_name = str(Path(labelme_folder) / data["imagePath"]) if legacy_prefix else data["imagePath"]
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": file_name, "height": data["imageHeight"],
                       "width": data["imageWidth"]})
        for shape in data["shapes"]:
            names = [c["name"] for c in categories]
            if shape["label"] not in names:
                categories.append({"id": len(categories), "name": shape["label"], "supercategory": shape["label"]})
            category_id = next(c["id"] for c in categories if c["name"] == shape["label"])
            kind, points = shape["shape_type"], shape["points"]
            if kind == "mask":
                continue  # labelme2coco raises NotImplementedError on mask shapes: the user deletes them first
            if kind == "circle":
                (cx, cy), (x1, y1) = points
                r = np.linalg.norm(np.array([x1 - cx, y1 - cy]))
                angles = np.linspace(0, 2 * np.pi, 50 * (int(r) + 1))
                ring = np.rint(np.append(cx + r * np.cos(angles), cy + r * np.sin(angles)).reshape(-1, 2, order="F"))
                _, index = np.unique(ring, return_index=True, axis=0)
                points, kind = ring[np.sort(index)].tolist(), "polygon"
            if kind == "rectangle":
                (x1, y1), (x2, y2) = points
                segmentation, bbox = [], [round(x1), round(y1), round(x2 - x1), round(y2 - y1)]
            else:
                segmentation = _sahi_polygons(points)
                bbox = None
            annotations.append({"image_id": image_id, "bbox": bbox or [0, 0, 0, 0], "category_id": category_id,
                                "segmentation": segmentation, "iscrowd": 0, "area": 0,
                                "id": len(annotations) + 1})
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.mark.parametrize("legacy_prefix", [False, True], ids=["imagePath", "folder-prefixed"])
def test_labelme2coco_dataset_json(tmp_path, capsys, legacy_prefix):
    files, _ = _labelme_folder(tmp_path / "project")
    # labelme2coco needs image files (it writes file names, not imageData): the moved photograph is back.
    for json_path, data in files.items():
        if data["imageData"]:
            _write(tmp_path / "project" / "photos" / Path(data["imagePath"].replace("\\", "/")).name,
                   base64.b64decode(data["imageData"]))
    # A leaf whose outline crosses itself: shapely splits it into two polygons.
    first = sorted(files)[0]
    files[first]["shapes"].append(_labelme_shape("leaf", BOW_TIE))
    document = _labelme2coco(files, "project/labels", legacy_prefix)
    export = tmp_path / "runs" / "labelme2coco" / "dataset.json"
    export.parent.mkdir(parents=True)
    export.write_text(json.dumps(document, indent=4))
    expected = {}
    for image in document["images"]:
        name = Path(image["file_name"].replace("\\", "/")).name
        expected[tmp_path / "project" / "photos" / name] = _as_stored([  # IMG_0101: the phone's portrait photo
            _coco_mask(a["segmentation"]) for a in document["annotations"]
            if a["image_id"] == image["id"] and a["segmentation"]], 6 if name == "IMG_0101.jpg" else None)
    boxes = sum(not a["segmentation"] for a in document["annotations"])
    out = tmp_path / "out"
    # The images folder: labelme2coco leaves the photographs where they are.
    status, text, err = _prepare(capsys, "--coco", str(export), "--input", str(tmp_path / "project" / "photos"),
                                 "--output", str(out))
    assert status == 0, err
    _nothing_lost(text, 3, bad=f"{boxes} (no segmentation {boxes})")  # its rectangles come box-only
    _check(expected, out, COCO_MIN_IOU)
