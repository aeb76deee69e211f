"""Evaluate a trained model on leaves with known masks: CVPPP metrics, mask AP50, COCO AP.

    leafseg evaluate --weights run/mask_rcnn_leaf_0040.weights.h5 --dataset data/leaves \\
        --subset val --out eval/
    python scripts/evaluate.py ...       # the same command

``--dataset`` is the prepared layout (``DIR/<subset>/<id>/images``, scripts/prepare_masks.py)
or a raw folder of image + label pairs (colour masks or CVPPP indexed labels). ``--subset``
``auto`` (the default) takes the ``val`` subset of a prepared layout and every pair of a raw
folder; ``train`` / ``val`` of a raw folder is the seeded part leafseg.data.prepare would put there;
``all`` takes every image. ``--limit N`` evaluates the first N.

Every score is a fraction in [0, 1] (SBD 0.849, not 84.9), in the printed tables, the CSVs,
metrics.json and the plots; the CSVs and metrics.json round every value to 4 decimals.

Per image (``per_image.csv``, and ``metrics.json`` "per_image"):

- image, subset: the sample id and its subset (prepared layout: the folder it is in; raw
  folder: the subset leafseg.data.prepare would give it with its default seed and val fraction);
- sbd (Symmetric Best Dice), fbd (Foreground-Background Dice), dic (Difference in Count:
  predicted minus true leaf count), abs_dic, best_dice_*, pred_count, gt_count:
  leafseg.measure.metrics.compare_labels of the prediction flattened into a label image
  (label_from_detections, the more confident detection on top) against the ground-truth label;
- ap50: the image's mask AP at IoU 0.5, Matterport's (leafseg.measure.metrics.mask_ap50,
  utils.compute_ap: all-point interpolation);
- mask_AP, mask_AP50, mask_AP75, box_AP, box_AP50, box_AP75: pycocotools' COCOeval on that
  image alone (leafseg.measure.metrics.coco_evaluate; boxes are the masks' tight boxes; -1 where
  COCOeval finds the value undefined, e.g. no leaf in either).

Overall (``summary.csv``, ``metrics.json`` "summary", the terminal table): the mean and
population std over images of sbd, fbd, dic, abs_dic and ap50 (as leafseg.measure.metrics.
evaluate_labels reports them; the ap50 mean is Matterport's mAP), and COCOeval over all images
together, its twelve numbers for masks (``mask_AP`` ... ``mask_ARl``) and boxes (``box_*``).
metrics.json also holds the "definitions" of these names and, from the command, the "settings"
of the run: the weights, the config's source, the ``--set`` overrides and ``--min-score``.

Mask AP at IoU 0.5 is reported three ways, which differ by design:

- ``ap50_mean``, "mask AP50 (mean of per-image AP)": each image's AP, averaged over images;
  an image with few leaves weighs as much as one with many;
- ``pooled_ap50``, "pooled mask AP50 (pr_curve.png)": all images' detections ranked together
  by score into one precision-recall curve (the same matching and all-point interpolation as
  ap50), the AP the curve's legend shows (``pooled_ap75`` at IoU 0.75);
- ``mask_AP50``, "COCO mask AP50 (pycocotools)": COCOeval over all images together, which
  matches detections its own way and interpolates precision at 101 recall points.

Per plant, for scenes (a tray of pots, a dish of seedlings): an image whose ground truth has a
plants file (``<sample>_plants.png`` beside ``<sample>_label.png`` in a raw folder, value = plant
id, 0 = no plant; ``LeafDataset.load_plants``) is scored plant by plant too
(leafseg.measure.plants: predicted plants from the detections' ``plant_ids``, a result without
them being one plant, matched one to one with the true plants at IoU above 0.5). The prepared
layout has no plants file (``leafseg prepare`` does not copy it): evaluate scenes from their raw
folder. Its per_image.csv row gets plants_true, plants_found, plants_invented, plants_missed,
plant_abs_dic_mean and plant_sbd_mean (|DiC| and SBD averaged over the image's matched plants);
``per_plant.csv`` lists every plant of those images (image, subset, gt_plant, pred_plant,
status, iou, gt_count, pred_count, dic, abs_dic, sbd); the summary gets n_plant_images, the
mean and std over those images of the four plant counts, and plant_abs_dic_* / plant_sbd_* over
every matched plant of every image. Images without a plants file leave these columns empty; a
data set without any writes neither the columns nor per_plant.csv.

Per class, for a data set of several classes (``class_names`` beyond "BG", "leaf": a prepared
set with classes.json, see leafseg.data.dataset): ``per_class.csv``, ``metrics.json``
"per_class" and a printed table, one row per class, each class scored alone: the ground truth of
that class against the detections of that class, over the images where either has one
(n_images): gt_count, pred_count, ap50_mean, pooled_ap50, pooled_ap75, mask_AP, mask_AP50,
mask_AP75 (as above), and sbd_mean, dic_mean, abs_dic_mean (CVPPP's, with the class's instances
as the leaves). Matching is within a class, as Matterport's compute_matches and COCOeval match:
a leaf found as a stem is a missed leaf and an invented stem. The overall figures above are over
every class: AP and COCO figures match within class (COCO averages over the classes); SBD, FBD
and DiC flatten every instance, whatever its class. A one-class set (the default, leaf) writes
none of these.

Plots: ``pr_curve.png``, the pooled precision-recall curves of the masks at IoU 0.5 and 0.75
(Matterport's matching: each detection, best score first, takes the unmatched ground truth it
overlaps most, if the IoU reaches the threshold); and ``gallery.png``, the images with the
lowest SBD, prediction beside ground truth, each row cropped to where the leaves are (the
ground truth's and the prediction's boxes and a margin; the row's title gives the crop) when
they fill little of the image, so that the small leaves of a large photograph can be seen.

:func:`evaluate_model` (per-image CVPPP metrics and AP50 only) is what the demo uses.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from leafseg import counted
from leafseg.data.masks import leaf_palette, masks_to_label
from leafseg.measure.metrics import (COCO_STAT_NAMES, CVPPP_DEFINITIONS, coco_evaluate, compare_labels, evaluate_labels,
                                     label_from_detections, mask_ap50, round_floats, write_csv,
                                     write_metrics)
from leafseg.measure.plants import (PLANT_COLUMNS, PLANT_DEFINITIONS, compare_plants, plant_label_from_detections,
                                    summarize_plants)
from mrcnn import utils

__all__ = ["evaluate_model", "min_score_sweep", "detection_sweep", "ImageScores", "score_image", "summarize", "precision_recall",
           "load_eval_dataset", "evaluate_dataset", "format_coco_table", "format_ap50_comparison", "format_definitions",
           "DEFINITIONS", "DECIMALS", "resolve_subset", "PR_IOUS", "PER_IMAGE_COCO",
           "comparison_row", "prediction_sheet", "class_figures", "format_class_table", "CLASS_COLUMNS"]

logger = logging.getLogger(__name__)

PR_IOUS = (0.5, 0.75)
# COCOeval numbers reported per image (all twelve are in the summary).
PER_IMAGE_COCO = ("AP", "AP50", "AP75")
_MEAN_STD = ("sbd", "fbd", "dic", "abs_dic", "ap50")
_COCO_KINDS = (("mask", "segm"), ("box", "bbox"))
_COCO_ROW_NAMES = {"mask": "masks", "box": "boxes"}
# Decimals of every value in per_image.csv, summary.csv and metrics.json.
DECIMALS = 4
SUBSET_CHOICES = ("auto", "train", "val", "all")

# What the names in evaluate's output mean (printed once, and in metrics.json "definitions").
DEFINITIONS = {
    **CVPPP_DEFINITIONS,
    "ap50": "mask AP50 of one image: average precision of its detections' masks at IoU 0.5 (Matterport's "
            "compute_ap, all-point interpolation); ap50_mean is their mean over images",
    "pooled_ap50": "pooled mask AP50: all images' detections ranked together by score in one precision-recall "
                   "curve (pr_curve.png), same matching and interpolation as ap50; pooled_ap75 at IoU 0.75",
    "mask_AP50": "COCO mask AP50: pycocotools' COCOeval over all images together (its own matching, 101-point "
                 "interpolation); mask_AP averages IoU 0.50:0.95, box_* score the masks' tight boxes",
    "units": "every score is a fraction in [0, 1] (SBD 0.849 is 84.9 %); dic and counts are leaf counts",
}


def evaluate_model(model, dataset, image_ids=None, progress=True, keep_results=False):
    """Detect on every image of ``dataset`` and score it against its leaves.

    model: an inference-mode ``mrcnn.model.MaskRCNN``.
    dataset: a prepared LeafDataset (or any mrcnn Dataset with instance masks).
    image_ids: the images to use (default all).
    keep_results: also return each image's detections (for overlays and galleries).

    Returns: (per_image, summary[, results]): per_image rows of leafseg.measure.metrics.compare_labels
    plus "ap50"; summary with the mean and std of sbd, fbd, dic, abs_dic and ap50.
    """
    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    pairs, ap50, results = [], [], []
    for image_id in tqdm(image_ids, desc="evaluate", unit="image", disable=not progress):
        image = dataset.load_image(image_id)
        gt_masks = leaf_masks(dataset, image_id)
        result = model.detect([image])[0]
        name = str(dataset.image_info[image_id]["id"])
        pairs.append((name, label_from_detections(result["masks"], result["scores"]), masks_to_label(gt_masks)))
        ap50.append(mask_ap50(gt_masks, result["masks"], result["scores"]))
        if keep_results:
            results.append(result)
    per_image, summary = evaluate_labels(pairs)
    for row, value in zip(per_image, ap50):
        row["ap50"] = float(value)
    summary["ap50_mean"] = float(np.mean(ap50))
    summary["ap50_std"] = float(np.std(ap50))
    return (per_image, summary, results) if keep_results else (per_image, summary)


def leaf_masks(dataset, image_id):
    """The ground-truth leaves of an image, bool [H, W, G]: its masks without crowd regions
    (class id < 1, e.g. COCO's ``iscrowd``), which are not leaves to find."""
    masks, class_ids = dataset.load_mask(image_id)
    return masks[..., np.asarray(class_ids).reshape(-1) > 0]


def min_score_sweep(model, dataset, thresholds, image_ids=None, progress=True):
    """The CVPPP means at each detection-score cut-off of ``thresholds``, from one detection pass.

    Dropping the detections under a cut-off after detection gives what detecting with
    DETECTION_MIN_CONFIDENCE at that cut-off gives (NMS, the mask-overlap suppression and the
    top-N keep higher scores first), so the model must keep detections down to the lowest cut-off.
    Returns: {threshold: {"sbd_mean", "fbd_mean", "dic_mean", "abs_dic_mean", "n_images"}}.
    """
    sweep = detection_sweep(model, dataset, thresholds, (None,), image_ids, progress)
    return {t: means for (_, t), means in sweep.items()}


def detection_sweep(model, dataset, thresholds, mask_overlaps, image_ids=None, progress=True):
    """:func:`min_score_sweep` for each DETECTION_MASK_OVERLAP_THRESHOLD of ``mask_overlaps`` too,
    from one detection pass: the model's detections, then each overlap's suppression
    (:func:`mrcnn.utils.suppress_covered_masks`, what ``detect`` applies when the config has that
    threshold; None: none), then each cut-off.
    Returns: {(overlap, threshold): means, as min_score_sweep's}.
    """
    from mrcnn.utils import suppress_covered_masks

    thresholds = sorted(float(t) for t in thresholds)
    if model.config.DETECTION_MIN_CONFIDENCE > thresholds[0]:
        raise ValueError(f"the model drops detections under {model.config.DETECTION_MIN_CONFIDENCE}, above the "
                         f"lowest cut-off {thresholds[0]}")
    if model.config.DETECTION_MASK_OVERLAP_THRESHOLD is not None and list(mask_overlaps) != [None]:
        raise ValueError(f"the model already drops masks covered more than "
                         f"{model.config.DETECTION_MASK_OVERLAP_THRESHOLD}: sweep overlaps with a model that keeps "
                         f"them (DETECTION_MASK_OVERLAP_THRESHOLD None)")
    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    rows = {(o, t): [] for o in mask_overlaps for t in thresholds}
    for image_id in tqdm(image_ids, desc="detection sweep", unit="image", disable=not progress):
        truth = masks_to_label(leaf_masks(dataset, image_id))
        result = model.detect([dataset.load_image(image_id)])[0]
        for overlap in mask_overlaps:
            kept = (np.ones(len(result["scores"]), bool) if overlap is None else
                    suppress_covered_masks(result["masks"], result["class_ids"], result["scores"], overlap))
            for t in thresholds:
                keep = kept & (result["scores"] >= t)
                rows[overlap, t].append(compare_labels(
                    label_from_detections(result["masks"][..., keep], result["scores"][keep]), truth))
    return {key: {**{f"{m}_mean": float(np.mean([row[m] for row in values])) for m in ("sbd", "fbd", "dic", "abs_dic")},
                  "n_images": len(image_ids)} for key, values in rows.items()}


# ---------------------------------------------------------------------------------------------
# Scoring, one image at a time
# ---------------------------------------------------------------------------------------------

class _RLEMasks:
    """Instance masks kept as COCO RLE (a few hundred bytes per leaf instead of H x W bytes).

    ``np.asarray`` decodes them to bool [H, W, N], so they can be handed to functions that take
    mask arrays (coco_evaluate converts one image at a time) without holding every image's
    masks in memory at once.
    """

    def __init__(self, masks):
        from pycocotools import mask as mask_utils

        masks = np.asarray(masks, dtype=bool)
        self.shape = masks.shape
        self.rles = mask_utils.encode(np.asfortranarray(masks, dtype=np.uint8)) if masks.shape[-1] else []

    def __array__(self, dtype=None, copy=None):
        from pycocotools import mask as mask_utils

        if not self.rles:
            masks = np.zeros(self.shape, dtype=bool)
        else:
            masks = mask_utils.decode(self.rles).astype(bool)
        return masks if dtype is None else masks.astype(dtype)


class ImageScores:
    """One image's metrics (``row``) and what the overall figures need from it.

    row: {"image", CVPPP metrics, "ap50", "mask_AP", ...} (see the module docstring).
    matches: {iou: (scores [P] descending, matched bool [P])} for the precision-recall curves.
    gt_count: leaves in the ground truth; gt, pred: (masks, class ids[, scores]) in RLE form.
    plants: the per-plant rows (leafseg.measure.plants.compare_plants) of an image with a plant
        label, None for one without.
    """

    def __init__(self, row, matches, gt_count, gt, pred, plants=None):
        self.row, self.matches, self.gt_count, self.gt, self.pred = row, matches, gt_count, gt, pred
        self.plants = plants


def _matches(gt_masks, gt_class_ids, pred_masks, pred_class_ids, scores, iou):
    """utils.compute_matches of one image: (scores descending, matched flags)."""
    order = np.argsort(-scores, kind="stable")
    if pred_masks.shape[-1] == 0:
        return scores[order], np.zeros(0, bool)
    # compute_matches drops all-zero boxes as padding: empty masks get a placeholder box
    # (boxes play no other part in its mask matching), as mask_ap50 does.
    pred_boxes = utils.extract_bboxes(pred_masks)
    pred_boxes[~pred_masks.any(axis=(0, 1))] = (0, 0, 1, 1)
    _, pred_match, _ = utils.compute_matches(utils.extract_bboxes(gt_masks), gt_class_ids, gt_masks, pred_boxes,
                                             pred_class_ids, scores, pred_masks, iou_threshold=iou)
    return scores[order], pred_match > -1


def score_image(name, gt_masks, gt_class_ids, result, gt_plants=None) -> ImageScores:
    """All per-image metrics of one image's detections against its ground truth.

    gt_masks: bool [H, W, G]; gt_class_ids: [G]; result: MaskRCNN.detect's dict for the image,
    with ``plant_ids`` [N] for a scene (absent: the whole image is one plant).
    gt_plants: [H, W] plant label of the ground truth (0 = no plant), or None: with it the row
    gets the plant figures (leafseg.measure.plants.FIGURES) and the result the per-plant rows;
    ValueError naming the image when it does not fit the leaves.
    """
    gt_masks = np.asarray(gt_masks, bool)
    gt_class_ids = np.asarray(gt_class_ids, np.int64).reshape(-1)
    # As mask_ap50 and coco_evaluate: an empty mask is nothing to find; nor is a crowd region
    # (class id < 1, see leafseg.data.annotations), which is not a leaf.
    keep = gt_masks.any(axis=(0, 1)) & (gt_class_ids > 0)
    gt_masks, gt_class_ids = gt_masks[..., keep], gt_class_ids[keep]
    pred_masks = np.asarray(result["masks"], bool)
    scores = np.asarray(result["scores"], np.float64)
    pred_class_ids = np.asarray(result["class_ids"], np.int64)

    row = {"image": str(name)}
    pred_label, gt_label = label_from_detections(pred_masks, scores), masks_to_label(gt_masks)
    row.update(compare_labels(pred_label, gt_label))
    row["ap50"] = mask_ap50(gt_masks, pred_masks, scores, gt_class_ids, pred_class_ids)
    for prefix, iou_type in _COCO_KINDS:
        stats = coco_evaluate([(gt_masks, gt_class_ids)], [(pred_masks, pred_class_ids, scores)], iou_type)
        row.update({f"{prefix}_{stat}": stats[stat] for stat in PER_IMAGE_COCO})
    matches = {iou: _matches(gt_masks, gt_class_ids, pred_masks, pred_class_ids, scores, iou) for iou in PR_IOUS}
    plants = None
    if gt_plants is not None:
        try:
            pred_plants = plant_label_from_detections(pred_label, result.get("plant_ids"))
            plants, figures = compare_plants(pred_label, pred_plants, gt_label, gt_plants)
        except ValueError as err:
            raise ValueError(f"image {name}: {err}") from err
        row.update(figures)
    return ImageScores(row, matches, gt_masks.shape[-1], (_RLEMasks(gt_masks), gt_class_ids),
                       (_RLEMasks(pred_masks), pred_class_ids, scores), plants)


def precision_recall(image_scores, iou):
    """The pooled precision-recall curve at ``iou``: (precisions [P], recalls [P], AP).

    Every image's detections ranked together by score (ties: image order, then score order);
    AP is the area under the curve with Matterport's all-points interpolation (compute_ap's).
    """
    scores = np.concatenate([s.matches[iou][0] for s in image_scores] + [np.zeros(0)])
    matched = np.concatenate([s.matches[iou][1] for s in image_scores] + [np.zeros(0, bool)])
    total = sum(s.gt_count for s in image_scores)
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(matched[order])
    precisions = hits / np.arange(1, len(order) + 1)
    recalls = hits / total if total else np.zeros(len(order))
    envelope = np.concatenate([[0], precisions, [0]])
    steps = np.concatenate([[0], recalls, [1]])
    envelope = np.maximum.accumulate(envelope[::-1])[::-1]
    changes = np.flatnonzero(steps[1:] != steps[:-1]) + 1
    ap = float(np.sum((steps[changes] - steps[changes - 1]) * envelope[changes]))
    return precisions, recalls, ap


def summarize(image_scores) -> dict:
    """The overall figures (module docstring) of a list of :class:`ImageScores`."""
    if not image_scores:
        raise ValueError("no images were evaluated")
    rows = [s.row for s in image_scores]
    summary = {"n_images": len(rows)}
    for metric in _MEAN_STD:
        values = np.array([row[metric] for row in rows], dtype=np.float64)
        summary[f"{metric}_mean"] = float(values.mean())
        summary[f"{metric}_std"] = float(values.std())
    for iou in PR_IOUS:
        summary[f"pooled_ap{round(100 * iou)}"] = precision_recall(image_scores, iou)[2]
    for prefix, iou_type in _COCO_KINDS:
        stats = coco_evaluate([s.gt for s in image_scores], [s.pred for s in image_scores], iou_type)
        summary.update({f"{prefix}_{name}": stats[name] for name in COCO_STAT_NAMES})
    with_plants = [s for s in image_scores if s.plants is not None]
    if with_plants:
        summary.update(summarize_plants([s.row for s in with_plants], [row for s in with_plants for row in s.plants]))
    return summary


# per_class.csv's columns (module docstring).
CLASS_COLUMNS = ("class", "n_images", "gt_count", "pred_count", "ap50_mean", "pooled_ap50", "pooled_ap75", "mask_AP",
                 "mask_AP50", "mask_AP75", "sbd_mean", "dic_mean", "abs_dic_mean")


def class_figures(image_scores, class_names) -> list:
    """One row per class (CLASS_COLUMNS; module docstring) of a list of :class:`ImageScores`:
    each class scored alone. class_names: the names of classes 1..N in id order."""
    rows = []
    for class_id, name in enumerate(class_names, start=1):
        scored, pred_count = [], 0
        for s in image_scores:
            gt_keep, pred_keep = np.asarray(s.gt[1]) == class_id, np.asarray(s.pred[1]) == class_id
            if not gt_keep.any() and not pred_keep.any():
                continue
            pred_count += int(pred_keep.sum())
            result = {"masks": np.asarray(s.pred[0])[..., pred_keep], "scores": np.asarray(s.pred[2])[pred_keep],
                      "class_ids": np.ones(int(pred_keep.sum()), np.int64)}
            scored.append(score_image(s.row["image"], np.asarray(s.gt[0])[..., gt_keep],
                                      np.ones(int(gt_keep.sum()), np.int64), result))
        row = {"class": name, "n_images": len(scored), "gt_count": sum(x.gt_count for x in scored),
               "pred_count": pred_count}
        figures = summarize(scored) if scored else {}
        row.update({key: figures.get(key, float("nan")) for key in CLASS_COLUMNS[4:]})
        rows.append(row)
    return rows


def format_class_table(rows) -> str:
    """The per-class rows as a table: counts, AP and the CVPPP means of each class."""
    columns = (("gt", "gt_count", "d"), ("found", "pred_count", "d"), ("AP50", "ap50_mean", ".3f"),
               ("pooled50", "pooled_ap50", ".3f"), ("COCO AP", "mask_AP", ".3f"), ("COCO AP50", "mask_AP50", ".3f"),
               ("SBD", "sbd_mean", ".3f"), ("|DiC|", "abs_dic_mean", ".2f"))
    width = max([len("class")] + [len(str(row["class"])) for row in rows]) + 2
    lines = [f"{'class':<{width}}" + "".join(f"{title:>10}" for title, _, _ in columns)
             + "   (each class alone: its truth against its detections)", "-" * (width + 10 * len(columns))]
    for row in rows:  # (a class without any instance has no figures: NaN, or null in metrics.json)
        cells = [f"{row[key]:>10{fmt}}" if row[key] is not None and row[key] == row[key] else f"{'-':>10}"
                 for _, key, fmt in columns]
        lines.append(f"{str(row['class']):<{width}}" + "".join(cells))
    return "\n".join(lines)


def format_coco_table(summary) -> str:
    """The headline COCO numbers of a summary, one row for masks and one for boxes."""
    lines = [f"{'COCO':<10}{'AP':>10}{'AP50':>10}{'AP75':>10}   (pycocotools, all images together)", "-" * 40]
    for prefix, _ in _COCO_KINDS:
        values = "".join(f"{summary[f'{prefix}_{stat}']:>10.3f}" for stat in PER_IMAGE_COCO)
        lines.append(f"{_COCO_ROW_NAMES[prefix]:<10}{values}")
    return "\n".join(lines)


def format_ap50_comparison(summary) -> str:
    """The three mask AP50 figures of a summary, each named by how it is computed."""
    rows = [
        ("mask AP50 (mean of per-image AP)", summary["ap50_mean"], "ap50_mean: each image's AP at IoU 0.5, averaged"),
        ("pooled mask AP50 (pr_curve.png)", summary["pooled_ap50"],
         "pooled_ap50: all images' detections ranked together"),
        ("COCO mask AP50 (pycocotools)", summary["mask_AP50"],
         "mask_AP50: COCOeval over all images, 101-point interpolation"),
    ]
    lines = ["mask AP at IoU 0.5, three ways (they differ by design; see help(leafseg.measure.evaluate)):"]
    lines += [f"  {name:<34}{value:>7.3f}   {note}" for name, value, note in rows]
    return "\n".join(lines)


def format_definitions() -> str:
    """SBD, FBD and DiC spelled out, and the units, for the printed output."""
    import textwrap

    texts = [DEFINITIONS[key] for key in ("sbd", "fbd", "dic")] + ["All scores are fractions in [0, 1] (0.70 = 70 %)."]
    return "\n".join(textwrap.fill(text, width=100, subsequent_indent="    ") for text in texts)


# ---------------------------------------------------------------------------------------------
# A data set
# ---------------------------------------------------------------------------------------------

def _is_prepared(path: Path) -> bool:
    return (path / "train").is_dir() or (path / "val").is_dir()


def resolve_subset(path, subset="auto") -> str:
    """``subset`` with "auto" made concrete: "val" for a prepared layout, "all" for a raw folder."""
    if subset not in SUBSET_CHOICES:
        raise ValueError(f"subset must be one of {', '.join(SUBSET_CHOICES)}, got {subset!r}")
    if subset != "auto":
        return subset
    return "val" if _is_prepared(Path(path)) else "all"


def load_eval_dataset(path, subset="auto"):
    """A prepared LeafDataset of ``path``: the prepared layout, or a raw image + label folder.

    subset: "auto" (val of a prepared layout, every pair of a raw folder), "train", "val" or
    "all". Each image's info gets a "subset" (see the module docstring).
    """
    from leafseg.data.dataset import LeafDataset
    from leafseg.data.prepare import assign_subset

    path = Path(path)
    if subset not in SUBSET_CHOICES:
        raise ValueError(f"subset must be one of {', '.join(SUBSET_CHOICES)}, got {subset!r}")
    if not path.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {path}")
    subset = resolve_subset(path, subset)
    dataset = LeafDataset()
    if _is_prepared(path):
        subsets = ("train", "val") if subset == "all" else (subset,)
        present = [s for s in subsets if (path / s).is_dir()]
        if not present:
            raise FileNotFoundError(f"{path} has no {subset!r} folder (prepared layout: {path}/<subset>/<id>/images)")
        for s in present:
            first = len(dataset.image_info)
            dataset.load_leaves(path, s)
            for info in dataset.image_info[first:]:
                info["subset"] = s
    else:
        count = dataset.load_color_masks(path, subset=None if subset == "all" else subset)
        if count == 0:
            raise ValueError(f"none of the image/label pairs of {path} is in subset {subset!r}; "
                             "use --subset all (or auto) to evaluate every pair")
        for info in dataset.image_info:
            info["subset"] = assign_subset(info["id"])  # load_color_masks' default seed and fraction
    dataset.prepare()
    return dataset


# A picture's crop to its leaves: the union of the ground truth's and the prediction's boxes,
# widened on each side by this share of its longer side (and at least CROP_MIN_MARGIN pixels);
# taken when it leaves out at least CROP_MIN_SAVING of the image's area.
CROP_MARGIN = 0.1
CROP_MIN_MARGIN = 16
CROP_MIN_SAVING = 0.25


def leaf_crop(*masks, margin=CROP_MARGIN, min_margin=CROP_MIN_MARGIN, min_saving=CROP_MIN_SAVING):
    """Where the leaves of ``masks`` (bool [H, W, N] arrays of one image: ground truth,
    prediction) are, with a margin: (y1, x1, y2, x2), or None when that is (nearly) the whole
    image or there is no leaf. A gallery row is cropped to it, so that the small leaves of a
    large photograph are not shrunk to a few pixels."""
    masks = [np.asarray(m, bool) for m in masks]
    height, width = masks[0].shape[:2]
    found = np.zeros((height, width), bool)
    for m in masks:
        if m.ndim == 3 and m.shape[-1]:
            found |= m.any(axis=-1)
    rows, cols = np.flatnonzero(found.any(axis=1)), np.flatnonzero(found.any(axis=0))
    if not rows.size:
        return None
    pad = max(min_margin, int(round(margin * max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))))
    y1, x1 = max(0, rows[0] - pad), max(0, cols[0] - pad)
    y2, x2 = min(height, rows[-1] + 1 + pad), min(width, cols[-1] + 1 + pad)
    if (y2 - y1) * (x2 - x1) > (1 - min_saving) * height * width:
        return None
    return int(y1), int(x1), int(y2), int(x2)


