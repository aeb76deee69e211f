"""A Conv2D (and a matmul) whose gradients take the forms TensorFlow's CPU kernels run fastest.

TensorFlow's CPU kernels for a convolution's gradients (``Conv2DBackpropFilter`` and
``Conv2DBackpropInput``) are much slower than its forward convolution on the same sizes: for
the RPN's 3 x 3 convolution on the 128 x 128 P2 map of a 512 px image (256 -> 512 channels)
the forward pass takes 0.28 s on two cores, the input gradient 0.33 s and the kernel gradient
0.42-0.44 s; for ResNet's 3 x 3, 64-channel convolutions at 128 x 128 the kernel gradient
takes four times the forward pass. Both gradients are convolutions themselves, and written as
forward convolutions they run at the forward pass's speed (``benchmarks/bench_conv_grad.py``):

* input gradient of a stride-1 convolution: the output gradient convolved with the kernel
  rotated by 180 degrees, its input and output channels swapped, with the padding that
  restores the input's size (``same`` stays ``same``; ``valid`` pads by kernel size - 1);
* kernel gradient: a convolution of the (padded) input, its channels moved to the batch axis
  and its batch moved to the channel axis, with the output gradient as the "kernel"; the
  result, [C_in, kh, kw, C_out], is the kernel gradient with its axes moved. The batch axis
  is the contraction axis of that convolution, so it holds for any batch size;
* 1 x 1 convolutions: one matrix product each.

The forward pass is TensorFlow's own convolution. Strided convolutions keep TensorFlow's
gradients: for ResNet's strided 1 x 1 convolutions they were as fast or faster than the same
matrix products on the strided input. So do dilations, channels-first data and other
backends: those layers are Keras' own ``Conv2D``, gradients included. Layer names, weights and
configuration are Keras', so weight files do not see the difference. With oneDNN's kernels
(below) the layer keeps TensorFlow's gradients too: its gradient kernels are faster than
these forms there (:class:`Conv2D`).

:func:`matmul` does the same for the classifier's fully connected layer, whose input gradient
TensorFlow computes 3x faster in another operand order.

Empty batches. With oneDNN kernels (``TF_ENABLE_ONEDNN_OPTS=1``, TensorFlow's default on
CPUs with AVX-512) ``tf.nn.conv2d`` of an empty batch returns its *input* unchanged, shape
included: [0, 6, 6, 4] for a 4 -> 5 channel convolution, where the standard kernels return
[0, 6, 6, 5]. The mask head sees an empty batch whenever no ROI reaches it. :func:`conv2d`
(forward and input gradient) and the :class:`Conv2D` layer therefore run a convolution only on
a batch that is not empty; an empty batch gets the empty output of the right shape
(:func:`_unless_empty`). A reshape to the right shape would not do: in a ``tf.function``
Grappler removes it as a no-op, since the shapes it infers are the standard kernels'.
"""
import os

import keras
from keras import layers as KL
import tensorflow as tf

__all__ = ["conv2d", "conv_output_shape", "matmul", "onednn_enabled", "Conv2D"]


def _covered(kernel_size, strides, padding, dilation_rate):
    """Whether :func:`conv2d`'s gradient forms apply: stride 1, no dilation, ``valid`` or odd ``same``."""
    kh, kw = kernel_size
    if tuple(strides) != (1, 1) or tuple(dilation_rate) != (1, 1):
        return False
    return padding == "valid" or (kh % 2 == 1 and kw % 2 == 1)


def _output_size(size, k, stride, padding, dilation):
    """One spatial output size of a convolution: ``same`` ceil(size / stride), ``valid``
    ceil((size - (k - 1) * dilation) / stride). Python int when ``size`` is, else a tensor."""
    span = 1 if padding == "same" else (k - 1) * dilation + 1
    return (size - span) // stride + 1


def conv_output_shape(x, kernel_size, filters, strides=(1, 1), padding="valid", dilation_rate=(1, 1)):
    """The NHWC output shape of a 2-D convolution of ``x``: static sizes as ints, unknown ones
    as scalar tensors."""
    dynamic = tf.shape(x)
    dims = [x.shape[i] if x.shape[i] is not None else dynamic[i] for i in range(3)]
    sizes = [_output_size(dims[1 + i], kernel_size[i], strides[i], padding.lower(), dilation_rate[i]) for i in (0, 1)]
    return [dims[0], *sizes, filters]


