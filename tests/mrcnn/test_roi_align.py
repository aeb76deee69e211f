"""Pyramid ROIAlign: level assignment, values of hand-placed boxes, a numpy reference, padding."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.roi_align import PyramidROIAlign, roi_pyramid_levels

NUM_CLASSES = 3


def image_meta(*shapes):
    """Meta rows with only the molded image shape filled in (columns 4..6)."""
    meta = np.zeros((len(shapes), 12 + NUM_CLASSES), np.float32)
    for row, (height, width) in enumerate(shapes):
        meta[row, 4:7] = height, width, 3
    return meta


def pyramid(batch, side, channels, rng):
    """Random P2..P5 with sides side, side / 2, side / 4, side / 8."""
    return [rng.normal(size=(batch, side >> i, side >> i, channels)).astype(np.float32) for i in range(4)]


def roi_align(pool_shape, boxes, meta, maps):
    out = PyramidROIAlign(pool_shape)(tf.constant(boxes, tf.float32), tf.constant(meta), [tf.constant(m) for m in maps])
    return out.numpy()


def test_levels_by_hand():
    side = 1024
    # Square boxes of 56, 112, 224, 448 and 1024 pixels, one 8 pixels, one 112 x 448, one empty.
    pixels = [(56, 56), (112, 112), (224, 224), (448, 448), (1024, 1024), (8, 8), (112, 448), (0, 0)]
    boxes = np.array([[[0, 0, h / side, w / side] for h, w in pixels]], np.float32)
    levels = roi_pyramid_levels(boxes, image_meta((side, side))).numpy()
    expected = [4 + round(math.log2(56 / 224)),   # 2
                4 + round(math.log2(112 / 224)),  # 3
                4 + round(math.log2(224 / 224)),  # 4
                4 + round(math.log2(448 / 224)),  # 5
                5,                                # 4 + round(log2(1024 / 224)) = 6, clipped
                2,                                # 4 + round(log2(8 / 224)) = -1, clipped
                4 + round(math.log2(math.sqrt(112 * 448) / 224)),  # 4
                2]                                # empty: the finest level
    assert expected[:4] == [2, 3, 4, 5] and expected[6] == 4
    np.testing.assert_array_equal(levels, [expected])


def test_levels_use_each_images_size():
    """The same normalised box is 224 px in a 1024 image and 112 px in a 512 image."""
    box = [0.25, 0.25, 0.25 + 224 / 1024, 0.25 + 224 / 1024]
    levels = roi_pyramid_levels(np.array([[box], [box]], np.float32), image_meta((1024, 1024), (512, 512)))
    np.testing.assert_array_equal(levels.numpy(), [[4], [4 + round(math.log2(112 / 224))]])


def test_boxes_on_feature_cells_return_those_cells(rng):
    """Normalised coordinate c samples pixel c * (side - 1), so a box whose corners sit on cell
    centres, with pool size equal to its extent in cells, returns the cells themselves."""
    maps = pyramid(2, 16, 3, rng)  # P2 16x16, P3 8x8, P4 4x4, P5 2x2
    # With a 784 x 784 image a box of normalised side 1/7 is 784 / 7 = 112 px: level 3.
    on_p3 = [2 / 7, 4 / 7, 3 / 7, 5 / 7]  # rows 2..3, columns 4..5 of the 8x8 P3
    # Side 1/15 is 784 / 15 = 52 px: 4 + round(log2(52.3 / 224)) = 4 + round(-2.1) = level 2.
    on_p2 = [5 / 15, 0, 6 / 15, 1 / 15]  # rows 5..6, columns 0..1 of P2
    # The whole image: 4 + round(log2(784 / 224)) = 6, clipped to 5; P5 is 2x2.
    on_p5 = [0, 0, 1, 1]
    padding = [0, 0, 0, 0]
    boxes = np.array([[on_p3, padding, on_p5, on_p2]] * 2, np.float32)
    meta = image_meta((784, 784), (784, 784))
    np.testing.assert_array_equal(roi_pyramid_levels(boxes, meta).numpy(), [[3, 2, 5, 2]] * 2)

    out = roi_align((2, 2), boxes, meta, maps)
    assert out.shape == (2, 4, 2, 2, 3)
    for image in range(2):
        np.testing.assert_allclose(out[image, 0], maps[1][image, 2:4, 4:6], atol=1e-5)
        np.testing.assert_allclose(out[image, 2], maps[3][image], atol=1e-5)
        np.testing.assert_allclose(out[image, 3], maps[0][image, 5:7, 0:2], atol=1e-5)
        # A zero box samples the top-left cell of P2 at every output position.
        np.testing.assert_allclose(out[image, 1], np.broadcast_to(maps[0][image, 0, 0], (2, 2, 3)), atol=1e-6)


def reference_roi_align(boxes, meta, maps, pool_shape):
    """Plain numpy: Matterport's level formula and crop_and_resize's bilinear sampling."""
    batch, count = boxes.shape[:2]
    out = np.zeros((batch, count, *pool_shape, maps[0].shape[-1]), np.float32)
    for b in range(batch):
        image_side = math.sqrt(meta[b, 4] * meta[b, 5])
        for n in range(count):
            y1, x1, y2, x2 = boxes[b, n].astype(np.float64)
            side = math.sqrt(max((y2 - y1) * (x2 - x1), 1e-12)) * image_side / 224
            level = min(5, max(2, 4 + int(np.round(math.log2(side)))))
            fmap = maps[level - 2][b].astype(np.float64)
            height, width = fmap.shape[:2]
            for i in range(pool_shape[0]):
                y = y1 * (height - 1) + i * (y2 - y1) * (height - 1) / (pool_shape[0] - 1)
                for j in range(pool_shape[1]):
                    x = x1 * (width - 1) + j * (x2 - x1) * (width - 1) / (pool_shape[1] - 1)
                    y0, x0 = int(math.floor(y)), int(math.floor(x))
                    y1_, x1_ = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
                    dy, dx = y - y0, x - x0
                    out[b, n, i, j] = ((1 - dy) * (1 - dx) * fmap[y0, x0] + (1 - dy) * dx * fmap[y0, x1_]
                                       + dy * (1 - dx) * fmap[y1_, x0] + dy * dx * fmap[y1_, x1_])
    return out


def test_random_boxes_match_numpy_reference(rng):
    maps = pyramid(2, 32, 4, rng)
    # Box sides from 2 % to 100 % of a 1024 x 1024 image: 20 px to 1024 px, all four levels.
    sides = np.exp(rng.uniform(np.log(0.02), 0, size=(2, 24, 2)))
    corners = rng.uniform(0, 1 - sides)
    boxes = np.concatenate([corners, corners + sides], axis=-1).astype(np.float32)  # y1, x1, y2, x2
    boxes[1, -3:] = 0  # padding rows of the second image
    meta = image_meta((1024, 1024), (1024, 1024))
    levels = roi_pyramid_levels(boxes, meta).numpy()
    assert set(levels[0].tolist()) == {2, 3, 4, 5}
    out = roi_align((3, 4), boxes, meta, maps)
    np.testing.assert_allclose(out, reference_roi_align(boxes, meta, maps, (3, 4)), atol=1e-4)


def test_padding_boxes_give_finite_values_and_gradients(rng):
    maps = [tf.constant(m) for m in pyramid(2, 16, 2, rng)]
    boxes = tf.zeros((2, 5, 4))
    layer = PyramidROIAlign(7)
    with tf.GradientTape() as tape:
        tape.watch(maps)
        out = layer(boxes, tf.constant(image_meta((64, 64), (64, 64))), maps)
        loss = tf.reduce_sum(out * out)
    grads = tape.gradient(loss, maps)
    assert out.shape == (2, 5, 7, 7, 2) and np.isfinite(out.numpy()).all()
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    # Every padding box reads P2 only.
    assert np.abs(grads[0].numpy()).sum() > 0 and all(np.abs(g.numpy()).sum() == 0 for g in grads[1:])


def test_symbolic_shape_and_config_round_trip():
    boxes = keras.Input((None, 4))
    meta = keras.Input((12 + NUM_CLASSES,))
    maps = [keras.Input((None, None, 8)) for _ in range(4)]
    layer = PyramidROIAlign((7, 5), name="roi_align_classifier")
    assert tuple(layer(boxes, meta, maps).shape) == (None, None, 7, 5, 8)
    clone = PyramidROIAlign.from_config(layer.get_config())
    assert clone.pool_shape == (7, 5) and clone.name == "roi_align_classifier"


def test_wrong_number_of_maps_is_an_error(rng):
    maps = [tf.constant(m) for m in pyramid(1, 16, 2, rng)]
    with pytest.raises(ValueError, match="P2, P3, P4, P5"):
        PyramidROIAlign(7)(tf.zeros((1, 2, 4)), tf.constant(image_meta((64, 64))), maps[:3])


def test_mixed_precision_reads_the_boxes_in_float32():
    """Under mixed_float16 the boxes are not rounded to float16 (by up to 1/4096 of the image side).

    P2 holds its column index minus 31, so a 1 x 1 crop at column x reads x - 31; 0.50037 lies
    between two float16 values (0.5 and 0.50049), and 63 times its rounding error is 15 float16
    steps of the output.
    """
    maps = [np.broadcast_to(np.arange(side, dtype=np.float32)[:, np.newaxis] - 31.0, (1, side, side, 1)).copy()
            for side in (64, 32, 16, 8)]
    boxes = np.array([[[0.3, 0.50037, 0.3, 0.50037]]], np.float32)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        out = roi_align(1, boxes, image_meta((256, 256)), maps)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.reshape(()), 0.50037 * 63 - 31, atol=1e-3)