def comparison_row(image, scores, photograph=False, crop=True):
    """One scored image as pictures: [the photograph,] the prediction as scored (the flattened
    label's leaves, numbered in detection order) and the ground truth; and a title with its scores.

    crop: show only where the leaves are (:func:`leaf_crop` of both), the title saying so
    ("cropped to x 400-900, y 300-700 of 2048 x 1536 px"), when that leaves out much of the image.
    """
    from mrcnn import visualize

    palette = leaf_palette(255)
    label = label_from_detections(np.asarray(scores.pred[0]), scores.pred[2])
    ids = [k for k in np.unique(label) if k]
    visible = label[..., np.newaxis] == np.asarray(ids, label.dtype).reshape(1, 1, -1)
    gt = np.asarray(scores.gt[0])
    box = leaf_crop(gt, visible) if crop else None
    cropped = ""
    if box is not None:
        y1, x1, y2, x2 = box
        cropped = (f"\ncropped to x {x1}-{x2}, y {y1}-{y2} of {image.shape[1]} x {image.shape[0]} px "
                   "(where the leaves are)")
        image, visible, gt = image[y1:y2, x1:x2], visible[y1:y2, x1:x2], gt[y1:y2, x1:x2]
    pictures = [image] if photograph else []
    pictures += [visualize.draw_instances(image, visible, labels=range(1, len(ids) + 1),
                                          colors=palette[np.arange(len(ids)) % 255]),
                 visualize.draw_instances(image, gt, labels=range(1, gt.shape[-1] + 1),
                                          colors=palette[np.arange(gt.shape[-1]) % 255])]
    row = scores.row
    title = (f"{row['image']}: SBD {row['sbd']:.3f}, FBD {row['fbd']:.3f}, "
             f"DiC {row['dic']:+d} ({row['pred_count']} vs {row['gt_count']})") + cropped
    return pictures, title


