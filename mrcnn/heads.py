"""Second-stage heads: per-ROI classifier and box regressor, and the mask head.

Layer names and weight shapes are Matterport's (``mrcnn_class_conv1`` ... ``mrcnn_mask``),
so its weight files load by name.

Matterport wrapped every layer in ``TimeDistributed`` to apply it to each ROI. Here the
ROI axis is instead merged into the batch axis ([B, N, ...] -> [B * N, ...]), plain layers
carrying Matterport's names run on that, and the ROI axis is split off again. The weights
are the same arrays (``TimeDistributed(Conv2D)`` stores the inner Conv2D's kernel and bias),
and the reshapes are free. Keras 3's ``TimeDistributed`` is not: with a static ROI count it
unrolls a Python loop that calls the inner layer once per ROI (200 convolutions per layer
in training, a graph that many times larger) and otherwise falls back to
``vectorized_map``; and a BatchNorm inside it would take its statistics per ROI over the
batch of two images, where Keras 2 (and so Matterport's weights) used all ROIs together.
"""
import keras
from keras import layers as KL
import tensorflow as tf

from mrcnn.conv import Conv2D, matmul
from mrcnn.crop import compiling_with_xla
from mrcnn.layers import BatchNorm
from mrcnn.roi_align import PyramidROIAlign

__all__ = ["MergeRoiAxis", "SplitRoiAxis", "FlatConv2D", "TakeRois", "PadRois", "fpn_classifier_graph",
           "build_fpn_mask_graph"]


@keras.saving.register_keras_serializable(package="mrcnn")
class MergeRoiAxis(keras.layers.Layer):
    """[B, N, ...] -> [B * N, ...], so that per-ROI layers run as one batch."""

    def call(self, x):
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0))

    def compute_output_shape(self, x_shape):
        merged = None if x_shape[0] is None or x_shape[1] is None else x_shape[0] * x_shape[1]
        return (merged, *x_shape[2:])


@keras.saving.register_keras_serializable(package="mrcnn")
class SplitRoiAxis(keras.layers.Layer):
    """([B * N, ...], reference [B, N, ...]) -> [B, N, ...]: undo :class:`MergeRoiAxis`."""

    def call(self, x, reference):
        return tf.reshape(x, tf.concat([tf.shape(reference)[:2], tf.shape(x)[1:]], axis=0))

    def compute_output_shape(self, x_shape, reference_shape):
        return (reference_shape[0], reference_shape[1], *x_shape[1:])


@keras.saving.register_keras_serializable(package="mrcnn")
class FlatConv2D(Conv2D):
    """A valid, stride-1 Conv2D whose kernel covers its whole input, computed as one matrix product.

    The classifier's two "fully connected" layers are such convolutions (7 x 7 on the 7 x 7
    ROIAlign output, then 1 x 1 on 1 x 1), kept as Conv2D for the weight shapes of Matterport's
    files. On [B * N, kh, kw, C] the convolution is exactly ``flatten(x) @ reshape(kernel)``
    (the kernel [kh, kw, C, F] is stored in the row-major order of a flattened [kh, kw, C]
    patch), and TensorFlow's CPU kernels compute it far faster that way: its convolution
    gradients for a 1 x 1 output took 34 s of a 54 s training step of the leaf ResNet101 config
    (200 ROIs), the two matrix products of the same gradient a fraction of a second.
    Inputs of any other size fall back to the convolution.
    """

    def call(self, inputs):
        kh, kw = self.kernel_size
        whole = (inputs.shape[1] == kh and inputs.shape[2] == kw and self.padding == "valid"
                 and tuple(self.strides) == (1, 1) and self.data_format == "channels_last")
        if not whole:
            return super().call(inputs)
        flat = keras.ops.reshape(inputs, (-1, kh * kw * inputs.shape[3]))  # [B * N, kh * kw * C]
        outputs = matmul(flat, keras.ops.reshape(self.kernel, (-1, self.filters)))
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return keras.ops.reshape(outputs, (-1, 1, 1, self.filters))  # [B * N, 1, 1, F]


