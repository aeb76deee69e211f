"""bfloat16 and float16: the model under Keras' mixed-precision policies, and the options that choose them.

The toy model (tests/toy_data.py) trains under ``mixed_bfloat16`` with finite losses, float32
weights and no loss scaling (which ``mixed_float16`` has), and the tiny trained model
(tests/tiny_trained.py) detects under it what it detects in float32, with MaskRCNN.detect's
types. ``leafseg train --mixed-precision [float16|bfloat16]`` and ``leafseg predict --precision``
parse as documented, and ``predict --precision bfloat16`` runs end to end, as does
``benchmarks/gpu_check.py --smoke``. Whether 16 bits are faster depends on the host:
benchmarks/bench_precision.py measures it, nothing here does.
"""
import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from leafseg.cli import predict as predict_command

from leafseg.training import train
from leafseg.precision import PRECISIONS, cpu_has_bfloat16, precision_policy, precision_warning
from mrcnn import utils
from mrcnn.config import LOSS_NAMES
from mrcnn.model import MaskRCNN
from mrcnn.pipeline import build_dataset
from tests.tiny_trained import OVERRIDES, inference_model, trained_run
from tests.toy_data import ToyConfig, shapes_dataset

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

ROOT = Path(__file__).resolve().parents[2]
TRAIN_ARGV = ["--dataset", "d", "--stage", "all", "--epochs", "1", "--weights", "none"]


@pytest.fixture(autouse=True)
def float32_after():
    """Every test leaves Keras' global policy as it found it (float32)."""
    yield
    assert keras.mixed_precision.global_policy().name == "float32"


# -------------------------------------------------------------------------------- options

@pytest.mark.parametrize("extra, expected", [
    ([], None),
    (["--mixed-precision"], "float16"),             # the bare flag keeps its old meaning
    (["--mixed-precision", "--jit"], "float16"),
    (["--mixed-precision", "float16"], "float16"),
    (["--mixed-precision", "bfloat16"], "bfloat16"),
])
def test_train_mixed_precision_option(extra, expected):
    assert train.build_parser().parse_args(TRAIN_ARGV + extra).mixed_precision == expected


@pytest.mark.parametrize("command, argv", [
    (train, TRAIN_ARGV + ["--mixed-precision", "float8"]),
    (train, TRAIN_ARGV + ["--mixed-precision", "float32"]),   # float32 is the default, not a mixed precision
    (predict_command, ["photo.png", "--precision", "float8"]),
])
def test_a_bad_precision_is_refused_naming_the_option_and_the_choices(command, argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        command.build_parser().parse_args(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    option = "--mixed-precision" if command is train else "--precision"
    assert f"argument {option}: invalid choice: " in error and argv[-1] in error
    assert "float16" in error and "bfloat16" in error


@pytest.mark.parametrize("extra, expected", [([], "float32")] + [(["--precision", p], p) for p in PRECISIONS])
def test_predict_precision_option(extra, expected):
    assert predict_command.build_parser().parse_args(["photo.png", *extra]).precision == expected


@pytest.mark.parametrize("precision, gpus, cpu_bfloat16, warning", [
    ("float32", [], False, None),
    ("float16", [], True, "meant for GPUs"),
    ("bfloat16", [], False, "no bfloat16 units"),
    ("bfloat16", [], True, None),
    ("float16", [(7, 0)], False, None),
    ("bfloat16", [(9, 0)], False, None),
    ("bfloat16", [(8, 0), (7, 5)], True, "this one has 7.5"),
    ("bfloat16", [None], False, None),                  # a GPU whose capability is not known
])
def test_precision_warning_says_when_16_bits_are_slower(precision, gpus, cpu_bfloat16, warning):
    found = precision_warning(precision, gpus=gpus, cpu_bfloat16=cpu_bfloat16)
    assert found is None if warning is None else warning in found


def test_cpu_bfloat16_units_are_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_vnni\n\nprocessor\t: 1\n"
                       "flags\t\t: fpu avx512f avx512_vnni\n")
    assert not cpu_has_bfloat16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_has_bfloat16(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu amx_tile amx_bf16\n")
    assert cpu_has_bfloat16(cpuinfo)
    assert not cpu_has_bfloat16(tmp_path / "missing")


def test_precision_policy_restores_the_previous_policy():
    with precision_policy("bfloat16"):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        with pytest.raises(RuntimeError):
            with precision_policy("float16"):
                assert keras.mixed_precision.global_policy().name == "mixed_float16"
                raise RuntimeError("stop")
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, float16, got 'half'"):
        with precision_policy("half"):
            pass


# -------------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def batch():
    """One training batch (two toy images) as the input pipeline yields it."""
    return next(iter(build_dataset(shapes_dataset(2), ToyConfig(), shuffle=False, repeat=False)))


def test_training_under_mixed_bfloat16_has_finite_losses_and_no_loss_scaling(batch, tmp_path):
    keras.utils.set_random_seed(0)
    with precision_policy("bfloat16"):
        model = MaskRCNN("training", ToyConfig(), tmp_path)
    net = model.keras_model
    # Compiled outside the policy: the trainer follows the net's policy, not the global one.
    trainer = model.compile_trainer(learning_rate=0.01)
    assert not isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert {w.dtype for w in net.weights} == {"float32"}

    outputs = net(batch, training=True)
    dtypes = {name: value.dtype.name for name, value in outputs.items()}
    assert dtypes == {
        "rpn_class_logits": "bfloat16", "rpn_bbox": "bfloat16",
        "rpn_rois": "float32", "rois": "float32", "target_class_ids": "int32", "target_bbox": "float32",
        "target_mask": "float32", "active_class_ids": "float32",
        "mrcnn_class_logits": "bfloat16", "mrcnn_class": "bfloat16", "mrcnn_bbox": "bfloat16",
        "mrcnn_mask": "bfloat16",
    }
    config = ToyConfig()
    assert tuple(outputs["mrcnn_mask"].shape) == (2, config.TRAIN_ROIS_PER_IMAGE, *config.MASK_SHAPE,
                                                  config.NUM_CLASSES)

    before = [w.numpy() for w in net.trainable_weights]
    for _ in range(2):
        logs = trainer.train_on_batch(batch, return_dict=True)
        for name in (*LOSS_NAMES, "loss"):
            assert np.isfinite(float(logs[name])), (name, logs)
    assert float(logs["mrcnn_mask_loss"]) > 0  # the toy batch has positive ROIs: the mask head trained
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, net.trainable_weights)]
    assert sum(changed) > 0.9 * len(changed)
    assert {w.dtype for w in net.weights} == {"float32"}


