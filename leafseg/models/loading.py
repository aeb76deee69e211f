"""One place that builds a model from a config and weights: what ``--weights`` and ``--config``
of the commands (predict, evaluate, export), the inspection notebooks and the recipes name.

    model, source, weights = load_inference_model("leaf-small")         # the shipped model
    model, source, weights = load_inference_model("logs/leaf20260101T1200", min_score=0.8)
    model, source, weights = load_inference_model("leaf-small", overrides={"IMAGE_MAX_DIM": 1024,
                                                                           "IMAGE_MIN_DIM": 1024})

``weights`` is a checkpoint file, a training run folder (its newest checkpoint), a ``--logs``
folder (its newest run's), the folder of ``leafseg adapt`` (its ``adapted.weights.h5``) or the name of a model of :mod:`leafseg.models.zoo`. ``config`` is a preset
name, a YAML file or a run folder holding ``config.yaml``; without it the config stored in the
weights file is used, else the ``config.yaml`` beside it, else the ``leaf_r101`` preset.
TensorFlow is imported only when a model is built.
"""
from __future__ import annotations

import logging
from pathlib import Path

from leafseg.models import zoo
from leafseg.precision import precision_policy, precision_warning
from leafseg.config import PRESETS, config_for_weights, load_config
from leafseg.models.runs import ADAPTED_WEIGHTS, CONFIG_FILE
from mrcnn.weights import WeightsMismatchError, newest_checkpoint

__all__ = ["resolve_weights", "describe_weights", "resolve_config", "resolve_inference", "load_inference_model"]

logger = logging.getLogger(__name__)


def resolve_weights(weights) -> Path:
    """A weights file, the result of an adapt folder (its ``adapted.weights.h5``), the newest
    checkpoint (``mask_rcnn_*.h5``) of a training run folder, or of the newest run folder (by the
    time in its name) of a ``--logs`` folder, or the file of a model of :mod:`leafseg.models.zoo`
    by name (``leaf-small``) when no such path exists."""
    path = Path(weights)
    if not path.exists() and zoo.is_name(weights):
        return zoo.path(weights)
    if (path / ADAPTED_WEIGHTS).is_file():
        return path / ADAPTED_WEIGHTS
    if path.is_dir():
        try:
            return newest_checkpoint(path)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err}; pass the weights file") from None
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return path


def describe_weights(weights, path):
    """Why ``weights`` (a ``--weights`` value) resolved to the file ``path``, when it named a
    folder: which run folder and which of its checkpoints was taken, and the best one by the
    run's checkpoints.json when that is another. None for a file or a model name.

    e.g. ``--weights logs: the newest run folder in logs (by the time in its name),
    leaf20261207T1050, and its newest checkpoint, epoch 12 (val_loss 0.91); its best by val_loss
    is epoch 9 (0.84): --weights logs/leaf20261207T1050/mask_rcnn_leaf_0009.weights.h5``."""
    import json
    import re

    given, path = Path(weights), Path(path)
    if not given.is_dir() or path.name == ADAPTED_WEIGHTS:
        return None
    epoch = re.search(r"(\d+)(?:\.weights)?\.h5$", path.name)
    epoch = int(epoch.group(1)) if epoch else None
    run_dir = path.parent
    if run_dir.resolve() == given.resolve():
        text = f"--weights {weights}: a run folder, its newest checkpoint"
    else:
        text = (f"--weights {weights}: the newest run folder in it (by the time in its name) with a checkpoint, "
                f"{run_dir.name}, and its newest checkpoint")
    best = None
    try:
        index = json.loads((run_dir / "checkpoints.json").read_text(encoding="utf-8"))
        best = index.get("best")
        entry = next((c for c in index.get("checkpoints") or [] if c.get("epoch") == epoch), {})
        value = (entry.get("logs") or {}).get(index.get("monitor") or "val_loss")
    except (OSError, ValueError, AttributeError):
        value = None
    text += f", epoch {epoch}" if epoch is not None else f", {path.name}"
    if isinstance(value, (int, float)):
        text += f" ({(best or {}).get('monitor') or 'val_loss'} {value:.4g})"
    if best and best.get("epoch") != epoch and Path(best.get("path", "")).is_file():
        text += (f"; its best by {best.get('monitor', 'val_loss')} is epoch {best['epoch']} ({best['value']:.4g}): "
                 f"--weights {best['path']}")
    return text


