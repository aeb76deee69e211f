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
original image and paste each mask into a full-size boolean mask (``utils.unmold_mask``); these
graph versions are in :mod:`mrcnn.transform`, beside the numpy ones. So a user needs neither
this library's preprocessing nor its config to use the model. The pre- and post-processing
reproduce numpy's results bit for bit (the float64 arithmetic is done in the same order); the
network itself runs in a different graph, whose float32 results differ in the last bits
(scores by up to about 1e-4), so :func:`check_saved_model` compares detections with small
tolerances.

Why one image, not a batch: images of different sizes do not stack, and the masks come back at
each image's own size. Resize modes "square", "pad64" and "none" are exported; "crop" takes
random crops and is for training only (a callable BACKBONE: "square" only, see
:func:`mrcnn.transform.check_exportable`). The config is written beside the model
(``config.yaml`` in the SavedModel folder) for reference; the graph does not read it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from mrcnn.fileio import atomic_folder
from mrcnn.nms import plain_ops
from mrcnn.transform import (EXPORTABLE_RESIZE_MODES, anchors_graph, check_exportable, mold_image_graph,
                             unmold_detections_graph)

__all__ = ["mold_image_graph", "anchors_graph", "unmold_detections_graph", "make_serving_function",
           "export_saved_model", "load_saved_model", "compare_detections", "check_saved_model",
           "OUTPUT_NAMES", "EXPORTABLE_RESIZE_MODES", "WRONG_DTYPE_ADVICE", "REFUSED_DTYPES"]

OUTPUT_NAMES = ("rois", "class_ids", "scores", "masks")
WRONG_DTYPE_ADVICE = ("pass a uint8 RGB image (0-255); convert with np.clip(image, 0, 255).astype(np.uint8), "
                      "after multiplying by 255 if its values are in [0, 1]")
# Input dtypes the serving function has a trace for that refuses them with WRONG_DTYPE_ADVICE
# (any other dtype meets TensorFlow's own "could not find matching concrete function").
REFUSED_DTYPES = (tf.float16, tf.float32, tf.float64, tf.int32, tf.int64, tf.uint16, tf.int8, tf.int16)


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
    check_exportable(config)

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
                                       tf.shape(molded), window, config.DETECTION_MASK_OVERLAP_THRESHOLD)

    with plain_ops():  # no CombinedNonMaxSuppression in the graph: OpenVINO can convert it
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

    serve = make_serving_function(model)
    with atomic_folder(path, overwrite) as tmp, plain_ops():
        archive = ExportArchive()
        archive.track(model.keras_model)
        archive.add_endpoint("serve", serve)
        archive.write_out(str(tmp), verbose=False)
        model.config.to_yaml(tmp / "config.yaml")
    return Path(path)


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
