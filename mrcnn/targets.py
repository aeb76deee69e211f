"""Second-stage training targets: sample ROIs from the proposals and give each its targets.

Matterport's ``detection_targets_graph`` semantics, computed for the whole batch at once
(no per-image loop, so the batch size may be unknown):

- zero rows of the proposals and of the ground truth are padding and are ignored;
  ground truth with a negative class id is a crowd box;
- a proposal is positive if its IoU with some non-crowd ground-truth box is >= 0.5, and
  negative if it is < 0.5 with all of them and < 0.001 with every crowd box (a proposal
  on a crowd is neither);
- up to ``int(train_rois_per_image * roi_positive_ratio)`` positives are sampled at random,
  then ``int(positives / roi_positive_ratio) - positives`` negatives, so that positives make
  up ``roi_positive_ratio`` of the sampled ROIs. One departure from Matterport: an image
  without any (non-crowd) ground truth gets ``train_rois_per_image`` negatives, where
  Matterport's formula gives it none, so that empty images teach the classifier background;
- each positive is assigned the ground-truth box it overlaps most, and gets that box's
  class, its deltas (divided by ``bbox_std_dev``) and its mask cropped to the ROI.

With ``add_gt_as_proposals`` (config ADD_GT_AS_PROPOSALS; not in Matterport, standard in
Detectron and torchvision) the non-crowd ground-truth boxes join each image's proposals
before sampling. Every image with ground truth then has positives from the first step, which
matters most when training from scratch, while the RPN still proposes nothing useful.

Sampling draws one uniform key per proposal and takes the largest keys among the positives
(negatives): a uniform random subset in random order, like Matterport's shuffles, and
reproducible when the layer is given a seed.
"""
import keras
import tensorflow as tf

from mrcnn.boxes import box_refinement_graph, overlaps_graph
from mrcnn.crop import crop_and_resize

__all__ = ["detection_targets_graph", "DetectionTargetLayer", "PositiveCount", "max_positive_rois"]

_POSITIVE_IOU = 0.5
_CROWD_IOU = 0.001


def max_positive_rois(train_rois_per_image, roi_positive_ratio):
    """The most positive ROIs an image gets: they fill the first rows of its targets."""
    return min(int(train_rois_per_image), int(train_rois_per_image * roi_positive_ratio))


def _pad_if_maybe_empty(tensors, axes):
    """Append one zero entry to each tensor along its axis, unless that axis of the first is
    statically known to be non-empty.

    A zero entry is padding to every function here, so this changes no result; it only spares
    top_k, argmax and crop_and_resize from empty inputs (no GT boxes, no proposals). The first
    tensor decides for all, so that tensors that must line up stay the same length.
    """
    size = tensors[0].shape[axes[0]]
    if size is not None and size > 0:
        return tensors
    padded = []
    for x, axis in zip(tensors, axes):
        paddings = [[0, 0]] * x.shape.rank
        paddings[axis] = [0, 1]
        padded.append(tf.pad(x, paddings))
    return padded


def _random_subset(mask, keys, k):
    """Indices of the True entries of ``mask`` in random order, first; [batch, k].

    mask: bool [batch, N]; keys: float [batch, N] uniform in [0, 1). Entries after the
    number of True ones are indices of False entries and must be ignored by the caller.
    """
    return tf.math.top_k(tf.where(mask, keys, -1.0), k=k, sorted=True).indices


def _static_or_dynamic_min(value, tensor, axis):
    """min(value, tensor.shape[axis]) as a Python int when the shape is known, else a tensor."""
    size = tensor.shape[axis]
    if size is None:
        return tf.minimum(value, tf.shape(tensor)[axis])
    return min(value, size)


