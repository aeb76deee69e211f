"""Matterport's ``run_graph``: every intermediate stage of the inference model for some images,
for the inspection notebooks (anchors, RPN scores, proposals before and after NMS, detections,
masks) and any layer's output by name."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from mrcnn.proposals import proposal_steps

__all__ = ["run_graph"]


def run_graph(maskrcnn, images, outputs=None):
    """Every intermediate stage for ``images`` (inference mode), as numpy arrays by name.

    outputs: None for the standard set below, or a list of (name, layer name) pairs whose
    layer outputs to return as well (Matterport's run_graph, e.g. ("res4w_out", "res4w_out")).

    Standard set: molded_images, image_metas, anchors; rpn_class, rpn_bbox (RPN scores and
    deltas of every anchor); pre_nms_scores, pre_nms_indices, pre_nms_anchors (top
    PRE_NMS_LIMIT anchors), refined_anchors, refined_anchors_clipped, post_nms_rois (the
    proposals, POST_NMS_ROIS_INFERENCE), mrcnn_class, mrcnn_bbox (classifier outputs),
    detections, mrcnn_mask.
    """
    config = maskrcnn.config
    molded_images, image_metas, _ = maskrcnn.mold_inputs([np.asarray(image) for image in images])
    result = {"molded_images": molded_images, "image_metas": image_metas,
              "anchors": maskrcnn.get_anchors(molded_images.shape[1:3])}
    result.update(maskrcnn._predict(molded_images, image_metas))
    steps = proposal_steps(result["rpn_class"], result["rpn_bbox"], result["anchors"],
                           config.POST_NMS_ROIS_INFERENCE, config.RPN_NMS_THRESHOLD, config.PRE_NMS_LIMIT,
                           config.RPN_BBOX_STD_DEV)
    result.update({name: value.numpy() for name, value in steps.items()})
    if outputs:
        model = maskrcnn.keras_model
        tap = keras.Model(model.inputs, [model.get_layer(layer).output for _, layer in outputs])
        anchors = np.broadcast_to(result["anchors"], (len(molded_images),) + result["anchors"].shape)
        values = tap([molded_images, image_metas.astype(np.float32), anchors], training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        # float32 also under mixed precision, as MaskRCNN._predict returns its outputs.
        result.update({name: np.asarray(tf.cast(value, tf.float32) if value.dtype.is_floating else value)
                       for (name, _), value in zip(outputs, values)})
    return result