def test_float16_training_scales_the_loss(tmp_path):
    with precision_policy("float16"):
        model = MaskRCNN("training", ToyConfig(), tmp_path)
    assert isinstance(model.compile_trainer(learning_rate=0.01).optimizer, keras.optimizers.LossScaleOptimizer)


# ------------------------------------------------------------------------------- inference

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def bfloat16_model(run):
    """The tiny trained model built under mixed_bfloat16 (with inference_model's config)."""
    with precision_policy("bfloat16"):
        model = MaskRCNN("inference", ToyConfig(IMAGES_PER_GPU=1, **OVERRIDES), Path(run["weights"]).parent)
    model.load_weights(run["weights"])
    return model


def test_detect_under_mixed_bfloat16_returns_float32_and_detect_s_types(run, bfloat16_model):
    images = [shapes_dataset(3, seed=1).load_image(i) for i in range(3)]
    molded, metas, _ = bfloat16_model.mold_inputs(images[:1])
    anchors = bfloat16_model.get_anchors(molded.shape[1:3])[np.newaxis]
    graph = bfloat16_model.keras_model([molded, metas.astype(np.float32), anchors], training=False)
    assert graph["mrcnn_mask"].dtype == tf.bfloat16 and graph["detections"].dtype == tf.float32

    # What MaskRCNN returns of the graph's outputs is float32, whatever the graph computes in.
    stages = bfloat16_model.run_graph(images[:1])
    assert {name: stages[name].dtype.name for name in graph} == {name: "float32" for name in graph}
    assert stages["mrcnn_mask"].shape == tuple(graph["mrcnn_mask"].shape)

    for image, result in zip(images, bfloat16_model.detect(images)):
        count = len(result["scores"])
        assert result["rois"].dtype == np.int32 and result["rois"].shape == (count, 4)
        assert result["class_ids"].dtype == np.int32 and result["class_ids"].shape == (count,)
        assert result["scores"].dtype == np.float32 and np.all(np.isfinite(result["scores"]))
        assert result["masks"].dtype == bool and result["masks"].shape == image.shape[:2] + (count,)


# How far a confident detection's score may move in bfloat16 (see below).
SCORE_TOLERANCE = 0.1


