"""The training input pipeline: ground truth for one image, RPN targets, and batched tf.data.

Data flows  Dataset.load_image / load_mask -> :func:`load_image_gt` (resize, augment, boxes
from masks, mini-masks) -> :func:`build_rpn_targets` -> :func:`build_sample` (fixed-size,
zero-padded arrays) -> :func:`build_dataset` (parallel, seeded, batched ``tf.data.Dataset``).

Boxes are (y1, x1, y2, x2) in pixels of the resized image, y2/x2 exclusive.

Determinism: every random choice for a sample (crop position, augmentation, RPN anchor
sampling, which ground-truth instances to keep beyond MAX_GT_INSTANCES) comes from that
sample's own ``np.random.Generator``, seeded with ``SeedSequence([seed, 1, epoch, position])``
where ``position`` is the sample's place in the epoch. Each epoch's order comes from
``SeedSequence([seed, 0, epoch])``. Results therefore do not depend on how many samples are
prepared in parallel or in what order threads finish: two pipelines with the same seed yield
identical batches.

TensorFlow is imported only by :func:`build_dataset`, so the numpy functions stay cheap to use.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from mrcnn import utils
from mrcnn.anchors import config_anchors
from mrcnn.augment import make_augmenter
from mrcnn.dataset import Dataset

__all__ = [
    "Dataset",
    "compose_image_meta",
    "parse_image_meta",
    "mold_image",
    "MoldedImage",
    "raw_image",
    "unmold_image",
    "load_image_gt",
    "build_rpn_targets",
    "pipeline_anchors",
    "build_sample",
    "build_dataset",
    "SampleError",
    "INPUT_NAMES",
]

logger = logging.getLogger(__name__)

# Matterport's model input names, in its order.
INPUT_NAMES = (
    "input_image",
    "input_image_meta",
    "input_rpn_match",
    "input_rpn_bbox",
    "input_gt_class_ids",
    "input_gt_boxes",
    "input_gt_masks",
)

# RPN anchor labelling thresholds (Matterport / the Faster R-CNN paper).
RPN_POSITIVE_IOU = 0.7
RPN_NEGATIVE_IOU = 0.3
# Anchors overlapping a crowd box by at least this IoU are neither positive nor negative.
RPN_CROWD_IOU = 0.001


class SampleError(RuntimeError):
    """A sample could not be prepared; the message names the image id, its reference and the cause."""


############################################################
#  Image meta and molding
############################################################

def compose_image_meta(image_id, original_image_shape, image_shape, window, scale, active_class_ids):
    """Pack image attributes into one float vector (Matterport's layout).

    image_id: int, the image's internal id.
    original_image_shape: [H, W, C] before resizing or padding.
    image_shape: [H, W, C] after resizing and padding.
    window: (y1, x1, y2, x2) in pixels: the real image inside the padded one (y2/x2 exclusive).
    scale: the resize factor applied to the original image.
    active_class_ids: [NUM_CLASSES] 1 for the classes of the image's source, else 0.

    Returns: float64 [12 + NUM_CLASSES]: id (1), original shape (3), shape (3), window (4),
    scale (1), active class ids (NUM_CLASSES).
    """
    return np.array(
        [image_id]
        + list(original_image_shape)
        + list(image_shape)
        + list(window)
        + [scale]
        + list(active_class_ids),
        dtype=np.float64,
    )


def parse_image_meta(meta):
    """Unpack image meta vectors made by :func:`compose_image_meta`.

    meta: [META] or [batch, META].

    Returns: dict with image_id int32 [batch], original_image_shape int32 [batch, 3],
    image_shape int32 [batch, 3], window int32 [batch, 4], scale float32 [batch],
    active_class_ids int32 [batch, NUM_CLASSES]; without the batch axis for a 1-D meta.
    """
    meta = np.asarray(meta)
    single = meta.ndim == 1
    meta = np.atleast_2d(meta)
    parsed = {
        "image_id": meta[:, 0].astype(np.int32),
        "original_image_shape": meta[:, 1:4].astype(np.int32),
        "image_shape": meta[:, 4:7].astype(np.int32),
        "window": meta[:, 7:11].astype(np.int32),
        "scale": meta[:, 11].astype(np.float32),
        "active_class_ids": meta[:, 12:].astype(np.int32),
    }
    if single:
        parsed = {key: value[0] for key, value in parsed.items()}
    return parsed


def mold_image(images, config):
    """uint8 RGB image(s) -> float32 model input: subtract config.MEAN_PIXEL."""
    return np.subtract(np.asarray(images), np.asarray(config.MEAN_PIXEL, dtype=np.float32), dtype=np.float32)


@dataclass(frozen=True)
class MoldedImage:
    """An image molded ahead of ``MaskRCNN.detect`` (``MaskRCNN.mold``): detect takes it in place
    of the image and skips molding it, so that a thread reading the next images can mold them
    while the model runs. Molded for one config: give it to a model of that config only.

    image: the image as given; molded float32 [h, w, C], meta [META], window [4]: its row of
    :func:`mrcnn.transform.mold_inputs`.
    """

    image: np.ndarray
    molded: np.ndarray
    meta: np.ndarray
    window: np.ndarray


def raw_image(item) -> np.ndarray:
    """The image of ``item``: a :class:`MoldedImage`'s, or ``item`` itself as an array."""
    return item.image if isinstance(item, MoldedImage) else np.asarray(item)


def unmold_image(normalized_images, config):
    """Inverse of :func:`mold_image`: add config.MEAN_PIXEL back, rounded and clipped to uint8."""
    images = np.asarray(normalized_images, dtype=np.float32) + np.asarray(config.MEAN_PIXEL, dtype=np.float32)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


############################################################
#  Ground truth of one image
############################################################

def load_image_gt(dataset, config, image_id, augmentation=None, rng=None):
    """Load an image and its instances, resized per config, augmented, with boxes from masks.

    dataset: a prepared :class:`mrcnn.dataset.Dataset`.
    image_id: internal image id.
    augmentation: anything :func:`mrcnn.augment.make_augmenter` accepts, or None. It is applied
        after resizing, to the image and masks together, and must keep the image size.
    rng: ``np.random.Generator`` for the crop position ("crop" mode) and the augmentation;
        None uses a fresh unseeded one.

    Masks left empty by resizing, cropping or augmentation are dropped with their class ids.

    Returns: (image, image_meta, class_ids, bbox, mask)
        image: uint8 [H, W, C] resized (and padded or cropped) per config.
        image_meta: float64 [12 + dataset.num_classes], see :func:`compose_image_meta`.
        class_ids: int32 [N] (negative for crowd instances, as in COCO).
        bbox: int32 [N, (y1, x1, y2, x2)] from the masks, in pixels of ``image``.
        mask: bool [H, W, N], or [MINI_MASK_SHAPE..., N] cut to each box when USE_MINI_MASK.
    """
    rng = np.random.default_rng() if rng is None else rng
    image = np.asarray(dataset.load_image(image_id))
    mask, class_ids = dataset.load_mask(image_id)
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids, dtype=np.int32).reshape(-1)
    if image.ndim != 3:
        raise ValueError(f"load_image returned shape {image.shape}; expected [H, W, C]")
    if mask.ndim != 3:
        raise ValueError(f"load_mask returned masks of shape {mask.shape}; expected [H, W, N]")
    if mask.shape[-1] == 0:
        # The base class's load_mask returns [0, 0, 0]; give it the image's size.
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"load_mask returned masks of size {mask.shape[:2]} for an image of size {image.shape[:2]}")
    if mask.shape[-1] != class_ids.shape[0]:
        raise ValueError(f"load_mask returned {mask.shape[-1]} masks but {class_ids.shape[0]} class ids")

    original_shape = image.shape
    image, window, scale, padding, crop = utils.resize_image(
        image,
        min_dim=config.IMAGE_MIN_DIM,
        min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM,
        mode=config.IMAGE_RESIZE_MODE,
        rng=rng,
    )
    mask = utils.resize_mask(mask, scale, padding, crop)

    augmenter = make_augmenter(augmentation)
    if augmenter is not None:
        shape_before, count_before = image.shape, mask.shape[-1]
        image, mask = augmenter(image, mask, rng)
        image, mask = np.asarray(image), np.asarray(mask).astype(bool, copy=False)
        if image.shape != shape_before or mask.shape != shape_before[:2] + (count_before,):
            raise ValueError(
                f"augmentation changed the image from {shape_before} to {image.shape} (masks: "
                f"{shape_before[:2] + (count_before,)} to {mask.shape}); augmentations must keep the size "
                "and the number of masks (for non-square images use default_augmentation(square=False))"
            )

    # extract_bboxes gives empty masks the box (0, 0, 0, 0); cheaper than mask.any over [H, W].
    bbox = utils.extract_bboxes(mask)
    keep = np.flatnonzero(bbox[:, 2] > bbox[:, 0])
    if keep.size < bbox.shape[0]:
        mask, class_ids, bbox = mask[:, :, keep], class_ids[keep], bbox[keep]

    # Classes of other sources are inactive, so the classifier is not penalised for them.
    active_class_ids = np.zeros([dataset.num_classes], dtype=np.int32)
    active_class_ids[dataset.source_class_ids[dataset.image_info[image_id]["source"]]] = 1

    if config.USE_MINI_MASK:
        mask = utils.minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)

    image_meta = compose_image_meta(image_id, original_shape, image.shape, window, scale, active_class_ids)
    return image, image_meta, class_ids, bbox, mask


