"""Leaf and plant traits from instance masks, the way PlantCV, Leaf-GP and ARADEEPOPSIS report them.

    leaves = measure_leaves(r["masks"], r["scores"], image_name="plant001", mm_per_pixel=0.1)
    plant = measure_plant(r["masks"], image_name="plant001", mm_per_pixel=0.1)
    write_csv(round_traits(leaves, 0.1), "leaves.csv"); write_csv(round_traits([plant], 0.1), "plants.csv")

Per leaf (one row per mask, in input order): area, bounding box, centroid, length and width,
orientation, perimeter. A leaf is its whole mask, even in several pieces (a leaf cut in two by
a younger one lying over it): it is measured as ONE region, never per connected component.
Length and width are the major and minor axis lengths of the ellipse with the same second
central moments (scikit-image's ``regionprops``): for a filled a x b rectangle (a <= b) they
are 4 sqrt((b² − 1) / 12) and 4 sqrt((a² − 1) / 12) pixels.

Per plant: leaf count, projected rosette area (pixels covered by at least one leaf, so overlaps
count once), convex hull area, compactness and rosette diameter. The convex hull is that of the
rosette's pixels taken as unit squares (their corners), so a filled rectangle's hull is the
rectangle itself; compactness = rosette area / convex hull area, in (0, 1] (Leaf-GP's
"compactness", PlantCV's "solidity"); the diameter is the largest distance between two hull
corners (the maximum Feret diameter of the pixel squares).

Units: with ``mm_per_pixel=None`` lengths are in pixels (columns ``*_px``) and areas in
square pixels (``*_px``, short for px²); with a scale, lengths in mm (``*_mm``) and areas in mm²
(``*_mm2``, scaled by mm_per_pixel²). Bounding boxes and centroids are positions in the image
and stay in pixels whatever the scale. Orientation and compactness have no unit.

The measures are returned at full float precision; :func:`round_traits` rounds them to what a
pixel grid supports, for tables (``leafseg predict``'s CSVs): pixel counts (``area_px``,
``rosette_area_px``) as integers, the convex hull area (a multiple of half a pixel) to 0.5 px,
lengths, widths, perimeters, diameters and centroids to 0.01 px, orientation to 0.01°, score
and compactness to 4 decimals; in mm, lengths to the decimals of 0.01 px in mm (3 decimals
for 0.1 mm/px) and areas to those of 0.1 px² in mm² (3 decimals for 0.1 mm/px).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import skimage.measure

from leafseg.measure.metrics import write_csv

__all__ = ["measure_plants", "measure_leaves", "measure_plant", "round_traits", "write_csv", "orientation_from_regionprops"]

_REGION_PROPERTIES = ("label", "area", "bbox", "centroid", "axis_major_length",
                      "axis_minor_length", "orientation", "perimeter")


def _check_masks(masks) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be bool [H, W, N], got shape {masks.shape}")
    return masks if masks.dtype == bool else masks > 0.5


def _units(mm_per_pixel):
    """-> (length scale, length suffix, area suffix)."""
    if mm_per_pixel is None:
        return 1.0, "px", "px"
    scale = float(mm_per_pixel)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"mm_per_pixel must be a positive number, got {mm_per_pixel!r}")
    return scale, "mm", "mm2"


def orientation_from_regionprops(radians: float) -> float:
    """skimage's orientation -> degrees of the major axis from the image's x axis, in [0, 180).

    Convention: 0° = horizontal, 90° = vertical, counter-clockwise as seen on screen (a leaf
    pointing up and to the right has 45°). skimage's value is the angle from the row axis in
    [−π/2, π/2]. Undefined (and arbitrary) for shapes without a long axis, such as a disc.
    """
    degrees = (math.degrees(radians) + 90.0) % 180.0
    return 0.0 if degrees >= 180.0 else float(degrees)  # x % 180.0 is 180.0 for a tiny negative x


def _layers(masks: np.ndarray) -> list[list[int]]:
    """Split instance indices into groups of pairwise non-overlapping masks (greedy, in order).

    Each group can be painted into one label image without losing a pixel, so regionprops
    measures every mask whole with one call per group (usually a single group).
    """
    n = masks.shape[2]
    flat = masks.reshape(masks.shape[0] * masks.shape[1], n).astype(np.float32)
    overlaps = (flat.T @ flat) > 0  # [N, N], float32 sums of 0/1 exact below 2**24 pixels
    layers: list[list[int]] = []
    for k in range(n):
        for layer in layers:
            if not overlaps[k, layer].any():
                layer.append(k)
                break
        else:
            layers.append([k])
    return layers


# skimage.measure.perimeter (4-neighbourhood): a border pixel's code is 1 plus these weights of
# its 8 neighbours that are border pixels of the same region; each code adds a length.
_PERIMETER_KERNEL = ((-1, -1, 10), (-1, 0, 2), (-1, 1, 10), (0, -1, 2), (0, 1, 2), (1, -1, 10), (1, 0, 2), (1, 1, 10))
_PERIMETER_WEIGHTS = np.zeros(50, np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2


def label_perimeters(label, boxes=None) -> np.ndarray:
    """float64 [max id + 1]: ``skimage.measure.perimeter(label == id, 4)`` for every id at once
    (index 0 unused), the same values: skimage's border pixels and codes, found for all regions
    in one pass over the box that holds them, and each region's histogram of codes dotted with
    skimage's weights as it does. boxes: ``ndimage.find_objects(label)``, if already made."""
    from scipy import ndimage

    label = np.asarray(label)
    count = len(boxes) if boxes is not None else int(label.max(initial=0))
    perimeters = np.zeros(count + 1, np.float64)
    found = [box for box in (ndimage.find_objects(label) if boxes is None else boxes) if box is not None]
    if not found:
        return perimeters
    y1, y2 = min(b[0].start for b in found), max(b[0].stop for b in found)
    x1, x2 = min(b[1].start for b in found), max(b[1].stop for b in found)
    ids = np.pad(label[y1:y2, x1:x2], 1)  # (outside the image: background)
    h, w = ids.shape[0] - 2, ids.shape[1] - 2
    centre = ids[1:-1, 1:-1]

    def neighbour(dy, dx):
        return ids[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    inside = centre > 0
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):  # eroded by the 4-neighbourhood, border value 0
        inside &= neighbour(dy, dx) == centre
    border = (centre > 0) & ~inside
    border_ids = np.pad(np.where(border, centre, 0), 1)
    codes = np.ones((h, w), np.uint8)  # (at most 1 + 4 * 10 + 4 * 2 = 49)
    same = np.empty((h, w), bool)
    for dy, dx, weight in _PERIMETER_KERNEL:
        np.equal(border_ids[1 + dy:1 + dy + h, 1 + dx:1 + dx + w], centre, out=same)
        np.add(codes, np.uint8(weight), out=codes, where=same)
    region = centre[border].astype(np.intp)
    histograms = np.bincount(region * 50 + codes[border], minlength=(count + 1) * 50).reshape(count + 1, 50)
    for index in np.unique(region):
        perimeters[index] = histograms[index] @ _PERIMETER_WEIGHTS
    return perimeters


