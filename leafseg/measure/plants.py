"""Per-plant figures of a scene: its plants matched one to one, their leaves counted and scored.

A scene (a tray of pots, a dish of seedlings) holds several plants. Its ground truth is two label
images of one size: the leaf label (0 = background, one id per leaf, as in
:mod:`leafseg.measure.metrics`) and the plant label (0 = no plant, one id per plant; a plant's
region is the union of its leaves' visible pixels). A prediction is the same pair: the leaf label
of :func:`leafseg.measure.metrics.label_from_detections`, and the plant label that
:func:`plant_label_from_detections` makes of it with the detections' ``plant_ids`` (without them
the whole image is one plant):

    pred_leaves = label_from_detections(r["masks"], r["scores"])
    pred_plants = plant_label_from_detections(pred_leaves, r.get("plant_ids"))
    rows, figures = compare_plants(pred_leaves, pred_plants, gt_leaves, gt_plants)

Matching (:func:`match_plants`). Predicted plants are paired with ground-truth plants one to one
by the IoU of their regions: the Hungarian assignment (``scipy.optimize.linear_sum_assignment``)
that maximises the total IoU of the pairs whose IoU is above ``MATCH_IOU`` = 0.5. Why above 0.5:
the plant regions of one label are disjoint, so a plant can overlap at most one plant of the
other label by more than half of their union (two such plants would together cover more than
the whole of it). Above 0.5 the pairs are therefore unique, whatever the ids or their reading
order, and the assignment only confirms them; a looser ``min_iou`` lets the assignment choose
between candidates. Two plants merged into one prediction: the merge matches the plant that
makes up more than half of it, if one does (a large and a small plant: the large one, whose DiC
then counts the small one's leaves too, and the small one is missed); two equal plants (IoU
exactly 0.5 each) are both missed and the merge is invented.

A plant's leaves are the leaf label where the plant label holds its id (every other pixel
background): a leaf counts in the plant its pixels lie in. In the ground truth every leaf pixel
must lie in a plant and every leaf in one plant (ValueError otherwise: a plants file that is not
its label's, or one label colour used for leaves of two plants). A predicted leaf that crosses
plant regions (a plant label made otherwise than from the detections) counts in each plant with
the part that lies there.

Rows, one per plant (:data:`PLANT_COLUMNS`): every ground-truth plant in ascending id, matched or
missed, then every invented predicted plant in ascending id.

    gt_plant, pred_plant  the plant ids; None on the side that has no plant
    status                "matched", "missed" (no predicted plant) or "invented" (no true plant)
    iou                   IoU of the two plant regions; 0.0 when unmatched
    gt_count, pred_count  leaves of the plant in the ground truth and in the prediction
    dic, abs_dic          DiC = pred_count - gt_count, and |DiC|
    sbd                   SBD (metrics.compare_labels) of the predicted plant's leaves against the
                          true plant's leaves; 0.0 for a missed or invented plant

Figures of an image (:data:`FIGURES`): plants_true (ground-truth plants), plants_found (matched),
plants_invented (predicted plants left unmatched), plants_missed (ground-truth plants left
unmatched, = plants_true - plants_found), and plant_abs_dic_mean / plant_sbd_mean, the mean |DiC|
and SBD over the *matched* plants (None when no plant is matched). A missed or invented plant
counts in neither mean: plant finding is read from the plant counts, and leaf counting and
segmentation from the means, within the plants found, rather than one plant of 15 leaves missed
weighing as much as 15 miscounted leaves. The rows of missed and invented plants carry DiC =
-gt_count / +pred_count and SBD 0, so a mean over every plant is one step away.
:func:`summarize_plants` gives the figures of several images.

This module imports neither TensorFlow nor Keras.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from leafseg.measure.metrics import check_label, compare_labels, overlap_table

__all__ = ["MATCH_IOU", "PLANT_COLUMNS", "FIGURES", "COUNTS", "PLANT_DEFINITIONS", "plant_label_from_detections",
           "match_plants", "compare_plants", "summarize_plants"]

MATCH_IOU = 0.5
# The keys of a per-plant row, in table order.
PLANT_COLUMNS = ("gt_plant", "pred_plant", "status", "iou", "gt_count", "pred_count", "dic", "abs_dic", "sbd")
# The plant counts of an image, and all its figures in table order.
COUNTS = ("plants_true", "plants_found", "plants_invented", "plants_missed")
FIGURES = COUNTS + ("plant_abs_dic_mean", "plant_sbd_mean")
# The means over matched plants, by the row key they average.
_PLANT_MEANS = {"abs_dic": "plant_abs_dic", "sbd": "plant_sbd"}

# What the names mean, for printed output and metrics.json "definitions".
PLANT_DEFINITIONS = {
    "plants_true": "plants in an image's ground truth (its plants file)",
    "plants_found": f"ground-truth plants matched one to one with a predicted plant: plant regions' IoU above "
                    f"{MATCH_IOU}, Hungarian assignment",
    "plants_invented": "predicted plants matched with no ground-truth plant",
    "plants_missed": "ground-truth plants matched with no predicted plant (plants_true - plants_found)",
    "plant_abs_dic_mean": "|DiC| of a plant: predicted leaves of the matched plant minus the plant's true leaves, "
                          "absolute; averaged over an image's matched plants (missed and invented plants are "
                          "counted by plants_missed / plants_invented, not here), in the summary over every "
                          "matched plant of every image; best 0",
    "plant_sbd_mean": "SBD of a plant: its true leaves against the matched predicted plant's leaves; averaged as "
                      "plant_abs_dic_mean; higher is better",
}


def plant_label_from_detections(leaf_label, plant_of_leaf=None) -> np.ndarray:
    """The plant label of a prediction: each leaf's pixels carry its plant's id.

    leaf_label: [H, W] ids as label_from_detections gives them (detection k -> id k + 1,
        0 = background).
    plant_of_leaf: int [N], the plant (1..P) of detection k, MaskRCNN.detect's ``plant_ids``;
        N at least the largest id of leaf_label. None: every leaf is plant 1 (the whole image is
        one plant, what a result without ``plant_ids`` means).

    Returns: int32 [H, W], the plant id of each leaf pixel, 0 where leaf_label is 0.
    Raises ValueError for non-integer ids, fewer ids than leaves or a plant id below 1.
    """
    leaf_label = check_label(leaf_label, "leaf_label")
    if plant_of_leaf is None:
        return (leaf_label != 0).astype(np.int32)
    plant_of_leaf = np.asarray(plant_of_leaf)
    if plant_of_leaf.ndim != 1 or not np.issubdtype(plant_of_leaf.dtype, np.integer):
        raise ValueError(f"plant_of_leaf must be integer plant ids [N], got {plant_of_leaf.dtype} "
                         f"{plant_of_leaf.shape}")
    top = int(leaf_label.max()) if leaf_label.size else 0
    if top > plant_of_leaf.size:
        raise ValueError(f"leaf_label holds leaf id {top} but plant_of_leaf has {plant_of_leaf.size} plant ids "
                         "(one per detection)")
    if plant_of_leaf.size and plant_of_leaf.min() < 1:
        bad = int(np.argmin(plant_of_leaf))
        raise ValueError(f"plant_of_leaf[{bad}] is {plant_of_leaf[bad]}: plant ids are 1..P")
    lut = np.concatenate([[0], plant_of_leaf]).astype(np.int32)
    return lut[leaf_label]


def _same_shape(**labels) -> dict:
    """The labels checked (metrics.check_label) and of one shape; ValueError naming them otherwise."""
    labels = {name: check_label(label, name) for name, label in labels.items()}
    shapes = {label.shape for label in labels.values()}
    if len(shapes) > 1:
        sizes = ", ".join(f"{name} {label.shape}" for name, label in labels.items())
        raise ValueError(f"label images of different shapes: {sizes}")
    return labels


def _boxes(plants: np.ndarray) -> dict:
    """{plant id: its bounding box as (row slice, column slice)} of the plants present, ascending."""
    return {k + 1: box for k, box in enumerate(ndimage.find_objects(plants)) if box is not None}


def match_plants(pred_plants, gt_plants, min_iou=MATCH_IOU):
    """Pair predicted plants with ground-truth plants one to one by the IoU of their regions.

    pred_plants, gt_plants: [H, W] plant labels (0 = no plant), of one shape.
    min_iou: a pair can match only when its IoU is above this, in [0, 1) (the module docstring
        says why 0.5).

    Returns: (matches, missed, invented)
        matches: [(gt id, pred id, IoU)], ascending gt id; the pairs of the assignment that
            maximises the total IoU over the pairs above min_iou;
        missed: the ground-truth plant ids left unmatched, ascending;
        invented: the predicted plant ids left unmatched, ascending.
    """
    if not 0 <= min_iou < 1:
        raise ValueError(f"min_iou must be in [0, 1), got {min_iou}")
    labels = _same_shape(pred_plants=pred_plants, gt_plants=gt_plants)
    pred_ids = np.array(list(_boxes(labels["pred_plants"])), np.int64)
    gt_ids = np.array(list(_boxes(labels["gt_plants"])), np.int64)
    table = overlap_table(labels["pred_plants"], labels["gt_plants"])  # rows pred_ids, columns gt_ids
    intersections = table[1:, 1:].astype(np.float64)
    unions = table[1:, :].sum(axis=1)[:, np.newaxis] + table[:, 1:].sum(axis=0)[np.newaxis, :] - intersections
    iou = intersections / unions  # every plant present has a pixel: unions > 0
    eligible = np.where(iou > min_iou, iou, 0.0)
    rows, cols = linear_sum_assignment(eligible, maximize=True)
    keep = eligible[rows, cols] > 0
    rows, cols = rows[keep], cols[keep]
    order = np.argsort(cols)
    matches = [(int(gt_ids[c]), int(pred_ids[r]), float(iou[r, c])) for r, c in zip(rows[order], cols[order])]
    missed = [int(g) for g in np.delete(gt_ids, cols)]
    invented = [int(p) for p in np.delete(pred_ids, rows)]
    return matches, missed, invented


def _check_leaves_in_plants(leaves: np.ndarray, plants: np.ndarray) -> None:
    """ValueError unless every leaf of ``leaves`` lies wholly inside one plant of ``plants``."""
    table = overlap_table(leaves, plants)  # rows: leaves ascending; column 0: no plant
    outside = table[1:, 0]
    spread = np.count_nonzero(table[1:, 1:], axis=1)
    bad = np.flatnonzero((outside > 0) | (spread > 1))
    if not bad.size:
        return
    leaf_ids = np.unique(leaves)
    leaf_ids = leaf_ids[leaf_ids != 0]
    k = bad[0]
    more = f" (and {bad.size - 1} more leaves)" if bad.size > 1 else ""
    if outside[k]:
        raise ValueError(f"gt_leaves: leaf {leaf_ids[k]} has {outside[k]} of its {table[k + 1].sum()} pixels "
                         f"outside every plant of gt_plants{more}: a plant's region holds its leaves (is the "
                         "plants file that of this label?)")
    plant_ids = np.array(list(_boxes(plants)))
    inside = plant_ids[np.flatnonzero(table[k + 1, 1:])].tolist()
    raise ValueError(f"gt_leaves: leaf {leaf_ids[k]} lies in plants {inside} of gt_plants{more}: a leaf belongs "
                     "to one plant (is one label colour used for leaves of several plants?)")


def _union_box(a, b):
    if a is None or b is None:
        return b if a is None else a
    return tuple(slice(min(s.start, t.start), max(s.stop, t.stop)) for s, t in zip(a, b))


def _leaves_of(leaves, plants, plant_id, window):
    """The leaves of plant ``plant_id`` within ``window``, 0 elsewhere; none for plant None."""
    if plant_id is None:
        return np.zeros_like(leaves[window])
    return np.where(plants[window] == plant_id, leaves[window], 0)


def _mean(values):
    values = list(values)
    return float(np.mean(values)) if values else None


def compare_plants(pred_leaves, pred_plants, gt_leaves, gt_plants, min_iou=MATCH_IOU):
    """Per-plant figures of one image: its plants matched, their leaves counted and scored.

    pred_leaves, pred_plants, gt_leaves, gt_plants: [H, W] label images of one shape (leaf
        labels: 0 = background; plant labels: 0 = no plant); see the module docstring.
    min_iou: as :func:`match_plants`.

    Returns: (rows, figures): a dict per plant with the keys of PLANT_COLUMNS, the ground
    truth's plants in ascending id and then the invented ones; and the image's figures, the
    keys of FIGURES (module docstring).
    Raises ValueError for labels of different shapes, or a ground-truth leaf outside every
    plant or in several.
    """
    labels = _same_shape(pred_leaves=pred_leaves, pred_plants=pred_plants, gt_leaves=gt_leaves, gt_plants=gt_plants)
    _check_leaves_in_plants(labels["gt_leaves"], labels["gt_plants"])
    matches, missed, invented = match_plants(labels["pred_plants"], labels["gt_plants"], min_iou)
    pred_boxes, gt_boxes = _boxes(labels["pred_plants"]), _boxes(labels["gt_plants"])
    pairs = sorted(matches + [(g, None, 0.0) for g in missed], key=lambda pair: pair[0])
    pairs += [(None, p, 0.0) for p in invented]
    rows = []
    for gt_id, pred_id, iou in pairs:
        window = _union_box(gt_boxes.get(gt_id), pred_boxes.get(pred_id))
        scores = compare_labels(_leaves_of(labels["pred_leaves"], labels["pred_plants"], pred_id, window),
                                _leaves_of(labels["gt_leaves"], labels["gt_plants"], gt_id, window))
        status = "invented" if gt_id is None else "missed" if pred_id is None else "matched"
        rows.append({"gt_plant": gt_id, "pred_plant": pred_id, "status": status, "iou": iou,
                     **{key: scores[key] for key in ("gt_count", "pred_count", "dic", "abs_dic", "sbd")}})
    matched = [row for row in rows if row["status"] == "matched"]
    figures = {"plants_true": len(gt_boxes), "plants_found": len(matches), "plants_invented": len(invented),
               "plants_missed": len(missed)}
    figures.update({f"{name}_mean": _mean(row[key] for row in matched) for key, name in _PLANT_MEANS.items()})
    return rows, figures


def summarize_plants(figures, rows) -> dict:
    """The plant figures of several images.

    figures: one dict per image holding :func:`compare_plants`' figures (other keys are ignored).
    rows: every per-plant row of those images.

    Returns: {"n_plant_images": the images, "<count>_mean", "<count>_std" for each of COUNTS:
    over the images, population std (ddof = 0) as metrics.evaluate_labels; "plant_abs_dic_mean",
    "plant_abs_dic_std", "plant_sbd_mean", "plant_sbd_std": over every matched plant of every
    image together (each plant weighs the same, not the mean of the images' means), None when
    no plant is matched}.
    Raises ValueError for no images.
    """
    figures, rows = list(figures), list(rows)
    if not figures:
        raise ValueError("summarize_plants: no images with plants")
    summary = {"n_plant_images": len(figures)}
    for count in COUNTS:
        values = np.array([image[count] for image in figures], np.float64)
        summary[f"{count}_mean"], summary[f"{count}_std"] = float(values.mean()), float(values.std())
    matched = [row for row in rows if row["status"] == "matched"]
    for key, name in _PLANT_MEANS.items():
        values = np.array([row[key] for row in matched], np.float64)
        summary[f"{name}_mean"] = float(values.mean()) if matched else None
        summary[f"{name}_std"] = float(values.std()) if matched else None
    return summary
