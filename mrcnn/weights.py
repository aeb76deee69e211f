"""Model weights: Matterport / Keras-2 ``.h5`` files by layer name, native Keras 3 checkpoints.

Two file formats meet here.

Legacy (Keras 2 ``save_weights``, what Matterport's ``mask_rcnn_coco.h5`` and every model trained
with Matterport's code contain): the root attribute ``layer_names`` lists the layers; the group of
each layer has an attribute ``weight_names`` (e.g. ``b"conv1/kernel:0"``) and the arrays at
``group[weight_name]``, in the order of the layer's weights. Files written by ``model.save()``
hold the same layout under a ``model_weights`` group. :func:`load_legacy_h5` reads them with h5py,
by layer name, with shapes checked; :func:`save_legacy_h5` writes them.

Native (Keras 3 ``model.save_weights("x.weights.h5")``): a ``layers`` group, one sub-group per
layer keyed by class (``conv2d_3``), the layer's name in the attribute ``name`` of its ``vars``
group and its arrays at ``vars/0``, ``vars/1``, ...; nested models have their own ``layers``.
:func:`save_weights` / :func:`load_weights` wrap Keras (same architecture required, loaded by
structure); :func:`load_weights_auto` recognises either format by content and loads by layer
name, so a checkpoint saved from the training model loads into the inference model and
``exclude`` works for both formats.

Loading by name (both formats):

- Each layer of the file is matched to the model's layer of that name, searched through nested
  models (Matterport's ``rpn_model``) and ``TimeDistributed`` wrappers (the weights belong to the
  wrapped layer; the wrapper's name and the wrapped layer's name both match).
- A legacy file stores a nested model as ONE layer: ``rpn_model`` with six arrays. When its
  weight names name the sub-layers (``rpn_class_raw/kernel:0``) the arrays go to those sub-layers,
  which can then be excluded one by one; otherwise they are assigned in order to the nested
  model's weights.
- ``exclude`` is a list of exact layer names, as in Matterport (no regular expressions, so that a
  name like ``mrcnn_mask`` cannot silently exclude ``mrcnn_mask_conv1``). For Matterport's COCO
  file and a different ``NUM_CLASSES``::

      exclude=["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]

- Every check (file readable, at least one layer in common, array counts, shapes) is made
  before any weight is assigned: a failed load leaves the model unchanged.
- The returned :class:`LoadReport` lists the layers loaded, excluded, skipped, missing from the
  file (they keep their initial values) and present in the file but unused by the model.

Where to get the COCO weights
-----------------------------
Matterport published ``mask_rcnn_coco.h5`` (about 246 MB, ResNet-101, NUM_CLASSES = 81) as an
asset of the v2.0 release of matterport/Mask_RCNN on GitHub:

    https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5

Nothing is downloaded at run time. Put the file at ``~/.keras/models/mask_rcnn_coco.h5``
(``$KERAS_HOME/models/`` when ``KERAS_HOME`` is set), or anywhere and point the environment
variable ``LEAFSEG_COCO_WEIGHTS`` at it, or pass its path; :func:`resolve_coco_weights` finds it.
The file is a ResNet-101 model with the standard widths: it fits only configs with
``BACKBONE = "resnet101"``, ``BACKBONE_WIDTH = 1.0`` and Matterport's head widths.

Weights that describe themselves
--------------------------------
:func:`save_weights` can store the config the weights were trained with (``Config.to_yaml_text()``)
and the dataset's class names in the file's root attributes ``config_yaml`` and ``class_names``;
:func:`read_metadata` reads them back (None for files without them, such as Matterport's).
"""
import dataclasses
import datetime
import logging
import os
import re

import h5py
import numpy as np

from mrcnn.fileio import atomic_path

__all__ = [
    "WeightsError",
    "LoadReport",
    "COCO_WEIGHTS_URL",
    "COCO_WEIGHTS_FILENAME",
    "COCO_WEIGHTS_ENV",
    "COCO_EXCLUDE",
    "load_legacy_h5",
    "save_legacy_h5",
    "save_weights",
    "load_weights",
    "load_weights_auto",
    "detect_format",
    "checkpoints_in",
    "run_folder",
    "NAMED_WEIGHTS_GROUP",
    "named_weights",
    "resolve_named",
    "resolve_coco_weights",
    "coco_weights_help",
    "WeightsMetadata",
    "read_metadata",
    "write_metadata",
    "WeightsMismatchError",
]

