"""What the ``leafseg`` commands share: argument types, each of which rejects a bad value with a
message that names it (argparse prints it beside the option's name), the options that choose a
trained model, and the logging set-up of the model commands."""
from __future__ import annotations

import argparse
import logging
import os
import sys

__all__ = ["positive_int", "positive_float", "fraction", "add_model_arguments", "setup_command_logging"]


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    """A number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1] (a score cut-off)."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser, min_score_help: str) -> None:
    """--weights, --config and --min-score: the trained model of evaluate, predict and export."""
    parser.add_argument("--weights", required=True,
                        help="a .weights.h5 / Matterport .h5 file, or a training run folder")
    parser.add_argument("--config", help="preset name, YAML file or run folder with config.yaml "
                                         "(default: config.yaml beside the weights, else leaf_r101)")
    parser.add_argument("--min-score", type=fraction,
                        help=f"{min_score_help} (default: the config's DETECTION_MIN_CONFIDENCE)")


def setup_command_logging() -> None:
    """Quiet TensorFlow's C++ notes (graph cost estimates, CPU features: noise to a user) and send
    INFO log lines to stderr, unless the caller has configured logging. Call before TensorFlow
    is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