def _unguarded(x, fn, shape):
    """``fn()``: for a caller that never passes an empty batch (the :class:`Conv2D` layer, which
    guards its whole call)."""
    return fn()


def _unless_empty(x, fn, shape):
    """``fn()``, or zeros of ``shape`` when ``x``'s batch is empty (see the module docstring).
    A batch size known when tracing decides here; an unknown one decides in the graph."""
    n = x.shape[0]
    if n is not None:
        return fn() if n > 0 else tf.zeros(shape, x.dtype)
    return tf.cond(tf.shape(x)[0] > 0, fn, lambda: tf.zeros(shape, x.dtype))


def conv2d(x, kernel, strides=(1, 1), padding="valid"):
    """TensorFlow's ``conv2d`` on NHWC data, with gradients computed as forward convolutions and matmuls.

    x: [N, H, W, C_in]; kernel: [kh, kw, C_in, C_out]; strides: (1, 1), the only stride
    covered; padding: ``"same"`` or ``"valid"`` (Keras' spellings). Returns [N, H', W', C_out],
    the same as ``tf.nn.conv2d``. Raises ValueError for a case outside the forms described in
    the module docstring (a stride over 1, or an even ``same`` kernel).
    """
    kh, kw = tuple(kernel.shape)[:2]
    padding = padding.lower()
    if not _covered((kh, kw), strides, padding, (1, 1)):
        raise ValueError(f"conv2d: no gradient form for a {kh} x {kw} kernel with strides {tuple(strides)} and "
                         f"padding {padding!r}; use tf.nn.conv2d")
    return _conv2d(x, kernel, padding, _unless_empty)


def _conv2d(x, kernel, padding, guard):
    """:func:`conv2d` of a covered case; ``guard(x, fn, shape)`` runs the convolutions that an
    empty batch would break (:func:`_unless_empty`, or :func:`_unguarded`)."""
    kh, kw = tuple(kernel.shape)[:2]
    tf_padding = "SAME" if padding == "same" else "VALID"
    kernel = tf.convert_to_tensor(kernel)

    @tf.custom_gradient
    def _conv(x, kernel):
        y = guard(x, lambda: tf.nn.conv2d(x, kernel, 1, tf_padding),
                  conv_output_shape(x, (kh, kw), kernel.shape[3], padding=padding))

        def grad(dy):
            if (kh, kw) == (1, 1):
                return _grad_1x1(x, kernel, dy)
            return _grad_3x3(x, kernel, dy, padding, guard)

        return y, grad

    return _conv(x, kernel)


def _grad_1x1(x, kernel, dy):
    """Gradients of a 1 x 1 convolution: two matrix products."""
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    dy_flat = tf.reshape(dy, (-1, c_out))                                  # [N * H * W, C_out]
    dkernel = tf.matmul(tf.reshape(x, (-1, c_in)), dy_flat, transpose_a=True)
    dx = tf.matmul(dy_flat, tf.reshape(kernel, (c_in, c_out)), transpose_b=True)
    return tf.reshape(dx, tf.shape(x)), tf.reshape(dkernel, kernel.shape)


def _grad_3x3(x, kernel, dy, padding, guard):
    """Gradients of a larger kernel (3 x 3 in the model): two convolutions."""
    kh, kw = kernel.shape[0], kernel.shape[1]
    flipped = tf.transpose(tf.reverse(kernel, [0, 1]), (0, 1, 3, 2))    # [kh, kw, C_out, C_in]
    if padding == "same":
        x_padded = tf.pad(x, [[0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2], [0, 0]])
        dx = guard(x, lambda: tf.nn.conv2d(dy, flipped, 1, "SAME"), tf.shape(x))
    else:
        x_padded = x
        dy_padded = tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]])
        dx = guard(x, lambda: tf.nn.conv2d(dy_padded, flipped, 1, "VALID"), tf.shape(x))
    # dK[i, j, c, f] = sum over n, y, x of x_padded[n, y + i, x + j, c] * dy[n, y, x, f]: a valid
    # convolution of x_padded with its channel and batch axes swapped, by dy as the kernel.
    # Padding x explicitly is faster than conv2d's explicit-padding argument (which took twice
    # as long). For a batch of one, moving dy's batch axis is a free reshape, and x's transpose
    # is a 2-D one, which TensorFlow does three times faster than the same 4-D transpose.
    def dkernel():
        if x.shape[0] == 1:
            shape = tf.shape(x_padded)
            xt = tf.transpose(tf.reshape(x_padded, (-1, shape[3])))             # [C_in, (H + 2p) * (W + 2p)]
            xt = tf.reshape(xt, tf.stack([shape[3], shape[1], shape[2], 1]))    # [C_in, H + 2p, W + 2p, 1]
            dyt = tf.expand_dims(dy[0], 2)                                      # [H', W', 1, C_out]
        else:
            xt = tf.transpose(x_padded, (3, 1, 2, 0))                           # [C_in, H + 2p, W + 2p, N]
            dyt = tf.transpose(dy, (1, 2, 0, 3))                                # [H', W', N, C_out]
        d = tf.nn.conv2d(xt, dyt, 1, "VALID")                                   # [C_in, kh, kw, C_out]
        return tf.transpose(d, (1, 2, 0, 3))

    # A convolution with no input channels is an error, so an empty batch (no positive ROI
    # for the mask head) takes the zero gradient it has.
    return dx, guard(x, dkernel, tf.shape(kernel))


