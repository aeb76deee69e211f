"""Bilinear crop-and-resize built from plain tensor ops (gather and arithmetic), so that XLA compiles it.

``tf.image.crop_and_resize`` (the CropAndResize op) has no XLA kernel. :func:`crop_and_resize`
gives its results for ``method="bilinear"``, and :func:`pyramid_crop_and_resize` crops every box
from its own level of a feature pyramid in one gather, with fixed shapes (no per-level
``tf.where``), for :class:`mrcnn.roi_align.PyramidROIAlign`.

Both run the op itself unless XLA compiles the graph being traced (``implementation="auto"``,
see :func:`compiling_with_xla`): in TensorFlow's graph on a CPU the op is 3-5 times as fast
(benchmarks/bench_roi_align.py, leaf ResNet101 sizes at 512 px: the gather path's unfused
elementwise ops over [4, M, h, w, C] cost more than the op's loop). Under XLA, which fuses
them, the gather path's forward took half the op's time in the graph, its forward and
gradient (a scatter-add) 1.7-2.5 times the op's.

The sampling is the op's (tensorflow/core/kernels/image/crop_and_resize_op.cc): for a box
(y1, x1, y2, x2) on an image of height H and a crop of height h, row i of the crop samples

    in_y = y1 * (H - 1) + i * ((y2 - y1) * (H - 1) / (h - 1))   if h > 1
    in_y = 0.5 * (y1 + y2) * (H - 1)                            if h == 1 (the box's centre)

and the same for x with W and the crop's width. y1 > y2 flips the crop. A sample outside
[0, H - 1] x [0, W - 1] gets ``extrapolation_value``; the others interpolate between the four
pixels around it as the op does: ``top = tl + (tr - tl) * dx``, ``bottom = bl + (br - bl) * dx``,
``top + (bottom - top) * dy``. Values are read in the image's dtype and interpolated in float32
(the op also returns float32 whatever it is given). The gradient with respect to the image is
the op's (each sample's gradient shared among its four pixels by the bilinear weights; none
for extrapolated samples); none flows into the boxes (callers stop it).

One deliberate difference: a sample that rounding puts just outside the image (by at most
``EDGE_TOLERANCE`` of its side, e.g. the last sample of a box that ends at exactly 1.0, which
proposals clipped to the image do) reads the edge pixel. The op gives ``extrapolation_value``
there or the edge pixel depending on the last bit of in_y, and graph rewrites and XLA's
fusions change that bit; the tolerance makes the result the same in eager mode, in the graph
and under XLA. Elsewhere the values are the op's to float32 rounding (bit for bit in eager
mode), the gradients to summation order.

Cost of the gather path: one gather of 4 * h * w rows of C values per box from the flattened
image (the reads the op does), elementwise ops over them, and in the gradient a scatter-add
into a dense copy of the image.
"""
import tensorflow as tf

from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util

__all__ = ["crop_and_resize", "pyramid_crop_and_resize", "compiling_with_xla", "IMPLEMENTATIONS", "EDGE_TOLERANCE"]

# "auto": the op, or the gather path while XLA compiles; "op": tf.image.crop_and_resize;
# "gather": the plain-ops path.
IMPLEMENTATIONS = ("auto", "op", "gather")
# Samples outside the image by at most this share of its side (2 ** -18: 32 float32 ulps of a
# coordinate near the far edge, in pixels) read the edge pixel instead of the extrapolation value.
EDGE_TOLERANCE = 2.0 ** -18


def compiling_with_xla():
    """True while tracing a function that XLA compiles (``tf.function(jit_compile=True)``, a
    Keras model compiled with ``jit_compile=True``), or one called from it.

    It reads the XLA control-flow context that tf.function enters for ``jit_compile=True``,
    as TensorFlow's own gradient and control-flow code does to pick XLA-compatible ops
    (``control_flow_util.GraphOrParentsInXlaContext``). False in eager mode.
    """
    if tf.executing_eagerly():
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def _use_gather(implementation):
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    return implementation == "gather" or (implementation == "auto" and compiling_with_xla())


