"""Compute precisions: float32, or Keras' mixed bfloat16 / float16 policies (``train
--mixed-precision``, ``predict --precision``), whether this machine computes fast in each, and the
policy in force while a model is built."""
from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["PRECISIONS", "PRECISION_POLICIES", "BFLOAT16_CPU_FLAGS", "BFLOAT16_GPU_CAPABILITY", "cpu_has_bfloat16",
           "precision_warning", "precision_policy"]

# The compute precisions the commands offer and Keras' dtype policy for each: under the mixed
# ones the layers compute in 16 bits and keep their variables (the weights) in float32.
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
PRECISIONS = tuple(PRECISION_POLICIES)
# Linux's /proc/cpuinfo flags of CPUs that compute in bfloat16 (AVX-512 BF16, AMX); oneDNN,
# TensorFlow's CPU kernels on such CPUs, uses them.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# The first NVIDIA GPU generation with bfloat16 tensor cores (Ampere: compute capability 8.0).
BFLOAT16_GPU_CAPABILITY = (8, 0)


def cpu_has_bfloat16(cpuinfo="/proc/cpuinfo") -> bool:
    """Whether this CPU computes in bfloat16: one of :data:`BFLOAT16_CPU_FLAGS` among the flags of
    ``cpuinfo`` (Linux); False where that file cannot be read (other systems)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return any(flag in flags for flag in BFLOAT16_CPU_FLAGS)


def precision_warning(precision: str, gpus=None, cpu_bfloat16=None) -> str | None:
    """Why computing in ``precision`` is likely slower than float32 on this machine, or None.

    gpus: the compute capabilities ((major, minor) tuples, None where unknown) of the GPUs
    TensorFlow uses; default: ask TensorFlow. cpu_bfloat16: whether the CPU has bfloat16 units; default
    :func:`cpu_has_bfloat16`. Both 16-bit formats pay on GPUs (bfloat16 from compute capability
    8.0, Ampere); on a CPU float16 is always slower, bfloat16 without bfloat16 units too.
    """
    if precision not in PRECISION_POLICIES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return None
    if gpus is None:
        gpus = _gpu_capabilities()
    if gpus:
        known = [tuple(c) for c in gpus if c]
        if precision == "bfloat16" and known and min(known) < BFLOAT16_GPU_CAPABILITY:
            return (f"bfloat16 needs a GPU of compute capability {'.'.join(map(str, BFLOAT16_GPU_CAPABILITY))} "
                    f"or higher (Ampere) to be fast; this one has {'.'.join(map(str, min(known)))}: use float16")
        return None
    if precision == "float16":
        return "float16 is meant for GPUs; on this CPU it is slower than float32, not faster"
    if not (cpu_has_bfloat16() if cpu_bfloat16 is None else cpu_bfloat16):
        return (f"this CPU has no bfloat16 units (no {' or '.join(BFLOAT16_CPU_FLAGS)} flag): bfloat16 is "
                "slower than float32 here, not faster")
    return None


def _gpu_capabilities() -> list:
    """(major, minor) compute capability of each GPU TensorFlow sees (None where unknown)."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        except (ValueError, RuntimeError):
            capability = None
        capabilities.append(tuple(capability) if capability else None)
    return capabilities


@contextlib.contextmanager
def precision_policy(precision: str):
    """Keras' global dtype policy for ``precision`` (one of :data:`PRECISIONS`) meanwhile, the one
    before afterwards. A layer takes the policy in force when it is created, so build the model
    (and its trainer) inside; it keeps computing in that precision afterwards."""
    import keras

    if precision not in PRECISION_POLICIES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
