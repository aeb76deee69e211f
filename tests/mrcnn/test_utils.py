"""Numpy reference maths in mrcnn.utils: tiny hand-computed cases and round trips."""
import math
import subprocess
import sys

import numpy as np
import pytest

from mrcnn import utils


def box_mask(shape, *boxes):
    """bool [H, W, len(boxes)] with instance i filling boxes[i] = (y1, x1, y2, x2)."""
    mask = np.zeros(tuple(shape) + (len(boxes),), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        mask[y1:y2, x1:x2, i] = True
    return mask


def random_boxes(rng, count, size=50):
    corners = rng.integers(0, size, (count, 2))
    sides = rng.integers(1, size, (count, 2))
    return np.concatenate([corners, corners + sides], axis=1)


def test_utils_imports_without_tensorflow():
    code = "import sys, mrcnn.utils; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- boxes

def test_extract_bboxes_exclusive_corners_border_and_empty():
    mask = box_mask((5, 6), (1, 2, 3, 5), (3, 4, 5, 6), (0, 0, 0, 0))
    boxes = utils.extract_bboxes(mask)
    assert boxes.dtype == np.int32
    # The second mask touches the bottom-right corner: y2 == H, x2 == W. The third is empty.
    np.testing.assert_array_equal(boxes, [[1, 2, 3, 5], [3, 4, 5, 6], [0, 0, 0, 0]])


def test_extract_bboxes_non_rectangular_and_no_instances():
    mask = np.zeros((4, 4, 1), dtype=np.uint8)
    mask[0, 3, 0] = mask[2, 1, 0] = 1
    np.testing.assert_array_equal(utils.extract_bboxes(mask), [[0, 1, 3, 4]])
    assert utils.extract_bboxes(np.zeros((4, 4, 0), dtype=bool)).shape == (0, 4)
    assert utils.extract_bboxes(np.empty((0, 0, 0))).shape == (0, 4)


def test_compute_iou_by_hand():
    box = np.array([0, 0, 2, 2])
    boxes = np.array([[0, 1, 2, 3], [5, 5, 6, 6], [1, 1, 1, 1], [0, 0, 2, 2]])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = utils.compute_iou(box, boxes, 4, areas)
    # One shared column of two pixels; disjoint; zero-area box inside; identical.
    np.testing.assert_allclose(iou, [2 / (4 + 4 - 2), 0, 0 / (4 + 0 - 0), 1])


def test_compute_overlaps_by_hand():
    boxes1 = np.array([[0, 0, 2, 2], [0, 0, 4, 4]])
    boxes2 = np.array([[0, 1, 2, 3], [10, 10, 12, 12], [1, 1, 3, 3]])
    np.testing.assert_allclose(utils.compute_overlaps(boxes1, boxes2), [
        [2 / (4 + 4 - 2), 0, 1 / (4 + 4 - 1)],
        [4 / (16 + 4 - 4), 0, 4 / (16 + 4 - 4)],
    ])


def test_compute_overlaps_empty_and_zero_area():
    assert utils.compute_overlaps(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    assert utils.compute_overlaps(np.ones((2, 4)), np.zeros((0, 4))).shape == (2, 0)
    with np.errstate(all="raise"):  # no 0 / 0 for two zero-area boxes
        np.testing.assert_array_equal(utils.compute_overlaps([[1, 1, 1, 1]], [[1, 1, 1, 1]]), [[0]])


def test_compute_overlaps_masks_by_hand():
    masks1 = box_mask((4, 4), (0, 0, 2, 2), (0, 0, 0, 0))
    masks2 = box_mask((4, 4), (0, 1, 2, 3), (0, 0, 0, 0))
    with np.errstate(all="raise"):
        overlaps = utils.compute_overlaps_masks(masks1, masks2)
    np.testing.assert_allclose(overlaps, [[2 / (4 + 4 - 2), 0], [0 / 4, 0]])


@pytest.mark.parametrize("n,m", [(0, 2), (2, 0), (0, 0)])
def test_compute_overlaps_masks_empty(n, m):
    overlaps = utils.compute_overlaps_masks(np.zeros((4, 4, n), bool), np.zeros((4, 4, m), bool))
    np.testing.assert_array_equal(overlaps, np.zeros((n, m)))


def test_non_max_suppression_by_hand():
    boxes = np.array([
        [0, 0, 10, 10],    # 0: IoU with 3 = 50 / 150, kept
        [0, 1, 10, 11],    # 1: IoU with 0 = 90 / 110 > 0.5, dropped
        [20, 20, 30, 30],  # 2: far away, kept
        [0, 5, 10, 15],    # 3: best score
    ])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    keep = utils.non_max_suppression(boxes, scores, 0.5)
    assert keep.dtype == np.int32
    np.testing.assert_array_equal(keep, [3, 0, 2])
    # A box is dropped only when its IoU is strictly above the threshold.
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, scores, 50 / 150), [3, 0, 2])
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, scores, 0.9), [3, 0, 1, 2])


