"""Export an inference MaskRCNN as a TensorFlow SavedModel: one image in, its detections out.

    model = MaskRCNN(mode="inference", config=config, model_dir="logs")
    model.load_weights("mask_rcnn_model.weights.h5")
    export_saved_model(model, "exported/model")

    # Anywhere with TensorFlow (no mrcnn, no Keras needed to run it):
    served = tf.saved_model.load("exported/model")
    r = served.serve(tf.constant(image))          # image: uint8 [H, W, 3] (RGB), any size
    # r["rois"] int32 [N, (y1, x1, y2, x2)], r["class_ids"] int32 [N], r["scores"] float32 [N],
    # r["masks"] bool [H, W, N]: what MaskRCNN.detect([image])[0] returns.

Input dtype: the model takes uint8 images only, the pixels it was trained on. A float or other
integer image (float16/32/64, int32, int64, uint16, any channel count) is refused with an
InvalidArgumentError that names its dtype and says how to convert it
(:data:`WRONG_DTYPE_ADVICE`), rather than guessed at: a float image may be in [0, 1] or
[0, 255], and guessing wrong gives detections on a black image. ``load_saved_model``'s
``detect`` raises a ValueError with the same advice before calling the model.

The serving function (endpoint ``serve``, also the ``serving_default`` signature for TF
Serving) does in the graph what :meth:`MaskRCNN.detect` does around the Keras model in numpy:
resize and pad the image as ``utils.resize_image`` does (the same bilinear weights, zero
border and clipping as scikit-image, rounded to uint8), subtract MEAN_PIXEL, compose the image
meta, generate the anchors of the molded size, run the model, then map boxes back to the
original image and paste each mask into a full-size boolean mask (``utils.unmold_mask``). So
a user needs neither this library's preprocessing nor its config to use the model. The pre-
and post-processing reproduce numpy's results bit for bit (the float64 arithmetic is done in
the same order); the network itself runs in a different graph, whose float32 results differ
in the last bits (scores by up to about 1e-4), so :func:`check_saved_model` compares
detections with small tolerances.

Why one image, not a batch: images of different sizes do not stack, and the masks come back at
each image's own size. Resize modes "square", "pad64" and "none" are exported; "crop" takes
random crops and is for training only. The config is written beside the model
(``config.yaml`` in the SavedModel folder) for reference; the graph does not read it.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import tensorflow as tf

__all__ = ["mold_image_graph", "anchors_graph", "unmold_detections_graph", "make_serving_function",
           "export_saved_model", "load_saved_model", "compare_detections", "check_saved_model",
           "OUTPUT_NAMES", "EXPORTABLE_RESIZE_MODES", "WRONG_DTYPE_ADVICE", "REFUSED_DTYPES"]

OUTPUT_NAMES = ("rois", "class_ids", "scores", "masks")
WRONG_DTYPE_ADVICE = ("pass a uint8 RGB image (0-255); convert with np.clip(image, 0, 255).astype(np.uint8), "
                      "after multiplying by 255 if its values are in [0, 1]")
# Input dtypes the serving function has a trace for that refuses them with WRONG_DTYPE_ADVICE
# (any other dtype meets TensorFlow's own "could not find matching concrete function").
REFUSED_DTYPES = (tf.float16, tf.float32, tf.float64, tf.int32, tf.int64, tf.uint16, tf.int8, tf.int16)
EXPORTABLE_RESIZE_MODES = ("square", "pad64", "none")
# Matterport's normalised-box convention (utils.norm_boxes): y2 / x2 move one pixel inside.
_NORM_SHIFT = np.array([0.0, 0.0, 1.0, 1.0])


############################################################
#  Resizing, as scikit-image's resize(order=1, mode="constant", cval=0, clip=True)
############################################################

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
#  Molding and anchors
############################################################

def _check_exportable(config):
    if config.IMAGE_RESIZE_MODE not in EXPORTABLE_RESIZE_MODES:
        raise ValueError(f"IMAGE_RESIZE_MODE = {config.IMAGE_RESIZE_MODE!r} cannot be exported: it takes random "
                         f"crops (training only); use one of {', '.join(EXPORTABLE_RESIZE_MODES)} for inference")


def mold_image_graph(image, config):
    """The graph version of ``MaskRCNN.mold_inputs`` for one image.

    image: uint8 [H, W, C] (C = IMAGE_CHANNEL_COUNT), any H and W.

    Returns: (molded float32 [h, w, C], image_meta float32 [12 + NUM_CLASSES],
    window int32 [(y1, x1, y2, x2)] of the image inside the molded one).
    """
    _check_exportable(config)
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
    ``mrcnn.anchors.get_anchors`` (level, position row-major, ratio, scale), float64 until the end.
    """
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
    scale = tf.stack([height - 1, width - 1, height - 1, width - 1])
    return tf.cast((boxes - _NORM_SHIFT) / scale, tf.float32)


