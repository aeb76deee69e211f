"""Evaluate a trained model on a LeafDataset: CVPPP metrics and mask AP50 per image and overall."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from leafseg.masks import masks_to_label
from leafseg.metrics import evaluate_labels, label_from_detections, mask_ap50

__all__ = ["evaluate_model"]


def evaluate_model(model, dataset, image_ids=None, progress=True, keep_results=False):
    """Detect on every image of ``dataset`` and score it against its leaves.

    model: an inference-mode ``mrcnn.model.MaskRCNN``.
    dataset: a prepared LeafDataset (or any mrcnn Dataset with instance masks).
    image_ids: the images to use (default all).
    keep_results: also return each image's detections (for overlays and galleries).

    Returns: (per_image, summary[, results]): per_image rows of leafseg.metrics.compare_labels
    plus "ap50"; summary with the mean and std of sbd, fbd, dic, abs_dic and ap50.
    """
    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    pairs, ap50, results = [], [], []
    for image_id in tqdm(image_ids, desc="evaluate", unit="image", disable=not progress):
        image = dataset.load_image(image_id)
        gt_masks, _ = dataset.load_mask(image_id)
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