def label_properties(label) -> dict:
    """regionprops' _REGION_PROPERTIES of each id of a label image, {id - 1: {name: value}},
    computed per leaf within its box: moments by OpenCV (skimage's formulas for the axes and
    the orientation), the perimeter by skimage on the box as regionprops does. The same values
    as ``skimage.measure.regionprops_table`` up to float rounding, in a fraction of the time."""
    from scipy import ndimage

    label = np.asarray(label)
    props = {}
    boxes = ndimage.find_objects(label)
    perimeters = label_perimeters(label, boxes)
    for index, box in enumerate(boxes):
        if box is None:
            continue
        mask = label[box] == index + 1
        m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
        area = m["m00"]
        # skimage's inertia tensor [[mu_cc, -mu_rc], [-mu_rc, mu_rr]] / area (r: rows, c: columns)
        a, b, c = m["mu20"] / area, -m["mu11"] / area, m["mu02"] / area
        root = math.sqrt(max(0.0, ((a - c) / 2) ** 2 + b ** 2))
        major, minor = (a + c) / 2 + root, (a + c) / 2 - root
        if a - c == 0:
            orientation = -math.pi / 4 if b < 0 else math.pi / 4
        else:
            orientation = 0.5 * math.atan2(-2 * b, c - a)
        props[index] = {
            "label": index + 1, "area": area,
            "bbox-0": box[0].start, "bbox-1": box[1].start, "bbox-2": box[0].stop, "bbox-3": box[1].stop,
            "centroid-0": box[0].start + m["m01"] / area, "centroid-1": box[1].start + m["m10"] / area,
            "axis_major_length": 4 * math.sqrt(max(0.0, major)), "axis_minor_length": 4 * math.sqrt(max(0.0, minor)),
            "orientation": orientation, "perimeter": perimeters[index + 1],
        }
    return props


