"""``leafseg train`` end to end on the toy model: stages, resume after kill -9, NaN, bad input,
MirroredStrategy, and an input error during training.

Tracing a training step takes 15-60 s on two CPU cores, so one run folder serves several tests
and five training runs take place:

1. ``leafseg train`` trains the heads (epochs of HEADS_STEPS steps, no validation) in a
   subprocess (tests/train_subprocess.py), killed with SIGKILL once epoch 2 has begun;
2. ``--resume`` without ``--config`` (in this process) finishes epoch 2 from checkpoint 1 and its
   optimiser state, with the run's config.yaml;
3. ``--stage all --epochs 4 --weights last`` with Adagrad, a cosine schedule with warmup and
   validation (in this process), with a weight set to NaN during epoch 4;
4. beside them, in fresh processes started first: one device against MirroredStrategy over
   two logical CPUs (tests/train_subprocess.py), scripts/train.py on a sample without masks, and
   a run interrupted by SIGINT (Ctrl-C) once epoch 3 has begun.

The bad-input tests build at most a model, never a training step.
"""
import contextlib
import io
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import cv2
import h5py
import keras
import numpy as np
import pytest

from leafseg.cli import train as train_command
from leafseg.training import train as T
from leafseg.cli.options import parse_overrides
from leafseg.config import load_config
from mrcnn import model as modellib
from mrcnn.optimizers import optimizer_state_path, read_optimizer_state
from mrcnn.trainable import LAYER_REGEX, trainable_layer_names
from tests.toy_data import ToyConfig, shapes_dataset
from tests.train_subprocess import MIRRORED_STEPS

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

REPO = Path(__file__).resolve().parents[3]
# The subprocess runs are held at the start of an epoch (a marker file appears) until the test's
# signal arrives, so the step counts need not outlast anything.
HEADS_STEPS = 4
INTERRUPT_STEPS = 2
ALL_STEPS = 5
# Stage 2 sets a weight to NaN after this step of epoch 4 (Keras counts from 0): step 3 is bad.
POISON_EPOCH, POISON_STEP = 3, 1
LOSS_TAGS = {f"epoch_{name}" for name in modellib.LOSS_NAMES} | {"epoch_loss"}
# Seconds a subprocess may take before the test calls it hung or lost.
PROCESS_TIMEOUT = 420


def write_prepared(root, subsets):
    """The prepared layout (ROOT/<subset>/<id>/images/<id>.png, masks/<k>.png) of toy datasets."""
    for subset, dataset in subsets.items():
        for image_id in dataset.image_ids:
            name = f"{subset}_{image_id}"
            folder = Path(root) / subset / name
            (folder / "images").mkdir(parents=True)
            (folder / "masks").mkdir()
            cv2.imwrite(str(folder / "images" / f"{name}.png"), dataset.load_image(image_id)[..., ::-1])
            masks, _ = dataset.load_mask(image_id)
            for k in range(masks.shape[-1]):
                cv2.imwrite(str(folder / "masks" / f"{k}.png"), masks[..., k].astype(np.uint8) * 255)


def spawn(args, log_path):
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable] + args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log


def finish(process, log, timeout=PROCESS_TIMEOUT):
    """(exit status, output) of a background process; kills it and fails when it does not end."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"{process.args} did not end within {timeout} s")
    finally:
        log.close()
    return process.returncode, Path(log.name).read_text()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("leaves")
    write_prepared(root / "data", {"train": shapes_dataset(4, seed=0), "val": shapes_dataset(2, seed=1)})
    ToyConfig().to_yaml(root / "toy.yaml")
    return types.SimpleNamespace(root=root, dataset=root / "data", config=root / "toy.yaml")


@pytest.fixture(scope="module")
def background(data):
    """The two checks that need a fresh process, started first so that they run beside the others."""
    broken = data.root / "broken"
    shutil.copytree(data.dataset, broken)
    for mask in (broken / "train" / "train_2" / "masks").iterdir():
        mask.unlink()
    processes = {
        "mirrored": spawn(["-m", "tests.train_subprocess", "mirrored", str(data.root / "mirrored")],
                          data.root / "mirrored.log"),
        "pipeline_error": spawn([str(REPO / "scripts" / "train.py"), "--config", str(data.config), "--dataset",
                                 str(broken), "--logs", str(data.root / "broken_logs"), "--verbose", "0",
                                 "--stage", "heads", "--epochs", "1", "--weights", "none", "--steps-per-epoch", "4",
                                 "--validation-steps", "0"], data.root / "pipeline_error.log"),
        # Held when epoch 3 begins (two checkpoints written) until the test sends SIGINT.
        "interrupted": spawn(["-m", "tests.train_subprocess", "train", str(data.root / "interrupt.marker"), "3"]
                             + common_args(data, data.root / "interrupt_logs") + [
                                 "--stage", "heads", "--epochs", "3", "--weights", "none", "--steps-per-epoch",
                                 str(INTERRUPT_STEPS), "--validation-steps", "0"], data.root / "interrupted.log"),
    }
    yield processes
    for process, log in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def common_args(data, logs):
    return ["--config", str(data.config), "--dataset", str(data.dataset), "--logs", str(logs), "--verbose", "0"]


class Probe(keras.callbacks.Callback):
    """What the trainer looks like when training starts: trainable layers, optimiser state."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        self.trainable = trainable_layer_names(self.model.net)
        self.iterations = int(optimizer.iterations.numpy())
        self.optimizer_values = [np.array(v.numpy()) for v in optimizer.variables]
        self.optimizer_class = type(optimizer).__name__

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


