"""The state of a ``leafseg predict`` output folder: what makes a run resumable and its tables exact.

Each image predicted leaves, besides its overlay and label, a record in
``<out>/.predict/images/<name>.json``: its leaf rows, its plant rows and its COCO entries. The record
is written atomically and last, after the image's PNGs, so it exists only for an image whose
outputs are complete; a run killed at any point (``kill -9`` included) loses at most the images
in flight. ``<out>/.predict/settings.json`` holds what the records depend on: the weights, the
config, the units and the output options.

A rerun into the same folder with the same settings predicts only the images without a record,
and then writes ``leaves.csv``, ``plants.csv`` and ``predictions_coco.json`` from the records of
all the run's inputs, in the order of its inputs. So the tables hold every image once, in the
same order and with the same ids, whether the run went in one go, was resumed, or ran on a
cluster (:mod:`leafseg.inference.cluster`), whose workers write records into the same folder.
A rerun with other settings stops with an error naming them (``--overwrite`` redoes every
image). An image whose record names another input file (two runs that give different files one
output name) is predicted again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from mrcnn.fileio import write_text_atomic

__all__ = ["STATE_DIR", "SettingsMismatch", "ResultStore", "file_fingerprint", "weights_fingerprint", "merge_records",
           "plain_value", "setting_change"]

STATE_DIR = ".predict"
SETTINGS_FILE = "settings.json"
RECORDS = "images"
_VERSION = 1


# Settings added after runs were already written, with the value those runs had: a folder
# predicted before ``runtime`` was recorded was predicted by TensorFlow.
LEGACY_SETTINGS = {"runtime": "tensorflow"}


class SettingsMismatch(ValueError):
    """The output folder holds results made with other settings; the message names them."""


def file_fingerprint(path) -> str:
    """sha256 of a file's bytes (the identity of a weights file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def weights_fingerprint(keras_model) -> str:
    """sha256 of a model's weight values, in order (for a model whose file is not known)."""
    digest = hashlib.sha256()
    for variable in keras_model.weights:
        digest.update(np.ascontiguousarray(np.asarray(variable)).tobytes())
    return "weights:" + digest.hexdigest()


def plain_value(value):
    """JSON for numpy scalars and arrays (records and settings hold them)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a record or the settings")


def setting_change(key, then, now) -> str:
    """A setting's change in words; of the config's YAML text, the values that differ."""
    import yaml

    try:
        before, after = yaml.safe_load(then), yaml.safe_load(now)
    except (TypeError, AttributeError, yaml.YAMLError):
        before = after = None
    if isinstance(before, dict) and isinstance(after, dict):
        return f"{key}: " + ", ".join(f"{name} {before.get(name)!r} then, {after.get(name)!r} now"
                                      for name in sorted(set(before) | set(after))
                                      if before.get(name) != after.get(name))
    return f"{key}: {then!r} then, {now!r} now"


class ResultStore:
    """The records of an output folder (see the module docstring).

    settings: a JSON-serialisable dict of everything the outputs depend on. overwrite: forget
    every record (and the settings) first.
    Raises :class:`SettingsMismatch` when the folder's records were made with other settings.
    """

    def __init__(self, out_dir, settings: dict, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / STATE_DIR
        self.records = self.root / RECORDS
        self.settings = json.loads(json.dumps({"version": _VERSION, **settings}, default=plain_value))
        if overwrite and self.root.exists():
            shutil.rmtree(self.root)
        path = self.root / SETTINGS_FILE
        if path.is_file():
            old = {**{key: value for key, value in LEGACY_SETTINGS.items() if key in self.settings},
                   **json.loads(path.read_text(encoding="utf-8"))}
            changed = sorted(key for key in set(old) | set(self.settings) if old.get(key) != self.settings.get(key))
            if changed and any(self.records.glob("*.json")):
                details = "; ".join(setting_change(key, old.get(key), self.settings.get(key)) for key in changed)
                raise SettingsMismatch(
                    f"{self.out_dir} holds predictions made with other settings ({details}); use --overwrite to "
                    "predict every image again with these, or another --out"
                    + (f", or --runtime {str(old['runtime']).split()[0]} to go on as before"
                       if changed == ["runtime"] else ""))
        self.records.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(self.settings, indent=1, sort_keys=True) + "\n")

    @classmethod
    def attach(cls, out_dir):
        """The store of a folder whose settings a run has written already (a cluster worker's view)."""
        store = cls.__new__(cls)
        store.out_dir = Path(out_dir)
        store.root = store.out_dir / STATE_DIR
        store.records = store.root / RECORDS
        store.settings = json.loads((store.root / SETTINGS_FILE).read_text(encoding="utf-8"))
        return store

    def _path(self, name):
        return self.records / f"{name}.json"

    def load(self, name):
        """The record of ``name``, or None."""
        try:
            return json.loads(self._path(name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def done(self, name, file) -> bool:
        """Whether ``name`` has a record made from the input ``file``."""
        record = self.load(name)
        return record is not None and record.get("file") == str(file)

    def save(self, record) -> Path:
        """Store a record ({"name", "file", "count", "leaves", "plants", "coco"}), atomically."""
        return write_text_atomic(self._path(record["name"]), json.dumps(record, default=plain_value) + "\n")


def merge_records(records, coco=False):
    """Records in input order -> (leaf rows, plant rows, COCO images, COCO annotations), the COCO
    image and annotation ids numbered 1.. in that order."""
    leaves, plants, images, annotations = [], [], [], []
    for record in records:
        leaves += record["leaves"]
        plants += record["plants"] if "plants" in record else [record["plant"]]
        if coco:
            image_id = len(images) + 1
            images.append(dict(record["coco"]["image"], id=image_id))
            for annotation in record["coco"]["annotations"]:
                annotations.append(dict(annotation, id=len(annotations) + 1, image_id=image_id))
    return leaves, plants, images, annotations