logger = logging.getLogger(__name__)

COCO_WEIGHTS_URL = ("https://github.com/matterport/Mask_RCNN/releases/download/v2.0/"
                    "mask_rcnn_coco.h5")
COCO_WEIGHTS_FILENAME = "mask_rcnn_coco.h5"
COCO_WEIGHTS_ENV = "LEAFSEG_COCO_WEIGHTS"
# The COCO file's class-specific layers (81 classes); exclude them for any other NUM_CLASSES.
COCO_EXCLUDE = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask")

NATIVE_SUFFIX = ".weights.h5"
# Checkpoints: <model_dir>/<name><YYYYmmddTHHMM>/mask_rcnn_<name>_<epoch:04d>.weights.h5
# (Matterport's .h5 names are recognised too, for find_last and set_log_dir).
_CHECKPOINT_RE = re.compile(r".*[/\\][\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]mask\_rcnn\_[\w-]+(\d{4})\.(weights\.)?h5$")
# Keras 2 splits an attribute larger than the HDF5 object-header limit into name0, name1, ...
_HDF5_ATTR_LIMIT = 64512
_SHOWN_NAMES = 8


class WeightsError(ValueError):
    """A weights file cannot be loaded into (or written from) this model."""


class WeightsFileNotFoundError(WeightsError, FileNotFoundError):
    """The weights file does not exist (catch it as WeightsError or FileNotFoundError)."""


class WeightsMismatchError(WeightsError):
    """The file's layers have other shapes than the model's: weights of another configuration.

    The message's first line says so in words; the per-layer detail follows. ``headline`` is
    that first line, ``problems`` the per-layer lines, ``layers`` the layers that differ.
    """

    def __init__(self, path, problems, layers):
        self.path, self.problems, self.layers = path, list(problems), list(layers)
        count = len(self.layers)
        # "(2 layers differ, e.g. layer 'x', weight 'x/kernel:0': file shape ..., model shape ...)"
        self.detail = (f"({count} layer{'s' if count != 1 else ''} differ{'' if count != 1 else 's'}, "
                       f"e.g. {self.problems[0]})")
        self.headline = f"{path} does not fit the model: these weights were trained with another configuration " \
                        f"{self.detail}"
        super().__init__(
            self.headline + "\n  " + "\n  ".join(self.problems) +
            f"\nBuild the model with the configuration the weights were trained with, or exclude the layers "
            f"that differ, e.g. exclude={self.layers!r} (for Matterport's COCO file and another NUM_CLASSES: "
            f"exclude={list(COCO_EXCLUDE)!r}), or pass skip_mismatch=True. Nothing was loaded.")


@dataclasses.dataclass
class WeightsMetadata:
    """What a weights file says about itself: the config's YAML text and the class names (either
    may be None)."""
    config_yaml: str | None = None
    class_names: list | None = None


_CONFIG_ATTR = "config_yaml"
_CLASS_NAMES_ATTR = "class_names"


def write_metadata(path, config_yaml=None, class_names=None):
    """Store the config's YAML text and the class names in an HDF5 weights file's root attributes
    (in place; :func:`save_weights` calls it on its temporary file before the rename)."""
    with h5py.File(os.fspath(path), "a") as f:
        if config_yaml is not None:
            f.attrs[_CONFIG_ATTR] = str(config_yaml).encode("utf8")
        if class_names is not None:
            _write_str_list(f.attrs, _CLASS_NAMES_ATTR, [str(n) for n in class_names])


def read_metadata(path):
    """The :class:`WeightsMetadata` stored in a weights file, or None when it has none (files
    written before, or by other programs such as Matterport's)."""
    path = _check_file(path)
    with _open(path) as f:
        text = f.attrs.get(_CONFIG_ATTR)
        names = _read_str_list(f.attrs, _CLASS_NAMES_ATTR)
    if text is None and names is None:
        return None
    return WeightsMetadata(None if text is None else _as_str(text), names)


