"""MaskRCNN: composes the stages into Keras models and offers Matterport's public API.

    model = MaskRCNN(mode="training", config=config, model_dir="logs")
    model.load_weights("mask_rcnn_coco.h5", exclude=list(weights.COCO_EXCLUDE))
    model.train(train_set, val_set, learning_rate=config.LEARNING_RATE, epochs=9, layers="heads")
    model.train(train_set, val_set, learning_rate=config.LEARNING_RATE, epochs=79, layers="all")

    model = MaskRCNN(mode="inference", config=inference_config, model_dir="logs")
    model.load_weights(model.find_last())
    results = model.detect([image])   # [{"rois", "class_ids", "scores", "masks"}]

The stages live in their own modules (see docs/ARCHITECTURE.md); this file only wires them
together, trains (a Keras ``train_step`` computing the five losses) and converts between
original images and the model's molded inputs.
"""
from __future__ import annotations

import datetime
import logging
import os
import re
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers as KL

from mrcnn import losses as L
from mrcnn import utils, weights
from mrcnn.anchors import get_anchors
from mrcnn.backbone import resnet_graph
from mrcnn.boxes import parse_image_meta_graph
from mrcnn.callbacks import (CSVLog, EpochCheckpoint, LearningRateLogger, LossPlot, NonFiniteLossError,
                             TensorBoard, TerminateOnNonFinite)
from mrcnn.config import ConfigError
from mrcnn.pipeline import build_dataset, compose_image_meta, mold_image
from mrcnn.detection import DetectionLayer
from mrcnn.fpn import fpn_graph
from mrcnn.heads import build_fpn_mask_graph, fpn_classifier_graph
from mrcnn.layers import ConstantAnchors, DetectionBoxes, DetectionCount, NormBoxes
from mrcnn.optimizers import decays_weights, learning_rate_value, load_optimizer_state
from mrcnn.proposals import ProposalLayer, proposal_steps
from mrcnn.rpn import build_rpn_model
from mrcnn.targets import DetectionTargetLayer, PositiveCount
from mrcnn.trainable import LAYER_REGEX, set_trainable

__all__ = ["MaskRCNN", "build_model", "MaskRCNNTrainer", "LOSS_NAMES"]

logger = logging.getLogger(__name__)

LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")
# Checkpoints: <model_dir>/<name><YYYYmmddTHHMM>/mask_rcnn_<name>_<epoch:04d>.weights.h5
# (Matterport's .h5 names are recognised too, for find_last and set_log_dir).
_CHECKPOINT_RE = re.compile(r".*[/\\][\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]mask\_rcnn\_[\w-]+(\d{4})\.(weights\.)?h5$")


############################################################
#  Graph
############################################################

@keras.saving.register_keras_serializable(package="mrcnn")
class ActiveClassIds(KL.Layer):
    """image_meta [B, 12 + NUM_CLASSES] -> active_class_ids float32 [B, NUM_CLASSES]."""

    def call(self, image_meta):
        return parse_image_meta_graph(image_meta)["active_class_ids"]


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
        anchors = ConstantAnchors(_normalized_anchors(config, config.IMAGE_SHAPE), name="anchors")(input_image)
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
        positive_count = PositiveCount(name="positive_count")(target_class_ids)
        mrcnn_mask = build_fpn_mask_graph(rois, mrcnn_feature_maps, input_image_meta, config.MASK_POOL_SIZE,
                                          config.NUM_CLASSES, train_bn=config.TRAIN_BN,
                                          conv_channels=config.MASK_HEAD_CHANNELS, scored_rois=positive_count)
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


def _normalized_anchors(config, image_shape):
    return get_anchors(tuple(int(v) for v in image_shape[:2]), config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                       config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE, normalized=True)


############################################################
#  Training step
############################################################

def compute_losses(outputs, inputs, batch_size):
    """The five losses (dict of float32 scalars) from training-model outputs and its inputs."""
    return {
        "rpn_class_loss": L.rpn_class_loss(inputs["input_rpn_match"], outputs["rpn_class_logits"]),
        "rpn_bbox_loss": L.rpn_bbox_loss(inputs["input_rpn_bbox"], inputs["input_rpn_match"], outputs["rpn_bbox"],
                                         batch_size),
        "mrcnn_class_loss": L.mrcnn_class_loss(outputs["target_class_ids"], outputs["mrcnn_class_logits"],
                                               outputs["active_class_ids"]),
        "mrcnn_bbox_loss": L.mrcnn_bbox_loss(outputs["target_bbox"], outputs["target_class_ids"],
                                             outputs["mrcnn_bbox"]),
        "mrcnn_mask_loss": L.mrcnn_mask_loss(outputs["target_mask"], outputs["target_class_ids"],
                                             outputs["mrcnn_mask"]),
    }