def test_non_max_suppression_empty_and_ties():
    keep = utils.non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int32
    np.testing.assert_array_equal(
        utils.non_max_suppression(np.array([[0, 0, 4, 4]] * 2), np.array([0.5, 0.5]), 0.5), [0])


def test_suppress_covered_masks_by_hand():
    masks = np.zeros((10, 10, 5), bool)
    masks[0:4, 0:4, 0] = True          # 16 px, the best
    masks[0:4, 2:6, 1] = True          # a neighbour: 8 of its 16 px under mask 0 (half)
    masks[0:4, 0:3, 2] = True          # a duplicate: all 12 px under mask 0
    masks[0:4, 0:4, 3] = True          # the same pixels as mask 0, another class
    masks[6:10, 0:6, 4] = True         # alone
    class_ids = np.array([1, 1, 1, 2, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    np.testing.assert_array_equal(utils.suppress_covered_masks(masks, class_ids, scores, 0.5),
                                  [True, True, False, True, True])  # half covered is not more than half
    np.testing.assert_array_equal(utils.suppress_covered_masks(masks, class_ids, scores, 0.4),
                                  [True, False, False, True, True])
    # Order is by score, not by index: with mask 2 the best, mask 0 is covered 12 of 16 px.
    scores = np.array([0.7, 0.8, 0.9, 0.6, 0.5])
    np.testing.assert_array_equal(utils.suppress_covered_masks(masks, class_ids, scores, 0.5),
                                  [False, True, True, True, True])
    # Only kept masks cover: mask 1 is dropped at 0.0 (4 of its pixels under mask 2), so mask 0
    # is judged against mask 2 alone (12 of 16 px).
    np.testing.assert_array_equal(utils.suppress_covered_masks(masks, class_ids, scores, 0.0),
                                  [False, False, True, True, True])


def test_suppress_covered_masks_empty_and_blank():
    assert utils.suppress_covered_masks(np.zeros((4, 4, 0), bool), [], [], 0.5).shape == (0,)
    masks = np.zeros((4, 4, 2), bool)
    masks[..., 0] = True
    # An empty mask has nothing covered: it stays, as box NMS keeps a zero-area box.
    np.testing.assert_array_equal(utils.suppress_covered_masks(masks, [1, 1], [0.9, 0.8], 0.0), [True, True])


def test_apply_box_deltas_by_hand():
    # Box: height 10, width 20, centre (5, 10). Centre moves by (0.1 * 10, -0.2 * 20) to (6, 6);
    # size becomes (10 * 2, 20 * 0.5) = (20, 10).
    deltas = np.array([[0.1, -0.2, math.log(2), math.log(0.5)]])
    boxes = utils.apply_box_deltas(np.array([[0, 0, 10, 20]]), deltas)
    assert boxes.dtype == np.float32
    np.testing.assert_allclose(boxes, [[6 - 20 / 2, 6 - 10 / 2, 6 + 20 / 2, 6 + 10 / 2]], rtol=1e-6)
    np.testing.assert_allclose(
        utils.box_refinement(np.array([[0, 0, 10, 20]]), boxes), deltas, rtol=1e-5, atol=1e-6)


def test_box_refinement_round_trip(rng):
    boxes = random_boxes(rng, 20)
    gt = random_boxes(rng, 20)
    deltas = utils.box_refinement(boxes, gt)
    assert deltas.dtype == np.float32 and deltas.shape == (20, 4)
    np.testing.assert_allclose(utils.apply_box_deltas(boxes, deltas), gt, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(utils.box_refinement(gt, gt), np.zeros((20, 4)), atol=1e-7)


def test_box_refinement_rejects_zero_area():
    with pytest.raises(ValueError, match=r"gt_box rows \[1\]"):
        utils.box_refinement(np.array([[0, 0, 4, 4]] * 2), np.array([[0, 0, 2, 2], [3, 3, 3, 5]]))


# ---------------------------------------------------------------- resizing

@pytest.fixture
def image(rng):
    return rng.integers(0, 256, (100, 200, 3), dtype=np.uint8)


def test_resize_image_none(image):
    result, window, scale, padding, crop = utils.resize_image(image, 64, 128, mode="none")
    assert result is image
    assert (window, scale, padding, crop) == ((0, 0, 100, 200), 1, [(0, 0), (0, 0), (0, 0)], None)


def test_resize_image_square_scales_down_to_max_dim(image):
    result, window, scale, padding, crop = utils.resize_image(image, 64, 128, mode="square")
    # min_dim asks for no upscaling (64 / 100 < 1); the long side 200 must fit in 128.
    assert scale == 128 / 200
    assert result.shape == (128, 128, 3) and result.dtype == np.uint8
    # 100 * 0.64 = 64 rows, centred in 128: (128 - 64) / 2 = 32 above and below.
    assert padding == [(32, 32), (0, 0), (0, 0)]
    assert window == (32, 0, 32 + 64, 128)
    assert crop is None
    assert not result[:32].any() and not result[96:].any()


def test_resize_image_square_scales_up_to_min_dim(image):
    result, window, scale, padding, _ = utils.resize_image(image, 150, 512, mode="square")
    assert scale == 150 / 100
    assert result.shape == (512, 512, 3)
    # Resized to 150 x 300: (512 - 150) / 2 = 181 rows, (512 - 300) / 2 = 106 columns each side.
    assert padding == [(181, 181), (106, 106), (0, 0)]
    assert window == (181, 106, 181 + 150, 106 + 300)


def test_resize_image_square_min_scale_and_odd_padding():
    image = np.zeros((100, 201, 3), np.uint8)
    _, window, scale, padding, _ = utils.resize_image(image, None, 512, min_scale=2, mode="square")
    assert scale == 2
    # 200 x 402: 312 rows of padding split 156 / 156, 110 columns split 55 / 55.
    assert padding == [(156, 156), (55, 55), (0, 0)]
    assert window == (156, 55, 356, 457)
    _, window, _, padding, _ = utils.resize_image(np.zeros((5, 4, 1), np.uint8), None, 8, mode="square")
    # 3 rows of padding: 1 above, 2 below.
    assert padding == [(1, 2), (2, 2), (0, 0)] and window == (1, 2, 6, 6)


def test_resize_image_keeps_values_and_dtype():
    image = np.full((10, 20, 3), 200, np.uint8)
    result, window, _, _, _ = utils.resize_image(image, 15, 64, mode="square")
    y1, x1, y2, x2 = window
    assert result.dtype == np.uint8
    assert (result[y1:y2, x1:x2] == 200).all()
    floats = utils.resize_image(image.astype(np.float32) / 255, 15, 64, mode="square")[0]
    assert floats.dtype == np.float32
    np.testing.assert_allclose(floats[y1:y2, x1:x2], 200 / 255, rtol=1e-6)


def test_resize_image_pad64(image):
    result, window, scale, padding, crop = utils.resize_image(image, 64, mode="pad64")
    assert scale == 1
    # 100 -> 128 (28 rows: 14 + 14); 200 -> 256 (56 columns: 28 + 28).
    assert result.shape == (128, 256, 3)
    assert padding == [(14, 14), (28, 28), (0, 0)]
    assert window == (14, 28, 14 + 100, 28 + 200)
    assert crop is None
    np.testing.assert_array_equal(result[14:114, 28:228], image)


def test_resize_image_pad64_scales_up_and_checks_min_dim():
    _, window, scale, padding, _ = utils.resize_image(np.zeros((50, 90, 3), np.uint8), 64, mode="pad64")
    assert scale == 64 / 50
    # 50 x 90 -> 64 x round(115.2) = 64 x 115; 115 -> 128 needs 13 columns: 6 + 7.
    assert padding == [(0, 0), (6, 7), (0, 0)]
    assert window == (0, 6, 64, 6 + 115)
    result, _, _, padding, _ = utils.resize_image(np.zeros((128, 64, 3), np.uint8), mode="pad64")
    assert result.shape == (128, 64, 3) and padding == [(0, 0), (0, 0), (0, 0)]
    with pytest.raises(ValueError, match="multiple of 64"):
        utils.resize_image(np.zeros((50, 90, 3), np.uint8), 100, mode="pad64")


def test_resize_image_crop_is_reproducible(image):
    first = utils.resize_image(image, 128, mode="crop", rng=np.random.default_rng(7))
    second = utils.resize_image(image, 128, mode="crop", rng=np.random.default_rng(7))
    result, window, scale, padding, crop = first
    assert scale == 128 / 100
    assert result.shape == (128, 128, 3)
    assert window == (0, 0, 128, 128)
    assert padding == [(0, 0), (0, 0), (0, 0)]
    y, x, h, w = crop
    # Scaled to 128 x 256: the crop can only move along x, from 0 to 256 - 128.
    assert y == 0 and 0 <= x <= 128 and (h, w) == (128, 128)
    np.testing.assert_array_equal(result, second[0])
    assert crop == second[4]
    # The crop is a window of the image scaled alone (pad64 adds no padding to 128 x 256).
    scaled = utils.resize_image(image, 128, mode="pad64")[0]
    np.testing.assert_array_equal(result, scaled[y:y + h, x:x + w])


def test_resize_image_rejects_bad_arguments(image):
    with pytest.raises(ValueError, match="mode"):
        utils.resize_image(image, mode="stretch")
    with pytest.raises(ValueError, match="max_dim"):
        utils.resize_image(image, 64, mode="square")


@pytest.mark.parametrize("kwargs", [
    dict(min_dim=64, max_dim=128, mode="square"),
    dict(min_dim=64, mode="pad64"),
    dict(min_dim=128, mode="crop"),
])
def test_resize_mask_follows_resize_image(kwargs):
    box = (20, 50, 60, 150)
    mask = box_mask((100, 200), box, (0, 0, 0, 0))
    image = np.repeat(mask[..., :1].astype(np.uint8) * 255, 3, axis=2)
    resized, window, scale, padding, crop = utils.resize_image(
        image, rng=np.random.default_rng(3), **kwargs)
    resized_mask = utils.resize_mask(mask, scale, padding, crop)
    assert resized_mask.dtype == bool
    assert resized_mask.shape == resized.shape[:2] + (2,)
    assert not resized_mask[..., 1].any()
    np.testing.assert_array_equal(resized_mask[..., 0], resized[..., 0] >= 128)


def test_resize_mask_by_hand():
    mask = box_mask((100, 200), (20, 50, 60, 150))
    resized = utils.resize_mask(mask, 128 / 200, [(32, 32), (0, 0), (0, 0)])
    assert resized.shape == (128, 128, 1)
    # Rows 20..60 scale to 12.8..38.4, then move down by the 32 rows of padding.
    np.testing.assert_array_equal(
        utils.extract_bboxes(resized),
        [[round(20 * 0.64) + 32, round(50 * 0.64), round(60 * 0.64) + 32, round(150 * 0.64)]])
    empty = utils.resize_mask(np.zeros((100, 200, 0), bool), 0.64, [(32, 32), (0, 0), (0, 0)])
    assert empty.shape == (128, 128, 0)


def test_minimize_then_expand_rectangle():
    mask = box_mask((10, 12), (2, 3, 7, 10), (0, 0, 0, 0))
    bbox = utils.extract_bboxes(mask)
    mini = utils.minimize_mask(bbox, mask, (4, 4))
    assert mini.dtype == bool and mini.shape == (4, 4, 2)
    assert mini[..., 0].all() and not mini[..., 1].any()
    np.testing.assert_array_equal(utils.expand_mask(bbox, mini, (10, 12, 3)), mask)


def test_minimize_then_expand_same_size_is_exact():
    mask = np.zeros((8, 8, 1), bool)
    mask[1:6, 2, 0] = mask[5, 2:7, 0] = True  # an L
    bbox = utils.extract_bboxes(mask)
    mini = utils.minimize_mask(bbox, mask, (5, 5))
    np.testing.assert_array_equal(utils.expand_mask(bbox, mini, (8, 8)), mask)


def test_unmold_mask():
    full = utils.unmold_mask(np.full((28, 28), 0.9, np.float32), np.array([2, 3, 6, 8]), (10, 10, 3))
    np.testing.assert_array_equal(full, box_mask((10, 10), (2, 3, 6, 8))[..., 0])
    # The threshold is 0.5, inclusive.
    assert utils.unmold_mask(np.full((2, 2), 0.5), (0, 0, 4, 4), (4, 4)).all()
    assert not utils.unmold_mask(np.full((2, 2), 0.49), (0, 0, 4, 4), (4, 4)).any()
    assert not utils.unmold_mask(np.ones((2, 2)), (3, 3, 3, 5), (4, 6)).any()


# ---------------------------------------------------------------- normalised boxes

def test_norm_boxes_by_hand():
    normed = utils.norm_boxes(np.array([[0, 0, 10, 20], [0, 0, 11, 21]]), (11, 21))
    assert normed.dtype == np.float32
    # (y2, x2) move onto the last pixel inside the box, then divide by (h - 1, w - 1).
    np.testing.assert_allclose(normed, [[0, 0, (10 - 1) / 10, (20 - 1) / 20], [0, 0, 1, 1]])


def test_norm_denorm_round_trip(rng):
    boxes = random_boxes(rng, 30, size=200)
    back = utils.denorm_boxes(utils.norm_boxes(boxes, (512, 384, 3)), (512, 384, 3))
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, boxes)


def test_trim_zeros():
    x = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 5, 0]])
    np.testing.assert_array_equal(utils.trim_zeros(x), [[1, 2, 3, 4], [0, 0, 5, 0]])
    assert utils.trim_zeros(np.zeros((3, 4))).shape == (0, 4)
    with pytest.raises(ValueError):
        utils.trim_zeros(np.zeros(4))


