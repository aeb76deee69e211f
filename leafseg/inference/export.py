"""Export trained leaf weights as a TensorFlow SavedModel for serving, and check it.

    leafseg export --weights run/mask_rcnn_leaf_0040.weights.h5 --out exported/leaf
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
"""
from __future__ import annotations



__all__ = ["check_images"]


def check_images(config, paths=()):
    """The images the export is checked on: ``paths`` read as RGB, or two generated rosettes."""
    from leafseg.inference.predict import read_image
    from leafseg.synth.rosettes import generate_rosette

    if paths:
        return [read_image(path) for path in paths]
    side = int(config.IMAGE_MAX_DIM or config.IMAGE_MIN_DIM or 256)
    return [generate_rosette(0, side).image, generate_rosette(1, (side * 3 // 4 + 1, side)).image]
