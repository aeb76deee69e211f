"""The five losses: hand-computed values, nothing-to-score cases, finite values and gradients."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.losses import (mrcnn_bbox_loss, mrcnn_class_loss, mrcnn_mask_loss, rpn_bbox_loss,
                          rpn_class_loss, smooth_l1_loss)


def scalar(x):
    x = x.numpy()
    assert x.shape == () and np.isfinite(x)
    return float(x)


def test_smooth_l1_by_hand():
    np.testing.assert_allclose(smooth_l1_loss([0.0, 0.0, 0.0], [0.5, -2.0, 1.0]).numpy(),
                               [0.5 * 0.5 ** 2, 2.0 - 0.5, 1.0 - 0.5])


def test_rpn_class_loss_by_hand():
    # Zero logits: log 2 for any label.
    assert scalar(rpn_class_loss([[[1], [-1]]], np.zeros((1, 2, 2), np.float32))) == pytest.approx(np.log(2))
    # A positive with logits (0, 2), a negative with (0, 0), a neutral that must not count.
    match = np.array([[[1], [-1], [0]]], np.int32)
    logits = np.array([[[0, 2], [0, 0], [50, -50]]], np.float32)
    expected = (np.log(1 + np.exp(-2.0)) + np.log(2.0)) / 2
    assert scalar(rpn_class_loss(match, logits)) == pytest.approx(expected, rel=1e-6)
    # rpn_match may also come without its trailing axis.
    assert scalar(rpn_class_loss(match[..., 0], logits)) == pytest.approx(expected, rel=1e-6)


def test_rpn_bbox_loss_packs_targets_per_image():
    rpn_match = np.array([[0, 1, -1, 1], [0, 0, 1, 0]], np.int32)[..., np.newaxis]
    rpn_bbox = np.zeros((2, 4, 4), np.float32)
    rpn_bbox[0, 3] = [0.5, 0, 0, 0]
    # Image 0: anchors 1 and 3 are positive, in that order; image 1: anchor 2.
    target_bbox = np.zeros((2, 3, 4), np.float32)
    target_bbox[0, 0] = [0, 0, 0, 2.0]   # anchor 1, predicted 0: |d| = 2 -> 1.5
    target_bbox[0, 1] = [0, 0, 0, 0]     # anchor 3, predicted 0.5 -> 0.5 * 0.25
    target_bbox[1, 0] = [0, 0, 0, -0.2]  # anchor 2 of image 1 -> 0.5 * 0.04
    expected = (1.5 + 0.125 + 0.02) / (3 * 4)
    assert scalar(rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox)) == pytest.approx(expected, rel=1e-6)
    assert scalar(rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox, batch_size=2)) == pytest.approx(expected, rel=1e-6)


def test_mrcnn_class_loss_ignores_inactive_predictions():
    targets = np.array([[0, 1], [1, 2]], np.int32)
    logits = np.array([[[2, 0, 0], [0, 0, 3]],    # ROI 2 predicts class 2, inactive in image 0
                       [[0, 0, 0], [0, 0, 0]]], np.float32)
    active = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
    expected = (-np.log(np.exp(2) / (np.exp(2) + 2)) + np.log(3) + np.log(3)) / 3
    assert scalar(mrcnn_class_loss(targets, logits, active)) == pytest.approx(expected, rel=1e-6)


def test_mrcnn_bbox_loss_uses_the_true_class_deltas():
    target_class_ids = np.array([[2, 0, 1]], np.int32)
    target_bbox = np.array([[[1.0, 0, 0, 0], [9, 9, 9, 9], [0, 0, 0, 0.5]]], np.float32)
    pred = np.full((1, 3, 3, 4), 100.0, np.float32)  # wrong-class deltas must not count
    pred[0, 0, 2] = [0.0, 0, 0, 0]   # |1 - 0| = 1 -> 0.5
    pred[0, 2, 1] = [0.0, 0, 0, 0]   # 0.5 -> 0.125
    expected = (0.5 + 0.125) / (2 * 4)
    assert scalar(mrcnn_bbox_loss(target_bbox, target_class_ids, pred)) == pytest.approx(expected, rel=1e-6)


def test_mrcnn_mask_loss_only_scores_the_true_class_channel():
    target_class_ids = np.array([[1, 0]], np.int32)
    target_masks = np.ones((1, 2, 4, 4), np.float32)
    pred = np.zeros((1, 2, 4, 4, 3), np.float32)  # a 0 against a 1 would be a huge loss
    pred[0, 0, :, :, 1] = 0.5
    assert scalar(mrcnn_mask_loss(target_masks, target_class_ids, pred)) == pytest.approx(np.log(2), rel=1e-6)
    # Half right with certainty, half wrong with certainty: finite, log(1 / 1e-7) / 2.
    pred[0, 0, :, :2, 1] = 1.0
    pred[0, 0, :, 2:, 1] = 0.0
    assert scalar(mrcnn_mask_loss(target_masks, target_class_ids, pred)) == pytest.approx(
        -np.log(1e-7) / 2, rel=1e-3)


def test_losses_are_zero_with_nothing_to_score():
    b, a, n, k = 2, 6, 5, 3
    zero_ids = np.zeros((b, n), np.int32)
    cases = {
        "rpn_class": rpn_class_loss(np.zeros((b, a, 1), np.int32), np.ones((b, a, 2), np.float32)),
        "rpn_bbox": rpn_bbox_loss(np.ones((b, 4, 4), np.float32), np.full((b, a, 1), -1, np.int32),
                                  np.ones((b, a, 4), np.float32)),
        "mrcnn_class": mrcnn_class_loss(zero_ids, np.ones((b, n, k), np.float32), np.zeros((b, k), np.float32)),
        "mrcnn_bbox": mrcnn_bbox_loss(np.ones((b, n, 4), np.float32), zero_ids, np.ones((b, n, k, 4), np.float32)),
        "mrcnn_mask": mrcnn_mask_loss(np.ones((b, n, 4, 4), np.float32), zero_ids,
                                      np.zeros((b, n, 4, 4, k), np.float32)),
    }
    for name, value in cases.items():
        assert scalar(value) == 0.0, name


def test_losses_accept_empty_tensors():
    assert scalar(rpn_class_loss(np.zeros((1, 0, 1), np.int32), np.zeros((1, 0, 2), np.float32))) == 0.0
    assert scalar(mrcnn_bbox_loss(np.zeros((1, 0, 4)), np.zeros((1, 0), np.int32), np.zeros((1, 0, 2, 4)))) == 0.0
    assert scalar(mrcnn_mask_loss(np.zeros((1, 0, 4, 4)), np.zeros((1, 0), np.int32),
                                  np.zeros((1, 0, 4, 4, 2)))) == 0.0


def test_gradients_are_finite_without_positives():
    zero_ids = np.zeros((1, 3), np.int32)
    pred_bbox = tf.Variable(np.ones((1, 3, 2, 4), np.float32))
    pred_masks = tf.Variable(np.zeros((1, 3, 4, 4, 2), np.float32))
    rpn_bbox = tf.Variable(np.ones((1, 5, 4), np.float32))
    with tf.GradientTape() as tape:
        total = (mrcnn_bbox_loss(np.ones((1, 3, 4)), zero_ids, pred_bbox)
                 + mrcnn_mask_loss(np.ones((1, 3, 4, 4)), zero_ids, pred_masks)
                 + rpn_bbox_loss(np.ones((1, 2, 4)), np.zeros((1, 5, 1), np.int32), rpn_bbox))
    for grad in tape.gradient(total, [pred_bbox, pred_masks, rpn_bbox]):
        np.testing.assert_array_equal(grad.numpy(), 0.0)


def test_float16_predictions():
    logits = tf.constant(np.zeros((1, 2, 2)), tf.float16)
    value = rpn_class_loss(np.array([[[1], [-1]]], np.int32), logits)
    assert value.dtype == tf.float32
    assert float(value) == pytest.approx(np.log(2), rel=1e-6)
