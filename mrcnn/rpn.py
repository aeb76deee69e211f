"""Region proposal network head, shared by all pyramid levels (Matterport's ``rpn_model``)."""
import keras
from keras import layers as KL

from mrcnn.conv import Conv2D

__all__ = ["build_rpn_model"]


def build_rpn_model(anchor_stride, anchors_per_location, depth, conv_channels=512):
    """The RPN head as one sub-model, applied to every pyramid level with shared weights.

    anchor_stride: anchors on every ``anchor_stride``-th feature-map cell (RPN_ANCHOR_STRIDE);
        the shared convolution uses it as its stride.
    anchors_per_location: anchor shapes per cell (len(RPN_ANCHOR_RATIOS)).
    depth: channels of the pyramid maps (TOP_DOWN_PYRAMID_SIZE).
    conv_channels: width of the shared 3x3 convolution (RPN_CONV_CHANNELS; 512 in Matterport).

    Returns: ``keras.Model`` named "rpn_model" with input "input_rpn_feature_map"
        [B, h, w, depth] and outputs, with a = ceil(h / anchor_stride) * ceil(w / anchor_stride)
        * anchors_per_location:
        rpn_class_logits [B, a, 2] (background, foreground) logits,
        rpn_probs [B, a, 2] their softmax,
        rpn_bbox [B, a, (dy, dx, log(dh), log(dw))] deltas, still divided by RPN_BBOX_STD_DEV.
        Rows are ordered by position (row-major), then anchor shape, as the anchors of
        :func:`mrcnn.anchors.generate_anchors`: reshaping [B, h, w, anchors * n] to
        [B, h * w * anchors, n] keeps that order because the channel axis is innermost.
    Its weights, in order: rpn_conv_shared kernel and bias, rpn_class_raw kernel and bias,
    rpn_bbox_pred kernel and bias (the order of ``rpn_model`` in Matterport's files).

    Initialisation (for training from scratch; loaded weights replace it): the two output
    layers start from N(0, 0.01) kernels and zero biases, as in Detectron and torchvision, so
    that a new RPN scores every anchor near 0.5 and barely moves it, rather than Glorot's
    confident random proposals.
    """
    feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    shared = Conv2D(conv_channels, (3, 3), padding="same", activation="relu", strides=anchor_stride,
                       name="rpn_conv_shared")(feature_map)

    small = keras.initializers.RandomNormal(stddev=0.01)
    x = Conv2D(2 * anchors_per_location, (1, 1), padding="valid", kernel_initializer=small,
                  name="rpn_class_raw")(shared)
    rpn_class_logits = KL.Reshape((-1, 2), name="rpn_class_logits_flat")(x)  # [B, a, 2]
    rpn_probs = KL.Activation("softmax", name="rpn_probs")(rpn_class_logits)

    x = Conv2D(4 * anchors_per_location, (1, 1), padding="valid", kernel_initializer=small,
                  name="rpn_bbox_pred")(shared)
    rpn_bbox = KL.Reshape((-1, 4), name="rpn_bbox_flat")(x)  # [B, a, 4]

    return keras.Model(feature_map, [rpn_class_logits, rpn_probs, rpn_bbox], name="rpn_model")
