"""Between original images and the model's inputs and outputs: molding and unmolding, in numpy
and in the graph.

    molded_images, image_metas, windows = mold_inputs(images, config)
    rois, class_ids, scores, masks = unmold_detections(detections, mrcnn_mask, original_image_shape,
                                                       image_shape, window)   # one image

:func:`mold_inputs` resizes and pads images as ``utils.resize_image`` does, subtracts
MEAN_PIXEL and composes their image metas (``mrcnn.pipeline.MoldedImage`` holds one image's
row, molded ahead by ``MaskRCNN.mold``); :func:`unmold_detections` maps one image's
normalised detections and mask probabilities back to its original pixels. ``MaskRCNN.detect``
runs them around the Keras model (``MaskRCNN.mold_inputs`` / ``unmold_detections`` are these).

The graph versions, one image each, do the same in TensorFlow ops for the exported SavedModel
(:mod:`mrcnn.export`): :func:`mold_image_graph`, :func:`anchors_graph` (``MaskRCNN.get_anchors``)
and :func:`unmold_detections_graph`. They reproduce numpy's results bit for bit: the resize
is scikit-image's bilinear resize with its zero border and clipping, summed term by term in
scipy's order, and the box arithmetic is done in float64 where numpy does it. Resize modes
"square", "pad64" and "none" have graph versions (:data:`EXPORTABLE_RESIZE_MODES`); "crop"
takes random crops and is for training only.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from mrcnn import utils
from mrcnn.anchors import config_anchors
from mrcnn.boxcoords import denorm_boxes, norm_boxes
from mrcnn.boxes import denorm_boxes_graph, norm_boxes_graph
from mrcnn.pipeline import compose_image_meta, mold_image

__all__ = ["mold_inputs", "unmold_detections", "unmold_results", "mold_image_graph", "anchors_graph", "unmold_detections_graph",
           "suppress_covered_masks_graph",
           "check_exportable", "EXPORTABLE_RESIZE_MODES"]

EXPORTABLE_RESIZE_MODES = ("square", "pad64", "none")


############################################################
#  Numpy
############################################################

def mold_inputs(images, config):
    """Resize and normalise images for the model.

    images: list of [H, W, C] arrays, any sizes.
    Returns: molded_images float32 [N, h, w, C], image_metas [N, META], windows int [N, 4]
    (the part of each molded image holding the original, in its pixels).
    """
    molded_images, image_metas, windows = [], [], []
    for image in images:
        molded, window, scale, _, _ = utils.resize_image(
            image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
            max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
        molded = mold_image(molded, config)
        meta = compose_image_meta(0, image.shape, molded.shape, window, scale,
                                  np.zeros([config.NUM_CLASSES], dtype=np.int32))
        molded_images.append(molded)
        image_metas.append(meta)
        windows.append(window)
    return np.stack(molded_images).astype(np.float32, copy=False), np.stack(image_metas), np.stack(windows)


def unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window, mask_overlap=None):
    """One image's detections in the coordinates of its original image.

    detections: [N, (y1, x1, y2, x2, class_id, score)] normalised, zero-padded.
    mrcnn_mask: [N, height, width, num_classes] mask probabilities.
    original_image_shape, image_shape: [H, W, C] before and after resizing.
    window: [4] pixels of the molded image that hold the original image.
    mask_overlap: None (Matterport), or DETECTION_MASK_OVERLAP_THRESHOLD: the detections that
        :func:`mrcnn.utils.suppress_covered_masks` drops at this threshold are left out.

    Returns: boxes int32 [n, 4] (pixels of the original image), class_ids int32 [n],
    scores float32 [n], masks bool [H, W, n].
    """
    count = int(np.count_nonzero(detections[:, 4] > 0))
    boxes = detections[:count, :4]
    class_ids = detections[:count, 4].astype(np.int32)
    scores = detections[:count, 5].astype(np.float32)
    masks = mrcnn_mask[np.arange(count), :, :, class_ids]

    # Boxes are normalised to the molded image; shift and scale them to the window, then
    # to the original image's pixels.
    wy1, wx1, wy2, wx2 = norm_boxes(np.asarray(window), image_shape[:2])
    shift = np.array([wy1, wx1, wy1, wx1])
    scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    boxes = denorm_boxes((boxes - shift) / scale, original_image_shape[:2])

    keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
    boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
    height, width = original_image_shape[:2]
    # Each mask is pasted (and compared, for mask_overlap) inside its box only: it is empty
    # elsewhere (utils.unmold_mask), and leaves are small beside the image.
    crops = [utils.unmold_mask_crop(masks[i], boxes[i]) for i in range(len(boxes))]
    if mask_overlap is not None:
        keep = utils.suppress_covered_crops(crops, boxes, class_ids, scores, mask_overlap, original_image_shape)
        boxes, class_ids, scores = boxes[keep], class_ids[keep], scores[keep]
        crops = [crop for crop, kept in zip(crops, keep) if kept]
    full_masks = np.zeros((height, width, len(boxes)), dtype=bool)
    for i, crop in enumerate(crops):
        if crop is not None:
            y1, x1, y2, x2 = (int(v) for v in boxes[i])
            full_masks[y1:y2, x1:x2, i] = crop
    return boxes.astype(np.int32), class_ids, scores, full_masks


############################################################
#  Graph: resizing, as scikit-image's resize(order=1, mode="constant", cval=0, clip=True)
############################################################

def unmold_results(outputs, image_metas, windows=None, mask_overlap=None):
    """Every image's detections in its original pixels, as ``MaskRCNN.detect`` returns them.

    outputs: the inference model's outputs by name (``detections`` [B, N, 6], ``mrcnn_mask``
    [B, N, mh, mw, K]); image_metas [B, META]; windows [B, 4] (default: the metas' windows);
    mask_overlap: see :func:`unmold_detections`.
    Returns: one dict per image: rois, class_ids, scores, masks (see :func:`unmold_detections`).
    """
    results = []
    for i, meta in enumerate(np.asarray(image_metas)):
        original_shape, image_shape = meta[1:4].astype(int), meta[4:7].astype(int)
        window = meta[7:11].astype(int) if windows is None else windows[i]
        rois, class_ids, scores, masks = unmold_detections(outputs["detections"][i], outputs["mrcnn_mask"][i],
                                                           original_shape, image_shape, window, mask_overlap)
        results.append({"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks})
    return results


def _taps(size_in, size_out):
    """Where each of ``size_out`` output samples reads an axis of ``size_in`` input samples.

    Output sample i reads the input at (i + 0.5) * size_in / size_out - 0.5 (pixel centres
    matched: scipy.ndimage.zoom's grid mode, which skimage's resize uses). Returns the index of
    the sample before it in the input padded with one zero on each side, and the two linear
    weights computed as scipy computes them (w0 = 1 - t, w1 = 1 - w0), float64 [size_out].
    """
    ratio = tf.cast(size_in, tf.float64) / tf.cast(size_out, tf.float64)
    position = (tf.range(size_out, dtype=tf.float64) + 0.5) * ratio - 0.5
    low = tf.floor(position)
    w0 = 1.0 - (position - low)
    return tf.cast(low, tf.int32) + 1, w0, 1.0 - w0


def _resize_2d(x, height, width):
    """skimage's ``resize(x, (height, width), order=1, mode="constant", cval=0, clip=True)``.

    x: float64 [h, w] or [h, w, C]. Bilinear with zeros beyond the edges, summed term by term
    in scipy.ndimage's order, so that the float64 results match numpy's bit for bit (rounding
    an image to uint8 then agrees even at .5 ties); then clipped to x's value range.
    """
    rows, wy0, wy1 = _taps(tf.shape(x)[0], height)
    cols, wx0, wx1 = _taps(tf.shape(x)[1], width)
    padded = tf.pad(x, [[1, 1], [1, 1]] + [[0, 0]] * (len(x.shape) - 2))
    top, bottom = tf.gather(padded, rows, axis=0), tf.gather(padded, rows + 1, axis=0)
    channel_axes = [1] * (len(x.shape) - 2)
    wy0, wy1 = tf.reshape(wy0, [-1, 1] + channel_axes), tf.reshape(wy1, [-1, 1] + channel_axes)
    wx0, wx1 = tf.reshape(wx0, [1, -1] + channel_axes), tf.reshape(wx1, [1, -1] + channel_axes)
    out = (tf.gather(top, cols, axis=1) * wy0 * wx0 + tf.gather(top, cols + 1, axis=1) * wy0 * wx1
           + tf.gather(bottom, cols, axis=1) * wy1 * wx0 + tf.gather(bottom, cols + 1, axis=1) * wy1 * wx1)
    return tf.clip_by_value(out, tf.reduce_min(x), tf.reduce_max(x))


############################################################
#  Graph: molding and anchors
############################################################

def check_exportable(config):
    """Raise ValueError when the graph versions cannot mold for ``config``.

    IMAGE_RESIZE_MODE "crop" takes random crops (training only). A callable BACKBONE takes
    its feature shapes from the Python callable COMPUTE_BACKBONE_SHAPE, which needs the molded
    size when the graph is traced: only "square" molding has a fixed size.
    """
    if config.IMAGE_RESIZE_MODE not in EXPORTABLE_RESIZE_MODES:
        raise ValueError(f"IMAGE_RESIZE_MODE = {config.IMAGE_RESIZE_MODE!r} cannot be exported: it takes random "
                         f"crops (training only); use one of {', '.join(EXPORTABLE_RESIZE_MODES)} for inference")
    if callable(config.BACKBONE) and config.IMAGE_RESIZE_MODE != "square":
        raise ValueError(f"a callable BACKBONE exports with IMAGE_RESIZE_MODE = 'square' only, not "
                         f"{config.IMAGE_RESIZE_MODE!r}: its anchors follow COMPUTE_BACKBONE_SHAPE, a Python "
                         f"callable that needs the molded size when the graph is traced")


def mold_image_graph(image, config):
    """The graph version of :func:`mold_inputs` for one image.

    image: uint8 [H, W, C] (C = IMAGE_CHANNEL_COUNT), any H and W.

    Returns: (molded float32 [h, w, C], image_meta float32 [12 + NUM_CLASSES],
    window int32 [(y1, x1, y2, x2)] of the image inside the molded one).
    """
    check_exportable(config)
    mode = config.IMAGE_RESIZE_MODE
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    # utils.resize_image's scale, in Python's float64 arithmetic and round-half-to-even.
    scale = tf.constant(1.0, tf.float64)
    if mode != "none":
        if config.IMAGE_MIN_DIM:
            scale = tf.maximum(scale, config.IMAGE_MIN_DIM / tf.minimum(height, width))
        if config.IMAGE_MIN_SCALE:
            scale = tf.maximum(scale, tf.constant(float(config.IMAGE_MIN_SCALE), tf.float64))
        if mode == "square":
            longest = tf.maximum(height, width)
            scale = tf.where(tf.round(longest * scale) > config.IMAGE_MAX_DIM, config.IMAGE_MAX_DIM / longest, scale)
    new_height = tf.cast(tf.round(height * scale), tf.int32)
    new_width = tf.cast(tf.round(width * scale), tf.int32)

    def resized():
        out = _resize_2d(tf.cast(image, tf.float64), new_height, new_width)
        return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)

    image = tf.cond(tf.equal(scale, 1.0), lambda: tf.identity(image), resized)

    if mode == "square":
        top = (config.IMAGE_MAX_DIM - new_height) // 2
        left = (config.IMAGE_MAX_DIM - new_width) // 2
        bottom = config.IMAGE_MAX_DIM - new_height - top
        right = config.IMAGE_MAX_DIM - new_width - left
    elif mode == "pad64":
        extra_h, extra_w = -new_height % 64, -new_width % 64
        top, left = extra_h // 2, extra_w // 2
        bottom, right = extra_h - top, extra_w - left
    else:
        top = left = bottom = right = tf.constant(0, tf.int32)
    image = tf.pad(image, [[top, bottom], [left, right], [0, 0]])
    molded = tf.cast(image, tf.float32) - tf.constant(np.asarray(config.MEAN_PIXEL, np.float32))

    window = tf.stack([top, left, top + new_height, left + new_width])
    molded_shape = tf.shape(molded)
    meta = tf.concat([
        tf.zeros([1], tf.float32),                                   # image id
        tf.cast(shape, tf.float32),                                  # original shape
        tf.cast(molded_shape, tf.float32),                           # molded shape
        tf.cast(window, tf.float32),
        tf.reshape(tf.cast(scale, tf.float32), [1]),
        tf.zeros([config.NUM_CLASSES], tf.float32),                  # active class ids, as mold_inputs
    ], axis=0)
    return molded, meta, window


def anchors_graph(image_shape, config):
    """The graph version of ``MaskRCNN.get_anchors``: normalised anchors float32 [A, 4].

    image_shape: int32 [2+] (height, width, ...) of the molded image. Same boxes and order as
    ``mrcnn.anchors.config_anchors`` (level, position row-major, ratio, scale), float64 until
    the end. A callable BACKBONE's anchors (feature shapes from COMPUTE_BACKBONE_SHAPE) are
    that function's, a constant: for ``image_shape`` when it is known while tracing, else for
    IMAGE_SHAPE, the size of every "square" molded image (see :func:`check_exportable`).
    """
    if callable(config.BACKBONE):
        static_shape = tf.get_static_value(image_shape)
        return tf.constant(config_anchors(config, config.IMAGE_SHAPE if static_shape is None else static_shape))
    height = tf.cast(image_shape[0], tf.float64)
    width = tf.cast(image_shape[1], tf.float64)
    levels = []
    for scales, stride in zip(config.RPN_ANCHOR_SCALES, config.BACKBONE_STRIDES):
        scales, ratios = np.meshgrid(np.asarray(scales, np.float64), np.asarray(config.RPN_ANCHOR_RATIOS, np.float64))
        sizes = np.stack([scales.ravel() / np.sqrt(ratios.ravel()), scales.ravel() * np.sqrt(ratios.ravel())], -1)
        rows = tf.cast(tf.math.ceil(height / stride), tf.int32)
        cols = tf.cast(tf.math.ceil(width / stride), tf.int32)
        centers_y = tf.cast(tf.range(0, rows, config.RPN_ANCHOR_STRIDE) * stride, tf.float64)
        centers_x = tf.cast(tf.range(0, cols, config.RPN_ANCHOR_STRIDE) * stride, tf.float64)
        centers_y, centers_x = tf.meshgrid(centers_y, centers_x, indexing="ij")
        centers = tf.reshape(tf.stack([centers_y, centers_x], axis=-1), [-1, 1, 2])  # [P, 1, 2]
        half = tf.constant(0.5 * sizes[np.newaxis])                                  # [1, A, 2]
        levels.append(tf.reshape(tf.concat([centers - half, centers + half], axis=-1), [-1, 4]))
    boxes = tf.concat(levels, axis=0)
    return tf.cast(norm_boxes_graph(boxes, image_shape, tf.float64), tf.float32)


############################################################
#  Graph: unmolding
############################################################

def _paste_mask(mask, box, height, width):
    """``utils.unmold_mask`` in the graph: float32 [mh, mw] into bool [height, width] at box."""
    y1, x1, y2, x2 = box[0], box[1], box[2], box[3]
    resized = _resize_2d(tf.cast(mask, tf.float64), y2 - y1, x2 - x1)
    # skimage resizes a float32 mask into float32: round there before the threshold.
    inside = tf.cast(resized, tf.float32) >= 0.5
    return tf.pad(inside, [[y1, height - y2], [x1, width - x2]])


def suppress_covered_masks_graph(masks, class_ids, scores, threshold):
    """The graph version of :func:`mrcnn.utils.suppress_covered_masks` (same arguments, the
    same decisions: pixel counts compared in float64). Returns bool [N]."""
    n = tf.shape(masks)[-1]
    flat = tf.reshape(tf.transpose(masks, [2, 0, 1]), [n, -1])
    areas = tf.cast(tf.math.count_nonzero(flat, axis=1), tf.float64)
    order = tf.argsort(-scores, stable=True)
    classes = tf.reduce_max(tf.concat([tf.zeros([1], class_ids.dtype), class_ids], axis=0)) + 1
    unions = tf.zeros([classes, tf.shape(flat)[1]], tf.bool)
    threshold = tf.constant(float(threshold), tf.float64)

    def body(k, unions, keep):
        i = order[k]
        c = class_ids[i]
        covered = tf.cast(tf.math.count_nonzero(tf.logical_and(flat[i], unions[c])), tf.float64)
        kept = covered <= threshold * areas[i]
        unions = tf.cond(kept, lambda: tf.tensor_scatter_nd_update(unions, [[c]], [tf.logical_or(unions[c], flat[i])]),
                         lambda: unions)
        return k + 1, unions, tf.tensor_scatter_nd_update(keep, [[i]], [kept])

    _, _, keep = tf.while_loop(lambda k, *_: k < n, body, (tf.constant(0), unions, tf.zeros([n], tf.bool)))
    return keep


def unmold_detections_graph(detections, mrcnn_mask, original_image_shape, image_shape, window, mask_overlap=None):
    """The graph version of :func:`unmold_detections` (same arguments; ``mask_overlap`` is a
    Python number or None, fixed when tracing).

    detections: float32 [D, (y1, x1, y2, x2, class_id, score)] normalised, zero-padded.
    mrcnn_mask: float32 [D, mh, mw, num_classes].
    original_image_shape, image_shape: int32 [3]; window: int32 [4] pixels of the molded image.

    Returns: {"rois": int32 [n, 4], "class_ids": int32 [n], "scores": float32 [n],
    "masks": bool [H, W, n]} in the original image's pixels.
    """
    count = tf.math.count_nonzero(detections[:, 4] > 0, dtype=tf.int32)
    boxes = detections[:count, :4]
    class_ids = tf.cast(detections[:count, 4], tf.int32)
    scores = detections[:count, 5]
    masks = tf.gather(tf.transpose(mrcnn_mask[:count], [0, 3, 1, 2]), class_ids, axis=1, batch_dims=1)

    # As unmold_detections with numpy's dtypes: the window normalised in float64 and rounded to
    # float32, the boxes moved into it in float32, denormalised in float64.
    norm_window = tf.cast(norm_boxes_graph(window, image_shape, tf.float64), tf.float32)
    shift = tf.gather(norm_window, [0, 1, 0, 1])
    span = tf.gather(norm_window, [2, 3, 2, 3]) - shift
    boxes = denorm_boxes_graph((boxes - shift) / span, original_image_shape, tf.float64)

    keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
    boxes, class_ids = tf.boolean_mask(boxes, keep), tf.boolean_mask(class_ids, keep)
    scores, masks = tf.boolean_mask(scores, keep), tf.boolean_mask(masks, keep)
    height, width = original_image_shape[0], original_image_shape[1]
    # The detection layer clips boxes to the window; clipping again only guards the padding.
    boxes = tf.stack([tf.clip_by_value(boxes[:, 0], 0, height), tf.clip_by_value(boxes[:, 1], 0, width),
                      tf.clip_by_value(boxes[:, 2], 0, height), tf.clip_by_value(boxes[:, 3], 0, width)], axis=1)

    def paste_all():
        return tf.map_fn(lambda item: _paste_mask(item[0], item[1], height, width), (masks, boxes),
                         fn_output_signature=tf.TensorSpec([None, None], tf.bool))

    full = tf.transpose(tf.cond(tf.size(scores) > 0, paste_all, lambda: tf.zeros([0, height, width], tf.bool)),
                        [1, 2, 0])
    if mask_overlap is not None:
        keep = suppress_covered_masks_graph(full, class_ids, scores, mask_overlap)
        boxes, class_ids = tf.boolean_mask(boxes, keep), tf.boolean_mask(class_ids, keep)
        scores, full = tf.boolean_mask(scores, keep), tf.boolean_mask(full, keep, axis=2)
    return {"rois": boxes, "class_ids": class_ids, "scores": scores, "masks": full}