class Poison(keras.callbacks.Callback):
    """Sets the class-logits kernel to NaN after one step, as a diverging update would."""

    def __init__(self, epoch, step):
        super().__init__()
        self.at = (epoch, step)
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            kernel = self.model.net.get_layer("mrcnn_class_logits").weights[0]
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))


def wait_for(path, process, log, what):
    """Wait until the file ``path`` exists; fail when the process ends or takes too long first."""
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while not Path(path).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            code, output = finish(process, log)
            pytest.fail(f"the run ended (status {code}) or took too long before {what}:\n{output[-3000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def killed(data, background):
    """``leafseg train`` training the heads, killed with SIGKILL once epoch 2 has begun."""
    logs = data.root / "logs"
    marker = data.root / "killed.marker"
    process, log = spawn(["-m", "tests.train_subprocess", "train", str(marker), "2"] + common_args(data, logs) + [
        "--stage", "heads", "--epochs", "2", "--weights", "none", "--steps-per-epoch", str(HEADS_STEPS),
        "--validation-steps", "0", "--seed", "0"], data.root / "killed.log")
    wait_for(marker, process, log, "epoch 2 began")
    run_dir = next(logs.glob("toy*"))
    state_path = run_dir / "mask_rcnn_toy_0001.optimizer.hdf5"
    with h5py.File(state_path, "r") as f:
        saved = [np.array(f["optimizer"][str(i)]) for i in range(len(f["optimizer"]))]
    weights_1 = (run_dir / "mask_rcnn_toy_0001.weights.h5").read_bytes()
    process.send_signal(signal.SIGKILL)
    code, _ = finish(process, log)
    return types.SimpleNamespace(logs=logs, run_dir=run_dir, status=code, saved_state=saved, weights_1=weights_1,
                                 files=sorted(p.name for p in run_dir.iterdir()),
                                 record=json.loads((run_dir / "run.json").read_text()),
                                 saved_info=read_optimizer_state(state_path),
                                 csv_rows=[r["epoch"] for r in _csv(run_dir)])


def _csv(run_dir):
    from mrcnn.callbacks import read_csv_log

    return read_csv_log(Path(run_dir) / "training_log.csv")


@pytest.fixture(scope="module")
def resumed(data, killed):
    """``--resume`` of the killed run without --config: the config from the run's config.yaml, every
    stage option from its checkpoint."""
    probe = Probe()
    result = T.run(["--dataset", str(data.dataset), "--logs", str(killed.logs), "--verbose", "0", "--resume"],
                   callbacks=[probe])
    return types.SimpleNamespace(result=result, probe=probe)


@pytest.fixture(scope="module")
def second_stage(data, killed, resumed):
    """All layers from epoch 2 to 4 with Adagrad, cosine + warmup and validation; NaN in epoch 4."""
    probe = Probe()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = train_command.main(common_args(data, killed.logs) + [
            "--stage", "all", "--epochs", "4", "--weights", "last", "--optimizer", "adagrad", "--lr", "0.01",
            "--schedule", "cosine", "--warmup-steps", "3", "--steps-per-epoch", str(ALL_STEPS),
            "--validation-steps", "1"], callbacks=[probe, Poison(POISON_EPOCH, POISON_STEP)])
    return types.SimpleNamespace(status=status, stderr=stderr.getvalue(), probe=probe, run_dir=killed.run_dir)


# --------------------------------------------------------------------------- kill -9 and resume

def test_resume_after_kill_continues_at_the_right_epoch_with_the_optimizer_state(killed, resumed):
    assert killed.status == -signal.SIGKILL
    # Killed during epoch 2: checkpoint 1 complete (weights and optimiser state), nothing of epoch 2.
    assert "mask_rcnn_toy_0001.weights.h5" in killed.files and "mask_rcnn_toy_0001.optimizer.hdf5" in killed.files
    assert not [name for name in killed.files if "0002" in name]
    assert killed.csv_rows == ["1"]
    assert killed.saved_info["iterations"] == HEADS_STEPS
    assert killed.record["stages"][0]["last_epoch"] == 1  # the epoch saved, recorded when it was saved

    probe, result = resumed.probe, resumed.result
    assert probe.epochs == [1]  # Keras's epoch 1 is the second one
    assert probe.iterations == HEADS_STEPS
    assert probe.optimizer_class == "SGD"
    assert len(probe.optimizer_values) == len(killed.saved_state)
    for restored, saved in zip(probe.optimizer_values, killed.saved_state):
        np.testing.assert_array_equal(restored, saved)
    assert any(np.any(v != 0) for v in killed.saved_state[2:])  # momenta, not just zeros
    assert result.epoch == 2 and result.run_dir == str(killed.run_dir)
    assert result.model.config == ToyConfig(STEPS_PER_EPOCH=HEADS_STEPS, VALIDATION_STEPS=0)  # not leaf_r101
    assert result.checkpoint == str(killed.run_dir / "mask_rcnn_toy_0002.weights.h5")
    assert read_optimizer_state(optimizer_state_path(result.checkpoint))["iterations"] == 2 * HEADS_STEPS

    # Nothing earlier was lost: checkpoint 1 untouched, one CSV row per epoch, one stage resumed once.
    assert (killed.run_dir / "mask_rcnn_toy_0001.weights.h5").read_bytes() == killed.weights_1
    assert [r["epoch"] for r in _csv(killed.run_dir)][:2] == ["1", "2"]
    record = json.loads((killed.run_dir / "run.json").read_text())
    heads = record["stages"][0]
    assert (heads["stage"], heads["start_epoch"], heads["end_epoch"], heads["steps_per_epoch"]) == (
        "heads", 0, 2, HEADS_STEPS)
    assert [r["epoch"] for r in heads["resumed"]] == [1]
    assert "--resume" in record["commands"][1]["argv"]

    # The heads stage trains the heads and nothing of the backbone.
    assert probe.trainable and all(re.fullmatch(LAYER_REGEX["heads"], name) for name in probe.trainable)
    assert {"fpn_c5p5", "rpn_conv_shared", "mrcnn_mask"} <= set(probe.trainable)


# ------------------------------------------------------------------------------ two stages

def test_two_stage_run_writes_checkpoints_tensorboard_csv_and_plot(second_stage):
    run_dir = second_stage.run_dir
    stage_all = second_stage.probe
    assert stage_all.epochs == [2, 3] and stage_all.iterations == 0  # a new stage: a fresh Adagrad
    assert stage_all.optimizer_class == "Adagrad"
    assert {"conv1", "bn_conv1", "res2a_branch2a", "res5b_branch2b", "fpn_p2", "mrcnn_mask"} <= set(stage_all.trainable)

    checkpoints = sorted(p.name for p in run_dir.glob("mask_rcnn_toy_*"))
    assert checkpoints == ["mask_rcnn_toy_0001.weights.h5", "mask_rcnn_toy_0002.weights.h5",
                           "mask_rcnn_toy_0003.optimizer.hdf5", "mask_rcnn_toy_0003.weights.h5"]
    index = json.loads((run_dir / "checkpoints.json").read_text())
    assert [c["epoch"] for c in index["checkpoints"]] == [1, 2, 3]
    assert index["best"]["epoch"] == 3 and index["best"]["monitor"] == "val_loss"

    rows = _csv(run_dir)
    assert [(r["epoch"], r["stage"], r["optimizer"]) for r in rows] == [
        ("1", "heads", "sgd"), ("2", "heads", "sgd"), ("3", "all", "adagrad"), ("4", "all", "adagrad")]
    assert rows[0]["val_loss"] == "" and np.isfinite(float(rows[2]["val_loss"]))
    assert np.isnan(float(rows[3]["loss"]))
    # Cosine over 2 epochs of ALL_STEPS with 3 warmup steps: epoch 3's row has the rate of step 5.
    progress, warm = 5 / (2 * ALL_STEPS), min(5 / 3, 1.0)
    assert float(rows[2]["learning_rate"]) == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi * progress)) * warm,
                                                            rel=1e-4)
    assert (run_dir / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    scalars = tensorboard_scalars(run_dir)
    assert LOSS_TAGS | {"epoch_learning_rate"} <= set(scalars["train"])
    assert sorted(scalars["train"]["epoch_loss"]) == [0, 1, 2, 3]  # the killed run's epoch 1 included
    assert LOSS_TAGS <= set(scalars["validation"])
    assert sorted(scalars["validation"]["epoch_loss"]) == [2, 3]
    assert scalars["validation"]["epoch_loss"][2] == pytest.approx(float(rows[2]["val_loss"]), rel=1e-5)

    record = json.loads((run_dir / "run.json").read_text())
    assert [(s["stage"], s["optimizer"], s["schedule"], s["start_epoch"], s["end_epoch"], s["status"])
            for s in record["stages"]] == [("heads", "sgd", "constant", 0, 2, "completed"),
                                           ("all", "adagrad", "cosine", 2, 4, "failed")]
    assert record["stages"][1]["warmup_steps"] == 3 and record["stages"][1]["last_epoch"] == 3
    assert len(record["commands"]) == 3
    assert load_config(str(run_dir / "config.yaml")) == ToyConfig(STEPS_PER_EPOCH=ALL_STEPS, VALIDATION_STEPS=1)


def tensorboard_scalars(run_dir):
    """{"train"|"validation": {tag: {step: value}}} of a run folder's event files."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for split in ("train", "validation"):
        events = EventAccumulator(str(Path(run_dir) / split), size_guidance={"tensors": 0})
        events.Reload()
        out[split] = {tag: {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}
                      for tag in events.Tags()["tensors"]}
    return out


def test_nan_loss_stops_with_the_step_and_loss_named_and_keeps_the_good_checkpoint(second_stage, tmp_path):
    assert second_stage.status == T.EXIT_FAILED
    lines = second_stage.stderr.strip().splitlines()
    assert len(lines) == 1, second_stage.stderr
    good = second_stage.run_dir / "mask_rcnn_toy_0003.weights.h5"
    bad_step = POISON_STEP + 2
    assert lines[0].startswith(f"leafseg train: error: non-finite loss at epoch {POISON_EPOCH + 1}, step {bad_step} "
                               f"of {ALL_STEPS} (optimizer step {ALL_STEPS + bad_step}): ")
    assert "mrcnn_class_loss = nan" in lines[0] and "loss = nan" in lines[0]
    assert lines[0].endswith(f"the last good checkpoint is {good}")
    # The good checkpoint is complete and finite, and a resume would start from it.
    model = modellib.MaskRCNN("training", ToyConfig(), tmp_path)
    model.load_weights(str(good))
    assert model.epoch == 3
    assert all(np.all(np.isfinite(w.numpy())) for w in model.keras_model.weights)
    state = read_optimizer_state(optimizer_state_path(good))
    assert state["metadata"]["epoch"] == 3 and state["metadata"]["stage"]["stage"] == "all"
    message = json.loads((second_stage.run_dir / "run.json").read_text())["stages"][1]["message"]
    assert message.startswith("non-finite loss at epoch 4")


# ---------------------------------------------------------------------------------- bad input

def _run_main(argv):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = train_command.main(argv)
    return status, stderr.getvalue().strip().splitlines()


def write_legacy_weights(path):
    """A Matterport-layout .h5 whose mrcnn_bbox_fc has 81 classes' outputs (the toy model has 2)."""
    width = ToyConfig.FPN_CLASSIF_FC_LAYERS_SIZE
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"mrcnn_bbox_fc"]
        group = f.create_group("mrcnn_bbox_fc")
        group.attrs["weight_names"] = [b"mrcnn_bbox_fc/kernel:0", b"mrcnn_bbox_fc/bias:0"]
        group.create_dataset("mrcnn_bbox_fc/kernel:0", data=np.zeros((width, 81 * 4), np.float32))
        group.create_dataset("mrcnn_bbox_fc/bias:0", data=np.zeros((81 * 4,), np.float32))


