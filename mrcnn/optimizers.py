"""Optimisers, learning-rate schedules and optimiser checkpoints for training Mask R-CNN.

    optimizer = make_optimizer("sgd", 0.001, config, schedule="cosine", warmup_steps=500,
                               total_steps=70 * config.STEPS_PER_EPOCH)
    model.train(train_set, val_set, 0.001, epochs=79, layers="all", optimizer=optimizer)

    save_optimizer_state(optimizer, "run/mask_rcnn_leaf_0010.optimizer.hdf5", trainable_variables)
    load_optimizer_state(optimizer, "run/mask_rcnn_leaf_0010.optimizer.hdf5", trainable_variables)

Optimisers: ``sgd`` (momentum LEARNING_MOMENTUM, Matterport's), ``adagrad``, ``adam`` and
``adamw``; every one clips gradients to the global norm GRADIENT_CLIP_NORM. AdamW decays the
kernels itself (decoupled, ``lr * WEIGHT_DECAY * w`` per step, biases and BatchNorm excluded),
so the trainer leaves the L2 term out of its loss for it (see ``MaskRCNN.compile_trainer``);
values around 0.01-0.1 are usual there, while Matterport's 1e-4 is tuned for the L2 term.

Schedules (a function of the optimiser's iteration count, so a restored optimiser resumes its
schedule exactly): ``constant``; ``step`` (multiplied by ``decay_factor`` at each boundary
step); ``cosine`` (from the rate down to ``final_fraction`` of it over ``total_steps``);
``plateau`` (a rate held in a variable that :class:`mrcnn.callbacks.ReduceLROnPlateau` lowers
when the monitored loss stops improving). Any of them can start with a linear warmup over
``warmup_steps``, from ``warmup_start`` times the scheduled rate up to it.

Optimiser state (``save_optimizer_state``): the optimiser's own variables (iteration count,
momenta or accumulators, learning-rate variable) through Keras's ``save_own_variables``, the
variables of the schedule (the plateau rate), the paths of the trainable variables they belong
to and free-form metadata, in one HDF5 file written atomically. Beside a checkpoint it is named
``*.optimizer.hdf5`` (:func:`optimizer_state_path`): not ``.h5``, so that whatever lists a run
folder's ``*.h5`` files finds the weights only. Loading checks that the file
was written by the same kind of optimiser for the same trainable variables before assigning
anything.
"""
from __future__ import annotations

import json
import math
import re

import h5py
import keras
import numpy as np
from keras import ops

from mrcnn.fileio import atomic_path

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "OptimizerStateError",
    "StepDecay",
    "PlateauRate",
    "LinearWarmup",
    "make_schedule",
    "make_optimizer",
    "decays_weights",
    "learning_rate_value",
    "plateau_variable",
    "schedule_variables",
    "optimizer_state_path",
    "save_optimizer_state",
    "load_optimizer_state",
    "read_optimizer_state",
]

OPTIMIZERS = ("sgd", "adagrad", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "plateau")
# The warmup starts at this fraction of the scheduled rate (detectron2's WARMUP_FACTOR).
WARMUP_START = 0.001
# Variables that AdamW's decoupled weight decay leaves alone (as the L2 term does: kernels only).
_NO_DECAY = ["bias", "gamma", "beta"]


class OptimizerStateError(ValueError):
    """An optimiser state file that cannot be restored into this optimiser; names the file."""


############################################################
#  Schedules
############################################################

