"""Convolution gradients: TensorFlow's own kernels against ``mrcnn.conv``'s forms, per layer shape.

    python benchmarks/bench_conv_grad.py             # the leaf ResNet101 config's convolutions at 512 px
    python benchmarks/bench_conv_grad.py --repeat 10 --mask-rois 24

For every distinct convolution of one training step (batch 1; the mask head on ``--mask-rois``
positive ROIs) it times, in a ``tf.function``, the forward pass and then the input and kernel
gradients together, computed by TensorFlow's registered gradient (``Conv2DBackpropInput`` and
``Conv2DBackpropFilter``) and by :func:`mrcnn.conv.conv2d`. Totals are weighted by how often
each shape occurs in the model. The last lines give this machine's ceiling: the best rate of
TensorFlow's float32 convolution and matrix product, in GFLOP/s.

Strided convolutions keep TensorFlow's gradients in ``mrcnn.conv.Conv2D``, so both columns
time the same thing for them. The 7 x 7 stride-2 stem convolution is left out: its input
gradient is never needed.
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402

from mrcnn.conv import conv2d  # noqa: E402



def leaf_r101_convolutions(rpn_channels=512):
    """(count, input height = width, C_in, C_out, kernel, stride) of ResNet101-FPN and its RPN on a 512 px image."""
    shapes = []
    stages = [(128, 64, 256, 3, 1), (128, 128, 512, 4, 2), (64, 256, 1024, 23, 2), (32, 512, 2048, 3, 2)]
    stage_in = 64
    for size, width, out, blocks, stride in stages:
        out_size = size // stride
        shapes += [(1, size, stage_in, width, 1, stride), (1, size, stage_in, out, 1, stride),  # branch2a, branch1
                   (blocks - 1, out_size, out, width, 1, 1),                                  # branch2a
                   (blocks, out_size, width, width, 3, 1), (blocks, out_size, width, out, 1, 1)]
        stage_in = out
    for size, channels in [(128, 256), (64, 512), (32, 1024), (16, 2048)]:
        shapes += [(1, size, channels, 256, 1, 1), (1, size, 256, 256, 3, 1)]               # FPN lateral, output
    for size in (128, 64, 32, 16, 8):
        shapes += [(1, size, 256, rpn_channels, 3, 1), (1, size, rpn_channels, 18, 1, 1)]   # RPN conv, class + box
    return shapes


def _time(fn, *args, repeat):
    fn(*args)
    fn(*args)
    start = time.perf_counter()
    for _ in range(repeat):
        result = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy(), result)
    return (time.perf_counter() - start) / repeat


def _gradients(conv):
    @tf.function
    def run(x, kernel, dy):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv(x, kernel)
        return tape.gradient(y, [x, kernel], output_gradients=dy)
    return run


def measure(batch, size, c_in, c_out, k, stride, repeat):
    """(forward, TensorFlow's gradients, mrcnn.conv's gradients) in seconds, and the forward GFLOP."""
    padding = "same" if k > 1 else "valid"
    x = tf.random.normal([batch, size, size, c_in])
    kernel = tf.random.normal([k, k, c_in, c_out]) * 0.05
    forward = tf.function(lambda x, w: tf.nn.conv2d(x, w, stride, padding.upper()))
    dy = tf.random.normal(forward(x, kernel).shape)
    native = _gradients(lambda x, w: tf.nn.conv2d(x, w, stride, padding.upper()))
    # mrcnn.conv.Conv2D keeps TensorFlow's gradients for strided convolutions.
    ours = _gradients(lambda x, w: conv2d(x, w, (1, 1), padding)) if stride == 1 else native
    gflop = 2 * dy.shape.num_elements() * k * k * c_in / 1e9
    return _time(forward, x, kernel, repeat=repeat), _time(native, x, kernel, dy, repeat=repeat), \
        _time(ours, x, kernel, dy, repeat=repeat), gflop


def ceiling(repeat):
    """Best float32 GFLOP/s of TensorFlow's convolution and matrix product on this machine."""
    x, w = tf.random.normal([1, 128, 128, 256]), tf.random.normal([3, 3, 256, 512])
    conv = _time(tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME")), x, w, repeat=repeat)
    a, b = tf.random.normal([2048, 2048]), tf.random.normal([2048, 2048])
    matmul = _time(tf.function(tf.matmul), a, b, repeat=repeat)
    return 2 * 128 * 128 * 9 * 256 * 512 / conv / 1e9, 2 * 2048 ** 3 / matmul / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (default 5)")
    parser.add_argument("--rpn-channels", type=int, default=512, help="RPN_CONV_CHANNELS (default 512)")
    parser.add_argument("--mask-rois", type=int, default=12, help="positive ROIs in the mask head (default 12)")
    args = parser.parse_args(argv)
    shapes = leaf_r101_convolutions(args.rpn_channels) + [(4, 14, 256, 256, 3, 1)]
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, TensorFlow {tf.__version__}, "
          f"intra-op threads {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}")
    print(f"{'count':>5} {'input':>16} {'kernel':>12}  {'forward':>8} {'TF grads':>9} {'ours':>8}  speed-up")
    totals = [0.0, 0.0, 0.0, 0.0]
    seen = {}
    for count, size, c_in, c_out, k, stride in shapes:
        batch = args.mask_rois if size == 14 else 1
        key = (batch, size, c_in, c_out, k, stride)
        if key not in seen:
            seen[key] = measure(*key, repeat=args.repeat)
        fwd, native, ours, gflop = seen[key]
        for i, value in enumerate((fwd, native, ours, gflop)):
            totals[i] += count * value
        print(f"{count:>5} {f'{batch}x{size}x{size}x{c_in}':>16} {f'{k}x{k}/{stride} ->{c_out}':>12}  "
              f"{fwd * 1e3:7.1f}ms {native * 1e3:8.1f}ms {ours * 1e3:7.1f}ms  {native / ours:5.2f}x")
    fwd, native, ours, gflop = totals
    print(f"per training step: forward {fwd:.3f} s ({gflop / fwd:.0f} GFLOP/s), gradients with TensorFlow's kernels "
          f"{native:.3f} s, with mrcnn.conv {ours:.3f} s ({native / ours:.2f}x; {2 * gflop / ours:.0f} GFLOP/s)")
    conv_rate, matmul_rate = ceiling(args.repeat)
    print(f"ceiling: tf.nn.conv2d {conv_rate:.0f} GFLOP/s (3x3, 128x128x256 -> 512), "
          f"tf.matmul {matmul_rate:.0f} GFLOP/s (2048^3); the step's convolutions are {3 * gflop:.0f} GFLOP")


if __name__ == "__main__":
    main()