def _gallery(dataset, image_ids, image_scores, count, path):
    """The ``count`` images with the lowest SBD: prediction | ground truth, one row each."""
    from mrcnn import visualize

    worst = sorted(range(len(image_scores)),
                   key=lambda i: (image_scores[i].row["sbd"], image_scores[i].row["fbd"], image_scores[i].row["image"]))
    rows, titles = [], []
    for i in worst[:count]:
        pictures, title = comparison_row(dataset.load_image(image_ids[i]), image_scores[i])
        rows.append(pictures)
        titles.append(title)
    return visualize.plot_image_grid(rows, path, row_titles=titles,
                                     column_titles=("prediction", "ground truth"),
                                     title=("The image" if len(rows) == 1 else f"The {len(rows)} images")
                                     + " with the lowest SBD")


def prediction_sheet(model, sets, path, title=None):
    """A picture of a model at work, not of its worst cases: for each (name, dataset, count) of
    ``sets``, the dataset's first ``count`` images, one row each: photograph | prediction |
    ground truth, titled with the set's name and the image's scores. Writes the PNG atomically."""
    from mrcnn import visualize

    rows, titles = [], []
    for name, dataset, count in sets:
        for image_id in list(dataset.image_ids)[:count]:
            image = dataset.load_image(image_id)
            gt_masks, gt_class_ids = dataset.load_mask(image_id)
            scores = score_image(dataset.image_info[image_id]["id"], gt_masks, gt_class_ids, model.detect([image])[0])
            pictures, full_title = comparison_row(image, scores, photograph=True)
            rows.append(pictures)
            row = scores.row
            titles.append(f"{name} {row['image']}: SBD {row['sbd']:.3f}, DiC {row['dic']:+d} "
                          f"({row['pred_count']} vs {counted(row['gt_count'], 'leaf', 'leaves')})"
                          + full_title[len(full_title.split("\n")[0]):])
    if not rows:
        raise ValueError("prediction_sheet: no images (every set is empty or its count is 0)")
    return visualize.plot_image_grid(rows, path, row_titles=titles,
                                     column_titles=("photograph", "prediction", "ground truth"), title=title)


