"""The five Mask R-CNN losses, as pure functions of tensors (Matterport's definitions).

Each returns a float32 scalar: a mean over the elements it scores, and 0 (never NaN) when
there is nothing to score, e.g. an image without positive anchors or ROIs. They work with
masks and fixed shapes rather than ``tf.where`` + gather, so the batch size may be unknown,
and compute in float32 whatever the dtype of the predictions (mixed precision).
"""
import tensorflow as tf

__all__ = ["smooth_l1_loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
           "mrcnn_bbox_loss", "mrcnn_mask_loss"]

# Matterport (through Keras' binary_crossentropy) clips probabilities to [eps, 1 - eps].
_EPSILON = 1e-7


def _masked_mean(values, mask, elements_per_row=1.0):
    """Sum of ``values`` where ``mask`` is set, over (mask count * elements_per_row); 0 if none."""
    mask = tf.cast(mask, tf.bool)
    # where, not a product: an inf in a row that is not scored must not become NaN.
    total = tf.reduce_sum(tf.where(mask, values, 0.0))
    count = tf.reduce_sum(tf.cast(mask, tf.float32)) * elements_per_row
    return tf.math.divide_no_nan(total, count)


def smooth_l1_loss(y_true, y_pred):
    """Element-wise smooth L1 (Huber with delta 1): 0.5 * d**2 if |d| < 1, else |d| - 0.5."""
    diff = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
    return tf.where(diff < 1.0, 0.5 * tf.square(diff), diff - 0.5)


def _squeeze_match(rpn_match):
    """[batch, A, 1] or [batch, A] anchor labels -> int32 [batch, A]."""
    rpn_match = tf.cast(rpn_match, tf.int32)
    if rpn_match.shape.rank == 3:
        rpn_match = tf.squeeze(rpn_match, axis=-1)
    return rpn_match


def rpn_class_loss(rpn_match, rpn_class_logits):
    """RPN anchor classifier loss: softmax cross-entropy over the non-neutral anchors.

    rpn_match: int [batch, A, 1] (or [batch, A]): 1 positive, -1 negative, 0 neutral.
    rpn_class_logits: [batch, A, (background, foreground)] logits.

    Returns: scalar, the mean over anchors with rpn_match != 0; 0 if there are none.
    """
    rpn_match = _squeeze_match(rpn_match)
    labels = tf.cast(tf.equal(rpn_match, 1), tf.int32)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(rpn_class_logits, tf.float32))  # [B, A]
    return _masked_mean(loss, tf.not_equal(rpn_match, 0))


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox, batch_size=None):
    """RPN box regression loss: smooth L1 over the positive anchors.

    target_bbox: [batch, RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))], divided
        by RPN_BBOX_STD_DEV: per image, the targets of its positive anchors in anchor order,
        then zero padding (Matterport's packing; data.build_rpn_targets writes it).
    rpn_match: int [batch, A, 1] (or [batch, A]): 1 marks the positive anchors.
    rpn_bbox: [batch, A, 4] predicted deltas.
    batch_size: unused; the batch size is read from the tensors (it may be unknown). Kept
        so that callers written for Matterport's per-image packing work unchanged.

    Returns: scalar, the mean over the 4 coordinates of every positive anchor; 0 if none.
    """
    del batch_size
    rpn_match = _squeeze_match(rpn_match)
    positive = tf.equal(rpn_match, 1)  # [B, A]
    # The i-th positive anchor of an image (in anchor order) pairs with its target row i.
    rows = tf.cumsum(tf.cast(positive, tf.int32), axis=1) - 1
    rows = tf.clip_by_value(rows, 0, tf.shape(target_bbox)[1] - 1)
    targets = tf.gather(tf.cast(target_bbox, tf.float32), rows, batch_dims=1)  # [B, A, 4]
    loss = tf.reduce_sum(smooth_l1_loss(targets, rpn_bbox), axis=-1)  # [B, A]
    return _masked_mean(loss, positive, elements_per_row=4)


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids):
    """Classifier head loss: softmax cross-entropy, ignoring inactive-class predictions.

    target_class_ids: int [batch, num_rois], 0 for background and for padding ROIs.
    pred_class_logits: [batch, num_rois, num_classes] logits.
    active_class_ids: [batch, num_classes], 1 for the classes of the image's dataset
        (image_meta's active_class_ids), 0 for the others.

    An ROI whose predicted (argmax) class is not active in its image is left out: a dataset
    that never labels a class must not be penalised for predicting it. Padding ROIs count as
    background, as in Matterport.

    Returns: scalar, the mean over the ROIs that count; 0 if there are none.
    """
    logits = tf.cast(pred_class_logits, tf.float32)
    pred_class_ids = tf.argmax(logits, axis=2, output_type=tf.int32)  # [B, N]
    pred_active = tf.gather(tf.cast(active_class_ids, tf.float32), pred_class_ids, batch_dims=1)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(target_class_ids, tf.int32), logits=logits)  # [B, N]
    return _masked_mean(loss, pred_active)