def measure_leaves(masks, scores=None, image_name: str = "", mm_per_pixel=None, label=None) -> list[dict]:
    """One row of traits per leaf mask.

    masks: bool [H, W, N], one leaf per channel (overlapping masks are each measured whole).
    scores: [N] detection scores, copied into the "score" column (None: empty column).
    image_name: copied into the "image" column.
    mm_per_pixel: pixel size; None reports pixels (see the module docstring for units).
    label: the masks painted into one label image (mask k as id k + 1), when they do not
        overlap (visible leaves): measured at once, without looking for overlaps. With a
        label, ``masks`` may be None (N: the scores' length, else the label's largest id).

    Returns: N dicts with keys image, leaf (1-based, input order), score, area_<a>,
    bbox_y1_px, bbox_x1_px, bbox_y2_px, bbox_x2_px (y2 / x2 exclusive), centroid_y_px,
    centroid_x_px, length_<l>, width_<l>, orientation_deg, perimeter_<l>, where <l> is px or mm
    and <a> px or mm2. A mask without pixels gets area 0, box 0, length / width / perimeter 0
    and NaN centroid and orientation.
    """
    if masks is None and label is not None:
        n = len(np.reshape(scores, -1)) if scores is not None else int(np.max(label, initial=0))
    else:
        masks = _check_masks(masks)
        n = masks.shape[2]
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (n,):
            raise ValueError(f"{image_name or 'image'}: {n} masks but {scores.size} scores")
    scale, length_unit, area_unit = _units(mm_per_pixel)

    if label is not None:
        props = label_properties(label)
    else:
        props = {}
        for layer in _layers(masks):
            layer_label = np.zeros(masks.shape[:2], dtype=np.int32)
            for k in layer:
                layer_label[masks[..., k]] = k + 1
            table = skimage.measure.regionprops_table(layer_label, properties=_REGION_PROPERTIES)
            for i, leaf_id in enumerate(table["label"]):
                props[int(leaf_id) - 1] = {name: values[i] for name, values in table.items()}

    rows = []
    for k in range(n):
        p = props.get(k)
        row = {"image": image_name, "leaf": k + 1,
               "score": None if scores is None else float(scores[k])}
        if p is None:  # no pixels: regionprops has no region to measure
            row.update({f"area_{area_unit}": 0.0, "bbox_y1_px": 0, "bbox_x1_px": 0,
                        "bbox_y2_px": 0, "bbox_x2_px": 0, "centroid_y_px": math.nan,
                        "centroid_x_px": math.nan, f"length_{length_unit}": 0.0,
                        f"width_{length_unit}": 0.0, "orientation_deg": math.nan,
                        f"perimeter_{length_unit}": 0.0})
        else:
            row.update({
                f"area_{area_unit}": float(p["area"]) * scale ** 2,
                "bbox_y1_px": int(p["bbox-0"]), "bbox_x1_px": int(p["bbox-1"]),
                "bbox_y2_px": int(p["bbox-2"]), "bbox_x2_px": int(p["bbox-3"]),
                "centroid_y_px": float(p["centroid-0"]), "centroid_x_px": float(p["centroid-1"]),
                f"length_{length_unit}": float(p["axis_major_length"]) * scale,
                f"width_{length_unit}": float(p["axis_minor_length"]) * scale,
                "orientation_deg": orientation_from_regionprops(p["orientation"]),
                f"perimeter_{length_unit}": float(p["perimeter"]) * scale,
            })
        rows.append(row)
    return rows


