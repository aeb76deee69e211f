"""A ``leafseg`` command's ``main`` called in this process, with what it printed."""
import contextlib
import io
import types


def run_main(main, argv):
    """``main(argv)`` with stdout and stderr captured: (status, stdout, stderr) as a namespace."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return types.SimpleNamespace(status=status, stdout=out.getvalue(), stderr=err.getvalue())
