"""Graph-side box maths (TensorFlow ops): the one place the model decodes, clips and compares boxes.

Boxes are (y1, x1, y2, x2). Inside the graph they are normalised with Matterport's
convention (see :func:`norm_boxes_graph`), so that 0.0 and 1.0 are the centres of the first
and last pixels, which is how ``tf.image.crop_and_resize`` reads them. Deltas are
(dy, dx, log(dh), log(dw)). The numpy references are in :mod:`mrcnn.utils` (and
:mod:`mrcnn.boxcoords`); the tests check each function here against them.

Every function computes in float32 whatever its inputs' dtype (float16 under mixed
precision loses a quarter of a pixel on a 512-pixel image and overflows ``exp`` early);
the box normalisation can also compute in float64 (its ``dtype`` argument).
"""
import tensorflow as tf

from mrcnn.boxcoords import NORM_SHIFT

__all__ = [
    "apply_box_deltas_graph", "clip_boxes_graph", "box_refinement_graph", "overlaps_graph",
    "norm_boxes_graph", "denorm_boxes_graph", "trim_zeros_graph", "parse_image_meta_graph",
]

def _float32(x):
    return tf.cast(x, tf.float32)


def apply_box_deltas_graph(boxes, deltas):
    """Move and resize boxes by deltas; the inverse of :func:`box_refinement_graph`.

    boxes: [..., (y1, x1, y2, x2)].
    deltas: [..., (dy, dx, log(dh), log(dw))], same leading shape, already multiplied by
        the STD_DEV the network's outputs are divided by.

    Returns: float32 [..., (y1, x1, y2, x2)]. A zero box (padding) stays a zero-size box.
    """
    boxes = _float32(boxes)
    deltas = _float32(deltas)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height + deltas[..., 0] * height
    center_x = boxes[..., 1] + 0.5 * width + deltas[..., 1] * width
    height = height * tf.exp(deltas[..., 2])
    width = width * tf.exp(deltas[..., 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return tf.stack([y1, x1, y1 + height, x1 + width], axis=-1)


def clip_boxes_graph(boxes, window):
    """Clip boxes to a window.

    boxes: [..., (y1, x1, y2, x2)].
    window: [4] (y1, x1, y2, x2), or a shape that broadcasts against ``boxes``, e.g.
        [batch, 1, 4] for boxes [batch, N, 4].

    Returns: float32, the shape of ``boxes``. Boxes outside the window collapse onto its
    edge (zero height or width); they are not removed.
    """
    boxes = _float32(boxes)
    window = _float32(window)
    wy1, wx1, wy2, wx2 = (window[..., i] for i in range(4))
    y1 = tf.maximum(tf.minimum(boxes[..., 0], wy2), wy1)
    x1 = tf.maximum(tf.minimum(boxes[..., 1], wx2), wx1)
    y2 = tf.maximum(tf.minimum(boxes[..., 2], wy2), wy1)
    x2 = tf.maximum(tf.minimum(boxes[..., 3], wx2), wx1)
    return tf.stack([y1, x1, y2, x2], axis=-1)


def box_refinement_graph(box, gt_box):
    """Deltas that move and resize each box onto its ground-truth box.

    box, gt_box: [..., (y1, x1, y2, x2)], same shape, both of positive area: the log of a
        zero size is -inf, so callers pass only matched boxes (or substitute a unit box for
        rows they then discard).

    Returns: float32 [..., (dy, dx, log(dh), log(dw))], not divided by any STD_DEV.
    """
    box = _float32(box)
    gt_box = _float32(gt_box)
    height = box[..., 2] - box[..., 0]
    width = box[..., 3] - box[..., 1]
    center_y = box[..., 0] + 0.5 * height
    center_x = box[..., 1] + 0.5 * width
    gt_height = gt_box[..., 2] - gt_box[..., 0]
    gt_width = gt_box[..., 3] - gt_box[..., 1]
    gt_center_y = gt_box[..., 0] + 0.5 * gt_height
    gt_center_x = gt_box[..., 1] + 0.5 * gt_width
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = tf.math.log(gt_height / height)
    dw = tf.math.log(gt_width / width)
    return tf.stack([dy, dx, dh, dw], axis=-1)


def overlaps_graph(boxes1, boxes2):
    """IoU of every pair of boxes, optionally batched.

    boxes1: [..., N, (y1, x1, y2, x2)]; boxes2: [..., M, (y1, x1, y2, x2)], with equal
        (or broadcastable) leading batch dimensions.

    Returns: float32 [..., N, M]; 0 for pairs whose union is empty (two zero boxes).
    """
    b1 = _float32(boxes1)[..., :, tf.newaxis, :]  # [..., N, 1, 4]
    b2 = _float32(boxes2)[..., tf.newaxis, :, :]  # [..., 1, M, 4]
    height = tf.maximum(tf.minimum(b1[..., 2], b2[..., 2]) - tf.maximum(b1[..., 0], b2[..., 0]), 0.0)
    width = tf.maximum(tf.minimum(b1[..., 3], b2[..., 3]) - tf.maximum(b1[..., 1], b2[..., 1]), 0.0)
    intersection = height * width  # [..., N, M]
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    return tf.math.divide_no_nan(intersection, area1 + area2 - intersection)


def _norm_scale(shape, dtype):
    """[..., (h, w, ...)] image shape -> [..., 4] divisors (h - 1, w - 1, h - 1, w - 1)."""
    shape = tf.cast(shape, dtype)
    h, w = shape[..., 0] - 1.0, shape[..., 1] - 1.0
    return tf.stack([h, w, h, w], axis=-1)


def norm_boxes_graph(boxes, shape, dtype=tf.float32):
    """Pixel boxes -> normalised boxes (Matterport's shift-by-one convention).

    boxes: [..., (y1, x1, y2, x2)] in pixels, y2/x2 exclusive.
    shape: (height, width[, channels]) of the image, or [..., 2 or 3] per-image shapes
        that broadcast against ``boxes``' leading dimensions (e.g. [batch, 3] for [batch, 4]).
    dtype: what to compute in; tf.float64 gives numpy's :func:`mrcnn.boxcoords.norm_boxes`
        bit for bit once cast to float32 (the export's pre- and post-processing).

    Returns: ``dtype`` [..., 4], (boxes - [0, 0, 1, 1]) / [h - 1, w - 1, h - 1, w - 1].
    """
    return (tf.cast(boxes, dtype) - tf.constant(NORM_SHIFT, dtype)) / _norm_scale(shape, dtype)


def denorm_boxes_graph(boxes, shape, dtype=tf.float32):
    """Normalised boxes -> pixel boxes; the inverse of :func:`norm_boxes_graph`.

    boxes: [..., (y1, x1, y2, x2)] normalised; shape, dtype: as in :func:`norm_boxes_graph`
    (tf.float64 rounds as numpy's :func:`mrcnn.boxcoords.denorm_boxes`).

    Returns: int32 [..., (y1, x1, y2, x2)] in pixels (rounded), y2/x2 exclusive.
    """
    pixels = tf.cast(boxes, dtype) * _norm_scale(shape, dtype) + tf.constant(NORM_SHIFT, dtype)
    return tf.cast(tf.round(pixels), tf.int32)


def trim_zeros_graph(boxes, name="trim_zeros"):
    """Drop the all-zero rows that pad a box tensor.

    boxes: [N, 4] (or [N, columns]).

    Returns: (boxes [N', 4] without the zero rows, non_zeros bool [N] marking kept rows).
    """
    non_zeros = tf.reduce_any(tf.not_equal(boxes, 0), axis=1)
    return tf.boolean_mask(boxes, non_zeros, name=name), non_zeros


def parse_image_meta_graph(meta):
    """Split image meta vectors into their parts (the layout of data.compose_image_meta).

    meta: [..., 12 + NUM_CLASSES]: image_id (1), original_image_shape (3), image_shape (3),
        window (4, pixels of the molded image, y2/x2 exclusive), scale (1),
        active_class_ids (NUM_CLASSES).

    Returns: dict of float32 tensors: image_id [...], original_image_shape [..., 3],
    image_shape [..., 3], window [..., 4], scale [...], active_class_ids [..., NUM_CLASSES].
    """
    meta = _float32(meta)
    return {
        "image_id": meta[..., 0],
        "original_image_shape": meta[..., 1:4],
        "image_shape": meta[..., 4:7],
        "window": meta[..., 7:11],
        "scale": meta[..., 11],
        "active_class_ids": meta[..., 12:],
    }