def _positive_class_one_hot(target_class_ids, num_classes):
    """(positive bool [batch, num_rois], one-hot of the target class [batch, num_rois, K])."""
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    return target_class_ids > 0, tf.one_hot(target_class_ids, num_classes)


def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """Box head loss: smooth L1 of the true class's deltas, over the positive ROIs.

    target_bbox: [batch, num_rois, (dy, dx, log(dh), log(dw))], divided by BBOX_STD_DEV.
    target_class_ids: int [batch, num_rois]; > 0 marks the positive ROIs.
    pred_bbox: [batch, num_rois, num_classes, 4] class-specific deltas.

    Returns: scalar, the mean over the 4 coordinates of every positive ROI; 0 if none.
    """
    pred_bbox = tf.cast(pred_bbox, tf.float32)
    num_classes = pred_bbox.shape[2] or tf.shape(pred_bbox)[2]
    positive, one_hot = _positive_class_one_hot(target_class_ids, num_classes)
    pred = tf.reduce_sum(pred_bbox * one_hot[..., tf.newaxis], axis=2)  # [B, N, 4]
    loss = tf.reduce_sum(smooth_l1_loss(target_bbox, pred), axis=-1)  # [B, N]
    return _masked_mean(loss, positive, elements_per_row=4)


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """Mask head loss: binary cross-entropy of the true class's mask, over the positive ROIs.

    target_masks: [batch, num_rois, height, width] of 0/1.
    target_class_ids: int [batch, num_rois]; > 0 marks the positive ROIs.
    pred_masks: [batch, num_rois, height, width, num_classes] sigmoid probabilities
        (mrcnn_mask), clipped to [1e-7, 1 - 1e-7] so that the log stays finite.

    Only the channel of each ROI's true class is scored; the other classes' masks get no
    gradient.

    Returns: scalar, the mean over the pixels of every positive ROI; 0 if none.
    """
    pred_masks = tf.cast(pred_masks, tf.float32)
    num_classes = pred_masks.shape[-1] or tf.shape(pred_masks)[-1]
    positive, one_hot = _positive_class_one_hot(target_class_ids, num_classes)
    pred = tf.reduce_sum(pred_masks * one_hot[:, :, tf.newaxis, tf.newaxis, :], axis=-1)  # [B, N, h, w]
    pred = tf.clip_by_value(pred, _EPSILON, 1.0 - _EPSILON)
    target = tf.cast(target_masks, tf.float32)
    bce = -(target * tf.math.log(pred) + (1.0 - target) * tf.math.log(1.0 - pred))
    loss = tf.reduce_sum(bce, axis=[2, 3])  # [B, N]
    pixels = tf.cast(tf.shape(target)[2] * tf.shape(target)[3], tf.float32)
    return _masked_mean(loss, positive, elements_per_row=pixels)