def evaluate_dataset(model, dataset, out_dir, image_ids=None, gallery=6, progress=True, settings=None):
    """Detect on ``dataset``, score every image, write the outputs of the module docstring.

    model: an inference-mode MaskRCNN; dataset: a prepared mrcnn Dataset with instance masks, and
    the plant labels of its scenes when it has a ``load_plants(image_id)`` (LeafDataset's: None for
    an image without).
    image_ids: the images to use (default all); gallery: how many images the gallery shows.
    settings: {name: value} describing the run (weights, config, overrides), written as
        "settings" in metrics.json (see :func:`leafseg.measure.metrics.write_metrics`).
    Returns: (per_image rows, summary, {output name: path}), numbers rounded to DECIMALS as written.
    """
    from mrcnn import visualize

    out_dir = Path(out_dir)
    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    if not image_ids:
        raise ValueError("no images to evaluate")
    load_plants = getattr(dataset, "load_plants", None)
    image_scores = []
    for image_id in tqdm(image_ids, desc="evaluate", unit="image", disable=not progress):
        image = dataset.load_image(image_id)
        gt_masks, gt_class_ids = dataset.load_mask(image_id)
        gt_plants = load_plants(image_id) if load_plants else None
        result = model.detect([image])[0]
        scores = score_image(dataset.image_info[image_id]["id"], gt_masks, gt_class_ids, result, gt_plants)
        # The subset right after the image's name (score_image's rows start with "image").
        scores.row = {"image": scores.row["image"], "subset": dataset.image_info[image_id].get("subset", ""),
                      **scores.row}
        image_scores.append(scores)
    # Every number reported (files, table, plot) rounded once, so they all agree.
    per_image = round_floats([s.row for s in image_scores], DECIMALS)
    summary = round_floats(summarize(image_scores), DECIMALS)
    class_names = list(getattr(dataset, "class_names", None) or ["BG", "leaf"])[1:]
    per_class = round_floats(class_figures(image_scores, class_names), DECIMALS) if len(class_names) > 1 else None

    scenes = [s for s in image_scores if s.plants is not None]
    json_path, csv_path = write_metrics(per_image, summary, out_dir,
                                        definitions={**DEFINITIONS, **PLANT_DEFINITIONS} if scenes else DEFINITIONS,
                                        settings=settings, extra={"per_class": per_class} if per_class else None)
    outputs = {"metrics.json": json_path, "per_image.csv": csv_path}
    if per_class:
        outputs["per_class.csv"] = write_csv(per_class, out_dir / "per_class.csv", fieldnames=list(CLASS_COLUMNS))
    if scenes:
        plant_rows = [{"image": s.row["image"], "subset": s.row["subset"], **row} for s in scenes for row in s.plants]
        outputs["per_plant.csv"] = write_csv(round_floats(plant_rows, DECIMALS), out_dir / "per_plant.csv",
                                             fieldnames=["image", "subset", *PLANT_COLUMNS])
    outputs["summary.csv"] = write_csv([{"metric": k, "value": v} for k, v in summary.items()],
                                       out_dir / "summary.csv")
    curves = {}
    for iou in PR_IOUS:
        precisions, recalls, _ = precision_recall(image_scores, iou)
        name = f"pooled_ap{round(100 * iou)}"
        curves[f"IoU {iou:.2f}: pooled mask AP{round(100 * iou)} = {summary[name]:.3f}"] = (recalls, precisions)
    outputs["pr_curve.png"] = visualize.plot_pr_curves(
        curves, out_dir / "pr_curve.png",
        title=f"Masks, {len(image_scores)} images' detections ranked together\n(pooled AP, = pooled_ap50 / "
              f"pooled_ap75 in summary.csv; not the mean of per-image AP)")
    if gallery > 0:
        outputs["gallery.png"] = _gallery(dataset, image_ids, image_scores, gallery, out_dir / "gallery.png")
    return per_image, summary, outputs


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