############################################################
#  RPN targets
############################################################

def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config, rng=None):
    """Label anchors positive / negative / neutral and encode the positives' boxes.

    image_shape: [H, W, C] of the input image (kept for Matterport's signature).
    anchors: [A, (y1, x1, y2, x2)] in pixels (``get_anchors(..., normalized=False)``).
    gt_class_ids: [G] int; negative ids are crowd boxes.
    gt_boxes: [G, (y1, x1, y2, x2)] in pixels.
    rng: ``np.random.Generator`` for subsampling; None uses a fresh unseeded one.

    Rules (Matterport's):
      1. An anchor whose best IoU with a (non-crowd) GT box is < 0.3 is negative, unless it
         overlaps a crowd box with IoU >= 0.001 (then it is neutral).
      2. For each GT box, every anchor tied at that box's highest IoU is positive, whatever the
         IoU, so small boxes get an anchor (a box that overlaps no anchor at all gets none).
      3. An anchor with IoU >= 0.7 with some GT box is positive.
      4. At most half of RPN_TRAIN_ANCHORS_PER_IMAGE are positive and at most
         RPN_TRAIN_ANCHORS_PER_IMAGE are non-neutral: the excess, chosen with ``rng``,
         becomes neutral.
    A positive anchor regresses to the GT box it overlaps most.

    Returns:
        rpn_match: int32 [A]: 1 positive, -1 negative, 0 neutral.
        rpn_bbox: float32 [RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))], the
            positive anchors' deltas divided by RPN_BBOX_STD_DEV, in the order the positive
            anchors appear in ``anchors``, zero-padded.
    """
    rng = np.random.default_rng() if rng is None else rng
    anchors = np.asarray(anchors)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
    num_anchors = anchors.shape[0]
    samples = config.RPN_TRAIN_ANCHORS_PER_IMAGE
    rpn_match = np.zeros([num_anchors], dtype=np.int32)
    rpn_bbox = np.zeros([samples, 4], dtype=np.float32)

    crowd = gt_class_ids < 0
    columns = _box_columns(anchors)
    if np.any(crowd):
        no_crowd = _match_anchors(columns, gt_boxes[crowd])[0] < RPN_CROWD_IOU
        gt_boxes = gt_boxes[~crowd]
    else:
        no_crowd = np.ones([num_anchors], dtype=bool)

    if gt_boxes.shape[0] == 0:
        rpn_match[no_crowd] = -1
    else:
        best_iou, best_gt, gt_best_anchor = _match_anchors(columns, gt_boxes)
        rpn_match[(best_iou < RPN_NEGATIVE_IOU) & no_crowd] = -1
        rpn_match[gt_best_anchor] = 1
        rpn_match[best_iou >= RPN_POSITIVE_IOU] = 1

    positives = np.flatnonzero(rpn_match == 1)
    max_positives = samples // 2
    if positives.size > max_positives:
        rpn_match[positives] = 0
        positives = np.sort(rng.choice(positives, max_positives, replace=False))
        rpn_match[positives] = 1
    negatives = np.flatnonzero(rpn_match == -1)
    max_negatives = samples - positives.size
    if negatives.size > max_negatives:
        rpn_match[negatives] = 0
        rpn_match[rng.choice(negatives, max_negatives, replace=False)] = -1

    if positives.size:
        deltas = utils.box_refinement(anchors[positives], gt_boxes[best_gt[positives]])
        rpn_bbox[: positives.size] = deltas / np.asarray(config.RPN_BBOX_STD_DEV, dtype=np.float32)
    return rpn_match, rpn_bbox


