"""ProposalLayer against a numpy pipeline built from mrcnn.utils, eagerly and in a model."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import utils
from mrcnn.proposals import ProposalLayer, proposal_steps

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


def make_inputs(rng, batch, num_anchors):
    """Softmax scores (distinct, so the order is unambiguous), deltas and normalised anchors."""
    y1x1 = rng.uniform(-0.1, 0.8, (num_anchors, 2))
    anchors = np.concatenate([y1x1, y1x1 + rng.uniform(0.05, 0.4, (num_anchors, 2))], axis=1)
    foreground = rng.permutation(num_anchors * batch).reshape(batch, num_anchors) / (num_anchors * batch)
    probs = np.stack([1 - foreground, foreground], axis=-1).astype(np.float32)
    deltas = rng.normal(size=(batch, num_anchors, 4)).astype(np.float32)
    return probs, deltas, anchors.astype(np.float32)


def reference_proposals(probs, deltas, anchors, proposal_count, nms_threshold, pre_nms_limit):
    """utils-only pipeline: top-k, decode, clip, greedy NMS, zero-pad."""
    out = np.zeros((probs.shape[0], proposal_count, 4), np.float32)
    for b in range(probs.shape[0]):
        scores = probs[b, :, 1]
        order = np.argsort(-scores, kind="stable")[:pre_nms_limit]
        boxes = utils.apply_box_deltas(anchors[order], deltas[b, order] * STD)
        boxes = np.clip(boxes, 0.0, 1.0)
        keep = utils.non_max_suppression(boxes, scores[order], nms_threshold)[:proposal_count]
        out[b, :len(keep)] = boxes[keep]
    return out


@pytest.mark.parametrize("proposal_count, pre_nms_limit", [(10, 40), (60, 40), (30, 500)])
def test_matches_numpy_reference(rng, proposal_count, pre_nms_limit):
    probs, deltas, anchors = make_inputs(rng, batch=2, num_anchors=80)
    layer = ProposalLayer(proposal_count, 0.5, pre_nms_limit, STD)
    rois = layer([probs, deltas, anchors]).numpy()
    expected = reference_proposals(probs, deltas, anchors, proposal_count, 0.5, pre_nms_limit)
    assert rois.shape == (2, proposal_count, 4)
    np.testing.assert_allclose(rois, expected, rtol=1e-5, atol=1e-6)


def test_steps_are_consistent(rng):
    probs, deltas, anchors = make_inputs(rng, batch=2, num_anchors=50)
    steps = proposal_steps(probs, deltas, anchors, proposal_count=40, nms_threshold=0.3,
                           pre_nms_limit=30, rpn_bbox_std_dev=STD)
    steps = {k: v.numpy() for k, v in steps.items()}
    assert steps["pre_nms_scores"].shape == (2, 30)
    assert np.all(np.diff(steps["pre_nms_scores"], axis=1) <= 0)
    np.testing.assert_array_equal(steps["pre_nms_scores"],
                                  np.take_along_axis(probs[..., 1], steps["pre_nms_indices"], axis=1))
    np.testing.assert_array_equal(steps["pre_nms_anchors"], anchors[steps["pre_nms_indices"]])
    np.testing.assert_allclose(steps["refined_anchors_clipped"], np.clip(steps["refined_anchors"], 0, 1))
    # NMS at 0.3 removes some of 30 boxes; what is left is a prefix of real rows, then zeros.
    counts = steps["post_nms_count"]
    assert np.all(counts < 30) and np.all(counts > 0)
    for b in range(2):
        rois = steps["post_nms_rois"][b]
        assert np.all(np.any(rois[:counts[b]] != 0, axis=1))
        np.testing.assert_array_equal(rois[counts[b]:], 0.0)
        np.testing.assert_array_equal(steps["post_nms_scores"][b, counts[b]:], 0.0)


def test_in_functional_model_with_batch_2_and_padding(rng):
    probs, deltas, anchors = make_inputs(rng, batch=2, num_anchors=40)
    probs_in = keras.Input((40, 2))
    deltas_in = keras.Input((40, 4))
    anchors_in = keras.Input((40, 4))
    layer = ProposalLayer(proposal_count=50, nms_threshold=0.7, pre_nms_limit=30, rpn_bbox_std_dev=STD)
    rois = layer([probs_in, deltas_in, anchors_in])
    assert tuple(rois.shape) == (None, 50, 4)
    model = keras.Model([probs_in, deltas_in, anchors_in], rois)
    # Per-image anchors [batch, A, 4] give the same result as shared anchors [A, 4].
    batched_anchors = np.broadcast_to(anchors, (2, 40, 4))
    out = model.predict([probs, deltas, batched_anchors], batch_size=2, verbose=0)
    expected = reference_proposals(probs, deltas, anchors, 50, 0.7, 30)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # At most 30 boxes survive top-k, so at least 20 rows of each image are zero padding.
    assert np.all(np.sum(np.all(out == 0, axis=-1), axis=1) >= 20)


def test_mixed_precision_inputs_give_float32(rng):
    probs, deltas, anchors = make_inputs(rng, batch=1, num_anchors=20)
    rois = ProposalLayer(5, 0.7, 10)([tf.constant(probs, tf.float16), tf.constant(deltas, tf.float16), anchors])
    assert rois.dtype == tf.float32


def test_get_config_round_trip():
    layer = ProposalLayer(2000, 0.7, 6000, [0.1, 0.1, 0.2, 0.2], name="ROI")
    clone = ProposalLayer.from_config(layer.get_config())
    assert clone.name == "ROI"
    assert (clone.proposal_count, clone.nms_threshold, clone.pre_nms_limit) == (2000, 0.7, 6000)
    assert clone.rpn_bbox_std_dev == [0.1, 0.1, 0.2, 0.2]


def test_unknown_anchor_count(rng):
    probs, deltas, anchors = make_inputs(rng, batch=2, num_anchors=30)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 2]), tf.TensorSpec([None, None, 4]),
                                  tf.TensorSpec([None, 4])])
    def dynamic(probs, deltas, anchors):
        return ProposalLayer(20, 0.5, 25, STD)([probs, deltas, anchors])

    np.testing.assert_allclose(dynamic(probs, deltas, anchors).numpy(),
                               reference_proposals(probs, deltas, anchors, 20, 0.5, 25), rtol=1e-5, atol=1e-6)
