"""OpenVINO as an optional inference runtime for an inference-mode MaskRCNN (CPU).

    from mrcnn.openvino import OpenVINORuntime
    model.use_runtime(OpenVINORuntime(model))      # model.detect(...) now runs its stem in OpenVINO
    model.use_runtime(None)                        # TensorFlow again

What runs where. OpenVINO runs the convolutions, TensorFlow what lies between them:

- the *stem*, the image to the FPN maps P2..P6 and the RPN's scores and deltas
  (:data:`STEM_LAYERS`): convolutions of fixed shapes, most of the arithmetic, converted
  with ``openvino.convert_model`` and compiled for the CPU, where OpenVINO's fused convolutions
  are faster than TensorFlow's (1.7x in float32, 9x in bfloat16 with AMX, docs/BENCHMARKS.md);
- the *heads' stacks* (:data:`HEAD_SEGMENTS`): the classifier's two 1024-wide layers on every
  proposal and the mask head's convolutions on the detections, per-ROI layers on a row count
  known only when the graph runs; each is compiled for its row count padded up to a multiple of
  :data:`HEAD_ROWS_STEP` (static shapes: with a dynamic row count OpenVINO 2026.4.1 returned
  mask probabilities up to 0.07 off TensorFlow's);
- the *rest* (proposal layer, ROIAlign, the detection layer): data-dependent shapes and loops,
  run by TensorFlow from the stem's outputs, walking the same Keras graph
  (:func:`heads_function`), which calls OpenVINO for the heads' stacks (``tf.numpy_function``).

Why not the whole graph in OpenVINO: OpenVINO 2026.4.1 converts it, but on this graph's
data-dependent parts (the mask head runs on as many rows as there are detections, the NMS is a
loop) it returned wrong results: the first request after compiling, and every request whose
detection count differed from the one before, got masks that were not TensorFlow's; and with
more than one thread hundreds of the 400 proposals of a single image changed. The whole graph was
also slower than TensorFlow there (its NMS loop runs node by node). The stem has none of that.

``heads=False`` leaves the heads' stacks to TensorFlow. Only :meth:`MaskRCNN._predict` changes
hands: molding, anchors and unmolding stay the same numpy,
and ``predict`` returns what ``MaskRCNN._predict`` returns (float32 arrays by output name).

Precision: "f32" (the default) sets OpenVINO's INFERENCE_PRECISION_HINT to f32 explicitly: on a
CPU with bfloat16 units (AVX512_BF16 / AMX) OpenVINO's own default is bf16, which changes the
detections; "bf16" asks for it (much faster there; detections near, not equal, to TensorFlow's).

Shapes: the stem is converted once with dynamic sizes; each molded input shape is compiled with
static shapes and kept (up to ``max_static_shapes``), as TensorFlow's ``reduce_retracing`` keeps
one graph per size; further shapes share one dynamic-shape compilation.

Cache: converting takes seconds (tens of seconds for ResNet101 on a loaded machine), so the
converted stem (and each head) is kept on disk as IR under a key made of the weights' values,
the config and OpenVINO's version (:func:`cache_key`), in ``$LEAFSEG_CACHE/openvino`` or
``~/.cache/leafseg/openvino``. Entries are written to a temporary folder and renamed into place.

Export: :func:`export_openvino` writes the stem's IR (``model.xml``/``model.bin``), the heads'
(``classifier.xml``, ``mask.xml``), the weights (``model.weights.h5``, for the rest) and
``config.yaml`` into a folder; :func:`load_openvino` reads
it back into a model whose ``detect(images)`` runs the IR with no conversion.

OpenVINO is an optional dependency (``pip install 'leafseg[openvino]'``); this module imports it
only when used, so ``import mrcnn.openvino`` works without it and :func:`available` says whether
it is installed.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np

__all__ = ["available", "version", "require_openvino", "without_telemetry", "OpenVINORuntime", "export_openvino", "load_openvino",
           "check_openvino", "convert_keras_model", "convert_head", "head_segment", "PRECISIONS", "INSTALL_HINT",
           "STEM_LAYERS", "HEAD_SEGMENTS", "HEAD_ROWS_STEP", "cache_dir", "cache_key", "converted_model",
           "heads_function"]

INSTALL_HINT = "pip install 'leafseg[openvino]' (or pip install openvino)"
# leafseg's precision names ("float32", "bfloat16") and OpenVINO's ("f32", "bf16").
PRECISIONS = {"f32": "f32", "float32": "f32", "fp32": "f32", "bf16": "bf16", "bfloat16": "bf16"}
# The layers whose outputs the stem computes (Matterport's layer names): the FPN maps and the
# RPN's concatenated scores and deltas, all that the proposal layer and the heads read.
STEM_LAYERS = ("fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6", "rpn_class", "rpn_bbox")
MODEL_FILE, CONFIG_FILE = "model.xml", "config.yaml"
HEAD_FILES = {"classifier": "classifier.xml", "mask": "mask.xml"}  # in an export folder
KERAS_WEIGHTS_FILE = "model.weights.h5"


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


# The modules of OpenVINO's converter that hold its telemetry module as ``tm``.
_TELEMETRY_MODULES = ("openvino.tools.ovc.convert_impl", "openvino.tools.ovc.telemetry_utils",
                      "openvino.tools.ovc.utils", "openvino.tools.ovc.main")


@contextlib.contextmanager
def without_telemetry():
    """Within, ``openvino.convert_model`` sends no usage telemetry.

    openvino-telemetry (installed with openvino) sends an event per conversion from a process
    forked off a background thread, which waits on the network for its timeout (offline lab
    servers: the whole timeout). The fork copies every file this process has open at that moment,
    HDF5 weights files included, and holds their locks meanwhile: a ``.weights.h5`` written just
    then could not be reopened ("unable to lock file", seen in leafseg's tests). leafseg sends
    nothing: the converter's modules get OpenVINO's own stand-in (``telemetry_stub``, what it uses
    without openvino-telemetry) for the time of the conversion. (OpenVINO skips telemetry by itself
    where CI=true.)
    """
    import sys

    stub = _import_quietly("openvino.tools.ovc.telemetry_stub")
    if stub is None:
        yield
        return
    with _TELEMETRY_LOCK:
        patched = []
        for name in _TELEMETRY_MODULES:
            module = sys.modules.get(name) or _import_quietly(name)
            if module is not None and hasattr(module, "tm"):
                patched.append((module, module.tm))
                module.tm = stub
        try:
            yield
        finally:
            for module, original in patched:
                module.tm = original


def _import_quietly(name):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_TELEMETRY_LOCK = threading.RLock()


def _precision(precision) -> str:
    key = str(precision).lower()
    if key not in PRECISIONS:
        raise ValueError(f"OpenVINO precision {precision!r}: choose f32 (float32) or bf16 (bfloat16)")
    return PRECISIONS[key]


def _stem_tensors(net):
    try:
        return [net.get_layer(name).output for name in STEM_LAYERS]
    except ValueError as err:
        raise ValueError(f"the OpenVINO runtime needs the layers {', '.join(STEM_LAYERS)} (mrcnn's inference "
                         f"graph): {err}") from None


def convert_keras_model(model, shape=None):
    """The stem of ``model``'s inference graph (a MaskRCNN; the image to :data:`STEM_LAYERS`) as an
    ``openvino.Model``; outputs float32, named as the layers.

    shape: (batch, height, width) of the molded images it will take, or None for dynamic sizes.
    A static shape converts several times faster and runs faster: with dynamic sizes the FPN's
    crops keep shape computations in the graph that OpenVINO cannot fold (ResNet101 at 512 px:
    0.65 s against 0.39 s a stem in float32, and over a minute to convert against seconds).
    """
    ov = require_openvino()
    import keras
    import tensorflow as tf

    if model.mode != "inference":
        raise ValueError(f"the OpenVINO runtime needs a MaskRCNN in inference mode, got mode {model.mode!r}")
    net, config = model.keras_model, model.config
    stem = keras.Model(net.inputs[0], _stem_tensors(net))
    batch, height, width = shape if shape is not None else (None, None, None)

    @tf.function(input_signature=[
        tf.TensorSpec([batch, height, width, config.IMAGE_CHANNEL_COUNT], tf.float32, name="input_image")])
    def predict(images):
        outputs = stem(images, training=False)
        return {name: tf.cast(value, tf.float32) for name, value in zip(STEM_LAYERS, outputs)}

    with without_telemetry():
        return ov.convert_model(predict)


def head_segment(model, name):
    """The keras.Model of the head stack ``name`` (:data:`HEAD_SEGMENTS`) of ``model``'s inference
    graph: [rows, pool, pool, C] (the ROIs merged into the batch axis) to its last layer's output,
    sharing ``model``'s layers."""
    import keras

    if name not in HEAD_SEGMENTS:
        raise ValueError(f"no head segment {name!r}; choose from {', '.join(HEAD_SEGMENTS)}")
    net = model.keras_model
    start, end = HEAD_SEGMENTS[name]
    try:
        return keras.Model(net.get_layer(start).output, net.get_layer(end).output, name=f"{name}_head")
    except ValueError as err:
        raise ValueError(f"the OpenVINO runtime needs the layers {start} and {end} (mrcnn's inference "
                         f"graph): {err}") from None


def convert_head(model, name):
    """The head stack ``name`` of ``model`` (:func:`head_segment`) as an ``openvino.Model`` of
    dynamic row count; output float32."""
    ov = require_openvino()
    import tensorflow as tf

    segment = head_segment(model, name)
    spec = tf.TensorSpec([None, *segment.inputs[0].shape[1:]], tf.float32, name=f"{name}_rois")

    @tf.function(input_signature=[spec])
    def predict(rows):
        return tf.cast(segment(rows, training=False), tf.float32)

    with without_telemetry():
        return ov.convert_model(predict)


def heads_function(model, offload=None):
    """A ``tf.function(stem_outputs, image_metas, anchors) -> {output name: float32 tensor}`` that
    runs the rest of ``model``'s inference graph (everything after :data:`STEM_LAYERS`) in
    TensorFlow: the Keras graph walked node by node, as Keras' own functional call does, from
    the stem's outputs instead of the image.

    offload: {head segment name (:data:`HEAD_SEGMENTS`): a function of a float32 numpy array
    [rows, pool, pool, C] returning the segment's output for those rows}: those layers are not run
    by TensorFlow; the function is called (``tf.numpy_function``) in their place.
    """
    import keras
    import tensorflow as tf

    net = model.keras_model
    stem, metas_input, anchors_input = _stem_tensors(net), net.inputs[1], net.inputs[2]
    depths = sorted(net._nodes_by_depth, reverse=True)
    skipped = {}  # id(layer) -> (segment input tensor, output tensor, function)
    for name, function in (offload or {}).items():
        segment = head_segment(model, name)
        start, end = HEAD_SEGMENTS[name]
        entry = (net.get_layer(start).output, net.get_layer(end).output, function)
        for layer in segment.layers:
            if not isinstance(layer, keras.layers.InputLayer):
                skipped[id(layer)] = entry

    def offloaded(tensors, entry):
        source, target, function = entry
        rows = tensors[id(source)]
        value = tf.numpy_function(function, [tf.cast(rows, tf.float32)], tf.float32, stateful=True)
        tensors[id(target)] = tf.ensure_shape(value, [None, *target.shape[1:]])

    def run(stem_outputs, image_metas, anchors):
        tensors = {id(tensor): value for tensor, value in zip(stem, stem_outputs)}
        tensors[id(metas_input)], tensors[id(anchors_input)] = image_metas, anchors
        for depth in depths:
            for node in net._nodes_by_depth[depth]:
                if not node.operation or node.is_input or any(id(x) in tensors for x in node.outputs):
                    continue  # an input, or a tensor given (a stem output)
                if id(node.operation) in skipped:
                    entry = skipped[id(node.operation)]
                    if id(entry[1]) not in tensors and id(entry[0]) in tensors:
                        offloaded(tensors, entry)
                    continue  # run by the offloaded function
                if any(id(x) not in tensors for x in node.input_tensors):
                    continue  # part of the stem
                args, kwargs = node.arguments.fill_in(tensors)
                if getattr(node.operation, "_call_has_training_arg", False):
                    kwargs["training"] = False
                outputs = node.operation(*args, **kwargs)
                for x, y in zip(node.outputs, keras.tree.flatten(outputs)):
                    tensors[id(x)] = y
        outputs = keras.tree.pack_sequence_as(net._outputs_struct, [tensors[id(x)] for x in net.outputs])
        return {name: tf.cast(value, tf.float32) if value.dtype.is_floating else value
                for name, value in outputs.items()}

    return tf.function(run, reduce_retracing=True, autograph=False)  # plain Python loops over the graph


CACHE_FORMAT = "2"  # 2: the stem, and the heads' convolution stacks (keyed apart)

# The heads' convolution stacks that OpenVINO runs (name: first layer's input layer, last layer):
# per-ROI layers on the ROIs merged into the batch axis, [rows, pool, pool, C] -> [rows, ...].
HEAD_SEGMENTS = {"classifier": ("mrcnn_class_merge_rois", "pool_squeeze"),
                 "mask": ("mrcnn_mask_merge_rois", "mrcnn_mask")}
# Rows are padded up to a multiple of this, so that each head is compiled for a few static
# shapes (OpenVINO 2026.4.1 gave wrong masks with a dynamic row count: 0.07 off in probability).
HEAD_ROWS_STEP = 8


def cache_dir() -> Path:
    """Where converted graphs are kept: ``$LEAFSEG_CACHE/openvino`` or ``~/.cache/leafseg/openvino``."""
    root = os.environ.get("LEAFSEG_CACHE")
    return Path(root) / "openvino" if root else Path.home() / ".cache" / "leafseg" / "openvino"


# Config values the stem does not depend on (what happens after the proposals): a model that
# differs only in them shares the cached stem (e.g. --min-score, DETECTION_MAX_INSTANCES).
NOT_STEM_PREFIXES = ("DETECTION_", "POST_NMS_ROIS_", "PRE_NMS_LIMIT", "RPN_NMS_THRESHOLD", "NAME:", "CLASS_NAMES")


def cache_key(model, shape=None) -> str:
    """sha256 of ``model``'s weight values (in order), the config values its stem depends on,
    OpenVINO's version and the input ``shape`` (None: dynamic; or "head NAME" for a head stack)."""
    digest = hashlib.sha256()
    digest.update(f"mrcnn.openvino {CACHE_FORMAT} {version()} {shape}\n".encode())
    for line in model.config.to_yaml_text().splitlines():
        if not line.startswith(NOT_STEM_PREFIXES):
            digest.update(line.encode() + b"\n")
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


def converted_model(model, cache=True, shape=None, head=None):
    """``model``'s stem for molded images of ``shape`` (or dynamic), or with ``head`` its head stack
    of that name (:func:`convert_head`), as an ``openvino.Model``: from the cache when there, else
    converted (and written to the cache). cache: True (the default folder, :func:`cache_dir`),
    False, or a folder. Returns (openvino.Model, "cache" or "converted")."""
    ov = require_openvino()

    def convert():
        return convert_keras_model(model, shape) if head is None else convert_head(model, head)

    if cache is False or cache is None:
        return convert(), "converted"
    folder = (cache_dir() if cache is True else Path(cache)) / cache_key(model, shape if head is None else f"head {head}")
    if (folder / MODEL_FILE).is_file():
        try:
            return ov.Core().read_model(str(folder / MODEL_FILE)), "cache"
        except RuntimeError:  # a damaged entry: convert again and replace it
            shutil.rmtree(folder, ignore_errors=True)
    ov_model = convert()
    try:
        _write_ir_atomic(ov_model, folder)
    except OSError:  # a read-only or full disk costs the next runtime a conversion, nothing else
        pass
    return ov_model, "converted"


class OpenVINORuntime:
    """Runs a MaskRCNN's stem in OpenVINO on the CPU and the rest in TensorFlow (module docstring).

    model: an inference-mode MaskRCNN (its weights loaded).
    precision: "f32" (default) or "bf16" (leafseg's "float32" / "bfloat16" accepted), set as
        INFERENCE_PRECISION_HINT.
    threads: INFERENCE_NUM_THREADS; None: OpenVINO's default (every core).
    max_static_shapes: how many molded input shapes get their own static-shape compilation
        (0: always the dynamic one).
    performance_hint: OpenVINO's PERFORMANCE_HINT, "LATENCY" (one request at a time, as
        ``detect`` calls it) by default.
    stem: an ``openvino.Model`` or IR path of this model's stem already converted (an export),
        reshaped to each input shape; default: converted for each shape, or read from the cache.
    cache: where the converted stem is kept (:func:`converted_model`): True (the default
        folder), False (convert every time) or a folder.
    heads: True (default): OpenVINO also runs the heads' convolution stacks (:data:`HEAD_SEGMENTS`:
        the classifier's two 1024-wide layers on every proposal, the mask head's convolutions on
        the detections); False: TensorFlow runs everything after the stem.
    head_models: {head name: ``openvino.Model`` or IR path} already converted (an export);
        default: converted, or read from the cache.
    The stem is converted (or read from the cache) and compiled for each molded input shape the
    first time it comes; each head once, then compiled for each row count (padded up to a
    multiple of :data:`HEAD_ROWS_STEP`). Attributes: ``sources`` by stem shape and by head name
    ("converted", "cache" or "given"), ``convert_seconds`` (conversion or cache read, by shape or
    head name), ``compile_seconds`` (by shape, or (head name, rows)).
    """

    name = "openvino"

    def __init__(self, model, precision="f32", threads=None, max_static_shapes=8, performance_hint="LATENCY",
                 stem=None, cache=True, heads=True, head_models=None):
        ov = require_openvino()
        if getattr(model, "mode", None) != "inference":
            raise ValueError(f"the OpenVINO runtime needs a MaskRCNN in inference mode, got mode "
                             f"{getattr(model, 'mode', None)!r}")
        self.precision = _precision(precision)
        self.threads = None if threads is None else int(threads)
        self.max_static_shapes = int(max_static_shapes)
        self.performance_hint = performance_hint
        self.config = model.config
        self.cache = cache
        self._model = model
        self._core = ov.Core()
        self._lock = threading.Lock()
        self._static = OrderedDict()  # (batch, height, width) -> (compiled stem, output names)
        self._dynamic = None
        self.convert_seconds, self.compile_seconds, self.sources = {}, {}, {}
        self.given = None
        if stem is not None:
            self.given = stem if isinstance(stem, ov.Model) else self._core.read_model(str(stem))
        self.heads = bool(heads)
        self._head_given = dict(head_models or {})
        unknown = sorted(set(self._head_given) - set(HEAD_SEGMENTS))
        if unknown:
            raise ValueError(f"head_models: no head {', '.join(unknown)}; the heads are {', '.join(HEAD_SEGMENTS)}")
        self._head_models, self._head_compiled = {}, OrderedDict()
        net = model.keras_model
        self._head_output = {name: tuple(net.get_layer(end).output.shape[1:]) for name, (_, end) in HEAD_SEGMENTS.items()}
        offload = {name: (lambda rows, name=name: self.head(name, rows)) for name in HEAD_SEGMENTS} if self.heads else None
        self._heads = heads_function(model, offload)

    @staticmethod
    def _output_name(port):
        names = port.get_names()
        for name in STEM_LAYERS:
            if any(n == name or n.startswith(name + ":") for n in names):
                return name
        return port.get_any_name()

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
        threads = "" if not self.threads else f", {self.threads} thread{'s' if self.threads > 1 else ''}"
        rest = "TensorFlow for the proposals, ROIAlign and detections" if self.heads else "TensorFlow after the proposals"
        return f"OpenVINO {version()} (CPU, {self.precision}{threads}; {rest})"

    def __repr__(self):
        return f"<OpenVINORuntime {self.description}>"

    def _stem_model(self, shape):
        """The stem for ``shape`` (None: dynamic sizes): the given one reshaped, or converted."""
        started = time.perf_counter()
        if self.given is not None:
            ov_model, source = self.given.clone(), "given"
            channels = ov_model.inputs[0].get_partial_shape()[3].get_length()
            ov_model.reshape({0: [*shape, channels] if shape else [-1, -1, -1, channels]})
        else:
            ov_model, source = converted_model(self._model, self.cache, shape)
        key = shape or "dynamic"
        self.convert_seconds[key], self.sources[key] = time.perf_counter() - started, source
        names = [self._output_name(port) for port in ov_model.outputs]
        missing = [name for name in STEM_LAYERS if name not in names]
        if missing:
            raise ValueError(f"the OpenVINO stem has no output {', '.join(missing)} (a graph of another version?)")
        return ov_model, names

    def _compile(self, shape):
        ov_model, names = self._stem_model(shape)
        started = time.perf_counter()
        compiled = self._core.compile_model(ov_model, "CPU", self.properties)
        self.compile_seconds[shape or "dynamic"] = time.perf_counter() - started
        return compiled, names

    def compiled_for(self, shape):
        """The compiled stem for molded images of ``shape`` = (batch, height, width), with its
        output names: converted (or read from the cache) and compiled the first time."""
        shape = tuple(int(side) for side in shape)
        with self._lock:
            if shape in self._static:
                self._static.move_to_end(shape)
                return self._static[shape]
            if len(self._static) < self.max_static_shapes:
                self._static[shape] = self._compile(shape)
                return self._static[shape]
            if self._dynamic is None:
                self._dynamic = self._compile(None)
            return self._dynamic

    def _head_for(self, name, rows):
        """The compiled head stack ``name`` for ``rows`` rows: converted (or read) once, compiled
        for each row count the first time (the oldest of more than ``4 * max_static_shapes`` dropped)."""
        with self._lock:
            key = (name, rows)
            if key in self._head_compiled:
                self._head_compiled.move_to_end(key)
                return self._head_compiled[key]
            if name not in self._head_models:
                started = time.perf_counter()
                given = self._head_given.get(name)
                if given is not None:
                    ov_model = given if not isinstance(given, (str, os.PathLike)) else self._core.read_model(str(given))
                    source = "given"
                else:
                    ov_model, source = converted_model(self._model, self.cache, head=name)
                self.convert_seconds[name], self.sources[name] = time.perf_counter() - started, source
                self._head_models[name] = ov_model
            ov_model = self._head_models[name].clone()
            ov_model.reshape({0: [rows, *self._head_input_shape(name, ov_model)]})
            started = time.perf_counter()
            self._head_compiled[key] = self._core.compile_model(ov_model, "CPU", self.properties)
            self.compile_seconds[key] = time.perf_counter() - started
            while len(self._head_compiled) > 4 * max(self.max_static_shapes, 1):
                self._head_compiled.popitem(last=False)
            return self._head_compiled[key]

    def _head_input_shape(self, name, ov_model):
        dims = list(ov_model.inputs[0].get_partial_shape())[1:]
        if any(d.is_dynamic for d in dims):
            raise ValueError(f"the OpenVINO head {name!r} has an input of unknown size {ov_model.inputs[0].get_partial_shape()}")
        return [d.get_length() for d in dims]

    def head(self, name, rows) -> np.ndarray:
        """The head stack ``name``'s output for ``rows`` float32 [n, pool, pool, C]: float32
        [n, ...]. The rows are padded with zeros up to a multiple of :data:`HEAD_ROWS_STEP`."""
        rows = np.asarray(rows, np.float32)
        count = len(rows)
        if count == 0:
            return np.zeros((0, *self._head_output[name]), np.float32)
        padded = -(-count // HEAD_ROWS_STEP) * HEAD_ROWS_STEP
        if padded != count:
            rows = np.concatenate([rows, np.zeros((padded - count, *rows.shape[1:]), np.float32)])
        compiled = self._head_for(name, padded)
        result = compiled.create_infer_request().infer({0: np.ascontiguousarray(rows)})
        return np.asarray(result[compiled.outputs[0]], np.float32)[:count]

    def stem(self, molded_images) -> dict:
        """The stem's outputs for molded images float32 [N, h, w, C]: {layer name: float32 array}."""
        images = np.ascontiguousarray(molded_images, np.float32)
        compiled, names = self.compiled_for(images.shape[:3])
        results = compiled.create_infer_request().infer({0: images})
        return {names[i]: np.asarray(results[port]) for i, port in enumerate(compiled.outputs)}

    def predict(self, molded_images, image_metas, anchors) -> dict:
        """The network's outputs for a batch: molded_images float32 [N, h, w, C], image_metas
        [N, META], anchors [N, A, 4] (or [A, 4], shared). Returns {name: float32 array}, the
        keys and types of ``MaskRCNN._predict``."""
        import tensorflow as tf

        stem = self.stem(molded_images)
        images = len(molded_images)
        anchors = np.asarray(anchors, np.float32)
        if anchors.ndim == 2:
            anchors = anchors[np.newaxis]
        if len(anchors) != images:
            anchors = np.broadcast_to(anchors[:1], (images,) + anchors.shape[1:])
        outputs = self._heads([tf.constant(stem[name]) for name in STEM_LAYERS],
                              tf.constant(np.asarray(image_metas, np.float32)), tf.constant(anchors))
        return {name: value.numpy() for name, value in outputs.items()}


############################################################
#  Export, reload, check
############################################################

def export_openvino(model, path, overwrite=False, runtime=None):
    """Write ``model`` for the OpenVINO runtime into the folder ``path``: the stem as IR
    (``model.xml``, ``model.bin``: float32, not compressed; for the config's square molded size in
    "square" resize mode, else of dynamic size), the heads' convolution stacks as IR of any row
    count (``classifier.xml``, ``mask.xml`` and their .bin), the weights (``model.weights.h5``,
    which the TensorFlow parts read) and ``config.yaml``.

    The folder is written beside ``path`` under a temporary name and renamed into place, so
    ``path`` is never half written; ``overwrite=False`` refuses an existing ``path``. ``runtime``:
    an :class:`OpenVINORuntime` of this model whose cache to use. Returns the path.
    """
    ov = require_openvino()
    from mrcnn.fileio import atomic_folder

    if Path(path).exists() and not overwrite:  # (before converting anything)
        raise FileExistsError(f"{path} exists; choose another folder or pass overwrite=True")
    # The stem of the molded size of a "square" config (every image molds to it), else of any size.
    shape = (1, model.config.IMAGE_MAX_DIM, model.config.IMAGE_MAX_DIM) \
        if model.config.IMAGE_RESIZE_MODE == "square" else None
    cache = runtime.cache if runtime is not None else True
    ov_model = converted_model(model, cache, shape)[0]
    heads = {name: converted_model(model, cache, head=name)[0] for name in HEAD_SEGMENTS}
    with atomic_folder(path, overwrite) as tmp:
        ov.save_model(ov_model, str(tmp / MODEL_FILE), compress_to_fp16=False)
        for name, head in heads.items():
            ov.save_model(head, str(tmp / HEAD_FILES[name]), compress_to_fp16=False)
        model.save_weights(str(tmp / KERAS_WEIGHTS_FILE))
        model.config.to_yaml(tmp / CONFIG_FILE)
    return Path(path)


def load_openvino(path, precision="f32", threads=None, config_class=None, model_dir=None):
    """Read a folder written by :func:`export_openvino`: an inference MaskRCNN with its weights,
    whose ``detect`` runs the stem and the heads from the folder's IR (no conversion) in OpenVINO.
    (A folder without the heads' IR, from before they were exported, gets them converted.)

    config_class: the Config subclass to read ``config.yaml`` into (default ``mrcnn.config.Config``;
    the file holds every attribute the network needs). model_dir: the model's log folder
    (default: ``path``; nothing is written there by ``detect``).
    """
    require_openvino()
    path = Path(path)
    missing = [name for name in (MODEL_FILE, KERAS_WEIGHTS_FILE, CONFIG_FILE) if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not an OpenVINO export folder (no {', '.join(missing)})")
    from mrcnn.model import MaskRCNN

    if config_class is None:
        from mrcnn.config import Config as config_class
    config = config_class.from_yaml(path / CONFIG_FILE)
    model = MaskRCNN("inference", config, str(model_dir or path))
    model.load_weights(str(path / KERAS_WEIGHTS_FILE))
    heads = {name: path / file for name, file in HEAD_FILES.items() if (path / file).is_file()}
    model.use_runtime(OpenVINORuntime(model, precision=precision, threads=threads, stem=path / MODEL_FILE,
                                      head_models=heads))
    return model


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