# ---------------------------------------------------------------- matching and AP

SHAPE = (10, 10)
G0, G1 = (0, 0, 4, 4), (5, 5, 9, 9)


def gt(*boxes):
    return np.array(boxes, dtype=np.int32).reshape(-1, 4), np.ones(len(boxes), np.int32), box_mask(SHAPE, *boxes)


def preds(boxes, scores, class_ids=None):
    class_ids = np.ones(len(boxes), np.int32) if class_ids is None else np.array(class_ids)
    return (np.array(boxes, dtype=np.int32).reshape(-1, 4), class_ids,
            np.array(scores, dtype=np.float32), box_mask(SHAPE, *boxes))


def test_compute_matches_perfect_in_score_order():
    gt_match, pred_match, overlaps = utils.compute_matches(*gt(G0, G1), *preds([G0, G1], [0.8, 0.9]))
    # Predictions are sorted by score: G1's (0.9) first.
    np.testing.assert_array_equal(pred_match, [1, 0])
    np.testing.assert_array_equal(gt_match, [1, 0])
    np.testing.assert_allclose(overlaps, [[0, 1], [1, 0]])


def test_compute_matches_duplicate_class_and_thresholds():
    # A duplicate of a matched ground truth is unmatched.
    _, pred_match, _ = utils.compute_matches(*gt(G0), *preds([G0, G0], [0.9, 0.8]))
    np.testing.assert_array_equal(pred_match, [0, -1])
    # The wrong class never matches.
    _, pred_match, _ = utils.compute_matches(*gt(G0), *preds([G0], [0.9], class_ids=[2]))
    np.testing.assert_array_equal(pred_match, [-1])
    # Half of G0: IoU 8 / 16 matches at 0.5 (inclusive) but not at 0.55.
    half = preds([(0, 0, 4, 2)], [0.9])
    assert utils.compute_matches(*gt(G0), *half, iou_threshold=0.5)[1][0] == 0
    assert utils.compute_matches(*gt(G0), *half, iou_threshold=0.55)[1][0] == -1
    # score_threshold (an IoU floor, despite its name) drops candidates below it.
    assert utils.compute_matches(*gt(G0), *half, iou_threshold=0.5, score_threshold=0.6)[1][0] == -1


