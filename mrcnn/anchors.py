"""Anchor generation for the feature pyramid (numpy, Matterport's ordering).

Anchors are boxes (y1, x1, y2, x2) in pixels of the resized image. Their order is
part of the model's contract: the RPN head predicts, for every pyramid level, every
feature-map position (row-major) and every anchor shape at that position, and the
targets built by the input pipeline must line up with those predictions row for
row. The order is therefore: level, then position (row-major), then shape (ratio
major, scale minor when a level has several scales), exactly as in Matterport.

The model, the input pipeline and the export take a config's anchors from
:func:`config_anchors` (feature shapes from ``Config.backbone_shapes``, which honours
``COMPUTE_BACKBONE_SHAPE``), through :func:`get_anchors`, which memoises them so that each
image shape is computed once per process.
"""
import functools
import math

import numpy as np

from mrcnn.boxcoords import norm_boxes

__all__ = [
    "generate_anchors",
    "generate_pyramid_anchors",
    "compute_backbone_shapes",
    "get_anchors",
    "config_anchors",
]


def generate_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors of one feature map.

    scales: anchor side(s) in pixels, a number or a 1-D array, e.g. 32 or [32, 64].
        An anchor of scale s and ratio r has area s**2.
    ratios: 1-D array of width / height ratios, e.g. [0.5, 1, 2].
    shape: (height, width) of the feature map.
    feature_stride: pixels of the image per feature-map cell, e.g. 4 for P2.
    anchor_stride: place anchors on every `anchor_stride`-th cell of the feature map.

    Returns: float64 [rows * cols * len(ratios) * len(scales), (y1, x1, y2, x2)] in
    image pixels, ordered by position (row-major), then ratio, then scale. Centres
    are at `cell_index * feature_stride` (the top-left corner of each cell, as in
    Matterport, whose weights were trained with it), so anchors of the first row and
    column reach outside the image.
    """
    # meshgrid(scales, ratios) enumerates ratio-major / scale-minor, Matterport's order.
    scales, ratios = np.meshgrid(np.asarray(scales, dtype=np.float64),
                                 np.asarray(ratios, dtype=np.float64))
    scales = scales.ravel()
    ratios = ratios.ravel()
    heights = scales / np.sqrt(ratios)
    widths = scales * np.sqrt(ratios)

    centers_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    centers_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    centers_y, centers_x = np.meshgrid(centers_y, centers_x, indexing="ij")
    centers = np.stack([centers_y, centers_x], axis=-1).reshape(-1, 1, 2)  # [P, 1, 2]
    sizes = np.stack([heights, widths], axis=-1)[np.newaxis]  # [1, A, 2]

    boxes = np.concatenate([centers - 0.5 * sizes, centers + 0.5 * sizes], axis=-1)  # [P, A, 4]
    return boxes.reshape(-1, 4)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors of every pyramid level, concatenated level by level.

    scales: one entry per level (Matterport's RPN_ANCHOR_SCALES, e.g. (32, 64, 128,
        256, 512) for P2..P6); an entry may itself be a list of scales for that level.
    ratios: 1-D array of width / height ratios, used on every level.
    feature_shapes: [levels, (height, width)] feature-map shapes, e.g. from
        :func:`compute_backbone_shapes`.
    feature_strides: [levels] stride of each level in image pixels.
    anchor_stride: see :func:`generate_anchors`.

    Returns: float64 [num_anchors, (y1, x1, y2, x2)] in image pixels; the anchors of
    scales[0] come first, then those of scales[1], and so on.
    """
    if not len(scales) == len(feature_shapes) == len(feature_strides):
        raise ValueError(
            f"generate_pyramid_anchors needs one scale, one feature shape and one "
            f"stride per pyramid level; got {len(scales)} scales, "
            f"{len(feature_shapes)} feature shapes and {len(feature_strides)} strides")
    return np.concatenate([
        generate_anchors(scale, ratios, shape, stride, anchor_stride)
        for scale, shape, stride in zip(scales, feature_shapes, feature_strides)
    ], axis=0)


def compute_backbone_shapes(image_shape, strides):
    """Feature-map shapes of the backbone levels for an image shape.

    image_shape: (height, width[, channels]) of the (resized, padded) input image.
    strides: [levels] stride of each level, e.g. BACKBONE_STRIDES = [4, 8, 16, 32, 64].

    Returns: int64 [levels, (height, width)], each side ceil(side / stride).
    """
    height, width = image_shape[:2]
    return np.array([[math.ceil(height / stride), math.ceil(width / stride)]
                     for stride in strides], dtype=np.int64)


def get_anchors(image_shape, scales, ratios, strides, anchor_stride, normalized=True, feature_shapes=None):
    """Pyramid anchors for an image shape, computed once per set of arguments.

    image_shape: (height, width[, channels]) of the model's input image.
    scales, ratios, strides, anchor_stride: as in :func:`generate_pyramid_anchors`
        (strides are the anchors' feature strides).
    normalized: if True, return boxes normalised with :func:`mrcnn.boxcoords.norm_boxes`
        (the convention the graph uses); otherwise pixel boxes.
    feature_shapes: [levels, (height, width)] feature-map shapes; None for
        :func:`compute_backbone_shapes` of ``image_shape`` and ``strides`` (the built-in
        backbones' shapes).

    Returns: read-only float32 [num_anchors, (y1, x1, y2, x2)]. The same array object is
    returned to every caller with equal arguments, so copy it before modifying it.
    """
    def as_tuple(values):
        return tuple(as_tuple(v) if np.ndim(v) else float(v) for v in values)

    image_shape = tuple(int(side) for side in image_shape[:2])
    strides = tuple(int(stride) for stride in strides)
    if feature_shapes is None:
        feature_shapes = compute_backbone_shapes(image_shape, strides)
    return _cached_anchors(
        image_shape,
        as_tuple(scales),
        as_tuple(ratios),
        tuple((int(h), int(w)) for h, w in feature_shapes),
        strides,
        int(anchor_stride),
        bool(normalized),
    )


def config_anchors(config, image_shape, normalized=True):
    """:func:`get_anchors` with a config's settings for a molded image of ``image_shape``.

    The feature shapes are ``config.backbone_shapes(image_shape)``: the built-in backbones'
    ceil(side / stride), or ``COMPUTE_BACKBONE_SHAPE(image_shape)`` for a callable BACKBONE
    (as Matterport's ``compute_backbone_shapes``).
    """
    return get_anchors(image_shape, config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES,
                       config.RPN_ANCHOR_STRIDE, normalized=normalized,
                       feature_shapes=config.backbone_shapes(image_shape))


@functools.lru_cache(maxsize=16)
def _cached_anchors(image_shape, scales, ratios, feature_shapes, strides, anchor_stride, normalized):
    anchors = generate_pyramid_anchors(scales, ratios, feature_shapes, strides, anchor_stride)
    if normalized:
        anchors = norm_boxes(anchors, image_shape)
    anchors = anchors.astype(np.float32)
    anchors.setflags(write=False)
    return anchors
