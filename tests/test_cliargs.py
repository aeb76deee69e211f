"""leafseg.cliargs: argument types and the model options shared by evaluate, predict and export."""
import argparse

import pytest

from leafseg.cliargs import add_model_arguments, fraction, positive_float, positive_int


def parser():
    p = argparse.ArgumentParser(prog="tool", exit_on_error=False)
    add_model_arguments(p, "keep detections scoring at least this")
    return p


def test_model_arguments_parse():
    args = parser().parse_args(["--weights", "run/", "--config", "leaf_r101", "--min-score", "0.25"])
    assert (args.weights, args.config, args.min_score) == ("run/", "leaf_r101", 0.25)
    args = parser().parse_args(["--weights", "w.h5"])
    assert args.config is None and args.min_score is None


def test_model_arguments_help_names_the_defaults():
    text = parser().format_help()
    assert "keep detections scoring at least this (default: the config's DETECTION_MIN_CONFIDENCE)" in \
        " ".join(text.split())
    assert "config.yaml beside the weights" in " ".join(text.split())


@pytest.mark.parametrize("argv", [["--min-score", "0.5"], ["--weights", "w.h5", "--min-score", "1.5"]])
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