def test_compute_matches_trims_zero_padding():
    gt_boxes, gt_ids, gt_masks = gt(G0)
    padded_boxes = np.concatenate([gt_boxes, np.zeros((2, 4), np.int32)])
    padded_masks = np.concatenate([gt_masks, np.zeros(SHAPE + (2,), bool)], axis=2)
    gt_match, pred_match, overlaps = utils.compute_matches(
        padded_boxes, np.array([1, 0, 0]), padded_masks, *preds([G0], [0.9]))
    assert gt_match.shape == (1,) and overlaps.shape == (1, 1)
    np.testing.assert_array_equal(pred_match, [0])


def test_compute_ap_perfect():
    ap, precisions, recalls, _ = utils.compute_ap(*gt(G0, G1), *preds([G0, G1], [0.9, 0.8]))
    assert ap == 1.0
    np.testing.assert_allclose(precisions, [1, 1, 1, 0])
    np.testing.assert_allclose(recalls, [0, 1 / 2, 2 / 2, 1])


def test_compute_ap_false_positive_above_true_positive():
    ap, precisions, recalls, _ = utils.compute_ap(*gt(G0), *preds([G1, G0], [0.9, 0.8]))
    # Precision after each prediction: 0 / 1, then 1 / 2 at recall 1.
    assert ap == pytest.approx(1 * (1 / 2))
    np.testing.assert_allclose(precisions, [1 / 2, 1 / 2, 1 / 2, 0])
    np.testing.assert_allclose(recalls, [0, 0, 1, 1])
    # The other way round the false positive costs nothing.
    assert utils.compute_ap(*gt(G0), *preds([G1, G0], [0.8, 0.9]))[0] == 1.0


