"""MaskRCNN: composes the stages into Keras models and offers Matterport's public API.

    model = MaskRCNN(mode="training", config=config, model_dir="logs")
    model.load_weights("mask_rcnn_coco.h5", exclude=list(weights.COCO_EXCLUDE))
    model.train(train_set, val_set, learning_rate=config.LEARNING_RATE, epochs=9, layers="heads")
    model.train(train_set, val_set, learning_rate=config.LEARNING_RATE, epochs=79, layers="all")

    model = MaskRCNN(mode="inference", config=inference_config, model_dir="logs")
    model.load_weights(model.find_last())
    results = model.detect([image])   # [{"rois", "class_ids", "scores", "masks"}]

The stages live in their own modules (see docs/ARCHITECTURE.md); this file only wires them
together (:func:`build_model`) and offers them as Matterport's ``MaskRCNN``. Training is in
:mod:`mrcnn.trainer`, the conversion between original images and the model's molded inputs
and outputs in :mod:`mrcnn.transform`; ``MaskRCNN.train``, ``mold_inputs`` and
``unmold_detections`` call them.
"""
from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf
from keras import layers as KL

from mrcnn import pipeline, probe, trainer, transform, weights
from mrcnn.anchors import config_anchors
from mrcnn.backbone import resnet_graph
from mrcnn.config import ConfigError
from mrcnn.detection import DetectionLayer
from mrcnn.fpn import fpn_graph
from mrcnn.heads import build_fpn_mask_graph, fpn_classifier_graph
from mrcnn.layers import ActiveClassIds, ConstantAnchors, DetectionBoxes, DetectionCount, NormBoxes
from mrcnn.proposals import ProposalLayer
from mrcnn.rpn import build_rpn_model
from mrcnn.targets import DetectionTargetLayer, PositiveCount, max_positive_rois

# Re-exported: the loss names, and Matterport's modellib names for the image meta and molding.
from mrcnn.boxes import parse_image_meta_graph  # noqa: F401
from mrcnn.config import LOSS_NAMES  # noqa: F401
from mrcnn.pipeline import compose_image_meta, mold_image  # noqa: F401

__all__ = ["MaskRCNN", "build_model", "LOSS_NAMES"]

logger = logging.getLogger(__name__)


############################################################
#  Graph
############################################################

def _rpn_outputs(feature_maps, config):
    """Run the shared RPN on every pyramid level and concatenate: logits, probs, deltas [B, A, .]."""
    rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS), config.TOP_DOWN_PYRAMID_SIZE,
                          config.RPN_CONV_CHANNELS)
    per_level = [rpn(p) for p in feature_maps]
    names = ("rpn_class_logits", "rpn_class", "rpn_bbox")
    return [KL.Concatenate(axis=1, name=name)([level[i] for level in per_level]) for i, name in enumerate(names)]