@keras.saving.register_keras_serializable(package="mrcnn")
class TakeRois(keras.layers.Layer):
    """[B, N, ...] -> [B, n, ...]: the first n ROIs of each image.

    n is ``count`` (an int) or, when the layer is called with a second input, that int32
    scalar tensor (e.g. the number of detections, known only when the graph runs). The ROIs
    keep their dtype, also under mixed precision (float32 boxes stay float32).
    ``max_count``: an int that the tensor never exceeds. While XLA compiles the graph
    (``jit_compile=True``), which needs static shapes, the layer takes ``max_count`` rows
    instead of the tensor's count (all N rows without ``max_count``): the callers use only
    the first rows, so only work is added (and, with a training-mode BatchNorm after it,
    statistics over those extra rows).
    """

    def __init__(self, count=None, max_count=None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.count = None if count is None else int(count)
        self.max_count = None if max_count is None else int(max_count)

    def call(self, x, count=None):
        if count is not None and compiling_with_xla():
            count = self.max_count
        return x[:, :self.count if count is None else count]

    def get_config(self):
        return {**super().get_config(), "count": self.count, "max_count": self.max_count}


@keras.saving.register_keras_serializable(package="mrcnn")
class PadRois(keras.layers.Layer):
    """([B, n, ...], reference [B, N, ...]) -> [B, N, ...]: zero rows appended after the first n."""

    def call(self, x, reference):
        missing = tf.shape(reference)[1] - tf.shape(x)[1]
        paddings = tf.concat([[[0, 0], [0, missing]], tf.zeros([x.shape.rank - 2, 2], tf.int32)], axis=0)
        return tf.pad(x, paddings)

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], reference_shape[1], *x_shape[2:])


def fpn_classifier_graph(rois, feature_maps, image_meta, pool_size, num_classes, train_bn=True,
                         fc_layers_size=1024):
    """Classifier and box-regression head on the feature pyramid.

    rois: [B, N, (y1, x1, y2, x2)] normalised, zero-padded.
    feature_maps: [P2, P3, P4, P5], each [B, h, w, channels].
    image_meta: [B, 12 + NUM_CLASSES].
    pool_size: ROIAlign output side (POOL_SIZE, 7).
    num_classes: K, classes including background.
    train_bn: see :class:`mrcnn.layers.BatchNorm`.
    fc_layers_size: width of the two "fully connected" layers (FPN_CLASSIF_FC_LAYERS_SIZE),
        written as a pool_size x pool_size valid convolution and a 1x1 one, as in Matterport.

    Returns:
        mrcnn_class_logits: [B, N, K] classifier logits.
        mrcnn_probs: [B, N, K] their softmax (layer "mrcnn_class").
        mrcnn_bbox: [B, N, K, (dy, dx, log(dh), log(dw))] per-class deltas, still divided by
            BBOX_STD_DEV.
    """
    x = PyramidROIAlign((pool_size, pool_size), name="roi_align_classifier")(rois, image_meta, feature_maps)
    x = MergeRoiAxis(name="mrcnn_class_merge_rois")(x)  # [B * N, pool, pool, C]
    x = FlatConv2D(fc_layers_size, (pool_size, pool_size), padding="valid", name="mrcnn_class_conv1")(x)
    x = BatchNorm(train_bn=train_bn, name="mrcnn_class_bn1")(x)
    x = KL.Activation("relu", name="mrcnn_class_relu1")(x)
    x = FlatConv2D(fc_layers_size, (1, 1), name="mrcnn_class_conv2")(x)
    x = BatchNorm(train_bn=train_bn, name="mrcnn_class_bn2")(x)
    x = KL.Activation("relu", name="mrcnn_class_relu2")(x)
    x = KL.Reshape((fc_layers_size,), name="pool_squeeze")(x)  # [B * N, fc]
    shared = SplitRoiAxis(name="mrcnn_class_split_rois")(x, rois)  # [B, N, fc]

    # Dense acts on the last axis, so on [B, N, fc] it is the per-ROI layer as it stands.
    # Detectron's initialisation of the two predictors (N(0, 0.01) and N(0, 0.001), zero
    # biases): a new head gives every class the same score and leaves boxes where they are,
    # so from scratch it neither detects noise nor starts with large box losses.
    mrcnn_class_logits = KL.Dense(num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                  name="mrcnn_class_logits")(shared)
    mrcnn_probs = KL.Activation("softmax", name="mrcnn_class")(mrcnn_class_logits)
    x = KL.Dense(num_classes * 4, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                 name="mrcnn_bbox_fc")(shared)
    mrcnn_bbox = KL.Reshape((-1, num_classes, 4), name="mrcnn_bbox")(x)  # [B, N, K, 4]
    return mrcnn_class_logits, mrcnn_probs, mrcnn_bbox


