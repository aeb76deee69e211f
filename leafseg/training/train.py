"""Train Mask R-CNN on leaves in stages: ``leafseg train`` and ``scripts/train.py``.

The seed post's two stages, then its optimiser switch when the loss plateaued::

    python scripts/train.py --config configs/leaf_r101.yaml --dataset data/leaves \\
        --stage heads --epochs 9 --weights coco
    python scripts/train.py --config configs/leaf_r101.yaml --dataset data/leaves \\
        --stage all --epochs 79 --weights last
    python scripts/train.py --config configs/leaf_r101.yaml --dataset data/leaves \\
        --stage all --epochs 79 --weights last --optimizer adagrad

    python scripts/train.py ... --resume              # continue a killed run exactly
    python scripts/train.py ... --strategy mirrored   # every GPU of this machine

Epochs count across calls: ``--epochs 79`` trains until epoch 79, wherever the weights left off.
``--weights last`` (or ``best``, or a checkpoint path) continues that checkpoint's run folder and
epoch with a fresh optimiser: a new stage. ``--resume`` continues the newest checkpoint of the
newest run under ``--logs``; when it belongs to the same stage (same layers and optimiser) the
optimiser state, the schedule's position and the plateau counters are restored too, and options
that are not given again are taken from that stage (and without ``--config``, the config from
the run's ``config.yaml``). Without any checkpoint yet, ``--resume`` starts as the command would
without it, so a killed job can always be restarted with ``--resume`` added.

The run folder ``<logs>/<name>YYYYmmddTHHMM/`` holds the checkpoints
(``mask_rcnn_<name>_NNNN.weights.h5``, the newest with its ``.optimizer.hdf5``; the last
``--keep-checkpoints`` and the best by val_loss are kept), ``checkpoints.json``,
``training_log.csv``, ``losses.png``, TensorBoard events (``train/``, ``validation/``),
``config.yaml`` and ``run.json`` (every command line and each stage: layers, optimiser, rate,
schedule, start and end epoch, times, outcome); :mod:`leafseg.models.runs` names and reads them.
A stage ends with a summary on stdout (:func:`training_summary`): the best checkpoint by val_loss
and the last, and the evaluate / predict commands for the best.

Photographs larger than the config's IMAGE_MAX_DIM are decoded and shrunk once, before training,
into ``<logs>/.image_cache`` (:mod:`leafseg.data.cache`: the same pixels the input pipeline would
make at every step); ``--no-image-cache`` reads the photographs at every step.

Classes: the data's (``classes.json`` of a prepared set, ``leafseg prepare --classes leaf,stem``;
one class, leaf, without it) set the config's CLASS_NAMES and NUM_CLASSES, whatever the config
said; weights that store another NUM_CLASSES (leaf-small, one class) load without their
class-specific heads, as COCO's do. Checkpoints store the class names and the config with them.

Exit status: 0 done (or nothing left to do); 1 training failed (a NaN or Inf loss: the message
names the step and the loss, the last good checkpoint is kept; or an error while training);
2 bad input found before training starts (an option, the config, the dataset, the weights);
130 interrupted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from leafseg.cli.options import add_set_argument, parse_overrides, quiet_tensorflow

from leafseg.precision import PRECISION_POLICIES, precision_warning
from leafseg.models.runs import (CHECKPOINT_INDEX, CONFIG_FILE, LOG_FILE, LOSS_PLOT, RunRecord, newest_run,
                                 read_checkpoint_index)
from mrcnn.augment import STRENGTHS

__all__ = ["SetupError", "StageSpec", "TrainResult", "print_step"]

logger = logging.getLogger(__name__)


def print_step(number, total, text):
    """A job's step header on stdout: ``[number/total] text`` (the recipes, adapt, the demo)."""
    print(f"\n[{number}/{total}] {text}", flush=True)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
STAGES = ("heads", "3+", "4+", "5+", "all")
AUGMENTATIONS = ("none", *STRENGTHS)  # mrcnn.augment imports neither TensorFlow nor albumentations
STRATEGIES = ("default", "mirrored", "multiworker")
# --mixed-precision's values; the bare option means the first (what it meant before it took one).
MIXED_PRECISIONS = ("float16", "bfloat16")
# mrcnn.optimizers.OPTIMIZERS and SCHEDULES (a test keeps them equal), here so that --help does
# not import TensorFlow.
OPTIMIZERS = ("sgd", "adagrad", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "plateau")
# Stage options: a resumed stage takes those not given again from its checkpoint, then these
# (the optimiser's default is the config's OPTIMIZER).
STAGE_DEFAULTS = {"optimizer": None, "lr": None, "schedule": "constant", "warmup_steps": 0, "lr_steps": None,
                  "lr_factor": 0.1, "patience": 5, "augment": "none"}
