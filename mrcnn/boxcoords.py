"""Matterport's normalised box coordinates in numpy: the one definition, with no mrcnn imports.

Boxes are (y1, x1, y2, x2). In pixels y2 and x2 are exclusive; normalised,
``norm = (b - [0, 0, 1, 1]) / [h - 1, w - 1, h - 1, w - 1]``. Matterport chose this
convention, and its graph code and trained weights rely on it: tf.image.crop_and_resize
reads a normalised coordinate c at pixel c * (size - 1), i.e. 0.0 and 1.0 are the centres
of the first and last pixels. The exclusive pixel corners y2/x2 are therefore moved onto
the last pixel inside the box (-1) before dividing by size - 1, so that crops sample
exactly the box's pixels.

:mod:`mrcnn.utils` re-exports :func:`norm_boxes` and :func:`denorm_boxes` under
Matterport's names; the graph versions are :func:`mrcnn.boxes.norm_boxes_graph` and
:func:`mrcnn.boxes.denorm_boxes_graph`. This module imports only numpy, so that every
module (anchors, utils, leafseg's tools) can use it without an import cycle.
"""
import numpy as np

__all__ = ["NORM_SHIFT", "norm_scale", "norm_boxes", "denorm_boxes", "denorm_boxes_float"]

# Added to normalised boxes after scaling (subtracted from pixel boxes before it).
NORM_SHIFT = np.array([0, 0, 1, 1])


def norm_scale(shape):
    """The divisors of an image shape (height, width[, channels]): int [h - 1, w - 1, h - 1, w - 1]."""
    h, w = shape[:2]
    return np.array([h - 1, w - 1, h - 1, w - 1])


def norm_boxes(boxes, shape):
    """Pixel boxes -> normalised boxes (Matterport's shift-by-one convention).

    boxes: [..., (y1, x1, y2, x2)] in pixels, y2/x2 exclusive.
    shape: (height, width[, channels]) of the image in pixels.

    Returns: float32 [..., (y1, x1, y2, x2)], (boxes - [0, 0, 1, 1]) /
    [h - 1, w - 1, h - 1, w - 1]: in normalised coordinates y2/x2 are inside the box.
    """
    return ((np.asarray(boxes) - NORM_SHIFT) / norm_scale(shape)).astype(np.float32)


def denorm_boxes_float(boxes, shape):
    """Normalised boxes -> float64 pixel coordinates, not rounded (for drawing).

    boxes: [..., (y1, x1, y2, x2)] normalised; shape: (height, width[, channels]).
    """
    return np.asarray(boxes, np.float64) * norm_scale(shape) + NORM_SHIFT


def denorm_boxes(boxes, shape):
    """Normalised boxes -> pixel boxes; the inverse of :func:`norm_boxes`.

    boxes: [..., (y1, x1, y2, x2)] normalised.
    shape: (height, width[, channels]) of the image in pixels.

    Returns: int32 [..., (y1, x1, y2, x2)] in pixels (rounded), y2/x2 exclusive.
    """
    return np.around(denorm_boxes_float(boxes, shape)).astype(np.int32)