def _box_columns(boxes):
    """[N, 4] boxes -> contiguous float32 columns y1, x1, y2, x2 and the areas, each [N]."""
    y1, x1, y2, x2 = (np.ascontiguousarray(c, dtype=np.float32) for c in np.asarray(boxes).T)
    return y1, x1, y2, x2, (y2 - y1) * (x2 - x1)


def _match_anchors(anchor_columns, gt_boxes):
    """Match anchors to boxes by IoU, one box at a time.

    The same IoU as ``utils.compute_overlaps`` (in float32), but without materialising the
    [A, G] matrix: with ~65k anchors that matrix and its float64 temporaries cost several times
    more than these passes over contiguous [A] columns.

    anchor_columns: ``_box_columns(anchors)``.
    gt_boxes: [G, (y1, x1, y2, x2)], G >= 1, positive areas.

    Returns:
        best_iou: float32 [A], each anchor's highest IoU over the boxes.
        best_gt: int64 [A], the box giving it (the first one on ties, like argmax).
        gt_best_anchor: bool [A], True for every anchor tied at some box's highest IoU, for
            boxes whose highest IoU is > 0.
    """
    ay1, ax1, ay2, ax2, anchor_area = anchor_columns
    best_iou = np.zeros_like(anchor_area)
    best_gt = np.zeros(anchor_area.shape, dtype=np.int64)
    gt_best_anchor = np.zeros(anchor_area.shape, dtype=bool)
    height = np.empty_like(anchor_area)
    width = np.empty_like(anchor_area)
    for g, (gy1, gx1, gy2, gx2) in enumerate(np.asarray(gt_boxes, dtype=np.float32)):
        np.subtract(np.minimum(ay2, gy2), np.maximum(ay1, gy1), out=height)
        np.subtract(np.minimum(ax2, gx2), np.maximum(ax1, gx1), out=width)
        np.maximum(height, 0, out=height)
        np.maximum(width, 0, out=width)
        intersection = np.multiply(height, width, out=height)
        union = anchor_area + np.float32((gy2 - gy1) * (gx2 - gx1)) - intersection
        iou = np.divide(intersection, union, out=width)
        better = iou > best_iou
        best_iou[better] = iou[better]
        best_gt[better] = g
        top = iou.max()
        if top > 0:
            gt_best_anchor |= iou == top
    return best_iou, best_gt, gt_best_anchor


