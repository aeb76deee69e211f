"""Training a MaskRCNN: the Keras trainer (forward pass, the five losses, L2 decay) and the loop.

    trainer = compile_trainer(maskrcnn)      # MaskRCNN.compile_trainer()
    history = train(maskrcnn, train_set, val_set, learning_rate, epochs=9, layers="heads")   # MaskRCNN.train

:class:`MaskRCNNTrainer` wraps the training-mode functional model of :func:`mrcnn.model.build_model`
in a ``train_step`` computing :func:`compute_losses` (weighted by LOSS_WEIGHTS) plus the L2
decay of :func:`decayed_weights`. :func:`train` sets the trainable layers, builds the input
pipeline (:func:`mrcnn.pipeline.build_dataset`), compiles the trainer and fits it with the
callbacks of :mod:`mrcnn.callbacks`, writing a checkpoint per epoch into the MaskRCNN's
``log_dir``. The functions take the :class:`mrcnn.model.MaskRCNN` object (its ``config``,
``keras_model``, ``epoch`` and run folder), whose ``train`` and ``compile_trainer`` call them.
"""
from __future__ import annotations

import logging
import os

import keras
import tensorflow as tf

from mrcnn import losses as L
from mrcnn.callbacks import (CSVLog, EpochCheckpoint, LearningRateLogger, LossPlot, NonFiniteLossError,
                             TensorBoard, TerminateOnNonFinite)
from mrcnn.config import LOSS_NAMES, ConfigError
from mrcnn.optimizers import decays_weights, learning_rate_value, load_optimizer_state, make_optimizer
from mrcnn.pipeline import build_dataset
from mrcnn.trainable import LAYER_REGEX, set_trainable

__all__ = ["MaskRCNNTrainer", "compute_losses", "decayed_weights", "compile_trainer", "train"]