@dataclasses.dataclass
class LoadReport:
    """What a load by name did.

    path: the file read. format: "legacy" (Keras 2 layout) or "native" (Keras 3).
    loaded: file layers whose arrays were assigned (a nested model counts once).
    excluded: file layers (or sub-layers of a nested model) skipped because of `exclude`.
    skipped_mismatch: file layers skipped because of a count or shape mismatch
        (only with skip_mismatch=True).
    missing_in_file: model layers with weights that the file does not provide and that were not
        excluded; they keep their current values.
    unused_in_file: file layers with weights that match no layer of the model.
    num_arrays: arrays assigned.
    """

    path: str
    format: str
    loaded: list = dataclasses.field(default_factory=list)
    excluded: list = dataclasses.field(default_factory=list)
    skipped_mismatch: list = dataclasses.field(default_factory=list)
    missing_in_file: list = dataclasses.field(default_factory=list)
    unused_in_file: list = dataclasses.field(default_factory=list)
    num_arrays: int = 0

    def summary(self):
        lines = [f"Loaded {len(self.loaded)} layers ({self.num_arrays} arrays) from "
                 f"{self.path} ({self.format} format)."]
        for label, names in (("excluded", self.excluded),
                             ("skipped (mismatch)", self.skipped_mismatch),
                             ("missing in file, left as they were", self.missing_in_file),
                             ("in file but not in model", self.unused_in_file)):
            if names:
                lines.append(f"  {label} ({len(names)}): {_short_list(names)}")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


# ---------------------------------------------------------------------------------------------
# Reading files

@dataclasses.dataclass
class _FileLayer:
    """One layer of a weights file: its name, the names of its arrays and the h5py datasets."""
    name: str
    weight_names: list
    datasets: list


def _short_list(names, n=_SHOWN_NAMES):
    names = list(names)
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def _as_str(value):
    return value.decode("utf8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _read_str_list(attrs, key):
    """A list-of-strings attribute, bytes or str, chunked (key0, key1, ...) or not."""
    if key in attrs:
        values = [attrs[key]]
    else:
        values, i = [], 0
        while f"{key}{i}" in attrs:
            values.append(attrs[f"{key}{i}"])
            i += 1
        if not values:
            return None
    names = []
    for value in values:
        if isinstance(value, h5py.Empty):
            continue
        names.extend(_as_str(v) for v in np.atleast_1d(np.asarray(value)))
    return names


def _write_str_list(attrs, key, names):
    data = np.array([n.encode("utf8") for n in names], dtype=bytes)
    if data.nbytes <= _HDF5_ATTR_LIMIT:
        attrs[key] = data
        return
    num_chunks = int(np.ceil(data.nbytes / _HDF5_ATTR_LIMIT))
    for i, chunk in enumerate(np.array_split(data, num_chunks)):
        attrs[f"{key}{i}"] = chunk


def _check_file(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        if os.path.basename(path) == COCO_WEIGHTS_FILENAME:
            raise WeightsFileNotFoundError(f"Weights file not found: {path}. " + coco_weights_help())
        raise WeightsFileNotFoundError(f"Weights file not found: {path}")
    if os.path.isdir(path):
        raise WeightsError(f"Weights path is a directory, not a file: {path}")
    if not os.access(path, os.R_OK):
        raise WeightsError(f"Cannot read weights file {path}: permission denied")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as e:
        raise WeightsError(f"Cannot read weights file {path}: {e}") from e
    if not is_hdf5:
        hint = (" (a .keras archive: load it with model.load_weights or keras.models.load_model)"
                if path.endswith(".keras") else "")
        raise WeightsError(f"Not an HDF5 weights file: {path}{hint}")
    return path


def _open(path):
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"Cannot read weights file {path}: {e}") from e


def _legacy_root(f):
    """The group holding `layer_names` in a Keras 2 file, or None."""
    if _read_str_list(f.attrs, "layer_names") is not None:
        return f
    if "model_weights" in f and _read_str_list(f["model_weights"].attrs, "layer_names") is not None:
        return f["model_weights"]
    return None


def _format_of(f):
    if _legacy_root(f) is not None:
        return "legacy"
    if isinstance(f.get("layers"), h5py.Group) or isinstance(f.get("vars"), h5py.Group):
        return "native"
    return None


NAMED_WEIGHTS_GROUP = "mrcnn.weights"


def named_weights():
    """Weights that installed packages offer by name: {name: entry point}. A package declares
    ``name = module:function`` in the ``mrcnn.weights`` entry-point group; the function returns the
    file's path (leafseg offers ``leaf-small`` this way)."""
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group=NAMED_WEIGHTS_GROUP)}


