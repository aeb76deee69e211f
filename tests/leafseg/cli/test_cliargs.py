"""leafseg.cli.options: argument types and the model options shared by evaluate, predict and export."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leafseg.cli.options import (TF_NATIVE_LOG_LINE, _drop_native_stderr_lines, add_model_arguments, format_set,
                                 fraction, parse_overrides, positive_float, positive_int)

ROOT = Path(__file__).resolve().parents[3]
# What TensorFlow's C++ side prints on a CPU machine: absl lines (I/W/E + MMDD), the absl notice,
# the oneDNN and CPU-feature notices, "failed call to cuInit" (an error), graph cost estimates.
TF_MARKERS = ("cuInit", "oneDNN", "cost_estimator", "cpu_feature_guard", "cudart_stub", "I0000", "W0000", "E0000",
              "absl::InitializeLog")


def user_environment():
    """This process's environment without the settings the tests add (conftest quiets TensorFlow)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "LEAFSEG_VERBOSE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def tensorflow_lines(stderr):
    return [line for line in stderr.splitlines()
            if TF_NATIVE_LOG_LINE.match(line) or any(marker in line for marker in TF_MARKERS)]


def parser():
    p = argparse.ArgumentParser(prog="tool", exit_on_error=False)
    add_model_arguments(p, "keep detections scoring at least this")
    return p


def test_model_arguments_parse():
    args = parser().parse_args(["--weights", "run/", "--config", "leaf_r101", "--min-score", "0.25"])
    assert (args.weights, args.config, args.min_score) == ("run/", "leaf_r101", 0.25)
    args = parser().parse_args(["--weights", "w.h5"])
    assert args.config is None and args.min_score is None


def test_model_arguments_take_config_overrides():
    args = parser().parse_args(["--set", "IMAGE_MAX_DIM=1024", "--set", "RPN_ANCHOR_SCALES=[8, 16, 32, 64, 128]"])
    assert args.set == ["IMAGE_MAX_DIM=1024", "RPN_ANCHOR_SCALES=[8, 16, 32, 64, 128]"]
    assert parse_overrides(args.set) == {"IMAGE_MAX_DIM": 1024, "RPN_ANCHOR_SCALES": [8, 16, 32, 64, 128]}
    assert format_set(args.set) == " --set IMAGE_MAX_DIM=1024 --set RPN_ANCHOR_SCALES=[8, 16, 32, 64, 128]"
    assert parser().parse_args([]).set == [] and format_set([]) == ""


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "train"])
def test_the_commands_share_one_set_option(command):
    import importlib

    from leafseg.cli import COMMANDS

    module = importlib.import_module(COMMANDS[command][0])
    option = next(a for a in module.build_parser()._actions if "--set" in a.option_strings)
    shared = argparse.ArgumentParser()
    add_model_arguments(shared, "x")
    reference = next(a for a in shared._actions if "--set" in a.option_strings)
    assert (option.dest, option.default, option.metavar, option.help) == (
        reference.dest, reference.default, reference.metavar, reference.help)


@pytest.mark.parametrize("pairs, message", [(["IMAGE_MAX_DIM"], "--set 'IMAGE_MAX_DIM': expected KEY=VALUE"),
                                            (["=3"], "--set '=3': expected KEY=VALUE"),
                                            (["RPN_ANCHOR_SCALES=[8, 16"], "--set 'RPN_ANCHOR_SCALES=\\[8, 16': the "
                                                                           "value is not valid YAML")])
def test_set_pairs_that_are_not_key_value_are_named(pairs, message):
    with pytest.raises(ValueError, match=message):
        parse_overrides(pairs)


def test_model_arguments_help_names_the_defaults():
    text = parser().format_help()
    assert "keep detections scoring at least this (default: the config's DETECTION_MIN_CONFIDENCE)" in \
        " ".join(text.split())
    assert "config.yaml beside the weights" in " ".join(text.split())


def test_model_arguments_default_to_the_shipped_model():
    assert parser().parse_args([]).weights == "leaf-small"


@pytest.mark.parametrize("argv", [["--min-score", "-0.1"], ["--weights", "w.h5", "--min-score", "1.5"]])
def test_model_arguments_reject(argv):
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        parser().parse_args(argv)


@pytest.mark.parametrize("kind,text,value", [(positive_int, "3", 3), (positive_float, "0.5", 0.5),
                                             (fraction, "0", 0.0), (fraction, "1", 1.0)])
def test_types_accept(kind, text, value):
    assert kind(text) == value


@pytest.mark.parametrize("kind,text,message", [(positive_int, "0", "positive integer, got 0"),
                                               (positive_float, "-1", "positive number, got -1"),
                                               (fraction, "1.5", r"in \[0, 1\], got 1.5")])
def test_types_reject_naming_the_value(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        kind(text)


def test_native_log_lines_are_dropped_and_others_kept(capfd):
    with _drop_native_stderr_lines():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1796385557.869194    6764 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 00:00:1796385560.852684    6764 cuda_platform.cc:52] failed call to cuInit: "
                    b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
        os.write(2, b"W1204 12:00:01.000001    6764 op_level_cost_estimator.cc:700] Error in PredictCost()\n")
        os.write(2, b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild\n")
        os.write(2, b"a line of ours\n")
    assert capfd.readouterr().err == "a line of ours\n"


# A model command in miniature: set up logging, then import TensorFlow and run a convolution
# (device initialisation logs the cuInit error, graph optimisation the cost estimates).
TINY_COMMAND = """
import sys
from leafseg.cli.options import setup_command_logging
setup_command_logging(verbose="--verbose" in sys.argv)
import keras, tensorflow as tf
x = keras.Input((8, 8, 3))
model = keras.Model(x, keras.layers.Conv2D(2, 3)(x))
print(tf.function(model)(tf.zeros((1, 8, 8, 3))).shape)
"""


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_setup_command_logging_hides_tensorflow_lines_unless_verbose(verbose):
    done = subprocess.run([sys.executable, "-c", TINY_COMMAND] + (["--verbose"] if verbose else []),
                          capture_output=True, text=True, env=user_environment(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 6, 6, 2)"
    if verbose:
        assert tensorflow_lines(done.stderr), done.stderr
    else:
        assert tensorflow_lines(done.stderr) == [], done.stderr


def test_counts_in_words_agree():
    """Issue 26, 10: "1 image", "2 images", "1 leaf", "0 leaves" in the commands' messages."""
    from leafseg.cli.options import counted
    from leafseg.measure.metrics import format_summary

    assert [counted(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(1, "leaf", "leaves") == "1 leaf" and counted(3, "leaf", "leaves") == "3 leaves"
    assert format_summary({"n_images": 1, "sbd_mean": 0.5}).endswith("(1 image)")
    assert format_summary({"n_images": 2, "sbd_mean": 0.5}).endswith("(2 images)")