def test_bfloat16_detects_what_float32_detects(run, bfloat16_model):
    """Every confident detection of the float32 model is found again in bfloat16, with a close
    score. Rounding every layer to 8 significant bits moves a box of this 64 px toy model by up to
    3 px at times (measured with oneDNN on and off), so a small mask may then overlap its float32
    self by 0.7 only, and the head then classifies other pixels: a score moved by 0.041 once (a
    fresh-clone CI run, oneDNN on; other runs stayed within 4 bfloat16 steps, 0.016). Most do not
    move at all. A mask moved by 4 px on one of the smallest shapes (12 px) overlaps its float32
    self by (12 - 4) / (12 + 4) = 0.5: 0.498 was seen once (a fresh-clone CI run, oneDNN on), and
    0.352 once (oneDNN off). The toy model is trained anew in each run and not bit-reproducible,
    so no floor on a single small mask holds every time. What is asserted: every confident
    detection is found again in its place (overlap above 0.1, so none is missed), three in four
    match at overlap 0.5 (the AP50 criterion), and the mean overlap stays above 0.85.
    (SBD on held-out rosettes, the measure that matters, is benchmarks/bench_precision.py's.)"""
    float32_model = inference_model(run["weights"])
    images = [shapes_dataset(4, seed=2).load_image(i) for i in range(4)]
    best_overlaps = []
    for expected, found in zip(float32_model.detect(images), bfloat16_model.detect(images)):
        confident = expected["scores"] > 0.9
        overlaps = utils.compute_overlaps_masks(expected["masks"][..., confident], found["masks"])
        for row, score in zip(overlaps, expected["scores"][confident]):
            best = int(np.argmax(row))
            assert abs(found["scores"][best] - score) < SCORE_TOLERANCE, (score, found["scores"])
            best_overlaps.append(row[best])
    assert len(best_overlaps) >= 4  # the tiny model finds some shapes with confidence
    assert min(best_overlaps) > 0.1, best_overlaps
    assert np.mean(np.greater(best_overlaps, 0.5)) >= 0.75 and np.mean(best_overlaps) > 0.85, best_overlaps


def test_predict_with_bfloat16_end_to_end(run, tmp_path):
    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    shapes = shapes_dataset(2, seed=3)
    for i in range(2):
        assert cv2.imwrite(str(folder / f"plant{i}.png"), shapes.load_image(i)[..., ::-1])
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = predict_command.main([str(folder), "--weights", run["weights"], "--out", str(out), "--precision", "bfloat16",
                               "--quiet"])
    assert status == 0, stderr.getvalue()
    assert sorted(p.name for p in (out / "labels").glob("*.png")) == ["plant0_label.png", "plant1_label.png"]
    with open(out / "leaves.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {row["image"] for row in rows} <= {"plant0", "plant1"}


# ------------------------------------------------------------------------------ benchmarks

def run_benchmark(script, *argv, timeout=120):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *argv], capture_output=True,
                          text=True, env=env, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("script", ["bench_precision.py", "gpu_check.py"])
def test_benchmark_scripts_explain_themselves(script):
    assert "--precision" in run_benchmark(script, "--help")


def test_gpu_check_smoke_run_on_the_cpu():
    """gpu_check.py --smoke (a tiny model on 64 px, 30-40 s on two cores) runs every part in bfloat16
    and ends with its JSON summary; its speed is not judged."""
    out = run_benchmark("gpu_check.py", "--smoke", "--precision", "bfloat16", timeout=600)
    summary = json.loads(out.strip().splitlines()[-1].removeprefix("json: "))
    assert summary["ok"] and summary["precision"] == "bfloat16" and summary["meets_target"] is None
    assert sorted(summary["train"]) == ["1", "2"] and sorted(summary["detect"]) == ["1", "2"]
    assert all(f["finite"] and not f["loss_scaling"] for f in summary["train"].values())
    assert [len(f["detections"]) for f in summary["detect"].values()] == [1, 2]
    assert summary["export"]["detections"] >= 0 and summary["export"]["images_per_s"] > 0


def test_precision_benchmark_scores_openvino_as_it_scores_tensorflow(tmp_path):
    """bench_precision.py --runtime openvino: the held-out rosettes detected with OpenVINO running the
    network, scored as evaluate scores them (2 rosettes here; docs/BENCHMARKS.md has 50)."""
    from tests.optional_packages import require

    require("openvino", "openvino")
    out = run_benchmark("bench_precision.py", "--runtime", "openvino", "--precisions", "float32", "--images", "2",
                        "--train-steps", "0", "--data", str(tmp_path / "rosettes"), timeout=600)
    summary = json.loads(out.strip().splitlines()[-1].removeprefix("json: "))
    assert summary["runtime"] == "openvino" and summary["images"] == 2
    figures = summary["inference"]["float32"]
    assert len(figures["sbd_per_image"]) == 2 and 0.5 < figures["sbd"] <= 1.0 and sum(figures["count_per_image"]) > 0
