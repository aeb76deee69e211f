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

from mrcnn.layers import BatchNorm
from mrcnn.roi_align import PyramidROIAlign

__all__ = ["MergeRoiAxis", "SplitRoiAxis", "fpn_classifier_graph", "build_fpn_mask_graph"]


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
    x = KL.Conv2D(fc_layers_size, (pool_size, pool_size), padding="valid", name="mrcnn_class_conv1")(x)
    x = BatchNorm(train_bn=train_bn, name="mrcnn_class_bn1")(x)
    x = KL.Activation("relu", name="mrcnn_class_relu1")(x)
    x = KL.Conv2D(fc_layers_size, (1, 1), name="mrcnn_class_conv2")(x)
    x = BatchNorm(train_bn=train_bn, name="mrcnn_class_bn2")(x)
    x = KL.Activation("relu", name="mrcnn_class_relu2")(x)
    x = KL.Reshape((fc_layers_size,), name="pool_squeeze")(x)  # [B * N, fc]
    shared = SplitRoiAxis(name="mrcnn_class_split_rois")(x, rois)  # [B, N, fc]

    # Dense acts on the last axis, so on [B, N, fc] it is the per-ROI layer as it stands.
    mrcnn_class_logits = KL.Dense(num_classes, name="mrcnn_class_logits")(shared)
    mrcnn_probs = KL.Activation("softmax", name="mrcnn_class")(mrcnn_class_logits)
    x = KL.Dense(num_classes * 4, name="mrcnn_bbox_fc")(shared)
    mrcnn_bbox = KL.Reshape((-1, num_classes, 4), name="mrcnn_bbox")(x)  # [B, N, K, 4]
    return mrcnn_class_logits, mrcnn_probs, mrcnn_bbox


def build_fpn_mask_graph(rois, feature_maps, image_meta, pool_size, num_classes, train_bn=True,
                         conv_channels=256):
    """Mask head on the feature pyramid.

    rois: [B, N, (y1, x1, y2, x2)] normalised, zero-padded.
    feature_maps: [P2, P3, P4, P5], each [B, h, w, channels].
    image_meta: [B, 12 + NUM_CLASSES].
    pool_size: ROIAlign output side (MASK_POOL_SIZE, 14); masks are twice as large.
    num_classes: K, classes including background.
    train_bn: see :class:`mrcnn.layers.BatchNorm`.
    conv_channels: width of the four 3x3 convolutions and the deconvolution
        (MASK_HEAD_CHANNELS, 256).

    Returns: [B, N, 2 * pool_size, 2 * pool_size, K] per-class mask probabilities (sigmoid).
        The weights of the last layer are in "mrcnn_mask"; the tensor returned comes from the
        weightless reshape "mrcnn_mask_split_rois" after it.
    """
    x = PyramidROIAlign((pool_size, pool_size), name="roi_align_mask")(rois, image_meta, feature_maps)
    x = MergeRoiAxis(name="mrcnn_mask_merge_rois")(x)  # [B * N, pool, pool, C]
    for index in range(1, 5):
        x = KL.Conv2D(conv_channels, (3, 3), padding="same", name=f"mrcnn_mask_conv{index}")(x)
        x = BatchNorm(train_bn=train_bn, name=f"mrcnn_mask_bn{index}")(x)
        x = KL.Activation("relu", name=f"mrcnn_mask_relu{index}")(x)
    x = KL.Conv2DTranspose(conv_channels, (2, 2), strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    x = KL.Conv2D(num_classes, (1, 1), activation="sigmoid", name="mrcnn_mask")(x)
    return SplitRoiAxis(name="mrcnn_mask_split_rois")(x, rois)  # [B, N, 2 * pool, 2 * pool, K]
