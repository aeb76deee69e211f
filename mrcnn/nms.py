"""Batched greedy non-max suppression built from plain tensor ops, so that XLA compiles it.

``tf.image.combined_non_max_suppression`` (the CombinedNonMaxSuppression op) has no XLA
kernel and no OpenVINO conversion rule. :func:`batched_nms` computes the same selection
(greedy NMS: a box is dropped when its IoU with a higher-scoring kept box of the same class
is above the threshold; IoU of a box of no area is 0) with fixed shapes:

- the boxes are sorted by score once (``top_k``);
- they are taken in tiles of ``tile_size``; a tile is first suppressed by the boxes already
  kept (a [tile, max_output] IoU matrix against a fixed-size buffer of kept boxes), then by
  its own higher-scoring boxes: greedy NMS inside a tile is the unique fixed point of
  ``keep[i] = candidate[i] and no kept j < i overlaps i``, reached by iterating that rule
  (at most ``tile_size`` times, in practice a handful);
- the loop over tiles stops once every image has ``max_output_size`` boxes.

Ties in score may be ordered differently from the op (neither promises an order).

:func:`combined_nms` is what the proposal and detection layers call: the op itself in
TensorFlow's graph and eagerly, where it is 4-5 times as fast on a CPU as these plain ops
(``benchmarks/bench_nms.py``), and :func:`batched_nms_gather` while XLA compiles the graph or
inside :func:`plain_ops` (an export meant for other runtimes), as ``mrcnn.crop`` does for ROIAlign.
"""
import contextlib
import threading

import tensorflow as tf

__all__ = ["batched_nms", "batched_nms_gather", "combined_nms", "plain_ops", "IMPLEMENTATIONS"]

IMPLEMENTATIONS = ("auto", "op", "gather")
_PLAIN = threading.local()


@contextlib.contextmanager
def plain_ops():
    """While tracing within, :func:`combined_nms` (``implementation="auto"``) takes the plain-op
    NMS: a graph traced here holds no CombinedNonMaxSuppression, which OpenVINO cannot convert
    and XLA cannot compile (``mrcnn.export`` traces the SavedModel so)."""
    previous = getattr(_PLAIN, "on", False)
    _PLAIN.on = True
    try:
        yield
    finally:
        _PLAIN.on = previous


def _take(x, indices):
    """x [B, N, ...], indices [B, K] -> [B, K, ...]: ``tf.gather(x, indices, batch_dims=1)``
    as a gather from the flattened batch (OpenVINO 2026.4 crashes at run time on the
    batch_dims gather of boxes)."""
    shape = tf.shape(x)
    flat = tf.reshape(x, tf.concat([[-1], shape[2:]], axis=0))
    return tf.gather(flat, indices + tf.range(shape[0])[:, tf.newaxis] * shape[1])


def _iou_above(boxes_a, boxes_b, iou_threshold):
    """[B, n, 4] x [B, m, 4] -> bool [B, n, m]: IoU > threshold, 0 for a box of no area."""
    ay1, ax1, ay2, ax2 = tf.unstack(boxes_a[:, :, tf.newaxis, :], axis=-1)
    by1, bx1, by2, bx2 = tf.unstack(boxes_b[:, tf.newaxis, :, :], axis=-1)
    area_a = (ay2 - ay1) * (ax2 - ax1)
    area_b = (by2 - by1) * (bx2 - bx1)
    inter = (tf.maximum(tf.minimum(ay2, by2) - tf.maximum(ay1, by1), 0.0)
             * tf.maximum(tf.minimum(ax2, bx2) - tf.maximum(ax1, bx1), 0.0))
    both = (area_a > 0.0) & (area_b > 0.0)
    # As the op: inter / union, 0 where either box has no area.
    iou = tf.math.divide_no_nan(inter, tf.where(both, area_a + area_b - inter, 0.0))
    return both & (iou > iou_threshold)