logger = logging.getLogger(__name__)


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

    The trainer takes the net's dtype policy (unless given ``dtype``), whatever the global
    policy is when it is created: under ``mixed_float16`` ``compile`` then wraps the optimiser
    in a LossScaleOptimizer (float16 gradients underflow without it); ``mixed_bfloat16`` has
    float32's exponent range and trains with the optimiser as it is.
    """

    def __init__(self, net, loss_weights, weight_decay, batch_size, **kwargs):
        kwargs.setdefault("dtype", net.dtype_policy)
        # The net casts what it computes on itself; the targets (boxes, deltas) must reach it in float32.
        kwargs.setdefault("autocast", False)
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
#  Training loop
############################################################

def compile_trainer(maskrcnn, optimizer=None, learning_rate=None, jit_compile=False):
    """A :class:`MaskRCNNTrainer` around ``maskrcnn.keras_model``, compiled with ``optimizer``, by
    default the config's OPTIMIZER (SGD with momentum unless it says otherwise) at ``learning_rate``
    (default LEARNING_RATE).

    The trainer is created in the scope of the tf.distribute strategy the model was built
    under (``keras_model.distribute_strategy``): build the model inside ``strategy.scope()``
    and create ``optimizer`` there too. When the optimiser decays weights itself (AdamW) the
    L2 term is left out of the loss.
    """
    if maskrcnn.mode != "training":
        raise RuntimeError("Create model in training mode to train it")
    config = maskrcnn.config
    with maskrcnn.keras_model.distribute_strategy.scope():
        if optimizer is None:
            rate = config.LEARNING_RATE if learning_rate is None else learning_rate
            optimizer = make_optimizer(config.OPTIMIZER, rate, config)
        weight_decay = 0.0 if decays_weights(optimizer) else config.WEIGHT_DECAY
        trainer = MaskRCNNTrainer(maskrcnn.keras_model, config.LOSS_WEIGHTS, weight_decay, config.IMAGES_PER_GPU)
        trainer.compile(optimizer=optimizer, jit_compile=jit_compile)
    return trainer


def train(maskrcnn, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation=None,
          custom_callbacks=None, no_augmentation_sources=None, optimizer=None, seed=0, verbose=1,
          optimizer_state=None, keep_checkpoints=None, plot=False, jit_compile=False, stage=None,
          checkpoint_metadata=None, on_checkpoint=None):
    """Train ``layers`` until epoch ``epochs`` (counted across calls, as in Matterport).

    maskrcnn: a training-mode :class:`mrcnn.model.MaskRCNN`.
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
        the strategy's scope when the model was built under one; default the config's OPTIMIZER
        at ``learning_rate``.
    optimizer_state: an optimiser state file written beside a checkpoint (``x.optimizer.hdf5``)
        to restore before the first step: momenta or accumulators, the iteration count (so
        the schedule's position) and the counters of callbacks such as ReduceLROnPlateau.
        Load the checkpoint's weights first (``load_weights``, which also sets the epoch).
    keep_checkpoints: keep the newest N checkpoints and the best by val_loss; None keeps all.
    plot: redraw ``<log_dir>/losses.png`` after every epoch.
    jit_compile: compile the training step with XLA.
    stage: label of this call in the CSV log (default ``layers``).
    checkpoint_metadata: a JSON-serialisable dict stored with every checkpoint's optimiser state.
    on_checkpoint: callable(epoch, path) called after each checkpoint is written; ``maskrcnn.epoch``
        is that epoch by then, also when training is interrupted later.

    Writes into ``maskrcnn.log_dir``: ``config.yaml``, a checkpoint per epoch (weights with the config
    and the training dataset's class names, and the optimiser state of the newest),
    ``checkpoints.json``, TensorBoard events, ``training_log.csv`` and optionally
    ``losses.png`` (see mrcnn.callbacks). Raises :class:`mrcnn.callbacks.NonFiniteLossError`
    when a loss becomes NaN or Inf; that epoch writes no checkpoint. Returns the Keras History.
    """
    if no_augmentation_sources:
        raise NotImplementedError("no_augmentation_sources is not supported; filter the dataset instead")
    config = maskrcnn.config
    strategy = maskrcnn.keras_model.distribute_strategy
    if config.GPU_COUNT != strategy.num_replicas_in_sync:
        raise ConfigError(f"GPU_COUNT = {config.GPU_COUNT} but the model was built under a strategy with "
                          f"{strategy.num_replicas_in_sync} replicas; set GPU_COUNT to the number of replicas "
                          "(the global batch is IMAGES_PER_GPU * GPU_COUNT)")
    if getattr(train_dataset, "class_names", None):
        maskrcnn.class_names = list(train_dataset.class_names)
    set_trainable(maskrcnn.keras_model, LAYER_REGEX.get(layers, layers), train_bn=config.TRAIN_BN,
                  verbose=max(0, verbose - 1))
    train_data = _input_pipeline(train_dataset, config, strategy, augmentation, seed)
    val_data = _input_pipeline(val_dataset, config, strategy, None, seed + 1)
    trainer = compile_trainer(maskrcnn, optimizer=optimizer, learning_rate=learning_rate, jit_compile=jit_compile)
    trainer.build_optimizer()  # its variables exist before a saved state is restored into them

    os.makedirs(maskrcnn.log_dir, exist_ok=True)
    config.to_yaml(os.path.join(maskrcnn.log_dir, "config.yaml"))
    csv_path = os.path.join(maskrcnn.log_dir, "training_log.csv")
    inner = getattr(trainer.optimizer, "inner_optimizer", trainer.optimizer)
    guard = TerminateOnNonFinite()
    callbacks = [
        LearningRateLogger(),
        guard,
        TensorBoard(log_dir=maskrcnn.log_dir, histogram_freq=0, write_graph=False),
        CSVLog(csv_path, extra={"stage": stage or layers, "optimizer": type(inner).__name__.lower()}),
    ]
    if plot:
        callbacks.append(LossPlot(csv_path, os.path.join(maskrcnn.log_dir, "losses.png"),
                                  title=f"{config.NAME}: training losses"))
    callbacks += list(custom_callbacks or [])
    stateful = [cb for cb in callbacks if hasattr(cb, "get_state") and hasattr(cb, "set_state")]
    checkpoint = _CheckpointCallback(maskrcnn, keep=keep_checkpoints, metadata=checkpoint_metadata,
                                     state_callbacks=stateful, on_saved=on_checkpoint)
    callbacks.append(checkpoint)
    if optimizer_state:
        _restore_optimizer_state(trainer, optimizer_state, stateful)

    if verbose:
        logger.info("Starting at epoch %d. LR=%s. Checkpoint path: %s", maskrcnn.epoch,
                    learning_rate_value(trainer.optimizer), maskrcnn.checkpoint_path)
    # shuffle=False: build_dataset shuffles; for a tf.data input Keras would only warn.
    history = trainer.fit(
        train_data, initial_epoch=maskrcnn.epoch, epochs=epochs, steps_per_epoch=config.STEPS_PER_EPOCH,
        validation_data=val_data, validation_steps=config.VALIDATION_STEPS if val_data is not None else None,
        callbacks=callbacks, shuffle=False, verbose=verbose)
    if checkpoint.last_epoch is not None:
        maskrcnn.epoch = checkpoint.last_epoch
    if guard.failure:
        newest = checkpoint.last_path or checkpoint.newest_path()
        raise NonFiniteLossError(f"{guard.failure}; training stopped, the last good checkpoint is "
                                 f"{newest or 'none (no epoch was completed)'}")
    return history


def _input_pipeline(dataset, config, strategy, augmentation, seed):
    """What ``fit`` takes for ``dataset``: a tf.data pipeline in global batches, or one pipeline
    per worker under MultiWorkerMirroredStrategy (each worker draws its own seeded stream
    instead of computing every sample and keeping a share of them)."""
    if dataset is None or isinstance(dataset, tf.data.Dataset):
        return dataset
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        def per_worker(context):
            return build_dataset(dataset, config, shuffle=True, augmentation=augmentation,
                                 seed=seed + 7919 * context.input_pipeline_id,
                                 batch_size=context.get_per_replica_batch_size(config.BATCH_SIZE))
        return strategy.distribute_datasets_from_function(per_worker)
    return build_dataset(dataset, config, shuffle=True, augmentation=augmentation, seed=seed)


def _restore_optimizer_state(trainer, path, stateful_callbacks):
    """Load the optimiser state file ``path`` into ``trainer``'s optimiser and the saved counters
    into the callbacks of ``stateful_callbacks``; returns the file's info."""
    info = load_optimizer_state(trainer.optimizer, path, trainer.net.trainable_variables)
    states = info.get("metadata", {}).get("callbacks", {})
    for callback in stateful_callbacks:
        if type(callback).__name__ in states:
            callback.set_state(states[type(callback).__name__])
    logger.info("Restored the optimizer state of %s (optimizer step %d)", path, info["iterations"])
    return info


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