def resolve_named(filepath):
    """``filepath`` itself when it exists or names no weights; else the path of the named weights
    an installed package offers (see :func:`named_weights`). Errors of that package's function
    (e.g. its file is not installed) pass through."""
    text = os.fspath(filepath)
    if os.path.exists(text):
        return filepath
    entry = named_weights().get(text)
    return filepath if entry is None else entry.load()()


def checkpoints_in(folder):
    """The training checkpoints in a run folder, oldest epoch first: ``mask_rcnn_*.weights.h5``
    (Keras 3) and Matterport's ``mask_rcnn_*NNNN.h5``."""
    from pathlib import Path

    folder = Path(folder)
    return sorted(list(folder.glob("mask_rcnn_*.weights.h5")) + list(folder.glob("mask_rcnn_*[0-9].h5")))


def newest_checkpoint(folder, prefix=""):
    """The newest training checkpoint under ``folder``: its own newest one when it is a run folder,
    else the newest of the newest run folder in it (by the time at the end of the run's name) whose
    name starts with ``prefix`` (case-insensitive) and that holds one.

    Raises FileNotFoundError naming the folder when there is none.
    """
    from pathlib import Path

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Could not find model directory under {folder} (no such folder)")
    checkpoints = checkpoints_in(folder)
    if checkpoints:
        return checkpoints[-1]
    prefix = prefix.lower()
    runs = sorted((run for run in folder.iterdir() if run.is_dir() and run.name.lower().startswith(prefix)),
                  key=lambda run: (run.name[-13:], run.name))
    if not runs:
        raise FileNotFoundError(f"Could not find model directory under {folder} ({folder} holds no checkpoint "
                                f"(mask_rcnn_*.weights.h5) and no run folder named {prefix}*)")
    for run in reversed(runs):
        checkpoints = checkpoints_in(run)
        if checkpoints:
            return checkpoints[-1]
    raise FileNotFoundError(f"{folder} holds no checkpoint (mask_rcnn_*.weights.h5), nor does any run folder in it: "
                            f"{', '.join(run.name for run in runs)}")


def run_folder(model_dir, name, model_path=None):
    """Where a MaskRCNN's training run writes (``MaskRCNN.set_log_dir``): a new run folder
    ``<model_dir>/<name><YYYYmmddTHHMM>`` of the current time, or the run of ``model_path`` when
    that is a checkpoint of one (its folder and epoch, to continue it).

    Returns: (log_dir, checkpoint_path with an ``{epoch:04d}`` field, epoch). The epoch is that of
    ``model_path``'s checkpoint, else 0: the file holds the weights after epoch N, so training
    continues with N + 1 (Keras counts from 0, checkpoint names from 1).
    """
    from pathlib import Path

    epoch = 0
    now = datetime.datetime.now()
    if model_path:
        match = _CHECKPOINT_RE.match(str(Path(model_path).resolve()))
        if match:
            now = datetime.datetime(*map(int, match.groups()[:5]))
            epoch = int(match.group(6))
    name = (name or "").lower()
    log_dir = os.path.join(model_dir, f"{name}{now:%Y%m%dT%H%M}")
    checkpoint_path = os.path.join(log_dir, f"mask_rcnn_{name}_*epoch*.weights.h5").replace("*epoch*", "{epoch:04d}")
    return log_dir, checkpoint_path, epoch


def detect_format(path):
    """"legacy" (Keras 2 / Matterport layout) or "native" (Keras 3 .weights.h5) by content.

    Raises WeightsError for a file that is neither, naming it.
    """
    path = _check_file(path)
    with _open(path) as f:
        fmt = _format_of(f)
        keys = list(f.keys())
    if fmt is None:
        raise WeightsError(
            f"{path} is an HDF5 file but not a Keras weights file: no root attribute "
            f"'layer_names' (Keras 2 / Matterport) and no 'layers' group (Keras 3). "
            f"Top-level keys: {_short_list(keys) or 'none'}")
    return fmt