def batched_nms(boxes, scores, max_output_size, iou_threshold, classes=None, valid=None,
                tile_size=512):
    """Greedy NMS per image (and per class when ``classes`` is given), fixed output size.

    boxes: [B, N, (y1, x1, y2, x2)] float; corners in either order.
    scores: [B, N] float.
    max_output_size: int, boxes kept per image at most (M).
    iou_threshold: float; a box is dropped when its IoU with a kept higher-scoring box (of
        the same class) is above this.
    classes: optional [B, N] int; boxes of different classes never suppress each other.
    valid: optional [B, N] bool; boxes that are False are never kept.

    Returns (indices [B, M] int32, count [B] int32): the kept boxes' indices into N by
    descending score, 0 after the first ``count`` entries.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)
    batch = tf.shape(boxes)[0]
    num_boxes = boxes.shape[1] if boxes.shape[1] is not None else tf.shape(boxes)[1]
    m = int(max_output_size)
    if isinstance(num_boxes, int):
        tile = max(1, min(int(tile_size), num_boxes))
    else:
        tile = int(tile_size)
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    boxes = tf.stack([tf.minimum(y1, y2), tf.minimum(x1, x2), tf.maximum(y1, y2), tf.maximum(x1, x2)], -1)
    if valid is None:
        valid = tf.ones(tf.shape(scores), tf.bool)
    valid = tf.convert_to_tensor(valid, tf.bool) & tf.logical_not(tf.math.is_nan(scores))
    per_class = classes is not None
    if not per_class:
        classes = tf.zeros(tf.shape(scores), tf.int32)
    classes = tf.cast(classes, tf.int32)

    # Sort by score, invalid boxes last.
    sort_key = tf.where(valid, scores, float("-inf"))
    _, order = tf.math.top_k(sort_key, k=num_boxes, sorted=True)  # [B, N]
    boxes = _take(boxes, order)
    classes = _take(classes, order)
    valid = _take(valid, order)

    num_tiles = (num_boxes + tile - 1) // tile
    pad = num_tiles * tile - num_boxes
    boxes = tf.pad(boxes, [[0, 0], [0, pad], [0, 0]])
    classes = tf.pad(classes, [[0, 0], [0, pad]])
    valid = tf.pad(valid, [[0, 0], [0, pad]])
    # [B, tiles, T, ...]: a tile is a gather on axis 1, of static size under XLA.
    boxes = tf.reshape(boxes, [batch, num_tiles, tile, 4])
    classes = tf.reshape(classes, [batch, num_tiles, tile])
    valid = tf.reshape(valid, [batch, num_tiles, tile])

    # Kept so far: M slots and one spare slot M where boxes beyond M are written and ignored.
    kept_boxes = tf.zeros([batch, m + 1, 4], tf.float32)
    kept_classes = tf.fill([batch, m + 1], -1)
    kept_index = tf.zeros([batch, m + 1], tf.int32)
    count = tf.zeros([batch], tf.int32)
    lower = tf.range(tile)[:, tf.newaxis] > tf.range(tile)[tf.newaxis, :]  # [T, T]: j < i
    batch_ix = tf.broadcast_to(tf.range(batch)[:, tf.newaxis], [batch, tile])

    def tile_body(t, count, kept_boxes, kept_classes, kept_index):
        start = t * tile
        tile_boxes = tf.gather(boxes, t, axis=1)
        tile_classes = tf.gather(classes, t, axis=1)
        tile_valid = tf.gather(valid, t, axis=1)
        # Suppressed by a box kept in earlier tiles (empty slots have class -1).
        # Empty slots hold zero boxes, of no area: they suppress nothing.
        cross = _iou_above(tile_boxes, kept_boxes[:, :m], iou_threshold)
        if per_class:
            cross &= tf.equal(tile_classes[:, :, tf.newaxis], kept_classes[:, tf.newaxis, :m])
        candidate = tile_valid & tf.logical_not(tf.reduce_any(cross, axis=2))
        # Within the tile: iterate keep[i] = candidate[i] & no kept j < i suppresses i.
        suppress = _iou_above(tile_boxes, tile_boxes, iou_threshold) & lower
        if per_class:
            suppress &= tf.equal(tile_classes[:, :, tf.newaxis], tile_classes[:, tf.newaxis, :])

        def self_body(keep, _):
            new = candidate & tf.logical_not(tf.reduce_any(suppress & keep[:, tf.newaxis, :], axis=2))
            return new, tf.reduce_any(tf.not_equal(new, keep))

        keep, _ = tf.while_loop(lambda keep, changed: changed, self_body,
                                (candidate, tf.constant(True)), maximum_iterations=tile)
        keep_int = tf.cast(keep, tf.int32)
        slot = count[:, tf.newaxis] + tf.cumsum(keep_int, axis=1, exclusive=True)
        slot = tf.where(keep & (slot < m), slot, m)  # dropped or beyond M -> spare slot
        where = tf.stack([batch_ix, slot], axis=-1)
        kept_boxes = tf.tensor_scatter_nd_update(kept_boxes, where, tile_boxes)
        kept_classes = tf.tensor_scatter_nd_update(kept_classes, where, tile_classes)
        kept_index = tf.tensor_scatter_nd_update(kept_index, where, start + tf.range(tile)[tf.newaxis] + 0 * slot)
        # The spare slot must not suppress anything.
        kept_classes = tf.concat([kept_classes[:, :m], tf.fill([batch, 1], -1)], axis=1)
        count = tf.minimum(count + tf.reduce_sum(keep_int, axis=1), m)
        return t + 1, count, kept_boxes, kept_classes, kept_index

    _, count, _, _, kept_index = tf.while_loop(
        lambda t, count, *_: (t < num_tiles) & (tf.reduce_min(count) < m),
        tile_body, (tf.constant(0), count, kept_boxes, kept_classes, kept_index))
    in_output = tf.range(m)[tf.newaxis, :] < count[:, tf.newaxis]
    # kept_index is a position in the sorted order; map it back to the input's order.
    indices = _take(order, tf.minimum(kept_index[:, :m], num_boxes - 1))
    return tf.where(in_output, indices, 0), count


def batched_nms_gather(boxes, scores, max_output_size, iou_threshold, classes=None, valid=None,
                       tile_size=512):
    """:func:`batched_nms`, then the kept rows: what ``combined_non_max_suppression`` returns.

    Returns (boxes [B, M, 4], scores [B, M], classes [B, M] float32, count [B] int32), by
    descending score, zero after the first ``count`` rows of each image (boxes as given,
    not clipped, not canonicalised).
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)
    indices, count = batched_nms(boxes, scores, max_output_size, iou_threshold, classes, valid,
                                 tile_size)
    in_output = tf.range(int(max_output_size))[tf.newaxis, :] < count[:, tf.newaxis]
    out_boxes = tf.where(in_output[..., tf.newaxis], _take(boxes, indices), 0.0)
    out_scores = tf.where(in_output, _take(scores, indices), 0.0)
    if classes is None:
        out_classes = tf.zeros_like(out_scores)
    else:
        out_classes = tf.where(in_output, tf.cast(_take(classes, indices), tf.float32), 0.0)
    return out_boxes, out_scores, out_classes, count