def test_compute_ap_half_recall():
    # One of two found, first: area under (recall 1/2, precision 1).
    ap, _, _, _ = utils.compute_ap(*gt(G0, G1), *preds([G0], [0.9]))
    assert ap == pytest.approx(1 / 2 * 1)


def test_compute_ap_no_predictions():
    ap, precisions, recalls, overlaps = utils.compute_ap(*gt(G0, G1), *preds([], []))
    assert ap == 0.0
    np.testing.assert_array_equal(precisions, [0, 0])
    np.testing.assert_array_equal(recalls, [0, 1])
    assert overlaps.shape == (0, 2)


def test_compute_ap_no_ground_truth():
    with np.errstate(all="raise"):
        ap, precisions, _, overlaps = utils.compute_ap(*gt(), *preds([G0], [0.9]))
        assert ap == 0.0 and overlaps.shape == (1, 0)
        np.testing.assert_array_equal(precisions, [0, 0, 0])
        assert utils.compute_ap(*gt(), *preds([], []))[0] == 1.0


def test_compute_ap_range(capsys):
    assert utils.compute_ap_range(*gt(G0), *preds([G0], [0.9]), verbose=0) == 1.0
    # IoU 0.5 passes only the first of the ten thresholds 0.50, 0.55, ..., 0.95.
    ap = utils.compute_ap_range(*gt(G0), *preds([(0, 0, 4, 2)], [0.9]), verbose=1)
    assert ap == pytest.approx(1 / 10)
    out = capsys.readouterr().out
    assert "AP @0.50:\t 1.000" in out and "AP @0.50-0.95:\t 0.100" in out
    assert utils.compute_ap_range(*gt(G0), *preds([(0, 0, 4, 2)], [0.9]),
                                  iou_thresholds=np.array([0.5, 0.6]), verbose=0) == pytest.approx(1 / 2)


