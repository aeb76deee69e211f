"""Leaf data as the model gets it: samples and their colour masks, the leaves split from them,
resizing and mini-masks, the anchors of each pyramid level, the RPN targets, augmentation."""
from __future__ import annotations

import numpy as np

from leafseg.inspect.assets import SEED
from mrcnn import utils, visualize

__all__ = ["PYRAMID_NAMES", "colour_label", "plot_samples", "plot_leaf_masks", "plot_leaf_sizes", "resized_image",
           "plot_resize", "plot_mini_masks", "anchor_levels", "plot_anchor_levels", "rpn_targets", "plot_rpn_targets",
           "plot_augmentations"]

PYRAMID_NAMES = ("P2", "P3", "P4", "P5", "P6")


def colour_label(dataset, image_id):
    """The sample's colour mask: its label file's colours when it has one (an indexed label is
    coloured with the leaf palette), else the per-leaf masks painted in palette colours."""
    from leafseg.data.masks import masks_to_color, read_label, split_label

    info = dataset.image_info[image_id]
    if info.get("label_path"):
        label = read_label(info["label_path"])
        if label.ndim == 3:
            if label.dtype != np.uint8:  # 16-bit colours: the high byte is enough to look at
                label = (label >> 8).astype(np.uint8)
            return label
        return masks_to_color(split_label(label).masks)
    masks, _ = dataset.load_mask(image_id)
    return masks_to_color(masks)


def _leaf_overlay(image, masks):
    boxes = utils.extract_bboxes(masks)
    return visualize.draw_instances(image, masks, labels=range(1, masks.shape[-1] + 1), boxes=boxes)


def plot_samples(dataset, image_ids, cell_inches=3.0):
    """Per sample: the photograph, its colour mask and the leaves split from it with their boxes."""
    images, titles = [], []
    for image_id in image_ids:
        image = dataset.load_image(image_id)
        masks, _ = dataset.load_mask(image_id)
        name = dataset.image_info[image_id]["id"]
        images += [image, colour_label(dataset, image_id), _leaf_overlay(image, masks)]
        titles += [f"{name}: {image.shape[1]}x{image.shape[0]} px", "colour mask",
                   f"{masks.shape[-1]} leaves, boxes from the masks"]
    return visualize.show_images(images, titles, cols=3, cell_inches=cell_inches)


def plot_leaf_masks(dataset, image_id, max_leaves=11, cell_inches=2.2):
    """The colour mask split into one binary mask per leaf (on the full RGB colour, never on
    gray values), each shown in its colour with its pixel count."""
    from leafseg.data.masks import split_instances

    label = colour_label(dataset, image_id)
    result = split_instances(label, background=(0, 0, 0))
    shown = min(result.count, int(max_leaves))
    images, titles = [label], [f"{result.count} leaves\n({len(result.dropped)} specks dropped)"]
    for k in range(shown):
        leaf = np.zeros_like(label)
        leaf[result.mask(k)] = result.keys[k]
        images.append(leaf)
        titles.append(f"leaf {k + 1} {tuple(int(v) for v in result.keys[k])}\n{int(result.areas[k])} px")
    return visualize.show_images(images, titles, cols=6, cell_inches=cell_inches)


