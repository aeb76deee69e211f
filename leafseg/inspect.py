"""What the inspection notebooks call: inputs, a built-in tiny model, and one figure per step.

The three notebooks in ``notebooks/`` hold parameters, calls and prose; everything they compute
is here (leaf data, the model's stages, training runs) or in :mod:`mrcnn.visualize` (generic
drawing). Figures are plain matplotlib Figures: a notebook shows one when it is a cell's value,
``fig.savefig(path)`` writes it.

Without weights, data or a run folder of their own, the notebooks fall back on
:func:`default_assets`: a few procedural rosettes, prepared into the training layout, and a tiny
Mask R-CNN (:data:`TINY_CONFIG`) trained from scratch with ``leafseg train`` in two short Adam
stages (the second at a lower rate, as the seed post did at its plateau): about a minute on two
CPU cores. It is cached under ``cache_dir`` (default ``$LEAFSEG_INSPECT_CACHE``, else a folder
in the temporary directory), behind a file lock, so the notebooks of one run share it and run
side by side safely. Everything is seeded and the training runs with TensorFlow's op
determinism, so it comes out the same each time on a given machine.

    assets = default_assets()                 # rosettes, prepared data, run folder, weights
    model = load_model()                      # the tiny model, inference mode
    dataset = load_dataset(subset="val")      # its held-out rosettes
    outputs = stage_outputs(model, dataset.load_image(dataset.image_ids[0]))
    plot_proposal_steps(outputs, model.config)

Relative paths given to the loaders (``DATASET = "data/leaves"``) are found from the working
directory, which is ``notebooks/`` for a notebook opened there, and else from the repository
root (:func:`resolve_path`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mrcnn import utils, visualize
from mrcnn.boxcoords import denorm_boxes_float

__all__ = [
    "TINY_CONFIG", "TINY_STAGES", "CACHE_ENV", "Assets", "default_dataset", "default_assets", "resolve_path",
    "load_dataset", "load_config", "load_model", "format_table",
    # data
    "colour_label", "plot_samples", "plot_leaf_masks", "plot_leaf_sizes", "resized_image", "plot_resize",
    "plot_mini_masks",
    "anchor_levels", "plot_anchor_levels", "rpn_targets", "plot_rpn_targets", "plot_augmentations",
    # model
    "activation_layers", "stage_outputs", "original_image", "plot_rpn_scores", "plot_top_anchors",
    "plot_refinement", "plot_proposals", "refine_proposals", "plot_classification", "plot_detection_nms",
    "plot_masks", "plot_activations", "weight_stats", "plot_weights", "detections_of", "image_scores",
    "plot_detections_vs_truth",
    # training
    "RunLog", "read_run", "load_runs", "stage_table", "find_plateaus", "plot_runs", "plot_plateaus",
]

CACHE_ENV = "LEAFSEG_INSPECT_CACHE"
SEED = 0
# Rosettes of the built-in data: count and (height, width). Not square, so that resizing pads.
DEFAULT_IMAGES = 40
DEFAULT_SIZE = (112, 128)
# The tiny model, on top of LeafConfig: a quarter-width ResNet-18 on 128 px inputs with narrow
# FPN, RPN and heads. Frozen BatchNorm: with so few steps the moving statistics of trained
# BatchNorm would lag behind the weights and spoil inference.
TINY_CONFIG = {
    "NAME": "leaf_tiny", "BACKBONE": "resnet18", "BACKBONE_WIDTH": 0.25, "TRAIN_BN": False,
    "IMAGES_PER_GPU": 2, "IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128,
    "TOP_DOWN_PYRAMID_SIZE": 32, "RPN_CONV_CHANNELS": 32, "FPN_CLASSIF_FC_LAYERS_SIZE": 64,
    "MASK_HEAD_CHANNELS": 16, "RPN_TRAIN_ANCHORS_PER_IMAGE": 64, "PRE_NMS_LIMIT": 1000,
    "POST_NMS_ROIS_TRAINING": 200, "POST_NMS_ROIS_INFERENCE": 100, "TRAIN_ROIS_PER_IMAGE": 32,
    "MAX_GT_INSTANCES": 24, "DETECTION_MAX_INSTANCES": 24, "MINI_MASK_SHAPE": [28, 28],
    "DETECTION_MIN_CONFIDENCE": 0.5, "STEPS_PER_EPOCH": 20, "VALIDATION_STEPS": 2, "LEARNING_RATE": 0.002,
}
# The tiny run's stages, all layers with Adam: (train until this epoch, learning rate).
TINY_STAGES = ((4, 0.002), (6, 0.0005))
PYRAMID_NAMES = ("P2", "P3", "P4", "P5", "P6")
_FORMAT = 1  # bump when the cached files change meaning


############################################################
#  Built-in data and model
############################################################

@dataclasses.dataclass(frozen=True)
class Assets:
    """The built-in inputs: ``rosettes`` (plantNNNNN_rgb.png + _label.png), ``dataset`` (their
    prepared layout, train/ and val/), and once trained ``run_dir`` (a ``leafseg train`` run
    folder), ``weights`` (its newest checkpoint) and ``config`` (its config.yaml)."""
    root: Path
    rosettes: Path
    dataset: Path
    run_dir: Path | None = None
    weights: Path | None = None
    config: Path | None = None


def _cache_key():
    text = json.dumps({"config": TINY_CONFIG, "stages": TINY_STAGES, "images": DEFAULT_IMAGES,
                       "size": DEFAULT_SIZE, "seed": SEED, "format": _FORMAT}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _cache_root(cache_dir=None):
    base = cache_dir or os.environ.get(CACHE_ENV)
    if not base:
        user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
        base = Path(tempfile.gettempdir()) / f"leafseg-inspect-{user}"
    return Path(base).expanduser().resolve() / f"tiny-{_cache_key()}"


@contextlib.contextmanager
def _locked(path):
    """Hold an exclusive lock on ``path`` (other processes wait; POSIX file locks)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_dataset(cache_dir=None):
    """The built-in rosettes, generated and prepared once per cache folder (no model)."""
    from leafseg.prepare import prepare_dataset
    from leafseg.synthetic import write_dataset

    from mrcnn.fileio import write_text_atomic

    root = _cache_root(cache_dir)
    assets = Assets(root, root / "rosettes", root / "prepared")
    with _locked(root / "data.lock"):
        done = root / "data.done"
        if not done.is_file():
            # Both steps skip what a killed earlier attempt finished and redo the rest.
            write_dataset(assets.rosettes, DEFAULT_IMAGES, seed=SEED, size=DEFAULT_SIZE, progress=False)
            prepare_dataset(assets.rosettes, assets.dataset, seed=SEED)
            write_text_atomic(done, "ok\n")
    return assets


