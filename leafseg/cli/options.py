"""What the ``leafseg`` commands share: argument types, each of which rejects a bad value with a
message that names it (argparse prints it beside the option's name), the options that choose a
trained model, the ``--set KEY=VALUE`` config overrides, and the logging set-up of the commands
(``--verbose``)."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import tempfile

from leafseg import counted  # noqa: F401  (the commands' messages; defined where every package may use it)

__all__ = ["positive_int", "positive_float", "fraction", "parse_overrides", "format_set", "add_set_argument",
           "add_model_arguments", "add_runtime_argument", "add_verbose_argument", "tta_views", "add_tta_argument", "quiet_tensorflow",
           "setup_command_logging", "TF_NATIVE_LOG_LINE", "VERBOSE_ENV", "counted",
]

# Set (to 1) by ``leafseg --verbose COMMAND``: every command keeps TensorFlow's log lines.
VERBOSE_ENV = "LEAFSEG_VERBOSE"
# A line TensorFlow's C++ side writes to stderr: absl's "I0000 00:00:1796385557.869194 6764
# port.cc:153] ..." (severity letter, date MMDD, time, thread, file:line; before absl is
# initialised the seconds are those since 1970), absl's notice that logging is not initialised
# yet, and the second line of the CPU-feature notice.
TF_NATIVE_LOG_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d+:\d+:\d+\.\d+ +\d+ [\w.-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: )")




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


def parse_overrides(pairs) -> dict:
    """``--set`` values, ``["KEY=VALUE", ...]`` -> {KEY: value}, each value read as YAML (``0.5``,
    ``true``, ``[8, 16]``). Raises ValueError naming the pair that is not KEY=VALUE or not YAML."""
    import yaml

    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set IMAGES_PER_GPU=1")
        try:
            overrides[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"--set {pair!r}: the value is not valid YAML ({' '.join(str(err).split())})") from err
    return overrides


def format_set(pairs) -> str:
    """The ``--set`` pairs as given, for a command's messages: ``" --set A=1 --set B=[2, 3]"``
    ("" for none)."""
    return "".join(f" --set {pair}" for pair in pairs)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """--set KEY=VALUE (repeatable; ``args.set``, a list of the pairs as given, which
    :func:`parse_overrides` reads): config values applied on top of the command's config."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, read as YAML (e.g. DETECTION_MAX_INSTANCES=100, "
                             "RPN_ANCHOR_SCALES=[8,16,32,64,128]) on top of the config the command runs with; "
                             "repeatable")


def add_model_arguments(parser: argparse.ArgumentParser, min_score_help: str) -> None:
    """--weights, --config, --set and --min-score: the trained model of evaluate, predict and
    export."""
    parser.add_argument("--weights", default="leaf-small",
                        help="leaf-small (the pretrained model installed with leafseg; the default), a .weights.h5 / "
                             "Matterport .h5 file, a training run folder (its newest checkpoint) or a --logs folder "
                             "(its newest run's)")
    parser.add_argument("--config", help="preset name, YAML file or run folder with config.yaml "
                                         "(default: the config stored in the weights file, else config.yaml beside the weights, "
                                         "else leaf_r101)")
    add_set_argument(parser)
    parser.add_argument("--min-score", type=fraction,
                        help=f"{min_score_help} (default: the config's DETECTION_MIN_CONFIDENCE)")


def add_runtime_argument(parser: argparse.ArgumentParser) -> None:
    """--runtime: what runs the network (:mod:`leafseg.models.runtime`)."""
    parser.add_argument("--runtime", choices=("auto", "tensorflow", "openvino"), default="auto",
                        help="what runs the network: auto (default: the fastest installed, OpenVINO on a CPU "
                             "where pip install 'leafseg[openvino]' added it, else TensorFlow), tensorflow or "
                             "openvino; the output's first line says which ran and why")


def add_verbose_argument(parser: argparse.ArgumentParser, uses_tensorflow: bool = True) -> None:
    """--verbose: keep the log lines of TensorFlow and the libraries that every command hides."""
    parser.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's start-up and C++ log lines and absl warnings "
                             "(hidden by default)" if uses_tensorflow else
                             "taken by every leafseg command to show TensorFlow's log lines; this one does "
                             "not load TensorFlow, so it changes nothing")


