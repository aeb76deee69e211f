"""Region proposals: top-k anchors by RPN score -> decode -> clip -> NMS -> fixed count.

:func:`proposal_steps` is the whole computation and returns every intermediate tensor, so
that the inspection notebooks see exactly what the model computes; :class:`ProposalLayer`
is the Keras wrapper the model uses and returns only the proposals.

NMS is :func:`mrcnn.nms.combined_nms`: ``tf.image.combined_non_max_suppression`` in
TensorFlow's graph, and greedy NMS batched over images from plain tensor ops
(:func:`mrcnn.nms.batched_nms_gather`, the same boxes) while XLA compiles or an export is
traced for other runtimes. benchmarks/bench_nms.py times the two.
"""
import keras
import tensorflow as tf

from mrcnn.boxes import apply_box_deltas_graph, clip_boxes_graph
from mrcnn.nms import combined_nms

__all__ = ["proposal_steps", "ProposalLayer"]


def proposal_steps(rpn_probs, rpn_bbox, anchors, proposal_count, nms_threshold,
                   pre_nms_limit, rpn_bbox_std_dev):
    """Every step of proposal generation, batched over images.

    rpn_probs: [batch, A, (background, foreground)] RPN softmax scores.
    rpn_bbox: [batch, A, (dy, dx, log(dh), log(dw))] RPN deltas, divided by RPN_BBOX_STD_DEV.
    anchors: [A, (y1, x1, y2, x2)] or [batch, A, 4], normalised (mrcnn.anchors.get_anchors).
    proposal_count: proposals kept per image after NMS (POST_NMS_ROIS_*).
    nms_threshold: NMS drops a box whose IoU with a higher-scoring kept box is above this.
    pre_nms_limit: anchors kept by foreground score before decoding (PRE_NMS_LIMIT); fewer
        if the image has fewer anchors, K = min(pre_nms_limit, A) below.
    rpn_bbox_std_dev: [4] RPN_BBOX_STD_DEV.

    Returns: dict of tensors, all float32 except the int32 indices and counts:
        pre_nms_scores   [batch, K] foreground scores, descending.
        pre_nms_indices  [batch, K] their anchor indices.
        pre_nms_anchors  [batch, K, 4] those anchors.
        refined_anchors  [batch, K, 4] the anchors moved by their deltas.
        refined_anchors_clipped [batch, K, 4] the same, clipped to [0, 1].
        post_nms_rois    [batch, proposal_count, 4] the proposals by descending score,
            zero-padded after the last one.
        post_nms_scores  [batch, proposal_count] their scores, zero-padded.
        post_nms_count   [batch] how many rows of post_nms_rois are proposals.
    """
    scores = tf.cast(rpn_probs, tf.float32)[..., 1]  # [B, A]
    num_anchors = scores.shape[1]
    if num_anchors is None:
        k = tf.minimum(pre_nms_limit, tf.shape(scores)[1])
    else:
        k = min(pre_nms_limit, num_anchors)
    pre_nms_scores, pre_nms_indices = tf.math.top_k(scores, k=k, sorted=True)  # [B, K]

    deltas = tf.gather(tf.cast(rpn_bbox, tf.float32), pre_nms_indices, batch_dims=1)  # [B, K, 4]
    deltas = deltas * tf.constant(rpn_bbox_std_dev, tf.float32)
    anchors = tf.cast(anchors, tf.float32)
    if anchors.shape.rank == 2:
        pre_nms_anchors = tf.gather(anchors, pre_nms_indices)  # [B, K, 4]
    else:
        pre_nms_anchors = tf.gather(anchors, pre_nms_indices, batch_dims=1)
    refined = apply_box_deltas_graph(pre_nms_anchors, deltas)
    clipped = clip_boxes_graph(refined, tf.constant([0.0, 0.0, 1.0, 1.0]))

    # One class, every box a candidate; zero-padded to proposal_count.
    rois, nms_scores, _, count = combined_nms(clipped, pre_nms_scores, proposal_count, nms_threshold)
    # Proposals are constants to the second stage (as in detectron2 and torchvision); NMS
    # has no gradient, so a loss reaching back through them would fail, not just be wrong.
    rois = tf.stop_gradient(rois)
    return {
        "pre_nms_scores": pre_nms_scores,
        "pre_nms_indices": pre_nms_indices,
        "pre_nms_anchors": pre_nms_anchors,
        "refined_anchors": refined,
        "refined_anchors_clipped": clipped,
        "post_nms_rois": rois,
        "post_nms_scores": nms_scores,
        "post_nms_count": count,
    }


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(keras.layers.Layer):
    """RPN outputs -> a fixed number of normalised proposals per image.

    Per image: the ``pre_nms_limit`` anchors with the highest foreground score, moved by
    their deltas (times ``rpn_bbox_std_dev``), clipped to [0, 1], non-max suppressed at
    ``nms_threshold``, at most ``proposal_count`` kept, highest score first.

    Call with ``[rpn_probs, rpn_bbox, anchors]``:
        rpn_probs: [batch, A, 2] float; rpn_bbox: [batch, A, 4] float;
        anchors: [A, 4] or [batch, A, 4] normalised anchors.

    Returns: rpn_rois float32 [batch, proposal_count, (y1, x1, y2, x2)] normalised,
    zero-padded after the last proposal. Computes in float32 (dtype defaults to float32,
    so mixed-precision inputs are cast up).
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit=6000,
                 rpn_bbox_std_dev=(0.1, 0.1, 0.2, 0.2), **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.rpn_bbox_std_dev = [float(v) for v in rpn_bbox_std_dev]

    def steps(self, inputs):
        """The intermediate tensors of :func:`proposal_steps` for these inputs."""
        rpn_probs, rpn_bbox, anchors = inputs
        return proposal_steps(rpn_probs, rpn_bbox, anchors, self.proposal_count,
                              self.nms_threshold, self.pre_nms_limit, self.rpn_bbox_std_dev)

    def call(self, inputs):
        return self.steps(inputs)["post_nms_rois"]

    def get_config(self):
        config = super().get_config()
        config.update(proposal_count=self.proposal_count, nms_threshold=self.nms_threshold,
                      pre_nms_limit=self.pre_nms_limit, rpn_bbox_std_dev=self.rpn_bbox_std_dev)
        return config
