"""The ``leafseg`` command: its documentation, each sub-command's help, quiet TensorFlow."""
import subprocess
import sys

import pytest

from leafseg import cli
from tests.leafseg.cli.test_cliargs import tensorflow_lines, user_environment


def test_docstring_lists_every_command():
    listed = {line.split()[1] for line in cli.__doc__.splitlines() if line.strip().startswith("leafseg ")}
    assert listed == set(cli.COMMANDS)


def test_usage_lists_every_command():
    text = cli.usage()
    assert all(f"\n  {name} " in text for name in cli.COMMANDS)


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_help_names_the_command(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: leafseg {command} "), text[:80]
    assert "--verbose" in text


# Cheap invocations of the commands that load TensorFlow: each imports it, then stops at bad input.
TENSORFLOW_COMMANDS = {
    "train": (["train", "--stage", "heads", "--dataset", "missing", "--weights", "none", "--epochs", "1"], 2,
              "dataset folder not found"),
    "bench": (["bench", "--skip", "training", "--skip", "inference"], 0, ""),
    "evaluate": (["evaluate", "--weights", "missing.h5", "--dataset", "missing", "--out", "ev"], 2,
                 "evaluate: error:"),
    "predict": (["predict", "--weights", "missing.h5", "--out", "pr", "x.png"], 2, "predict: error:"),
    "export": (["export", "--weights", "missing.h5", "--out", "ex"], 2, "export: error:"),
    "adapt": (["adapt", "x.png", "--weights", "missing.h5", "--out", "ad"], 2, "adapt: error:"),
}


@pytest.mark.parametrize("command", list(TENSORFLOW_COMMANDS))
def test_commands_hide_tensorflow_start_up_lines(command, tmp_path):
    argv, status, message = TENSORFLOW_COMMANDS[command]
    done = subprocess.run([sys.executable, "-m", "leafseg.cli", *argv], capture_output=True, text=True,
                          cwd=tmp_path, env=user_environment(), timeout=300)
    assert done.returncode == status, done.stderr
    assert message in done.stderr
    assert tensorflow_lines(done.stderr) == [], done.stderr


def test_verbose_before_the_command_keeps_tensorflow_lines(tmp_path):
    done = subprocess.run([sys.executable, "-m", "leafseg.cli", "--verbose", "export", "--weights", "missing.h5",
                           "--out", "ex"], capture_output=True, text=True, cwd=tmp_path, env=user_environment(),
                          timeout=300)
    assert done.returncode == 2
    assert "export: error:" in done.stderr
    assert tensorflow_lines(done.stderr), done.stderr


@pytest.mark.parametrize("flag,shown", [(["--verbose"], True), (["--verbose", "2"], False)])
def test_train_verbose_alone_keeps_tensorflow_lines_and_with_a_number_sets_progress(flag, shown, tmp_path):
    """train's --verbose N is Keras' progress display (Matterport's meaning); alone, it is every
    command's --verbose."""
    argv = ["train", *flag, "--stage", "heads", "--dataset", "missing", "--weights", "none", "--epochs", "1"]
    done = subprocess.run([sys.executable, "-m", "leafseg.cli", *argv], capture_output=True, text=True,
                          cwd=tmp_path, env=user_environment(), timeout=300)
    # This error comes after TensorFlow is loaded (strategy and config are built first).
    assert done.returncode == 2 and "dataset folder not found: missing" in done.stderr, done.stderr
    assert bool(tensorflow_lines(done.stderr)) == shown, done.stderr