@keras.saving.register_keras_serializable(package="mrcnn")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``initial_learning_rate * decay_factor ** (number of boundaries <= step)``.

    boundaries: optimiser steps at which the rate drops, e.g. the first step of an epoch
        (``epoch * steps_per_epoch``): from that step on the lower rate is used.
    """

    def __init__(self, initial_learning_rate, boundaries, decay_factor=0.1, name="StepDecay"):
        super().__init__()
        self.initial_learning_rate = float(initial_learning_rate)
        self.boundaries = sorted(int(b) for b in boundaries)
        self.decay_factor = float(decay_factor)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        if not self.boundaries:
            return ops.cast(self.initial_learning_rate, "float32") + 0.0 * step
        passed = ops.sum(ops.cast(ops.greater_equal(step, ops.array(self.boundaries, "float32")), "float32"))
        return self.initial_learning_rate * ops.power(ops.cast(self.decay_factor, "float32"), passed)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "boundaries": self.boundaries,
                "decay_factor": self.decay_factor, "name": self.name}


@keras.saving.register_keras_serializable(package="mrcnn")
class PlateauRate(keras.optimizers.schedules.LearningRateSchedule):
    """A constant rate held in a variable, which :class:`mrcnn.callbacks.ReduceLROnPlateau` lowers.

    Create it inside the ``strategy.scope()`` that the optimiser is created in. The variable is
    saved with the optimiser state (:func:`schedule_variables`).
    """

    def __init__(self, initial_learning_rate, name="PlateauRate"):
        super().__init__()
        self.name = name
        self.rate = keras.Variable(float(initial_learning_rate), dtype="float32", trainable=False,
                                   name="plateau_learning_rate")

    def __call__(self, step):
        return ops.convert_to_tensor(self.rate) + 0.0 * ops.cast(step, "float32")

    @property
    def variables(self):
        return [self.rate]

    def get_config(self):
        return {"initial_learning_rate": float(ops.convert_to_numpy(self.rate)), "name": self.name}


@keras.saving.register_keras_serializable(package="mrcnn")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule with a linear warmup: ``schedule(step) * factor(step)``.

    factor rises linearly from ``start_factor`` at step 0 to 1 at ``warmup_steps`` and stays 1.
    The wrapped schedule runs on the same step count (it is not delayed by the warmup).
    schedule: a LearningRateSchedule or a constant rate (float).
    """

    def __init__(self, schedule, warmup_steps, start_factor=WARMUP_START, name="LinearWarmup"):
        super().__init__()
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.start_factor = float(start_factor)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rate = self.schedule(step) if callable(self.schedule) else ops.cast(self.schedule, "float32")
        if self.warmup_steps <= 0:
            return rate
        progress = ops.minimum(step / float(self.warmup_steps), 1.0)
        return rate * (self.start_factor + (1.0 - self.start_factor) * progress)

    @property
    def variables(self):
        return list(getattr(self.schedule, "variables", []))

    def get_config(self):
        schedule = (keras.optimizers.schedules.serialize(self.schedule)
                    if isinstance(self.schedule, keras.optimizers.schedules.LearningRateSchedule)
                    else float(self.schedule))
        return {"schedule": schedule, "warmup_steps": self.warmup_steps, "start_factor": self.start_factor,
                "name": self.name}


