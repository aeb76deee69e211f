"""Optional packages that the test extra installs: a test needing one skips without it on a
developer's machine, but fails in CI (``CI`` set), where ``pip install -e ".[test]"`` installs it,
so a broken install cannot pass as skipped tests."""
import importlib
import os

import pytest


def require(module, extra):
    """``module`` imported; without it a skip (a failure under CI) naming ``pip install 'leafseg[extra]'``."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"needs {module}: pip install 'leafseg[{extra}]'")