############################################################
#  One fixed-size training sample
############################################################

def pipeline_anchors(config):
    """The anchors the targets are built on: float32 [A, 4] pixels of config.IMAGE_SHAPE."""
    return config_anchors(config, config.IMAGE_SHAPE, normalized=False)


def build_sample(dataset, config, image_id, anchors, augmentation=None, rng=None, on_truncate=None):
    """Everything the model trains on for one image, as fixed-size numpy arrays.

    anchors: [A, 4] pixel anchors, e.g. :func:`pipeline_anchors` (computed once per pipeline).
    on_truncate: called as ``on_truncate(image_id, count)`` when the image has more than
        MAX_GT_INSTANCES instances; a random subset (from ``rng``) is kept. RPN targets use all
        instances, as Matterport's generator does.

    Returns None when the image has no non-crowd instance left (Matterport skips those), else a
    dict keyed by :data:`INPUT_NAMES` without the batch axis: input_image uint8 [H, W, C] (not yet
    molded), input_image_meta float32 [META], input_rpn_match int32 [A, 1], input_rpn_bbox
    float32 [RPN_TRAIN_ANCHORS_PER_IMAGE, 4], input_gt_class_ids int32 [MAX_GT_INSTANCES],
    input_gt_boxes float32 [MAX_GT_INSTANCES, 4], input_gt_masks bool [MH, MW, MAX_GT_INSTANCES],
    all zero-padded.
    """
    rng = np.random.default_rng() if rng is None else rng
    image, image_meta, class_ids, boxes, masks = load_image_gt(dataset, config, image_id, augmentation, rng)
    expected = tuple(int(v) for v in config.IMAGE_SHAPE)
    if image.shape != expected:
        raise ValueError(
            f"the prepared image has shape {image.shape} but config.IMAGE_SHAPE is {list(expected)}; batches "
            f"need one shape (IMAGE_RESIZE_MODE={config.IMAGE_RESIZE_MODE!r}: use 'square' or 'crop' for "
            "images of different sizes)"
        )
    if not np.any(class_ids > 0):
        return None

    rpn_match, rpn_bbox = build_rpn_targets(image.shape, anchors, class_ids, boxes, config, rng)

    max_instances = config.MAX_GT_INSTANCES
    if class_ids.shape[0] > max_instances:
        if on_truncate is not None:
            on_truncate(image_id, class_ids.shape[0])
        keep = np.sort(rng.choice(class_ids.shape[0], max_instances, replace=False))
        class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[:, :, keep]

    count = class_ids.shape[0]
    gt_class_ids = np.zeros([max_instances], dtype=np.int32)
    gt_boxes = np.zeros([max_instances, 4], dtype=np.float32)
    gt_masks = np.zeros(masks.shape[:2] + (max_instances,), dtype=bool)
    gt_class_ids[:count] = class_ids
    gt_boxes[:count] = boxes
    gt_masks[:, :, :count] = masks
    return {
        "input_image": image,
        "input_image_meta": image_meta.astype(np.float32),
        "input_rpn_match": rpn_match[:, np.newaxis],
        "input_rpn_bbox": rpn_bbox,
        "input_gt_class_ids": gt_class_ids,
        "input_gt_boxes": gt_boxes,
        "input_gt_masks": gt_masks,
    }


