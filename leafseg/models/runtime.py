"""Which runtime runs the network at inference: TensorFlow, or OpenVINO where it is installed.

    leafseg predict photos/ --out results/                       # the fastest runtime installed
    leafseg predict photos/ --out results/ --runtime tensorflow  # TensorFlow whatever is installed
    pip install 'leafseg[openvino]'                              # adds OpenVINO

Only the network's stem changes hands (:mod:`mrcnn.openvino`): the resizing before it, the
proposals, heads and detections after it and the mask mapping are the same code for every
runtime, so the outputs agree to the stem's float rounding (the same leaves; masks within IoU
0.98 of TensorFlow's, tests/mrcnn/test_openvino.py).

The default ("auto") is the fastest runtime installed for the device: OpenVINO on a CPU when the
``openvino`` package can be imported (it runs the convolutional stem of the network; the leaf
ResNet101 config at 512 px detected in 0.84 s against TensorFlow's 1.10 s in float32 on a 2-core
AVX-512 CPU with TensorFlow's oneDNN kernels on, and in 0.31 s in bfloat16; docs/BENCHMARKS.md),
TensorFlow otherwise and whenever TensorFlow sees a GPU (OpenVINO's plugin here is the CPU's). Every command says which runtime it chose and
why; the run's settings record it, so a rerun that would resume with another runtime says so
instead of mixing the two.

Precision: OpenVINO computes in float32 unless ``--precision bfloat16`` asks for bfloat16 (which
OpenVINO would pick by itself on CPUs with bfloat16 units, changing detections silently; the
hint is always set). The Keras model behind it is built in float32 either way. float16 is for
GPUs, so it keeps TensorFlow.
"""
from __future__ import annotations

import logging

__all__ = ["RUNTIMES", "RUNTIME_CHOICES", "INSTALL_OPENVINO", "RuntimeChoice", "installed_runtimes",
           "choose_runtime", "apply_runtime", "runtime_setting", "runtime_line", "runtime_description"]

logger = logging.getLogger(__name__)

RUNTIMES = ("tensorflow", "openvino")
RUNTIME_CHOICES = ("auto", *RUNTIMES)
INSTALL_OPENVINO = "pip install 'leafseg[openvino]'"
# leafseg's precisions (leafseg.precision.PRECISIONS) as OpenVINO's inference precision hints.
OPENVINO_PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}


class RuntimeChoice(str):
    """A runtime's name ("tensorflow" or "openvino") with ``reason``: why it was chosen, in words."""

    reason: str = ""

    def __new__(cls, name, reason=""):
        choice = super().__new__(cls, name)
        choice.reason = reason
        return choice


def _openvino_available() -> bool:
    from mrcnn import openvino

    return openvino.available()


def _gpu_present() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def installed_runtimes() -> list:
    """The runtimes this environment can run: TensorFlow always, OpenVINO when it imports."""
    return ["tensorflow"] + (["openvino"] if _openvino_available() else [])


def choose_runtime(requested="auto", precision="float32") -> RuntimeChoice:
    """The runtime to use for ``requested`` ("auto", "tensorflow" or "openvino") and ``precision``.

    "auto": OpenVINO on a CPU where it is installed and takes the precision, else TensorFlow.
    Raises ValueError for an unknown name, for "openvino" where it is not installed (the message
    says how to install it), and for "openvino" with a precision it does not take (float16).
    """
    requested = requested or "auto"
    if requested not in RUNTIME_CHOICES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIME_CHOICES)}, got {requested!r}")
    if requested == "tensorflow":
        return RuntimeChoice("tensorflow", "asked for")
    if requested == "openvino":
        if not _openvino_available():
            raise ValueError(f"runtime openvino: the openvino package is not installed; {INSTALL_OPENVINO} "
                             "installs it (or use --runtime tensorflow)")
        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"runtime openvino computes in {' or '.join(OPENVINO_PRECISIONS)}, not {precision} "
                             "(float16 is for GPUs: use --runtime tensorflow)")
        return RuntimeChoice("openvino", "asked for")
    if _gpu_present():
        return RuntimeChoice("tensorflow", "the fastest here: TensorFlow runs on the GPU")
    if not _openvino_available():
        return RuntimeChoice("tensorflow", f"the only one installed; {INSTALL_OPENVINO} adds the faster OpenVINO")
    if precision not in OPENVINO_PRECISIONS:
        return RuntimeChoice("tensorflow", f"OpenVINO does not compute in {precision}")
    return RuntimeChoice("openvino", "the fastest installed on this CPU; --runtime tensorflow for TensorFlow")


def apply_runtime(model, runtime, precision="float32", threads=None):
    """Make ``model`` (an inference MaskRCNN) run its network in ``runtime`` and return ``model``.

    "tensorflow" leaves it as it is (any runtime set before is dropped); "openvino" converts its
    network (:class:`mrcnn.openvino.OpenVINORuntime`) in ``precision``'s hint.
    """
    if runtime == "tensorflow":
        if getattr(model, "runtime", None) is not None:
            model.use_runtime(None)
        return model
    if runtime != "openvino":
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    from mrcnn.openvino import OpenVINORuntime

    model.use_runtime(OpenVINORuntime(model, precision=OPENVINO_PRECISIONS[precision], threads=threads))
    return model


def runtime_setting(model) -> str:
    """The runtime as a run's settings record it: "tensorflow", "openvino f32" or "openvino bf16"."""
    runtime = getattr(model, "runtime", None)
    if runtime is None:
        return "tensorflow"
    if isinstance(runtime, str):  # (a cluster's ModelSpec names the runtime its workers run)
        return runtime if runtime == "tensorflow" else f"{runtime} {OPENVINO_PRECISIONS[model.precision]}"
    return f"{runtime.name} {runtime.precision}"


def runtime_line(model, name=None) -> str:
    """The commands' line about the runtime: "runtime OpenVINO 2026.4.1 (...): the fastest installed
    ...". name: the runtime chosen when ``model`` is not built here (a cluster's workers build it)."""
    choice = name if name is not None else getattr(model, "runtime_choice", None)
    what = str(name) if name is not None else runtime_description(model)
    reason = getattr(choice, "reason", "")
    return f"runtime {what}" + (f": {reason}" if reason else "")


def runtime_description(model) -> str:
    """What runs ``model``'s network, in words: "OpenVINO 2026.4.1 (CPU, f32)", "TensorFlow 2.21.0 (CPU,
    float32)"."""
    runtime = getattr(model, "runtime", None)
    if runtime is not None:
        return runtime.description
    import tensorflow as tf

    keras_model = getattr(model, "keras_model", None)
    policy = keras_model.dtype_policy.name if keras_model is not None else "float32"
    return f"TensorFlow {tf.__version__} ({'GPU' if _gpu_present() else 'CPU'}, {policy})"
