"""The training run folder: what ``leafseg train`` leaves in ``<logs>/<name>YYYYmmddTHHMM/``, and
the helpers that write, read and find one.

    config.yaml                         CONFIG_FILE: the config (written by MaskRCNN.train)
    training_log.csv                    LOG_FILE: one row per epoch, kept across resumes
                                        (mrcnn.callbacks.CSVLog)
    checkpoints.json                    CHECKPOINT_INDEX: the checkpoints kept, their losses and
                                        the best by val_loss (mrcnn.callbacks)
    losses.png                          LOSS_PLOT: the losses, redrawn every epoch
    run.json                            RECORD_FILE: every command line and each stage
                                        (:class:`RunRecord`)
    mask_rcnn_<name>_NNNN.weights.h5    the checkpoints, the newest with its .optimizer.hdf5
    train/, validation/                 TensorBoard events

Written by ``leafseg train`` (:mod:`leafseg.training.train`), read by the recipes (:mod:`leafseg.training.recipe`)
and the training notebook (:mod:`leafseg.inspect.training`).

The folder of ``leafseg adapt`` (:mod:`leafseg.training.adapt`) ends with ADAPTED_WEIGHTS, its
self-describing result, which :func:`leafseg.models.loading.resolve_weights` finds in it.
"""
from __future__ import annotations

import datetime
import json
import re
import sys
import time
from pathlib import Path

from mrcnn.fileio import atomic_path, write_text_atomic

__all__ = ["CONFIG_FILE", "LOG_FILE", "CHECKPOINT_INDEX", "LOSS_PLOT", "RECORD_FILE", "ADAPTED_WEIGHTS", "newest_run",
           "read_stages", "read_checkpoint_index", "RunRecord", "run_position", "copy_weights", "store_config_values"]

CONFIG_FILE = "config.yaml"
LOG_FILE = "training_log.csv"
CHECKPOINT_INDEX = "checkpoints.json"
LOSS_PLOT = "losses.png"
RECORD_FILE = "run.json"
# The weights file an adapt folder ends with (its config stored in it).
ADAPTED_WEIGHTS = "adapted.weights.h5"

_RUN_RE = re.compile(r"\d{8}T\d{4}$")


def newest_run(logs):
    """The newest run folder under ``logs`` holding a config.yaml (by the time in its name), or None."""
    logs = Path(logs)
    if not logs.is_dir():
        return None
    runs = [p for p in logs.iterdir() if p.is_dir() and _RUN_RE.search(p.name) and (p / CONFIG_FILE).is_file()]
    if not runs:
        return None
    return max(runs, key=lambda p: (_RUN_RE.search(p.name).group(), (p / CONFIG_FILE).stat().st_mtime))


def read_stages(run_dir):
    """The stages recorded in a run folder's run.json, oldest first ([] without one)."""
    path = Path(run_dir) / RECORD_FILE
    if not path.is_file():
        return []
    return json.loads(path.read_text(encoding="utf-8")).get("stages") or []


def read_checkpoint_index(run_dir):
    """A run folder's checkpoints.json: {"checkpoints": [...], "best": {...}} (see mrcnn.callbacks)."""
    return json.loads((Path(run_dir) / CHECKPOINT_INDEX).read_text(encoding="utf-8"))


class RunRecord:
    """``run.json`` of a run folder: every command line and the history of its stages."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / RECORD_FILE
        if self.path.is_file():
            self.data = json.loads(self.path.read_text(encoding="utf-8"))
        else:
            self.data = {"run_dir": str(run_dir), "created": _now(), "commands": [], "stages": []}
        self.entry = None
        self._started = None

    def save(self):
        write_text_atomic(self.path, json.dumps(self.data, indent=1, default=str) + "\n")

    def begin(self, argv, spec, start, restore, layers, epoch):
        """Record the command and the stage it starts (or resumes, when restore is True)."""
        self.data["commands"].append({"time": _now(), "argv": list(argv), "program": sys.argv[0]})
        stages = self.data["stages"]
        last = stages[-1] if stages else None
        if restore and last and last.get("stage") == spec.stage and last.get("start_epoch") == spec.start_epoch:
            self.entry = last
            self.entry.setdefault("resumed", []).append({"epoch": epoch, "time": _now()})
            self.entry.update(status="running", end_epoch=spec.end_epoch)
        else:
            self.entry = dict(spec.as_dict(), layers=layers, weights=start.source, checkpoint=start.checkpoint,
                              started=_now(), status="running", last_epoch=epoch, seconds=0.0)
            stages.append(self.entry)
        self._started = time.monotonic()
        self.save()

    def progress(self, epoch):
        """``epoch`` epochs are done: a run killed later still shows how far it got."""
        self.entry.update(last_epoch=epoch, seconds=round(self.entry.get("seconds", 0.0)
                                                          + time.monotonic() - self._started, 1))
        self._started = time.monotonic()
        self.save()

    def end(self, status, epoch, message=None):
        self.entry.update(status=status, last_epoch=epoch, ended=_now(),
                          seconds=round(self.entry.get("seconds", 0.0) + time.monotonic() - self._started, 1))
        if message:
            self.entry["message"] = message
        self.save()


def _now():
    return datetime.datetime.now().isoformat(timespec="seconds")


def run_position(logs):
    """Where training under ``logs`` stands: (newest run folder or None, the epoch of its newest
    checkpoint, the end epoch of its last stage)."""
    from mrcnn.weights import checkpoints_in

    run_dir = newest_run(logs)
    checkpoints = checkpoints_in(run_dir) if run_dir is not None else []
    if not checkpoints:
        return None, 0, None
    epoch = int(re.search(r"(\d+)\.weights\.h5$", checkpoints[-1].name).group(1))
    stages = read_stages(run_dir) or [{}]
    return run_dir, epoch, stages[-1].get("end_epoch")


def copy_weights(source, target) -> Path:
    """Copy a weights file to ``target`` atomically (a reader never sees half a file)."""
    import shutil

    with atomic_path(target, suffix=".weights.h5") as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)


def store_config_values(weights, **values):
    """Store config ``values`` that change no weight (detection settings, steps per epoch) in the
    config that a weights file carries, atomically."""
    import shutil

    from leafseg.config import LeafConfig
    from mrcnn.weights import read_metadata, write_metadata

    weights = Path(weights)
    metadata = read_metadata(weights)
    config = LeafConfig.from_yaml_text(metadata.config_yaml, source=str(weights)).replace(**values)
    with atomic_path(weights, suffix=".weights.h5") as tmp:
        shutil.copyfile(weights, tmp)
        write_metadata(tmp, config.to_yaml_text(), metadata.class_names)