def build_model(mode, config):
    """The functional Keras model of ``mode`` ("training" or "inference").

    Inputs (Matterport's names): training: input_image, input_image_meta, input_rpn_match,
    input_rpn_bbox, input_gt_class_ids, input_gt_boxes, input_gt_masks (data.build_dataset
    yields exactly these); inference: input_image, input_image_meta, input_anchors.

    Outputs, a dict: training: rpn_class_logits, rpn_bbox, rpn_rois, rois, target_class_ids,
    target_bbox, target_mask, mrcnn_class_logits, mrcnn_class, mrcnn_bbox, mrcnn_mask,
    active_class_ids. Inference: detections, mrcnn_class, mrcnn_bbox, mrcnn_mask, rpn_rois,
    rpn_class, rpn_bbox. The training mrcnn_mask holds masks only for the first rows, as many
    as the most positive ROIs of any image of the batch, and zeros after them: the mask loss
    scores nothing else. The inference mrcnn_mask holds masks
    for the rows of ``detections`` that hold one and zeros for the padding rows.
    """
    if mode not in ("training", "inference"):
        raise ValueError(f"mode must be 'training' or 'inference', got {mode!r}")
    config.validate()
    if mode == "training" and not config.USE_RPN_ROIS:
        raise ConfigError("USE_RPN_ROIS = False (heads trained on ROIs from the input pipeline) is not supported; "
                          "the heads train on RPN proposals")
    channels = config.IMAGE_CHANNEL_COUNT
    # Training inputs all have IMAGE_SHAPE; inference takes any size the backbone accepts.
    spatial = tuple(int(v) for v in config.IMAGE_SHAPE[:2]) if mode == "training" else (None, None)
    input_image = keras.Input(shape=spatial + (channels,), name="input_image")
    input_image_meta = keras.Input(shape=(config.IMAGE_META_SIZE,), name="input_image_meta")

    backbone = config.BACKBONE
    if isinstance(backbone, str):
        _, C2, C3, C4, C5 = resnet_graph(input_image, backbone, stage5=True, train_bn=config.TRAIN_BN,
                                         width=config.BACKBONE_WIDTH)
    else:
        _, C2, C3, C4, C5 = resnet_graph(input_image, backbone, stage5=True, train_bn=config.TRAIN_BN)
    P2, P3, P4, P5, P6 = fpn_graph([C2, C3, C4, C5], config.TOP_DOWN_PYRAMID_SIZE)
    rpn_feature_maps = [P2, P3, P4, P5, P6]
    mrcnn_feature_maps = [P2, P3, P4, P5]  # P6 only feeds the RPN, as in the FPN paper
    rpn_class_logits, rpn_class, rpn_bbox = _rpn_outputs(rpn_feature_maps, config)

    if mode == "training":
        anchors = ConstantAnchors(config_anchors(config, config.IMAGE_SHAPE), name="anchors")(input_image)
        proposal_count = config.POST_NMS_ROIS_TRAINING
    else:
        input_anchors = keras.Input(shape=(None, 4), name="input_anchors")
        anchors = input_anchors
        proposal_count = config.POST_NMS_ROIS_INFERENCE
    rpn_rois = ProposalLayer(proposal_count, config.RPN_NMS_THRESHOLD, config.PRE_NMS_LIMIT,
                             config.RPN_BBOX_STD_DEV, name="ROI")([rpn_class, rpn_bbox, anchors])

    if mode == "training":
        input_rpn_match = keras.Input(shape=(None, 1), name="input_rpn_match", dtype="int32")
        input_rpn_bbox = keras.Input(shape=(None, 4), name="input_rpn_bbox")
        input_gt_class_ids = keras.Input(shape=(None,), name="input_gt_class_ids", dtype="int32")
        input_gt_boxes = keras.Input(shape=(None, 4), name="input_gt_boxes")
        mask_shape = tuple(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK else spatial
        input_gt_masks = keras.Input(shape=mask_shape + (None,), name="input_gt_masks", dtype="bool")
        gt_boxes = NormBoxes(name="norm_gt_boxes")(input_gt_boxes, input_image)

        rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
            config.TRAIN_ROIS_PER_IMAGE, config.ROI_POSITIVE_RATIO, config.BBOX_STD_DEV, config.MASK_SHAPE,
            config.USE_MINI_MASK, add_gt_as_proposals=config.ADD_GT_AS_PROPOSALS,
            name="proposal_targets")([rpn_rois, input_gt_class_ids, gt_boxes, input_gt_masks])
        mrcnn_class_logits, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
            rois, mrcnn_feature_maps, input_image_meta, config.POOL_SIZE, config.NUM_CLASSES,
            train_bn=config.TRAIN_BN, fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE)
        # The mask loss scores only the positive ROIs, which come first: the head runs on the
        # first rows up to the batch's largest positive count (the others are zeros), which
        # changes neither the loss nor the gradients with frozen BatchNorm. With TRAIN_BN its
        # statistics come from those rows rather than from all sampled ROIs and padding.
        # Under XLA (static shapes) it runs on the most positives an image can have.
        positive_count = PositiveCount(name="positive_count")(target_class_ids)
        mrcnn_mask = build_fpn_mask_graph(
            rois, mrcnn_feature_maps, input_image_meta, config.MASK_POOL_SIZE, config.NUM_CLASSES,
            train_bn=config.TRAIN_BN, conv_channels=config.MASK_HEAD_CHANNELS, scored_rois=positive_count,
            max_scored_rois=max_positive_rois(config.TRAIN_ROIS_PER_IMAGE, config.ROI_POSITIVE_RATIO))
        inputs = [input_image, input_image_meta, input_rpn_match, input_rpn_bbox, input_gt_class_ids,
                  input_gt_boxes, input_gt_masks]
        outputs = {
            "rpn_class_logits": rpn_class_logits, "rpn_bbox": rpn_bbox, "rpn_rois": rpn_rois, "rois": rois,
            "target_class_ids": target_class_ids, "target_bbox": target_bbox, "target_mask": target_mask,
            "mrcnn_class_logits": mrcnn_class_logits, "mrcnn_class": mrcnn_class, "mrcnn_bbox": mrcnn_bbox,
            "mrcnn_mask": mrcnn_mask, "active_class_ids": ActiveClassIds(name="active_class_ids")(input_image_meta),
        }
        return keras.Model(inputs, outputs, name="mask_rcnn_training")

    _, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
        rpn_rois, mrcnn_feature_maps, input_image_meta, config.POOL_SIZE, config.NUM_CLASSES,
        train_bn=config.TRAIN_BN, fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE)
    detections = DetectionLayer(config.DETECTION_MAX_INSTANCES, config.DETECTION_MIN_CONFIDENCE,
                                config.DETECTION_NMS_THRESHOLD, config.BBOX_STD_DEV,
                                name="mrcnn_detection")([rpn_rois, mrcnn_class, mrcnn_bbox, input_image_meta])
    # Masks only for the final detections, not all proposals, and only for the rows that hold
    # one (they come first; the padding rows of mrcnn_mask are zeros).
    detection_boxes = DetectionBoxes(name="detection_boxes")(detections)
    detection_count = DetectionCount(name="detection_count")(detections)
    mrcnn_mask = build_fpn_mask_graph(detection_boxes, mrcnn_feature_maps, input_image_meta, config.MASK_POOL_SIZE,
                                      config.NUM_CLASSES, train_bn=config.TRAIN_BN,
                                      conv_channels=config.MASK_HEAD_CHANNELS, scored_rois=detection_count)
    outputs = {"detections": detections, "mrcnn_class": mrcnn_class, "mrcnn_bbox": mrcnn_bbox,
               "mrcnn_mask": mrcnn_mask, "rpn_rois": rpn_rois, "rpn_class": rpn_class, "rpn_bbox": rpn_bbox}
    return keras.Model([input_image, input_image_meta, input_anchors], outputs, name="mask_rcnn_inference")


