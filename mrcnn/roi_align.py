"""Pyramid ROIAlign: crop a fixed-size feature patch for every box from its pyramid level.

The crops come from :func:`mrcnn.crop.pyramid_crop_and_resize`: tf.image.crop_and_resize per
level in TensorFlow's graph; while XLA compiles (``jit_compile=True``), which knows neither the
CropAndResize op nor the per-level dynamic box counts, one gather for all boxes of all levels
with fixed shapes, which gives the op's values and gradients.
"""
import keras
import tensorflow as tf

from mrcnn.boxes import parse_image_meta_graph
from mrcnn.crop import pyramid_crop_and_resize

__all__ = ["PyramidROIAlign", "roi_pyramid_levels"]

# Pyramid levels the boxes are assigned to: P2..P5 (P6 feeds only the RPN).
MIN_LEVEL, MAX_LEVEL = 2, 5
# The FPN paper's canonical ImageNet box side (224 px) and the level it maps to.
CANONICAL_SIZE, CANONICAL_LEVEL = 224.0, 4


def roi_pyramid_levels(boxes, image_meta):
    """Pyramid level of every box (Matterport's formula, eq. 1 of the FPN paper).

    boxes: float [B, N, (y1, x1, y2, x2)] normalised; zero rows (padding) are allowed.
    image_meta: float [B, 12 + NUM_CLASSES]; the image height and width are read from it.

    Returns: int32 [B, N], ``clip(4 + round(log2(sqrt(h * w) / (224 / sqrt(image_area)))), 2, 5)``
        with h, w the normalised box sides, i.e. the box's side in pixels relative to 224.
        ``round`` is TensorFlow's (halves to even). Empty boxes get level 2.
    """
    boxes = tf.cast(boxes, tf.float32)
    image_shape = parse_image_meta_graph(image_meta)["image_shape"]  # [B, (h, w, c)] molded image
    image_side = tf.sqrt(image_shape[:, 0] * image_shape[:, 1])[:, tf.newaxis]  # [B, 1]
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # [B, N]
    # The floor keeps log2 finite for empty boxes (log2(0) would be -inf, and casting -inf to
    # an integer is undefined); any box that small goes to the finest level anyway.
    side = tf.sqrt(tf.maximum(area, 1e-12)) * image_side / CANONICAL_SIZE
    level = CANONICAL_LEVEL + tf.cast(tf.round(tf.math.log(side) / tf.math.log(2.0)), tf.int32)
    return tf.clip_by_value(level, MIN_LEVEL, MAX_LEVEL)


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(keras.layers.Layer):
    """ROIAlign on a feature pyramid (a bilinear crop-and-resize per box).

    Call: ``PyramidROIAlign(pool_shape)(boxes, image_meta, [P2, P3, P4, P5])``

    pool_shape: output (height, width), or one int for a square.
    boxes: float [B, N, (y1, x1, y2, x2)] normalised (Matterport's convention, in which
        crop_and_resize samples the pixel centres 0 .. side - 1); zero-padded rows give
        finite values (the value at the top-left cell of P2), which the heads ignore.
    image_meta: float [B, 12 + NUM_CLASSES], for the image size in the level formula.
    feature_maps: [P2, P3, P4, P5], each [B, h_l, w_l, C] with the same C.

    Returns: [B, N, pool_h, pool_w, C] in the layer's compute dtype, in the order of
    ``boxes``. Boxes are assigned to levels by :func:`roi_pyramid_levels`. No gradient flows
    into the boxes (as in Matterport: the box regressors are trained by their own losses).
    The values and the gradient into the maps are ``tf.image.crop_and_resize``'s on each
    box's level (:func:`mrcnn.crop.pyramid_crop_and_resize`: the op, or under XLA plain ops
    that give its results).
    Inputs are not cast to the compute dtype (``autocast=False``): under mixed precision the
    boxes and image_meta are read in float32 (float16 rounds a box edge by up to 1/4096 of
    the image side, a quarter of a pixel of a 1024-pixel image, bfloat16 by up to 1/512).
    The maps are cast to float32 for the crops: ``crop_and_resize`` interpolates and returns
    float32 whatever it is given and takes no bfloat16 input at all (a TypeError when the
    graph is built under ``mixed_bfloat16``), and the gather path used under XLA interpolates
    in float32 too; from float16 or bfloat16 the cast is exact.
    """

    def __init__(self, pool_shape, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if isinstance(pool_shape, int):
            pool_shape = (pool_shape, pool_shape)
        self.pool_shape = tuple(int(side) for side in pool_shape)

    def call(self, boxes, image_meta, feature_maps):
        if len(feature_maps) != MAX_LEVEL - MIN_LEVEL + 1:
            raise ValueError(f"{self.name}: expected the feature maps [P2, P3, P4, P5], got {len(feature_maps)} maps")
        boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
        batch, count = tf.shape(boxes)[0], tf.shape(boxes)[1]
        flat_boxes = tf.reshape(boxes, [-1, 4])  # [B * N, 4]
        image_index = tf.repeat(tf.range(batch), count)  # [B * N]
        levels = tf.reshape(roi_pyramid_levels(boxes, image_meta), [-1]) - MIN_LEVEL  # [B * N], 0 = P2
        maps = [tf.cast(feature_map, tf.float32) for feature_map in feature_maps]
        pooled = pyramid_crop_and_resize(maps, flat_boxes, image_index, levels, self.pool_shape)
        shape = tf.concat([[batch, count], self.pool_shape, tf.shape(pooled)[-1:]], axis=0)
        return tf.cast(tf.reshape(pooled, shape), self.compute_dtype)

    def compute_output_shape(self, boxes_shape, image_meta_shape, feature_maps_shape):
        return (boxes_shape[0], boxes_shape[1], *self.pool_shape, feature_maps_shape[0][-1])

    def get_config(self):
        return {**super().get_config(), "pool_shape": self.pool_shape}