@pytest.mark.parametrize("case", ["no dataset", "empty dataset", "config value", "config key", "config file",
                                  "weights mismatch", "weights file", "coco missing", "coco not here", "coco backbone",
                                  "weights best", "options missing", "set syntax", "multiworker"])
def test_bad_input_fails_before_training_with_one_line(case, data, tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    args = common_args(data, logs) + ["--stage", "heads", "--epochs", "1", "--weights", "none"]
    expected = {
        "no dataset": (["--dataset", str(tmp_path / "nowhere")], f"dataset folder not found: {tmp_path / 'nowhere'}"),
        "empty dataset": (["--dataset", str(tmp_path / "empty")], f"{tmp_path / 'empty' / 'train'} holds no samples"),
        "config value": (["--set", "IMAGE_MAX_DIM=100"], "IMAGE_MAX_DIM = 100 is invalid: expected divisible by 64"),
        "config key": (["--set", "IMAGE_MAX_DIMS=128"], "unknown config key 'IMAGE_MAX_DIMS' in arguments; did you "
                                                        "mean IMAGE_MAX_DIM"),
        "config file": (["--config", str(tmp_path / "missing.yaml")], f"cannot read config file "
                                                                       f"{tmp_path / 'missing.yaml'}"),
        "weights mismatch": (["--weights", str(tmp_path / "other.h5")],
                             f"{tmp_path / 'other.h5'}: these weights were trained with another configuration "
                             f"(1 layer differs, e.g. layer 'mrcnn_bbox_fc', weight 'mrcnn_bbox_fc/kernel:0': file "
                             f"shape (64, 324), model shape (64, 8)); pass --config with the configuration they "
                             f"were trained with"),
        "weights file": (["--weights", str(tmp_path / "nope.weights.h5")],
                         f"weights file not found: {tmp_path / 'nope.weights.h5'}"),
        "coco missing": (["--weights", "coco", "--coco-path", str(tmp_path / "mask_rcnn_coco.h5")],
                         f"COCO weights not found at {tmp_path / 'mask_rcnn_coco.h5'} (the path given). They are "
                         "never downloaded automatically: download Matterport's mask_rcnn_coco.h5"),
        "coco not here": (["--weights", "coco"], "to where it is. Or pass --coco-path PATH. For example: mkdir -p "),
        "coco backbone": (["--weights", "coco", "--coco-path", str(tmp_path / "coco.h5")],
                          f"COCO weights fit only ResNet101 presets such as leaf_r101, not {data.config} (BACKBONE "
                          "resnet18 (COCO: resnet101), BACKBONE_WIDTH 0.25 (COCO: 1.0), "),
        "weights best": (["--weights", "best"], f"--weights best: Could not find model directory under {logs}"),
        "options missing": (["--epochs", "1"], None),
        "set syntax": (["--set", "IMAGES_PER_GPU"], "--set 'IMAGES_PER_GPU': expected KEY=VALUE"),
        "multiworker": (["--strategy", "multiworker"], "--strategy multiworker needs the TF_CONFIG environment"),
    }
    extra, message = expected[case]
    if case == "empty dataset":
        (tmp_path / "empty" / "train").mkdir(parents=True)
    if case == "weights mismatch":
        write_legacy_weights(tmp_path / "other.h5")
    if case == "multiworker":
        monkeypatch.delenv("TF_CONFIG", raising=False)
    if case == "coco not here":
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
        monkeypatch.delenv("LEAFSEG_COCO_WEIGHTS", raising=False)
    if case == "coco backbone":
        (tmp_path / "coco.h5").write_bytes(b"")  # found; the config is refused before it is read
    if case == "options missing":
        args = common_args(data, logs) + ["--epochs", "1"]
        message = "--stage, --weights required (or --resume to continue the last checkpoint)"
    status, lines = _run_main(args + extra)
    assert status == T.EXIT_BAD_INPUT
    assert len(lines) == 1 and lines[0].startswith("leafseg train: error: "), lines
    assert message in lines[0]
    assert not logs.exists()  # nothing trained, nothing written


def test_error_messages_are_one_line_and_name_the_cause():
    tf_error = ("Graph execution error:\n\nDetected at node PyFunc\nError in user-defined function: "
                "SampleError: input pipeline: image_id 2 (data/train/x/images/x.png) failed: ValueError: no mask "
                "PNGs in data/train/x/masks\nTraceback (most recent call last):\n  File ...")
    assert T.describe_error(RuntimeError(tf_error)) == (
        "input pipeline: image_id 2 (data/train/x/images/x.png) failed: ValueError: no mask PNGs in data/train/x/masks")
    xla_error = ("Graph execution error:\nDetected unsupported operations when trying to compile graph "
                 "__inference_one_step_on_data_11179[] on XLA_CPU_JIT: CombinedNonMaxSuppression (No registered "
                 "'CombinedNonMaxSuppression' OpKernel for XLA_CPU_JIT devices\n...")
    assert T.describe_error(RuntimeError(xla_error)) == (
        "XLA (XLA_CPU_JIT) cannot compile the training step: unsupported operations CombinedNonMaxSuppression; "
        "train without --jit")
    assert T.describe_error(ValueError("a\n  b\nc")) == "ValueError: a b; c"
    assert parse_overrides(["LEARNING_RATE=1e-4", "RPN_ANCHOR_SCALES=[8, 16]", "TRAIN_BN=true"]) == {
        "LEARNING_RATE": "1e-4", "RPN_ANCHOR_SCALES": [8, 16], "TRAIN_BN": True}
    # The command's choices are the library's (kept apart so that --help does not import TensorFlow).
    from mrcnn.optimizers import OPTIMIZERS, SCHEDULES
    assert (T.OPTIMIZERS, T.SCHEDULES) == (OPTIMIZERS, SCHEDULES)


def test_resume_restores_the_optimizer_only_into_the_same_kind_of_stage():
    config = ToyConfig(STEPS_PER_EPOCH=7)
    saved = {"stage": "heads", "optimizer": "sgd", "learning_rate": 0.02, "schedule": "cosine", "warmup_steps": 10,
             "lr_steps": None, "lr_factor": 0.1, "patience": 5, "augment": "default", "start_epoch": 2,
             "end_epoch": 9, "steps_per_epoch": 20, "validation_steps": 3}
    start = T._Start("resume", "ckpt.weights.h5", "ckpt.optimizer.hdf5", saved)

    def resolve(*options):
        args = T.build_parser().parse_args(["--dataset", "d", "--resume", *options])
        return T.resolve_stage(args, config, start, epoch=5)

    # Nothing given again: the interrupted stage as it was, its schedule still counted from epoch 2.
    spec, restore = resolve()
    assert restore and spec.as_dict() == saved
    # Another rate or end keeps the state (the schedule is rebuilt from the restored step).
    spec, restore = resolve("--lr", "0.01", "--epochs", "12")
    assert restore and (spec.learning_rate, spec.end_epoch, spec.start_epoch) == (0.01, 12, 2)
    # Other layers, another optimiser, another kind of rate: a new stage from the checkpoint's epoch.
    for options in (["--stage", "all"], ["--optimizer", "adagrad"], ["--schedule", "constant"],
                    ["--warmup-steps", "0"]):
        spec, restore = resolve(*options)
        assert not restore and spec.start_epoch == 5, options
        assert spec.steps_per_epoch == 20 and spec.augment == "default", options  # still taken from the checkpoint
    # Without --resume the defaults apply: SGD, the config's rate and steps.
    args = T.build_parser().parse_args(["--dataset", "d", "--stage", "all", "--epochs", "8", "--weights", "none"])
    spec, restore = T.resolve_stage(args, config, T._Start("none"), epoch=5)
    assert not restore and (spec.optimizer, spec.learning_rate, spec.schedule, spec.steps_per_epoch) == (
        "sgd", config.LEARNING_RATE, "constant", 7)
    # The optimiser's default is the config's OPTIMIZER (quickstart_cpu: Adam); --optimizer wins.
    spec, _ = T.resolve_stage(args, config.replace(OPTIMIZER="adam"), T._Start("none"), epoch=5)
    assert spec.optimizer == "adam"
    args.optimizer = "adagrad"
    assert T.resolve_stage(args, config.replace(OPTIMIZER="adam"), T._Start("none"), epoch=5)[0].optimizer == "adagrad"
    args.optimizer = None
    # The step schedule drops at 2/3 and 8/9 of the stage unless told: epochs 10 and 11 of 5..12.
    spec.end_epoch, spec.schedule = 12, "step"
    assert [5 + round(7 * 2 / 3), 5 + round(7 * 8 / 9)] == [10, 11]
    assert spec.boundaries() == [(10 - 5) * 7, (11 - 5) * 7]
    spec.lr_steps = [10]
    assert spec.boundaries() == [(10 - 5) * 7]


# ------------------------------------------------------------------------- fresh processes

def test_mirrored_strategy_on_two_cpus_gives_the_losses_of_one_device(background):
    code, output = finish(*background["mirrored"])
    assert code == 0, output[-3000:]
    result = json.loads(output.strip().splitlines()[-1])
    assert result["replicas"] == 2 and len(result["devices"]) == 2
    assert len(result["one_device"]) == len(result["mirrored"]) == MIRRORED_STEPS
    # Step 1: same weights, images and ROI sample, so every loss agrees. Step 2: the weights
    # after one update, which used that same sample; the losses that do not depend on the ROI
    # sample (RPN targets come from the input pipeline; L2 from the weights alone) must agree,
    # which they do not when each replica's gradient is clipped before the sum (tensorflow#33929).
    # The second-stage losses of step 2 and everything later are left out: a replica's
    # SeedGenerator may advance differently from the single device's, so they may train on
    # other, equally valid ROI samples.
    checks = [modellib.LOSS_NAMES + ("l2_loss", "loss"), ("rpn_class_loss", "rpn_bbox_loss", "l2_loss")]
    for step, names in enumerate(checks, start=1):
        single, mirrored = result["one_device"][step - 1], result["mirrored"][step - 1]
        for name in names:
            assert mirrored[name] == pytest.approx(single[name], rel=1e-3, abs=1e-5), f"step {step} {name}"
    # The steps differ from each other: the weights moved, identically on both sides.
    assert len({round(s["loss"], 4) for s in result["one_device"]}) == MIRRORED_STEPS


def test_an_input_error_during_training_ends_the_command_with_one_line(background, data):
    """The input pipeline fails inside fit (a sample without masks): the command names the image
    on one line and exits with status 1; it does not hang tearing the failed pipeline down."""
    code, output = finish(*background["pipeline_error"])
    assert code == T.EXIT_FAILED, output[-3000:]
    broken = data.root / "broken" / "train" / "train_2"
    assert output.strip().splitlines()[-1] == (
        f"leafseg train: error: input pipeline: image_id 2 ({broken / 'images' / 'train_2.png'}) failed: "
        f"ValueError: no mask PNGs in {broken / 'masks'}")
    run_dir = next((data.root / "broken_logs").glob("toy*"))
    stage = json.loads((run_dir / "run.json").read_text())["stages"][0]
    assert stage["status"] == "failed" and stage["message"].startswith("input pipeline: image_id 2")


def test_ctrl_c_names_the_epoch_saved_and_the_resume_command(background, data):
    """SIGINT once epoch 3 has begun: two epochs are saved, run.json says so, and the one line the
    user reads names the epoch, the run folder and the command that resumes it."""
    process, log = background["interrupted"]
    wait_for(data.root / "interrupt.marker", process, log, "epoch 3 began")
    process.send_signal(signal.SIGINT)
    code, output = finish(process, log)
    assert code == T.EXIT_INTERRUPTED, output[-3000:]
    logs = data.root / "interrupt_logs"
    run_dir = next(logs.glob("toy*"))
    command = (f"leafseg train --config {data.config} --dataset {data.dataset} --logs {logs} --resume")
    assert output.strip().splitlines()[-1] == (
        f"leafseg train: interrupted; epoch 2 is saved in {run_dir}; resume with: {command}")
    stage = json.loads((run_dir / "run.json").read_text())["stages"][0]
    assert (stage["status"], stage["last_epoch"]) == ("interrupted", 2)
    assert [c["epoch"] for c in json.loads((run_dir / "checkpoints.json").read_text())["checkpoints"]] == [1, 2]
    # The command is one the parser takes, and it finds this run's config.
    args = T.build_parser().parse_args(shlex.split(command)[2:])
    assert args.resume and T.config_source(args) == str(data.config)


def test_weights_path_without_config_uses_the_config_stored_in_the_file(killed, data):
    """Checkpoints carry their config and class names; --weights PATH without --config uses it."""
    from mrcnn.weights import read_metadata

    checkpoint = killed.run_dir / "mask_rcnn_toy_0001.weights.h5"
    metadata = read_metadata(checkpoint)
    trained_with = ToyConfig(STEPS_PER_EPOCH=HEADS_STEPS, VALIDATION_STEPS=0)
    assert ToyConfig.from_yaml_text(metadata.config_yaml) == trained_with
    assert metadata.class_names == ["BG", "leaf"]
    args = T.build_parser().parse_args(["--dataset", str(data.dataset), "--stage", "all", "--epochs", "3",
                                        "--weights", str(checkpoint)])
    assert T.build_config(args, 1) == trained_with and str(checkpoint) in args.config_source
    # --weights last|best without --config: the newest run's config.yaml.
    args = T.build_parser().parse_args(["--dataset", str(data.dataset), "--logs", str(killed.logs), "--stage", "all",
                                        "--epochs", "3", "--weights", "best"])
    assert T.config_source(args) == str(killed.run_dir / "config.yaml")


def test_weights_best_is_the_best_checkpoint_by_val_loss(second_stage):
    run_dir = second_stage.run_dir
    original = (run_dir / "checkpoints.json").read_text()
    index = json.loads(original)
    assert T.best_checkpoint(run_dir / "mask_rcnn_toy_0003.weights.h5") == index["best"]["path"]
    # The best of the run of the newest checkpoint, not the newest itself, when they differ.
    index["best"] = dict(index["checkpoints"][0], monitor="loss", value=0.5)
    (run_dir / "checkpoints.json").write_text(json.dumps(index))
    try:
        assert T.best_checkpoint(run_dir / "mask_rcnn_toy_0003.weights.h5") == index["checkpoints"][0]["path"]
    finally:
        (run_dir / "checkpoints.json").write_text(original)


def test_the_command_ends_with_a_summary_of_the_best_and_last_checkpoints(tmp_path, monkeypatch, capsys):
    """Issue 26, 7: not silent after the last epoch: best and last epoch with val_loss, where they
    are, and the evaluate / predict commands to paste."""
    run_dir, dataset = tmp_path / "logs" / "leaf20261207T1050", tmp_path / "my leaves"
    (dataset / "val").mkdir(parents=True)
    run_dir.mkdir(parents=True)
    best, last = run_dir / "mask_rcnn_leaf_0007.weights.h5", run_dir / "mask_rcnn_leaf_0009.weights.h5"
    (run_dir / "checkpoints.json").write_text(json.dumps({
        "monitor": "val_loss", "best": {"epoch": 7, "monitor": "val_loss", "value": 0.8412, "path": str(best)},
        "checkpoints": [{"epoch": 7, "path": str(best), "logs": {"loss": 1.2, "val_loss": 0.8412}},
                        {"epoch": 9, "path": str(last), "logs": {"loss": 1.0, "val_loss": 0.9}}]}))
    spec = T.StageSpec("all", "sgd", 0.001, "constant", 0, None, 0.1, 5, "none", 4, 9, 10, 2)
    result = T.TrainResult(None, str(run_dir), 9, str(last), object(), spec)
    args = T.build_parser().parse_args(["--dataset", str(dataset), "--stage", "all", "--epochs", "9",
                                        "--weights", "last", "--logs", str(tmp_path / "logs")])
    text = T.training_summary(result, args)
    assert text.splitlines()[:4] == [
        f"Training done: epoch 9 of 9 (stage all), run folder {run_dir}",
        f"  best: epoch 7, val_loss 0.8412 (the lowest): {best}",
        f"  last: epoch 9, val_loss 0.9: {last}",
        f"  losses: {run_dir / 'losses.png'}, {run_dir / 'training_log.csv'}"]
    evaluate, predict = text.splitlines()[5:7]
    assert shlex.split(evaluate) == ["leafseg", "evaluate", "--weights", str(best), "--dataset", str(dataset),
                                     "--out", str(run_dir / "evaluation")]
    assert shlex.split(predict, comments=True) == ["leafseg", "predict", "--weights", str(best), "--out",
                                                   "predictions", "PHOTOS/"]

    result.summary = text
    monkeypatch.setattr(train_command, "run", lambda argv, callbacks=None: result)
    assert train_command.main(["--dataset", str(dataset)]) == 0
    assert capsys.readouterr().out == text + "\n"