def _hull_corners(foreground: np.ndarray) -> np.ndarray:
    """int32 [V, 2] (x, y) convex hull vertices of the foreground's pixel squares.

    Pixel (r, c) covers [c, c + 1] x [r, r + 1]. Only the leftmost and rightmost pixel of each
    row can be on the hull, so their outer corners are enough (at most 4 per row).
    """
    rows = np.flatnonzero(foreground.any(axis=1))
    left = np.argmax(foreground[rows], axis=1)
    right = foreground.shape[1] - 1 - np.argmax(foreground[rows, ::-1], axis=1)
    points = np.concatenate([
        np.stack([left, rows], axis=1), np.stack([left, rows + 1], axis=1),
        np.stack([right + 1, rows], axis=1), np.stack([right + 1, rows + 1], axis=1),
    ]).astype(np.int32)
    return cv2.convexHull(points).reshape(-1, 2)


def measure_plant(masks, image_name: str = "", mm_per_pixel=None, label=None) -> dict:
    """The plant-level traits of one image's leaves.

    masks: bool [H, W, N], one leaf per channel; masks may overlap.
    mm_per_pixel: pixel size; None reports pixels.
    label: the masks painted into one label image (mask k as id k + 1), when they do not
        overlap: the same traits, without reducing over the masks.

    Returns: {"image", "leaf_count", "rosette_area_<a>", "convex_hull_area_<a>",
    "compactness", "diameter_<l>"} (<a> px or mm2, <l> px or mm). leaf_count counts masks with
    at least one pixel. With no leaf: count 0, areas and diameter 0, compactness NaN
    (undefined: 0 / 0; NaN keeps it out of means over plants).
    """
    masks = _check_masks(masks)
    scale, length_unit, area_unit = _units(mm_per_pixel)
    if label is not None:
        foreground = np.asarray(label) > 0
        label = np.asarray(label)
        if label.dtype.kind in "ub" and label.size:  # (a count per id: cheaper than np.unique's sort or hash)
            leaf_count = int(np.count_nonzero(np.bincount(label.ravel())[1:]))
        else:
            leaf_count = int(np.count_nonzero(np.unique(label)))
    else:
        foreground = masks.any(axis=2)
        leaf_count = int(masks.any(axis=(0, 1)).sum())
    rosette_area = int(foreground.sum())
    if rosette_area == 0:
        hull_area, diameter = 0.0, 0.0
    else:
        hull = _hull_corners(foreground)
        hull_area = float(cv2.contourArea(hull))
        gaps = hull[:, np.newaxis, :].astype(np.float64) - hull[np.newaxis, :, :]
        diameter = float(np.sqrt((gaps ** 2).sum(axis=-1)).max())
    return {
        "image": image_name,
        "leaf_count": leaf_count,
        f"rosette_area_{area_unit}": rosette_area * scale ** 2,
        f"convex_hull_area_{area_unit}": hull_area * scale ** 2,
        "compactness": rosette_area / hull_area if hull_area else math.nan,
        f"diameter_{length_unit}": diameter * scale,
    }