def default_assets(cache_dir=None):
    """The built-in data and the tiny model trained on it, once per cache folder; see the module."""
    import yaml

    from leafseg.predict import resolve_weights
    from mrcnn.fileio import write_text_atomic

    assets = default_dataset(cache_dir)
    root = assets.root
    with _locked(root / "train.lock"):
        record = root / "run.txt"
        run_dir = root / record.read_text().strip() if record.is_file() else None
        if run_dir is None or not list(run_dir.glob("mask_rcnn_*.weights.h5")):
            # Not trained yet, interrupted, or cleaned away since: train from the start.
            logs = root / "logs"
            shutil.rmtree(logs, ignore_errors=True)
            config_path = root / "tiny.yaml"
            write_text_atomic(config_path, yaml.safe_dump(TINY_CONFIG, sort_keys=False))
            run_dir = _train_tiny(config_path, assets.dataset, logs)
            write_text_atomic(record, os.path.relpath(run_dir, root) + "\n")
    return dataclasses.replace(assets, run_dir=run_dir, weights=resolve_weights(run_dir),
                               config=run_dir / "config.yaml")


def _train_tiny(config_path, dataset, logs):
    """Train TINY_STAGES with ``leafseg train``; returns the run folder.

    TensorFlow's op determinism is on while it trains (seeds alone leave the multi-threaded CPU
    kernels free to sum in any order: two runs then differ after a few steps), and restored
    to what it was afterwards.
    """
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    from leafseg import train

    was_deterministic = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        result = None
        for i, (epochs, rate) in enumerate(TINY_STAGES):
            result = train.run(["--config", str(config_path), "--dataset", str(dataset), "--stage", "all",
                                "--epochs", str(epochs), "--weights", "none" if i == 0 else "last",
                                "--optimizer", "adam", "--lr", str(rate), "--logs", str(logs),
                                "--seed", str(SEED), "--keep-checkpoints", "1", "--verbose", "0"])
    finally:
        if not was_deterministic:
            tf_config.disable_op_determinism()
    return Path(result.run_dir)


############################################################
#  Loading what the notebooks inspect
############################################################

