"""Final detections: refine each ROI with its best class's deltas, then per-class NMS.

Matterport's ``refine_detections_graph`` semantics, batched over images: per ROI the argmax
class, its score and its class-specific deltas; boxes clipped to the image window; background,
scores below ``min_confidence`` and zero-padding ROIs dropped; NMS within each class; the
``max_instances`` best by score kept, zero-padded.
"""
import keras
import tensorflow as tf

from mrcnn.boxes import apply_box_deltas_graph, clip_boxes_graph, norm_boxes_graph, parse_image_meta_graph
from mrcnn.nms import combined_nms

__all__ = ["refine_detections_graph", "DetectionLayer"]


def refine_detections_graph(rois, probs, deltas, window, max_instances, min_confidence,
                            nms_threshold, bbox_std_dev):
    """Detections of a batch of images.

    rois: [batch, N, (y1, x1, y2, x2)] normalised, zero-padded.
    probs: [batch, N, num_classes] class probabilities (mrcnn_class).
    deltas: [batch, N, num_classes, (dy, dx, log(dh), log(dw))] class-specific deltas,
        divided by bbox_std_dev (mrcnn_bbox).
    window: [batch, (y1, x1, y2, x2)] normalised window of the image inside the padded
        input; boxes are clipped to it.
    max_instances: detections kept per image (DETECTION_MAX_INSTANCES).
    min_confidence: ROIs whose best class scores below this are dropped.
    nms_threshold: within a class, a box whose IoU with a higher-scoring kept box is above
        this is dropped.
    bbox_std_dev: [4] BBOX_STD_DEV.

    Returns: float32 [batch, max_instances, (y1, x1, y2, x2, class_id, score)], normalised
    boxes, by descending score, zero-padded after the last detection.
    """
    probs = tf.cast(probs, tf.float32)
    class_ids = tf.argmax(probs, axis=2, output_type=tf.int32)  # [B, N]
    class_scores = tf.reduce_max(probs, axis=2)  # [B, N]
    class_deltas = tf.gather(tf.cast(deltas, tf.float32), class_ids, axis=2, batch_dims=2)  # [B, N, 4]
    boxes = apply_box_deltas_graph(rois, class_deltas * tf.constant(bbox_std_dev, tf.float32))
    boxes = clip_boxes_graph(boxes, tf.cast(window, tf.float32)[:, tf.newaxis, :])

    valid_roi = tf.reduce_any(tf.not_equal(tf.cast(rois, tf.float32), 0.0), axis=-1)
    keep = valid_roi & (class_ids > 0) & (class_scores >= min_confidence)
    # Each ROI competes only in its own class. A per-class cap of max_instances and a total
    # cap of max_instances is one class-aware NMS capped at max_instances.
    boxes, scores, classes, _ = combined_nms(
        boxes, class_scores, max_instances, nms_threshold, classes=class_ids,
        valid=keep & (class_scores > 0.0), num_classes=probs.shape[-1] or tf.shape(probs)[-1])
    detections = tf.concat([boxes, classes[..., tf.newaxis], scores[..., tf.newaxis]], axis=-1)
    return tf.stop_gradient(detections)


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(keras.layers.Layer):
    """ROIs and head outputs -> final detections (see :func:`refine_detections_graph`).

    Call with ``[rois, mrcnn_class, mrcnn_bbox, image_meta]``:
        rois: [batch, N, 4] normalised, zero-padded (ProposalLayer's rpn_rois).
        mrcnn_class: [batch, N, NUM_CLASSES] class probabilities.
        mrcnn_bbox: [batch, N, NUM_CLASSES, 4] deltas, divided by bbox_std_dev.
        image_meta: [batch, 12 + NUM_CLASSES] (data.compose_image_meta); its window
            (pixels) and image_shape give the clipping window.

    Returns: float32 [batch, max_instances, (y1, x1, y2, x2, class_id, score)], normalised,
    zero-padded after the last detection.
    """

    def __init__(self, max_instances=100, min_confidence=0.7, nms_threshold=0.3,
                 bbox_std_dev=(0.1, 0.1, 0.2, 0.2), **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.max_instances = int(max_instances)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.bbox_std_dev = [float(v) for v in bbox_std_dev]

    def call(self, inputs):
        rois, mrcnn_class, mrcnn_bbox, image_meta = inputs
        meta = parse_image_meta_graph(image_meta)
        window = norm_boxes_graph(meta["window"], meta["image_shape"])  # [B, 4]
        return refine_detections_graph(rois, mrcnn_class, mrcnn_bbox, window, self.max_instances,
                                       self.min_confidence, self.nms_threshold, self.bbox_std_dev)

    def get_config(self):
        config = super().get_config()
        config.update(max_instances=self.max_instances, min_confidence=self.min_confidence,
                      nms_threshold=self.nms_threshold, bbox_std_dev=self.bbox_std_dev)
        return config
