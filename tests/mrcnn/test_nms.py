"""mrcnn.nms against tf.image.combined_non_max_suppression (the op it replaces), and under XLA.

Scores are distinct in every case: neither the op nor batched_nms promises an order for ties.
"""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.detection import DetectionLayer
from mrcnn.nms import batched_nms, batched_nms_gather, combined_nms, plain_ops
from mrcnn.proposals import ProposalLayer
from tests.optional_packages import require


def random_boxes(rng, batch, num, num_classes=1):
    y1x1 = rng.uniform(-0.1, 0.8, (batch, num, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(0.0, 0.3, (batch, num, 2))], axis=-1)
    scores = rng.permutation(batch * num * num_classes).reshape(batch, num, num_classes)
    return boxes.astype(np.float32), (scores / scores.size).astype(np.float32)


def combined_one_class(boxes, scores, max_output, threshold):
    return tf.image.combined_non_max_suppression(
        boxes[:, :, None], scores[:, :, None], max_output, max_output, threshold,
        score_threshold=float("-inf"), clip_boxes=False)


def combined_per_class(boxes, scores, classes, valid, num_classes, max_output, threshold):
    """The detection layer's former call: a score in its class's column only, 0 elsewhere."""
    table = np.eye(num_classes, dtype=np.float32)[classes] * np.where(valid, scores, 0.0)[..., None]
    return tf.image.combined_non_max_suppression(
        boxes[:, :, None], table, max_output, max_output, threshold, score_threshold=0.0,
        clip_boxes=False)


def assert_same(expected, actual):
    for e, a in zip(expected, actual):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


@pytest.mark.parametrize("batch, num, max_output, threshold, tile", [
    (2, 50, 20, 0.5, 512), (2, 50, 80, 0.3, 512),   # fewer boxes than outputs: zero padding
    (1, 1300, 400, 0.7, 512), (3, 700, 700, 0.5, 64), (2, 33, 10, 0.0, 8), (2, 40, 40, 1.0, 16)])
def test_one_class_matches_combined_op(rng, batch, num, max_output, threshold, tile):
    boxes, scores = random_boxes(rng, batch, num)
    expected = combined_one_class(boxes, scores[..., 0], max_output, threshold)
    actual = batched_nms_gather(boxes, scores[..., 0], max_output, threshold, tile_size=tile)
    assert_same(expected, actual)


@pytest.mark.parametrize("num_classes, max_output, tile", [(2, 30, 512), (5, 100, 32), (3, 7, 512)])
def test_per_class_with_invalid_boxes_matches_combined_op(rng, num_classes, max_output, tile):
    boxes, scores = random_boxes(rng, 2, 300, 1)
    scores = scores[..., 0]
    classes = rng.integers(0, num_classes, (2, 300))
    valid = rng.uniform(size=(2, 300)) < 0.7
    expected = combined_per_class(boxes, scores, classes, valid, num_classes, max_output, 0.3)
    actual = batched_nms_gather(boxes, scores, max_output, 0.3, classes=classes, valid=valid,
                                tile_size=tile)
    assert_same(expected, actual)


def test_drawn_cases_match_combined_op():
    """Duplicates, nested boxes, boxes of no area, corners given in reverse, IoU at the threshold."""
    boxes = np.array([[[0.1, 0.1, 0.3, 0.3],      # kept (best)
                       [0.1, 0.1, 0.3, 0.3],      # its duplicate: dropped
                       [0.3, 0.3, 0.1, 0.1],      # the same box, corners reversed: dropped
                       [0.1, 0.1, 0.2, 0.3],      # IoU exactly 0.5 with the first: kept at 0.5
                       [0.5, 0.5, 0.5, 0.9],      # no area: never suppresses, never suppressed
                       [0.5, 0.5, 0.5, 0.9],
                       [0.0, 0.0, 1.0, 1.0],      # contains everything, IoU small
                       [0.12, 0.12, 0.29, 0.29],  # nested in the first, IoU 0.72: dropped
                       [0.0, 0.0, 0.0, 0.0]]], np.float32)
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]], np.float32)
    expected = combined_one_class(boxes, scores, 9, 0.5)
    actual = batched_nms_gather(boxes, scores, 9, 0.5)
    assert_same(expected, actual)
    assert list(np.asarray(actual[3])) == [6]
    indices, count = batched_nms(boxes, scores, 9, 0.5)
    np.testing.assert_array_equal(indices.numpy(), [[0, 3, 4, 5, 6, 8, 0, 0, 0]])


def test_nothing_valid_gives_zeros(rng):
    boxes, scores = random_boxes(rng, 2, 20)
    out_boxes, out_scores, out_classes, count = batched_nms_gather(
        boxes, scores[..., 0], 5, 0.5, classes=np.ones((2, 20), np.int32), valid=np.zeros((2, 20), bool))
    np.testing.assert_array_equal(count.numpy(), [0, 0])
    assert not np.any(out_boxes.numpy()) and not np.any(out_scores.numpy()) and not np.any(out_classes.numpy())


def test_compiles_with_xla_and_batch_unknown(rng):
    boxes, scores = random_boxes(rng, 2, 1000)
    fn = tf.function(lambda b, s: batched_nms_gather(b, s, 300, 0.7), jit_compile=True,
                     input_signature=[tf.TensorSpec([None, 1000, 4]), tf.TensorSpec([None, 1000])])
    assert_same(combined_one_class(boxes, scores[..., 0], 300, 0.7), fn(boxes, scores[..., 0]))


