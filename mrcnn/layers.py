"""Small Keras layers shared by the backbone and the heads."""
import keras
import numpy as np
import tensorflow as tf

from mrcnn.boxes import norm_boxes_graph, parse_image_meta_graph

__all__ = ["BatchNorm"]

# Keras 2's default, the value Matterport's COCO weights were trained with.
BN_EPSILON = 1e-3


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(keras.layers.BatchNormalization):
    """Batch normalisation that can be frozen into inference mode when the graph is built.

    Matterport wrote ``BatchNorm(...)(x, training=train_bn)``. In Keras 3 that is not enough:
    a functional model passes its own ``training`` flag to every layer that takes one,
    replacing the value given while the graph was built. This layer therefore holds the
    decision itself.

    train_bn: False: always use the moving mean and variance, and never update them, even
        when the model is called with ``training=True`` (Matterport's ``TRAIN_BN = False``,
        right for the small batches detection trains with). True: ordinary batch
        normalisation, following the ``training`` flag. A layer built with False also starts
        non-trainable (its gamma and beta too); ``mrcnn.trainable.set_trainable`` keeps it so.
        A non-trainable Keras 3 BatchNormalization also runs in inference mode, so a layer
        frozen later by ``set_trainable`` stops updating its statistics as well.

    Weights, in order: gamma, beta, moving_mean, moving_variance (Keras 2's order, which
    Matterport's weight files store).
    """

    def __init__(self, train_bn=True, epsilon=BN_EPSILON, **kwargs):
        kwargs.setdefault("trainable", bool(train_bn))
        super().__init__(epsilon=epsilon, **kwargs)
        self.train_bn = bool(train_bn)

    def call(self, inputs, training=None, mask=None):
        if not self.train_bn:
            training = False
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {**super().get_config(), "train_bn": self.train_bn}


@keras.saving.register_keras_serializable(package="mrcnn")
class ConstantAnchors(keras.layers.Layer):
    """The fixed anchors of a fixed input size, repeated over the batch of ``image``.

    Training inputs all have config.IMAGE_SHAPE, so their anchors are a constant of the graph
    (not a weight: they would land in checkpoints and tie them to one input size).

    anchors: [A, 4] normalised anchors (mrcnn.anchors.get_anchors).
    Call with the image batch [B, H, W, C]; returns float32 [B, A, 4].
    """

    def __init__(self, anchors, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.anchors = np.asarray(anchors, dtype="float32")

    def call(self, image):
        anchors = tf.constant(self.anchors)
        return tf.broadcast_to(anchors, tf.concat([tf.shape(image)[:1], tf.shape(anchors)], axis=0))

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(self.anchors.shape)

    def get_config(self):
        return {**super().get_config(), "anchors": self.anchors.tolist()}


@keras.saving.register_keras_serializable(package="mrcnn")
class NormBoxes(keras.layers.Layer):
    """Pixel boxes [B, N, 4] -> normalised boxes, for the size of the ``image`` batch [B, H, W, C]."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, boxes, image):
        return norm_boxes_graph(boxes, tf.shape(image)[1:3])


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionBoxes(keras.layers.Layer):
    """Detections [B, N, (y1, x1, y2, x2, class_id, score)] -> their boxes float32 [B, N, 4].

    float32 under mixed precision too: the boxes are ROIs for the mask head's ROIAlign.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, detections):
        return detections[..., :4]


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionCount(keras.layers.Layer):
    """Detections [B, N, (y1, x1, y2, x2, class_id, score)] -> int32 scalar: the largest number
    of detections (rows with class_id > 0, which come first) of any image of the batch."""

    def call(self, detections):
        per_image = tf.reduce_sum(tf.cast(detections[..., 4] > 0, tf.int32), axis=1)  # [B]
        return tf.reduce_max(tf.concat([per_image, [0]], axis=0))


@keras.saving.register_keras_serializable(package="mrcnn")
class ActiveClassIds(keras.layers.Layer):
    """image_meta [B, 12 + NUM_CLASSES] -> active_class_ids float32 [B, NUM_CLASSES]."""

    def call(self, image_meta):
        return parse_image_meta_graph(image_meta)["active_class_ids"]
