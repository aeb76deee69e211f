"""Export trained leaf weights as a TensorFlow SavedModel or as OpenVINO IR, and check it.

    leafseg export --weights run/mask_rcnn_leaf_0040.weights.h5 --out exported/leaf
    leafseg export --weights run/ --format openvino --out exported/leaf_ov
    python scripts/export.py ...          # the same command

The SavedModel takes one uint8 RGB image [H, W, 3] of any size and returns the detections in
that image's pixels, exactly what ``MaskRCNN.detect`` returns (rois, class_ids, scores, masks
bool [H, W, N]); see ``mrcnn.export`` for what happens inside. Load it with TensorFlow alone::

    served = tf.saved_model.load("exported/leaf")
    r = served.serve(tf.constant(image))            # or served.signatures["serving_default"](image=...)

Only uint8 images are taken: a float image is refused with an error naming its dtype and saying
how to convert it (``np.clip(image, 0, 255).astype(np.uint8)``, after ``* 255`` for values in
[0, 1]), never silently rescaled.

After writing, the command reloads the SavedModel and compares its detections with the Keras
model's on check images (``--check-image``, default: two generated rosettes, one square and one
not, so the resizing is exercised); the exit status is 1 when they differ, 2 on a usage or
model error. ``--min-score`` is baked into the export (the DETECTION_MIN_CONFIDENCE of the
graph). Weights and config are found as for ``leafseg predict``.

``--format openvino`` writes the network's convolutions as OpenVINO IR instead (``model.xml``,
``model.bin``, ``classifier.xml``, ``mask.xml``, float32; the weights and ``config.yaml``;
``pip install 'leafseg[openvino]'``): molding, anchors and unmolding stay in numpy, so it is
read back with mrcnn::

    from mrcnn.openvino import load_openvino
    r = load_openvino("exported/leaf_ov").detect([image])[0]    # what MaskRCNN.detect returns

The same check follows (OpenVINO in f32 against the Keras model in TensorFlow).
"""
from __future__ import annotations



__all__ = ["check_images", "write_export", "check_export", "FORMATS"]

FORMATS = ("savedmodel", "openvino")


def write_export(model, path, format="savedmodel", overwrite=False):
    """Write ``model`` to the folder ``path`` as ``format`` ("savedmodel" or "openvino"); returns the path."""
    if format == "savedmodel":
        from mrcnn.export import export_saved_model

        return export_saved_model(model, path, overwrite=overwrite)
    if format == "openvino":
        from mrcnn.openvino import export_openvino

        return export_openvino(model, path, overwrite=overwrite)
    raise ValueError(f"export format {format!r}: choose one of {', '.join(FORMATS)}")


def check_export(model, path, images, format="savedmodel"):
    """Reload the export at ``path`` and compare it with ``model.detect`` on ``images``: one list of
    problems per image (:func:`mrcnn.export.compare_detections`), all empty when it is faithful."""
    if format == "savedmodel":
        from mrcnn.export import check_saved_model

        return check_saved_model(model, path, images)
    from mrcnn.openvino import check_openvino

    return check_openvino(model, path, images)


def check_images(config, paths=()):
    """The images the export is checked on: ``paths`` read as RGB, or two generated rosettes."""
    from leafseg.inference.predict import read_image
    from leafseg.synth.rosettes import generate_rosette

    if paths:
        return [read_image(path) for path in paths]
    side = int(config.IMAGE_MAX_DIM or config.IMAGE_MIN_DIM or 256)
    return [generate_rosette(0, side).image, generate_rosette(1, (side * 3 // 4 + 1, side)).image]