def _read_legacy(root, path):
    layers = []
    for name in _read_str_list(root.attrs, "layer_names"):
        if name not in root:
            raise WeightsError(f"{path}: layer '{name}' is listed in 'layer_names' "
                               f"but has no group")
        group = root[name]
        weight_names = _read_str_list(group.attrs, "weight_names") or []
        datasets = []
        for weight_name in weight_names:
            if weight_name not in group:
                raise WeightsError(f"{path}: layer '{name}' lists weight '{weight_name}' "
                                   f"but the file has no such array")
            datasets.append(group[weight_name])
        layers.append(_FileLayer(name, weight_names, datasets))
    return layers


def _native_vars(vars_group):
    keys = sorted((k for k in vars_group if isinstance(vars_group[k], h5py.Dataset)),
                  key=lambda k: (len(k), k))
    return [vars_group[k] for k in keys]


def _native_gather(group, prefix):
    """All arrays of a non-container layer: its own vars, then its sub-objects' (TimeDistributed's
    `layer`), depth first."""
    names, datasets = [], []
    if isinstance(group.get("vars"), h5py.Group):
        own = _native_vars(group["vars"])
        names += [f"{prefix}/{i}" for i in range(len(own))]
        datasets += own
    for key in sorted(group):
        if key != "vars" and isinstance(group[key], h5py.Group):
            sub_names, sub_datasets = _native_gather(group[key], f"{prefix}/{key}")
            names += sub_names
            datasets += sub_datasets
    return names, datasets


def _read_native(f):
    """Layers with arrays of a Keras 3 file; nested models are flattened into their layers."""
    layers = []

    def walk(container):
        for key in container["layers"]:
            group = container["layers"][key]
            if not isinstance(group, h5py.Group):
                continue
            if isinstance(group.get("layers"), h5py.Group):
                walk(group)
                continue
            vars_group = group.get("vars")
            name = _as_str(vars_group.attrs["name"]) if (
                isinstance(vars_group, h5py.Group) and "name" in vars_group.attrs) else key
            weight_names, datasets = _native_gather(group, name)
            if datasets:
                layers.append(_FileLayer(name, weight_names, datasets))

    if isinstance(f.get("layers"), h5py.Group):
        walk(f)
    return layers


# ---------------------------------------------------------------------------------------------
# The model side

def _is_model(layer):
    import keras
    return isinstance(layer, keras.Model)


def _wrapped(layer):
    import keras
    return layer.layer if isinstance(layer, keras.layers.Wrapper) else None


def _layer_index(model):
    """Layer name -> layer, breadth first through nested models and wrappers: a top-level name
    wins over a nested one, a wrapper's name over the wrapped layer's."""
    index, queue = {}, list(model.layers)
    while queue:
        layer = queue.pop(0)
        index.setdefault(layer.name, layer)
        if _is_model(layer):
            queue.extend(layer.layers)
        elif _wrapped(layer) is not None:
            queue.append(_wrapped(layer))
    return index


def _weight_leaves(model):
    """(name, layer) of every layer with weights that is not a model: the units a file covers.
    A wrapper counts as one leaf under its own name."""
    leaves = []
    for layer in model.layers:
        if _is_model(layer):
            leaves.extend(_weight_leaves(layer))
        elif layer.weights:
            leaves.append((layer.name, layer))
    return leaves


def _normalise_exclude(exclude):
    if exclude is None:
        return set()
    if isinstance(exclude, str):
        return {exclude}
    names = set(exclude)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"exclude must be layer names (str), got {bad!r}")
    return names


def _split_nested(file_layer, nested):
    """Map a legacy file's single group for a nested model onto its sub-layers by the weight
    names (`rpn_class_raw/kernel:0` -> rpn_class_raw), or None when the names do not tell."""
    leaves = dict(_weight_leaves(nested))
    parts = {}
    for weight_name, dataset in zip(file_layer.weight_names, file_layer.datasets):
        owners = [c for c in weight_name.split("/")[:-1] if c in leaves]
        if not owners:
            return None
        names, datasets = parts.setdefault(owners[-1], ([], []))
        names.append(weight_name)
        datasets.append(dataset)
    if set(parts) != set(leaves):
        return None
    # Keep the nested model's own order of sub-layers, not the file's.
    return [(name, leaves[name], *parts[name]) for name in leaves]