def build_fpn_mask_graph(rois, feature_maps, image_meta, pool_size, num_classes, train_bn=True,
                         conv_channels=256, scored_rois=None, max_scored_rois=None):
    """Mask head on the feature pyramid.

    rois: [B, N, (y1, x1, y2, x2)] normalised, zero-padded.
    feature_maps: [P2, P3, P4, P5], each [B, h, w, channels].
    image_meta: [B, 12 + NUM_CLASSES].
    pool_size: ROIAlign output side (MASK_POOL_SIZE, 14); masks are twice as large.
    num_classes: K, classes including background.
    train_bn: see :class:`mrcnn.layers.BatchNorm`.
    conv_channels: width of the four 3x3 convolutions and the deconvolution
        (MASK_HEAD_CHANNELS, 256).
    scored_rois: None, or compute masks only for the first ``scored_rois`` ROIs of each image
        (an int, or an int32 scalar tensor) and return zeros for the others, which is exact
        where the caller does not use those rows and BatchNorm takes no statistics over the
        ROIs (frozen, ``train_bn=False``, or inference). Training uses it: the mask loss scores
        only positive ROIs, which DetectionTargetLayer puts first, so the head runs on as many
        rows as the batch's largest positive count (a tensor; at most int(TRAIN_ROIS_PER_IMAGE
        * ROI_POSITIVE_RATIO)), not on all 200 ROIs. Inference uses it for the detections,
        which come first too.
    max_scored_rois: an int that a ``scored_rois`` tensor never exceeds: while XLA compiles
        (``jit_compile=True``), which needs static shapes, the head runs on that many rows
        (on all N without it). Exact too where ``scored_rois`` is; with ``train_bn`` the
        statistics then come from those rows.

    Returns: [B, N, 2 * pool_size, 2 * pool_size, K] per-class mask probabilities (sigmoid).
        The weights of the last layer are in "mrcnn_mask"; the tensor returned comes from the
        weightless reshape "mrcnn_mask_split_rois" after it (then "mrcnn_mask_pad_rois" with
        ``scored_rois``).
    """
    all_rois = rois
    if isinstance(scored_rois, int):
        rois = TakeRois(scored_rois, name="mrcnn_mask_scored_rois")(rois)  # [B, scored_rois, 4]
    elif scored_rois is not None:
        rois = TakeRois(max_count=max_scored_rois, name="mrcnn_mask_scored_rois")(rois, scored_rois)  # [B, n, 4]
    x = PyramidROIAlign((pool_size, pool_size), name="roi_align_mask")(rois, image_meta, feature_maps)
    x = MergeRoiAxis(name="mrcnn_mask_merge_rois")(x)  # [B * N, pool, pool, C]
    for index in range(1, 5):
        x = Conv2D(conv_channels, (3, 3), padding="same", name=f"mrcnn_mask_conv{index}")(x)
        x = BatchNorm(train_bn=train_bn, name=f"mrcnn_mask_bn{index}")(x)
        x = KL.Activation("relu", name=f"mrcnn_mask_relu{index}")(x)
    x = KL.Conv2DTranspose(conv_channels, (2, 2), strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    x = Conv2D(num_classes, (1, 1), activation="sigmoid", name="mrcnn_mask")(x)
    x = SplitRoiAxis(name="mrcnn_mask_split_rois")(x, rois)  # [B, n, 2 * pool, 2 * pool, K]
    if scored_rois is not None:
        x = PadRois(name="mrcnn_mask_pad_rois")(x, all_rois)  # [B, N, 2 * pool, 2 * pool, K]
    return x