def matmul(x, kernel):
    """``x @ kernel`` for x [R, K] and kernel [K, F], with a faster input gradient.

    The classifier head's first fully connected layer multiplies 200-1000 ROIs by a 12544 x 1024
    kernel. TensorFlow's gradient for its input, ``dy @ kernel^T``, is a product with a
    transposed operand that took 185 ms on two cores; the same numbers as ``(kernel @ dy^T)^T``
    take 60 ms.
    """
    kernel = tf.convert_to_tensor(kernel)

    @tf.custom_gradient
    def _matmul(x, kernel):
        def grad(dy):
            dx = tf.transpose(tf.matmul(kernel, dy, transpose_b=True))      # [R, K]
            return dx, tf.matmul(tf.transpose(x), dy)                       # [K, F]
        return tf.matmul(x, kernel), grad

    return _matmul(x, kernel)


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process.

    TensorFlow decides once, when it is imported: on by default on CPUs with AVX-512 (VNNI,
    bfloat16) or AMX, off elsewhere, and ``TF_ENABLE_ONEDNN_OPTS=0`` / ``=1`` overrides either
    way. It has no public call that says which it chose, so this asks its own port module,
    and reads the variable where that module is missing.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # pragma: no cover - a TensorFlow build without the module
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "0").lower() in ("1", "true")
    return bool(_pywrap_util_port.IsMklEnabled())


@keras.saving.register_keras_serializable(package="mrcnn")
class Conv2D(KL.Conv2D):
    """``keras.layers.Conv2D`` with :func:`conv2d`'s faster gradients where they pay.

    A drop-in replacement: same arguments, weights (``kernel``, ``bias``), names and outputs.
    With the TensorFlow backend and channels-last data:

    * an empty batch gives the empty output of the right shape whatever the kernels (see the
      module docstring); the whole layer, bias and activation included, runs only on a
      non-empty batch, so the kernels' fusion of convolution, bias and activation stays
      possible;
    * the gradients are :func:`conv2d`'s forms for the stride-1 convolutions it covers, and
      TensorFlow's own with oneDNN's kernels, where the forms do not pay: for the leaf
      ResNet101 config's convolutions of one training step, oneDNN's gradient kernels took
      2.11 s and the forms 2.56 s, while with the standard kernels the forms took 2.23 s
      against their 2.94 s (``benchmarks/bench_conv_grad.py`` on a 2-core AVX-512 machine).

    Anything else is Keras' own convolution.
    """

    def _tensorflow_nhwc(self):
        return keras.backend.backend() == "tensorflow" and self.data_format == "channels_last" and self.groups == 1

    def call(self, inputs):
        if not self._tensorflow_nhwc():
            return super().call(inputs)
        shape = conv_output_shape(inputs, self.kernel_size, self.filters, self.strides, self.padding,
                                  self.dilation_rate)
        return _unless_empty(inputs, lambda: super(Conv2D, self).call(inputs), shape)

    def convolution_op(self, inputs, kernel):
        if (not self._tensorflow_nhwc() or onednn_enabled()
                or not _covered(self.kernel_size, self.strides, self.padding, self.dilation_rate)):
            return super().convolution_op(inputs, kernel)
        # call() runs this on a non-empty batch only.
        return _conv2d(inputs, kernel, self.padding.lower(), _unguarded)
