"""Shared test set-up: quiet TensorFlow, fixed seeds, CPU only."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# The OpenVINO runtime's cache of converted stems (mrcnn.openvino.cache_dir): the tests' own, not
# the user's ~/.cache (one folder per test run, shared by its xdist workers).
if "LEAFSEG_CACHE" not in os.environ:
    import tempfile

    os.environ["LEAFSEG_CACHE"] = os.path.join(tempfile.gettempdir(), f"leafseg-test-cache-{os.getppid()}"
                                               if os.environ.get("PYTEST_XDIST_WORKER") else
                                               f"leafseg-test-cache-{os.getpid()}")

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_configure(config):
    # pycocotools' RLE decoding passes copy=False to numpy 2 (a warning per mask, not ours).
    config.addinivalue_line(
        "filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
