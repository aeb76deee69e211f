"""The contract every Keras layer of ``mrcnn`` keeps (in the spirit of keras-hub's ``run_layer_test``).

Every layer class defined in the package has an entry in :data:`CASES`, keyed by class name
(not module, so that layers may move between modules): a small instance and example inputs.
For each, the tests check that

* ``from_config(get_config())``, through JSON, gives the same config and the same outputs;
* the class is registered under ``mrcnn>Name`` and survives ``serialize_keras_object``;
* the symbolic output (``compute_output_shape``/``compute_output_spec`` or tracing) has the
  eager output's shape and dtype, with the batch size known or not;
* a ``tf.function`` with an unknown batch size gives the eager outputs on batches of 1 and 2;
* under ``float32``, ``mixed_float16`` and ``mixed_bfloat16`` the outputs have the documented dtypes
  and are finite;
* all-padding inputs (zero boxes, zero class ids, zero counts) give finite outputs.
"""
import dataclasses
import importlib
import inspect
import json
import pkgutil
from typing import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

import mrcnn

NUM_CLASSES = 3
SIDE = 32  # image side in pixels, for the image meta
STD = (0.1, 0.1, 0.2, 0.2)


# ------------------------------------------------------------------------------- inputs

def normal(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def boxes(batch, count, seed=0):
    """[batch, count, 4] normalised boxes; the last row of each image is zero padding."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0.0, 0.5, (batch, count, 2))
    size = rng.uniform(0.1, 0.5, (batch, count, 2))
    result = np.concatenate([corner, corner + size], axis=-1).astype(np.float32)
    result[:, -1] = 0.0
    return result


def image_meta(batch):
    """[batch, 12 + NUM_CLASSES]: a SIDE x SIDE image filling its window, every class active."""
    row = [0, SIDE, SIDE, 3, SIDE, SIDE, 3, 0, 0, SIDE, SIDE, 1] + [1] * NUM_CLASSES
    return np.tile(np.array(row, np.float32), (batch, 1))


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def detections(batch, count=5):
    """[batch, count, (y1, x1, y2, x2, class_id, score)], the last two rows padding."""
    result = np.zeros((batch, count, 6), np.float32)
    result[:, :, :4] = boxes(batch, count)
    result[:, :count - 2, 4] = 1.0 + np.arange(count - 2) % (NUM_CLASSES - 1)
    result[:, :count - 2, 5] = 0.9
    result[:, count - 2:, :4] = 0.0
    return result


def pyramid(batch, channels=2):
    return [normal(batch, SIDE // stride, SIDE // stride, channels, seed=stride) for stride in (4, 8, 16, 32)]


def proposal_inputs(batch, anchors=8):
    return ([softmax(normal(batch, anchors, 2)), normal(batch, anchors, 4, seed=1), boxes(batch, anchors, seed=2)],)


def target_inputs(batch):
    gt_boxes = boxes(batch, 3, seed=1)
    gt_class_ids = np.zeros((batch, 3), np.int32)
    gt_class_ids[:, 0], gt_class_ids[:, 1] = 1, -1  # a box, a crowd, padding
    proposals = boxes(batch, 6, seed=2)
    proposals[:, 0] = gt_boxes[:, 0]  # a positive
    masks = np.random.default_rng(3).random((batch, 8, 8, 3)) > 0.5
    return ([proposals, gt_class_ids, gt_boxes, masks],)


def batch_norm(cls):
    """A frozen BatchNorm over 3 channels with random gamma, beta and moving statistics."""
    layer = cls(train_bn=False)
    layer.build((None, 4, 4, 3))
    layer.set_weights([normal(3, seed=1), normal(3, seed=2), normal(3, seed=3), np.exp(normal(3, seed=4))])
    return layer


def zeros_like(args):
    return keras.tree.map_structure(np.zeros_like, args)


# -------------------------------------------------------------------------------- cases

@dataclasses.dataclass
class Case:
    make: Callable  # the layer class -> a small instance
    inputs: Callable  # batch size -> the positional call arguments (numpy arrays, nested lists)
    dtypes: tuple  # each output's dtype under mixed_float16 (float16 reads float32 under float32,
    # bfloat16 under mixed_bfloat16)
    padding: Callable = None  # batch size -> all-padding arguments; None: every input zero
    dynamic: tuple = ()  # (output, axis) whose size depends on the data: None when traced


CASES = {
    "BatchNorm": [Case(batch_norm, lambda b: (normal(b, 4, 4, 3),), ("float16",))],
    "ConstantAnchors": [Case(lambda cls: cls(boxes(1, 6)[0]), lambda b: (normal(b, 8, 8, 3),), ("float32",))],
    "NormBoxes": [Case(lambda cls: cls(), lambda b: (boxes(b, 3) * SIDE, normal(b, SIDE, SIDE, 3)), ("float32",))],
    "DetectionBoxes": [Case(lambda cls: cls(), lambda b: (detections(b),), ("float32",))],
    "DetectionCount": [Case(lambda cls: cls(), lambda b: (detections(b),), ("int32",))],
    "ActiveClassIds": [Case(lambda cls: cls(), lambda b: (image_meta(b),), ("float32",))],
    "CropToMatch": [Case(lambda cls: cls(), lambda b: (normal(b, 6, 6, 2), normal(b, 5, 4, 3)), ("float16",))],
    "MergeRoiAxis": [Case(lambda cls: cls(), lambda b: (normal(b, 3, 2, 2, 4),), ("float16",))],
    "SplitRoiAxis": [Case(lambda cls: cls(), lambda b: (normal(3 * b, 2), boxes(b, 3)), ("float16",))],
    "FlatConv2D": [Case(lambda cls: cls(4, (3, 3)), lambda b: (normal(b, 3, 3, 2),), ("float16",))],
    "Conv2D": [Case(lambda cls: cls(4, (3, 3), padding="same"), lambda b: (normal(b, 5, 5, 2),), ("float16",))],
    "TakeRois": [
        # Boxes keep their dtype (float32): they are ROIs for PyramidROIAlign.
        Case(lambda cls: cls(2), lambda b: (boxes(b, 4),), ("float32",)),
        # With a count tensor the ROI axis is as long as its value, known only when the graph runs.
        Case(lambda cls: cls(), lambda b: (boxes(b, 4), np.int32(3)), ("float32",),
             padding=lambda b: (np.zeros((b, 4, 4), np.float32), np.int32(0)), dynamic=((0, 1),)),
    ],
    "PadRois": [Case(lambda cls: cls(), lambda b: (normal(b, 2, 3), normal(b, 4, 5)), ("float16",))],
    "PyramidROIAlign": [Case(lambda cls: cls((2, 2)), lambda b: (boxes(b, 3), image_meta(b), pyramid(b)),
                             ("float16",), padding=lambda b: (np.zeros((b, 3, 4), np.float32), image_meta(b),
                                                              pyramid(b)))],
    "ProposalLayer": [Case(lambda cls: cls(4, 0.7, pre_nms_limit=6, rpn_bbox_std_dev=STD), proposal_inputs,
                           ("float32",))],
    "DetectionLayer": [Case(
        lambda cls: cls(max_instances=3, min_confidence=0.1, nms_threshold=0.3, bbox_std_dev=STD),
        lambda b: ([boxes(b, 4), softmax(normal(b, 4, NUM_CLASSES)), normal(b, 4, NUM_CLASSES, 4, seed=1),
                    image_meta(b)],),
        ("float32",),
        padding=lambda b: ([np.zeros((b, 4, 4), np.float32), np.zeros((b, 4, NUM_CLASSES), np.float32),
                            np.zeros((b, 4, NUM_CLASSES, 4), np.float32), image_meta(b)],))],
    "DetectionTargetLayer": [Case(lambda cls: cls(4, 0.5, STD, mask_shape=(4, 4), use_mini_mask=False, seed=1),
                                  target_inputs, ("float32", "int32", "float32", "float32"))],
    "PositiveCount": [Case(lambda cls: cls(), lambda b: (np.array([[1, 2, 0, 0]] * b, np.int32),), ("int32",))],
}


def discovered_layers():
    """{class name: class} of every Keras layer class defined in the mrcnn package (models, which are
    layers to Keras, are not: they are tested as models)."""
    found = {}
    for module_info in pkgutil.walk_packages(mrcnn.__path__, "mrcnn."):
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, keras.layers.Layer) and not issubclass(cls, keras.Model)
                    and cls.__module__.startswith("mrcnn")):
                found[cls.__name__] = cls
    return found


LAYERS = discovered_layers()
PARAMS = [pytest.param(name, case, id=f"{name}-{i}") for name, cases in CASES.items() for i, case in enumerate(cases)]


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ------------------------------------------------------------------------------ helpers

def outputs(layer, args):
    return [np.asarray(x) for x in keras.tree.flatten(layer(*args))]


def symbolic(args, unknown_batch):
    """keras.Input for every array of ``args``; scalars stay scalars (they have no batch axis)."""
    def spec(a):
        shape = a.shape if not unknown_batch or a.ndim == 0 else (None,) + a.shape[1:]
        return keras.Input(batch_shape=shape, dtype=str(a.dtype))
    return keras.tree.map_structure(spec, args)


def twin(layer, **config):
    """A new layer from ``layer``'s config (through JSON, updated by ``config``) and build config, with
    its weights (and fresh random state)."""
    clone = type(layer).from_config({**json.loads(json.dumps(layer.get_config())), **config})
    clone.build_from_config(layer.get_build_config())
    clone.set_weights(layer.get_weights())
    return clone


def assert_finite(arrays):
    for array in arrays:
        if array.dtype.name == "bfloat16":  # ml_dtypes' bfloat16, which numpy does not call floating
            array = array.astype(np.float32)
        if np.issubdtype(array.dtype, np.floating):
            assert np.all(np.isfinite(array)), array


# -------------------------------------------------------------------------------- tests

def test_every_layer_has_a_contract_entry():
    missing, stale = sorted(set(LAYERS) - set(CASES)), sorted(set(CASES) - set(LAYERS))
    assert not missing, f"mrcnn layers without an entry in CASES (add a small instance and inputs): {missing}"
    assert not stale, f"CASES entries for classes that are not mrcnn layers (any more): {stale}"


@pytest.mark.parametrize("name, case", PARAMS)
def test_config_round_trip(name, case):
    layer = case.make(LAYERS[name])
    args = case.inputs(2)
    expected = outputs(layer, args)
    config = layer.get_config()
    clone = twin(layer)
    assert json.loads(json.dumps(clone.get_config())) == json.loads(json.dumps(config))
    for actual, wanted in zip(outputs(clone, args), expected, strict=True):
        np.testing.assert_array_equal(actual, wanted)


@pytest.mark.parametrize("name, case", PARAMS)
def test_registered_and_serialisable(name, case):
    cls = LAYERS[name]
    assert keras.saving.get_registered_name(cls) == f"mrcnn>{name}"
    assert keras.saving.get_registered_object(f"mrcnn>{name}") is cls
    layer = case.make(cls)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is cls
    assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize("unknown_batch", [False, True], ids=["batch", "no_batch"])
@pytest.mark.parametrize("name, case", PARAMS)
def test_symbolic_output_matches_eager(name, case, unknown_batch):
    layer = case.make(LAYERS[name])
    args = case.inputs(2)
    eager = outputs(layer, args)
    traced = keras.tree.flatten(layer(*symbolic(args, unknown_batch)))
    assert len(traced) == len(eager)
    for index, (spec, actual) in enumerate(zip(traced, eager)):
        expected = tuple(None if (index, axis) in case.dynamic or (unknown_batch and axis == 0) else size
                         for axis, size in enumerate(actual.shape))
        assert tuple(spec.shape) == expected, f"output {index}"
        assert spec.dtype == actual.dtype.name, f"output {index}"


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name, case", PARAMS)
def test_unknown_batch_in_a_graph(name, case, batch):
    layer = case.make(LAYERS[name])
    args = case.inputs(batch)
    expected = outputs(layer, args)
    clone = twin(layer)
    signature = keras.tree.map_structure(lambda x: tf.TensorSpec(x.shape, x.dtype), symbolic(args, True))
    graph = tf.function(lambda *inputs: clone(*inputs), input_signature=list(signature))
    actual = [np.asarray(x) for x in keras.tree.flatten(graph(*args))]
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


# The dtype each policy computes in, which the "float16" of Case.dtypes stands for.
COMPUTE_DTYPES = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
# How far an output in that dtype may be from float32's: float16 keeps 11 significant bits,
# bfloat16 8, so its tolerance is float16's times 2 ** 3.
TOLERANCES = {"float32": 1e-6, "float16": 1e-2, "bfloat16": 8e-2}


@pytest.mark.parametrize("policy", list(COMPUTE_DTYPES), indirect=True)
@pytest.mark.parametrize("name, case", PARAMS)
def test_dtypes_and_finite_outputs(name, case, policy):
    """The documented dtypes, eagerly and symbolically; finite values, those of the same layer in
    float32 (float32 outputs exactly, float16 and bfloat16 ones to their precision)."""
    layer = case.make(LAYERS[name])
    args = case.inputs(2)
    result = outputs(layer, args)
    expected = tuple(COMPUTE_DTYPES[policy] if d == "float16" else d for d in case.dtypes)
    assert tuple(x.dtype.name for x in result) == expected
    assert tuple(x.dtype for x in keras.tree.flatten(layer(*symbolic(args, True)))) == expected
    assert_finite(result)
    for actual, wanted in zip(result, outputs(twin(layer, dtype="float32"), args), strict=True):
        tolerance = TOLERANCES.get(actual.dtype.name, TOLERANCES["float32"])
        np.testing.assert_allclose(actual.astype(wanted.dtype), wanted, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("policy", list(COMPUTE_DTYPES), indirect=True)
@pytest.mark.parametrize("name, case", PARAMS)
def test_all_padding_gives_finite_outputs(name, case, policy):
    layer = case.make(LAYERS[name])
    args = case.padding(2) if case.padding else zeros_like(case.inputs(2))
    assert_finite(outputs(layer, args))
