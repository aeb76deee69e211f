"""Anchor generation: Matterport's values and ordering, pyramid counts, the cache."""
import math

import numpy as np
import pytest

from mrcnn import utils
from mrcnn.anchors import (compute_backbone_shapes, config_anchors, generate_anchors,
                           generate_pyramid_anchors, get_anchors)
from mrcnn.config import Config
from mrcnn.pipeline import pipeline_anchors

LEAF_SCALES = (8, 16, 32, 64, 128)
RATIOS = [0.5, 1, 2]
STRIDES = [4, 8, 16, 32, 64]
SQRT2 = math.sqrt(2)


def reference_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Plain loops in the documented order: row, column, ratio, scale."""
    boxes = []
    for row in range(0, shape[0], anchor_stride):
        for col in range(0, shape[1], anchor_stride):
            cy, cx = row * feature_stride, col * feature_stride
            for ratio in ratios:
                for scale in np.atleast_1d(scales):
                    h, w = scale / math.sqrt(ratio), scale * math.sqrt(ratio)
                    boxes.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(boxes)


def test_first_anchors_by_hand():
    anchors = generate_anchors(8, RATIOS, (2, 3), 4, 1)
    assert anchors.shape == (2 * 3 * 3, 4)
    # Centre (0, 0); ratio 0.5: h = 8 * sqrt(2), w = 8 / sqrt(2); ratio 1: 8 x 8; ratio 2: swapped.
    np.testing.assert_allclose(anchors[:3], [
        [-4 * SQRT2, -4 / SQRT2, 4 * SQRT2, 4 / SQRT2],
        [-4, -4, 4, 4],
        [-4 / SQRT2, -4 * SQRT2, 4 / SQRT2, 4 * SQRT2],
    ])
    # Next position along the row: centre (0, 1 * 4); the next row starts at index 3 * 3.
    np.testing.assert_allclose(anchors[4], [-4, 4 - 4, 4, 4 + 4])
    np.testing.assert_allclose(anchors[3 * 3 + 1], [4 - 4, -4, 4 + 4, 4])
    # Last anchor: centre (1 * 4, 2 * 4), ratio 2.
    np.testing.assert_allclose(anchors[-1], [4 - 4 / SQRT2, 8 - 4 * SQRT2, 4 + 4 / SQRT2, 8 + 4 * SQRT2])


def test_ratio_is_width_over_height_and_area_is_scale_squared():
    anchors = generate_anchors(16, RATIOS, (1, 1), 4, 1)
    heights = anchors[:, 2] - anchors[:, 0]
    widths = anchors[:, 3] - anchors[:, 1]
    np.testing.assert_allclose(widths / heights, RATIOS)
    np.testing.assert_allclose(widths * heights, [16 ** 2] * 3)


def test_anchor_stride_skips_cells():
    anchors = generate_anchors(8, [1], (4, 4), 4, 2)
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    np.testing.assert_allclose(centers, [[0, 0], [0, 8], [8, 0], [8, 8]])


@pytest.mark.parametrize("scales,shape,anchor_stride", [
    (32, (3, 5), 1),
    ([32, 64], (3, 5), 1),
    ([8, 16, 32], (5, 4), 2),
])
def test_order_matches_nested_loops(scales, shape, anchor_stride):
    np.testing.assert_allclose(
        generate_anchors(scales, RATIOS, shape, 16, anchor_stride),
        reference_anchors(scales, RATIOS, shape, 16, anchor_stride))


def test_compute_backbone_shapes():
    np.testing.assert_array_equal(
        compute_backbone_shapes((512, 512, 3), STRIDES),
        [[128, 128], [64, 64], [32, 32], [16, 16], [8, 8]])
    # Sides that strides do not divide round up: ceil(100 / 8) = 13, ceil(130 / 64) = 3.
    np.testing.assert_array_equal(compute_backbone_shapes((100, 130), [8, 64]), [[13, 17], [2, 3]])


def test_leaf_pyramid_count_and_level_order():
    shapes = compute_backbone_shapes((512, 512), STRIDES)
    anchors = generate_pyramid_anchors(LEAF_SCALES, RATIOS, shapes, STRIDES, 1)
    assert anchors.shape == (3 * (128 ** 2 + 64 ** 2 + 32 ** 2 + 16 ** 2 + 8 ** 2), 4)
    assert anchors.shape[0] == 65472

    start = 0
    for scale, (rows, cols), stride in zip(LEAF_SCALES, shapes, STRIDES):
        level = anchors[start:start + 3 * rows * cols]
        areas = (level[:, 2] - level[:, 0]) * (level[:, 3] - level[:, 1])
        np.testing.assert_allclose(areas, scale ** 2)
        np.testing.assert_array_equal(level, generate_anchors(scale, RATIOS, (rows, cols), stride, 1))
        # The level's last anchor is centred on its last cell, ratio 2.
        cy, cx = (rows - 1) * stride, (cols - 1) * stride
        h, w = scale / SQRT2, scale * SQRT2
        np.testing.assert_allclose(level[-1], [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
        start += 3 * rows * cols
    assert start == anchors.shape[0]


def test_pyramid_rejects_mismatched_levels():
    with pytest.raises(ValueError, match="one scale"):
        generate_pyramid_anchors((8, 16), RATIOS, [[4, 4]], [4], 1)


def test_utils_reexports_generators():
    assert utils.generate_anchors is generate_anchors
    assert utils.generate_pyramid_anchors is generate_pyramid_anchors


def test_get_anchors_normalised_read_only_and_memoised():
    anchors = get_anchors((512, 512, 3), LEAF_SCALES, RATIOS, STRIDES, 1)
    pixels = generate_pyramid_anchors(
        LEAF_SCALES, RATIOS, compute_backbone_shapes((512, 512), STRIDES), STRIDES, 1)
    assert anchors.dtype == np.float32
    np.testing.assert_allclose(anchors, utils.norm_boxes(pixels, (512, 512)), rtol=1e-6)
    # First anchor, normalised by hand: (y - [0, 0, 1, 1]) / 511.
    np.testing.assert_allclose(
        anchors[0], [-4 * SQRT2 / 511, -4 / SQRT2 / 511, (4 * SQRT2 - 1) / 511, (4 / SQRT2 - 1) / 511],
        rtol=1e-5)

    with pytest.raises(ValueError):
        anchors[0, 0] = 1.0
    # Equal arguments in other containers give the very same array.
    assert get_anchors(np.array([512, 512]), list(LEAF_SCALES), tuple(RATIOS),
                       np.array(STRIDES), 1) is anchors
    assert get_anchors((256, 256), LEAF_SCALES, RATIOS, STRIDES, 1) is not anchors


def test_get_anchors_in_pixels():
    anchors = get_anchors((64, 128), (8, 16), [1], [4, 8], 1, normalized=False)
    assert anchors.dtype == np.float32
    assert anchors.shape == (16 * 32 + 8 * 16, 4)
    np.testing.assert_allclose(anchors[0], [-4, -4, 4, 4])
    np.testing.assert_allclose(anchors[16 * 32], [-8, -8, 8, 8])


def custom_backbone_config():
    """A callable BACKBONE whose feature maps are not ceil(side / stride): at 64 x 64, 8 x 8 for
    stride 4 (ceil would give 16 x 16) and 2 x 2 for stride 16 (ceil: 4 x 4)."""
    def backbone(image, stage5=True, train_bn=False):
        return image

    return Config(BACKBONE=backbone, COMPUTE_BACKBONE_SHAPE=lambda shape: [[shape[0] // 8, shape[1] // 8],
                                                                           [shape[0] // 32, shape[1] // 32]],
                  BACKBONE_STRIDES=[4, 16], RPN_ANCHOR_SCALES=(8, 32), RPN_ANCHOR_RATIOS=RATIOS,
                  IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64)


def test_config_anchors_follow_compute_backbone_shape():
    config = custom_backbone_config()
    anchors = config_anchors(config, (64, 64), normalized=False)
    # Three ratios at each of 8 * 8 positions of level 1 and 2 * 2 of level 2.
    assert anchors.shape == (3 * (8 * 8 + 2 * 2), 4)
    # Level 2 starts after 3 * 64 anchors: centre (0, 0), scale 32, ratio 0.5; its last anchor
    # is centred on cell (1, 1), i.e. pixel (16, 16), ratio 2.
    np.testing.assert_allclose(anchors[3 * 64], [-16 * SQRT2, -16 / SQRT2, 16 * SQRT2, 16 / SQRT2], rtol=1e-6)
    np.testing.assert_allclose(anchors[-1], [16 - 16 / SQRT2, 16 - 16 * SQRT2, 16 + 16 / SQRT2, 16 + 16 * SQRT2],
                               rtol=1e-6)
    # The input pipeline builds its targets on the same anchors, and the graph gets them normalised.
    np.testing.assert_array_equal(pipeline_anchors(config), anchors)
    np.testing.assert_allclose(config_anchors(config, (64, 64, 3)), utils.norm_boxes(anchors, (64, 64)), rtol=1e-6)
    # A built-in backbone keeps ceil(side / stride): 16 * 16 and 4 * 4 positions.
    builtin = Config(BACKBONE_STRIDES=[4, 16], RPN_ANCHOR_SCALES=(8, 32), RPN_ANCHOR_RATIOS=RATIOS)
    assert config_anchors(builtin, (64, 64)).shape == (3 * (16 * 16 + 4 * 4), 4)
