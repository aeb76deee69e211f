"""OpenVINO as an optional inference runtime for an inference-mode MaskRCNN (CPU).

    from mrcnn.openvino import OpenVINORuntime
    model.use_runtime(OpenVINORuntime(model))      # model.detect(...) now runs in OpenVINO
    model.use_runtime(None)                        # TensorFlow again

The Keras inference graph (its three inputs: molded images, image metas, anchors) is converted
with ``openvino.convert_model`` and compiled for the CPU; only :meth:`MaskRCNN._predict`, the
network itself, moves: molding, anchors and unmolding stay in numpy and are shared, so every
caller of ``detect`` (prediction, evaluation, tiles, TTA, tracking) gets the same results
structure. The runtime's ``predict`` returns what ``MaskRCNN._predict`` returns: a dict of
float32 numpy arrays (detections, mrcnn_mask, mrcnn_class, mrcnn_bbox, rpn_rois, rpn_class,
rpn_bbox).

Precision: "f32" (the default) sets OpenVINO's INFERENCE_PRECISION_HINT to f32 explicitly. On
a CPU with bfloat16 support (AVX512_BF16 / AMX) OpenVINO's own default is bf16, which changes
the detections; "bf16" asks for it (faster there, results not equal to TensorFlow's).

Threads: one per inference by default (INFERENCE_NUM_THREADS 1). With OpenVINO 2026.4.1's
own default (all cores) a batch of one image gets different proposals from the region
proposal layer (hundreds of its 400 ROIs, so other detections), as with any
INFERENCE_NUM_THREADS > 1; one thread, or PERFORMANCE_HINT THROUGHPUT (one thread per stream),
gives TensorFlow's. ``threads=0`` asks for OpenVINO's default anyway.

First inference: the first request a compiled model runs (and, for the dynamic-shape
compilation, the first of each new input shape) returns wrong masks in OpenVINO 2026.4.1 (every
row of ``mrcnn_mask`` the same, not TensorFlow's; the detections themselves are right), and
the next request on the same inputs returns TensorFlow's. So such a request is run twice and
its first answer dropped.

Shapes: the graph is converted once with dynamic sizes; each molded input shape (batch, height,
width) is then compiled with static shapes (faster to run: see docs/BENCHMARKS.md) and kept, as
TensorFlow's ``reduce_retracing`` keeps one graph per size. After ``max_static_shapes`` distinct
shapes (images of many sizes in "pad64" or "none" resize mode) further shapes run in one
dynamic-shape compilation instead of compiling each.

Cache: converting takes seconds (leaf-small ~7-15 s, ResNet101 longer; docs/BENCHMARKS.md),
so the converted graph is kept on disk, as IR, under a key made of the weights' values, the
config and OpenVINO's version (:func:`cache_key`), in ``$LEAFSEG_CACHE/openvino`` or
``~/.cache/leafseg/openvino``; the next runtime of the same model reads it back in a fraction
of a second. Entries are written to a temporary folder and renamed into place, so a reader
never sees half an entry. ``cache=False`` converts every time; a path chooses the folder.

Export: :func:`export_openvino` writes the IR (``model.xml``/``model.bin``) and ``config.yaml``
into a folder; :func:`load_openvino` reads it back into an object whose ``detect(images)``
returns what ``MaskRCNN.detect`` returns, with numpy and OpenVINO only (no TensorFlow graph is
built; mrcnn's numpy helpers are imported).

OpenVINO is an optional dependency (``pip install 'leafseg[openvino]'``); this module imports it
only when used, so ``import mrcnn.openvino`` works without it and :func:`available` says whether
it is installed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np

__all__ = ["available", "version", "require_openvino", "OpenVINORuntime", "export_openvino", "load_openvino",
           "OpenVINOModel", "check_openvino", "convert_keras_model", "PRECISIONS", "INSTALL_HINT", "INPUT_NAMES",
           "OUTPUT_NAMES", "cache_dir", "cache_key", "converted_model"]

INSTALL_HINT = "pip install 'leafseg[openvino]' (or pip install openvino)"
# leafseg's precision names ("float32", "bfloat16") and OpenVINO's ("f32", "bf16").
PRECISIONS = {"f32": "f32", "float32": "f32", "fp32": "f32", "bf16": "bf16", "bfloat16": "bf16"}
INPUT_NAMES = ("input_image", "input_image_meta", "input_anchors")
OUTPUT_NAMES = ("detections", "mrcnn_class", "mrcnn_bbox", "mrcnn_mask", "rpn_rois", "rpn_class", "rpn_bbox")
MODEL_FILE, WEIGHTS_FILE, CONFIG_FILE = "model.xml", "model.bin", "config.yaml"


def _import_openvino():
    try:
        import openvino
    except ImportError as err:
        raise ImportError(f"the OpenVINO runtime needs the openvino package: {INSTALL_HINT}") from err
    return openvino


def available() -> bool:
    """Whether openvino can be imported."""
    try:
        _import_openvino()
    except ImportError:
        return False
    return True


def version() -> str | None:
    """OpenVINO's version ("2026.4.1"), None when it is not installed."""
    try:
        ov = _import_openvino()
    except ImportError:
        return None
    full = ov.get_version()  # e.g. "2026.4.1-20930-8d4ea7f1a0d-releases/2026/4"
    return full.split("-")[0]


