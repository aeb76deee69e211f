"""DetectionTargetLayer: hand-placed proposals, sampling counts, empty and padded inputs."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import utils
from mrcnn.targets import DetectionTargetLayer, detection_targets_graph, max_positive_rois

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
SHAPE = (32, 32)
GT_BOX = np.array([8, 8, 24, 24])  # pixels: a 16 x 16 box
SHIFTED_ROI = np.array([12, 8, 28, 24])  # 4 rows lower: IoU 12 / 20 = 0.6, positive
NEGATIVE_ROIS = np.array([[0, 0, 4, 4], [26, 26, 31, 31], [0, 26, 6, 32], [26, 0, 32, 5], [0, 10, 3, 20]])


def norm(boxes):
    return utils.norm_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), SHAPE)


def full_mask():
    """[32, 32, 1] mask filling the top half of the GT box: rows 8..15, columns 8..23."""
    mask = np.zeros(SHAPE + (1,), bool)
    mask[8:16, 8:24, 0] = True
    return mask


def hand_placed_inputs(use_mini_mask, max_gt=3):
    """One image: a GT box of class 2, proposals = [GT box, shifted ROI, 5 negatives, 3 zero rows]."""
    proposals = np.zeros((1, 10, 4), np.float32)
    proposals[0, :7] = norm(np.concatenate([[GT_BOX, SHIFTED_ROI], NEGATIVE_ROIS]))
    gt_class_ids = np.zeros((1, max_gt), np.int32)
    gt_class_ids[0, 0] = 2
    gt_boxes = np.zeros((1, max_gt, 4), np.float32)
    gt_boxes[0, 0] = norm(GT_BOX)[0]
    mask = full_mask()
    if use_mini_mask:
        # The box is 16 x 16, so a 16 x 16 mini mask is the box's pixels unchanged.
        mask = utils.minimize_mask(GT_BOX[np.newaxis], mask, (16, 16))
        np.testing.assert_array_equal(mask[:, :, 0], full_mask()[8:24, 8:24, 0])
    gt_masks = np.zeros((1,) + mask.shape[:2] + (max_gt,), bool)
    gt_masks[0, :, :, :1] = mask
    return proposals, gt_class_ids, gt_boxes, gt_masks


def targets(inputs, t=8, ratio=0.5, use_mini_mask=True, seed=0, mask_shape=(16, 16)):
    layer = DetectionTargetLayer(t, ratio, STD, mask_shape, use_mini_mask, seed=seed)
    return [x.numpy() for x in layer(list(inputs))]


def assert_finite(outputs):
    for x in outputs:
        assert np.all(np.isfinite(x))


@pytest.mark.parametrize("use_mini_mask", [True, False])
def test_hand_placed_positives(use_mini_mask):
    rois, class_ids, deltas, masks = targets(hand_placed_inputs(use_mini_mask), use_mini_mask=use_mini_mask)
    assert rois.shape == (1, 8, 4) and class_ids.shape == (1, 8)
    assert deltas.shape == (1, 8, 4) and masks.shape == (1, 8, 16, 16)
    # Ratio 0.5 of 8: up to 4 positives; the 2 there are get int(2 / 0.5) - 2 = 2 negatives.
    np.testing.assert_array_equal(class_ids[0], [2, 2, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(rois[0, 4:], 0.0)
    order = [0, 1] if np.allclose(rois[0, 0], norm(GT_BOX)[0]) else [1, 0]
    gt_row, shifted_row = order

    # The proposal equal to the GT box: zero deltas, and the mask crop is the box's pixels.
    np.testing.assert_allclose(rois[0, gt_row], norm(GT_BOX)[0])
    np.testing.assert_allclose(deltas[0, gt_row], 0.0, atol=1e-6)
    np.testing.assert_array_equal(masks[0, gt_row], full_mask()[8:24, 8:24, 0])

    # The shifted ROI: Matterport's deltas in normalised coordinates; the crop starts 4 rows
    # lower, so only the first 8 - 4 = 4 of its 16 rows are inside the mask.
    np.testing.assert_allclose(rois[0, shifted_row], norm(SHIFTED_ROI)[0])
    expected = utils.box_refinement(norm(SHIFTED_ROI), norm(GT_BOX))[0] / STD
    np.testing.assert_allclose(deltas[0, shifted_row], expected, rtol=1e-5, atol=1e-6)
    expected_mask = np.zeros((16, 16))
    expected_mask[:4] = 1.0
    np.testing.assert_array_equal(masks[0, shifted_row], expected_mask)

    # Negatives: sampled from the negative proposals, no class, deltas or mask.
    negatives = [tuple(r) for r in norm(NEGATIVE_ROIS)]
    for row in (2, 3):
        assert tuple(rois[0, row]) in negatives
    np.testing.assert_array_equal(deltas[0, 2:], 0.0)
    np.testing.assert_array_equal(masks[0, 2:], 0.0)


def test_mask_shape_resamples_the_crop():
    # A 4 x 4 target samples the GT box at rows 8 + i * 15 / 3 = 8, 13, 18, 23: two inside the mask.
    rois, _, _, masks = targets(hand_placed_inputs(False), use_mini_mask=False, mask_shape=(4, 4))
    row = int(np.flatnonzero(np.all(np.isclose(rois[0], norm(GT_BOX)), axis=-1))[0])
    assert masks.shape == (1, 8, 4, 4)
    np.testing.assert_array_equal(masks[0, row], [[1] * 4, [1] * 4, [0] * 4, [0] * 4])


def many_proposals(rng, num_positive, num_negative):
    """One GT box (class 1) in [0, 1] and jittered positives (IoU >= 0.5) plus far negatives."""
    gt = np.array([0.3, 0.3, 0.6, 0.6], np.float32)
    positives = gt + rng.uniform(-0.02, 0.02, (num_positive, 4)).astype(np.float32)
    y1x1 = rng.uniform(0.7, 0.8, (num_negative, 2))
    negatives = np.concatenate([y1x1, y1x1 + 0.1], axis=1).astype(np.float32)
    assert np.all(utils.compute_overlaps(positives, gt[np.newaxis]) >= 0.5)
    proposals = np.concatenate([positives, negatives])[rng.permutation(num_positive + num_negative)]
    gt_masks = np.zeros((1, 8, 8, 2), bool)
    gt_masks[0, 2:6, 2:6, 0] = True
    return [proposals[np.newaxis], np.array([[1, 0]], np.int32),
            np.array([[gt, np.zeros(4)]], np.float32), gt_masks]


@pytest.mark.parametrize("num_positive, num_negative, expected", [
    (100, 200, (66, 134)),  # int(200 * 0.33) = 66 positives, int(66 / 0.33) - 66 = 134 negatives
    (30, 200, (30, 60)),    # int(30 / 0.33) - 30 = 90 - 30 = 60 negatives
    (30, 20, (30, 20)),     # not enough negatives: all 20
])
def test_counts_respect_positive_ratio(rng, num_positive, num_negative, expected):
    rois, class_ids, deltas, masks = targets(many_proposals(rng, num_positive, num_negative),
                                             t=200, ratio=0.33, mask_shape=(4, 4))
    positives = int(np.sum(class_ids > 0))
    sampled = int(np.sum(np.any(rois != 0, axis=-1)))
    assert (positives, sampled - positives) == expected
    # Positives first, then negatives, then padding.
    np.testing.assert_array_equal(class_ids[0, :positives], 1)
    np.testing.assert_array_equal(class_ids[0, positives:], 0)
    np.testing.assert_array_equal(rois[0, sampled:], 0.0)
    assert np.all(np.any(masks[0, :positives] != 0, axis=(1, 2)))
    assert_finite([rois, deltas, masks])
    # The mask head is trained on the first max_positive_rois rows only: they hold every positive.
    assert max_positive_rois(200, 0.33) == 66
    np.testing.assert_array_equal(class_ids[0, max_positive_rois(200, 0.33):], 0)
    np.testing.assert_array_equal(masks[0, max_positive_rois(200, 0.33):], 0.0)


def test_zero_gt_gives_only_negatives_without_nan(rng):
    proposals, _, _, gt_masks = many_proposals(rng, 5, 10)
    outputs = targets([proposals, np.zeros((1, 2), np.int32), np.zeros((1, 2, 4), np.float32), np.zeros_like(gt_masks)],
                      t=8, ratio=0.33, mask_shape=(4, 4))
    rois, class_ids, deltas, masks = outputs
    assert_finite(outputs)
    # No GT: every sampled ROI is a negative, T of them when there are enough proposals.
    np.testing.assert_array_equal(class_ids, 0)
    assert np.all(np.any(rois[0] != 0, axis=-1))
    np.testing.assert_array_equal(deltas, 0.0)
    np.testing.assert_array_equal(masks, 0.0)


@pytest.mark.parametrize("num_proposals, num_gt", [(6, 2), (0, 2), (6, 0), (0, 0)])
def test_empty_or_all_padding_inputs(num_proposals, num_gt):
    """All-zero proposals / GT rows, and zero-length proposal and GT dimensions."""
    outputs = targets([np.zeros((2, num_proposals, 4), np.float32), np.zeros((2, num_gt), np.int32),
                       np.zeros((2, num_gt, 4), np.float32), np.zeros((2, 8, 8, num_gt), bool)],
                      t=4, ratio=0.5, mask_shape=(4, 4))
    assert [x.shape for x in outputs] == [(2, 4, 4), (2, 4), (2, 4, 4), (2, 4, 4, 4)]
    for x in outputs:
        np.testing.assert_array_equal(x, 0)


def test_crowd_overlaps_are_never_negatives(rng):
    proposals, class_ids, gt_boxes, gt_masks = many_proposals(rng, 3, 20)
    # Make the second GT a crowd box over the negatives' area.
    class_ids[0, 1] = -1
    gt_boxes[0, 1] = [0.7, 0.7, 0.9, 0.9]
    rois, out_ids, _, _ = targets([proposals, class_ids, gt_boxes, gt_masks], t=40, ratio=0.33, mask_shape=(4, 4))
    sampled = rois[0][np.any(rois[0] != 0, axis=-1)]
    assert np.sum(out_ids > 0) == 3
    crowd_iou = utils.compute_overlaps(sampled, gt_boxes[0, 1:])[:, 0]
    np.testing.assert_array_equal(crowd_iou[3:], 0.0)


def test_seed_makes_sampling_reproducible(rng):
    inputs = many_proposals(rng, 50, 100)
    first = targets(inputs, t=20, ratio=0.33, seed=3, mask_shape=(4, 4))
    again = targets(inputs, t=20, ratio=0.33, seed=3, mask_shape=(4, 4))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    # Another draw of the keys picks other ROIs.
    keys = rng.uniform(size=(1, 150)).astype(np.float32)
    other = detection_targets_graph(*inputs, keys, 20, 0.33, STD, (4, 4), True)
    assert not np.array_equal(other[0].numpy(), first[0])


def test_in_functional_model_with_batch_2():
    proposals, gt_class_ids, gt_boxes, gt_masks = hand_placed_inputs(use_mini_mask=True)
    # Image 2: no GT at all, so all its sampled ROIs are negatives.
    batch = [np.concatenate([x, np.zeros_like(x)]) for x in (gt_class_ids, gt_boxes, gt_masks)]
    proposals = np.concatenate([proposals, proposals])
    inputs = [keras.Input((10, 4)), keras.Input((3,), dtype="int32"), keras.Input((3, 4)),
              keras.Input((16, 16, 3), dtype="bool")]
    layer = DetectionTargetLayer(8, 0.5, STD, (16, 16), True, seed=1)
    outputs = layer(inputs)
    assert [tuple(x.shape) for x in outputs] == [(None, 8, 4), (None, 8), (None, 8, 4), (None, 8, 16, 16)]
    assert outputs[1].dtype == "int32"
    model = keras.Model(inputs, outputs)
    rois, class_ids, deltas, masks = model.predict([proposals] + batch, batch_size=2, verbose=0)
    np.testing.assert_array_equal(class_ids, [[2, 2, 0, 0, 0, 0, 0, 0], [0] * 8])
    # Image 2 samples all 7 real proposals as negatives, then one padding row.
    np.testing.assert_array_equal(np.any(rois[1] != 0, axis=-1), [True] * 7 + [False])
    assert_finite([rois, deltas, masks])


def test_get_config_round_trip():
    layer = DetectionTargetLayer(200, 0.33, [0.1, 0.1, 0.2, 0.2], [28, 28], False, seed=5, name="proposal_targets")
    clone = DetectionTargetLayer.from_config(layer.get_config())
    assert clone.name == "proposal_targets"
    assert (clone.train_rois_per_image, clone.roi_positive_ratio, clone.mask_shape) == (200, 0.33, [28, 28])
    assert (clone.use_mini_mask, clone.seed, clone.bbox_std_dev) == (False, 5, [0.1, 0.1, 0.2, 0.2])


def test_unknown_proposal_and_gt_counts_give_the_same_targets(rng):
    inputs = many_proposals(rng, 10, 20)
    keys = rng.uniform(size=(1, 30)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, None], tf.int32),
                                  tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, None, None, None], tf.bool),
                                  tf.TensorSpec([None, None])])
    def dynamic(*args):
        return detection_targets_graph(*args, 16, 0.33, STD, (4, 4), True)

    expected = detection_targets_graph(*inputs, keys, 16, 0.33, STD, (4, 4), True)
    for a, b in zip(dynamic(*inputs, keys), expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_gt_boxes_join_the_proposals_when_asked():
    """No useful proposal (only negatives): with add_gt_as_proposals the GT box itself is the
    positive, with zero deltas and its whole mask; crowd boxes are not added."""
    proposals, gt_class_ids, gt_boxes, gt_masks = hand_placed_inputs(use_mini_mask=True)
    proposals[0, :2] = 0.0  # drop the GT-like and the shifted proposal: negatives only
    gt_class_ids[0, 1] = -1  # a crowd box, which must not become a positive
    gt_boxes[0, 1] = norm([[0, 16, 16, 32]])[0]

    def run(add_gt):
        layer = DetectionTargetLayer(8, 0.5, STD, (16, 16), True, seed=0, add_gt_as_proposals=add_gt)
        return [x.numpy() for x in layer([proposals, gt_class_ids, gt_boxes, gt_masks])]

    _, class_ids, _, _ = run(False)
    assert np.count_nonzero(class_ids) == 0
    rois, class_ids, deltas, masks = run(True)
    assert_finite([rois, class_ids, deltas, masks])
    assert class_ids[0].tolist().count(2) == 1 and class_ids[0, 0] == 2 and np.count_nonzero(class_ids) == 1
    np.testing.assert_allclose(rois[0, 0], norm(GT_BOX)[0], atol=1e-6)
    np.testing.assert_allclose(deltas[0, 0], 0.0, atol=1e-5)
    np.testing.assert_array_equal(masks[0, 0], full_mask()[8:24, 8:24, 0].astype(np.float32))
    # Negatives still fill the rest at the positive ratio (1 positive -> 1 negative at 0.5).
    assert np.count_nonzero(np.any(rois[0] != 0, axis=-1)) == 2


def test_positive_count_is_the_batch_maximum_and_at_least_one():
    from mrcnn.targets import PositiveCount

    ids = np.array([[1, 1, 1, 0, 0], [2, 0, 0, 0, 0]], np.int32)
    assert int(PositiveCount()(ids)) == 3
    assert int(PositiveCount()(np.zeros((2, 5), np.int32))) == 1