# ---------------------------------------------------------------------------------------------
# Loading by name

def _load_by_name(model, path, fmt, file_layers, exclude, skip_mismatch, verbose):
    exclude = _normalise_exclude(exclude)
    report = LoadReport(path=path, format=fmt)
    index = _layer_index(model)
    # Excluding a nested model excludes its layers (native files list them one by one).
    for name in list(exclude):
        if name in index and _is_model(index[name]):
            exclude.update(leaf for leaf, _ in _weight_leaves(index[name]))
    weighted_file_layers = [fl for fl in file_layers if fl.datasets]
    if not weighted_file_layers:
        raise WeightsError(f"{path} contains no weights (layers in file: "
                           f"{_short_list(fl.name for fl in file_layers) or 'none'})")

    # Units to load: (report name, model layer name, model layer, file weight names, datasets)
    units = []
    for fl in weighted_file_layers:
        layer = index.get(fl.name)
        if layer is None:
            report.unused_in_file.append(fl.name)
            continue
        if fl.name in exclude:
            report.excluded.append(fl.name)
            continue
        split = _split_nested(fl, layer) if _is_model(layer) else None
        if split is None:
            inner = ([name for name, _ in _weight_leaves(layer)] if _is_model(layer) else [])
            excluded_inside = sorted(exclude.intersection(inner))
            if excluded_inside:
                raise WeightsError(
                    f"{path}: cannot exclude {excluded_inside} alone: the file stores them inside "
                    f"'{fl.name}' with weight names that do not identify them; "
                    f"exclude '{fl.name}' instead")
            units.append((fl.name, fl.name, layer, fl.weight_names, fl.datasets))
            continue
        for sub_name, sub_layer, names, datasets in split:
            if sub_name in exclude:
                report.excluded.append(sub_name)
            else:
                units.append((fl.name, sub_name, sub_layer, names, datasets))

    if not units:
        if report.excluded:
            raise WeightsError(f"{path}: every layer it shares with the model is excluded "
                               f"({_short_list(report.excluded)}); nothing to load")
        raise WeightsError(
            f"{path}: none of its layers matches a layer of the model; is it the right file for "
            f"this model? File layers: {_short_list(fl.name for fl in weighted_file_layers)}. "
            f"Model layers: {_short_list(name for name, _ in _weight_leaves(model)) or 'none'}")

    plan, problems, mismatched, assigned = [], [], [], {}
    for report_name, layer_name, layer, weight_names, datasets in units:
        variables, issues = list(layer.weights), []
        if len(variables) != len(datasets):
            hint = " (it is not built yet: build the model first)" if not layer.built else ""
            issues.append(f"layer '{layer_name}': the file has {len(datasets)} arrays, "
                          f"the model's layer has {len(variables)} weights{hint}")
        else:
            for variable, weight_name, dataset in zip(variables, weight_names, datasets):
                if tuple(dataset.shape) != tuple(variable.shape):
                    issues.append(f"layer '{layer_name}', weight '{weight_name}': file shape "
                                  f"{tuple(dataset.shape)}, model shape {tuple(variable.shape)}")
        if issues:
            mismatched.append(layer_name)
            if skip_mismatch:
                report.skipped_mismatch.append(layer_name)
                for issue in issues:
                    logger.warning("%s: skipped %s", path, issue)
            else:
                problems.extend(issues)
            continue
        for variable in variables:
            if id(variable) in assigned:
                raise WeightsError(f"{path}: layers '{assigned[id(variable)]}' and '{layer_name}' "
                                   f"both provide weight '{variable.path}'")
            assigned[id(variable)] = layer_name
        plan.append((report_name, layer_name, variables, datasets))

    if problems:
        raise WeightsMismatchError(path, problems, list(dict.fromkeys(mismatched)))
    if not plan:
        raise WeightsError(f"{path}: every layer it shares with the model was skipped "
                           f"({_short_list(report.skipped_mismatch)}); nothing loaded")

    # Read every array before assigning any, so that a read error leaves the model unchanged.
    arrays = [[np.asarray(d[()]) for d in datasets] for _, _, _, datasets in plan]
    for (report_name, layer_name, variables, _), values in zip(plan, arrays):
        for variable, value in zip(variables, values):
            variable.assign(value.astype(variable.dtype, copy=False))
        report.num_arrays += len(values)
        if report_name not in report.loaded:
            report.loaded.append(report_name)
        if verbose > 1:
            print(f"  loaded {layer_name} ({len(values)} arrays)")

    excluded = exclude.union(report.excluded)
    report.missing_in_file = [
        name for name, layer in _weight_leaves(model)
        if name not in excluded and name not in report.skipped_mismatch
        and not all(id(v) in assigned for v in layer.weights)]

    unknown = sorted(n for n in exclude if n not in index
                     and n not in {fl.name for fl in file_layers})
    if unknown:
        logger.warning("exclude names no layer of the model or of %s: %s", path, unknown)
    if verbose:
        print(report.summary())
    else:
        logger.info("%s", report.summary())
    if report.missing_in_file:
        logger.warning("%s does not provide %d layers of the model, left as they were: %s",
                       path, len(report.missing_in_file), _short_list(report.missing_in_file))
    return report


