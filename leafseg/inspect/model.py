"""The model on one image, stage by stage (backbone and FPN activations, RPN scores, top anchors,
their refinement, NMS, the heads' classification, per-class NMS, masks), its weights, and the
scores of its detections against the image's leaves."""
from __future__ import annotations

import re

import numpy as np

from leafseg.inspect.data import PYRAMID_NAMES
from mrcnn import utils, visualize
from mrcnn.boxcoords import denorm_boxes_float

__all__ = ["activation_layers", "stage_outputs", "original_image", "plot_rpn_scores", "plot_top_anchors",
           "plot_refinement", "plot_proposals", "refine_proposals", "plot_classification", "plot_detection_nms",
           "detections_of", "plot_masks", "plot_activations", "weight_stats", "plot_weights", "image_scores",
           "plot_detections_vs_truth"]


def activation_layers(model):
    """[(name, layer name)] of the backbone stages C2..C5 (the last block of each) and P2..P6."""
    names = [layer.name for layer in model.keras_model.layers]
    last = {}
    for name in names:
        match = re.fullmatch(r"res(\d)\w*_out", name)
        if match and 2 <= int(match.group(1)) <= 5:
            last[int(match.group(1))] = name
    layers = [(f"C{stage}", last[stage]) for stage in sorted(last)]
    layers += [(level, f"fpn_{level.lower()}") for level in PYRAMID_NAMES if f"fpn_{level.lower()}" in names]
    return layers


def stage_outputs(model, image, activations=True):
    """``model.run_graph([image])`` (every intermediate stage, see MaskRCNN.run_graph), plus the
    backbone and FPN activations when asked, and ``image`` itself under "image"."""
    outputs = model.run_graph([image], outputs=activation_layers(model) if activations else None)
    outputs["image"] = np.asarray(image)
    return outputs


def original_image(outputs, config):
    """The molded input image of ``outputs`` back in uint8 RGB (resized and padded)."""
    from mrcnn.pipeline import unmold_image

    return unmold_image(outputs["molded_images"][0], config)


def _pixels(boxes, outputs):
    """Normalised boxes -> float pixels of the molded image (not rounded, unlike denorm_boxes)."""
    return denorm_boxes_float(boxes, outputs["molded_images"].shape[1:3])


def _score_colors(scores, vmin=0.0, vmax=1.0, cmap="viridis"):
    from matplotlib import colormaps

    values = (np.asarray(scores, np.float64) - vmin) / max(vmax - vmin, 1e-12)
    return np.round(colormaps[cmap](np.clip(values, 0, 1))[:, :3] * 255).astype(np.uint8)


def plot_rpn_scores(outputs, config, cell_inches=2.6):
    """The RPN's foreground score of every anchor: per level the best score at each position,
    and the histogram of all scores with the PRE_NMS_LIMIT cut."""
    from mrcnn.anchors import compute_backbone_shapes

    shape = outputs["molded_images"].shape[1:3]
    stride = int(config.RPN_ANCHOR_STRIDE)
    grids = [(-(-int(h) // stride), -(-int(w) // stride)) for h, w in compute_backbone_shapes(shape,
                                                                                          config.BACKBONE_STRIDES)]
    per_position = len(config.RPN_ANCHOR_RATIOS) * len(np.atleast_1d(config.RPN_ANCHOR_SCALES[0]))
    return visualize.plot_level_scores(outputs["rpn_class"][0][:, 1], grids, per_position, PYRAMID_NAMES,
                                       top_k=config.PRE_NMS_LIMIT, cell_inches=cell_inches,
                                       title="RPN foreground scores per anchor")


def plot_top_anchors(outputs, config, show=50, scale=3, cell_inches=4.2):
    """The PRE_NMS_LIMIT anchors of highest RPN score: the best ``show`` outlined, and where all
    of them sit."""
    image = original_image(outputs, config)
    anchors = _pixels(outputs["pre_nms_anchors"][0], outputs)
    scores = outputs["pre_nms_scores"][0]
    k = len(anchors)
    fig, (left, right) = visualize.figure_grid(2, 2, cell_inches,
                                              title=f"top {k:,} of {len(outputs['anchors']):,} anchors by RPN score "
                                                    f"(PRE_NMS_LIMIT = {config.PRE_NMS_LIMIT})")
    shown = min(show, k)
    left.imshow(visualize.draw_boxes(image, anchors[:shown], _score_colors(scores[:shown]), scale=scale))
    left.set_title(f"the best {shown} (colour: score)", fontsize=9)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    right.imshow(image)
    dots = right.scatter(centres[::-1, 1] - 0.5, centres[::-1, 0] - 0.5, c=scores[::-1], s=4, cmap="viridis",
                         vmin=0, vmax=1)
    fig.colorbar(dots, ax=right, shrink=0.7, label="score")
    right.set_title(f"centres of all {k:,}", fontsize=9)
    for ax in (left, right):
        ax.set_axis_off()
    return fig


def _box_patches(ax, boxes, colors, linestyle="-"):
    from matplotlib.patches import Rectangle

    for (y1, x1, y2, x2), color in zip(boxes, colors):
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, linewidth=1,
                               edgecolor=np.asarray(color) / 255.0, linestyle=linestyle))


