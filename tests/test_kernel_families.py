"""The kernel-sensitive tests under both of TensorFlow's CPU kernel families, whatever the host.

TensorFlow turns its oneDNN kernels on by default on CPUs with AVX-512 and off on AVX2-only
ones, and they behave differently where it matters here (a convolution of an empty batch
returns its input under oneDNN). CI lands on either kind of host, so these tests run again in
a child process per setting of ``TF_ENABLE_ONEDNN_OPTS``, which TensorFlow reads once, when it
is imported.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL_SENSITIVE = [
    "tests/mrcnn/test_conv.py",
    "tests/mrcnn/test_heads.py",
    "tests/mrcnn/test_model.py::test_detect_with_no_detection_when_the_mask_head_is_narrower_than_the_pyramid",
]
_ONEDNN_STATE = "from mrcnn.conv import onednn_enabled; print('oneDNN on' if onednn_enabled() else 'oneDNN off')"


def _child_env(setting):
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


@pytest.mark.parametrize("setting,state", [("0", "oneDNN off"), ("1", "oneDNN on")])
def test_kernel_sensitive_tests_pass_with_onednn(setting, state):
    env = _child_env(setting)
    # The setting takes effect in the child, and mrcnn.conv knows which kernels run.
    probe = subprocess.run([sys.executable, "-c", _ONEDNN_STATE], cwd=ROOT, env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == state, probe.stderr[-2000:]

    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          *KERNEL_SENSITIVE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, f"TF_ENABLE_ONEDNN_OPTS={setting}: {summary}\n{run.stdout[-6000:]}"
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