def make_schedule(schedule, learning_rate, total_steps=None, warmup_steps=0, boundaries=None, decay_factor=0.1,
                  final_fraction=0.0, warmup_start=WARMUP_START):
    """The learning rate to give a Keras optimiser: a float (``constant`` without warmup) or a schedule.

    schedule: one of :data:`SCHEDULES`.
    learning_rate: the base rate (float > 0).
    total_steps: optimiser steps the schedule spans (``cosine`` decays over them; needed for it).
    warmup_steps: steps of linear warmup (0: none).
    boundaries: ``step`` schedule: the steps at which the rate is multiplied by ``decay_factor``.
    final_fraction: ``cosine``: the rate at ``total_steps`` as a fraction of ``learning_rate``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    learning_rate = float(learning_rate)
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise ValueError(f"learning rate must be a positive number, got {learning_rate!r}")
    if int(warmup_steps) < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if schedule == "constant":
        rate = learning_rate
    elif schedule == "step":
        rate = StepDecay(learning_rate, boundaries or [], decay_factor)
    elif schedule == "cosine":
        if not total_steps or int(total_steps) < 1:
            raise ValueError(f"the cosine schedule needs total_steps >= 1, got {total_steps!r}")
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, int(total_steps), alpha=float(final_fraction))
    else:
        rate = PlateauRate(learning_rate)
    if int(warmup_steps) > 0:
        rate = LinearWarmup(rate, int(warmup_steps), warmup_start)
    return rate


############################################################
#  Optimisers
############################################################

def make_optimizer(name, learning_rate, config, schedule="constant", warmup_steps=0, total_steps=None,
                   boundaries=None, decay_factor=0.1, final_fraction=0.0, warmup_start=WARMUP_START):
    """A Keras optimiser for Mask R-CNN training; create it inside the strategy's scope.

    name: one of :data:`OPTIMIZERS` ("sgd", "adagrad", "adam", "adamw").
    learning_rate: the base rate. config: a :class:`mrcnn.config.Config` (LEARNING_MOMENTUM for
        SGD, GRADIENT_CLIP_NORM for all, WEIGHT_DECAY for AdamW's decoupled decay).
    schedule, warmup_steps, total_steps, boundaries, decay_factor, final_fraction, warmup_start:
        see :func:`make_schedule`.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    rate = make_schedule(schedule, learning_rate, total_steps=total_steps, warmup_steps=warmup_steps,
                         boundaries=boundaries, decay_factor=decay_factor, final_fraction=final_fraction,
                         warmup_start=warmup_start)
    clip = config.GRADIENT_CLIP_NORM
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=config.LEARNING_MOMENTUM, global_clipnorm=clip)
    if name == "adagrad":
        return keras.optimizers.Adagrad(learning_rate=rate, global_clipnorm=clip)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=rate, global_clipnorm=clip)
    optimizer = keras.optimizers.AdamW(learning_rate=rate, weight_decay=config.WEIGHT_DECAY, global_clipnorm=clip)
    optimizer.exclude_from_weight_decay(var_names=_NO_DECAY)
    return optimizer


def _inner(optimizer):
    """The optimiser that does the work (a LossScaleOptimizer wraps one)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def decays_weights(optimizer):
    """True when the optimiser applies weight decay itself (AdamW, or any ``weight_decay=``)."""
    return bool(getattr(_inner(optimizer), "weight_decay", None))


def learning_rate_value(optimizer, step=None):
    """The learning rate (float) at ``step``, default the optimiser's next step."""
    inner = _inner(optimizer)
    rate = inner._learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        step = inner.iterations if step is None else step
        return float(ops.convert_to_numpy(rate(step)))
    return float(ops.convert_to_numpy(inner.learning_rate))


def _schedule(optimizer):
    rate = _inner(optimizer)._learning_rate
    return rate if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) else None


def schedule_variables(optimizer):
    """Variables of the optimiser's schedule (the plateau rate), which Keras does not save."""
    schedule = _schedule(optimizer)
    return list(getattr(schedule, "variables", [])) if schedule is not None else []


def plateau_variable(optimizer):
    """The variable a plateau callback lowers: the :class:`PlateauRate` (warmup or not), else the
    optimiser's own learning-rate variable (a constant rate); None when the rate is scheduled."""
    schedule = _schedule(optimizer)
    if schedule is None:
        rate = _inner(optimizer)._learning_rate
        return rate if isinstance(rate, keras.Variable) else None
    plateau = schedule.schedule if isinstance(schedule, LinearWarmup) else schedule
    return plateau.rate if isinstance(plateau, PlateauRate) else None


############################################################
#  Optimiser state files
############################################################

def optimizer_state_path(weights_path):
    """The optimiser state file that goes with a checkpoint: ``x.weights.h5`` -> ``x.optimizer.hdf5``."""
    path = str(weights_path)
    stem = re.sub(r"(\.weights)?\.h5$", "", path)
    if stem == path:
        raise ValueError(f"not a weights file name (expected .weights.h5 or .h5): {path}")
    return stem + ".optimizer.hdf5"