def load_legacy_h5(model, path, by_name=True, exclude=None, skip_mismatch=False, verbose=0):
    """Load a Matterport / Keras-2 ``save_weights`` (or ``model.save``) HDF5 file by layer name.

    model: a built keras.Model (nested models and TimeDistributed wrappers are searched).
    path: the .h5 file, e.g. Matterport's mask_rcnn_coco.h5.
    by_name: must be True. Loading by position (Keras 2's by_name=False) depends on the order of
        layers, which differs between Keras 2 and Keras 3 functional models; every layer of a
        Matterport model has a unique name, so loading by name loses nothing.
    exclude: exact layer names not to load (a single name may be given as a str), e.g.
        COCO_EXCLUDE when NUM_CLASSES differs from the file's.
    skip_mismatch: skip (with a warning) layers whose array count or shapes differ instead of
        raising.
    verbose: 1 prints the summary, 2 also each layer loaded.

    Returns a LoadReport. Raises WeightsError (a ValueError; WeightsFileNotFoundError, also a
    FileNotFoundError, for a missing file) before assigning anything when the file is missing or
    not a Keras 2 weights file, shares no layer with the model, or a layer that is not excluded
    has another number of arrays or another shape.
    """
    if not by_name:
        raise NotImplementedError(
            "load_legacy_h5 loads by layer name only (by_name=True): Keras 2's positional order "
            "is not Keras 3's, and Matterport's layer names are kept, so nothing is lost.")
    path = _check_file(path)
    with _open(path) as f:
        root = _legacy_root(f)
        if root is None:
            fmt = _format_of(f)
            hint = (" It is a native Keras 3 file: use load_weights_auto or load_weights."
                    if fmt == "native" else "")
            raise WeightsError(f"{path} is not a Keras 2 / Matterport weights file (no root "
                               f"attribute 'layer_names').{hint}")
        return _load_by_name(model, path, "legacy", _read_legacy(root, path), exclude,
                             skip_mismatch, verbose)


def load_weights_auto(model, path, exclude=None, skip_mismatch=False, verbose=0):
    """Load a weights file of either format by layer name; returns a LoadReport.

    The format is recognised by content (see detect_format), not by the file name: a Keras 2 /
    Matterport file (root attribute `layer_names`, or a `model_weights` group) or a native Keras 3
    `.weights.h5` (a `layers` group). Native files are also loaded by layer name (not by Keras's
    structural order), so that weights saved from the training model load into the inference
    model and `exclude` applies. Arguments and errors as in load_legacy_h5.
    """
    fmt = detect_format(path)
    if fmt == "legacy":
        return load_legacy_h5(model, path, exclude=exclude, skip_mismatch=skip_mismatch,
                              verbose=verbose)
    path = os.fspath(path)
    with _open(path) as f:
        return _load_by_name(model, path, "native", _read_native(f), exclude, skip_mismatch,
                             verbose)


# ---------------------------------------------------------------------------------------------
# Writing

