"""A ``leafseg`` command's ``main`` called in this process, with what it printed."""
import contextlib
import io
import types

import pytest


def run_main(main, argv):
    """``main(argv)`` with stdout and stderr captured: (status, stdout, stderr) as a namespace."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return types.SimpleNamespace(status=status, stdout=out.getvalue(), stderr=err.getvalue())


def refused(main, inputs, out, option, value, dataset=False):
    """``main`` (predict's or evaluate's, with ``--dataset`` when ``dataset``) run on ``inputs``
    with ``option value`` exits with status 2 (argparse's refusal) and leaves no ``out`` folder;
    returns what it printed on stderr, for the test to check that the message names the value."""
    argv = [str(inputs), "--out", str(out), option, value]
    if dataset:
        argv = ["--dataset", *argv]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert not out.exists()
    return err.getvalue()
