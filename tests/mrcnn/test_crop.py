"""mrcnn.crop: the gather path against tf.image.crop_and_resize (values, gradients, XLA), the
pyramid against a per-level reference, and the layers that use it compiled by XLA."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.crop import EDGE_TOLERANCE, compiling_with_xla, crop_and_resize, pyramid_crop_and_resize
from mrcnn.heads import TakeRois
from mrcnn.roi_align import PyramidROIAlign, roi_pyramid_levels
from mrcnn.targets import detection_targets_graph
from tests.mrcnn.test_roi_align import image_meta, pyramid
from tests.mrcnn.test_targets import STD, many_proposals

CROP_SIZES = [(7, 7), (1, 1), (1, 5), (14, 3)]


def awkward_boxes(rng, count):
    """Random boxes, partly outside the image, plus zero rows, tiny boxes, flipped boxes,
    boxes outside the image and a box that is a single point."""
    boxes = rng.uniform(-0.3, 1.3, (count, 4)).astype(np.float32)
    boxes[:3] = 0.0  # padding
    boxes[3:6, 2:] = boxes[3:6, :2] + rng.uniform(1e-5, 1e-3, (3, 2))  # tiny
    boxes[6:9] = boxes[6:9][:, [2, 3, 0, 1]]  # flipped in both axes
    boxes[9] = [0.4, 0.7, 0.6, 0.2]  # flipped in x only
    boxes[10] = [1.2, 1.1, 1.5, 1.4]  # outside
    boxes[11] = [0.5, 0.25, 0.5, 0.25]  # a point
    return boxes


@pytest.mark.parametrize("crop_size", CROP_SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_values_equal_the_op(rng, crop_size, dtype):
    image = rng.normal(size=(3, 11, 7, 4)) * (40 if dtype == np.uint8 else 1)
    image = np.clip(image + (128 if dtype == np.uint8 else 0), 0, 255 if dtype == np.uint8 else None).astype(dtype)
    boxes = awkward_boxes(rng, 40)
    indices = rng.integers(0, 3, 40).astype(np.int32)
    expected = tf.image.crop_and_resize(image, boxes, indices, crop_size).numpy()
    actual = crop_and_resize(image, boxes, indices, crop_size, implementation="gather")
    assert actual.dtype == tf.float32 and actual.shape == expected.shape
    np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-6, atol=1e-5)
    assert np.all(actual.numpy()[10] == 0.0)  # outside the image: the extrapolation value


def test_extrapolation_value(rng):
    image = rng.normal(size=(1, 6, 6, 2)).astype(np.float32)
    boxes = np.array([[-0.5, -0.5, 1.5, 1.5], [0.2, 0.2, 0.8, 0.8]], np.float32)
    expected = tf.image.crop_and_resize(image, boxes, [0, 0], (5, 5), extrapolation_value=-3.0)
    actual = crop_and_resize(image, boxes, [0, 0], (5, 5), extrapolation_value=-3.0, implementation="gather")
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), atol=1e-6)
    assert np.any(actual.numpy() == -3.0)


def test_samples_on_the_last_pixel_read_it(rng):
    """A box that ends at exactly 1.0 samples the last row and column: the gather path reads
    them, where the op gives the extrapolation value for some boxes (rounding of in_y)."""
    image = rng.normal(size=(1, 32, 32, 1)).astype(np.float32)
    starts = rng.uniform(0.0, 0.9, (200, 2)).astype(np.float32)
    boxes = np.concatenate([starts, np.ones_like(starts)], axis=1)
    indices = np.zeros(200, np.int32)
    crops = crop_and_resize(image, boxes, indices, (7, 7), implementation="gather").numpy()
    # A crop of height 1 of the box (1, x1, 1, 1) samples in_y = H - 1 exactly.
    last_row = tf.image.crop_and_resize(image, boxes * [0, 1, 1, 1] + [1, 0, 0, 0], indices, (1, 7)).numpy()
    last_col = tf.image.crop_and_resize(image, boxes * [1, 0, 1, 1] + [0, 1, 0, 0], indices, (7, 1)).numpy()
    # (the references' own last sample along the other axis is the corner, checked last)
    np.testing.assert_allclose(crops[:, -1:, :-1], last_row[:, :, :-1], atol=1e-5)
    np.testing.assert_allclose(crops[:, :-1, -1:], last_col[:, :-1], atol=1e-5)
    np.testing.assert_allclose(crops[:, -1, -1, 0], np.full(200, image[0, -1, -1, 0]), atol=1e-5)
    op = tf.image.crop_and_resize(image, boxes, indices, (7, 7)).numpy()
    inner = np.abs(op - crops).max(axis=(1, 2, 3)) < 1e-5
    # Elsewhere the op's values; where they differ, the op extrapolated a last row or column.
    np.testing.assert_allclose(crops[:, :-1, :-1], op[:, :-1, :-1], atol=1e-5)
    assert np.all((op[~inner][:, -1] == 0).all(axis=(1, 2)) | (op[~inner][:, :, -1] == 0).all(axis=(1, 2)))
    assert EDGE_TOLERANCE < 1e-5


def image_gradient(fn, image, weights):
    image = tf.constant(image)
    with tf.GradientTape() as tape:
        tape.watch(image)
        loss = tf.reduce_sum(fn(image) * weights)
    return tape.gradient(loss, image).numpy()


@pytest.mark.parametrize("crop_size", [(7, 7), (1, 1), (4, 9)])
def test_gradient_equals_the_ops(rng, crop_size):
    image = rng.normal(size=(2, 9, 13, 3)).astype(np.float32)
    boxes = awkward_boxes(rng, 30)
    indices = rng.integers(0, 2, 30).astype(np.int32)
    weights = rng.normal(size=(30, *crop_size, 3)).astype(np.float32)
    expected = image_gradient(lambda x: tf.image.crop_and_resize(x, boxes, indices, crop_size), image, weights)
    actual = image_gradient(lambda x: crop_and_resize(x, boxes, indices, crop_size, implementation="gather"),
                            image, weights)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)

    @tf.function(jit_compile=True)
    def compiled(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = crop_and_resize(x, boxes, indices, crop_size)  # "auto": the gather path under XLA
            loss = tf.reduce_sum(out * weights)
        return out, tape.gradient(loss, x)

    values, gradient = compiled(tf.constant(image))
    np.testing.assert_allclose(values.numpy(), tf.image.crop_and_resize(image, boxes, indices, crop_size).numpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gradient.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_compiling_with_xla_tells_where_it_traces():
    seen = []

    def probe(x):
        seen.append(compiling_with_xla())
        return x + 1.0

    probe(tf.constant(1.0))
    tf.function(probe)(tf.constant(1.0))
    tf.function(probe, jit_compile=True)(tf.constant(1.0))
    # A function called from a compiled one is compiled with it.
    tf.function(lambda x: tf.function(probe)(x), jit_compile=True)(tf.constant(2.0))
    assert seen == [False, False, True, True]


def test_auto_runs_the_op_outside_xla():
    graph = tf.function(lambda x: crop_and_resize(x, [[0.0, 0.0, 1.0, 1.0]], [0], (2, 2))).get_concrete_function(
        tf.TensorSpec([1, 4, 4, 1])).graph
    assert "CropAndResize" in {op.type for op in graph.get_operations()}
    graph = tf.function(lambda x: crop_and_resize(x, [[0.0, 0.0, 1.0, 1.0]], [0], (2, 2), implementation="gather")
                        ).get_concrete_function(tf.TensorSpec([1, 4, 4, 1])).graph
    assert "CropAndResize" not in {op.type for op in graph.get_operations()}
    with pytest.raises(ValueError, match="implementation"):
        crop_and_resize(np.zeros((1, 2, 2, 1), np.float32), [[0.0, 0.0, 1.0, 1.0]], [0], (2, 2), implementation="x")


def per_level_reference(maps, boxes, indices, levels, crop_size):
    """Each box cropped by the op from its own map, one box at a time."""
    return np.concatenate([tf.image.crop_and_resize(maps[level], boxes[i:i + 1], indices[i:i + 1], crop_size).numpy()
                           for i, level in enumerate(levels)])


def test_pyramid_equals_per_level_crops_and_their_gradient(rng):
    maps = pyramid(2, 16, 3, rng)
    boxes = awkward_boxes(rng, 50)
    indices = rng.integers(0, 2, 50).astype(np.int32)
    levels = rng.integers(0, 4, 50).astype(np.int32)
    expected = per_level_reference(maps, boxes, indices, levels, (5, 4))
    weights = rng.normal(size=expected.shape).astype(np.float32)

    def run(implementation, jit_compile=False):
        @tf.function(jit_compile=jit_compile)
        def fn(*m):
            with tf.GradientTape() as tape:
                tape.watch(m)
                out = pyramid_crop_and_resize(list(m), boxes, indices, levels, (5, 4), implementation)
                loss = tf.reduce_sum(out * weights)
            return out, tape.gradient(loss, m)
        out, grads = fn(*[tf.constant(m) for m in maps])
        return out.numpy(), [g.numpy() for g in grads]

    op_values, op_grads = run("op")
    np.testing.assert_allclose(op_values, expected, atol=1e-6)
    for implementation, jit_compile in (("gather", False), ("auto", True)):
        values, grads = run(implementation, jit_compile)
        np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
        for grad, op_grad in zip(grads, op_grads):
            np.testing.assert_allclose(grad, op_grad, rtol=1e-5, atol=1e-5)


def test_roi_align_layer_compiles_with_the_same_values(rng):
    maps = [tf.constant(m) for m in pyramid(2, 32, 4, rng)]
    centre = rng.uniform(0.1, 0.9, (2, 40, 2))
    size = rng.choice([0.05, 0.1, 0.3, 0.6], (2, 40, 1)) * rng.uniform(0.7, 1.4, (2, 40, 2))
    boxes = np.clip(np.concatenate([centre - size / 2, centre + size / 2], -1), 0.001, 0.999).astype(np.float32)
    boxes[:, -5:] = 0.0  # padding
    meta = tf.constant(image_meta((896, 896), (896, 896)))
    assert len(np.unique(roi_pyramid_levels(boxes, meta).numpy())) == 4
    layer = PyramidROIAlign((7, 7))
    expected = layer(tf.constant(boxes), meta, maps).numpy()
    compiled = tf.function(lambda b, *m: layer(b, meta, list(m)), jit_compile=True)(tf.constant(boxes), *maps)
    np.testing.assert_allclose(compiled.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_roi_align_layer_compiles_under_mixed_bfloat16(rng):
    maps = pyramid(1, 16, 4, rng)
    boxes = np.array([[[0.1, 0.1, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.3, 0.2, 0.35, 0.3]]], np.float32)
    meta = image_meta((512, 512))
    expected = PyramidROIAlign(3)(boxes, meta, [tf.constant(m) for m in maps]).numpy()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = PyramidROIAlign(3)
        bf16_maps = [tf.constant(m, tf.bfloat16) for m in maps]
        compiled = tf.function(lambda b, *m: layer(b, meta, list(m)), jit_compile=True)(tf.constant(boxes), *bf16_maps)
    finally:
        keras.config.set_dtype_policy(previous)
    assert compiled.dtype == tf.bfloat16
    np.testing.assert_allclose(compiled.numpy().astype(np.float32), expected, rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("use_mini_mask", [True, False])
def test_mask_targets_compile_with_the_same_values(rng, use_mini_mask):
    inputs = many_proposals(rng, 10, 20)
    if not use_mini_mask:
        masks = np.zeros((1, 16, 16, 2), bool)
        masks[0, 5:10, 5:10, 0] = True
        inputs[3] = masks
    keys = rng.uniform(size=(1, 30)).astype(np.float32)
    expected = detection_targets_graph(*inputs, keys, 16, 0.33, STD, (6, 6), use_mini_mask)
    compiled = tf.function(lambda *args: detection_targets_graph(*args, 16, 0.33, STD, (6, 6), use_mini_mask),
                           jit_compile=True)(*inputs, keys)
    assert expected[3].numpy().max() == 1.0  # some mask pixels
    for a, b in zip(compiled, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_take_rois_takes_max_count_rows_under_xla():
    x = tf.reshape(tf.range(2 * 6 * 2, dtype=tf.float32), [2, 6, 2])
    layer = TakeRois(max_count=4)
    assert layer(x, tf.constant(3)).shape == (2, 3, 2)
    compiled = tf.function(lambda v, n: layer(v, n), jit_compile=True)(x, tf.constant(3))
    np.testing.assert_array_equal(compiled.numpy(), x.numpy()[:, :4])
    assert TakeRois.from_config(layer.get_config()).max_count == 4
