"""Leaf-segmentation metrics: the CVPPP challenge's, Matterport's mask AP, COCO's.

CVPPP metrics compare two *label images* (2-D integer arrays, 0 = background, one id per
leaf; ids need not be consecutive, a leaf is every pixel carrying its id):

    Dice(a, b)       = 2 |a ∩ b| / (|a| + |b|)
    BestDice(La, Lb) = (1/M) Σ_i max_j Dice(La_i, Lb_j), over the M leaves of La
    SBD              = min(BestDice(pred, gt), BestDice(gt, pred))
    FBD              = Dice of the foreground masks (label != 0)
    DiC              = #pred leaves − #gt leaves;  |DiC| its absolute value

    per_image, summary = evaluate_labels([(name, pred_label, gt_label), ...])
    print(format_summary(summary))
    write_metrics(per_image, summary, "results/")      # metrics.json + per_image.csv

Edge cases, and where they differ from the challenge's reference code (``evaluate.py``):

- Dice of two empty masks is 1.0 (they agree perfectly); the reference returns 0.
- BestDice over no leaves (M = 0) is 0.0, as in the reference, unless the other label has no
  leaves either, then 1.0. So SBD is 1.0 when both images are empty (a correct "no plant")
  and 0.0 when exactly one is; FBD likewise (1.0 / 0.0).
- M counts the leaves present. The reference divides by max id − min id, so gaps in the ids
  count as leaves with Dice 0; here ids 3 and 17 score exactly like ids 1 and 2.
- Label images of different shapes raise ValueError (the reference silently returns 0).

Mask R-CNN output (overlapping soft-thresholded masks) becomes a label image with
:func:`label_from_detections`. Detection-style scores come from Matterport's numpy reference
(:func:`mask_ap50`, wrapping ``mrcnn.utils.compute_ap``) and from pycocotools' own COCOeval
(:func:`coco_evaluate`). This module imports neither TensorFlow nor Keras.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from leafseg import counted
from leafseg.data.masks import masks_to_label
from mrcnn import utils
from mrcnn.fileio import write_text_atomic

__all__ = [
    "dice", "best_dice", "symmetric_best_dice", "foreground_dice", "difference_in_count",
    "abs_difference_in_count", "compare_labels", "check_label", "overlap_table", "label_from_detections", "mask_ap50",
    "coco_evaluate", "COCO_STAT_NAMES", "CVPPP_DEFINITIONS", "evaluate_labels", "format_summary", "round_floats",
    "write_metrics", "write_csv",
]

# pycocotools' COCOeval.stats, in its order: AP over IoU .50:.05:.95 (and at .50, .75, then by
# object size), then the average recall with at most 1, 10, 100 detections per image, by size.
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                   "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# Per-image values that evaluate_labels summarises, in table order.
_SUMMARY_METRICS = ("sbd", "fbd", "dic", "abs_dic")
_DISPLAY_NAMES = {"sbd": "SBD", "fbd": "FBD", "dic": "DiC", "abs_dic": "|DiC|", "ap50": "mask AP50",
                  "plants_true": "plants true", "plants_found": "plants found", "plants_invented": "plants invented",
                  "plants_missed": "plants missed", "plant_abs_dic": "plant |DiC|", "plant_sbd": "plant SBD"}

# The CVPPP metrics' names spelled out, for printed output and metrics.json.
CVPPP_DEFINITIONS = {
    "sbd": "SBD, Symmetric Best Dice: the smaller of the two mean best-match Dice scores (each predicted leaf "
           "with its best ground-truth leaf, and each ground-truth leaf with its best predicted leaf); a "
           "fraction in [0, 1], higher is better",
    "fbd": "FBD, Foreground-Background Dice: Dice of the plant's pixels (all leaves together) against the "
           "ground truth's; a fraction in [0, 1], higher is better",
    "dic": "DiC, Difference in Count: predicted leaves minus ground-truth leaves (negative: leaves missed); "
           "best 0",
    "abs_dic": "|DiC|: the absolute Difference in Count; best 0",
}


# ---------------------------------------------------------------------------------------------
# CVPPP metrics on label images
# ---------------------------------------------------------------------------------------------

def dice(a, b) -> float:
    """Dice coefficient 2 |a ∩ b| / (|a| + |b|) of two bool masks of the same shape.

    Two empty masks give 1.0 (CVPPP's reference code returns 0 there).
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"dice: masks of different shapes {a.shape} and {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def check_label(label, name: str) -> np.ndarray:
    """``label`` as a 2-D array of non-negative integer ids (bool becomes uint8 0 / 1).

    Raises ValueError naming ``name`` for another number of dimensions, a non-integer dtype or a
    negative id.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"{name} must be a 2-D label image [H, W], got shape {label.shape}")
    if label.dtype == bool:
        return label.astype(np.uint8)
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"{name} must hold integer ids, got dtype {label.dtype}")
    if label.size and label.min() < 0:
        raise ValueError(f"{name} has negative ids (min {label.min()}); 0 is background, leaves and plants > 0")
    return label


def _dense_ids(label: np.ndarray) -> tuple[np.ndarray, int]:
    """[H, W] ids -> ([H * W] intp with the leaves renumbered 1..K in ascending id, K)."""
    flat = label.reshape(-1)
    if flat.size == 0:
        return flat.astype(np.intp), 0
    top = int(flat.max())
    if top <= max(flat.size, 1 << 16):
        # A lookup table from one bincount: the rank of each present id, 0 for background.
        flat = flat.astype(np.intp, copy=False)  # bincount refuses uint64
        present = np.bincount(flat, minlength=top + 1) > 0
        present[0] = False
        lut = np.cumsum(present) * present
        return lut[flat], int(present.sum())
    # Ids too large for a table (e.g. 32-bit hashes): sort instead.
    ids = np.unique(flat)
    ids = ids[ids != 0]
    dense = np.searchsorted(ids, flat) + 1
    dense[flat == 0] = 0
    return dense.astype(np.intp, copy=False), len(ids)


def overlap_table(pred_label, gt_label):
    """Joint histogram of two label images of the same shape.

    Returns: int64 [Kp + 1, Kg + 1]; entry (i, j) counts the pixels with leaf i in the
    prediction and leaf j in the ground truth (row / column 0: background), leaves numbered
    1..K in ascending id (the K ids present; gaps take no row). One bincount instead of a loop
    over pairs of masks.
    """
    pred = check_label(pred_label, "pred_label")
    gt = check_label(gt_label, "gt_label")
    if pred.shape != gt.shape:
        raise ValueError(f"pred_label {pred.shape} and gt_label {gt.shape} differ in shape; "
                         "resize the prediction to the ground truth's size first")
    pred_dense, num_pred = _dense_ids(pred)
    gt_dense, num_gt = _dense_ids(gt)
    joint = np.bincount(pred_dense * (num_gt + 1) + gt_dense, minlength=(num_pred + 1) * (num_gt + 1))
    return joint.reshape(num_pred + 1, num_gt + 1)


def _dice_matrix(table: np.ndarray) -> np.ndarray:
    """[Kp + 1, Kg + 1] joint histogram -> float64 [Kp, Kg] Dice of every leaf pair."""
    intersections = table[1:, 1:].astype(np.float64)
    pred_areas = table[1:, :].sum(axis=1)
    gt_areas = table[:, 1:].sum(axis=0)
    # Every leaf has at least one pixel, so the denominators are positive.
    return 2.0 * intersections / (pred_areas[:, np.newaxis] + gt_areas[np.newaxis, :])


def _best_dice_rows(dice_matrix: np.ndarray) -> float:
    """Mean over rows of the best Dice in each row; the M = 0 rules of the module docstring."""
    rows, cols = dice_matrix.shape
    if rows == 0:
        return 1.0 if cols == 0 else 0.0
    if cols == 0:
        return 0.0
    return float(dice_matrix.max(axis=1).mean())


def best_dice(label_a, label_b) -> float:
    """BestDice(La, Lb) = (1/M) Σ_i max_j Dice(La_i, Lb_j) over the M leaves of ``label_a``.

    Not symmetric: a prediction that merges two leaves scores well from its side and badly from
    the ground truth's. M = 0 gives 0.0, or 1.0 when ``label_b`` has no leaves either.
    """
    return _best_dice_rows(_dice_matrix(overlap_table(label_a, label_b)))


def symmetric_best_dice(pred_label, gt_label) -> float:
    """SBD = min(BestDice(pred, gt), BestDice(gt, pred)); 1.0 if both are empty, 0.0 if one is."""
    matrix = _dice_matrix(overlap_table(pred_label, gt_label))
    return min(_best_dice_rows(matrix), _best_dice_rows(matrix.T))


def foreground_dice(pred_label, gt_label) -> float:
    """FBD: Dice of the foregrounds (ids != 0); 1.0 if both are all background."""
    pred = check_label(pred_label, "pred_label")
    gt = check_label(gt_label, "gt_label")
    if pred.shape != gt.shape:
        raise ValueError(f"pred_label {pred.shape} and gt_label {gt.shape} differ in shape")
    return dice(pred != 0, gt != 0)


def _leaf_count(label, name: str) -> int:
    label = check_label(label, name)
    ids = np.unique(label)
    return int(np.count_nonzero(ids))


def difference_in_count(pred_label, gt_label) -> int:
    """DiC = (#leaves in pred_label) − (#leaves in gt_label): negative when leaves are missed."""
    return _leaf_count(pred_label, "pred_label") - _leaf_count(gt_label, "gt_label")


def abs_difference_in_count(pred_label, gt_label) -> int:
    """|DiC|, the absolute difference in leaf count."""
    return abs(difference_in_count(pred_label, gt_label))


def compare_labels(pred_label, gt_label) -> dict:
    """All CVPPP metrics of one image from a single joint histogram.

    Returns: {"sbd", "best_dice_pred_gt", "best_dice_gt_pred", "fbd": float,
              "dic", "abs_dic", "pred_count", "gt_count": int}.
    """
    table = overlap_table(pred_label, gt_label)
    matrix = _dice_matrix(table)
    pred_gt = _best_dice_rows(matrix)
    gt_pred = _best_dice_rows(matrix.T)
    pred_count, gt_count = matrix.shape
    pred_fg = int(table[1:, :].sum())
    gt_fg = int(table[:, 1:].sum())
    both_fg = int(table[1:, 1:].sum())
    fbd = 1.0 if pred_fg + gt_fg == 0 else 2.0 * both_fg / (pred_fg + gt_fg)
    return {
        "sbd": min(pred_gt, gt_pred),
        "best_dice_pred_gt": pred_gt,
        "best_dice_gt_pred": gt_pred,
        "fbd": fbd,
        "dic": pred_count - gt_count,
        "abs_dic": abs(pred_count - gt_count),
        "pred_count": pred_count,
        "gt_count": gt_count,
    }


# ---------------------------------------------------------------------------------------------
# Detections -> label image
# ---------------------------------------------------------------------------------------------

def label_from_detections(masks, scores) -> np.ndarray:
    """Flatten overlapping instance masks into a label image, the higher score on top.

    masks: bool [H, W, N] (Mask R-CNN's ``r["masks"]``), or float thresholded at 0.5.
    scores: [N] (``r["scores"]``). Equal scores: the lower index wins (detections come sorted
        by descending score, so the first listed is taken as the more confident).

    Returns: [H, W] ids, detection k -> id k + 1 wherever it is on top, 0 elsewhere (uint8 for
    N <= 255, else uint16). A detection covered everywhere by better ones vanishes.
    """
    masks = np.asarray(masks)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [H, W, N], got shape {masks.shape}")
    n = masks.shape[2]
    if scores.shape != (n,):
        raise ValueError(f"scores must be [{n}] for {n} masks, got shape {scores.shape}")
    if masks.dtype != bool:
        masks = masks > 0.5
    # Painted in order (later on top): ascending score, and among equal scores descending
    # index, so the lower index is painted last.
    return masks_to_label(masks, order=np.lexsort((-np.arange(n), scores)))


# ---------------------------------------------------------------------------------------------
# Detection metrics
# ---------------------------------------------------------------------------------------------

def _masks_and_ids(masks, class_ids, name: str) -> tuple[np.ndarray, np.ndarray]:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"{name} must be [H, W, N], got shape {masks.shape}")
    masks = masks > 0.5 if masks.dtype != bool else masks
    n = masks.shape[2]
    class_ids = np.ones(n, np.int64) if class_ids is None else np.asarray(class_ids, np.int64).reshape(-1)
    if class_ids.shape != (n,):
        raise ValueError(f"{name}: {n} masks but {class_ids.size} class ids")
    return masks, class_ids


def mask_ap50(gt_masks, pred_masks, pred_scores, gt_class_ids=None, pred_class_ids=None) -> float:
    """Matterport's mask AP at IoU 0.5 for one image (``mrcnn.utils.compute_ap``).

    gt_masks: bool [H, W, G]; pred_masks: bool [H, W, P] (or float, thresholded at 0.5);
    pred_scores: [P]; class ids: [G] / [P], default all 1 (leaf).

    Ground-truth masks without pixels are dropped (nothing to find). Empty predictions are kept
    as false positives: compute_ap drops all-zero boxes as padding, so they get a placeholder
    box; boxes play no other part in its mask matching.

    Returns: float, the PASCAL "all points" AP; 1.0 when there is neither ground truth nor
    prediction, 0.0 when only one side is empty (compute_ap's conventions).
    """
    gt_masks, gt_class_ids = _masks_and_ids(gt_masks, gt_class_ids, "gt_masks")
    pred_masks, pred_class_ids = _masks_and_ids(pred_masks, pred_class_ids, "pred_masks")
    pred_scores = np.asarray(pred_scores, np.float64).reshape(-1)
    if pred_scores.shape != (pred_masks.shape[2],):
        raise ValueError(f"{pred_masks.shape[2]} predicted masks but {pred_scores.size} scores")
    if gt_masks.shape[:2] != pred_masks.shape[:2]:
        raise ValueError(f"gt_masks {gt_masks.shape} and pred_masks {pred_masks.shape} differ in size")
    keep = gt_masks.any(axis=(0, 1))
    gt_masks, gt_class_ids = gt_masks[..., keep], gt_class_ids[keep]
    pred_boxes = utils.extract_bboxes(pred_masks)
    pred_boxes[~pred_masks.any(axis=(0, 1))] = (0, 0, 1, 1)
    ap, _, _, _ = utils.compute_ap(utils.extract_bboxes(gt_masks), gt_class_ids, gt_masks,
                                   pred_boxes, pred_class_ids, pred_scores, pred_masks,
                                   iou_threshold=0.5)
    return float(ap)


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))