COCO_CLASSES = 81
# --keep-checkpoints' default (the demo keeps as many).
DEFAULT_KEEP_CHECKPOINTS = 5
# A bare --verbose (no progress level): TensorFlow's log lines too, as every command's --verbose.
VERBOSE_LOGS = 3


class SetupError(Exception):
    """Bad input found before training starts (exit status 2); the message names the file or value."""


############################################################
#  Command line
############################################################

_EPILOG = """\
examples:
  leafseg train --config configs/leaf_r101.yaml --dataset data/leaves --stage heads --epochs 9 --weights coco
  leafseg train --config configs/leaf_r101.yaml --dataset data/leaves --stage all --epochs 79 --weights last
  leafseg train --config configs/leaf_r101.yaml --dataset data/leaves --resume
  leafseg train --weights leaf-small --dataset my_leaves --stage heads --epochs 10 --set STEPS_PER_EPOCH=50

Epochs count across calls. --weights starts a new stage (a fresh optimiser); --resume continues
the newest checkpoint under --logs, with its optimiser state when it belongs to the same stage
(options not given again are taken from it, and without --config the run's config.yaml). Ctrl-C
prints the epoch saved and the command that resumes. Exit status: 0 done, 1 training failed (e.g.
a NaN loss), 2 bad input found before training, 130 interrupted.
"""


def build_parser(parser=None):
    from leafseg.config import PRESETS

    parser = parser or argparse.ArgumentParser(
        prog="leafseg train", description="Train Mask R-CNN on leaf images in stages.", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--config",
        help=f"a preset ({', '.join(PRESETS)}) or a YAML file of config values (default: with --resume or "
             "--weights last|best the run's config.yaml, with --weights PATH the config stored in the file, "
             "else leaf_r101)")
    add_set_argument(parser)
    add("--dataset", required=True, metavar="DIR", help="prepared data folder holding train/ (and val/)")
    add("--stage", choices=STAGES, help="the layers to train (required unless --resume)")
    add("--epochs", type=int, metavar="N", help="train until epoch N, counted across calls (required unless --resume)")
    add("--weights", metavar="coco|leaf-small|last|best|none|PATH",
        help="the weights to start from: coco (Matterport's, ResNet101 presets only), leaf-small (the pretrained "
             "leaf model installed with leafseg, to fine-tune on your own images), last (the newest checkpoint "
             "under --logs), best (its run's best by val_loss), none (random) or a file (required unless --resume)")
    add("--coco-path", metavar="PATH", help="mask_rcnn_coco.h5 for --weights coco (default: $LEAFSEG_COCO_WEIGHTS, "
                                            "then ~/.keras/models/mask_rcnn_coco.h5)")
    add("--exclude-heads", action="store_true",
        help="skip the class-specific head layers of the weights (automatic for COCO, and for weights that store "
             "another NUM_CLASSES than the data's classes)")
    add("--optimizer", choices=OPTIMIZERS, help="default: the config's OPTIMIZER (sgd with momentum "
                                                "LEARNING_MOMENTUM; adam in quickstart_cpu)")
    add("--lr", type=float, help="learning rate (default: the config's LEARNING_RATE)")
    add("--schedule", choices=SCHEDULES, help="learning-rate schedule (default: constant)")
    add("--warmup-steps", type=int, metavar="N", help="linear warmup over the stage's first N steps (default: 0)")
    add("--lr-steps", metavar="E1,E2", help="step schedule: the epochs at which the rate drops "
                                            "(default: 2/3 and 8/9 through the stage)")
    add("--lr-factor", type=float, metavar="F", help="step and plateau schedules: each drop's factor (default: 0.1)")
    add("--patience", type=int, metavar="N", help="plateau schedule: epochs without a lower val_loss before a "
                                                  "drop (default: 5)")
    add("--steps-per-epoch", type=int, metavar="N", help="overrides STEPS_PER_EPOCH")
    add("--validation-steps", type=int, metavar="N", help="overrides VALIDATION_STEPS (0: no validation)")
    add("--augment", choices=AUGMENTATIONS, help="training augmentation (default: none)")
    add("--logs", default="logs", metavar="DIR", help="the folder of run folders (default: logs)")
    add("--resume", action="store_true", help="continue the newest checkpoint under --logs")
    add("--no-image-cache", action="store_true",
        help="read the photographs at every step; by default those larger than IMAGE_MAX_DIM are shrunk once, "
             "before training, into <logs>/.image_cache (the same pixels, much faster steps)")
    add("--keep-checkpoints", type=int, default=DEFAULT_KEEP_CHECKPOINTS, metavar="K",
        help="keep the newest K checkpoints and the best; 0 keeps all (default: 5)")
    add("--seed", type=int, default=0, help="seed of the initial weights, sampling and data order (default: 0)")
    add("--strategy", choices=STRATEGIES, default="default",
        help="mirrored: every GPU of this machine; multiworker: the machines of TF_CONFIG (default: default)")
    add("--mixed-precision", nargs="?", const="float16", choices=MIXED_PRECISIONS, metavar="float16|bfloat16",
        help="compute in 16 bits, the weights kept in float32: float16 (the option alone; for GPUs, with loss "
             "scaling) or bfloat16 (GPUs from Ampere on, CPUs with bfloat16 units: avx512_bf16, amx_bf16); "
             "default: float32")
    add("--jit", action="store_true", help="compile the training step with XLA")
    add("--verbose", nargs="?", type=int, choices=(0, 1, 2), const=VERBOSE_LOGS, default=1, metavar="0|1|2",
        help="alone: also show TensorFlow's start-up and C++ log lines (hidden by default), with a "
             "progress bar; with a number, Keras' progress display: 0 none, 1 a progress bar, 2 a "
             "line per epoch (default: 1)")
    return parser


