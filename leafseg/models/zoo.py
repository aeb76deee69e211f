"""Pretrained models that ship with leafseg, by name.

    leafseg predict photos/ --out leaves/             # leaf-small, the default
    leafseg evaluate --weights leaf-small --dataset data/
    leafseg train --weights leaf-small --stage heads --epochs 5 --dataset mine/   # fine-tune

    from leafseg.models import zoo
    zoo.path("leaf-small")                            # the installed .weights.h5
    model.load_weights("leaf-small")                  # mrcnn.model.MaskRCNN, through mrcnn.weights

A model is a ``.weights.h5`` file in the package's ``models/`` folder (or in ``$LEAFSEG_ZOO_DIR``),
installed with leafseg; each stores the config it was trained with, so nothing else is needed to
run it. ``mrcnn`` knows no model by name: leafseg offers its models through the ``mrcnn.weights``
entry-point group (setup.py), which :func:`mrcnn.weights.resolve_named` looks up. Each model has a
card in ``docs/`` (data, recipe, figures, limits) and a recipe that rebuilds it.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = ["DEFAULT", "MODELS", "ZOO_DIR_ENV", "ModelNotFoundError", "Model", "models_dir", "path", "is_name",
           "leaf_small"]

ZOO_DIR_ENV = "LEAFSEG_ZOO_DIR"


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    file: str
    summary: str
    card: str
    recipe: str


MODELS = {
    "leaf-small": Model(
        name="leaf-small",
        file="leaf_small.weights.h5",
        summary="half-width ResNet-18 FPN Mask R-CNN at 384 px, trained from scratch on domain-randomised "
                "synthetic rosettes; leaves of top-view rosette plants",
        card="docs/MODEL_CARD_leaf_small.md",
        recipe="leafseg recipe leaf-small",
    ),
}
DEFAULT = "leaf-small"


class ModelNotFoundError(FileNotFoundError):
    """A model of the zoo whose file is not installed."""


def models_dir() -> Path:
    """Where the model files are: ``$LEAFSEG_ZOO_DIR`` if set, else the package's ``models/``."""
    return Path(os.environ.get(ZOO_DIR_ENV) or Path(__file__).resolve().parent)


def is_name(text) -> bool:
    """Whether ``text`` is the name of a model of the zoo (``leaf-small``)."""
    return isinstance(text, str) and text in MODELS


def path(name: str = DEFAULT) -> Path:
    """The installed weights file of the model ``name``.

    Raises ValueError for an unknown name and :class:`ModelNotFoundError` (a FileNotFoundError)
    naming the missing file and how to get it back.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: leafseg ships {', '.join(MODELS)}")
    model = MODELS[name]
    file = models_dir() / model.file
    if not file.is_file():
        where = f" (${ZOO_DIR_ENV} is set)" if os.environ.get(ZOO_DIR_ENV) else ""
        raise ModelNotFoundError(
            f"the {name} weights are not installed: {file} does not exist{where}. Reinstall leafseg "
            f"(pip install --force-reinstall leafseg, or pip install -e . in a clone), or rebuild the file with "
            f"'{model.recipe}' and copy its {model.file} there")
    return file


def leaf_small() -> str:
    """The path of ``leaf-small`` (the ``mrcnn.weights`` entry point of that name)."""
    return str(path("leaf-small"))