############################################################
#  Unmolding
############################################################

def _paste_mask(mask, box, height, width):
    """``utils.unmold_mask`` in the graph: float32 [mh, mw] into bool [height, width] at box."""
    y1, x1, y2, x2 = box[0], box[1], box[2], box[3]
    resized = _resize_2d(tf.cast(mask, tf.float64), y2 - y1, x2 - x1)
    # skimage resizes a float32 mask into float32: round there before the threshold.
    inside = tf.cast(resized, tf.float32) >= 0.5
    return tf.pad(inside, [[y1, height - y2], [x1, width - x2]])


def unmold_detections_graph(detections, mrcnn_mask, original_image_shape, image_shape, window):
    """The graph version of ``MaskRCNN.unmold_detections`` (same arguments, one image).

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

    # As utils.norm_boxes / denorm_boxes with numpy's dtypes: the window normalised in float64
    # and rounded to float32, the boxes moved into it in float32, denormalised in float64.
    molded_hw = tf.cast(image_shape[:2], tf.float64)
    window = tf.cast(window, tf.float64)
    norm_window = tf.cast((window - _NORM_SHIFT) / tf.concat([molded_hw - 1, molded_hw - 1], 0), tf.float32)
    shift = tf.gather(norm_window, [0, 1, 0, 1])
    span = tf.gather(norm_window, [2, 3, 2, 3]) - shift
    boxes = (boxes - shift) / span
    original_hw = tf.cast(original_image_shape[:2], tf.float64)
    boxes = tf.round(tf.cast(boxes, tf.float64) * tf.concat([original_hw - 1, original_hw - 1], 0) + _NORM_SHIFT)
    boxes = tf.cast(boxes, tf.int32)

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

    full = tf.cond(tf.size(scores) > 0, paste_all, lambda: tf.zeros([0, height, width], tf.bool))
    return {"rois": boxes, "class_ids": class_ids, "scores": scores, "masks": tf.transpose(full, [1, 2, 0])}


############################################################
#  Serving function, export, reload, check
############################################################

def _empty_detections():
    return {"rois": tf.zeros([0, 4], tf.int32), "class_ids": tf.zeros([0], tf.int32),
            "scores": tf.zeros([0], tf.float32), "masks": tf.zeros([0, 0, 0], tf.bool)}


def make_serving_function(model):
    """A ``tf.function`` taking a uint8 [H, W, C] image and returning its detections.

    model: an inference-mode ``mrcnn.model.MaskRCNN`` (its ``keras_model`` and ``config``).
    Returns: the function, traced for uint8 [None, None, C] images (its first concrete
    function, the ``serving_default`` signature, input named "image"); its outputs are those
    of :func:`unmold_detections_graph`. It is also traced for each of :data:`REFUSED_DTYPES`,
    traces that only raise InvalidArgumentError "... got <dtype>: <WRONG_DTYPE_ADVICE>", so a
    float image gets that message from the SavedModel too instead of a binding error.
    """
    if model.mode != "inference":
        raise ValueError(f"export needs a MaskRCNN in inference mode, got mode {model.mode!r}")
    config, net = model.config, model.keras_model
    _check_exportable(config)

    @tf.function(autograph=False)
    def serve(image):
        if image.dtype != tf.uint8:  # decided when tracing: one trace per refused dtype
            message = f"the exported model takes uint8 images, got {image.dtype.name}: {WRONG_DTYPE_ADVICE}"
            with tf.control_dependencies([tf.debugging.Assert(tf.constant(False), [message])]):
                return {name: tf.identity(value) for name, value in _empty_detections().items()}
        molded, meta, window = mold_image_graph(image, config)
        anchors = anchors_graph(tf.shape(molded), config)
        outputs = net([molded[tf.newaxis], meta[tf.newaxis], anchors[tf.newaxis]], training=False)
        return unmold_detections_graph(outputs["detections"][0], outputs["mrcnn_mask"][0], tf.shape(image),
                                       tf.shape(molded), window)

    serve.get_concrete_function(tf.TensorSpec([None, None, config.IMAGE_CHANNEL_COUNT], tf.uint8, name="image"))
    for dtype in REFUSED_DTYPES:
        serve.get_concrete_function(tf.TensorSpec([None, None, None], dtype, name="image"))
    return serve


def export_saved_model(model, path, overwrite=False):
    """Write ``model`` as a SavedModel folder at ``path`` (see the module docstring).

    The folder is written beside ``path`` under a temporary name and renamed into place, so
    ``path`` is never a half-written model. ``overwrite=False`` refuses an existing ``path``.
    Returns the path.
    """
    from keras.export import ExportArchive

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another folder or pass overwrite=True")
    serve = make_serving_function(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        archive = ExportArchive()
        archive.track(model.keras_model)
        archive.add_endpoint("serve", serve)
        archive.write_out(str(tmp), verbose=False)
        model.config.to_yaml(tmp / "config.yaml")
        if path.exists():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_saved_model(path):
    """Reload an exported model; returns ``detect(image) -> dict of numpy arrays``.

    The dict has MaskRCNN.detect's keys and types: rois int32 [N, 4], class_ids int32 [N],
    scores float32 [N], masks bool [H, W, N].
    """
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{path} is not a SavedModel folder (no saved_model.pb)")
    served = tf.saved_model.load(str(path))

    def detect(image):
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise ValueError(f"the exported model takes uint8 images, got {image.dtype}: {WRONG_DTYPE_ADVICE}")
        outputs = served.serve(tf.constant(image))
        return {name: outputs[name].numpy() for name in OUTPUT_NAMES}

    detect.saved_model = served
    return detect


def compare_detections(expected, actual, box_tolerance=1, score_tolerance=1e-3, mask_tolerance=0.01):
    """Differences between two detection dicts (MaskRCNN.detect's), as readable strings.

    Each expected detection is paired with the unpaired actual one of its class with the
    nearest box (then score), so two detections of nearly equal score may come in either
    order. A pair may differ by ``box_tolerance`` pixels in each box coordinate, by
    ``score_tolerance`` in score, and in at most ``mask_tolerance`` of its box's mask pixels.
    The defaults allow for float32 results that depend on how the graph is fused and ordered
    (scores move by about 1e-4 between two graphs of the same model); the preprocessing itself
    matches numpy exactly.

    Returns: [] when they agree.
    """
    n_expected, n_actual = len(expected["scores"]), len(actual["scores"])
    if n_expected != n_actual:
        return [f"{n_expected} detections expected, {n_actual} found"]
    if expected["masks"].shape != actual["masks"].shape:
        return [f"mask shapes differ: {expected['masks'].shape} expected, {actual['masks'].shape} found"]
    problems = []
    free = list(range(n_actual))
    for i in range(n_expected):
        candidates = [j for j in free if actual["class_ids"][j] == expected["class_ids"][i]]
        if not candidates:
            problems.append(f"detection {i} (class {expected['class_ids'][i]}): no detection of its class left")
            continue
        gaps = [(int(np.abs(expected["rois"][i].astype(np.int64) - actual["rois"][j]).max()),
                 abs(float(expected["scores"][i]) - float(actual["scores"][j])), j) for j in candidates]
        box_gap, score_gap, j = min(gaps)
        free.remove(j)
        if box_gap > box_tolerance:
            problems.append(f"detection {i}: box {expected['rois'][i].tolist()} expected, nearest "
                            f"{actual['rois'][j].tolist()} ({box_gap} px > {box_tolerance})")
        if score_gap > score_tolerance:
            problems.append(f"detection {i}: score {expected['scores'][i]:.6f} expected, "
                            f"{actual['scores'][j]:.6f} found (tolerance {score_tolerance:g})")
        y1, x1, y2, x2 = expected["rois"][i]
        area = max(1, int(y2 - y1) * int(x2 - x1))
        differing = int(np.count_nonzero(expected["masks"][..., i] != actual["masks"][..., j]))
        if differing > mask_tolerance * area:
            problems.append(f"detection {i}: {differing} of its {area} box pixels differ in the mask")
    return problems


def check_saved_model(model, path, images, **tolerances):
    """Reload the SavedModel at ``path`` and compare it with ``model.detect`` on ``images``.

    Returns: one list of :func:`compare_detections` problems per image (all empty when the
    export is faithful).
    """
    detect = load_saved_model(path)
    report = []
    for image in images:
        image = np.asarray(image)
        report.append(compare_detections(model.detect([image])[0], detect(image), **tolerances))
    return report