def _lr_steps(text):
    if text is None or isinstance(text, list):
        return text
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError as err:
        raise SetupError(f"--lr-steps {text!r}: expected comma-separated epochs, e.g. 40,60") from err


############################################################
#  Set-up: config, data, strategy, weights
############################################################

def check_options(args):
    """The checks that need neither TensorFlow nor the model, so that they fail at once."""
    if args.keep_checkpoints < 0:
        raise SetupError(f"--keep-checkpoints {args.keep_checkpoints}: expected >= 0 (0 keeps all)")
    if args.resume:
        return  # the checkpoint decides; --stage, --epochs and --weights are only needed without one
    missing = [option for option, value in (("--stage", args.stage), ("--epochs", args.epochs),
                                            ("--weights", args.weights)) if value is None]
    if missing:
        raise SetupError(f"{', '.join(missing)} required (or --resume to continue the last checkpoint)")
    if args.weights == "coco":
        _coco_path(args)
    elif args.weights not in ("last", "best", "none") and not os.path.isfile(args.weights):
        from leafseg.models import zoo

        if not zoo.is_name(args.weights):
            raise SetupError(f"weights file not found: {args.weights}")
        try:  # a pretrained model by name: its file, whose stored config is used without --config
            args.weights = str(zoo.path(args.weights))
        except FileNotFoundError as err:
            raise SetupError(str(err)) from err


def _coco_path(args):
    from mrcnn import weights as W

    try:
        return W.resolve_coco_weights(args.coco_path)
    except FileNotFoundError as err:
        message = str(err)
        if not args.coco_path:
            message = message.replace(" For example:", " Or pass --coco-path PATH. For example:", 1)
        raise SetupError(message) from err


def check_coco_fits(config, config_source):
    """--weights coco: Matterport's file is a ResNet101 with the standard widths; fail at once otherwise."""
    from leafseg.config import coco_mismatches

    differences = coco_mismatches(config)
    if differences:
        raise SetupError(f"COCO weights fit only ResNet101 presets such as leaf_r101, not {config_source} "
                         f"({', '.join(differences)}): use --weights none, or --config leaf_r101")