def resolve_config(config=None, weights=None, **overrides):
    """The config to run with, and where it came from (for messages).

    config: a preset name, a YAML file, a run folder holding ``config.yaml``, or None: the
        config stored in the ``weights`` file, else the ``config.yaml`` beside it, else the
        ``leaf_r101`` preset (with a warning); see :func:`leafseg.config.config_for_weights`.
    overrides: attribute values applied on top (e.g. IMAGES_PER_GPU=1).
    """
    if config is None:
        if weights is not None:
            return config_for_weights(weights, **overrides)
        config = "leaf_r101"
    elif str(config) not in PRESETS and Path(config).is_dir():
        inside = Path(config) / CONFIG_FILE
        if not inside.is_file():
            raise FileNotFoundError(f"--config {config} is a folder without {CONFIG_FILE}")
        config = str(inside)
    return load_config(str(config), **overrides), str(config)


def resolve_inference(weights, config=None, min_score=None, overrides=None):
    """What :func:`load_inference_model` would build, without building it: (config, config
    source string, weights path). One image per call (IMAGES_PER_GPU = GPU_COUNT = 1) unless
    ``overrides`` say otherwise."""
    weights = resolve_weights(weights)
    values = {"IMAGES_PER_GPU": 1, "GPU_COUNT": 1, **(overrides or {})}
    if min_score is not None:
        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"min score must be in [0, 1], got {min_score}")
        given = values.get("DETECTION_MIN_CONFIDENCE", min_score)
        if given != min_score:
            raise ValueError(f"min score {min_score} and DETECTION_MIN_CONFIDENCE={given} of the overrides "
                             "disagree: give one of them")
        values["DETECTION_MIN_CONFIDENCE"] = float(min_score)
    config, source = resolve_config(config, weights, **values)
    return config, source, weights


def load_inference_model(weights, config=None, min_score=None, model_dir=None, precision="float32",
                         overrides=None, runtime="tensorflow"):
    """An inference-mode MaskRCNN with ``weights`` loaded.

    weights, config: see :func:`resolve_weights` and :func:`resolve_config`.
    min_score: drop detections scoring lower (sets DETECTION_MIN_CONFIDENCE, so the model's own
        cut-off is replaced, lower or higher).
    precision: what the model computes in: "float32", "bfloat16" or "float16" (Keras'
        mixed_bfloat16 / mixed_float16 policies, set while the model is built, the previous
        policy restored afterwards). The weights stay float32 and ``detect`` returns the same
        types either way; a warning is logged when the precision is slower than float32 on this
        machine (:func:`leafseg.precision.precision_warning`).
    overrides: {attribute: value} applied on top of the config before the model is built
        (``leafseg predict --set``), e.g. {"IMAGE_MAX_DIM": 1024, "IMAGE_MIN_DIM": 1024}; an
        unknown attribute or a value the config rejects is a ValueError naming it. One that
        changes the weights' shapes (BACKBONE, NUM_CLASSES, ...) fails to load the weights.
    runtime: what runs the network (:mod:`leafseg.models.runtime`): "tensorflow", "openvino"
        (the Keras model is then built in float32 and OpenVINO computes in ``precision``), or "auto"
        (:func:`leafseg.models.runtime.choose_runtime`). ``model.runtime`` is then the OpenVINO
        runtime, None for TensorFlow; ``model.runtime_choice`` the name chosen, with its ``reason``.
    Returns: (model, config source string, weights path).
    """
    from mrcnn.model import MaskRCNN  # (imported here: TensorFlow, which the commands quiet first)

    from leafseg.models.runtime import apply_runtime, choose_runtime

    config, source, weights = resolve_inference(weights, config, min_score, overrides)
    runtime = choose_runtime(runtime, precision)
    with precision_policy(precision if runtime == "tensorflow" else "float32"):
        model = MaskRCNN("inference", config, model_dir or weights.parent)
    warning = precision_warning(precision) if runtime == "tensorflow" else None
    if warning:
        logger.warning("precision %s: %s", precision, warning)
    try:
        model.load_weights(str(weights))
    except WeightsMismatchError as err:
        # The per-layer listing is for programmers; a command's user needs the cause and the fix.
        changed, fix = "", ""
        if overrides:
            changed = f" with {', '.join(sorted(overrides))} overridden"
            fix = " and override only values that leave the layers' shapes as they are"
        raise ValueError(f"{weights}: these weights were trained with another configuration than {source}{changed} "
                         f"{err.detail}; pass --config with the configuration they were trained with{fix}") from None
    apply_runtime(model, runtime, precision)
    model.runtime_choice = runtime  # (its .reason says why, for the commands' first line)
    return model, source, weights