def _sample_axis(start, end, size, crop):
    """Sample positions along one axis of every box, and which of them lie inside the image.

    start, end: float32 [M] normalised box edges. size: int32 [M], the extent in pixels of
    each box's image along the axis. crop: the crop's extent (a Python int).

    Returns: (low int32 [M, crop], high int32 [M, crop], lerp float32 [M, crop], inside bool
    [M, crop]): the pixels before and after each sample, its distance from ``low`` and
    whether it lies in the image. low and high are clipped into the image, so that they
    index it also where ``inside`` is False.
    """
    last = tf.cast(size - 1, tf.float32)  # [M]
    if crop > 1:
        scale = (end - start) * last / float(crop - 1)  # [M]
        position = start[:, tf.newaxis] * last[:, tf.newaxis] + tf.range(crop, dtype=tf.float32) * scale[:, tf.newaxis]
    else:
        position = (0.5 * (start + end) * last)[:, tf.newaxis]
    last = last[:, tf.newaxis]
    tolerance = EDGE_TOLERANCE * tf.maximum(last, 1.0)
    inside = (position >= -tolerance) & (position <= last + tolerance)
    low = tf.floor(position)
    lerp = position - low
    # Clipping keeps the gather in bounds: outside samples are masked below, and a sample
    # within the tolerance of an edge gets low = high = the edge pixel.
    last_index = (size - 1)[:, tf.newaxis]
    low = tf.minimum(tf.maximum(tf.cast(low, tf.int32), 0), last_index)
    high = tf.minimum(tf.maximum(tf.cast(tf.math.ceil(position), tf.int32), 0), last_index)
    return low, high, lerp, inside


def _bilinear_crops(flat, first_row, height, width, boxes, crop_size, extrapolation_value):
    """Crops of M boxes from images stored as rows of ``flat``.

    flat: [R, C], the pixels of all images, row-major (one image: height * width rows).
    first_row: int32 [M], the row of each box's image's top-left pixel.
    height, width: int32 [M], the size of each box's image.
    boxes: float32 [M, (y1, x1, y2, x2)] normalised.

    Returns: float32 [M, crop_h, crop_w, C].
    """
    crop_h, crop_w = crop_size
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    top, bottom, dy, inside_y = _sample_axis(y1, y2, height, crop_h)  # [M, h]
    left, right, dx, inside_x = _sample_axis(x1, x2, width, crop_w)  # [M, w]
    row_width = width[:, tf.newaxis]
    base = tf.reshape(first_row, [-1, 1])
    top_rows = (base + top * row_width)[:, :, tf.newaxis]  # [M, h, 1]
    bottom_rows = (base + bottom * row_width)[:, :, tf.newaxis]
    left, right = left[:, tf.newaxis, :], right[:, tf.newaxis, :]  # [M, 1, w]
    # One gather for the four corners: [4, M, h, w] indices -> [4, M, h, w, C].
    corners = tf.stack([top_rows + left, top_rows + right, bottom_rows + left, bottom_rows + right])
    values = tf.gather(flat, corners)
    if values.dtype != tf.float32:
        values = tf.cast(values, tf.float32)
    top_left, top_right, bottom_left, bottom_right = tf.unstack(values)
    dx = dx[:, tf.newaxis, :, tf.newaxis]  # [M, 1, w, 1]
    dy = dy[:, :, tf.newaxis, tf.newaxis]  # [M, h, 1, 1]
    upper = top_left + (top_right - top_left) * dx
    lower = bottom_left + (bottom_right - bottom_left) * dx
    crops = upper + (lower - upper) * dy
    inside = (inside_y[:, :, tf.newaxis] & inside_x[:, tf.newaxis, :])[..., tf.newaxis]  # [M, h, w, 1]
    return tf.where(inside, crops, tf.constant(extrapolation_value, tf.float32))


def _crop_size(crop_size):
    crop_h, crop_w = (int(side) for side in crop_size)
    if crop_h < 1 or crop_w < 1:
        raise ValueError(f"crop_size must be positive, got {tuple(crop_size)}")
    return crop_h, crop_w