def plot_leaf_sizes(dataset, config, limit=200):
    """Leaf box sides after resizing to the model's input, against the anchor side of each level."""
    sides = []
    for image_id in dataset.image_ids[:limit]:
        image = dataset.load_image(image_id)
        masks, _ = dataset.load_mask(image_id)
        _, _, scale, _, _ = utils.resize_image(image, min_dim=config.IMAGE_MIN_DIM, max_dim=config.IMAGE_MAX_DIM,
                                               min_scale=config.IMAGE_MIN_SCALE, mode=config.IMAGE_RESIZE_MODE)
        boxes = utils.extract_bboxes(masks).astype(np.float64) * scale
        sides += list(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    fig, (ax,) = visualize.figure_grid(1, 1, cell_inches=4.5)
    sides = np.asarray(sides)
    low, high = (sides.min(), sides.max()) if sides.size else (1.0, 256.0)
    bins = np.geomspace(max(1.0, low * 0.8), max(high, 256.0) * 1.25, 40)
    ax.hist(sides, bins=bins, color="C2")
    ax.set_xscale("log")
    for name, scale in zip(PYRAMID_NAMES, config.RPN_ANCHOR_SCALES):
        ax.axvline(float(np.mean(scale)), color="C3", linestyle="--")
        ax.text(float(np.mean(scale)), ax.get_ylim()[1] * 0.95, f" {name}", color="C3", fontsize=8, va="top")
    ax.set_xlabel(f"sqrt(box area) in pixels of the {config.IMAGE_MAX_DIM} px input")
    ax.set_ylabel("leaves")
    ax.set_title(f"{len(sides)} leaves of {min(limit, len(dataset.image_ids))} images; dashed: anchor sides", fontsize=9)
    return fig


def _resized(dataset, image_id, config, full_masks=True, augmentation=None, rng=None):
    from mrcnn.pipeline import load_image_gt, parse_image_meta

    if full_masks:
        config = config.replace(USE_MINI_MASK=False)
    image, meta, class_ids, boxes, masks = load_image_gt(dataset, config, image_id, augmentation=augmentation,
                                                         rng=rng or np.random.default_rng(SEED))
    return image, parse_image_meta(meta), class_ids, boxes, masks


def resized_image(dataset, image_id, config):
    """The sample as the model sees it: resized and padded per ``config`` (uint8 RGB)."""
    return _resized(dataset, image_id, config, full_masks=False)[0]


def plot_resize(dataset, image_id, config, cell_inches=3.6):
    """The photograph before and after resizing and padding to the model input, with the window
    that holds the image, and the leaves and boxes in the resized image."""
    original = dataset.load_image(image_id)
    image, meta, _, boxes, masks = _resized(dataset, image_id, config)
    window = meta["window"]
    _, _, scale, padding, _ = utils.resize_image(original, min_dim=config.IMAGE_MIN_DIM,
                                                 max_dim=config.IMAGE_MAX_DIM, min_scale=config.IMAGE_MIN_SCALE,
                                                 mode=config.IMAGE_RESIZE_MODE)
    framed = visualize.draw_boxes(image, [window], (255, 255, 0), thickness=2)
    leaves = visualize.draw_instances(image, masks, boxes=boxes)
    return visualize.show_images(
        [original, framed, leaves],
        [f"original {original.shape[0]}x{original.shape[1]}",
         f"x{scale:.3g} -> {image.shape[0]}x{image.shape[1]} ({config.IMAGE_RESIZE_MODE})\n"
         f"padding {[tuple(p) for p in padding[:2]]}, window {tuple(int(v) for v in window)}",
         f"{masks.shape[-1]} leaves in the resized image"],
        cols=3, cell_inches=cell_inches)


def plot_mini_masks(dataset, image_id, config, count=4, cell_inches=2.2):
    """Per leaf: its mask cut to its box, the MINI_MASK_SHAPE mini-mask stored for training, and
    the mini-mask expanded back into the box, with the IoU of that round trip."""
    image, _, _, boxes, masks = _resized(dataset, image_id, config)
    mini = utils.minimize_mask(boxes, masks, config.MINI_MASK_SHAPE)
    expanded = utils.expand_mask(boxes, mini, image.shape)
    order = np.argsort(-masks.sum(axis=(0, 1)), kind="stable")
    picks = order[np.linspace(0, len(order) - 1, min(count, len(order))).round().astype(int)] if len(order) else []
    images, titles = [], []
    for k in picks:
        y1, x1, y2, x2 = boxes[k]
        iou = utils.compute_overlaps_masks(masks[..., k:k + 1], expanded[..., k:k + 1])[0, 0]
        images += [masks[y1:y2, x1:x2, k].astype(np.uint8), mini[..., k].astype(np.uint8),
                   expanded[y1:y2, x1:x2, k].astype(np.uint8)]
        titles += [f"leaf {k + 1}: {y2 - y1}x{x2 - x1} box", f"mini-mask {mini.shape[0]}x{mini.shape[1]}",
                   f"expanded back, IoU {iou:.3f}"]
    return visualize.show_images(images, titles, cols=3, cell_inches=cell_inches, cmap="gray", colorbar=False)


def anchor_levels(config, image_shape=None):
    """Per pyramid level: stride, feature map, anchor side, anchors; rows of a table."""
    from mrcnn.anchors import compute_backbone_shapes

    image_shape = tuple(int(v) for v in (image_shape if image_shape is not None else config.IMAGE_SHAPE)[:2])
    shapes = compute_backbone_shapes(image_shape, config.BACKBONE_STRIDES)
    stride = int(config.RPN_ANCHOR_STRIDE)
    rows = []
    for name, feature_stride, (h, w), scale in zip(PYRAMID_NAMES, config.BACKBONE_STRIDES, shapes,
                                                   config.RPN_ANCHOR_SCALES):
        per_position = len(config.RPN_ANCHOR_RATIOS) * len(np.atleast_1d(scale))
        positions = (-(-int(h) // stride), -(-int(w) // stride))
        rows.append({"level": name, "stride": int(feature_stride), "feature map": f"{h}x{w}",
                     "anchor side": "/".join(str(int(s)) for s in np.atleast_1d(scale)),
                     "per position": per_position, "positions": positions,
                     "anchors": positions[0] * positions[1] * per_position})
    return rows


def plot_anchor_levels(config, image=None, cell_inches=3.2):
    """The anchors of P2..P6 on an input-sized image (``image`` already resized, or gray)."""
    from mrcnn.anchors import get_anchors

    shape = tuple(int(v) for v in config.IMAGE_SHAPE[:2])
    if image is None:
        image = np.full(shape + (3,), 90, np.uint8)
    anchors = get_anchors(shape, config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES,
                          config.RPN_ANCHOR_STRIDE, normalized=False)
    levels = anchor_levels(config, shape)
    return visualize.plot_anchors(image, anchors, [row["anchors"] for row in levels],
                                  [row["level"] for row in levels], cell_inches=cell_inches,
                                  title=f"{len(anchors):,} anchors at {shape[0]}x{shape[1]}")


def rpn_targets(dataset, image_id, config, seed=SEED):
    """The RPN training targets of one image, as the input pipeline builds them.

    Returns a dict: image (resized), anchors [A, 4] pixels, match [A] (1 / -1 / 0),
    deltas [P, 4] of the positives (in anchor order, multiplied back by RPN_BBOX_STD_DEV),
    refined [P, 4] the positives moved by them, gt_boxes [G, 4].
    """
    from mrcnn.pipeline import build_rpn_targets, pipeline_anchors

    image, _, class_ids, boxes, _ = _resized(dataset, image_id, config, full_masks=False)
    anchors = pipeline_anchors(config)
    match, rpn_bbox = build_rpn_targets(image.shape, anchors, class_ids, boxes, config,
                                        np.random.default_rng(seed))
    positives = anchors[match == 1]
    deltas = rpn_bbox[: len(positives)] * np.asarray(config.RPN_BBOX_STD_DEV, np.float32)
    return {"image": image, "anchors": anchors, "match": match, "deltas": deltas,
            "refined": utils.apply_box_deltas(positives, deltas), "gt_boxes": boxes}


def plot_rpn_targets(dataset, image_id, config, seed=SEED, cell_inches=4.5):
    """Positive anchors and their refinement (= the leaf boxes they regress to), and negatives."""
    targets = rpn_targets(dataset, image_id, config, seed)
    match = targets["match"]
    title = (f"RPN targets: {int((match == 1).sum())} positive, {int((match == -1).sum())} negative of "
             f"{len(match):,} anchors (IoU >= 0.7 / < 0.3, at most {config.RPN_TRAIN_ANCHORS_PER_IMAGE} sampled); "
             f"{len(targets['gt_boxes'])} leaves")
    return visualize.plot_anchor_targets(targets["image"], targets["anchors"], match, targets["refined"],
                                         cell_inches=cell_inches, title=title)


def plot_augmentations(dataset, image_id, config, count=5, strength="default", seed=SEED, cell_inches=2.6):
    """The resized sample, then ``count`` draws of ``default_augmentation(strength)`` with their leaves."""
    from mrcnn.augment import default_augmentation

    augmentation = default_augmentation(strength, square=config.IMAGE_RESIZE_MODE in ("square", "crop"))
    images, titles = [], []
    for k in range(count + 1):
        image, _, _, boxes, masks = _resized(dataset, image_id, config, augmentation=augmentation if k else None,
                                             rng=np.random.default_rng([seed, k]))
        images.append(visualize.draw_instances(image, masks, boxes=boxes))
        titles.append(f"augmented #{k}: {masks.shape[-1]} leaves" if k else f"not augmented: {masks.shape[-1]} leaves")
    return visualize.show_images(images, titles, cols=min(count + 1, 6), cell_inches=cell_inches,
                                 title=f"default_augmentation({strength!r})")