def test_compute_recall():
    pred_boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 2], [20, 20, 30, 30]])
    gt_boxes = np.array([G0, G1])
    recall, positive_ids = utils.compute_recall(pred_boxes, gt_boxes, 0.5)
    # Predictions 0 (IoU 1) and 1 (IoU 8 / 16) both find G0; G1 is missed.
    assert recall == 1 / 2
    np.testing.assert_array_equal(positive_ids, [0, 1])
    assert utils.compute_recall(np.zeros((0, 4)), gt_boxes, 0.5)[0] == 0.0
    assert utils.compute_recall(pred_boxes, np.zeros((0, 4)), 0.5)[0] == 1.0


@pytest.mark.parametrize("kind", ["float32", "uint8_preserve", "uint8_scaled", "bool", "float64_channels",
                                  "above_zero"])
def test_resize_is_scikit_images_bilinear_bit_for_bit(kind):
    """utils.resize's own bilinear path (order 1, constant border, no anti-aliasing: molding and mask
    pasting) returns skimage.transform.resize's array exactly, dtype included, up and down, 2-D and
    with channels, with the clip's border rule (an image above 0 blended with the border's 0)."""
    import skimage.transform

    rng = np.random.default_rng(len(kind))
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        shape = tuple(int(v) for v in rng.integers(1, 110, 2))
        kwargs = {}
        if kind == "float32":
            x = rng.random((h, w)).astype(np.float32)
        elif kind == "uint8_preserve":
            x, kwargs = (rng.random((h, w, 3)) * 255).astype(np.uint8), {"preserve_range": True}
        elif kind == "uint8_scaled":
            x = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        elif kind == "bool":
            x = rng.random((h, w)) > 0.5
        elif kind == "float64_channels":
            x, kwargs = rng.normal(size=(h, w, 2)), {"preserve_range": True}
        else:
            x = rng.random((h, w)).astype(np.float32) * 0.5 + 0.3
        with pytest.MonkeyPatch.context() as patch:  # (blocks of a few rows: every block boundary too)
            patch.setattr(utils, "_RESIZE_BLOCK_BYTES", int(rng.integers(1, 4 * 8 * shape[1] * x[0, 0].size + 1)))
            blocked = utils.resize(x, shape, order=1, **kwargs)
        ours = utils.resize(x, shape, order=1, **kwargs)
        np.testing.assert_array_equal(blocked, ours)
        theirs = skimage.transform.resize(x.astype(np.float32) if x.dtype == bool else x, shape, order=1,
                                          mode="constant", cval=0, clip=True, anti_aliasing=False,
                                          preserve_range=kwargs.get("preserve_range", False))
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


