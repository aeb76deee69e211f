"""Graph box maths against the numpy reference in mrcnn.utils, plus hand-computed cases."""
import numpy as np
import tensorflow as tf

from mrcnn import utils
from mrcnn.boxes import (apply_box_deltas_graph, box_refinement_graph, clip_boxes_graph,
                         denorm_boxes_graph, norm_boxes_graph, overlaps_graph,
                         parse_image_meta_graph, trim_zeros_graph)


def random_boxes(rng, n, size=100.0):
    """[n, 4] boxes of positive area inside [0, size]."""
    y1x1 = rng.uniform(0, size * 0.8, (n, 2))
    hw = rng.uniform(1, size * 0.4, (n, 2))
    return np.concatenate([y1x1, y1x1 + hw], axis=1).astype(np.float32)


def test_apply_box_deltas_matches_numpy(rng):
    boxes = random_boxes(rng, 20)
    deltas = rng.normal(scale=0.3, size=(20, 4)).astype(np.float32)
    expected = utils.apply_box_deltas(boxes, deltas)
    np.testing.assert_allclose(apply_box_deltas_graph(boxes, deltas).numpy(), expected, rtol=1e-5, atol=1e-4)
    # Any leading shape: [2, 10, 4] gives the same boxes.
    batched = apply_box_deltas_graph(boxes.reshape(2, 10, 4), deltas.reshape(2, 10, 4)).numpy()
    np.testing.assert_allclose(batched.reshape(20, 4), expected, rtol=1e-5, atol=1e-4)


def test_apply_box_deltas_by_hand():
    # Box 10 x 20 centred at (5, 10); move down by half its height, double its width.
    out = apply_box_deltas_graph([[0.0, 0.0, 10.0, 20.0]], [[0.5, 0.0, 0.0, np.log(2.0)]]).numpy()
    np.testing.assert_allclose(out, [[5.0, -10.0, 15.0, 30.0]], rtol=1e-6)


def test_box_refinement_matches_numpy_and_round_trips(rng):
    boxes = random_boxes(rng, 20)
    gt = random_boxes(rng, 20)
    deltas = box_refinement_graph(boxes, gt).numpy()
    np.testing.assert_allclose(deltas, utils.box_refinement(boxes, gt), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply_box_deltas_graph(boxes, deltas).numpy(), gt, rtol=1e-5, atol=1e-3)


def test_box_refinement_by_hand():
    deltas = box_refinement_graph([[0.0, 0.0, 10.0, 10.0]], [[5.0, 0.0, 15.0, 20.0]]).numpy()
    np.testing.assert_allclose(deltas, [[5.0 / 10, 5.0 / 10, np.log(10 / 10), np.log(20 / 10)]], atol=1e-6)


def test_overlaps_match_numpy_with_zero_boxes(rng):
    boxes1 = random_boxes(rng, 7, size=10.0)
    boxes2 = np.concatenate([random_boxes(rng, 5, size=10.0), np.zeros((2, 4), np.float32)])
    boxes1[3] = 0.0
    result = overlaps_graph(boxes1, boxes2).numpy()
    assert result.shape == (7, 7)
    np.testing.assert_allclose(result, utils.compute_overlaps(boxes1, boxes2), rtol=1e-5, atol=1e-6)
    # Two zero boxes: empty union, IoU 0 and not NaN.
    assert result[3, 5] == 0.0


def test_overlaps_by_hand():
    # Unit squares offset by half: intersection 0.5, union 1.5.
    result = overlaps_graph([[0.0, 0.0, 1.0, 1.0]], [[0.0, 0.5, 1.0, 1.5], [0.0, 0.0, 1.0, 1.0]]).numpy()
    np.testing.assert_allclose(result, [[0.5 / 1.5, 1.0]], rtol=1e-6)


def test_overlaps_batched_equals_per_image(rng):
    boxes1 = random_boxes(rng, 2 * 6).reshape(2, 6, 4)
    boxes2 = random_boxes(rng, 2 * 4).reshape(2, 4, 4)
    result = overlaps_graph(boxes1, boxes2).numpy()
    assert result.shape == (2, 6, 4)
    for b in range(2):
        np.testing.assert_allclose(result[b], utils.compute_overlaps(boxes1[b], boxes2[b]), rtol=1e-5, atol=1e-6)