def _sample_shapes(config, num_anchors):
    """name -> (numpy dtype, shape without batch) of what :func:`build_sample` returns."""
    height, width, channels = (int(v) for v in config.IMAGE_SHAPE)
    mask_shape = tuple(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK else (height, width)
    instances = config.MAX_GT_INSTANCES
    return {
        "input_image": (np.uint8, (height, width, channels)),
        "input_image_meta": (np.float32, (config.IMAGE_META_SIZE,)),
        "input_rpn_match": (np.int32, (num_anchors, 1)),
        "input_rpn_bbox": (np.float32, (config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4)),
        "input_gt_class_ids": (np.int32, (instances,)),
        "input_gt_boxes": (np.float32, (instances, 4)),
        "input_gt_masks": (bool, mask_shape + (instances,)),
    }


def _describe(dataset, image_id):
    try:
        reference = dataset.image_reference(image_id)
    except Exception as err:  # the message must still name the image if image_reference is broken
        reference = f"image_reference failed: {type(err).__name__}: {err}"
    return f"image_id {image_id} ({reference or 'no reference'})"


class _SampleSource:
    """The numpy side of :func:`build_dataset`: epoch orders and one sample per call.

    Called from tf.data's worker threads through ``tf.numpy_function``; the only shared mutable
    state (failure counts, the warn-once flag) is guarded by a lock.
    """

    def __init__(self, dataset, config, augmentation, seed, shuffle, on_error, max_skip_fraction):
        self.dataset = dataset
        self.config = config
        self.augmenter = make_augmenter(augmentation)
        self.seed = seed
        self.shuffle = shuffle
        self.on_error = on_error
        self.image_ids = np.asarray(dataset.image_ids, dtype=np.int64)
        self.anchors = pipeline_anchors(config)
        self.shapes = _sample_shapes(config, self.anchors.shape[0])
        self.max_failures = max(1, int(max_skip_fraction * len(self.image_ids)))
        self._lock = threading.Lock()
        self._runs = 0
        self._epochs = {}  # (run, epoch) -> [attempted, failed, yielded]
        self._warned_truncate = False

    def new_run(self):
        """A fresh id for each iterator over the pipeline, so that failure counts are per iteration."""
        with self._lock:
            self._runs += 1
            return np.int64(self._runs)

    def epoch_order(self, epoch):
        """int64 [num_images] image ids in the order of epoch ``epoch``."""
        if not self.shuffle:
            return self.image_ids
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0, int(epoch)]))
        return rng.permutation(self.image_ids)

    def _warn_truncate(self, image_id, count):
        with self._lock:
            if self._warned_truncate:
                return
            self._warned_truncate = True
        logger.warning(
            "%s has %d instances, more than MAX_GT_INSTANCES=%d: a random subset is kept (warned once)",
            _describe(self.dataset, image_id), count, self.config.MAX_GT_INSTANCES,
        )

    def _placeholder(self):
        return {name: np.zeros(shape, dtype) for name, (dtype, shape) in self.shapes.items()}

    def __call__(self, run, epoch, position, image_id):
        """One sample as a tuple in INPUT_NAMES order, plus a bool "use it" flag."""
        run, epoch, position, image_id = int(run), int(epoch), int(position), int(image_id)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, epoch, position]))
        failure = None
        try:
            sample = build_sample(
                self.dataset, self.config, image_id, self.anchors, self.augmenter, rng, self._warn_truncate
            )
        except Exception as err:  # on_error decides: re-raised with the image named, or logged and skipped
            failure = f"input pipeline: {_describe(self.dataset, image_id)} failed: {type(err).__name__}: {err}"
            if self.on_error == "raise":
                raise SampleError(failure) from err
            logger.warning("%s (skipped, on_error='skip')", failure)
            sample = None
        self._count(run, epoch, failure, sample is not None)
        valid = sample is not None
        if not valid:
            sample = self._placeholder()
        return tuple(sample[name] for name in INPUT_NAMES) + (np.array(valid),)

    def _count(self, run, epoch, failure, yielded):
        with self._lock:
            counts = self._epochs.setdefault((run, epoch), [0, 0, 0])
            counts[0] += 1
            counts[1] += failure is not None
            counts[2] += yielded
            attempted, failed, produced = counts
            if attempted == len(self.image_ids):
                del self._epochs[(run, epoch)]
        if failed > self.max_failures:
            raise SampleError(
                f"input pipeline gave up: {failed} image{'' if failed == 1 else 's'} of epoch {epoch} failed (on_error='skip' allows "
                f"{self.max_failures} of {len(self.image_ids)} per epoch, max_skip_fraction); last: {failure}"
            )
        if attempted == len(self.image_ids) and produced == 0:
            raise SampleError(
                f"input pipeline: no image of epoch {epoch} gave a training sample ({failed} failed, "
                f"{attempted - failed} had no instances of a positive class)"
            )