def make_strategy(name):
    """The tf.distribute strategy ``name`` (create it before any other TensorFlow work)."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise SetupError("--strategy multiworker needs the TF_CONFIG environment variable (the cluster's "
                             "workers and this machine's index; see the README)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as err:
            raise SetupError(f"TF_CONFIG is not valid JSON: {err}") from err
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this process writes the run folder (the one process, or the chief of a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def config_source(args):
    """What the config comes from: ``--config``; without it, for --resume and --weights last|best
    the newest run's config.yaml under --logs, for --weights PATH the file (its own config, else
    the config.yaml beside it, else leaf_r101), else the leaf_r101 preset."""
    if args.config is not None:
        return args.config
    if args.resume or args.weights in ("last", "best"):
        run_dir = newest_run(args.logs)
        if run_dir is not None:
            return str(run_dir / CONFIG_FILE)
    elif args.weights not in (None, "coco", "none"):
        return ("weights", args.weights)
    return "leaf_r101"


def build_config(args, replicas):
    """The config of ``--config`` (see :func:`config_source`) with ``--set`` and the step options
    applied; GPU_COUNT = replicas. Sets ``args.config_source`` to a description for messages."""
    from leafseg.config import config_for_weights, load_config

    try:
        overrides = parse_overrides(args.set)
    except ValueError as err:
        raise SetupError(str(err)) from err
    if args.steps_per_epoch is not None:
        overrides["STEPS_PER_EPOCH"] = args.steps_per_epoch
    if args.validation_steps is not None:
        overrides["VALIDATION_STEPS"] = args.validation_steps
    overrides["GPU_COUNT"] = int(replicas)
    source = config_source(args)
    args.config_source = source if isinstance(source, str) else None
    try:
        if isinstance(source, tuple):
            config, args.config_source = config_for_weights(source[1], **overrides)
        else:
            config = load_config(source, **overrides)
    except (ValueError, OSError) as err:  # ConfigError is a ValueError
        raise SetupError(f"config {args.config_source or source[1]}: {err}") from err
    if args.config is None and args.config_source != "leaf_r101":
        logger.info("config: %s", args.config_source)
    return config


def load_datasets(root, config):
    """(train, val) LeafDatasets of a prepared folder; val is None when there is no val/ folder."""
    from leafseg.data.dataset import LeafDataset

    root = Path(root)
    if not root.is_dir():
        raise SetupError(f"dataset folder not found: {root}")

    def load(subset):
        dataset = LeafDataset()
        try:
            dataset.load_leaves(root, subset)
        except (OSError, ValueError) as err:
            raise SetupError(str(err)) from err
        dataset.prepare()
        return dataset

    train = load("train")
    if not (root / "val").is_dir():
        if config.VALIDATION_STEPS > 0:
            logger.warning("%s has no val/ folder: training without validation (the best checkpoint is chosen "
                           "by the training loss)", root)
        return train, None
    val = load("val")
    check_same_classes(train, val, root)
    return train, val


def check_same_classes(train, val, root):
    """SetupError naming both lists when the val data's classes are not the train data's (the same
    class id would mean different things)."""
    if val is not None and list(val.class_names) != list(train.class_names):
        raise SetupError(f"{root}: the train and val data have different classes: train {list(train.class_names)[1:]}, "
                         f"val {list(val.class_names)[1:]} (ids 1.. in this order); prepare them with one class list")


def config_for_classes(config, train, args):
    """The config with the training data's classes: CLASS_NAMES (and NUM_CLASSES) from the data
    when they differ (a prepared set with classes.json trains an N-class model from any config).
    ``--resume`` of a run trained with other classes is a SetupError naming both."""
    from leafseg.config import class_names

    names = list(train.class_names)[1:]
    if names == class_names(config):
        return config
    if args.resume and args.config is None:
        raise SetupError(f"--resume: the run under {args.logs} was trained with the classes {class_names(config)} but "
                         f"{args.dataset} has {names}; start a new run (--weights PATH, without --resume)")
    logger.info("classes of %s: %s (the config said %s)", args.dataset, ", ".join(names),
                ", ".join(class_names(config)))
    try:
        return config.replace(CLASS_NAMES=names, NUM_CLASSES=1 + len(names))
    except ValueError as err:
        raise SetupError(f"config {args.config_source}: {err}") from err


@dataclasses.dataclass
class _Start:
    """Where training starts: the weights loaded and, for --resume, the checkpoint's saved stage."""
    source: str
    checkpoint: str | None = None
    state_path: str | None = None
    saved_stage: dict | None = None


def load_start_weights(model, args):
    """Load what ``--resume`` / ``--weights`` ask for into the model (which sets its run folder and
    epoch). Raises SetupError naming the file when it is missing or does not fit."""
    from mrcnn import weights as W
    from mrcnn.optimizers import OptimizerStateError, optimizer_state_path, read_optimizer_state

    if args.resume:
        try:
            checkpoint = model.find_last()
        except FileNotFoundError:
            checkpoint = None
        if checkpoint:
            _load(model, checkpoint, None)
            state_path = optimizer_state_path(checkpoint)
            saved = None
            if os.path.isfile(state_path):
                try:
                    saved = read_optimizer_state(state_path).get("metadata", {}).get("stage")
                except OptimizerStateError as err:
                    raise SetupError(str(err)) from err
            else:
                logger.warning("--resume: no optimizer state beside %s; the optimizer starts afresh", checkpoint)
                state_path = None
            return _Start("resume", checkpoint, state_path, saved)
        logger.warning("--resume: no checkpoint of %s under %s yet; starting as without --resume",
                       model.config.NAME, args.logs)
    weights = args.weights
    if weights is None:
        raise SetupError("--weights is required (coco, last, none or a weights file), or --resume")
    if weights == "none":
        return _Start("none")
    exclude = list(W.COCO_EXCLUDE) if args.exclude_heads else None
    if weights == "coco":
        path = _coco_path(args)
        if model.config.NUM_CLASSES != COCO_CLASSES:
            exclude = list(W.COCO_EXCLUDE)
    elif weights in ("last", "best"):
        try:
            path = model.find_last()
        except FileNotFoundError as err:
            raise SetupError(f"--weights {weights}: {err}") from err
        if weights == "best":
            path = best_checkpoint(path)
    else:
        path = weights
    if exclude is None and weights != "coco" and _stored_num_classes(path) not in (None, model.config.NUM_CLASSES):
        # Weights of other classes (leaf-small's one class for a leaf + stem set): all but the class-specific heads.
        exclude = list(W.COCO_EXCLUDE)
        logger.info("%s: trained with NUM_CLASSES = %d, the data has %d: its class-specific heads (%s) are not "
                    "loaded", path, _stored_num_classes(path), model.config.NUM_CLASSES, ", ".join(exclude))
    _load(model, path, exclude)
    return _Start(weights if weights in ("coco", "last", "best") else "file", checkpoint=path)