def coco_evaluate(gt, predictions, iou_type: str = "segm") -> dict:
    """COCO AP / AR of a set of images, computed by pycocotools' COCOeval.

    gt: one (masks bool [H, W, N], class_ids [N] or None = all 1) per image.
    predictions: one (masks bool [H, W, P], class_ids [P] or None, scores [P]) per image,
        in the same image order.
    iou_type: "segm" (mask IoU) or "bbox" (IoU of the masks' tight boxes; Mask R-CNN's own
        refined boxes are not used).

    The COCO dicts are built in memory (image ids 1..n, masks as RLE). Ground-truth masks
    without pixels are dropped. Images without ground truth or without predictions are fine.
    With no prediction in any image, pycocotools' ``loadRes`` cannot be used (it reads the
    first result), so an empty result set is indexed directly; COCOeval then reports AP 0
    (or -1, its "undefined", when there is no ground truth either).

    Returns: {name: float for name in COCO_STAT_NAMES} (-1 where COCOeval finds a value
    undefined, e.g. no object of that size) plus "summary": COCOeval's printed table (its
    stdout is captured, not shown).
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    gt, predictions = list(gt), list(predictions)
    if len(gt) != len(predictions):
        raise ValueError(f"{len(gt)} ground-truth images but {len(predictions)} prediction entries")

    images, gt_anns, results, class_ids = [], [], [], set()
    for image_id, (gt_entry, pred_entry) in enumerate(zip(gt, predictions), start=1):
        gt_masks, gt_ids = _masks_and_ids(*gt_entry, name=f"gt[{image_id - 1}] masks")
        pred_masks, pred_ids = _masks_and_ids(pred_entry[0], pred_entry[1],
                                              name=f"predictions[{image_id - 1}] masks")
        scores = np.asarray(pred_entry[2], np.float64).reshape(-1)
        if scores.shape != (pred_masks.shape[2],):
            raise ValueError(f"predictions[{image_id - 1}]: {pred_masks.shape[2]} masks "
                             f"but {scores.size} scores")
        if pred_masks.shape[:2] != gt_masks.shape[:2]:
            raise ValueError(f"image {image_id - 1}: prediction size {pred_masks.shape[:2]} "
                             f"differs from ground truth {gt_masks.shape[:2]}")
        height, width = gt_masks.shape[:2]
        images.append({"id": image_id, "height": height, "width": width})
        class_ids.update(gt_ids.tolist())
        class_ids.update(pred_ids.tolist())
        for k in range(gt_masks.shape[2]):
            area = int(gt_masks[..., k].sum())
            if area == 0:
                continue
            rle = _rle(gt_masks[..., k])
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": image_id, "category_id": int(gt_ids[k]),
                            "segmentation": rle, "area": area, "iscrowd": 0,
                            "bbox": _coco_box(rle)})
        for k in range(pred_masks.shape[2]):
            rle = _rle(pred_masks[..., k])
            result = {"image_id": image_id, "category_id": int(pred_ids[k]), "score": float(scores[k])}
            # loadRes treats a result with "bbox" as a box detection, one without as a mask.
            result.update({"bbox": _coco_box(rle)} if iou_type == "bbox" else {"segmentation": rle})
            results.append(result)

    categories = [{"id": c, "name": str(c)} for c in sorted(class_ids)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": images, "annotations": [], "categories": categories}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
    # The summary table alone: the loading and timing chatter above is of no interest.
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    out = {name: float(value) for name, value in zip(COCO_STAT_NAMES, evaluator.stats)}
    out["summary"] = summary.getvalue()
    return out


def _coco_box(rle: dict) -> list[float]:
    return [float(v) for v in mask_utils.toBbox(rle)]  # [x, y, width, height]


# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------

def evaluate_labels(pairs) -> tuple[list[dict], dict]:
    """CVPPP metrics of every image and their mean and standard deviation.

    pairs: iterable of (pred_label, gt_label) or (image_name, pred_label, gt_label); images
        without a name are called "0", "1", ... in order.

    Returns: (per_image, summary)
        per_image: one :func:`compare_labels` dict per image, with "image" first.
        summary: {"n_images": int, "<m>_mean", "<m>_std" for m in sbd, fbd, dic, abs_dic}. The
            std is the population std (ddof = 0), as the CVPPP evaluation reports "mean (std)".

    Raises ValueError for no pairs (an empty folder is a mistake worth hearing about).
    """
    per_image = []
    for index, pair in enumerate(pairs):
        if len(pair) == 3:
            name, pred_label, gt_label = pair
        elif len(pair) == 2:
            (pred_label, gt_label), name = pair, str(index)
        else:
            raise ValueError(f"pair {index}: expected (pred, gt) or (name, pred, gt), got {len(pair)} items")
        try:
            row = compare_labels(pred_label, gt_label)
        except ValueError as err:
            raise ValueError(f"image {name}: {err}") from err
        per_image.append({"image": str(name), **row})
    if not per_image:
        raise ValueError("evaluate_labels: no (prediction, ground truth) pairs to evaluate")
    summary = {"n_images": len(per_image)}
    for metric in _SUMMARY_METRICS:
        values = np.array([row[metric] for row in per_image], dtype=np.float64)
        summary[f"{metric}_mean"] = float(values.mean())
        summary[f"{metric}_std"] = float(values.std())
    return per_image, summary


def format_summary(summary: dict) -> str:
    """A terminal table of a summary: one row per "<m>_mean" / "<m>_std" pair, CVPPP style.

    Every score is a fraction in [0, 1], as everywhere in leafseg's output (the CVPPP papers'
    "SBD 84.9" is 0.849 here); counts as they are. A value of None (undefined, e.g. a mean over
    no plant) shows as "-", a missing std as nan.
    """
    metrics = [key[:-len("_mean")] for key in summary if key.endswith("_mean")]
    names = [_DISPLAY_NAMES.get(metric, metric) for metric in metrics]
    width = max([12] + [len(name) + 2 for name in names])
    header = f"{'metric':<{width}}{'mean':>10}{'std':>10}"
    lines = [header, "-" * len(header)]
    for metric, name in zip(metrics, names):
        values = (summary[f"{metric}_mean"], summary.get(f"{metric}_std", math.nan))
        lines.append(f"{name:<{width}}" + "".join(f"{'-':>10}" if v is None else f"{v:>10.3f}" for v in values))
    if "n_images" in summary:
        plants = f", {summary['n_plant_images']} with plants" if "n_plant_images" in summary else ""
        lines.append(f"({counted(summary['n_images'], 'image')}{plants})")
    return "\n".join(lines)


def write_csv(rows, path, fieldnames=None) -> Path:
    """Write dicts as a CSV table, atomically. Returns the path.

    fieldnames: column order; default the keys in first-seen order over all rows. None and
    missing values are written as empty cells. With no rows and no fieldnames the file is empty.
    """
    rows = list(rows)
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    if fieldnames:
        writer = csv.DictWriter(buffer, fieldnames=fieldnames, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return write_text_atomic(path, buffer.getvalue())


def round_floats(value, decimals: int):
    """``value`` with every float (in nested dicts, lists and tuples) rounded to ``decimals``;
    ints, strings, None, NaN and inf unchanged. Tables then hold 0.3, not 0.30000000000000004."""
    if isinstance(value, dict):
        return {k: round_floats(v, decimals) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(round_floats(v, decimals) for v in value)
    if isinstance(value, np.floating):
        value = float(value)
    if isinstance(value, float) and math.isfinite(value):
        return round(value, decimals)
    return value


def _json_ready(value):
    """numpy scalars -> Python; NaN / inf -> None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(per_image, summary, out_dir, decimals=None, definitions=None,
                  settings=None, extra=None) -> tuple[Path, Path]:
    """Write ``metrics.json`` ({"summary": ..., "per_image": [...]}) and ``per_image.csv``.

    decimals: round every float of both files to this many decimals (None: full precision).
    definitions: {name: what it means}, written as "definitions" in metrics.json.
    settings: {name: value}, what the scores were measured with (weights, config, config
        overrides), written first, as "settings", unrounded; a value JSON does not know is
        written as its text.
    extra: {key: value} written after "per_image" (evaluate's "per_class"), as they are.
    Both are written atomically; ``out_dir`` is created if needed. Returns the two paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_image = list(per_image)
    if decimals is not None:
        per_image, summary = round_floats(per_image, decimals), round_floats(summary, decimals)
    document = {"summary": summary, "per_image": per_image, **(extra or {})}
    if definitions:
        document = {"definitions": dict(definitions), **document}
    if settings:
        document = {"settings": dict(settings), **document}
    document = _json_ready(document)
    json_path = write_text_atomic(out_dir / "metrics.json", json.dumps(document, indent=2, default=str) + "\n")
    csv_path = write_csv(per_image, out_dir / "per_image.csv")
    return json_path, csv_path