############################################################
#  tf.data pipeline
############################################################

def build_dataset(
    dataset,
    config,
    shuffle=True,
    augmentation=None,
    seed=0,
    batch_size=None,
    on_error="raise",
    num_parallel_calls=None,
    repeat=True,
    max_skip_fraction=0.1,
):
    """A batched, parallel, seeded ``tf.data.Dataset`` of training inputs.

    dataset: a prepared :class:`mrcnn.dataset.Dataset` whose num_classes equals config.NUM_CLASSES.
    shuffle: a new seeded order every epoch; otherwise image_ids order.
    augmentation: anything :func:`mrcnn.augment.make_augmenter` accepts, or None.
    seed: int >= 0; the same seed gives the same batches (see the module docstring). None draws one.
    batch_size: defaults to config.BATCH_SIZE. Incomplete final batches are dropped, so every
        batch has the fixed shapes below.
    on_error: "raise" (default): a sample that fails stops iteration with an error naming the
        image id, ``dataset.image_reference(id)`` and the cause. "skip": that message is logged as
        a warning and the sample skipped; more than ``max_skip_fraction`` of one epoch's images
        failing (at least one failure is always allowed) stops iteration with an error.
    num_parallel_calls: samples prepared at once; defaults to tf.data.AUTOTUNE. The numpy/OpenCV
        work runs in ``tf.numpy_function`` on tf.data's threads; results do not depend on it.
    repeat: True (for training): endless epochs, each reshuffled; an epoch here is one pass over
        the images, independent of Keras' steps_per_epoch. False: one epoch; every new iterator
        starts again from epoch 0 (same order, same augmentation).

    Images without any instance of a positive class are skipped, as in Matterport; an epoch in
    which no image gives a sample is an error. Failures surface from the iterator as TensorFlow
    errors whose message contains the SampleError text.

    Yields dicts (Matterport's input names), B = batch size, A = number of anchors:
        input_image        float32 [B, H, W, C], molded (MEAN_PIXEL subtracted)
        input_image_meta   float32 [B, 12 + NUM_CLASSES]
        input_rpn_match    int32   [B, A, 1]  1 / -1 / 0
        input_rpn_bbox     float32 [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4], zero-padded
        input_gt_class_ids int32   [B, MAX_GT_INSTANCES], zero-padded
        input_gt_boxes     float32 [B, MAX_GT_INSTANCES, 4] pixels, zero-padded
        input_gt_masks     bool    [B, MH, MW, MAX_GT_INSTANCES]: MINI_MASK_SHAPE or the image size
    """
    import tensorflow as tf

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if dataset.num_classes != config.NUM_CLASSES:
        raise ValueError(
            f"the dataset has {dataset.num_classes} classes (background included) but config.NUM_CLASSES is "
            f"{config.NUM_CLASSES}"
        )
    if len(dataset.image_ids) == 0:
        raise ValueError("the dataset has no images")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**63)
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed}")
    batch_size = config.BATCH_SIZE if batch_size is None else int(batch_size)
    if num_parallel_calls is None:
        num_parallel_calls = tf.data.AUTOTUNE

    source = _SampleSource(dataset, config, augmentation, int(seed), shuffle, on_error, max_skip_fraction)
    num_images = len(source.image_ids)
    names = INPUT_NAMES
    dtypes = [tf.as_dtype(source.shapes[name][0]) for name in names]
    mean_pixel = tf.constant(np.asarray(config.MEAN_PIXEL, dtype=np.float32))

    def start_run(_):
        return tf.numpy_function(source.new_run, [], tf.int64, stateful=True)

    def run_epochs(run):
        epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
        return epochs.flat_map(lambda epoch: epoch_samples(run, epoch))

    def epoch_samples(run, epoch):
        order = tf.numpy_function(source.epoch_order, [epoch], tf.int64, stateful=False)
        order = tf.ensure_shape(order, [num_images])
        positions = tf.range(num_images, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices(
            (tf.fill([num_images], run), tf.fill([num_images], epoch), positions, order)
        )

    def load(run, epoch, position, image_id):
        outputs = tf.numpy_function(source, [run, epoch, position, image_id], dtypes + [tf.bool], stateful=True)
        sample = {}
        for name, tensor in zip(names, outputs[:-1]):
            sample[name] = tf.ensure_shape(tensor, source.shapes[name][1])
        sample["input_image"] = tf.cast(sample["input_image"], tf.float32) - mean_pixel
        return sample, tf.ensure_shape(outputs[-1], [])

    def is_valid(sample, valid):
        return valid

    def drop_flag(sample, valid):
        return sample

    # Each iterator gets its own run id (counted when iteration starts), then its epochs.
    ds = tf.data.Dataset.range(1).map(start_run).flat_map(run_epochs)
    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.filter(is_valid).map(drop_flag)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)