def _stored_num_classes(path):
    """NUM_CLASSES of the config (else the class names) a weights file stores; None when it stores neither."""
    import yaml

    from mrcnn.weights import WeightsError, read_metadata

    try:
        metadata = read_metadata(path)
    except (WeightsError, OSError):
        return None  # loading it reports what is wrong
    if metadata is None:
        return None
    if metadata.config_yaml:
        try:
            value = (yaml.safe_load(metadata.config_yaml) or {}).get("NUM_CLASSES")
        except yaml.YAMLError:
            value = None
        if isinstance(value, int):
            return value
    return len(metadata.class_names) if metadata.class_names else None


def best_checkpoint(newest):
    """The best checkpoint by val_loss of the run folder of ``newest`` (its checkpoints.json)."""
    run_dir = Path(newest).parent
    index_path = run_dir / CHECKPOINT_INDEX
    try:
        best = read_checkpoint_index(run_dir).get("best")
    except (OSError, ValueError) as err:
        raise SetupError(f"--weights best: cannot read {index_path}: {err}") from err
    if not best or not os.path.isfile(best.get("path", "")):
        raise SetupError(f"--weights best: {index_path} names no best checkpoint that exists")
    logger.info("--weights best: epoch %s (%s %.4g), %s", best["epoch"], best["monitor"], best["value"], best["path"])
    return best["path"]


def _load(model, path, exclude):
    from mrcnn.weights import WeightsError, WeightsMismatchError

    try:
        model.load_weights(path, exclude=exclude)
    except WeightsMismatchError as err:
        raise SetupError(f"{path}: these weights were trained with another configuration {err.detail}; "
                         f"pass --config with the configuration they were trained with") from None
    except (WeightsError, OSError) as err:
        raise SetupError(str(err)) from err


############################################################
#  The stage
############################################################

@dataclasses.dataclass
class StageSpec:
    """One stage: what trains, how, and over which epochs (start_epoch is where its schedule began)."""
    stage: str
    optimizer: str
    learning_rate: float
    schedule: str
    warmup_steps: int
    lr_steps: list | None
    lr_factor: float
    patience: int
    augment: str
    start_epoch: int
    end_epoch: int
    steps_per_epoch: int
    validation_steps: int

    def as_dict(self):
        return dataclasses.asdict(self)

    def boundaries(self):
        """Optimiser steps at which the step schedule drops (from the epochs of lr_steps)."""
        epochs = self.lr_steps
        if epochs is None:
            span = self.end_epoch - self.start_epoch
            epochs = sorted({self.start_epoch + round(span * 2 / 3), self.start_epoch + round(span * 8 / 9)})
            epochs = [e for e in epochs if self.start_epoch < e < self.end_epoch]
        return [(e - self.start_epoch) * self.steps_per_epoch for e in epochs]