def combined_nms(boxes, scores, max_output_size, iou_threshold, classes=None, valid=None, num_classes=None,
                 implementation="auto"):
    """Batched greedy NMS returning what :func:`batched_nms_gather` returns (boxes [B, M, 4],
    scores [B, M], classes [B, M] float32, count [B]), by ``tf.image.combined_non_max_suppression``
    or by :func:`batched_nms_gather`.

    classes: None (one class, every box a candidate) or int [B, N] with ``num_classes`` (the
    one-hot depth) and ``valid`` bool [B, N] (candidates; their scores must be above 0, as the
    op's score_threshold of 0 drops the rest). implementation: "auto" (the op, or the plain ops
    while XLA compiles or inside :func:`plain_ops`), "op" or "gather".
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    from mrcnn.crop import compiling_with_xla

    plain = implementation == "gather" or (
        implementation == "auto" and (getattr(_PLAIN, "on", False) or compiling_with_xla()))
    # The op takes one class without a validity mask, or classes with one and their count.
    op_takes_it = valid is None if classes is None else (valid is not None and num_classes is not None)
    if plain or not op_takes_it:
        return batched_nms_gather(boxes, scores, max_output_size, iou_threshold, classes, valid)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)
    if classes is None:  # one class: combined NMS is plain greedy NMS, zero-padded to max_output_size
        class_scores, threshold = scores[:, :, tf.newaxis], float("-inf")
    else:  # each box competes only in its own class's column; the other columns are 0 and dropped
        class_scores = tf.one_hot(classes, num_classes) * tf.where(valid, scores, 0.0)[..., tf.newaxis]
        threshold = 0.0
    out_boxes, out_scores, out_classes, count = tf.image.combined_non_max_suppression(
        boxes[:, :, tf.newaxis, :], class_scores, max_output_size_per_class=max_output_size,
        max_total_size=max_output_size, iou_threshold=iou_threshold, score_threshold=threshold, clip_boxes=False)
    return out_boxes, out_scores, out_classes, count