@contextlib.contextmanager
def _drop_native_stderr_lines(pattern: re.Pattern = TF_NATIVE_LOG_LINE):
    """Send what is written to file descriptor 2 meanwhile to a temporary file, then write back
    to stderr the lines that do not match ``pattern``. Native libraries write to the descriptor
    itself, past ``sys.stderr``."""
    try:
        os.fstat(2)
    except OSError:  # no stderr descriptor at all: nothing to filter
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not pattern.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def quiet_tensorflow(verbose: bool = False) -> None:
    """Hide TensorFlow's C++ log lines unless ``verbose`` or the environment variable
    ``LEAFSEG_VERBOSE`` (set by ``leafseg --verbose COMMAND``) asks for them; call before
    TensorFlow is imported.

    ``TF_CPP_MIN_LOG_LEVEL`` (3 by default here, 0 with ``verbose``; a value already in the
    environment is kept unless ``verbose``) filters what TensorFlow logs once running; level 3
    is needed for "failed call to cuInit" on a machine without a GPU, logged as an error. It
    cannot filter the lines written while TensorFlow's libraries load (oneDNN, CUDA stubs):
    absl writes everything to stderr until it is initialised (abseil-cpp pull requests 1718 and
    1957), so TensorFlow is imported here with those lines dropped from stderr. Python's absl
    logger is set to errors only. A process that dies while TensorFlow loads (say, a CPU
    without the instructions it was built for) shows its last words only with ``--verbose``.
    """
    if verbose or os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("absl").setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules:
        with _drop_native_stderr_lines():
            import tensorflow  # noqa: F401  (imported here, where its start-up lines are dropped)


def setup_command_logging(verbose: bool = False, tensorflow: bool = True) -> None:
    """Send INFO log lines to stderr, unless the caller has configured logging, and quiet
    TensorFlow (:func:`quiet_tensorflow`; imports it unless ``tensorflow`` is false). Call
    before TensorFlow is imported."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    if tensorflow:
        quiet_tensorflow(verbose)


def add_plants_arguments(parser: argparse.ArgumentParser) -> None:
    """``--plants auto|one`` and ``--grid ROWSxCOLS``: how a photograph goes to the model
    (:mod:`leafseg.inference.plants`); a bad grid is refused naming it."""
    from leafseg.inference.plants import PLANT_MODES, parse_grid

    def grid(text):
        try:
            return parse_grid(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from err

    parser.add_argument("--plants", choices=PLANT_MODES, default="auto",
                        help="auto (default): a photograph more than 3x the model's size holding several plants (a "
                             "tray, a dish, a large photograph) is split by plant and each plant's leaves are found "
                             "at the model's own resolution; one plant filling the frame goes through whole. one: "
                             "every photograph goes through whole, shrunk to the model's size")
    parser.add_argument("--grid", type=grid, metavar="ROWSxCOLS",
                        help="the photographs are regular trays of ROWS x COLS pots filling the frame: one plant per "
                             "pot, named A1, A2, ... in reading order, each reported even when empty")


def tta_views(text: str) -> int:
    """``--tta``'s value: a number of views, 1, 2, 4 or 8 (:mod:`leafseg.inference.tta`)."""
    from leafseg.inference.tta import VIEW_COUNTS

    try:
        value = int(text)
    except ValueError:
        value = None
    if value not in VIEW_COUNTS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(map(str, VIEW_COUNTS))} (views), got {text}")
    return value


class _TtaAction(argparse.Action):
    """``--tta [N]``. With ``inputs``, a value that is not a number is an input, not a count:
    ``--tta photos/`` is ``--tta 4 photos/`` (kept in ``tta_inputs``)."""

    def __init__(self, *args, inputs=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.inputs = inputs

    def __call__(self, parser, namespace, value, option_string=None):
        if isinstance(value, str):
            if self.inputs and not value.strip().lstrip("+-").isdigit():
                namespace.tta_inputs = [value]
                value = self.const
            else:
                try:
                    value = tta_views(value)
                except argparse.ArgumentTypeError as err:
                    raise argparse.ArgumentError(self, str(err)) from err
        setattr(namespace, self.dest, value)


def add_tta_argument(parser: argparse.ArgumentParser, inputs: bool = False) -> None:
    """``--tta [N]``: test-time augmentation with N views (``args.tta``; 4 when the option comes
    alone, None without it: off). ``inputs``: the command takes positional inputs, so a value
    that is not a number is one of them (``args.tta_inputs``)."""
    parser.add_argument("--tta", nargs="?", const=4, default=None, action=_TtaAction, inputs=inputs,
                        metavar="N", help="test-time augmentation: detect each image (each plant's crop in a scene) "
                                          "in N flipped and rotated views, 1, 2, 4 (alone: 4) or 8, and keep the "
                                          "leaves most views agree on, their masks fused by vote; takes N times as "
                                          "long (default: off)")
    parser.set_defaults(tta_inputs=[])