def resolve_stage(args, config, start, epoch):
    """The StageSpec of this call and whether the checkpoint's optimiser state is restored.

    Each option comes from the command line, else (``--resume``) from the checkpoint's stage,
    else from its default (the config's for the rate and the step counts).
    """
    saved = start.saved_stage if start.source == "resume" else None
    values = {}
    for name, default in dict(STAGE_DEFAULTS, optimizer=config.OPTIMIZER).items():
        given = getattr(args, name)
        saved_name = {"lr": "learning_rate"}.get(name, name)
        values[name] = given if given is not None else (saved.get(saved_name, default) if saved else default)
    stage = args.stage or (saved or {}).get("stage")
    end = args.epochs if args.epochs is not None else (saved or {}).get("end_epoch")
    if stage is None or end is None:
        missing = " and ".join(o for o, v in (("--stage", stage), ("--epochs", end)) if v is None)
        raise SetupError(f"{missing} required (or --resume with a checkpoint of the stage to continue)")
    # The optimiser's variables fit only the same layers, optimiser and kind of rate (a constant
    # rate is one of its variables, a schedule is not, the plateau rate adds one).
    same = ("stage", stage), ("optimizer", values["optimizer"]), ("schedule", values["schedule"]), (
        "warmup", int(values["warmup_steps"]) > 0)
    saved_kind = dict(saved or {}, warmup=int((saved or {}).get("warmup_steps", 0)) > 0)
    restore = bool(saved and start.state_path and all(saved_kind.get(k) == v for k, v in same))
    if saved and not restore:
        logger.warning("--resume: a new stage (%s) after the checkpoint's (%s): the optimizer starts afresh",
                       ", ".join(f"{k} {v}" for k, v in same), ", ".join(f"{k} {saved_kind.get(k)}" for k, _ in same))
    spec = StageSpec(
        stage=stage, optimizer=values["optimizer"],
        learning_rate=float(values["lr"] if values["lr"] is not None else config.LEARNING_RATE),
        schedule=values["schedule"], warmup_steps=int(values["warmup_steps"]), lr_steps=_lr_steps(values["lr_steps"]),
        lr_factor=float(values["lr_factor"]), patience=int(values["patience"]), augment=values["augment"],
        start_epoch=int(saved["start_epoch"]) if restore else int(epoch), end_epoch=int(end),
        steps_per_epoch=int(_given_or_saved(args.steps_per_epoch, saved, "steps_per_epoch", config.STEPS_PER_EPOCH)),
        validation_steps=int(_given_or_saved(args.validation_steps, saved, "validation_steps",
                                             config.VALIDATION_STEPS)))
    if restore:
        changed = [k for k in ("learning_rate", "warmup_steps", "lr_steps", "lr_factor", "end_epoch",
                               "steps_per_epoch") if saved.get(k) != spec.as_dict()[k]]
        if changed:
            logger.warning("--resume with other %s than the interrupted stage: its schedule continues from the "
                           "restored step with the new values", ", ".join(changed))
    if spec.warmup_steps < 0:
        raise SetupError(f"--warmup-steps {spec.warmup_steps}: expected >= 0")
    if not 0 < spec.lr_factor < 1:
        raise SetupError(f"--lr-factor {spec.lr_factor}: expected a number between 0 and 1")
    if spec.learning_rate <= 0:
        raise SetupError(f"--lr {spec.learning_rate}: expected a positive number")
    for e in spec.lr_steps or []:
        if not spec.start_epoch < e < spec.end_epoch:
            raise SetupError(f"--lr-steps {e}: outside this stage's epochs ({spec.start_epoch}, {spec.end_epoch})")
    return spec, restore


def _given_or_saved(given, saved, name, default):
    if given is not None:
        return given
    return saved.get(name, default) if saved else default


@dataclasses.dataclass
class TrainResult:
    """What a call did: the model (weights as trained), its run folder, the epoch reached, the
    newest checkpoint, the Keras History (None when there was nothing to do) and the stage."""
    model: object
    run_dir: str
    epoch: int
    checkpoint: str | None
    history: object
    spec: StageSpec
    summary: str | None = None  # what the command prints at the end (:func:`training_summary`)


############################################################
#  Running
############################################################