def test_proposal_and_detection_layers_compile_with_xla(rng):
    """The layers that held CombinedNonMaxSuppression, which has no XLA kernel."""
    num_anchors = 600
    y1x1 = rng.uniform(0.0, 0.8, (num_anchors, 2))
    anchors = np.concatenate([y1x1, y1x1 + rng.uniform(0.05, 0.2, (num_anchors, 2))], -1).astype(np.float32)
    foreground = (rng.permutation(2 * num_anchors) / (2 * num_anchors)).reshape(2, num_anchors)
    probs = np.stack([1 - foreground, foreground], -1).astype(np.float32)
    deltas = rng.normal(size=(2, num_anchors, 4)).astype(np.float32)
    proposals = ProposalLayer(100, 0.7, 400)
    eager = proposals([probs, deltas, anchors])
    compiled = tf.function(proposals, jit_compile=True)([probs, deltas, anchors])
    # XLA fuses the box decoding and rounds differently in the last bit; the same boxes.
    np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=1e-6, atol=1e-6)

    logits = rng.normal(scale=2.0, size=(2, 100, 3))
    class_probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    bbox = rng.normal(size=(2, 100, 3, 4)).astype(np.float32)
    meta = np.zeros((2, 12 + 3), np.float32)
    meta[:, 1:4] = [64, 64, 3]
    meta[:, 4:7] = [64, 64, 3]
    meta[:, 7:11] = [0, 0, 64, 64]
    detection = DetectionLayer(20, 0.4, 0.3)
    eager = detection([eager, class_probs, bbox, meta])
    compiled = tf.function(detection, jit_compile=True)([compiled, class_probs, bbox, meta])
    np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=1e-6, atol=1e-6)
    assert np.count_nonzero(eager.numpy()[..., 5]) > 0


def test_openvino_converts_and_runs_it(rng, tmp_path):
    """The op it replaced has no OpenVINO conversion rule (issue 28); openvino comes with the test extra
    (skipped without it, except in CI: tests/optional_packages.py)."""
    ov = require("openvino", "openvino")
    boxes, scores = random_boxes(rng, 1, 700)
    scores = scores[..., 0]
    classes = rng.integers(0, 3, (1, 700)).astype(np.int32)

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 700, 4], name="boxes"), tf.TensorSpec([1, 700], name="scores"),
                                      tf.TensorSpec([1, 700], tf.int32, name="classes")])
        def serve(self, boxes, scores, classes):
            out = batched_nms_gather(boxes, scores, 100, 0.3, classes=classes, tile_size=256)
            return dict(zip(["boxes", "scores", "classes", "count"], out))

    tf.saved_model.save(Module(), str(tmp_path / "nms"))
    compiled = ov.Core().compile_model(ov.convert_model(str(tmp_path / "nms")), "CPU")
    feed = {"boxes": boxes, "scores": scores, "classes": classes, "count": None}
    name = lambda port: next(n for n in feed if port.get_any_name().startswith(n))  # "scores:0", "scores_1"
    results = compiled({port: feed[name(port)] for port in compiled.inputs})
    actual = {name(port): results[port] for port in compiled.outputs}
    expected = combined_per_class(boxes, scores, classes, np.ones_like(classes, bool), 3, 100, 0.3)
    for name, value in zip(["boxes", "scores", "classes", "count"], expected):
        np.testing.assert_array_equal(actual[name], value.numpy(), err_msg=name)


def _graph_ops(fn, *args):
    return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


def test_combined_nms_is_the_op_in_a_graph_and_the_plain_ops_for_xla_and_exports(rng):
    """combined_nms("auto"): CombinedNonMaxSuppression where TensorFlow runs the graph (4-5x faster
    there), the plain ops inside plain_ops() (exports) and while XLA compiles; the same rows each way,
    for one class and per class."""
    boxes, scores = random_boxes(rng, 2, 300)
    scores = scores[..., 0]
    classes = rng.integers(0, 3, (2, 300)).astype(np.int32)
    valid = (classes > 0) & (scores > 0.2)
    per_class = lambda b, s, c, v, implementation="auto": combined_nms(
        b, s, 40, 0.3, classes=c, valid=v, num_classes=3, implementation=implementation)
    one_class = lambda b, s, implementation="auto": combined_nms(b, s, 100, 0.7, implementation=implementation)
    for fn, args in ((one_class, (boxes, scores)), (per_class, (boxes, scores, classes, valid))):
        assert_same(fn(*args, implementation="gather"), fn(*args, implementation="op"))
        assert "CombinedNonMaxSuppression" in _graph_ops(fn, *args)
        with plain_ops():
            assert "CombinedNonMaxSuppression" not in _graph_ops(fn, *args)
        assert_same(tf.function(fn, jit_compile=True)(*args), fn(*args))  # (XLA has no kernel for the op)
    with pytest.raises(ValueError, match="implementation must be one of"):
        combined_nms(boxes, scores, 10, 0.5, implementation="fast")


def test_combined_nms_takes_a_class_count_known_only_when_the_graph_runs(rng):
    """The detection layer passes tf.shape(probs)[-1] when the class axis has no static size."""
    boxes, scores = random_boxes(rng, 1, 200)
    scores = scores[..., 0]
    classes = rng.integers(1, 3, (1, 200)).astype(np.int32)
    valid = scores > 0.1

    @tf.function(input_signature=[tf.TensorSpec([1, 200, None], tf.float32)])
    def run(table):
        return combined_nms(boxes, scores, 30, 0.3, classes=classes, valid=valid, num_classes=tf.shape(table)[-1])

    assert_same(combined_nms(boxes, scores, 30, 0.3, classes=classes, valid=valid, implementation="gather"),
                run(tf.zeros([1, 200, 3])))