def detection_targets_graph(proposals, gt_class_ids, gt_boxes, gt_masks, random_keys,
                            train_rois_per_image, roi_positive_ratio, bbox_std_dev,
                            mask_shape, use_mini_mask, add_gt_as_proposals=False):
    """Sample ROIs and compute their class, box and mask targets, for a batch.

    proposals: [batch, N, (y1, x1, y2, x2)] normalised, zero-padded.
    gt_class_ids: int [batch, G], zero-padded; negative ids are crowd boxes.
    gt_boxes: [batch, G, (y1, x1, y2, x2)] normalised, zero-padded.
    gt_masks: bool (or 0/1) [batch, height, width, G]: full-size masks, or with
        ``use_mini_mask`` mini masks covering each GT box (as utils.minimize_mask makes them).
    random_keys: float [batch, N] uniform in [0, 1); the sample is a function of them.
    train_rois_per_image: T, ROIs per image (TRAIN_ROIS_PER_IMAGE).
    roi_positive_ratio: share of positives among the sampled ROIs (ROI_POSITIVE_RATIO).
    bbox_std_dev: [4] BBOX_STD_DEV the deltas are divided by.
    mask_shape: (height, width) of the mask targets (MASK_SHAPE).
    use_mini_mask: whether gt_masks are mini masks.
    add_gt_as_proposals: append the non-crowd GT boxes to the proposals (random_keys must
        then be [batch, N + G]).

    Returns: (rois, target_class_ids, target_bbox, target_mask), each image's rows being its
    positives, then its negatives, then zero padding:
        rois: float32 [batch, T, (y1, x1, y2, x2)] normalised.
        target_class_ids: int32 [batch, T]; 0 for negatives and padding.
        target_bbox: float32 [batch, T, (dy, dx, log(dh), log(dw))] divided by
            bbox_std_dev; 0 for negatives and padding.
        target_mask: float32 [batch, T, mask_height, mask_width] of 0/1; 0 for negatives
            and padding.
    """
    t = int(train_rois_per_image)
    max_positives = max_positive_rois(train_rois_per_image, roi_positive_ratio)
    if add_gt_as_proposals:
        # Crowd boxes and padding become zero rows: padding to everything below.
        gt_proposals = tf.where((tf.cast(gt_class_ids, tf.int32) > 0)[..., tf.newaxis],
                                tf.cast(gt_boxes, tf.float32), 0.0)
        proposals = tf.concat([tf.cast(proposals, tf.float32), gt_proposals], axis=1)  # [B, N + G, 4]

    proposals, random_keys = _pad_if_maybe_empty(
        [tf.cast(proposals, tf.float32), tf.cast(random_keys, tf.float32)], axes=[1, 1])  # [B, N, 4], [B, N]
    gt_boxes, gt_class_ids = _pad_if_maybe_empty(
        [tf.cast(gt_boxes, tf.float32), tf.cast(gt_class_ids, tf.int32)], axes=[1, 1])  # [B, G, 4], [B, G]
    # uint8: crop_and_resize reads it and returns float32, at a quarter of float32's memory.
    # The masks' own G is used to index them below, so they may be padded independently.
    (gt_masks,) = _pad_if_maybe_empty([tf.cast(gt_masks, tf.uint8)], axes=[3])  # [B, h, w, G]

    # Which rows are real: zero rows are padding.
    valid_proposal = tf.reduce_any(tf.not_equal(proposals, 0.0), axis=-1)  # [B, N]
    valid_gt = tf.reduce_any(tf.not_equal(gt_boxes, 0.0), axis=-1)  # [B, G]
    is_gt = valid_gt & (gt_class_ids > 0)
    is_crowd = valid_gt & (gt_class_ids < 0)

    overlaps = overlaps_graph(proposals, gt_boxes)  # [B, N, G]
    gt_overlaps = tf.where(is_gt[:, tf.newaxis, :], overlaps, -1.0)
    roi_iou_max = tf.reduce_max(gt_overlaps, axis=2)  # [B, N]
    roi_gt_assignment = tf.argmax(gt_overlaps, axis=2, output_type=tf.int32)  # [B, N]
    crowd_iou_max = tf.reduce_max(tf.where(is_crowd[:, tf.newaxis, :], overlaps, 0.0), axis=2)

    positive = valid_proposal & (roi_iou_max >= _POSITIVE_IOU)
    negative = valid_proposal & (roi_iou_max < _POSITIVE_IOU) & (crowd_iou_max < _CROWD_IOU)

    # How many of each to take, per image.
    positive_count = tf.minimum(tf.reduce_sum(tf.cast(positive, tf.int32), axis=1), max_positives)
    # float64 and a small margin, so that e.g. 66 / 0.33 gives 200 and not 199.99998.
    keep_ratio = tf.cast(tf.floor(tf.cast(positive_count, tf.float64) / roi_positive_ratio + 1e-6),
                         tf.int32) - positive_count
    has_gt = tf.reduce_any(is_gt, axis=1)
    negative_count = tf.where(has_gt, keep_ratio, t)
    negative_count = tf.minimum(negative_count, t - positive_count)
    negative_count = tf.minimum(negative_count, tf.reduce_sum(tf.cast(negative, tf.int32), axis=1))

    # At most T candidates of each kind, padded to exactly T columns.
    k_positive = _static_or_dynamic_min(max_positives, proposals, 1)
    k_negative = _static_or_dynamic_min(t, proposals, 1)
    positive_ix = tf.pad(_random_subset(positive, random_keys, k_positive), [[0, 0], [0, t - k_positive]])
    negative_ix = tf.pad(_random_subset(negative, random_keys, k_negative), [[0, 0], [0, t - k_negative]])

    # Slot s of an image holds positive s, or negative s - positive_count, or padding.
    slots = tf.range(t)[tf.newaxis, :]  # [1, T]
    is_positive = slots < positive_count[:, tf.newaxis]  # [B, T]
    is_sampled = slots < (positive_count + negative_count)[:, tf.newaxis]
    negative_slot = tf.clip_by_value(slots - positive_count[:, tf.newaxis], 0, t - 1)
    roi_ix = tf.where(is_positive, positive_ix, tf.gather(negative_ix, negative_slot, batch_dims=1))

    rois = tf.gather(proposals, roi_ix, batch_dims=1)  # [B, T, 4]
    rois = tf.where(is_sampled[..., tf.newaxis], rois, 0.0)
    gt_ix = tf.where(is_positive, tf.gather(roi_gt_assignment, roi_ix, batch_dims=1), 0)  # [B, T]
    target_class_ids = tf.where(is_positive, tf.gather(gt_class_ids, gt_ix, batch_dims=1), 0)

    # Boxes of rows that are not positive are replaced by a unit box before dividing by
    # their sizes, so that padding and negatives never produce inf or NaN.
    unit_box = tf.constant([0.0, 0.0, 1.0, 1.0])
    positive_4 = is_positive[..., tf.newaxis]
    roi_boxes = tf.where(positive_4, rois, unit_box)
    roi_gt_boxes = tf.where(positive_4, tf.gather(gt_boxes, gt_ix, batch_dims=1), unit_box)
    deltas = box_refinement_graph(roi_boxes, roi_gt_boxes) / tf.constant(bbox_std_dev, tf.float32)
    target_bbox = tf.where(positive_4, deltas, 0.0)

    if use_mini_mask:
        # Mini masks span their GT box: express the ROI in that box's frame.
        y1, x1, y2, x2 = tf.unstack(roi_boxes, axis=-1)
        gy1, gx1, gy2, gx2 = tf.unstack(roi_gt_boxes, axis=-1)
        gh, gw = gy2 - gy1, gx2 - gx1
        crop_boxes = tf.stack([(y1 - gy1) / gh, (x1 - gx1) / gw,
                               (y2 - gy1) / gh, (x2 - gx1) / gw], axis=-1)
    else:
        crop_boxes = roi_boxes
    batch = tf.shape(gt_masks)[0]
    num_gt = tf.shape(gt_masks)[3]
    masks = tf.transpose(gt_masks, [0, 3, 1, 2])  # [B, G, h, w]
    masks = tf.reshape(masks, [batch * num_gt, tf.shape(masks)[2], tf.shape(masks)[3], 1])
    box_indices = tf.reshape(tf.range(batch)[:, tf.newaxis] * num_gt + gt_ix, [-1])  # [B * T]
    # tf.image.crop_and_resize, or under XLA plain ops that give its values (mrcnn.crop).
    crops = crop_and_resize(masks, tf.reshape(crop_boxes, [-1, 4]), box_indices, mask_shape)  # [B * T, mh, mw, 1]
    crops = tf.reshape(tf.round(crops), [batch, t, mask_shape[0], mask_shape[1]])
    target_mask = tf.where(is_positive[..., tf.newaxis, tf.newaxis], crops, 0.0)

    return tuple(tf.stop_gradient(x) for x in (rois, target_class_ids, target_bbox, target_mask))


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(keras.layers.Layer):
    """Sample ROIs from the proposals and compute their training targets (see module doc).

    Call with ``[proposals, gt_class_ids, gt_boxes, gt_masks]``:
        proposals: [batch, N, 4] normalised, zero-padded (ProposalLayer's rpn_rois).
        gt_class_ids: int [batch, MAX_GT_INSTANCES], zero-padded, negative for crowds.
        gt_boxes: [batch, MAX_GT_INSTANCES, 4] normalised (norm_boxes_graph), zero-padded.
        gt_masks: bool [batch, height, width, MAX_GT_INSTANCES], mini or full-size masks.

    Returns: [rois float32 [batch, T, 4], target_class_ids int32 [batch, T],
    target_bbox float32 [batch, T, 4], target_mask float32 [batch, T, mask_h, mask_w]],
    T = train_rois_per_image, each zero-padded after the image's sampled ROIs. Outputs carry
    no gradient. ``seed`` makes the sampling reproducible (a new sample on every call; not the
    same one under XLA: see :meth:`random_keys`).
    ``add_gt_as_proposals``: see the module doc.
    """

    def __init__(self, train_rois_per_image, roi_positive_ratio, bbox_std_dev=(0.1, 0.1, 0.2, 0.2),
                 mask_shape=(28, 28), use_mini_mask=True, seed=None, add_gt_as_proposals=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.train_rois_per_image = int(train_rois_per_image)
        self.roi_positive_ratio = float(roi_positive_ratio)
        self.bbox_std_dev = [float(v) for v in bbox_std_dev]
        self.mask_shape = [int(v) for v in mask_shape]
        self.use_mini_mask = bool(use_mini_mask)
        self.seed = seed
        self.add_gt_as_proposals = bool(add_gt_as_proposals)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs
        rows = tf.shape(proposals)[1] + (tf.shape(gt_boxes)[1] if self.add_gt_as_proposals else 0)
        keys = self.random_keys(tf.stack([tf.shape(proposals)[0], rows]))
        return list(detection_targets_graph(
            proposals, gt_class_ids, gt_boxes, gt_masks, keys, self.train_rois_per_image,
            self.roi_positive_ratio, self.bbox_std_dev, self.mask_shape, self.use_mini_mask,
            self.add_gt_as_proposals))

    def random_keys(self, shape):
        """float32 uniform [0, 1) keys of the given shape [B, rows] from the layer's seed.

        For the same seed XLA draws other numbers than TensorFlow's graph (its stateless
        generators are not TensorFlow's kernels, even with the algorithm named), so a training
        step compiled with ``jit_compile`` samples other ROIs than one that is not.
        """
        return keras.random.uniform(shape, dtype="float32", seed=self.seed_generator)

    def get_config(self):
        config = super().get_config()
        config.update(train_rois_per_image=self.train_rois_per_image,
                      roi_positive_ratio=self.roi_positive_ratio, bbox_std_dev=self.bbox_std_dev,
                      mask_shape=self.mask_shape, use_mini_mask=self.use_mini_mask, seed=self.seed,
                      add_gt_as_proposals=self.add_gt_as_proposals)
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class PositiveCount(keras.layers.Layer):
    """target_class_ids int [B, T] -> int32 scalar: the most positive ROIs (class id > 0, the
    first rows) of any image of the batch, and at least 1. The mask head runs on that many
    rows only; the floor of 1 keeps a training-mode BatchNorm from taking the statistics of
    an empty batch (NaN) when no image has a positive."""

    def call(self, target_class_ids):
        per_image = tf.reduce_sum(tf.cast(target_class_ids > 0, tf.int32), axis=1)  # [B]
        return tf.reduce_max(tf.concat([per_image, [1]], axis=0))