def plot_refinement(outputs, config, show=30, cell_inches=5.0):
    """Top anchors moved by their RPN deltas (the anchors dotted, the refined boxes solid; they
    may leave the image), then the refined boxes clipped to the image. Of the PRE_NMS_LIMIT
    boxes, the best ``show / 2`` are drawn and the best ``show / 2`` of those clipping changed."""
    image = original_image(outputs, config)
    h, w = image.shape[:2]
    was_clipped = np.any(~np.isclose(outputs["refined_anchors"][0], outputs["refined_anchors_clipped"][0]), axis=1)
    changed = int(was_clipped.sum())
    # The best boxes, and as many of the best clipped ones, so that clipping shows.
    picks = np.unique(np.concatenate([np.arange(min(show - show // 2, len(was_clipped))),
                                      np.flatnonzero(was_clipped)[: show // 2]]))
    anchors = _pixels(outputs["pre_nms_anchors"][0][picks], outputs)
    refined = _pixels(outputs["refined_anchors"][0][picks], outputs)
    clipped = _pixels(outputs["refined_anchors_clipped"][0][picks], outputs)
    colors = visualize.random_colors(len(anchors))
    fig, (left, right) = visualize.figure_grid(2, 2, cell_inches)
    margin = 0.25 * max(h, w)
    for ax, boxes, title in ((left, refined, f"{len(picks)} anchors (dotted) -> after applying the deltas"),
                             (right, clipped, f"after clipping to the image\n({changed:,} of "
                                              f"{len(outputs['refined_anchors'][0]):,} boxes clipped)")):
        ax.imshow(image)
        if ax is left:
            _box_patches(ax, anchors, colors, linestyle=":")
        _box_patches(ax, boxes, colors)
        ax.set_xlim(-margin, w + margin)
        ax.set_ylim(h + margin, -margin)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    return fig


def plot_proposals(outputs, config, show=30, scale=3, cell_inches=4.2):
    """After non-max suppression: the proposals (POST_NMS_ROIS_INFERENCE at most)."""
    image = original_image(outputs, config)
    count = int(outputs["post_nms_count"][0])
    rois = _pixels(outputs["post_nms_rois"][0][:count], outputs)
    shown = min(show, count)
    before = len(outputs["refined_anchors_clipped"][0])
    colors = visualize.random_colors(count)
    return visualize.show_images(
        [visualize.draw_boxes(image, rois[:shown], colors[:shown], scale=scale),
         visualize.draw_boxes(image, rois, colors, scale=scale)],
        [f"the best {shown} proposals", f"all {count} proposals"],
        cols=2, cell_inches=cell_inches,
        title=f"NMS at IoU {config.RPN_NMS_THRESHOLD}: {before:,} boxes -> {count} proposals "
              f"(POST_NMS_ROIS_INFERENCE = {config.POST_NMS_ROIS_INFERENCE})")


def refine_proposals(outputs, config):
    """The detection layer's steps in numpy, for one image (the first of ``outputs``).

    Per proposal: its best class and score, its box moved by that class's deltas and clipped to
    the image window; ``keep`` marks the proposals that are not padding, not background and
    score at least DETECTION_MIN_CONFIDENCE. Then greedy NMS within each class at
    DETECTION_NMS_THRESHOLD and the DETECTION_MAX_INSTANCES best: the same detections as the
    model's DetectionLayer (normalised coordinates).

    Returns: dict of rois [N, 4], class_ids [N], scores [N], refined [N, 4], keep bool [N],
    detections [D] (indices into the proposals, best first).
    """
    from mrcnn.pipeline import parse_image_meta

    rois = np.asarray(outputs["rpn_rois"][0], np.float64)
    probs = np.asarray(outputs["mrcnn_class"][0], np.float64)
    class_ids = probs.argmax(axis=1)
    scores = probs.max(axis=1)
    deltas = np.asarray(outputs["mrcnn_bbox"][0], np.float64)[np.arange(len(rois)), class_ids]
    refined = utils.apply_box_deltas(rois, deltas * np.asarray(config.BBOX_STD_DEV)).astype(np.float64)
    meta = parse_image_meta(outputs["image_metas"][0])
    wy1, wx1, wy2, wx2 = utils.norm_boxes(meta["window"].astype(np.float64), meta["image_shape"][:2])
    refined = np.stack([np.clip(refined[:, 0], wy1, wy2), np.clip(refined[:, 1], wx1, wx2),
                        np.clip(refined[:, 2], wy1, wy2), np.clip(refined[:, 3], wx1, wx2)], axis=1)
    keep = np.any(rois != 0, axis=1) & (class_ids > 0) & (scores >= config.DETECTION_MIN_CONFIDENCE)
    chosen = []
    for class_id in np.unique(class_ids[keep]):
        members = np.flatnonzero(keep & (class_ids == class_id))
        chosen += list(members[utils.non_max_suppression(refined[members], scores[members],
                                                         config.DETECTION_NMS_THRESHOLD)])
    chosen = np.asarray(chosen, dtype=np.int64)
    chosen = chosen[np.argsort(-scores[chosen], kind="stable")][: config.DETECTION_MAX_INSTANCES]
    return {"rois": rois, "class_ids": class_ids, "scores": scores, "refined": refined, "keep": keep,
            "detections": chosen}


def plot_classification(outputs, config, scale=3, cell_inches=3.8):
    """The heads on the proposals: the leaf probability of each proposal, and the proposals the
    classifier keeps (leaf, score >= DETECTION_MIN_CONFIDENCE) moved by its box refinement."""
    image = original_image(outputs, config)
    steps = refine_proposals(outputs, config)
    valid = np.any(steps["rois"] != 0, axis=1)
    foreground = 1.0 - np.asarray(outputs["mrcnn_class"][0], np.float64)[:, 0]
    rois, refined, keep = _pixels(steps["rois"], outputs), _pixels(steps["refined"], outputs), steps["keep"]
    fig, axes = visualize.figure_grid(3, 3, cell_inches, title="Proposal classification and refinement")
    axes[0].imshow(visualize.draw_boxes(image, rois[valid], _score_colors(foreground[valid]), scale=scale))
    axes[0].set_title(f"{int(valid.sum())} proposals (colour: P(not background))", fontsize=9)
    axes[1].imshow(visualize.draw_boxes(image, rois[keep], _score_colors(steps["scores"][keep]),
                                        refined_boxes=refined[keep], scale=scale))
    axes[1].set_title(f"{int(keep.sum())} kept (score >= {config.DETECTION_MIN_CONFIDENCE}),\n"
                      "dim: proposal, bright: refined", fontsize=9)
    for ax in axes[:2]:
        ax.set_axis_off()
    axes[2].hist(foreground[valid], bins=np.linspace(0, 1, 41), color="gray")
    axes[2].axvline(config.DETECTION_MIN_CONFIDENCE, color="C3", linestyle="--", label="DETECTION_MIN_CONFIDENCE")
    axes[2].set_xlabel("P(not background)")
    axes[2].set_title("classifier scores of the proposals", fontsize=9)
    axes[2].legend(fontsize=7)
    return fig


def plot_detection_nms(outputs, config, scale=3, cell_inches=4.2):
    """Per-class NMS: the kept, refined proposals before it and the final detections after it."""
    image = original_image(outputs, config)
    steps = refine_proposals(outputs, config)
    keep = np.flatnonzero(steps["keep"])
    refined = _pixels(steps["refined"], outputs)
    final = steps["detections"]
    count = int(np.count_nonzero(outputs["detections"][0][:, 4] > 0))
    return visualize.show_images(
        [visualize.draw_boxes(image, refined[keep], _score_colors(steps["scores"][keep]), scale=scale),
         visualize.draw_boxes(image, refined[final], _score_colors(steps["scores"][final]),
                              labels=[f"{s:.2f}" for s in steps["scores"][final]], scale=scale)],
        [f"before NMS: {len(keep)} boxes", f"after NMS (IoU {config.DETECTION_NMS_THRESHOLD}): {len(final)} "
                                           f"detections\n(the model's DetectionLayer: {count})"],
        cols=2, cell_inches=cell_inches, title="Per-class non-max suppression -> final detections")


def detections_of(model, outputs):
    """MaskRCNN.detect's result for the image of ``outputs`` (original pixels), from its outputs."""
    from mrcnn.pipeline import parse_image_meta

    meta = parse_image_meta(outputs["image_metas"][0])
    rois, class_ids, scores, masks = model.unmold_detections(
        outputs["detections"][0], outputs["mrcnn_mask"][0], outputs["image"].shape, meta["image_shape"],
        meta["window"])
    return {"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks}


def plot_masks(model, outputs, count=5, cell_inches=2.6):
    """The mask head's probabilities (MASK_SHAPE) of the best detections, and all the final
    masks pasted into the original image."""
    detections = outputs["detections"][0]
    n = int(np.count_nonzero(detections[:, 4] > 0))
    images, titles = [], []
    for i in range(min(count, n)):
        class_id = int(detections[i, 4])
        images.append(outputs["mrcnn_mask"][0][i, :, :, class_id])
        titles.append(f"detection {i + 1} ({detections[i, 5]:.2f})")
    result = detections_of(model, outputs)
    images.append(visualize.draw_instances(outputs["image"], result["masks"], boxes=result["rois"],
                                           labels=range(1, len(result["scores"]) + 1)))
    titles.append(f"{len(result['scores'])} masks in the original image")
    return visualize.show_images(images, titles, cols=len(images), cell_inches=cell_inches, cmap="magma",
                                 colorbar=False)


def plot_activations(outputs, names, channels=6, cell_inches=1.6, title=None):
    """Activations ``names`` of :func:`stage_outputs` (e.g. C2..C5 or P2..P6)."""
    return visualize.plot_activations({name: outputs[name][0] for name in names}, channels=channels,
                                      cell_inches=cell_inches, title=title)


def _weight_variables(model):
    """(layer name, variable) of every weight of the model, nested models entered."""
    for variable in model.keras_model.weights:
        yield variable.path.rsplit("/", 1)[0], variable


def weight_stats(model):
    """Per weight: layer, name, shape, min, max, mean, std, and a note for suspicious values:
    NaN or Inf anywhere, a kernel all zero or constant."""
    rows = []
    for layer, variable in _weight_variables(model):
        value = np.asarray(variable.numpy(), np.float64)
        finite = value[np.isfinite(value)]
        note = ""
        if finite.size < value.size:
            note = "NaN/Inf"
        elif variable.path.endswith("kernel") and finite.std() == 0:
            # (Biases and frozen BatchNorm parameters are often constant, kernels never.)
            note = "all zero" if not np.any(value) else "constant"
        rows.append({"layer": layer, "weight": variable.path.rsplit("/", 1)[-1],
                     "shape": "x".join(str(s) for s in value.shape),
                     "min": float(finite.min()) if finite.size else np.nan,
                     "max": float(finite.max()) if finite.size else np.nan,
                     "mean": float(finite.mean()) if finite.size else np.nan,
                     "std": float(finite.std()) if finite.size else np.nan, "note": note})
    return rows


def plot_weights(model, count=16, pattern="kernel$", cols=4, cell_inches=2.6):
    """Histograms of ``count`` weights matching ``pattern`` (regular expression over the
    variable paths), spread evenly from the input to the output of the network."""
    variables = [(layer, v) for layer, v in _weight_variables(model) if re.search(pattern, v.path)]
    picks = np.unique(np.linspace(0, len(variables) - 1, min(count, len(variables))).round().astype(int))
    arrays = {f"{variables[i][0]}/{variables[i][1].path.rsplit('/', 1)[-1]}": variables[i][1].numpy()
              for i in picks} if variables else {}
    return visualize.plot_histograms(arrays, cols=cols, cell_inches=cell_inches,
                                     title=f"{len(arrays)} of {len(variables)} weights matching {pattern!r}")


def image_scores(gt_masks, result):
    """SBD, FBD, DiC, leaf counts and mask AP50 of one image's detections against its leaves."""
    from leafseg.data.masks import masks_to_label
    from leafseg.measure.metrics import compare_labels, label_from_detections, mask_ap50

    gt_masks = np.asarray(gt_masks, bool)
    scores = dict(compare_labels(label_from_detections(result["masks"], result["scores"]),
                                 masks_to_label(gt_masks)))
    scores["ap50"] = mask_ap50(gt_masks, result["masks"], result["scores"], None, result["class_ids"])
    return scores


def plot_detections_vs_truth(image, gt_masks, result, cell_inches=4.0):
    """The ground-truth leaves beside the detections, titled with SBD and mask AP50."""
    scores = image_scores(gt_masks, result)
    truth = visualize.draw_instances(image, gt_masks, labels=range(1, gt_masks.shape[-1] + 1))
    found = visualize.draw_instances(image, result["masks"], labels=range(1, len(result["scores"]) + 1))
    return visualize.show_images(
        [truth, found], [f"ground truth: {gt_masks.shape[-1]} leaves", f"detections: {len(result['scores'])}"],
        cols=2, cell_inches=cell_inches,
        title=f"SBD {scores['sbd']:.3f}, |DiC| {scores['abs_dic']}, mask AP50 {scores['ap50']:.3f}")
