"""RPN head, classifier and mask heads: shapes, Matterport's names and weight shapes, ordering."""
import math

import keras
import numpy as np
import pytest

from mrcnn.anchors import get_anchors
from mrcnn.heads import FlatConv2D, build_fpn_mask_graph, fpn_classifier_graph
from mrcnn.rpn import build_rpn_model

STRIDES = [4, 8, 16, 32, 64]


def weight_shapes(model, name):
    return [tuple(w.shape) for w in model.get_layer(name).weights]


# ----------------------------------------------------------------------------------- RPN

def test_rpn_model_names_and_weights_in_matterport_order():
    rpn = build_rpn_model(anchor_stride=1, anchors_per_location=3, depth=256, conv_channels=512)
    assert rpn.name == "rpn_model"
    assert rpn.inputs[0].name == "input_rpn_feature_map"
    assert [w.path for w in rpn.weights] == [
        "rpn_conv_shared/kernel", "rpn_conv_shared/bias", "rpn_class_raw/kernel", "rpn_class_raw/bias",
        "rpn_bbox_pred/kernel", "rpn_bbox_pred/bias"]
    assert [tuple(w.shape) for w in rpn.weights] == [
        (3, 3, 256, 512), (512,), (1, 1, 512, 2 * 3), (2 * 3,), (1, 1, 512, 4 * 3), (4 * 3,)]


def test_rpn_outputs_one_row_per_anchor_of_the_pyramid(rng):
    side = 64
    rpn = build_rpn_model(1, 3, depth=8, conv_channels=16)
    levels = [rng.normal(size=(2, math.ceil(side / s), math.ceil(side / s), 8)).astype(np.float32) for s in STRIDES]
    outputs = [rpn.predict(level, verbose=0) for level in levels]
    logits, probs, bbox = (np.concatenate([o[i] for o in outputs], axis=1) for i in range(3))
    count = 3 * sum((side // s) ** 2 for s in STRIDES)  # 3 * (16² + 8² + 4² + 2² + 1²)
    assert count == 1023
    assert logits.shape == probs.shape == (2, count, 2) and bbox.shape == (2, count, 4)
    assert len(get_anchors((side, side), (8, 16, 32, 64, 128), [0.5, 1, 2], STRIDES, 1)) == count
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True), rtol=1e-5)


def test_rpn_rows_are_position_major_then_anchor(rng):
    """Row r of the outputs is anchor r % 3 at position r // 3 (row-major), as in mrcnn.anchors."""
    rpn = build_rpn_model(1, 3, depth=4, conv_channels=8)
    feature_map = rng.normal(size=(1, 3, 5, 4)).astype(np.float32)
    raw = keras.Model(rpn.inputs, [rpn.get_layer("rpn_class_raw").output, rpn.get_layer("rpn_bbox_pred").output])
    class_raw, bbox_raw = raw.predict(feature_map, verbose=0)  # [1, 3, 5, 3 * 2], [1, 3, 5, 3 * 4]
    logits, _, bbox = rpn.predict(feature_map, verbose=0)
    for row in range(3):
        for col in range(5):
            for anchor in range(3):
                r = (row * 5 + col) * 3 + anchor
                np.testing.assert_allclose(logits[0, r], class_raw[0, row, col, 2 * anchor:2 * anchor + 2], rtol=1e-6)
                np.testing.assert_allclose(bbox[0, r], bbox_raw[0, row, col, 4 * anchor:4 * anchor + 4], rtol=1e-6)


def test_rpn_anchor_stride_2_keeps_every_other_cell(rng):
    rpn = build_rpn_model(anchor_stride=2, anchors_per_location=3, depth=4, conv_channels=8)
    logits, _, bbox = rpn.predict(rng.normal(size=(1, 5, 8, 4)).astype(np.float32), verbose=0)
    assert logits.shape == (1, 3 * 4 * 3, 2) and bbox.shape == (1, 3 * 4 * 3, 4)  # ceil(5 / 2) * ceil(8 / 2)
    assert len(get_anchors((20, 32), (8,), [0.5, 1, 2], [4], 2)) == 3 * 4 * 3