def _json_default(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def save_optimizer_state(optimizer, path, trainable_variables, metadata=None):
    """Write the optimiser's state to ``path`` (HDF5) atomically; returns the path.

    optimizer: a built Keras optimiser (``optimizer.build(trainable_variables)`` or trained).
    trainable_variables: the variables it updates, in the order it was built with; their paths
        are stored so that loading can check the file belongs to the same set.
    metadata: a JSON-serialisable dict stored alongside (e.g. the epoch, logs, stage).
    """
    if not optimizer.built:
        raise OptimizerStateError(f"cannot save {path}: the optimizer is not built yet")
    store = {}
    optimizer.save_own_variables(store)
    extra = schedule_variables(optimizer)
    info = {
        "optimizer": type(optimizer).__name__,
        "inner_optimizer": type(_inner(optimizer)).__name__,
        "iterations": int(ops.convert_to_numpy(optimizer.iterations)),
        "trainable_variables": [v.path for v in trainable_variables],
        "config": _inner(optimizer).get_config(),
        "metadata": metadata or {},
    }
    path = str(path)
    with atomic_path(path, suffix=".hdf5") as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("optimizer")
        for key, value in store.items():
            group.create_dataset(key, data=np.asarray(value))
        group = f.create_group("schedule")
        for i, variable in enumerate(extra):
            group.create_dataset(str(i), data=ops.convert_to_numpy(variable))
        f.attrs["info"] = json.dumps(info, default=_json_default)
    return path


def read_optimizer_state(path):
    """The description stored in an optimiser state file (no arrays): optimizer, iterations,
    trainable_variables, config, metadata."""
    path = str(path)
    try:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs["info"])
    except (OSError, KeyError, ValueError) as err:
        raise OptimizerStateError(f"cannot read optimizer state {path}: {err}") from err


def load_optimizer_state(optimizer, path, trainable_variables):
    """Restore the state saved by :func:`save_optimizer_state` into a built optimiser.

    Everything is checked before anything is assigned: the kind of optimiser, the trainable
    variables (same paths, same order), the number and shapes of the optimiser's variables.
    Raises :class:`OptimizerStateError` naming the file and the difference. Returns the stored
    description (see :func:`read_optimizer_state`).
    """
    path = str(path)
    info = read_optimizer_state(path)
    if not optimizer.built:
        raise OptimizerStateError(f"build the optimizer before restoring {path} into it")
    kind = type(optimizer).__name__
    if info["optimizer"] != kind or info.get("inner_optimizer") != type(_inner(optimizer)).__name__:
        raise OptimizerStateError(f"{path} holds the state of a {info.get('inner_optimizer', info['optimizer'])} "
                                  f"optimizer, not of this {type(_inner(optimizer)).__name__}")
    saved_paths = info["trainable_variables"]
    paths = [v.path for v in trainable_variables]
    if saved_paths != paths:
        missing = [p for p in paths if p not in set(saved_paths)]
        extra = [p for p in saved_paths if p not in set(paths)]
        detail = (f"{len(saved_paths)} trainable variables in the file, {len(paths)} now"
                  + (f"; not in the file: {', '.join(missing[:3])}" if missing else "")
                  + (f"; only in the file: {', '.join(extra[:3])}" if extra else "")
                  + ("; same variables in another order" if not missing and not extra else ""))
        raise OptimizerStateError(f"{path} was saved for other trainable layers ({detail}); "
                                  "restore it only into the same stage (same layers)")
    with h5py.File(path, "r") as f:
        store = {key: np.asarray(f["optimizer"][key]) for key in f["optimizer"]}
        extra_values = [np.asarray(f["schedule"][str(i)]) for i in range(len(f["schedule"]))]
    variables = optimizer.variables
    if len(store) != len(variables) or set(store) != {str(i) for i in range(len(variables))}:
        raise OptimizerStateError(f"{path} holds {len(store)} optimizer variables, this optimizer has {len(variables)}")
    for i, variable in enumerate(variables):
        if tuple(store[str(i)].shape) != tuple(variable.shape):
            raise OptimizerStateError(f"{path}: optimizer variable {i} ({variable.path}) has shape "
                                      f"{tuple(store[str(i)].shape)} in the file, {tuple(variable.shape)} here")
    targets = schedule_variables(optimizer)
    if len(extra_values) != len(targets):
        raise OptimizerStateError(f"{path} holds {len(extra_values)} schedule variables, this schedule has "
                                  f"{len(targets)} (was it saved with another --schedule?)")
    optimizer.load_own_variables(store)
    for variable, value in zip(targets, extra_values):
        variable.assign(value)
    return info