def require_openvino():
    """The openvino module; an ImportError naming ``pip install 'leafseg[openvino]'`` without it."""
    return _import_openvino()


def _precision(precision) -> str:
    key = str(precision).lower()
    if key not in PRECISIONS:
        raise ValueError(f"OpenVINO precision {precision!r}: choose f32 (float32) or bf16 (bfloat16)")
    return PRECISIONS[key]


def convert_keras_model(model):
    """The inference Keras graph of ``model`` (a MaskRCNN) as an ``openvino.Model`` with dynamic
    batch, height, width and anchor count; outputs float32 and named as the Keras outputs."""
    ov = require_openvino()
    import tensorflow as tf

    if model.mode != "inference":
        raise ValueError(f"the OpenVINO runtime needs a MaskRCNN in inference mode, got mode {model.mode!r}")
    net, config = model.keras_model, model.config

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, config.IMAGE_CHANNEL_COUNT], tf.float32, name=INPUT_NAMES[0]),
        tf.TensorSpec([None, config.IMAGE_META_SIZE], tf.float32, name=INPUT_NAMES[1]),
        tf.TensorSpec([None, None, 4], tf.float32, name=INPUT_NAMES[2])])
    def predict(images, metas, anchors):
        outputs = net([images, metas, anchors], training=False)
        return {name: tf.cast(value, tf.float32) if value.dtype.is_floating else value
                for name, value in outputs.items()}

    return ov.convert_model(predict)


CACHE_FORMAT = "1"


def cache_dir() -> Path:
    """Where converted graphs are kept: ``$LEAFSEG_CACHE/openvino`` or ``~/.cache/leafseg/openvino``."""
    root = os.environ.get("LEAFSEG_CACHE")
    return Path(root) / "openvino" if root else Path.home() / ".cache" / "leafseg" / "openvino"