def _legacy_weight_names(layer):
    """Keras 2 style names: `conv1/kernel:0`; a nested model's by sub-layer
    (`rpn_class_raw/kernel:0`), as in Matterport's files."""
    if _is_model(layer):
        names = [f"{v.path}:0" for v in layer.weights]
    else:
        names = [f"{layer.name}/{v.name}:0" for v in layer.weights]
    seen, unique = {}, []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else name.replace(":0", f"_{count}:0"))
    return unique


def save_legacy_h5(model, path):
    """Write the model's weights in the Keras 2 `save_weights` layout that Matterport's code and
    old tools read (see the module docstring); the file is replaced atomically.

    One group per top-level layer (layers without weights too, with empty `weight_names`); a
    nested model (rpn_model) is one group holding its sub-layers' arrays, as in Matterport's files.
    Returns the path.
    """
    import keras
    path = os.fspath(path)
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        _write_str_list(f.attrs, "layer_names", [layer.name for layer in model.layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras.__version__.encode("utf8")
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = _legacy_weight_names(layer)
            _write_str_list(group.attrs, "weight_names", names)
            for name, variable in zip(names, layer.weights):
                group.create_dataset(name, data=variable.numpy())
    return path


def _require_native_name(path):
    if not path.endswith(NATIVE_SUFFIX):
        raise WeightsError(f"Keras 3 weights files must end with '{NATIVE_SUFFIX}': {path}")


def save_weights(model, path, config_yaml=None, class_names=None):
    """model.save_weights to a native Keras 3 `.weights.h5` file, atomically (written to a
    temporary `.weights.h5` in the same directory, then renamed). Returns the path.

    config_yaml, class_names: stored in the file (see :func:`write_metadata`) when given."""
    path = os.fspath(path)
    _require_native_name(path)
    with atomic_path(path, suffix=NATIVE_SUFFIX) as tmp:
        model.save_weights(str(tmp))
        if config_yaml is not None or class_names is not None:
            write_metadata(tmp, config_yaml, class_names)
    return path


def load_weights(model, path):
    """model.load_weights from a native Keras 3 `.weights.h5` file: Keras's loader, by structure
    (the same architecture that saved it). For Matterport files, other models or `exclude`, use
    load_weights_auto."""
    path = _check_file(path)
    _require_native_name(path)
    model.load_weights(path)


# ---------------------------------------------------------------------------------------------
# COCO weights

def _default_coco_path():
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "models", COCO_WEIGHTS_FILENAME)


def resolve_coco_weights(path=None):
    """The path of Matterport's mask_rcnn_coco.h5; never downloads.

    Looks, in order, at (1) `path` when given, (2) the environment variable LEAFSEG_COCO_WEIGHTS
    when set, (3) ~/.keras/models/mask_rcnn_coco.h5 ($KERAS_HOME/models/ when KERAS_HOME is set).
    The first of (1) and (2) that is given must exist: a wrong explicit path is an error, not a
    reason to use another file. A directory means the file mask_rcnn_coco.h5 inside it.
    Raises FileNotFoundError saying where to download the file and where to put it
    (:func:`coco_weights_help`).
    """
    default = _default_coco_path()
    if path is not None:
        source, candidate = "the path given", os.fspath(path)
    elif os.environ.get(COCO_WEIGHTS_ENV):
        source, candidate = f"${COCO_WEIGHTS_ENV}", os.environ[COCO_WEIGHTS_ENV]
    else:
        source, candidate = "the default location", default
    candidate = os.path.expanduser(candidate)
    if os.path.isdir(candidate):
        candidate = os.path.join(candidate, COCO_WEIGHTS_FILENAME)
    if os.path.isfile(candidate):
        return candidate
    raise FileNotFoundError(f"COCO weights not found at {candidate} ({source}). " + coco_weights_help())


def coco_weights_help():
    """Where to get Matterport's COCO file and where to put it (for "not found" messages)."""
    default = _default_coco_path()
    return (f"They are never downloaded automatically: download Matterport's {COCO_WEIGHTS_FILENAME} (about 246 MB, "
            f"v2.0 release of matterport/Mask_RCNN) from {COCO_WEIGHTS_URL} and either put it at {default} or "
            f"set {COCO_WEIGHTS_ENV} to where it is. For example:\n"
            f"  mkdir -p {os.path.dirname(default)} && curl -L -o {default} {COCO_WEIGHTS_URL}")
