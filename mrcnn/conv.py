"""A Conv2D whose gradients are computed as forward convolutions and matrix products.

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
* 1 x 1 convolutions (any stride, on the strided input): one matrix product each.

The forward pass is TensorFlow's own convolution, and cases that these forms do not cover
(strides over 1 on larger kernels, dilations, channels-first data, other backends) use Keras'
own ``Conv2D`` unchanged, gradients included. Layer names, weights and configuration are
Keras', so weight files do not see the difference.
"""
import keras
from keras import layers as KL
import tensorflow as tf

__all__ = ["conv2d", "Conv2D"]


def _covered(kernel_size, strides, padding, dilation_rate):
    """Whether :func:`conv2d`'s gradient forms apply: 1 x 1 at any stride, or stride 1 with odd ``same`` or any ``valid``."""
    kh, kw = kernel_size
    if tuple(dilation_rate) != (1, 1):
        return False
    if (kh, kw) == (1, 1):
        return True
    if tuple(strides) != (1, 1):
        return False
    return padding == "valid" or (padding == "same" and kh % 2 == 1 and kw % 2 == 1)


def conv2d(x, kernel, strides=(1, 1), padding="valid"):
    """TensorFlow's ``conv2d`` on NHWC data, with gradients computed as forward convolutions and matmuls.

    x: [N, H, W, C_in]; kernel: [kh, kw, C_in, C_out]; strides: (sh, sw); padding: ``"same"``
    or ``"valid"`` (Keras' spellings). Returns [N, H', W', C_out], the same as
    ``tf.nn.conv2d``. Raises ValueError for a case outside the forms described in the module
    docstring (a stride over 1 on a kernel larger than 1 x 1, or an even ``same`` kernel).
    """
    kernel_shape = tuple(kernel.shape)
    kh, kw = kernel_shape[:2]
    sh, sw = strides
    padding = padding.lower()
    if not _covered((kh, kw), (sh, sw), padding, (1, 1)):
        raise ValueError(f"conv2d: no gradient form for a {kh} x {kw} kernel with strides {(sh, sw)} and "
                         f"padding {padding!r}; use tf.nn.conv2d")
    tf_padding = "SAME" if padding == "same" else "VALID"
    kernel = tf.convert_to_tensor(kernel)

    @tf.custom_gradient
    def _conv(x, kernel):
        y = tf.nn.conv2d(x, kernel, (1, sh, sw, 1), tf_padding)

        def grad(dy):
            if (kh, kw) == (1, 1):
                return _grad_1x1(x, kernel, dy, sh, sw)
            return _grad_stride1(x, kernel, dy, padding)

        return y, grad

    return _conv(x, kernel)


def _grad_1x1(x, kernel, dy, sh, sw):
    """Gradients of a 1 x 1 convolution at stride (sh, sw): two matrix products."""
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    xs = x[:, ::sh, ::sw, :] if (sh, sw) != (1, 1) else x              # the pixels the kernel saw
    dy_flat = tf.reshape(dy, (-1, c_out))                              # [N * H' * W', C_out]
    w = tf.reshape(kernel, (c_in, c_out))
    dkernel = tf.reshape(tf.matmul(tf.reshape(xs, (-1, c_in)), dy_flat, transpose_a=True), kernel.shape)
    dxs = tf.reshape(tf.matmul(dy_flat, w, transpose_b=True), tf.shape(xs))  # [N, H', W', C_in]
    if (sh, sw) == (1, 1):
        return dxs, dkernel
    # Spread onto the strided pixels; the skipped ones get no gradient.
    shape = tf.shape(x)
    n, h, wd = shape[0], shape[1], shape[2]
    hs, ws = tf.shape(xs)[1], tf.shape(xs)[2]
    dxs = tf.reshape(dxs, (n, hs, 1, ws, 1, c_in))
    dx = tf.pad(dxs, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]])  # [N, H', sh, W', sw, C_in]
    dx = tf.reshape(dx, (n, hs * sh, ws * sw, c_in))[:, :h, :wd, :]
    return dx, dkernel


def _grad_stride1(x, kernel, dy, padding):
    """Gradients of a stride-1 convolution with an odd ``same`` or any ``valid`` kernel."""
    kh, kw = kernel.shape[0], kernel.shape[1]
    flipped = tf.transpose(tf.reverse(kernel, [0, 1]), (0, 1, 3, 2))    # [kh, kw, C_out, C_in]
    if padding == "same":
        pads = [[0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2], [0, 0]]
        dx = tf.nn.conv2d(dy, flipped, 1, "SAME")
    else:
        pads = "VALID"
        dx = tf.nn.conv2d(tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]), flipped, 1, "VALID")
    # dK[i, j, c, f] = sum over n, y, x of x_padded[n, y + i, x + j, c] * dy[n, y, x, f]: a
    # convolution of x (padded as in the forward pass) with its channel and batch axes swapped,
    # by dy as the kernel (for a batch of one, moving dy's batch axis is a free reshape).
    def dkernel():
        xt = tf.transpose(x, (3, 1, 2, 0))                                   # [C_in, H, W, N]
        dyt = (tf.reshape(dy, tf.concat([tf.shape(dy)[1:3], [1, tf.shape(dy)[3]]], 0)) if x.shape[0] == 1
               else tf.transpose(dy, (1, 2, 0, 3)))                          # [H', W', N, C_out]
        d = tf.nn.conv2d(xt, dyt, 1, pads)                                   # [C_in, kh, kw, C_out]
        return tf.transpose(d, (1, 2, 0, 3))

    # A convolution with no input channels is an error, so an empty batch (no positive ROI
    # for the mask head) takes the zero gradient it has.
    if x.shape[0] is None:
        return dx, tf.cond(tf.shape(x)[0] > 0, dkernel, lambda: tf.zeros_like(kernel))
    return dx, dkernel() if x.shape[0] > 0 else tf.zeros_like(kernel)


@keras.saving.register_keras_serializable(package="mrcnn")
class Conv2D(KL.Conv2D):
    """``keras.layers.Conv2D`` with :func:`conv2d`'s faster gradients where they apply.

    A drop-in replacement: same arguments, weights (``kernel``, ``bias``), names and outputs.
    Only the TensorFlow backend with channels-last data uses :func:`conv2d`; anything else is
    Keras' own convolution.
    """

    def convolution_op(self, inputs, kernel):
        if (keras.backend.backend() != "tensorflow" or self.data_format != "channels_last" or self.groups != 1
                or not _covered(self.kernel_size, self.strides, self.padding, self.dilation_rate)):
            return super().convolution_op(inputs, kernel)
        return conv2d(inputs, kernel, self.strides, self.padding)