def cache_key(model) -> str:
    """sha256 of ``model``'s weight values (in order), its config and OpenVINO's version."""
    digest = hashlib.sha256()
    digest.update(f"mrcnn.openvino {CACHE_FORMAT} {version()}\n".encode())
    digest.update(model.config.to_yaml_text().encode())
    for variable in model.keras_model.weights:
        value = np.ascontiguousarray(np.asarray(variable))
        digest.update(f"{variable.path} {value.dtype} {value.shape}\n".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _write_ir_atomic(ov_model, folder: Path):
    """Save ``ov_model`` as ``folder/model.xml`` (+ .bin) through a temporary sibling folder."""
    ov = require_openvino()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.mkdir()
        ov.save_model(ov_model, str(tmp / MODEL_FILE), compress_to_fp16=False)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process put it there first: theirs is the same graph
            if not (folder / MODEL_FILE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def converted_model(model, cache=True):
    """``model``'s graph as an ``openvino.Model``: from the cache when there, else converted
    (and written to the cache). cache: True (the default folder, :func:`cache_dir`), False,
    or a folder. Returns (openvino.Model, "cache" or "converted")."""
    ov = require_openvino()
    if cache is False or cache is None:
        return convert_keras_model(model), "converted"
    folder = (cache_dir() if cache is True else Path(cache)) / cache_key(model)
    if (folder / MODEL_FILE).is_file():
        try:
            return ov.Core().read_model(str(folder / MODEL_FILE)), "cache"
        except RuntimeError:  # a damaged entry: convert again and replace it
            shutil.rmtree(folder, ignore_errors=True)
    ov_model = convert_keras_model(model)
    try:
        _write_ir_atomic(ov_model, folder)
    except OSError:  # a read-only or full disk costs the next runtime a conversion, nothing else
        pass
    return ov_model, "converted"


class OpenVINORuntime:
    """Runs a MaskRCNN's network in OpenVINO on the CPU (see the module docstring).

    model: an inference-mode MaskRCNN, or an ``openvino.Model`` / IR path already converted
        (then ``config`` must be given).
    precision: "f32" (default) or "bf16" (leafseg's "float32" / "bfloat16" accepted), set as
        INFERENCE_PRECISION_HINT.
    threads: INFERENCE_NUM_THREADS; None: 1 (see the module docstring: more threads change
        the proposals of a single image in OpenVINO 2026.4.1); 0: OpenVINO's default.
    max_static_shapes: how many molded input shapes get their own static-shape compilation
        (0: always the dynamic one).
    performance_hint: OpenVINO's PERFORMANCE_HINT, "LATENCY" (one request at a time, as
        ``detect`` calls it) by default.
    cache: where the converted graph is kept (:func:`converted_model`): True (the default
        folder), False (convert every time) or a folder.
    Attributes: ``ov_model`` (the converted graph), ``source`` ("converted", "cache" or
    "given"), ``convert_seconds`` (conversion or cache read), ``compile_seconds`` (per shape).
    """

    name = "openvino"

    def __init__(self, model, precision="f32", threads=None, max_static_shapes=8, performance_hint="LATENCY",
                 config=None, cache=True):
        ov = require_openvino()
        self.precision = _precision(precision)
        self.threads = 1 if threads is None else int(threads)
        self.max_static_shapes = int(max_static_shapes)
        self.performance_hint = performance_hint
        self._core = ov.Core()
        self._lock = threading.Lock()
        self._static = OrderedDict()  # (batch, height, width, anchors) -> compiled model
        self._dynamic = None
        self._warm = set()  # (compiled model id, input shape) that have run once
        started = time.perf_counter()
        if isinstance(model, ov.Model):
            self.ov_model, self.config, self.source = model, config, "given"
        elif isinstance(model, (str, os.PathLike)):
            self.ov_model, self.config, self.source = self._core.read_model(str(model)), config, "given"
        else:
            if model.mode != "inference":
                raise ValueError(f"the OpenVINO runtime needs a MaskRCNN in inference mode, got mode {model.mode!r}")
            self.ov_model, self.source = converted_model(model, cache)
            self.config = model.config
        self.convert_seconds = time.perf_counter() - started
        self._inputs = [self._input_index(name) for name in INPUT_NAMES]
        self.compile_seconds = {}

    def _input_index(self, name):
        for i, port in enumerate(self.ov_model.inputs):
            if any(n == name or n.startswith(name + ":") for n in port.get_names()):
                return i
        raise ValueError(f"the OpenVINO model has no input {name!r}")

    @property
    def properties(self) -> dict:
        """The compile properties: precision hint, performance hint, threads."""
        props = {"INFERENCE_PRECISION_HINT": self.precision}
        if self.performance_hint:
            props["PERFORMANCE_HINT"] = self.performance_hint
        if self.threads:
            props["INFERENCE_NUM_THREADS"] = self.threads
        return props

    @property
    def description(self) -> str:
        threads = ", default threads" if not self.threads else f", {self.threads} thread{'s' if self.threads > 1 else ''}"
        return f"OpenVINO {version()} (CPU, {self.precision}{threads})"

    def __repr__(self):
        return f"<OpenVINORuntime {self.description}>"

    def _compile(self, ov_model, key):
        started = time.perf_counter()
        compiled = self._core.compile_model(ov_model, "CPU", self.properties)
        self.compile_seconds[key] = time.perf_counter() - started
        return compiled

    def compiled_for(self, shape):
        """The compiled model for inputs of ``shape`` = (batch, height, width, anchor count)."""
        with self._lock:
            if shape in self._static:
                self._static.move_to_end(shape)
                return self._static[shape]
            if len(self._static) < self.max_static_shapes:
                batch, height, width, count = shape
                static = self.ov_model.clone()
                channels = self.ov_model.inputs[self._inputs[0]].get_partial_shape()[3]
                meta = self.ov_model.inputs[self._inputs[1]].get_partial_shape()[1]
                static.reshape({self._inputs[0]: [batch, height, width, channels.get_length()],
                                self._inputs[1]: [batch, meta.get_length()],
                                self._inputs[2]: [batch, count, 4]})
                self._static[shape] = self._compile(static, shape)
                return self._static[shape]
            if self._dynamic is None:
                self._dynamic = self._compile(self.ov_model, "dynamic")
            return self._dynamic

    def predict(self, molded_images, image_metas, anchors) -> dict:
        """The network's outputs for a batch: molded_images float32 [N, h, w, C], image_metas
        [N, META], anchors [N, A, 4] (or [A, 4], shared). Returns {name: float32 array}, the
        keys and types of ``MaskRCNN._predict``."""
        images = np.ascontiguousarray(molded_images, np.float32)
        metas = np.ascontiguousarray(image_metas, np.float32)
        anchors = np.asarray(anchors, np.float32)
        if anchors.ndim == 2:
            anchors = anchors[np.newaxis]
        if len(anchors) != len(images):
            anchors = np.broadcast_to(anchors[:1], (len(images),) + anchors.shape[1:])
        anchors = np.ascontiguousarray(anchors)
        compiled = self.compiled_for((images.shape[0], images.shape[1], images.shape[2], anchors.shape[1]))
        request = compiled.create_infer_request()
        feed = {self._inputs[0]: images, self._inputs[1]: metas, self._inputs[2]: anchors}
        # See "First inference" in the module docstring. The dynamic compilation may reallocate
        # at each change of shape, so there a change of shape counts as new.
        key = (id(compiled), images.shape, anchors.shape)
        with self._lock:
            fresh = key not in self._warm
            if compiled is self._dynamic:
                self._warm = {k for k in self._warm if k[0] != id(compiled)}
            self._warm.add(key)
        if fresh:
            request.infer(feed)
        results = request.infer(feed)
        outputs = {}
        for port in compiled.outputs:
            name = port.get_any_name().split(":")[0]
            outputs[name] = np.array(results[port], np.float32)  # a copy: the request's buffers are reused
        return outputs


############################################################
#  Export, reload, check
############################################################

def export_openvino(model, path, overwrite=False, runtime=None):
    """Write ``model``'s network as OpenVINO IR into the folder ``path``: ``model.xml``,
    ``model.bin`` (float32 weights, not compressed) and ``config.yaml``.

    The folder is written beside ``path`` under a temporary name and renamed into place, so
    ``path`` is never half written; ``overwrite=False`` refuses an existing ``path``. ``runtime``:
    an :class:`OpenVINORuntime` of this model whose converted graph to reuse. Returns the path.
    """
    ov = require_openvino()
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another folder or pass overwrite=True")
    ov_model = runtime.ov_model if runtime is not None else converted_model(model)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.mkdir()
        ov.save_model(ov_model, str(tmp / MODEL_FILE), compress_to_fp16=False)
        model.config.to_yaml(tmp / CONFIG_FILE)
        if path.exists():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


class OpenVINOModel:
    """An exported model read back (:func:`load_openvino`): ``config``, ``runtime`` and
    ``detect``, which returns what ``MaskRCNN.detect`` returns."""

    def __init__(self, path, config, runtime):
        self.path, self.config, self.runtime = Path(path), config, runtime
        self.mode = "inference"

    def mold_inputs(self, images):
        from mrcnn import transform

        return transform.mold_inputs(images, self.config)

    def get_anchors(self, image_shape):
        from mrcnn.anchors import config_anchors

        return config_anchors(self.config, image_shape)

    def detect(self, images, verbose=0):
        """Detections for a list of [H, W, C] images (all must mold to the same shape, as for
        ``MaskRCNN.detect``): one dict per image, rois int32 [N, 4], class_ids int32 [N],
        scores float32 [N], masks bool [H, W, N]."""
        images = [np.asarray(image) for image in images]
        molded, metas, windows = self.mold_inputs(images)
        return self.detect_molded(molded, metas, original_images=images, windows=windows)

    def detect_molded(self, molded_images, image_metas, verbose=0, original_images=None, windows=None):
        from mrcnn import transform

        molded_images = np.asarray(molded_images, np.float32)
        anchors = self.get_anchors(molded_images.shape[1:3])
        outputs = self.runtime.predict(molded_images, np.asarray(image_metas), anchors)
        return transform.unmold_results(outputs, image_metas, windows, self.config.DETECTION_MASK_OVERLAP_THRESHOLD)


def load_openvino(path, precision="f32", threads=None, config_class=None):
    """Read a folder written by :func:`export_openvino`: an :class:`OpenVINOModel`.

    config_class: the Config subclass to read ``config.yaml`` into (default ``mrcnn.config.Config``;
    the file holds every attribute the network needs).
    """
    path = Path(path)
    if not (path / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{path} is not an OpenVINO export folder (no {MODEL_FILE})")
    require_openvino()
    if config_class is None:
        from mrcnn.config import Config as config_class
    config = config_class.from_yaml(path / CONFIG_FILE)
    runtime = OpenVINORuntime(str(path / MODEL_FILE), precision=precision, threads=threads, config=config)
    return OpenVINOModel(path, config, runtime)


def check_openvino(model, path, images, precision="f32", **tolerances):
    """Reload the export at ``path`` and compare its detections with ``model.detect`` on
    ``images`` (:func:`mrcnn.export.compare_detections`). Returns one problem list per image."""
    from mrcnn.export import compare_detections

    loaded = load_openvino(path, precision=precision)
    report = []
    for image in images:
        image = np.asarray(image)
        report.append(compare_detections(model.detect([image])[0], loaded.detect([image])[0], **tolerances))
    return report
