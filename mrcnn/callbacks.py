"""Keras callbacks for training runs: checkpoints, logs, plots, failure and learning-rate control.

``MaskRCNN.train`` puts them in this order, so that when a checkpoint exists everything that
epoch logged exists too (a crash between two files leaves a state that resumes cleanly)::

    LearningRateLogger   adds "learning_rate" to the epoch's logs
    TerminateOnNonFinite stops at the first step whose loss is NaN or Inf, naming step and loss
    TensorBoard          scalars of every loss, the learning rate, the validation losses (flushed)
    CSVLog               <run>/training_log.csv, one row per epoch, kept across resumes
    LossPlot             <run>/losses.png, redrawn every epoch
    (user callbacks, ReduceLROnPlateau)
    EpochCheckpoint      weights + optimiser state, atomically; keeps the last K and the best

Every file is written atomically (``mrcnn.fileio``): a reader or a ``kill -9`` never finds half
a file. Epochs are counted from 1 in file names and logs, as Matterport's checkpoint names do:
``mask_rcnn_leaf_0003.weights.h5`` holds the weights after three epochs.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import time
from pathlib import Path

import keras
import numpy as np

from mrcnn.fileio import write_text_atomic
from mrcnn.optimizers import (learning_rate_value, optimizer_state_path, plateau_variable, save_optimizer_state)

__all__ = [
    "TimeBudget",
    "TensorBoard",
    "NonFiniteLossError",
    "TerminateOnNonFinite",
    "LearningRateLogger",
    "ReduceLROnPlateau",
    "CSVLog",
    "read_csv_log",
    "LossPlot",
    "stage_switches",
    "EpochCheckpoint",
]

logger = logging.getLogger(__name__)

# Column order of the CSV log; other columns follow in alphabetical order.
_LOSS_ORDER = ("loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss",
               "l2_loss")


def _finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True  # not a number (a label): nothing to check


class TimeBudget(keras.callbacks.Callback):
    """Stop training after the step that passes a wall-clock budget (the epoch's checkpoint is still written)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = float(seconds)
        self.deadline = None

    def on_train_begin(self, logs=None):
        self.deadline = time.monotonic() + self.seconds

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() > self.deadline:
            self.model.stop_training = True


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, flushed after every epoch: its writers otherwise hold events
    for up to two minutes, and a killed run would lose the scalars of epochs it finished."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for writer in getattr(self, "_writers", {}).values():
            writer.flush()


############################################################
#  Failure and learning rate
############################################################

class NonFiniteLossError(RuntimeError):
    """Training stopped because a loss became NaN or Inf; the message names the step and the loss."""


class TerminateOnNonFinite(keras.callbacks.Callback):
    """Stop training at the first step whose loss (any component) is NaN or Inf.

    Keras reports running means over the epoch, so the first non-finite mean is the step that
    went wrong. ``failure`` then holds a message naming the epoch, the step in it, the optimiser
    step and each non-finite loss; ``MaskRCNN.train`` raises :class:`NonFiniteLossError` with it
    after Keras has closed the epoch (the checkpoint callback writes nothing for that epoch).
    """

    def __init__(self):
        super().__init__()
        self.failure = None
        self.epoch = 0

    def on_train_begin(self, logs=None):
        self.failure = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.failure is not None or not logs:
            return
        bad = {name: value for name, value in logs.items() if not _finite(value)}
        if not bad:
            return
        # The components first, the total last: the component is what the message is about.
        names = sorted(bad, key=lambda name: (name == "loss", name))
        steps = self.params.get("steps") if self.params else None
        iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.failure = (f"non-finite loss at epoch {self.epoch + 1}, step {batch + 1}"
                        + (f" of {steps}" if steps else "") + f" (optimizer step {iterations}): "
                        + ", ".join(f"{name} = {bad[name]}" for name in names))
        logger.error("Stopping: %s", self.failure)
        self.model.stop_training = True


class LearningRateLogger(keras.callbacks.Callback):
    """Add the optimiser's learning rate to each epoch's logs (``learning_rate``), as TensorBoard
    reports it: the rate of the next step. Put it first so that later callbacks see it."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = learning_rate_value(self.model.optimizer)


class ReduceLROnPlateau(keras.callbacks.Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs.

    Works with an optimiser made with ``schedule="plateau"`` (:class:`mrcnn.optimizers.PlateauRate`,
    warmup or not) or with a constant learning rate. Its counters are part of the checkpoint
    (``get_state`` / ``set_state``), so a resumed run waits exactly as the interrupted one would.

    monitor: a log key; "val_loss" falls back to "loss" when there is no validation.
    min_delta: an improvement smaller than this does not count. cooldown: epochs to wait after a
    reduction before counting again. min_lr: the rate never goes below it.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=5, min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self.best = None
        self.wait = 0
        self.cooldown_left = 0
        self.reductions = []

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "cooldown_left": self.cooldown_left,
                "reductions": self.reductions}

    def set_state(self, state):
        self.best = state.get("best")
        self.wait = int(state.get("wait", 0))
        self.cooldown_left = int(state.get("cooldown_left", 0))
        self.reductions = list(state.get("reductions", []))

    def on_train_begin(self, logs=None):
        if plateau_variable(self.model.optimizer) is None:
            raise ValueError("ReduceLROnPlateau needs an optimizer made with schedule='plateau' or a constant "
                             "learning rate; this one's rate is scheduled")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor, logs.get("loss") if self.monitor == "val_loss" else None)
        if value is None or not _finite(value):
            return
        value = float(value)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
        if self.best is None or value < self.best - self.min_delta:
            self.best = value
            self.wait = 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        variable = plateau_variable(self.model.optimizer)
        old = float(keras.ops.convert_to_numpy(variable))
        new = max(old * self.factor, self.min_lr)
        if new < old:
            variable.assign(new)
            self.reductions.append({"epoch": epoch + 1, "from": old, "to": new})
            logger.warning("Epoch %d: %s has not improved for %d epoch%s; learning rate %.3g -> %.3g",
                           epoch + 1, self.monitor, self.wait, "" if self.wait == 1 else "s", old, new)
        self.wait = 0
        self.cooldown_left = self.cooldown


############################################################
#  CSV log and loss plot
############################################################

def read_csv_log(path):
    """The rows of a CSV log as dicts of strings ([] when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _column_order(names):
    names = set(names)
    first = ["epoch", "stage", "optimizer"]
    losses = [n for n in _LOSS_ORDER if n in names]
    val = [f"val_{n}" for n in _LOSS_ORDER if f"val_{n}" in names]
    last = ["learning_rate", "time"]
    known = set(first + losses + val + last)
    return ([n for n in first if n in names] + losses + val + sorted(names - known)
            + [n for n in last if n in names])


class CSVLog(keras.callbacks.Callback):
    """One row per epoch in a CSV file, rewritten atomically; continues across resumed runs.

    Columns: epoch (counted from 1), the ``extra`` labels (e.g. stage, optimizer), every value in
    the epoch's logs and the time the epoch ended. Rows of the epochs that a run (re)starts
    from are dropped first, so a resume after a crash does not duplicate them.
    """

    def __init__(self, path, extra=None):
        super().__init__()
        self.path = Path(path)
        self.extra = dict(extra or {})
        self.rows = []
        self._trimmed = False

    def on_train_begin(self, logs=None):
        self.rows = read_csv_log(self.path)
        self._trimmed = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._trimmed:
            self.rows = [row for row in self.rows if _int(row.get("epoch")) <= epoch]
            self._trimmed = True

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **self.extra, **{k: v for k, v in (logs or {}).items()},
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.rows = [r for r in self.rows if _int(r.get("epoch")) != epoch + 1] + [row]
        columns = _column_order(name for r in self.rows for name in r)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buffer.getvalue())


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def stage_switches(rows):
    """Where the stage or the optimiser changed in a CSV log's rows: ([(epoch, label)], notes),
    the label naming the change ("heads -> all"), and a note for the ``l2_loss`` panel when the
    layers changed: the L2 term sums the squared kernels of the *trainable* layers, so it jumps
    when the backbone's kernels join them (heads -> all) and falls when they leave."""
    switches, layers_changed = [], False
    for prev, row in zip(rows, rows[1:]):
        before, after = (prev.get("stage"), prev.get("optimizer")), (row.get("stage"), row.get("optimizer"))
        if before == after:
            continue
        changed = [f"{a} -> {b}" for a, b in zip(before, after) if a != b and (a or b)]
        switches.append((float(prev["epoch"]), ", ".join(changed)))
        layers_changed |= before[0] != after[0]
    notes = {}
    if layers_changed:
        notes["l2_loss"] = ("At a dashed line the trained layers change: l2_loss sums the squared kernels of the "
                            "trainable layers only, so it jumps when the backbone's join them (heads -> all). "
                            "Not a worse model.")
    return switches, notes


class LossPlot(keras.callbacks.Callback):
    """Redraw the loss curves (``mrcnn.visualize.plot_history``) from the CSV log after every epoch.

    Place it after :class:`CSVLog`. Dashed lines mark where the stage or the optimiser changed,
    labelled with the change; the l2_loss panel says why it jumps there (:func:`stage_switches`).
    """

    def __init__(self, csv_path, png_path, title="Training losses"):
        super().__init__()
        self.csv_path = Path(csv_path)
        self.png_path = Path(png_path)
        self.title = title

    def on_epoch_end(self, epoch, logs=None):
        from mrcnn import visualize

        rows = read_csv_log(self.csv_path)
        if not rows:
            return
        history = {"epoch": [float(r["epoch"]) for r in rows]}
        for name in rows[-1]:
            if name.endswith("loss") or name == "learning_rate":
                history[name] = [float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows]
        boundaries, notes = stage_switches(rows)
        visualize.plot_history(history, self.png_path, title=self.title, boundaries=boundaries, notes=notes)


############################################################
#  Checkpoints
############################################################

class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch, the weights and the optimiser state, atomically, unless they went bad.

    path_template: the weights file name with ``{epoch:04d}`` (``str.format``), e.g. MaskRCNN's
        ``checkpoint_path``; the optimiser state goes beside it (``x.optimizer.hdf5``).
    save_weights: callable(path) writing the weights atomically; default the model's own.
    keep: how many of the newest checkpoints to keep; None keeps all (Matterport). The best one
        by ``monitor`` is always kept. Only the newest checkpoint keeps its optimiser state,
        which is all a resume needs.
    monitor: "val_loss" (falls back to "loss" without validation) or another log key; lower is better.
    metadata: a JSON-serialisable dict stored in every optimiser state file (e.g. the stage).
    state_callbacks: callbacks with ``get_state()`` whose state is stored too (by class name).

    An epoch whose training losses are not all finite, or after which any weight is NaN or Inf,
    is not written: the previous checkpoint stays the newest. The order of writes is optimiser
    state, then weights, then the index ``checkpoints.json`` (epoch, path, losses of every
    checkpoint kept, and the best), then old files are deleted.
    """

    def __init__(self, path_template, save_weights=None, keep=None, monitor="val_loss", metadata=None,
                 state_callbacks=()):
        super().__init__()
        if keep is not None and int(keep) < 1:
            raise ValueError(f"keep must be None (all) or >= 1, got {keep}")
        self.path_template = str(path_template)
        self._save_weights = save_weights
        self.keep = None if keep is None else int(keep)
        self.monitor = monitor
        self.metadata = dict(metadata or {})
        self.state_callbacks = list(state_callbacks)
        self.directory = Path(self.path_template).parent
        self.index_path = self.directory / "checkpoints.json"
        self.index = {}
        self.last_epoch = None
        self.last_path = None
        self.skipped = []

    # ------------------------------------------------------------------------- index

    def _path(self, epoch):
        return self.path_template.format(epoch=epoch)

    def _load_index(self):
        entries = {}
        if self.index_path.is_file():
            try:
                for entry in json.loads(self.index_path.read_text(encoding="utf-8")).get("checkpoints", []):
                    entries[int(entry["epoch"])] = entry
            except (ValueError, KeyError, TypeError) as err:
                logger.warning("ignoring unreadable %s: %s", self.index_path, err)
        # Files written by earlier runs without an index entry count too (their losses unknown).
        prefix, _, suffix = Path(self.path_template).name.partition("{epoch:04d}")
        pattern = re.compile(re.escape(prefix) + r"(\d{4})" + re.escape(suffix) + "$")
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                match = pattern.match(path.name)
                if match:
                    entries.setdefault(int(match.group(1)), {"epoch": int(match.group(1)), "path": str(path)})
        return {epoch: entry for epoch, entry in entries.items() if Path(entry["path"]).is_file()}

    def _monitored(self, entry):
        for key in ((self.monitor, "loss") if self.monitor == "val_loss" else (self.monitor,)):
            value = entry.get("logs", {}).get(key)
            if value is not None and _finite(value):
                return key, float(value)
        return None, None

    def best(self):
        """(epoch, monitored key, value) of the best checkpoint kept, or None."""
        scored = [(value, epoch, key) for epoch, entry in self.index.items()
                  for key, value in [self._monitored(entry)] if value is not None]
        # Checkpoints monitored by the preferred key win over those with only the fallback.
        preferred = [s for s in scored if s[2] == self.monitor] or scored
        if not preferred:
            return None
        value, epoch, key = min(preferred)
        return epoch, key, value

    def _write_index(self):
        best = self.best()
        data = {"monitor": self.monitor,
                "best": None if best is None else {"epoch": best[0], "monitor": best[1], "value": best[2],
                                                   "path": self.index[best[0]]["path"]},
                "checkpoints": [self.index[e] for e in sorted(self.index)]}
        write_text_atomic(self.index_path, json.dumps(data, indent=1, default=_plain) + "\n")

    # ------------------------------------------------------------------------ writing

    def on_train_begin(self, logs=None):
        self.index = self._load_index()
        self.skipped = []

    def _problem(self, logs):
        bad = [f"{k} = {v}" for k, v in (logs or {}).items() if not k.startswith("val_") and not _finite(v)]
        if bad:
            return "non-finite " + ", ".join(bad)
        for variable in self.model.weights:
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable))):
                return f"weight {variable.path} is not finite"
        return None

    def on_epoch_end(self, epoch, logs=None):
        number = epoch + 1
        problem = self._problem(logs)
        if problem:
            self.skipped.append(number)
            logger.error("Not writing checkpoint %d (%s); the newest good checkpoint is %s", number, problem,
                         self.last_path or self.newest_path() or "none")
            return
        path = self._path(number)
        clean_logs = {k: _plain(v) for k, v in (logs or {}).items()}
        metadata = dict(self.metadata, epoch=number, logs=clean_logs,
                        callbacks={type(cb).__name__: cb.get_state() for cb in self.state_callbacks})
        save_optimizer_state(self.model.optimizer, optimizer_state_path(path), self.model.trainable_variables,
                             metadata=metadata)
        if self._save_weights is not None:
            self._save_weights(path)
        else:
            from mrcnn.weights import save_weights

            save_weights(self.model, path)
        self.index[number] = {"epoch": number, "path": path, "logs": clean_logs}
        self.last_epoch, self.last_path = number, path
        self._prune(number)
        self._write_index()

    def newest_path(self):
        """The path of the newest checkpoint kept, or None."""
        return self.index[max(self.index)]["path"] if self.index else None

    def _prune(self, newest):
        best = self.best()
        keep = set(self.index) if self.keep is None else {e for e in self.index if e > newest - self.keep}
        # Never touch checkpoints beyond the one just written (an abandoned branch a rerun overwrites).
        keep |= {e for e in self.index if e > newest}
        if best is not None:
            keep.add(best[0])
        for epoch in sorted(self.index):
            path = self.index[epoch]["path"]
            if epoch not in keep:
                _remove(path)
                del self.index[epoch]
            if epoch != newest:
                _remove(optimizer_state_path(path))


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _plain(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
