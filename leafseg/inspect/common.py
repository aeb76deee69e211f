"""What every notebook starts with: its paths (relative to ``notebooks/`` or to the repository
root), the dataset, config and model it inspects (the built-in ones by default) and text tables."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from leafseg.inspect.assets import default_assets, default_dataset
from leafseg.models.loading import load_inference_model, resolve_config

__all__ = ["resolve_path", "load_dataset", "config_from", "load_model", "format_table"]


def resolve_path(path, what="path"):
    """``path`` as an existing absolute Path. A relative path is tried from the working directory,
    then from the repository root (the folder above ``notebooks/``: a notebook's kernel runs in
    ``notebooks/``, a user's paths are usually from the root). FileNotFoundError names every
    absolute path tried and the working directory."""
    path = Path(path).expanduser()
    cwd = Path.cwd()
    if path.is_absolute():
        tried = [path]
    else:
        roots = [cwd]
        if cwd.name == "notebooks":
            roots.append(cwd.parent)
        repository = Path(__file__).resolve().parents[2]
        if (repository / "notebooks").is_dir():
            roots.append(repository)
        tried = list(dict.fromkeys((root / path).resolve() for root in roots))
    for candidate in tried:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{what} not found: {str(path)!r}, tried {', '.join(map(str, tried))} "
                            f"(working directory {cwd})")


def _looks_like_path(value):
    return isinstance(value, os.PathLike) or (isinstance(value, str) and (
        os.sep in value or "/" in value or value.endswith((".yaml", ".yml"))))


def load_dataset(path=None, subset="train", cache_dir=None):
    """A prepared LeafDataset: ``path`` in the prepared layout or a raw folder of image + label
    pairs (colour masks or CVPPP indexed labels); None: the built-in rosettes (raw, so that
    their colour labels can be shown). subset: "train", "val" or "all"."""
    from leafseg.measure.evaluate import load_eval_dataset

    path = default_dataset(cache_dir).rosettes if path is None else resolve_path(path, "dataset")
    return load_eval_dataset(path, subset)


def config_from(config="leaf_r101", **overrides):
    """A config from a preset name, a YAML file or a run folder with config.yaml (relative paths
    found by :func:`resolve_path`); ``overrides`` (attribute=value) applied on top."""
    if _looks_like_path(config):
        config = resolve_path(config, "config")
    return resolve_config(config, **overrides)[0]


def load_model(weights=None, config=None, min_confidence=None, cache_dir=None):
    """An inference model: ``weights`` a checkpoint or a run folder (its newest checkpoint),
    None for the built-in tiny model; ``config`` a preset, YAML or run folder, None for the
    config.yaml beside the weights; ``min_confidence`` replaces DETECTION_MIN_CONFIDENCE."""
    weights = default_assets(cache_dir).weights if weights is None else resolve_path(weights, "weights")
    if _looks_like_path(config):
        config = resolve_path(config, "config")
    model, _, _ = load_inference_model(weights, config, min_score=min_confidence)
    return model


def format_table(rows, columns=None, floats="{:.4g}"):
    """Rows (dicts) as a text table with aligned columns."""
    rows = list(rows)
    if not rows:
        return "(none)"
    columns = list(columns or rows[0])

    def text(value):
        return floats.format(value) if isinstance(value, (float, np.floating)) else str(value)

    cells = [[text(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _numeric(text):
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False