def test_clip_boxes_by_hand():
    boxes = [[-0.2, 0.1, 0.5, 1.3], [1.2, 1.5, 1.4, 1.8]]
    out = clip_boxes_graph(boxes, [0.0, 0.0, 1.0, 1.0]).numpy()
    # The second box lies below the window and collapses onto its bottom-right corner.
    np.testing.assert_allclose(out, [[0.0, 0.1, 0.5, 1.0], [1.0, 1.0, 1.0, 1.0]], rtol=1e-6)


def test_clip_boxes_per_image_window():
    boxes = np.array([[[0.0, 0.0, 1.0, 1.0]], [[0.0, 0.0, 1.0, 1.0]]], np.float32)  # [2, 1, 4]
    windows = np.array([[0.1, 0.2, 0.9, 0.8], [0.0, 0.0, 0.5, 0.5]], np.float32)
    out = clip_boxes_graph(boxes, windows[:, np.newaxis, :]).numpy()
    np.testing.assert_allclose(out, windows[:, np.newaxis, :], rtol=1e-6)


def test_norm_denorm_match_numpy(rng):
    shape = (64, 48, 3)
    boxes = np.round(random_boxes(rng, 10, size=48.0))
    normed = norm_boxes_graph(boxes, shape).numpy()
    np.testing.assert_allclose(normed, utils.norm_boxes(boxes, shape), rtol=1e-6)
    np.testing.assert_array_equal(denorm_boxes_graph(normed, shape).numpy(), utils.denorm_boxes(normed, shape))
    np.testing.assert_array_equal(denorm_boxes_graph(normed, shape).numpy(), boxes.astype(np.int32))
    # Matterport's convention by hand: the whole image is (0, 0, 1, 1).
    np.testing.assert_allclose(norm_boxes_graph([[0, 0, 64, 48]], (64, 48)).numpy(), [[0, 0, 1, 1]])


def test_norm_boxes_per_image_shape():
    boxes = np.array([[0, 0, 11, 21], [0, 0, 21, 11]], np.float32)
    shapes = np.array([[11, 21, 3], [21, 11, 3]], np.float32)
    np.testing.assert_allclose(norm_boxes_graph(boxes, shapes).numpy(), [[0, 0, 1, 1], [0, 0, 1, 1]])


def test_float16_inputs_compute_in_float32():
    boxes = tf.constant([[0.0, 0.0, 0.5, 0.5]], tf.float16)
    deltas = tf.constant([[0.1, 0.1, 0.2, 0.2]], tf.float16)
    assert apply_box_deltas_graph(boxes, deltas).dtype == tf.float32
    assert overlaps_graph(boxes, boxes).dtype == tf.float32
    assert norm_boxes_graph(boxes, (8, 8)).dtype == tf.float32


def test_trim_zeros():
    boxes = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 5]], np.float32)
    trimmed, non_zeros = trim_zeros_graph(boxes)
    np.testing.assert_array_equal(trimmed.numpy(), utils.trim_zeros(boxes))
    np.testing.assert_array_equal(non_zeros.numpy(), [False, True, False, True])


def test_parse_image_meta():
    # id, original shape, shape, window, scale, active classes (NUM_CLASSES = 3).
    meta = np.array([[7, 300, 400, 3, 512, 512, 3, 64, 0, 448, 512, 1.28, 1, 1, 0]], np.float32)
    parsed = {k: v.numpy() for k, v in parse_image_meta_graph(meta).items()}
    np.testing.assert_array_equal(parsed["image_id"], [7])
    np.testing.assert_array_equal(parsed["original_image_shape"], [[300, 400, 3]])
    np.testing.assert_array_equal(parsed["image_shape"], [[512, 512, 3]])
    np.testing.assert_array_equal(parsed["window"], [[64, 0, 448, 512]])
    np.testing.assert_allclose(parsed["scale"], [1.28])
    np.testing.assert_array_equal(parsed["active_class_ids"], [[1, 1, 0]])