def measure_plants(label, plant_of_leaf, plants, image_name: str = "", mm_per_pixel=None) -> list[dict]:
    """The plant-level traits of each plant of a scene (:func:`measure_plant`, one plant at a
    time) with the plant's name, box and centroid.

    label: [H, W] visible leaves, leaf k + 1 (0 background), leaves of different plants apart.
    plant_of_leaf: [N] the plant id of leaf k + 1. plants: [(id, name, box)], box (y1, x1, y2,
        x2) a region holding all of the plant's leaves (its crop), in reading order.
    Returns one row per plant: {"image", "plant", "bbox_y1_px", "bbox_x1_px", "bbox_y2_px",
    "bbox_x2_px", "centroid_y_px", "centroid_x_px", then measure_plant's traits}; the box and
    centroid are those of the plant's leaf pixels (a plant without leaves: box 0 and NaN
    centroid, as a leaf without pixels in :func:`measure_leaves`).
    """
    label = np.asarray(label)
    plant_of_leaf = np.asarray(plant_of_leaf).reshape(-1)
    rows = []
    for plant_id, name, (y1, x1, y2, x2) in plants:
        sub = label[y1:y2, x1:x2]
        ids = np.flatnonzero(plant_of_leaf == plant_id) + 1
        own = sub if len(ids) == len(plant_of_leaf) else np.where(np.isin(sub, ids), sub, 0)
        # measured within the box of its leaves (the same traits: none depends on where the plant is)
        filled_rows, filled_cols = np.flatnonzero(own.any(axis=1)), np.flatnonzero(own.any(axis=0))
        top, left = (filled_rows[0], filled_cols[0]) if len(filled_rows) else (0, 0)
        if len(filled_rows):
            own = own[top:filled_rows[-1] + 1, left:filled_cols[-1] + 1]
        traits = measure_plant(np.zeros((*own.shape, 0), bool), image_name, mm_per_pixel, label=own)
        ys, xs = np.nonzero(own)
        ys, xs = ys + top, xs + left
        if len(ys):
            where = {"bbox_y1_px": int(ys.min()) + y1, "bbox_x1_px": int(xs.min()) + x1,
                     "bbox_y2_px": int(ys.max()) + 1 + y1, "bbox_x2_px": int(xs.max()) + 1 + x1,
                     "centroid_y_px": float(ys.mean()) + y1, "centroid_x_px": float(xs.mean()) + x1}
        else:
            where = {"bbox_y1_px": 0, "bbox_x1_px": 0, "bbox_y2_px": 0, "bbox_x2_px": 0,
                     "centroid_y_px": math.nan, "centroid_x_px": math.nan}
        rows.append({"image": image_name, "plant": name, **where,
                     **{key: value for key, value in traits.items() if key != "image"}})
    return rows


def _decimals(step: float) -> int:
    """The decimals that resolve ``step`` (0.005 -> 3, 0.01 -> 2, 2.0 -> 0)."""
    return max(0, math.ceil(-math.log10(step) - 1e-9))


def round_traits(rows, mm_per_pixel=None) -> list[dict]:
    """Copies of :func:`measure_leaves` / :func:`measure_plant` rows rounded for a table.

    Rounding by column (see the module docstring): what a measure on a pixel grid supports,
    without float noise such as ``790.7800000000002``. mm_per_pixel: the scale the rows were
    measured with (None: pixels), which sets the decimals of the mm and mm² columns. Columns
    not listed there (image, leaf, boxes), None and NaN are copied as they are.
    """
    scale = 1.0 if mm_per_pixel is None else float(mm_per_pixel)
    length_mm, area_mm2 = _decimals(0.01 * scale), _decimals(0.1 * scale ** 2)
    rules = {"score": 4, "compactness": 4, "orientation_deg": 2, "centroid_y_px": 2, "centroid_x_px": 2,
             "area_px": None, "rosette_area_px": None, "convex_hull_area_px": 1}
    for prefix in ("length", "width", "perimeter", "diameter"):
        rules[f"{prefix}_px"], rules[f"{prefix}_mm"] = 2, length_mm
    for prefix in ("area", "rosette_area", "convex_hull_area"):
        rules[f"{prefix}_mm2"] = area_mm2
    rounded = []
    for row in rows:
        out = dict(row)
        for key, value in row.items():
            if key not in rules or value is None or not math.isfinite(value):
                continue
            digits = rules[key]
            out[key] = int(round(value)) if digits is None else round(float(value), digits)
            if key == "orientation_deg" and out[key] >= 180.0:
                out[key] = 0.0  # 179.996° rounds to 180°, which is 0° on a half-turn scale
        rounded.append(out)
    return rounded
