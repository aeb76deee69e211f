"""DetectionLayer against a numpy reference with per-class utils.non_max_suppression."""
import keras
import numpy as np
import pytest

from mrcnn import utils
from mrcnn.detection import DetectionLayer, refine_detections_graph

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


def reference_detections(rois, probs, deltas, window, max_instances, min_confidence, nms_threshold):
    """Matterport's refine_detections in numpy, one image."""
    class_ids = np.argmax(probs, axis=1)
    scores = probs[np.arange(len(probs)), class_ids]
    boxes = utils.apply_box_deltas(rois, deltas[np.arange(len(rois)), class_ids] * STD)
    boxes = np.stack([np.clip(boxes[:, i], window[i % 2], window[2 + i % 2]) for i in range(4)], axis=1)
    keep = np.flatnonzero(np.any(rois != 0, axis=1) & (class_ids > 0) & (scores >= min_confidence))
    kept = []
    for class_id in np.unique(class_ids[keep]):
        ixs = keep[class_ids[keep] == class_id]
        kept.extend(ixs[utils.non_max_suppression(boxes[ixs], scores[ixs], nms_threshold)])
    kept = np.array(kept, int)
    kept = kept[np.argsort(-scores[kept], kind="stable")][:max_instances]
    out = np.zeros((max_instances, 6), np.float32)
    out[:len(kept)] = np.concatenate([boxes[kept], class_ids[kept, None], scores[kept, None]], axis=1)
    return out


def make_inputs(rng, batch, num_rois, num_classes, num_padding=0):
    y1x1 = rng.uniform(0.0, 0.7, (batch, num_rois, 2))
    rois = np.concatenate([y1x1, y1x1 + rng.uniform(0.1, 0.3, (batch, num_rois, 2))], axis=-1)
    rois[:, num_rois - num_padding:] = 0.0
    logits = rng.normal(scale=2.0, size=(batch, num_rois, num_classes))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    deltas = rng.normal(size=(batch, num_rois, num_classes, 4))
    return rois.astype(np.float32), probs.astype(np.float32), deltas.astype(np.float32)


@pytest.mark.parametrize("max_instances, min_confidence", [(30, 0.0), (30, 0.5), (4, 0.3)])
def test_matches_numpy_reference(rng, max_instances, min_confidence):
    rois, probs, deltas = make_inputs(rng, batch=2, num_rois=40, num_classes=4, num_padding=5)
    window = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.9, 0.8]], np.float32)
    out = refine_detections_graph(rois, probs, deltas, window, max_instances, min_confidence, 0.3, STD).numpy()
    assert out.shape == (2, max_instances, 6)
    for b in range(2):
        expected = reference_detections(rois[b], probs[b], deltas[b], window[b], max_instances,
                                        min_confidence, 0.3)
        np.testing.assert_allclose(out[b], expected, rtol=1e-5, atol=1e-6)


def test_min_confidence_background_and_padding_by_hand():
    rois = np.array([[[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.7, 0.7], [0.1, 0.5, 0.3, 0.7], [0, 0, 0, 0]]], np.float32)
    probs = np.array([[[0.1, 0.9, 0.0],    # class 1, kept
                       [0.4, 0.0, 0.6],    # class 2 at 0.6: below min_confidence 0.7
                       [0.8, 0.2, 0.0],    # background
                       [0.0, 0.0, 1.0]]],  # a padding ROI, however confident
                     np.float32)
    deltas = np.zeros((1, 4, 3, 4), np.float32)
    out = refine_detections_graph(rois, probs, deltas, np.array([[0, 0, 1, 1]], np.float32),
                                  max_instances=3, min_confidence=0.7, nms_threshold=0.3,
                                  bbox_std_dev=STD).numpy()
    np.testing.assert_allclose(out[0], [[0.1, 0.1, 0.3, 0.3, 1, 0.9], [0] * 6, [0] * 6], rtol=1e-6)


def test_nms_is_per_class():
    # Two identical boxes: of different classes both stay; of the same class one goes.
    rois = np.array([[[0.1, 0.1, 0.5, 0.5]] * 3], np.float32)
    probs = np.array([[[0, 0.9, 0.1], [0, 0.1, 0.8], [0, 0.85, 0.15]]], np.float32)
    out = refine_detections_graph(rois, probs, np.zeros((1, 3, 3, 4), np.float32),
                                  np.array([[0, 0, 1, 1]], np.float32), 5, 0.5, 0.3, STD).numpy()
    np.testing.assert_allclose(out[0, :, 4:], [[1, 0.9], [2, 0.8], [0, 0], [0, 0], [0, 0]], rtol=1e-6)


def test_layer_in_functional_model_with_image_meta(rng):
    num_classes = 3
    rois, probs, deltas = make_inputs(rng, batch=2, num_rois=20, num_classes=num_classes, num_padding=3)
    # id, original shape, image shape (64 x 32), window in pixels, scale, active classes.
    meta = np.array([[0, 64, 32, 3, 64, 32, 3, 0, 0, 64, 32, 1, 1, 1, 1],
                     [1, 32, 16, 3, 64, 32, 3, 16, 8, 48, 24, 2, 1, 1, 1]], np.float32)
    inputs = [keras.Input((20, 4)), keras.Input((20, num_classes)), keras.Input((20, num_classes, 4)),
              keras.Input((12 + num_classes,))]
    layer = DetectionLayer(max_instances=10, min_confidence=0.5, nms_threshold=0.3, bbox_std_dev=STD)
    detections = layer(inputs)
    assert tuple(detections.shape) == (None, 10, 6)
    out = keras.Model(inputs, detections).predict([rois, probs, deltas, meta], batch_size=2, verbose=0)
    windows = utils.norm_boxes(meta[:, 7:11], (64, 32))
    for b in range(2):
        expected = reference_detections(rois[b], probs[b], deltas[b], windows[b], 10, 0.5, 0.3)
        np.testing.assert_allclose(out[b], expected, rtol=1e-5, atol=1e-6)
    # The second image's window is a strict sub-window: its boxes stay inside it.
    real = out[1][out[1, :, 5] > 0]
    assert len(real) > 0
    assert np.all(real[:, :2] >= windows[1, :2] - 1e-6) and np.all(real[:, 2:4] <= windows[1, 2:] + 1e-6)


def test_get_config_round_trip():
    layer = DetectionLayer(100, 0.7, 0.3, [0.1, 0.1, 0.2, 0.2], name="mrcnn_detection")
    clone = DetectionLayer.from_config(layer.get_config())
    assert clone.name == "mrcnn_detection"
    assert (clone.max_instances, clone.min_confidence, clone.nms_threshold) == (100, 0.7, 0.3)
    assert clone.bbox_std_dev == [0.1, 0.1, 0.2, 0.2]