# --------------------------------------------------------------------------------- heads

def head_inputs(num_rois, channels, num_classes=81):
    rois = keras.Input((num_rois, 4), name="rois")
    meta = keras.Input((12 + num_classes,), name="meta")
    maps = [keras.Input((32 // 2 ** i, 32 // 2 ** i, channels), name=f"p{i + 2}") for i in range(4)]
    return rois, meta, maps


def test_heads_have_matterport_names_and_weight_shapes_for_coco():
    rois, meta, maps = head_inputs(None, 256)
    logits, probs, bbox = fpn_classifier_graph(rois, maps, meta, 7, 81, train_bn=False)
    mask = build_fpn_mask_graph(rois, maps, meta, 14, 81, train_bn=False)
    model = keras.Model([rois, meta, *maps], [logits, probs, bbox, mask])
    assert [tuple(t.shape) for t in (logits, probs, bbox, mask)] == [
        (None, None, 81), (None, None, 81), (None, None, 81, 4), (None, None, 28, 28, 81)]
    expected = {
        "mrcnn_class_conv1": [(7, 7, 256, 1024), (1024,)],
        "mrcnn_class_bn1": [(1024,)] * 4,
        "mrcnn_class_conv2": [(1, 1, 1024, 1024), (1024,)],
        "mrcnn_class_bn2": [(1024,)] * 4,
        "mrcnn_class_logits": [(1024, 81), (81,)],
        "mrcnn_bbox_fc": [(1024, 81 * 4), (81 * 4,)],
        **{f"mrcnn_mask_conv{i}": [(3, 3, 256, 256), (256,)] for i in range(1, 5)},
        **{f"mrcnn_mask_bn{i}": [(256,)] * 4 for i in range(1, 5)},
        "mrcnn_mask_deconv": [(2, 2, 256, 256), (256,)],
        "mrcnn_mask": [(1, 1, 256, 81), (81,)],
    }
    carrying = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers if layer.weights}
    assert carrying == expected
    assert [w.name for w in model.get_layer("mrcnn_class_bn1").weights] == [
        "gamma", "beta", "moving_mean", "moving_variance"]
    assert model.get_layer("mrcnn_bbox").weights == []


@pytest.fixture(scope="module")
def small_heads():
    """Batch 2, 5 ROIs, 4 classes, narrow layers: cheap to run."""
    rois, meta, maps = head_inputs(5, 8, num_classes=4)
    classifier = fpn_classifier_graph(rois, maps, meta, 7, 4, train_bn=False, fc_layers_size=16)
    mask = build_fpn_mask_graph(rois, maps, meta, 14, 4, train_bn=False, conv_channels=8)
    return keras.Model([rois, meta, *maps], [*classifier, mask])


def small_inputs(rng):
    corners = np.sort(rng.uniform(size=(2, 5, 2, 2)), axis=2)  # [B, N, (min, max), (y, x)]
    rois = corners.reshape(2, 5, 4).astype(np.float32)  # (y1, x1, y2, x2)
    rois[1, 3:] = 0  # padding
    meta = np.zeros((2, 12 + 4), np.float32)
    meta[:, 4:7] = 128, 128, 3
    maps = [rng.normal(size=(2, 32 // 2 ** i, 32 // 2 ** i, 8)).astype(np.float32) for i in range(4)]
    return [rois, meta, *maps]


def test_heads_output_shapes_and_ranges(small_heads, rng):
    inputs = small_inputs(rng)
    assert np.all(inputs[0][..., 2:] >= inputs[0][..., :2])
    logits, probs, bbox, mask = small_heads.predict(inputs, verbose=0)
    assert logits.shape == probs.shape == (2, 5, 4)
    assert bbox.shape == (2, 5, 4, 4)
    assert mask.shape == (2, 5, 28, 28, 4)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.all((mask >= 0) & (mask <= 1))
    assert all(np.isfinite(o).all() for o in (logits, probs, bbox, mask))


def test_heads_treat_each_roi_on_its_own(small_heads, rng):
    """Permuting the ROIs of an image permutes the outputs: merging and splitting the ROI
    axis keeps every ROI with its image and position, and ROIs do not mix."""
    inputs = small_inputs(rng)
    outputs = small_heads.predict(inputs, verbose=0)
    order = [4, 2, 0, 1, 3]
    permuted = [inputs[0][:, order], *inputs[1:]]
    for before, after in zip(outputs, small_heads.predict(permuted, verbose=0)):
        np.testing.assert_allclose(after, before[:, order], rtol=1e-4, atol=1e-6)
    # Swapping the images swaps the outputs.
    swapped = [x[::-1] for x in inputs]
    for before, after in zip(outputs, small_heads.predict(swapped, verbose=0)):
        np.testing.assert_allclose(after, before[::-1], rtol=1e-4, atol=1e-6)


def test_heads_model_rebuilds_from_its_config(small_heads, rng):
    """The custom layers (ROIAlign, ROI-axis reshapes, BatchNorm) serialise for .keras files."""
    clone = keras.Model.from_config(small_heads.get_config())
    clone.set_weights(small_heads.get_weights())
    assert not clone.get_layer("mrcnn_mask_bn1").train_bn
    inputs = small_inputs(rng)
    for before, after in zip(small_heads.predict(inputs, verbose=0), clone.predict(inputs, verbose=0)):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- speed-ups, same numbers

@pytest.mark.parametrize("kernel", [(7, 7), (1, 1)])
def test_flat_conv2d_is_the_convolution_it_replaces(kernel, rng):
    """The classifier's whole-input convolutions as one matrix product: same outputs, same
    gradients, same weight shapes (so Matterport's files load)."""
    import tensorflow as tf

    x = rng.normal(size=(6, *kernel, 8)).astype(np.float32)
    flat = FlatConv2D(5, kernel, padding="valid", activation="relu")
    conv = keras.layers.Conv2D(5, kernel, padding="valid", activation="relu")
    flat.build(x.shape)
    conv.build(x.shape)
    assert [tuple(w.shape) for w in flat.weights] == [(*kernel, 8, 5), (5,)]
    conv.set_weights([rng.normal(size=(*kernel, 8, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)])
    flat.set_weights(conv.get_weights())
    grads = []
    for layer in (flat, conv):
        with tf.GradientTape() as tape:
            inputs = tf.constant(x)
            tape.watch(inputs)
            y = layer(inputs)
            loss = tf.reduce_sum(y * y)
        grads.append([np.asarray(g) for g in tape.gradient(loss, [inputs, *layer.trainable_variables])])
        assert tuple(y.shape) == (6, 1, 1, 5)
    np.testing.assert_allclose(flat(x), conv(x), rtol=1e-5, atol=1e-5)
    for g_flat, g_conv in zip(*grads):
        np.testing.assert_allclose(g_flat, g_conv, rtol=1e-4, atol=1e-4)
    # Any other input size is an ordinary convolution.
    larger = rng.normal(size=(2, kernel[0] + 2, kernel[1] + 2, 8)).astype(np.float32)
    np.testing.assert_allclose(flat(larger), conv(larger), rtol=1e-5, atol=1e-5)


def test_mask_head_on_scored_rois_matches_those_rows_and_zeros_the_rest(rng):
    """scored_rois=3 of 5: the first 3 rows are the full head's, the other 2 are zeros."""
    rois, meta, maps = head_inputs(5, 8, num_classes=4)
    full = keras.Model([rois, meta, *maps], build_fpn_mask_graph(rois, maps, meta, 14, 4, train_bn=False,
                                                                 conv_channels=8))
    scored = keras.Model([rois, meta, *maps], build_fpn_mask_graph(rois, maps, meta, 14, 4, train_bn=False,
                                                                   conv_channels=8, scored_rois=3))
    assert tuple(scored.outputs[0].shape) == (None, 5, 28, 28, 4)
    scored.set_weights(full.get_weights())
    inputs = small_inputs(rng)
    expected, got = full.predict(inputs, verbose=0), scored.predict(inputs, verbose=0)
    assert got.shape == expected.shape == (2, 5, 28, 28, 4)
    np.testing.assert_allclose(got[:, :3], expected[:, :3], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[:, 3:], 0.0)
    clone = keras.Model.from_config(scored.get_config())
    clone.set_weights(scored.get_weights())
    np.testing.assert_allclose(clone.predict(inputs, verbose=0), got, rtol=1e-5, atol=1e-6)
    # A count known only when the graph runs (inference: the number of detections).
    count = keras.Input((), batch_size=1, dtype="int32", name="count")
    dynamic = keras.Model([rois, meta, *maps, count], build_fpn_mask_graph(
        rois, maps, meta, 14, 4, train_bn=False, conv_channels=8, scored_rois=count[0]))
    dynamic.set_weights(full.get_weights())
    for n in (0, 2, 5):
        got = np.asarray(dynamic([*inputs, np.array([n], np.int32)]))
        assert got.shape == (2, 5, 28, 28, 4)
        np.testing.assert_allclose(got[:, :n], expected[:, :n], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got[:, n:], 0.0)


def test_mask_loss_and_gradients_are_the_same_on_scored_rois(rng):
    """Training's mask head on the rows that can be positive: the loss and every gradient (head
    weights, feature maps) equal those of the head run on all ROIs, since positives come first."""
    import tensorflow as tf

    from mrcnn.losses import mrcnn_mask_loss

    rois, meta, maps = head_inputs(5, 8, num_classes=4)
    full = keras.Model([rois, meta, *maps], build_fpn_mask_graph(rois, maps, meta, 14, 4, train_bn=False,
                                                                 conv_channels=8))
    scored = keras.Model([rois, meta, *maps], build_fpn_mask_graph(rois, maps, meta, 14, 4, train_bn=False,
                                                                   conv_channels=8, scored_rois=3))
    scored.set_weights(full.get_weights())
    values = small_inputs(rng)
    # Boxes that share no pixel of any map. With random, overlapping boxes the map gradient once
    # differed between the two graphs by far more than summation order (1e-5 against a scale of
    # 4e-5, all channels of one pixel of image 1; CI under load, oneDNN on, 1 run in 1030
    # tests): TensorFlow's CPU gradient of crop_and_resize adds every box of an image into one
    # map gradient, so a pixel two boxes share is where threads could collide. With disjoint
    # boxes no pixel is shared, and the comparison stays exact up to summation order.
    cells = [(0.1, 0.05, 0.4, 0.25), (0.1, 0.35, 0.4, 0.55), (0.1, 0.65, 0.4, 0.85), (0.5, 0.05, 0.8, 0.25),
             (0.5, 0.35, 0.8, 0.55)]
    values[0][:] = np.array(cells, np.float32)
    values[0][1, 3:] = 0  # padding
    inputs = [tf.constant(x) for x in values]
    # Image 0: rows 0 and 1 positive (classes 2 and 3); image 1: row 0 positive (class 1).
    target_class_ids = tf.constant([[2, 3, 0, 0, 0], [1, 0, 0, 0, 0]], tf.int32)
    target_masks = tf.constant(rng.integers(0, 2, size=(2, 5, 28, 28)).astype(np.float32))
    results = []
    for model in (full, scored):
        with tf.GradientTape() as tape:
            tape.watch(inputs[2:])
            loss = mrcnn_mask_loss(target_masks, target_class_ids, model(inputs))
        results.append((loss, tape.gradient(loss, model.trainable_variables + inputs[2:])))
    (loss_full, grads_full), (loss_scored, grads_scored) = results
    assert float(loss_full) > 0
    np.testing.assert_allclose(float(loss_scored), float(loss_full), rtol=1e-6)
    for g_scored, g_full in zip(grads_scored, grads_full):
        # Float32 sums in a different order (ROIAlign's gradient scatters in parallel): allow
        # differences far below the gradient's own scale.
        scale = float(np.max(np.abs(np.asarray(g_full)))) or 1.0
        np.testing.assert_allclose(np.asarray(g_scored), np.asarray(g_full), rtol=1e-4, atol=1e-4 * scale)