def decayed_weights(model):
    """The kernels L2 weight decay applies to: convolution and dense kernels, not biases or BatchNorm."""
    return [w for w in model.trainable_weights if w.path.endswith("kernel")]


class MaskRCNNTrainer(keras.Model):
    """Trains a training-mode functional model: forward pass, five weighted losses, L2 decay.

    ``fit`` / ``evaluate`` take the dicts of :func:`mrcnn.pipeline.build_dataset` (no labels: the
    targets are inputs); ``train_on_batch`` / ``test_on_batch`` take one such dict. Reported
    metrics: each loss, ``l2_loss`` and ``loss`` (the total that is minimised).

    weight_decay: the L2 term's factor; 0 when the optimiser decays weights itself (AdamW).

    Gradients are clipped to the optimiser's ``global_clipnorm``. With one replica the optimiser
    does it. Under a tf.distribute strategy with several replicas Keras would clip each replica's
    share before summing them (tensorflow#33929), a different and replica-count dependent step, so
    ``compile`` moves the norm to the trainer, which clips the summed gradient (one extra
    all-reduce per step) exactly as a single device would.
    """

    def __init__(self, net, loss_weights, weight_decay, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.loss_weights = {name: float(loss_weights[name]) for name in LOSS_NAMES}
        self.weight_decay = float(weight_decay)
        self.batch_size = int(batch_size)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES + ("l2_loss", "loss")}
        self.clip_norm = None

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, optimizer="sgd", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        self.clip_norm = None
        if self.distribute_strategy.num_replicas_in_sync > 1 and inner.global_clipnorm:
            self.clip_norm = float(inner.global_clipnorm)
            inner.global_clipnorm = None

    def call(self, inputs, training=False):
        return self.net(inputs, training=training)

    def _loss_values(self, data, training):
        outputs = self.net(data, training=training)
        values = compute_losses(outputs, data, self.batch_size)
        total = tf.add_n([self.loss_weights[name] * values[name] for name in LOSS_NAMES])
        kernels = decayed_weights(self.net)
        l2 = self.weight_decay * tf.add_n([tf.reduce_sum(tf.square(tf.cast(w, tf.float32))) for w in kernels]) \
            if kernels and self.weight_decay > 0 else tf.constant(0.0)
        values["l2_loss"] = l2
        values["loss"] = total + l2
        return values

    def _record(self, values):
        for name, tracker in self.trackers.items():
            tracker.update_state(values[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        # fit passes the dict itself, train_on_batch an (x, y, sample_weight) tuple.
        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.net.trainable_variables
        with tf.GradientTape() as tape:
            values = self._loss_values(data, training=True)
            # Gradients of replicas are summed across devices: scale so the step is the mean.
            scaled = values["loss"] / tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(scaled)
        gradients = tape.gradient(scaled, variables)
        if self.clip_norm:
            gradients = self._clip_summed_gradients(gradients)
        self.optimizer.apply(gradients, variables)
        return self._record(values)

    def _clip_summed_gradients(self, gradients):
        """This replica's gradients scaled so that their sum over replicas has norm <= clip_norm.

        A NaN or Inf norm makes every gradient NaN, as ``clip_by_global_norm`` does, so that the
        step is visibly bad (and a LossScaleOptimizer skips it).
        """
        present = [g for g in gradients if g is not None]
        total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, present)
        norm = tf.linalg.global_norm(total)
        # A LossScaleOptimizer's gradients are of the scaled loss: clip at the scaled norm.
        scale = getattr(self.optimizer, "dynamic_scale", None)
        limit = self.clip_norm * (tf.cast(scale, norm.dtype) if scale is not None else 1.0)
        factor = limit / tf.maximum(norm, limit) + (norm - norm)
        return [None if g is None else g * tf.cast(factor, g.dtype) for g in gradients]

    def test_step(self, data):
        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._record(self._loss_values(data, training=False))

    def build_optimizer(self):
        """Create the optimiser's variables for the net's trainable variables (once; in the
        strategy's scope), e.g. before restoring a saved optimiser state into them."""
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.net.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a strategy Keras's TF trainer averages a real batch across replicas to learn the
        # input shapes (AddN fails on the bool input_gt_masks), then builds the model and the
        # optimiser. The functional net is built when it is created: only the optimiser is left.
        self.build_optimizer()


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
        """Start a new run folder, or continue the run (and epoch) of ``model_path``'s checkpoint."""
        self.epoch = 0
        now = datetime.datetime.now()
        if model_path:
            match = _CHECKPOINT_RE.match(str(Path(model_path).resolve()))
            if match:
                now = datetime.datetime(*map(int, match.groups()[:5]))
                # The file holds the weights after epoch N, so training continues with N + 1
                # (Keras counts from 0, checkpoint names from 1).
                self.epoch = int(match.group(6))
        name = (self.config.NAME or "").lower()
        self.log_dir = os.path.join(self.model_dir, f"{name}{now:%Y%m%dT%H%M}")
        self.checkpoint_path = os.path.join(self.log_dir, f"mask_rcnn_{name}_*epoch*.weights.h5").replace(
            "*epoch*", "{epoch:04d}")

    # ------------------------------------------------------------------------- training

    def compile_trainer(self, optimizer=None, learning_rate=None, jit_compile=False):
        """A :class:`MaskRCNNTrainer` around ``keras_model``, compiled (SGD + momentum by default).

        The trainer is created in the scope of the tf.distribute strategy the model was built
        under (``keras_model.distribute_strategy``): build the model inside ``strategy.scope()``
        and create ``optimizer`` there too. When the optimiser decays weights itself (AdamW) the
        L2 term is left out of the loss.
        """
        if self.mode != "training":
            raise RuntimeError("Create model in training mode to train it")
        config = self.config
        with self.keras_model.distribute_strategy.scope():
            if optimizer is None:
                optimizer = keras.optimizers.SGD(
                    learning_rate=config.LEARNING_RATE if learning_rate is None else learning_rate,
                    momentum=config.LEARNING_MOMENTUM, global_clipnorm=config.GRADIENT_CLIP_NORM)
            weight_decay = 0.0 if decays_weights(optimizer) else config.WEIGHT_DECAY
            trainer = MaskRCNNTrainer(self.keras_model, config.LOSS_WEIGHTS, weight_decay, config.IMAGES_PER_GPU)
            trainer.compile(optimizer=optimizer, jit_compile=jit_compile)
        return trainer

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation=None,
              custom_callbacks=None, no_augmentation_sources=None, optimizer=None, seed=0, verbose=1,
              optimizer_state=None, keep_checkpoints=None, plot=False, jit_compile=False, stage=None,
              checkpoint_metadata=None, on_checkpoint=None):
        """Train ``layers`` until epoch ``epochs`` (counted across calls, as in Matterport).

        train_dataset, val_dataset: prepared :class:`mrcnn.dataset.Dataset` objects (val may be
            None), or ``tf.data.Dataset`` objects of input dicts in global batches of BATCH_SIZE.
        learning_rate: the rate of the default optimiser (SGD with LEARNING_MOMENTUM); ignored
            when ``optimizer`` is given.
        layers: "heads", "3+", "4+", "5+", "all" or a regular expression over layer names.
        augmentation: an albumentations transform, an imgaug augmenter (where importable) or a
            callable (see mrcnn.augment). ``no_augmentation_sources`` is not supported.
        custom_callbacks: Keras callbacks; they run before the checkpoint is written, so that
            what they change at the end of an epoch (a learning rate) is part of it.
        optimizer: a Keras optimizer (e.g. ``mrcnn.optimizers.make_optimizer``), created inside
            the strategy's scope when the model was built under one.
        optimizer_state: an optimiser state file written beside a checkpoint (``x.optimizer.hdf5``)
            to restore before the first step: momenta or accumulators, the iteration count (so
            the schedule's position) and the counters of callbacks such as ReduceLROnPlateau.
            Load the checkpoint's weights first (``load_weights``, which also sets the epoch).
        keep_checkpoints: keep the newest N checkpoints and the best by val_loss; None keeps all.
        plot: redraw ``<log_dir>/losses.png`` after every epoch.
        jit_compile: compile the training step with XLA.
        stage: label of this call in the CSV log (default ``layers``).
        checkpoint_metadata: a JSON-serialisable dict stored with every checkpoint's optimiser state.
        on_checkpoint: callable(epoch, path) called after each checkpoint is written; ``self.epoch``
            is that epoch by then, also when training is interrupted later.

        Writes into ``log_dir``: ``config.yaml``, a checkpoint per epoch (weights with the config
        and the training dataset's class names, and the optimiser state of the newest),
        ``checkpoints.json``, TensorBoard events, ``training_log.csv`` and optionally
        ``losses.png`` (see mrcnn.callbacks). Raises :class:`mrcnn.callbacks.NonFiniteLossError`
        when a loss becomes NaN or Inf; that epoch writes no checkpoint. Returns the Keras History.
        """
        if no_augmentation_sources:
            raise NotImplementedError("no_augmentation_sources is not supported; filter the dataset instead")
        config = self.config
        strategy = self.keras_model.distribute_strategy
        if config.GPU_COUNT != strategy.num_replicas_in_sync:
            raise ConfigError(f"GPU_COUNT = {config.GPU_COUNT} but the model was built under a strategy with "
                              f"{strategy.num_replicas_in_sync} replicas; set GPU_COUNT to the number of replicas "
                              "(the global batch is IMAGES_PER_GPU * GPU_COUNT)")
        if getattr(train_dataset, "class_names", None):
            self.class_names = list(train_dataset.class_names)
        set_trainable(self.keras_model, LAYER_REGEX.get(layers, layers), train_bn=config.TRAIN_BN,
                      verbose=max(0, verbose - 1))
        train_data = self._input_pipeline(train_dataset, strategy, augmentation, seed)
        val_data = self._input_pipeline(val_dataset, strategy, None, seed + 1)
        trainer = self.compile_trainer(optimizer=optimizer, learning_rate=learning_rate, jit_compile=jit_compile)
        trainer.build_optimizer()  # its variables exist before a saved state is restored into them

        os.makedirs(self.log_dir, exist_ok=True)
        config.to_yaml(os.path.join(self.log_dir, "config.yaml"))
        csv_path = os.path.join(self.log_dir, "training_log.csv")
        inner = getattr(trainer.optimizer, "inner_optimizer", trainer.optimizer)
        guard = TerminateOnNonFinite()
        callbacks = [
            LearningRateLogger(),
            guard,
            TensorBoard(log_dir=self.log_dir, histogram_freq=0, write_graph=False),
            CSVLog(csv_path, extra={"stage": stage or layers, "optimizer": type(inner).__name__.lower()}),
        ]
        if plot:
            callbacks.append(LossPlot(csv_path, os.path.join(self.log_dir, "losses.png"),
                                      title=f"{config.NAME}: training losses"))
        callbacks += list(custom_callbacks or [])
        stateful = [cb for cb in callbacks if hasattr(cb, "get_state") and hasattr(cb, "set_state")]
        checkpoint = _CheckpointCallback(self, keep=keep_checkpoints, metadata=checkpoint_metadata,
                                         state_callbacks=stateful, on_saved=on_checkpoint)
        callbacks.append(checkpoint)
        if optimizer_state:
            self._restore_optimizer_state(trainer, optimizer_state, stateful)

        if verbose:
            logger.info("Starting at epoch %d. LR=%s. Checkpoint path: %s", self.epoch,
                        learning_rate_value(trainer.optimizer), self.checkpoint_path)
        # shuffle=False: build_dataset shuffles; for a tf.data input Keras would only warn.
        history = trainer.fit(
            train_data, initial_epoch=self.epoch, epochs=epochs, steps_per_epoch=config.STEPS_PER_EPOCH,
            validation_data=val_data, validation_steps=config.VALIDATION_STEPS if val_data is not None else None,
            callbacks=callbacks, shuffle=False, verbose=verbose)
        if checkpoint.last_epoch is not None:
            self.epoch = checkpoint.last_epoch
        if guard.failure:
            newest = checkpoint.last_path or checkpoint.newest_path()
            raise NonFiniteLossError(f"{guard.failure}; training stopped, the last good checkpoint is "
                                     f"{newest or 'none (no epoch was completed)'}")
        return history

    def _input_pipeline(self, dataset, strategy, augmentation, seed):
        """What ``fit`` takes for ``dataset``: a tf.data pipeline in global batches, or one pipeline
        per worker under MultiWorkerMirroredStrategy (each worker draws its own seeded stream
        instead of computing every sample and keeping a share of them)."""
        if dataset is None or isinstance(dataset, tf.data.Dataset):
            return dataset
        config = self.config
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            def per_worker(context):
                return build_dataset(dataset, config, shuffle=True, augmentation=augmentation,
                                     seed=seed + 7919 * context.input_pipeline_id,
                                     batch_size=context.get_per_replica_batch_size(config.BATCH_SIZE))
            return strategy.distribute_datasets_from_function(per_worker)
        return build_dataset(dataset, config, shuffle=True, augmentation=augmentation, seed=seed)

    def _restore_optimizer_state(self, trainer, path, stateful_callbacks):
        info = load_optimizer_state(trainer.optimizer, path, trainer.net.trainable_variables)
        states = info.get("metadata", {}).get("callbacks", {})
        for callback in stateful_callbacks:
            if type(callback).__name__ in states:
                callback.set_state(states[type(callback).__name__])
        logger.info("Restored the optimizer state of %s (optimizer step %d)", path, info["iterations"])
        return info

    # ------------------------------------------------------------------------ inference

    def mold_inputs(self, images):
        """Resize and normalise images for the model.

        images: list of [H, W, C] arrays, any sizes.
        Returns: molded_images float32 [N, h, w, C], image_metas [N, META], windows int [N, 4]
        (the part of each molded image holding the original, in its pixels).
        """
        config = self.config
        molded_images, image_metas, windows = [], [], []
        for image in images:
            molded, window, scale, _, _ = utils.resize_image(
                image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
                max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
            molded = mold_image(molded, config)
            meta = compose_image_meta(0, image.shape, molded.shape, window, scale,
                                      np.zeros([config.NUM_CLASSES], dtype=np.int32))
            molded_images.append(molded)
            image_metas.append(meta)
            windows.append(window)
        return np.stack(molded_images).astype(np.float32), np.stack(image_metas), np.stack(windows)

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window):
        """One image's detections in the coordinates of its original image.

        detections: [N, (y1, x1, y2, x2, class_id, score)] normalised, zero-padded.
        mrcnn_mask: [N, height, width, num_classes] mask probabilities.
        original_image_shape, image_shape: [H, W, C] before and after resizing.
        window: [4] pixels of the molded image that hold the original image.

        Returns: boxes int32 [n, 4] (pixels of the original image), class_ids int32 [n],
        scores float32 [n], masks bool [H, W, n].
        """
        count = int(np.count_nonzero(detections[:, 4] > 0))
        boxes = detections[:count, :4]
        class_ids = detections[:count, 4].astype(np.int32)
        scores = detections[:count, 5].astype(np.float32)
        masks = mrcnn_mask[np.arange(count), :, :, class_ids]

        # Boxes are normalised to the molded image; shift and scale them to the window, then
        # to the original image's pixels.
        wy1, wx1, wy2, wx2 = utils.norm_boxes(np.asarray(window), image_shape[:2])
        shift = np.array([wy1, wx1, wy1, wx1])
        scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
        boxes = utils.denorm_boxes((boxes - shift) / scale, original_image_shape[:2])

        keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
        boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
        height, width = original_image_shape[:2]
        full_masks = np.zeros((height, width, len(boxes)), dtype=bool)
        for i in range(len(boxes)):
            full_masks[:, :, i] = utils.unmold_mask(masks[i], boxes[i], original_image_shape)
        return boxes.astype(np.int32), class_ids, scores, full_masks

    def get_anchors(self, image_shape):
        """Normalised anchors [A, 4] for a molded image of ``image_shape``."""
        return _normalized_anchors(self.config, image_shape)

    def _predict(self, molded_images, image_metas):
        if self.mode != "inference":
            raise RuntimeError("Create model in inference mode to detect")
        anchors = self.get_anchors(molded_images.shape[1:3])
        anchors = np.broadcast_to(anchors, (len(molded_images),) + anchors.shape)
        if self._predict_fn is None:
            model = self.keras_model
            # reduce_retracing: one graph for each input size, not one per call.
            self._predict_fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        outputs = self._predict_fn([tf.constant(molded_images), tf.constant(image_metas, tf.float32),
                                    tf.constant(anchors)])
        return {name: value.numpy() for name, value in outputs.items()}

    def detect(self, images, verbose=0):
        """Detect instances in images of any size.

        images: list of [H, W, C] arrays (any number; Matterport required exactly BATCH_SIZE).
            All must resize to the same shape (always true in "square" mode).
        Returns: one dict per image: rois int32 [N, (y1, x1, y2, x2)], class_ids int32 [N],
        scores float32 [N], masks bool [H, W, N], in the original image's pixels.
        """
        images = [np.asarray(image) for image in images]
        if verbose:
            logger.info("Processing %d images", len(images))
        molded_images, image_metas, windows = self.mold_inputs(images)
        return self.detect_molded(molded_images, image_metas, verbose=verbose, original_images=images,
                                  windows=windows)

    def detect_molded(self, molded_images, image_metas, verbose=0, original_images=None, windows=None):
        """Detect on images already molded by :meth:`mold_inputs` (Matterport's debugging entry).

        Results are in the coordinates of the original images described by ``image_metas``.
        """
        outputs = self._predict(np.asarray(molded_images, np.float32), np.asarray(image_metas))
        results = []
        for i, meta in enumerate(np.asarray(image_metas)):
            original_shape = meta[1:4].astype(int)
            image_shape = meta[4:7].astype(int)
            window = meta[7:11].astype(int) if windows is None else windows[i]
            rois, class_ids, scores, masks = self.unmold_detections(
                outputs["detections"][i], outputs["mrcnn_mask"][i], original_shape, image_shape, window)
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks})
        return results

    # ------------------------------------------------------------------------ inspection

    def run_graph(self, images, outputs=None):
        """Every intermediate stage for ``images`` (inference mode), as numpy arrays by name.

        outputs: None for the standard set below, or a list of (name, layer name) pairs whose
        layer outputs to return as well (Matterport's run_graph, e.g. ("res4w_out", "res4w_out")).

        Standard set: molded_images, image_metas, anchors; rpn_class, rpn_bbox (RPN scores and
        deltas of every anchor); pre_nms_scores, pre_nms_indices, pre_nms_anchors (top
        PRE_NMS_LIMIT anchors), refined_anchors, refined_anchors_clipped, post_nms_rois (the
        proposals, POST_NMS_ROIS_INFERENCE), mrcnn_class, mrcnn_bbox (classifier outputs),
        detections, mrcnn_mask.
        """
        config = self.config
        molded_images, image_metas, _ = self.mold_inputs([np.asarray(image) for image in images])
        result = {"molded_images": molded_images, "image_metas": image_metas,
                  "anchors": self.get_anchors(molded_images.shape[1:3])}
        result.update(self._predict(molded_images, image_metas))
        steps = proposal_steps(result["rpn_class"], result["rpn_bbox"], result["anchors"],
                               config.POST_NMS_ROIS_INFERENCE, config.RPN_NMS_THRESHOLD, config.PRE_NMS_LIMIT,
                               config.RPN_BBOX_STD_DEV)
        result.update({name: value.numpy() for name, value in steps.items()})
        if outputs:
            model = self.keras_model
            probe = keras.Model(model.inputs, [model.get_layer(layer).output for _, layer in outputs])
            anchors = np.broadcast_to(result["anchors"], (len(molded_images),) + result["anchors"].shape)
            values = probe([molded_images, image_metas.astype(np.float32), anchors], training=False)
            values = values if isinstance(values, (list, tuple)) else [values]
            result.update({name: np.asarray(value) for (name, _), value in zip(outputs, values)})
        return result


class _CheckpointCallback(EpochCheckpoint):
    """:class:`mrcnn.callbacks.EpochCheckpoint` of a MaskRCNN: its ``checkpoint_path`` (Matterport's
    names, which find_last and set_log_dir read) and the functional model's weights."""

    def __init__(self, maskrcnn, on_saved=None, **kwargs):
        super().__init__(maskrcnn.checkpoint_path, save_weights=maskrcnn.save_weights, **kwargs)
        self.maskrcnn = maskrcnn
        self.on_saved = on_saved

    def on_epoch_end(self, epoch, logs=None):
        before = self.last_epoch
        super().on_epoch_end(epoch, logs)
        if self.last_epoch is not None and self.last_epoch != before:
            # The model's epoch follows the checkpoints, so that an interrupted train() leaves it
            # at the last epoch saved.
            self.maskrcnn.epoch = self.last_epoch
            if self.on_saved is not None:
                self.on_saved(self.last_epoch, self.last_path)