def crop_and_resize(image, boxes, box_indices, crop_size, extrapolation_value=0.0, implementation="auto"):
    """``tf.image.crop_and_resize(image, boxes, box_indices, crop_size, "bilinear",
    extrapolation_value)``, from gather and arithmetic where XLA compiles (see the module doc).

    image: [B, H, W, C] of any real dtype (uint8 masks included).
    boxes: float [M, (y1, x1, y2, x2)] normalised: 0 and 1 are the centres of the first and
        last pixels; parts outside [0, 1] and y1 > y2 (a flipped crop) are allowed.
    box_indices: int [M], the image of each box, in [0, B).
    crop_size: (crop_h, crop_w), Python ints >= 1.
    implementation: "auto" (the op, or the gather path while XLA compiles), "op" or "gather".

    Returns: float32 [M, crop_h, crop_w, C].
    """
    crop_h, crop_w = _crop_size(crop_size)
    image = tf.convert_to_tensor(image)
    if not _use_gather(implementation):
        return tf.image.crop_and_resize(image, tf.cast(boxes, tf.float32), tf.cast(box_indices, tf.int32),
                                        [crop_h, crop_w], method="bilinear", extrapolation_value=extrapolation_value)
    shape = tf.shape(image)
    height, width, channels = shape[1], shape[2], shape[3]
    flat = tf.reshape(image, tf.stack([-1, channels]))  # [B * H * W, C]
    box_indices = tf.cast(box_indices, tf.int32)
    first_row = box_indices * (height * width)
    per_box = tf.ones_like(box_indices)
    crops = _bilinear_crops(flat, first_row, height * per_box, width * per_box, tf.cast(boxes, tf.float32),
                            (crop_h, crop_w), extrapolation_value)
    if image.shape[-1] is not None:
        crops = tf.ensure_shape(crops, [None, crop_h, crop_w, image.shape[-1]])
    return crops


def pyramid_crop_and_resize(feature_maps, boxes, box_indices, levels, crop_size, implementation="auto"):
    """Crop every box from its own feature map: ``crop_and_resize(feature_maps[levels[i]],
    boxes[i:i + 1], box_indices[i:i + 1], crop_size)`` for all i at once.

    The gather path flattens the maps into one [sum_l B * h_l * w_l, C] tensor; a box's four
    corner pixels are rows ``offset_l + b * h_l * w_l + y * w_l + x`` of it, so one gather
    serves all boxes of all levels, with no per-level selection and no dynamic shapes. The op
    path selects each level's boxes (``tf.where``), crops them with one op per level and puts
    the crops back in box order with one gather.

    feature_maps: list of L maps [B, h_l, w_l, C], the same B, C and dtype.
    boxes: float [M, (y1, x1, y2, x2)] normalised. box_indices: int [M] in [0, B).
    levels: int [M] in [0, L), the index into ``feature_maps`` of each box's map.
    crop_size: (crop_h, crop_w), Python ints >= 1.
    implementation: "auto" (the op, or the gather path while XLA compiles), "op" or "gather".

    Returns: float32 [M, crop_h, crop_w, C], in the order of ``boxes``.
    """
    crop_h, crop_w = _crop_size(crop_size)
    boxes = tf.cast(boxes, tf.float32)
    box_indices = tf.cast(box_indices, tf.int32)
    levels = tf.cast(levels, tf.int32)
    if not _use_gather(implementation):
        return _pyramid_crops_by_op(feature_maps, boxes, box_indices, levels, (crop_h, crop_w))
    shapes = [tf.shape(feature_map) for feature_map in feature_maps]
    channels = shapes[0][3]
    flat = tf.concat([tf.reshape(m, tf.stack([-1, channels])) for m in feature_maps], axis=0)
    heights = tf.stack([shape[1] for shape in shapes])  # [L]
    widths = tf.stack([shape[2] for shape in shapes])
    pixels = heights * widths
    level_rows = tf.stack([shape[0] for shape in shapes]) * pixels  # rows of each level
    offsets = tf.concat([[0], tf.cumsum(level_rows)[:-1]], axis=0)
    first_row = tf.gather(offsets, levels) + box_indices * tf.gather(pixels, levels)
    crops = _bilinear_crops(flat, first_row, tf.gather(heights, levels), tf.gather(widths, levels),
                            boxes, (crop_h, crop_w), 0.0)
    if feature_maps[0].shape[-1] is not None:
        crops = tf.ensure_shape(crops, [None, crop_h, crop_w, feature_maps[0].shape[-1]])
    return crops


def _pyramid_crops_by_op(feature_maps, boxes, box_indices, levels, crop_size):
    """pyramid_crop_and_resize with tf.image.crop_and_resize: one op per level on the boxes
    of that level (dynamic counts, so not for XLA), then the inverse permutation of the
    level grouping puts the crops back in box order with a single gather."""
    crops, box_ids = [], []
    for level, feature_map in enumerate(feature_maps):
        ids = tf.cast(tf.where(tf.equal(levels, level))[:, 0], tf.int32)
        crops.append(tf.image.crop_and_resize(feature_map, tf.gather(boxes, ids), tf.gather(box_indices, ids),
                                              list(crop_size), method="bilinear"))
        box_ids.append(ids)
    return tf.gather(tf.concat(crops, axis=0), tf.math.invert_permutation(tf.concat(box_ids, axis=0)))