def test_suppress_covered_crops_is_suppress_covered_masks_inside_the_boxes():
    """The crop version (what unmolding uses) keeps what the full-mask version keeps, on random
    overlapping masks of two classes, with tied scores and empty boxes among them."""
    rng = np.random.default_rng(3)
    shape = (60, 80)
    for _ in range(30):
        n = int(rng.integers(1, 12))
        boxes, crops, full = [], [], np.zeros(shape + (n,), bool)
        for i in range(n):
            y1, x1 = int(rng.integers(0, 50)), int(rng.integers(0, 70))
            y2, x2 = y1 + int(rng.integers(0, 12)), x1 + int(rng.integers(0, 12))
            mask = rng.random((max(y2 - y1, 0), max(x2 - x1, 0))) > 0.3
            boxes.append((y1, x1, y2, x2))
            crops.append(mask if mask.size else None)
            full[y1:y2, x1:x2, i] = mask
        class_ids = rng.integers(1, 3, n)
        scores = np.round(rng.random(n), 1)  # ties
        for threshold in (0.0, 0.3, 0.7):
            np.testing.assert_array_equal(
                utils.suppress_covered_crops(crops, boxes, class_ids, scores, threshold, shape),
                utils.suppress_covered_masks(full, class_ids, scores, threshold))


def test_unmold_mask_crop_is_unmold_mask_inside_the_box():
    mask = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    full = utils.unmold_mask(mask, (5, 7, 40, 30), (50, 60))
    np.testing.assert_array_equal(utils.unmold_mask_crop(mask, (5, 7, 40, 30)), full[5:40, 7:30])
    assert not full[:5].any() and not full[40:].any() and not full[:, :7].any() and not full[:, 30:].any()
    assert utils.unmold_mask_crop(mask, (5, 7, 5, 30)) is None