############################################################
#  MaskRCNN
############################################################

class MaskRCNN:
    """Mask R-CNN with Matterport's interface; the Keras model is ``keras_model``."""

    def __init__(self, mode, config, model_dir):
        """mode: "training" or "inference"; config: a Config; model_dir: where run folders go."""
        self.mode = mode
        self.config = config
        self.model_dir = str(model_dir)
        self.epoch = 0
        self.set_log_dir()
        self.keras_model = build_model(mode, config)
        self._predict_fn = None
        # What runs the network in detect(): None for TensorFlow, or a runtime (see use_runtime).
        self.runtime = None

    # ----------------------------------------------------------------- weights and logs

    def find_last(self):
        """Path of the newest checkpoint of the newest run of this config's NAME in model_dir."""
        return str(weights.newest_checkpoint(self.model_dir, prefix=self.config.NAME or ""))

    def load_weights(self, filepath, by_name=False, exclude=None, skip_mismatch=False, verbose=0):
        """Load Keras 3 checkpoints or Matterport / Keras 2 ``.h5`` files, always by layer name.

        by_name: accepted for Matterport scripts; loading is by layer name either way.
        exclude: layer names to skip, e.g. ``weights.COCO_EXCLUDE`` when NUM_CLASSES differs.
        The class names a file stores (see :meth:`save_weights`) become ``class_names``.
        filepath may also name weights that an installed package offers (leafseg: ``"leaf-small"``;
        see :func:`mrcnn.weights.resolve_named`).
        Returns the :class:`mrcnn.weights.LoadReport`.
        """
        filepath = weights.resolve_named(filepath)
        report = weights.load_weights_auto(self.keras_model, filepath, exclude=exclude,
                                           skip_mismatch=skip_mismatch, verbose=verbose)
        metadata = weights.read_metadata(filepath)
        if metadata is not None and metadata.class_names:
            self.class_names = list(metadata.class_names)
        self.set_log_dir(filepath)
        return report

    def save_weights(self, filepath, class_names=None):
        """Write the model's weights as a Keras 3 ``.weights.h5`` file, atomically, with the config
        (YAML text) and the class names in the file (``mrcnn.weights.read_metadata`` reads them).

        class_names: default the training dataset's (recorded by :meth:`train`) or the loaded
        file's; none are stored when neither is known.
        """
        if class_names is None:
            class_names = getattr(self, "class_names", None)
        return weights.save_weights(self.keras_model, filepath, config_yaml=self.config.to_yaml_text(),
                                    class_names=None if class_names is None else list(class_names))

    def set_log_dir(self, model_path=None):
        """Start a new run folder, or continue the run (and epoch) of ``model_path``'s checkpoint
        (:func:`mrcnn.weights.run_folder`)."""
        self.log_dir, self.checkpoint_path, self.epoch = weights.run_folder(self.model_dir, self.config.NAME,
                                                                            model_path)

    # ------------------------------------------------------------------------- training

    def compile_trainer(self, optimizer=None, learning_rate=None, jit_compile=False):
        """A compiled :class:`mrcnn.trainer.MaskRCNNTrainer` around ``keras_model``: see
        :func:`mrcnn.trainer.compile_trainer`."""
        return trainer.compile_trainer(self, optimizer=optimizer, learning_rate=learning_rate, jit_compile=jit_compile)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation=None,
              custom_callbacks=None, no_augmentation_sources=None, optimizer=None, seed=0, verbose=1,
              optimizer_state=None, keep_checkpoints=None, plot=False, jit_compile=False, stage=None,
              checkpoint_metadata=None, on_checkpoint=None):
        """Train ``layers`` until epoch ``epochs`` (counted across calls, as in Matterport), writing
        the run into ``log_dir``; returns the Keras History. See :func:`mrcnn.trainer.train`."""
        return trainer.train(self, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation=augmentation,
                             custom_callbacks=custom_callbacks, no_augmentation_sources=no_augmentation_sources,
                             optimizer=optimizer, seed=seed, verbose=verbose, optimizer_state=optimizer_state,
                             keep_checkpoints=keep_checkpoints, plot=plot, jit_compile=jit_compile, stage=stage,
                             checkpoint_metadata=checkpoint_metadata, on_checkpoint=on_checkpoint)

    # ------------------------------------------------------------------------ inference

    def mold_inputs(self, images):
        """Resize and normalise images for the model: :func:`mrcnn.transform.mold_inputs`.

        Returns: molded_images float32 [N, h, w, C], image_metas [N, META], windows int [N, 4].
        """
        return transform.mold_inputs(images, self.config)

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window):
        """One image's detections in its original pixels: :func:`mrcnn.transform.unmold_detections`.

        Returns: boxes int32 [n, 4], class_ids int32 [n], scores float32 [n], masks bool [H, W, n].
        """
        return transform.unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window,
                                           self.config.DETECTION_MASK_OVERLAP_THRESHOLD)

    def get_anchors(self, image_shape):
        """Normalised anchors [A, 4] for a molded image of ``image_shape``."""
        return config_anchors(self.config, image_shape)

    def use_runtime(self, runtime):
        """Run the network of :meth:`detect` (and everything built on it) in ``runtime``, e.g. a
        :class:`mrcnn.openvino.OpenVINORuntime` of this model; None: TensorFlow again.

        A runtime has ``predict(molded_images, image_metas, anchors) -> dict`` returning what
        TensorFlow returns (float32 numpy arrays by output name), ``name`` and ``description``.
        Returns the runtime used before (None for TensorFlow).
        """
        if runtime is not None and self.mode != "inference":
            raise RuntimeError("Create model in inference mode to use a runtime")
        previous, self.runtime = getattr(self, "runtime", None), runtime
        return previous

    def _predict(self, molded_images, image_metas):
        if self.mode != "inference":
            raise RuntimeError("Create model in inference mode to detect")
        anchors = self.get_anchors(molded_images.shape[1:3])
        anchors = np.broadcast_to(anchors, (len(molded_images),) + anchors.shape)
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            return runtime.predict(molded_images, image_metas, anchors)
        if self._predict_fn is None:
            model = self.keras_model

            def predict(inputs):
                # Under a mixed-precision policy the heads' outputs are float16 or bfloat16;
                # callers get float32 (numpy has no bfloat16 of its own).
                outputs = model(inputs, training=False)
                return {name: tf.cast(value, tf.float32) if value.dtype.is_floating else value
                        for name, value in outputs.items()}

            # reduce_retracing: one graph for each input size, not one per call.
            self._predict_fn = tf.function(predict, reduce_retracing=True)
        outputs = self._predict_fn([tf.constant(molded_images), tf.constant(image_metas, tf.float32),
                                    tf.constant(anchors)])
        return {name: value.numpy() for name, value in outputs.items()}

    def detect(self, images, verbose=0):
        """Detect instances in images of any size.

        images: list of [H, W, C] arrays (any number; Matterport required exactly BATCH_SIZE), or
            of images molded ahead by :meth:`mold`. All must resize to the same shape (always
            true in "square" mode).
        Returns: one dict per image: rois int32 [N, (y1, x1, y2, x2)], class_ids int32 [N],
        scores float32 [N], masks bool [H, W, N], in the original image's pixels.
        """
        items = list(images)
        images = [pipeline.raw_image(item) for item in items]
        if verbose:
            logger.info("Processing %d image%s", len(images), "" if len(images) == 1 else "s")
        parts = [(item.molded, item.meta, item.window) if isinstance(item, pipeline.MoldedImage) else None
                 for item in items]
        fresh = [i for i, part in enumerate(parts) if part is None]
        if len(fresh) == len(parts):
            molded_images, image_metas, windows = self.mold_inputs(images)
        else:
            if fresh:
                for i, *part in zip(fresh, *self.mold_inputs([images[i] for i in fresh])):
                    parts[i] = part
            molded_images, image_metas, windows = (np.stack(column) if len(column) > 1 else np.expand_dims(column[0], 0)
                                                   for column in zip(*parts))
        return self.detect_molded(molded_images, image_metas, verbose=verbose, original_images=images,
                                  windows=windows)

    def mold(self, image):
        """``image`` molded now for :meth:`detect` later (:class:`mrcnn.pipeline.MoldedImage`):
        a thread reading the next images can mold them while the model runs."""
        image = np.asarray(image)
        molded, metas, windows = self.mold_inputs([image])
        return pipeline.MoldedImage(image, molded[0], metas[0], windows[0])

    def detect_molded(self, molded_images, image_metas, verbose=0, original_images=None, windows=None):
        """Detect on images already molded by :meth:`mold_inputs` (Matterport's debugging entry).

        Results are in the coordinates of the original images described by ``image_metas``.
        """
        outputs = self._predict(np.asarray(molded_images, np.float32), np.asarray(image_metas))
        return transform.unmold_results(outputs, image_metas, windows, self.config.DETECTION_MASK_OVERLAP_THRESHOLD)

    # ------------------------------------------------------------------------ inspection

    def run_graph(self, images, outputs=None):
        """Every intermediate stage for ``images`` (inference mode), as numpy arrays by name:
        :func:`mrcnn.probe.run_graph` (Matterport's ``run_graph``)."""
        return probe.run_graph(self, images, outputs)