def resolve_path(path, what="path"):
    """``path`` as an existing absolute Path. A relative path is tried from the working directory,
    then from the repository root (the folder above ``notebooks/``: a notebook's kernel runs in
    ``notebooks/``, a user's paths are usually from the root). FileNotFoundError names every
    absolute path tried and the working directory."""
    path = Path(path).expanduser()
    cwd = Path.cwd()
    if path.is_absolute():
        tried = [path]
    else:
        roots = [cwd]
        if cwd.name == "notebooks":
            roots.append(cwd.parent)
        repository = Path(__file__).resolve().parents[1]
        if (repository / "notebooks").is_dir():
            roots.append(repository)
        tried = list(dict.fromkeys((root / path).resolve() for root in roots))
    for candidate in tried:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{what} not found: {str(path)!r}, tried {', '.join(map(str, tried))} "
                            f"(working directory {cwd})")


def _looks_like_path(value):
    return isinstance(value, os.PathLike) or (isinstance(value, str) and (
        os.sep in value or "/" in value or value.endswith((".yaml", ".yml"))))


def load_dataset(path=None, subset="train", cache_dir=None):
    """A prepared LeafDataset: ``path`` in the prepared layout or a raw folder of image + label
    pairs (colour masks or CVPPP indexed labels); None: the built-in rosettes (raw, so that
    their colour labels can be shown). subset: "train", "val" or "all"."""
    from leafseg.evaluate import load_eval_dataset

    path = default_dataset(cache_dir).rosettes if path is None else resolve_path(path, "dataset")
    return load_eval_dataset(path, subset)


def load_config(config="leaf_r101", **overrides):
    """A config from a preset name, a YAML file or a run folder with config.yaml."""
    from leafseg.predict import resolve_config

    if _looks_like_path(config):
        config = resolve_path(config, "config")
    return resolve_config(config, **overrides)[0]


def load_model(weights=None, config=None, min_confidence=None, cache_dir=None):
    """An inference model: ``weights`` a checkpoint or a run folder (its newest checkpoint),
    None for the built-in tiny model; ``config`` a preset, YAML or run folder, None for the
    config.yaml beside the weights; ``min_confidence`` replaces DETECTION_MIN_CONFIDENCE."""
    from leafseg.predict import load_inference_model

    weights = default_assets(cache_dir).weights if weights is None else resolve_path(weights, "weights")
    if _looks_like_path(config):
        config = resolve_path(config, "config")
    model, _, _ = load_inference_model(weights, config, min_score=min_confidence)
    return model