def run(argv=None, callbacks=None):
    """Parse ``argv`` and train one stage; returns a :class:`TrainResult`.

    callbacks: extra Keras callbacks (for programs and tests that drive the command).
    Raises SetupError for bad input (before training), mrcnn.callbacks.NonFiniteLossError when a
    loss becomes NaN or Inf, and whatever else stops training.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    quiet_tensorflow(args.verbose == VERBOSE_LOGS)
    args.progress = 1 if args.verbose == VERBOSE_LOGS else args.verbose
    check_options(args)
    strategy = make_strategy(args.strategy)
    config = build_config(args, strategy.num_replicas_in_sync)
    if args.weights == "coco" and not args.resume:
        check_coco_fits(config, args.config_source)
    train_set, val_set = load_datasets(args.dataset, config)
    if not args.no_image_cache:  # large photographs decoded and shrunk once, not at every step
        from leafseg.data.cache import CACHE_DIR, resized_for_training

        train_set, val_set = (None if dataset is None else resized_for_training(dataset, config,
                                                                                Path(args.logs) / CACHE_DIR)
                              for dataset in (train_set, val_set))

    import keras

    from mrcnn.model import MaskRCNN

    config = config_for_classes(config, train_set, args)  # the data's classes make the model's
    policy = keras.mixed_precision.global_policy()
    worker_dir = None
    try:
        if args.mixed_precision:
            warning = precision_warning(args.mixed_precision)
            if warning:
                logger.warning("--mixed-precision %s: %s", args.mixed_precision, warning)
            keras.mixed_precision.set_global_policy(PRECISION_POLICIES[args.mixed_precision])
        keras.utils.set_random_seed(args.seed)
        with strategy.scope():
            try:
                model = MaskRCNN("training", config, args.logs)
            except Exception as err:  # any failure to build is a config that cannot work
                raise SetupError(f"cannot build a model from {args.config_source}: "
                                 f"{type(err).__name__}: {err}") from err
        start = load_start_weights(model, args)
        spec, restore = resolve_stage(args, config, start, model.epoch)
        if (spec.steps_per_epoch, spec.validation_steps) != (config.STEPS_PER_EPOCH, config.VALIDATION_STEPS):
            try:
                config = model.config = config.replace(STEPS_PER_EPOCH=spec.steps_per_epoch,
                                                       VALIDATION_STEPS=spec.validation_steps)
            except ValueError as err:
                raise SetupError(f"config {args.config_source}: {err}") from err
        if config.VALIDATION_STEPS == 0:
            val_set = None
        if model.epoch >= spec.end_epoch:
            logger.warning("Nothing to do: the weights are at epoch %d and --epochs is %d", model.epoch,
                           spec.end_epoch)
            result = TrainResult(model, model.log_dir, model.epoch, start.checkpoint, None, spec)
            result.summary = training_summary(result, args)
            return result
        chief = is_chief(strategy)
        if not chief:
            # Every worker writes checkpoints (they may need collective reads); only the chief's are kept.
            worker_dir = tempfile.mkdtemp(prefix="leafseg-worker-")
            model.log_dir = os.path.join(worker_dir, os.path.basename(model.log_dir))
            model.checkpoint_path = os.path.join(model.log_dir, os.path.basename(model.checkpoint_path))
        result = _train_stage(model, args, argv, config, strategy, spec, start, restore, train_set, val_set,
                              callbacks, chief)
        if chief:
            result.summary = training_summary(result, args)
        return result
    finally:
        keras.mixed_precision.set_global_policy(policy)
        if worker_dir:
            shutil.rmtree(worker_dir, ignore_errors=True)


def _train_stage(model, args, argv, config, strategy, spec, start, restore, train_set, val_set, callbacks, chief):
    import keras

    from mrcnn.augment import default_augmentation
    from mrcnn.callbacks import NonFiniteLossError, ReduceLROnPlateau
    from mrcnn.optimizers import OptimizerStateError, make_optimizer, plateau_variable
    from mrcnn.trainable import LAYER_REGEX

    with strategy.scope():
        try:
            optimizer = make_optimizer(
                spec.optimizer, spec.learning_rate, config, schedule=spec.schedule, warmup_steps=spec.warmup_steps,
                total_steps=(spec.end_epoch - spec.start_epoch) * spec.steps_per_epoch,
                boundaries=spec.boundaries(), decay_factor=spec.lr_factor)
        except ValueError as err:
            raise SetupError(str(err)) from err
    augmentation = None if spec.augment == "none" else default_augmentation(
        spec.augment, square=config.IMAGE_RESIZE_MODE in ("square", "crop"))
    extra = list(callbacks or [])
    if spec.schedule == "plateau":
        extra.insert(0, ReduceLROnPlateau(factor=spec.lr_factor, patience=spec.patience))
    if restore and start.saved_stage.get("learning_rate") != spec.learning_rate and plateau_variable(optimizer):
        # A constant or plateau rate is a variable of the restored state: a new --lr replaces it.
        rate = plateau_variable(optimizer)
        extra.insert(0, keras.callbacks.LambdaCallback(on_train_begin=lambda logs: rate.assign(spec.learning_rate)))

    os.makedirs(model.log_dir, exist_ok=True)
    record = RunRecord(model.log_dir) if chief else None
    if record:  # (MaskRCNN.train writes config.yaml)
        record.begin(argv, spec, start, restore, LAYER_REGEX[spec.stage], model.epoch)
    logger.info("Stage %s: epochs %d..%d, %s lr=%g (%s schedule), run folder %s", spec.stage, model.epoch + 1,
                spec.end_epoch, spec.optimizer, spec.learning_rate, spec.schedule, model.log_dir)
    status, message = "failed", None
    try:
        history = model.train(
            train_set, val_set, learning_rate=spec.learning_rate, epochs=spec.end_epoch, layers=spec.stage,
            augmentation=augmentation, custom_callbacks=extra, optimizer=optimizer, seed=args.seed,
            verbose=args.progress, optimizer_state=start.state_path if restore else None,
            keep_checkpoints=args.keep_checkpoints or None, plot=chief, jit_compile=args.jit, stage=spec.stage,
            checkpoint_metadata={"stage": spec.as_dict()},
            # Each checkpoint written is an epoch done: a run killed later still shows how far it got.
            on_checkpoint=(lambda epoch, path: record.progress(epoch)) if record else None)
        status = "completed" if model.epoch >= spec.end_epoch else "stopped"
    except NonFiniteLossError as err:
        message = str(err)
        raise
    except OptimizerStateError as err:  # restored before the first step: bad input, not a failure
        message = str(err)
        raise SetupError(message) from err
    except KeyboardInterrupt:
        status = "interrupted"
        raise TrainInterrupted(interrupted_message(args, model, chief)) from None
    except Exception as err:
        message = describe_error(err)
        raise
    finally:
        if record:
            record.end(status, model.epoch, message)
    checkpoint = model.find_last() if chief else None
    return TrainResult(model, model.log_dir, model.epoch, checkpoint, history, spec)


def training_summary(result, args):
    """What a finished stage leaves, for the user: the best checkpoint (by the monitored loss,
    val_loss when there is validation) and the last one with their epochs, losses and paths,
    the run folder's plot and log, and the commands that evaluate and use the best checkpoint,
    ready to paste. Read from the run folder's checkpoints.json."""
    import shlex

    run_dir = Path(result.run_dir)
    try:
        index = read_checkpoint_index(run_dir)
    except (OSError, ValueError):
        index = {}
    monitor = index.get("monitor") or "val_loss"
    best, checkpoints = index.get("best"), index.get("checkpoints") or []
    last = next((c for c in checkpoints if c.get("epoch") == result.epoch), checkpoints[-1] if checkpoints else None)

    def described(entry, lowest=""):
        value = (entry.get("logs") or {}).get(monitor) if "value" not in entry else entry["value"]
        loss = f", {entry.get('monitor', monitor)} {value:.4g}{lowest}" if isinstance(value, (int, float)) else ""
        return f"epoch {entry['epoch']}{loss}: {entry['path']}"

    done = "done" if result.history is not None else "nothing to do"
    lines = [f"Training {done}: epoch {result.epoch} of {result.spec.end_epoch} (stage {result.spec.stage}), "
             f"run folder {run_dir}"]
    if best:
        lines.append("  best: " + described(best, " (the lowest)"))
    if last:
        lines.append("  last: " + described(last))
    if not (best or last):
        lines.append(f"  no checkpoint in {run_dir}" + (f"; the weights are {result.checkpoint}"
                                                         if result.checkpoint else ""))
    lines.append(f"  losses: {run_dir / LOSS_PLOT}, {run_dir / LOG_FILE}")
    weights = (best or last or {}).get("path") or result.checkpoint
    if weights:
        quote = shlex.quote
        evaluate = ["leafseg", "evaluate", "--weights", quote(str(weights)), "--dataset", quote(str(args.dataset)),
                    "--out", quote(str(run_dir / "evaluation"))]
        if not (Path(args.dataset) / "val").is_dir():
            evaluate += ["--subset", "train"]  # (no val/ folder: the training images, which flatter the model)
        lines += ["Next:", "  " + " ".join(evaluate),
                  "  leafseg predict --weights " + quote(str(weights)) + " --out predictions PHOTOS/"
                  + "   # PHOTOS/: your photographs"]
    return "\n".join(lines)


class TrainInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message names the last epoch saved and the command that resumes."""


def resume_command(args, run_dir):
    """The command line that continues this run: its config (``--config`` as given, else the run's
    config.yaml), dataset and logs, and --resume."""
    import shlex

    config = args.config if args.config is not None else os.path.join(str(run_dir), CONFIG_FILE)
    words = ["leafseg", "train", "--config", str(config)]
    for pair in args.set:
        words += ["--set", pair]
    words += ["--dataset", str(args.dataset), "--logs", str(args.logs)]
    if args.strategy != "default":
        words += ["--strategy", args.strategy]
    return " ".join(shlex.quote(w) for w in words + ["--resume"])


def interrupted_message(args, model, chief=True):
    if not model.epoch:
        return f"interrupted before the first checkpoint; nothing is saved in {model.log_dir}"
    where = model.log_dir if chief else "the chief worker's run folder"
    return f"interrupted; epoch {model.epoch} is saved in {where}; resume with: {resume_command(args, model.log_dir)}"


def _one_line(message):
    """A message on one line: the first line, then the others joined with "; "."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "") if lines else ""


def describe_error(error):
    """One line for an error that stopped training: a failed input sample is reported as the
    pipeline's own message (which names the image) and an XLA failure (--jit) by the operations
    it cannot compile, not as TensorFlow's graph-execution error."""
    text = str(error)
    marker = "SampleError: "
    if marker in text:
        return _one_line(text[text.rindex(marker) + len(marker):].splitlines()[0])
    unsupported = re.search(r"Detected unsupported operations when trying to compile graph \S+ on (\S+): "
                            r"([\w, ]+?) \(", text)
    if unsupported:
        return (f"XLA ({unsupported.group(1)}) cannot compile the training step: unsupported operations "
                f"{unsupported.group(2)}; train without --jit")
    return _one_line(f"{type(error).__name__}: {text}")
