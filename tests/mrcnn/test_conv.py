"""mrcnn.conv: the convolution whose gradients are forward convolutions and matmuls.

Every case is checked against TensorFlow's own convolution and its registered gradients.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.conv import Conv2D, conv2d, matmul

# (batch, height, width, C_in, C_out, kernel, padding); stride 1, the only one conv2d covers
CASES = [
    (1, 9, 9, 5, 7, 1, "same"),
    (2, 9, 8, 5, 7, 1, "valid"),
    (1, 9, 8, 5, 7, 3, "same"),    # batch of one: dy's batch axis moved by a reshape
    (2, 9, 8, 5, 7, 3, "same"),
    (2, 9, 8, 5, 7, 3, "valid"),
    (3, 7, 7, 4, 6, 7, "valid"),   # a kernel covering the whole input
    (2, 8, 8, 3, 5, 5, "same"),
]


def _with_gradients(fn, x, kernel):
    """fn(x, kernel), and the gradients of sum(sin(output)) for x and kernel."""
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = fn(x, kernel)
        loss = tf.reduce_sum(tf.sin(y))
    return [y, *tape.gradient(loss, [x, kernel])]


def _reference(x, kernel, padding):
    return _with_gradients(lambda x, k: tf.nn.conv2d(x, k, 1, padding.upper()), x, kernel)


def _inputs(n, h, w, c_in, c_out, k, seed=0):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=(n, h, w, c_in)), tf.float32),
            tf.constant(rng.normal(size=(k, k, c_in, c_out)), tf.float32))


def _tolerance(expected, terms):
    """float32 rounding of sums of ``terms`` products, relative to the largest value: summation
    orders differ between kernels (oneDNN's, the standard ones, XLA's)."""
    return terms * np.finfo(np.float32).eps * float(np.abs(expected).max(initial=1.0))


@pytest.mark.parametrize("mode", ["eager", "tf.function", "xla"])
@pytest.mark.parametrize("n,h,w,c_in,c_out,k,padding", CASES)
def test_output_and_gradients_match_tensorflow(n, h, w, c_in, c_out, k, padding, mode):
    x, kernel = _inputs(n, h, w, c_in, c_out, k)
    expected = _reference(x, kernel, padding)

    def run(x, kernel):
        return _with_gradients(lambda x, k: conv2d(x, k, (1, 1), padding), x, kernel)

    actual = run(x, kernel) if mode == "eager" else tf.function(run, jit_compile=mode == "xla")(x, kernel)
    for name, e, a in zip(["output", "d_input", "d_kernel"], expected, actual):
        assert a.shape == e.shape, name
        terms = {"output": k * k * c_in, "d_input": k * k * c_out, "d_kernel": n * h * w}[name]
        np.testing.assert_allclose(a.numpy(), e.numpy(), atol=_tolerance(e.numpy(), terms), err_msg=name)


@pytest.mark.parametrize("k,padding", [(3, "same"), (1, "same"), (3, "valid")])
def test_empty_and_unknown_batch(k, padding):
    """The mask head sees a batch of however many positive ROIs there are, zero included.

    An empty batch's output, input gradient and kernel gradient are defined whatever the
    kernels do (oneDNN's ``conv2d`` returns its input for one): empty, of the convolution's
    shapes, and zero. A batch of three, of unknown size when traced, matches TensorFlow."""
    x, kernel = _inputs(3, 6, 6, 4, 5, k)
    out = 6 if padding == "same" else 6 - k + 1
    traced = tf.function(
        lambda x, kernel: _with_gradients(lambda x, kk: conv2d(x, kk, (1, 1), padding), x, kernel),
        input_signature=[tf.TensorSpec([None, 6, 6, 4]), tf.TensorSpec([k, k, 4, 5])])
    for e, a in zip(_reference(x, kernel, padding), traced(x, kernel)):
        np.testing.assert_allclose(a.numpy(), e.numpy(), atol=_tolerance(e.numpy(), k * k * 5))
    eager = _with_gradients(lambda x, kk: conv2d(x, kk, (1, 1), padding), x[:0], kernel)
    for y, dx, dk in (eager, traced(x[:0], kernel)):
        assert y.shape == (0, out, out, 5) and dx.shape == (0, 6, 6, 4)
        np.testing.assert_array_equal(dk.numpy(), np.zeros((k, k, 4, 5), np.float32))


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, padding="same"), dict(kernel_size=1, strides=2),
                                    dict(kernel_size=3, strides=2, padding="same"),
                                    dict(kernel_size=3, dilation_rate=2)])
def test_layer_on_an_empty_batch(kwargs):
    """Also the convolutions handed back to Keras (strided, dilated) keep their shape on an
    empty batch, eager and traced with an unknown batch size."""
    layer = Conv2D(5, **kwargs)
    x = tf.zeros((0, 8, 8, 4))
    expected = keras.layers.Conv2D(5, **kwargs).compute_output_shape((0, 8, 8, 4))
    traced = tf.function(layer, input_signature=[tf.TensorSpec([None, 8, 8, 4])])
    for y in (layer(x), traced(x)):
        assert tuple(y.shape) == tuple(expected)


@pytest.mark.parametrize("k,strides,padding,message", [
    (3, (2, 2), "same", r"3 x 3 kernel with strides \(2, 2\) and padding 'same'"),
    (1, (2, 1), "valid", r"1 x 1 kernel with strides \(2, 1\)"),
    (2, (1, 1), "same", r"2 x 2 kernel with strides \(1, 1\) and padding 'same'"),
])
def test_uncovered_case_is_an_error_naming_it(k, strides, padding, message):
    x, kernel = _inputs(1, 8, 8, 2, 3, k)
    with pytest.raises(ValueError, match=message):
        conv2d(x, kernel, strides, padding)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, padding="same", activation="relu"),
    dict(kernel_size=1),
    dict(kernel_size=1, strides=2),                   # not covered: Keras' own convolution
    dict(kernel_size=3, strides=2, padding="same"),
    dict(kernel_size=3, dilation_rate=2, padding="same"),
])
def test_layer_is_a_drop_in_keras_conv2d(kwargs):
    x, _ = _inputs(2, 8, 8, 3, 4, 1)
    ours, theirs = Conv2D(4, name="c", **kwargs), keras.layers.Conv2D(4, name="c", **kwargs)
    ours.build(x.shape)
    theirs.build(x.shape)
    assert [(w.path, tuple(w.shape)) for w in ours.weights] == [(w.path, tuple(w.shape)) for w in theirs.weights]
    theirs.set_weights(ours.get_weights())

    def run(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.sin(y))
        return [y, *tape.gradient(loss, [x, *layer.trainable_variables])]

    for name, e, a in zip(["output", "d_input", "d_kernel", "d_bias"], run(theirs), run(ours)):
        np.testing.assert_allclose(a.numpy(), e.numpy(), atol=1e-5, err_msg=name)


def test_layer_serialises_as_itself():
    layer = Conv2D(4, 3, padding="same", name="c")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is Conv2D and restored.get_config() == layer.get_config()


@pytest.mark.parametrize("rows", [5, 0])
def test_matmul_and_its_gradients_match_tensorflow(rows):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(rows, 12)), tf.float32)
    kernel = tf.constant(rng.normal(size=(12, 7)), tf.float32)
    expected = _with_gradients(tf.matmul, x, kernel)
    for mode in ("eager", "tf.function"):
        actual = (_with_gradients(matmul, x, kernel) if mode == "eager"
                  else tf.function(lambda x, k: _with_gradients(matmul, x, k))(x, kernel))
        for name, e, a in zip(["output", "d_input", "d_kernel"], expected, actual):
            assert a.shape == e.shape, name
            np.testing.assert_allclose(a.numpy(), e.numpy(), atol=1e-5, err_msg=f"{mode} {name}")


@pytest.mark.parametrize("kernel_size", [3, 1])
def test_layer_under_mixed_precision(kernel_size):
    """``--mixed-precision`` trains in float16 with float32 variables: the kernel is cast, gradients flow back."""
    x, _ = _inputs(2, 8, 8, 3, 4, 1)
    ours = Conv2D(4, kernel_size, padding="same", dtype="mixed_float16")
    theirs = keras.layers.Conv2D(4, kernel_size, padding="same", dtype="mixed_float16")
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
        results.append([y, *tape.gradient(loss, layer.trainable_variables)])
    (y, dk, db), (y_ref, dk_ref, db_ref) = results
    assert y.dtype == tf.float16 and dk.dtype == tf.float32
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(dk.numpy(), dk_ref.numpy(), rtol=2e-2, atol=0.05 * float(np.abs(dk_ref).max()))
    np.testing.assert_allclose(db.numpy(), db_ref.numpy(), rtol=2e-2, atol=0.05 * float(np.abs(db_ref).max()))