def format_table(rows, columns=None, floats="{:.4g}"):
    """Rows (dicts) as a text table with aligned columns."""
    rows = list(rows)
    if not rows:
        return "(none)"
    columns = list(columns or rows[0])

    def text(value):
        return floats.format(value) if isinstance(value, (float, np.floating)) else str(value)

    cells = [[text(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _numeric(text):
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


############################################################
#  Data: samples, masks, resizing, anchors, RPN targets
############################################################

def colour_label(dataset, image_id):
    """The sample's colour mask: its label file's colours when it has one (an indexed label is
    coloured with the leaf palette), else the per-leaf masks painted in palette colours."""
    from leafseg.masks import masks_to_color, read_label, split_label

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
    from leafseg.masks import split_instances

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


############################################################
#  Model: every stage for one image
############################################################

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
    from leafseg.masks import masks_to_label
    from leafseg.metrics import compare_labels, label_from_detections, mask_ap50

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


############################################################
#  Training runs
############################################################

@dataclasses.dataclass
class RunLog:
    """A run folder's training history: ``history`` {column: float array per epoch} from
    training_log.csv (text columns such as stage and optimizer in ``text``), the stages of
    run.json (or, without it, the CSV's changes of stage / optimizer), and ``boundaries``, the
    epochs after which a new stage began."""
    label: str
    path: Path
    history: dict
    text: dict
    stages: list
    boundaries: list


def read_run(run_dir, label=None):
    """The :class:`RunLog` of a run folder (training_log.csv, run.json when present)."""
    from mrcnn.callbacks import read_csv_log

    path = Path(run_dir)
    csv_path = path / "training_log.csv"
    rows = read_csv_log(csv_path)
    if not rows:
        raise FileNotFoundError(f"{csv_path} is missing or empty: not a training run folder?")
    columns = list(dict.fromkeys(name for row in rows for name in row))
    history, text = {}, {}
    for name in columns:
        values = [row.get(name) or "" for row in rows]
        try:
            history[name] = np.array([float(v) if v != "" else np.nan for v in values])
        except ValueError:
            text[name] = values
    stages = []
    record = path / "run.json"
    if record.is_file():
        stages = json.loads(record.read_text(encoding="utf-8")).get("stages", [])
    if stages:
        first = history["epoch"].min() - 1 if "epoch" in history else 0
        boundaries = sorted({int(s["start_epoch"]) for s in stages if int(s.get("start_epoch", 0)) > first})
    else:
        keys = list(zip(text.get("stage", [""] * len(rows)), text.get("optimizer", [""] * len(rows))))
        epochs = history.get("epoch", np.arange(1, len(rows) + 1))
        boundaries = [int(epochs[i - 1]) for i in range(1, len(rows)) if keys[i] != keys[i - 1]]
    return RunLog(label or path.name, path, history, text, stages, boundaries)


def load_runs(run_dirs=None, labels=None, cache_dir=None):
    """:class:`RunLog` of each run folder (one path or a list); None: the tiny model's run."""
    if run_dirs is None:
        run_dirs = [default_assets(cache_dir).run_dir]
    else:
        if isinstance(run_dirs, (str, os.PathLike)):
            run_dirs = [run_dirs]
        run_dirs = [resolve_path(run_dir, "run folder") for run_dir in run_dirs]
    labels = list(labels) if labels is not None else [None] * len(run_dirs)
    return [read_run(run_dir, label) for run_dir, label in zip(run_dirs, labels)]


def stage_table(runs):
    """Rows describing each stage of each run (for :func:`format_table`)."""
    rows = []
    for run in runs:
        for stage in run.stages or [{}]:
            rows.append({"run": run.label, "stage": stage.get("stage", "?"), "optimizer": stage.get("optimizer", "?"),
                         "learning rate": stage.get("learning_rate", np.nan),
                         "schedule": stage.get("schedule", "?"),
                         "epochs": f"{stage.get('start_epoch', '?')} -> {stage.get('end_epoch', '?')}",
                         "status": stage.get("status", "?"), "seconds": stage.get("seconds", np.nan)})
    return rows


def find_plateaus(epochs, values, window=5, min_drop=0.02):
    """Spans of epochs where a loss stopped improving: [(first epoch, last epoch)].

    An epoch is on a plateau when the loss fell by less than ``min_drop`` (relative) over the
    ``window`` epochs before it; overlapping windows of such epochs merge into one span.
    """
    epochs = np.asarray(epochs, np.float64)
    values = np.asarray(values, np.float64)
    spans = []
    for i in range(int(window), len(values)):
        before, now = values[i - int(window)], values[i]
        if not (np.isfinite(before) and np.isfinite(now)) or before == 0:
            continue
        if (before - now) / abs(before) < min_drop:
            start, end = float(epochs[i - int(window)]), float(epochs[i])
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
    return spans


def plot_runs(runs, log_scale=False, plateau_window=None, min_drop=0.02, cols=4):
    """Every loss (training solid, validation dashed) and the learning rate of each run overlaid;
    dotted lines where a stage began, shaded plateaus of the total loss when
    ``plateau_window`` is given."""
    histories = {run.label: run.history for run in runs}
    spans = None
    if plateau_window:
        spans = {run.label: find_plateaus(run.history["epoch"], run.history["loss"], plateau_window, min_drop)
                 for run in runs if "loss" in run.history}
    return visualize.plot_loss_comparison(histories, boundaries={run.label: run.boundaries for run in runs},
                                          spans=spans, log_scale=log_scale, cols=cols,
                                          title="Training losses: solid training, dashed validation; "
                                                "dotted: a new stage")


def plot_plateaus(runs, window=5, min_drop=0.02, key="loss", cell_inches=4.2):
    """Plateau finder: ``key`` relative to its first epoch for every run (comparable between runs
    of different scale), and its relative fall over ``window`` epochs against ``min_drop``."""
    fig, (left, right) = visualize.figure_grid(2, 2, cell_inches, title=f"{key}: progress and plateaus "
                                                                        f"(fall < {min_drop:.0%} over {window} epochs)")
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        epochs, values = run.history["epoch"], run.history[key]
        for column, style in ((key, "-"), (f"val_{key}", "--")):
            if column in run.history:
                series = run.history[column]
                left.plot(epochs, series / series[np.isfinite(series)][0], style, color=color, marker="o",
                          markersize=2.5, label=f"{run.label}{' validation' if style == '--' else ''}")
        for first, last in find_plateaus(epochs, values, window, min_drop):
            left.axvspan(first, last, color=color, alpha=0.15, linewidth=0)
        for epoch in run.boundaries:
            left.axvline(epoch, color=color, linestyle=":")
        if len(values) > window:
            fall = (values[:-window] - values[window:]) / np.abs(values[:-window])
            right.plot(epochs[window:], fall, color=color, marker="o", markersize=2.5, label=run.label)
    left.set_title(f"{key} / its first value (shaded: plateaus)", fontsize=9)
    right.axhline(min_drop, color="C3", linestyle="--", label=f"min_drop {min_drop:.0%}")
    right.set_title(f"relative fall over the previous {window} epochs", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig
