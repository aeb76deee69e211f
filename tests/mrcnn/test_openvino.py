"""OpenVINO as the inference runtime (mrcnn.openvino, issue 28): the same detections as TensorFlow.

These run with leaf-small on drawn rosettes; openvino comes with the test extra (CI installs it,
so there they run rather than skip: tests/optional_packages.py).
"""
import sys

import numpy as np
import pytest

from leafseg.synth.rosettes import generate_rosette
from mrcnn import openvino as mov
from mrcnn.export import compare_detections
from tests.optional_packages import require

SIDES = (256, 288, 320, 352, 384, (300, 384))


@pytest.fixture(scope="module")
def model():
    require("openvino", "openvino")
    from leafseg.models.loading import load_inference_model

    return load_inference_model("leaf-small")[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ov_cache")


@pytest.fixture(scope="module")
def runtime(model, cache):
    return mov.OpenVINORuntime(model, cache=cache)


@pytest.fixture(scope="module")
def images():
    return [generate_rosette(seed, side).image for seed, side in enumerate(SIDES)]


@pytest.fixture(scope="module")
def tf_results(model, images):
    assert model.runtime is None
    return [model.detect([image])[0] for image in images]


def with_runtime(model, runtime, images, batch=1):
    previous = model.use_runtime(runtime)
    try:
        return [r for i in range(0, len(images), batch) for r in model.detect(images[i:i + batch])]
    finally:
        model.use_runtime(previous)


def mask_iou(a, b):
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def assert_same(expected, actual, min_iou=0.98, score_tolerance=2e-3):
    """Counts equal; each expected instance paired with the actual one of highest mask IoU, >= min_iou,
    scores within score_tolerance."""
    assert len(actual["scores"]) == len(expected["scores"])
    free = list(range(len(actual["scores"])))
    for i in range(len(expected["scores"])):
        ious = [(mask_iou(expected["masks"][..., i], actual["masks"][..., j]), j) for j in free]
        iou, j = max(ious)
        free.remove(j)
        assert iou >= min_iou, (i, iou)
        assert abs(float(expected["scores"][i]) - float(actual["scores"][j])) <= score_tolerance
        assert expected["class_ids"][i] == actual["class_ids"][j]


def test_openvino_detects_what_tensorflow_detects(model, runtime, images, tf_results):
    """The issue's acceptance test: counts equal, matched masks IoU >= 0.98, scores close."""
    results = with_runtime(model, runtime, images)
    assert sum(len(r["scores"]) for r in tf_results) > 6 * 5  # leaves found, not an empty comparison
    for expected, actual in zip(tf_results, results):
        assert_same(expected, actual)
        assert not compare_detections(expected, actual, score_tolerance=2e-3, mask_tolerance=0.02)
        assert actual["rois"].dtype == np.int32 and actual["masks"].dtype == bool
    assert runtime.name == "openvino"
    assert runtime.description == (f"OpenVINO {mov.version()} (CPU, f32; TensorFlow for the proposals, "
                                   "ROIAlign and detections)")
    assert runtime.sources["classifier"] in ("converted", "cache") and runtime.sources["mask"] in ("converted", "cache")
    # the heads ran in OpenVINO, compiled for row counts padded to multiples of HEAD_ROWS_STEP
    rows = [key[1] for key in runtime.compile_seconds if key[0] == "mask"]
    assert rows and all(r % mov.HEAD_ROWS_STEP == 0 for r in rows)


def test_with_the_heads_left_to_tensorflow_too(model, cache, images, tf_results):
    runtime = mov.OpenVINORuntime(model, cache=cache, heads=False)
    for expected, actual in zip(tf_results[:3], with_runtime(model, runtime, images[:3])):
        assert_same(expected, actual)
    assert runtime.description.endswith("; TensorFlow after the proposals)")
    assert "mask" not in runtime.sources and not any(isinstance(k[0], str) for k in runtime.compile_seconds)


@pytest.mark.parametrize("name", list(mov.HEAD_SEGMENTS))
def test_a_head_in_openvino_computes_what_its_keras_layers_compute(model, runtime, name):
    segment = mov.head_segment(model, name)
    rows = np.random.default_rng(0).normal(size=(13, *segment.inputs[0].shape[1:])).astype(np.float32)
    expected = np.asarray(segment(rows, training=False))
    actual = runtime.head(name, rows)  # 13 rows: padded to 16 for OpenVINO, 13 returned
    assert actual.shape == expected.shape and actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    assert (name, 16) in runtime.compile_seconds
    empty = runtime.head(name, rows[:0])
    assert empty.shape == (0, *expected.shape[1:])
    with pytest.raises(ValueError, match="no head segment 'box'"):
        mov.head_segment(model, "box")


def test_predict_returns_what_tensorflow_predict_returns(model, runtime, images):
    molded, metas, _ = model.mold_inputs(images[:1])
    expected = model._predict(molded, metas)
    actual = runtime.predict(molded, metas, model.get_anchors(molded.shape[1:3]))
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        assert actual[name].dtype == np.float32 and actual[name].shape == value.shape, name
    np.testing.assert_allclose(actual["detections"], expected["detections"], atol=2e-3)


def test_a_batch_of_two_and_back_to_tensorflow(model, runtime, images, tf_results):
    # square mode: every image molds to 384 x 384, so any two make a batch
    batched = with_runtime(model, runtime, images[:4], batch=2)
    for expected, actual in zip(tf_results[:4], batched):
        assert_same(expected, actual)
    assert (2, 384, 384, 36828) in runtime.compile_seconds or any(k[0] == 2 for k in runtime.compile_seconds)
    assert model.runtime is None
    again = model.detect([images[0]])[0]
    for name in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(again[name], tf_results[0][name])


def test_the_converted_graph_is_cached(model, runtime, cache, images, tf_results):
    with_runtime(model, runtime, images[:1])
    assert set(runtime.sources.values()) <= {"converted", "cache"} and runtime.sources
    entries = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(entries) == len(runtime.sources)  # one stem per molded shape
    second = mov.OpenVINORuntime(model, cache=cache)
    assert_same(tf_results[0], with_runtime(model, second, images[:1])[0])
    assert set(second.sources.values()) == {"cache"}


def test_a_model_differing_only_after_the_proposals_shares_the_cached_stem(model):
    assert mov.cache_key(model, (1, 64, 64)) == mov.cache_key(
        type("M", (), {"config": model.config.replace(DETECTION_MIN_CONFIDENCE=0.99, DETECTION_MAX_INSTANCES=7),
                       "keras_model": model.keras_model})(), (1, 64, 64))
    assert mov.cache_key(model, (1, 64, 64)) != mov.cache_key(model, (1, 128, 128))


def test_export_and_load_give_the_runtimes_detections(model, runtime, images, tmp_path):
    path = mov.export_openvino(model, tmp_path / "ov", runtime=runtime)
    assert sorted(p.name for p in path.iterdir()) == ["classifier.bin", "classifier.xml", "config.yaml", "mask.bin",
                                                      "mask.xml", "model.bin", "model.weights.h5", "model.xml"]
    assert not list(tmp_path.glob(".*")), "temporary folders left behind"
    loaded = mov.load_openvino(path)
    assert loaded.config.to_dict() == model.config.to_dict()
    expected = with_runtime(model, runtime, images[:2])
    for image, want in zip(images[:2], expected):
        got = loaded.detect([image])[0]
        for name in ("rois", "class_ids", "scores", "masks"):
            np.testing.assert_array_equal(got[name], want[name])
    assert set(loaded.runtime.sources.values()) == {"given"}  # the stem and both heads from the folder
    assert mov.check_openvino(model, path, images[:2]) == [[], []]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        mov.export_openvino(model, path, runtime=runtime)
    mov.export_openvino(model, path, overwrite=True, runtime=runtime)
    assert (path / "model.xml").is_file()


def test_bfloat16_runs_and_detects(model, images, cache):
    runtime = mov.OpenVINORuntime(model, precision="bfloat16", cache=cache)
    assert runtime.precision == "bf16" and "bf16" in runtime.description
    results = with_runtime(model, runtime, images[:2])
    assert all(len(r["scores"]) > 3 for r in results)


def test_unknown_precision_is_refused(model, cache):
    with pytest.raises(ValueError, match="f32"):
        mov.OpenVINORuntime(model, precision="int4", cache=cache)


def test_a_training_model_is_refused():
    class Training:
        mode = "training"

    require("openvino", "openvino")
    with pytest.raises(ValueError, match="inference mode"):
        mov.OpenVINORuntime(Training(), cache=False)


def test_without_openvino_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    assert not mov.available()
    assert mov.version() is None
    for call in (lambda: mov.OpenVINORuntime(object()), lambda: mov.export_openvino(object(), tmp_path / "x"),
                 lambda: mov.require_openvino()):
        with pytest.raises(ImportError, match=r"pip install 'leafseg\[openvino\]'"):
            call()
    (tmp_path / "ir").mkdir()
    (tmp_path / "ir" / "model.xml").write_text("<net/>")
    with pytest.raises(ImportError, match=r"leafseg\[openvino\]"):
        mov.load_openvino(tmp_path / "ir")


def test_converting_sends_no_telemetry_and_leaves_weights_files_openable(model, tmp_path, monkeypatch):
    """openvino-telemetry sends an event per conversion from a forked process that holds this process's
    open files (HDF5 locks) while it waits on the network; leafseg's conversions send none, and a
    weights file written right after a conversion opens again."""
    import h5py
    import openvino_telemetry
    from openvino.tools.ovc import convert_impl

    made = []
    original = openvino_telemetry.Telemetry.__init__
    monkeypatch.setattr(openvino_telemetry.Telemetry, "__init__",
                        lambda self, *a, **k: made.append(1) or original(self, *a, **k))
    before = convert_impl.tm
    mov.convert_head(model, "classifier")
    assert made == [] and convert_impl.tm is before
    path = model.save_weights(str(tmp_path / "after.weights.h5"))
    with h5py.File(path, "a") as f:
        assert f.attrs["config_yaml"]
