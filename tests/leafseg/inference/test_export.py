"""Exporting Mask R-CNN as a SavedModel: the graph pre- and post-processing against numpy, and
``leafseg export`` end to end on the tiny trained model (reloaded, same detections as Keras).
"""
import types

import numpy as np
import pytest
import tensorflow as tf
import yaml

from leafseg.cli import export as export_command
from leafseg.synth.rosettes import generate_rosette
from mrcnn import export, transform, utils
from mrcnn.config import Config
from mrcnn.model import MaskRCNN
from tests.mrcnn.test_anchors import custom_backbone_config
from tests.command_output import run_main
from tests.tiny_trained import inference_model, trained_run
from tests.toy_data import ToyConfig, shapes_dataset

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

SIZES = [(64, 64), (96, 96), (80, 120), (37, 53), (130, 41)]
MODES = [("square", {}), ("square", {"IMAGE_MIN_DIM": 80, "IMAGE_MAX_DIM": 128}), ("pad64", {"IMAGE_MIN_DIM": 64}),
         ("pad64", {"IMAGE_MIN_DIM": None, "IMAGE_MIN_SCALE": 1.5}), ("none", {})]


def numpy_side(config):
    """MaskRCNN's numpy molding, unmolding and anchors need only ``config`` (no Keras model)."""
    return types.SimpleNamespace(config=config)


# ------------------------------------------------------------------ graph pieces against numpy

@pytest.mark.parametrize("mode,overrides", MODES)
def test_molding_in_the_graph_matches_mold_inputs_bit_for_bit(mode, overrides, rng):
    config = ToyConfig(IMAGE_RESIZE_MODE=mode, **overrides)
    for shape in SIZES:
        image = rng.integers(0, 256, size=shape + (3,), dtype=np.uint8)
        image[:4] = 17  # flat regions make .5 rounding ties in the resized image likely
        molded, metas, windows = MaskRCNN.mold_inputs(numpy_side(config), [image])
        graph_molded, graph_meta, graph_window = export.mold_image_graph(tf.constant(image), config)
        np.testing.assert_array_equal(graph_molded.numpy(), molded[0], err_msg=f"{mode} {shape}")
        np.testing.assert_array_equal(graph_meta.numpy(), metas[0].astype(np.float32))
        np.testing.assert_array_equal(graph_window.numpy(), windows[0])
        anchors = MaskRCNN.get_anchors(numpy_side(config), molded.shape[1:3])
        np.testing.assert_array_equal(export.anchors_graph(tf.shape(graph_molded), config).numpy(), anchors)


def test_graph_resize_is_skimage_resize_with_its_zero_border_and_clipping(rng):
    for source, target in (((7, 5), (16, 9)), ((16, 12), (5, 7)), ((28, 28), (3, 41))):
        values = rng.uniform(0.3, 0.9, size=source)  # min > 0: the zero border is clipped away
        np.testing.assert_allclose(transform._resize_2d(tf.constant(values), *target).numpy(),
                                   utils.resize(values, target, order=1), rtol=0, atol=1e-15)


def random_detections(rng, count, rows, molded_shape, window, classes=2):
    detections = np.zeros((rows, 6), np.float32)
    wy1, wx1, wy2, wx2 = window
    for i in range(count):
        y = np.sort(rng.uniform(wy1, wy2, 2))
        x = np.sort(rng.uniform(wx1, wx2, 2))
        detections[i, :4] = utils.norm_boxes(np.array([y[0], x[0], y[1], x[1]]), molded_shape)
        detections[i, 4:] = rng.integers(1, classes), rng.uniform(0.5, 1.0)
    masks = rng.uniform(0, 1, size=(rows, 28, 28, classes)).astype(np.float32)
    if count:
        masks[0] = 0.7  # a constant mask: only skimage's clipping keeps its edges above 0.5
    if count > 2:
        detections[1, 2:4] = detections[1, 0:2]  # zero-area box: dropped
    return detections, masks


@pytest.mark.parametrize("mask_overlap", [None, 0.3, 0.0])
@pytest.mark.parametrize("count,original,window", [(5, (96, 96), (0, 0, 64, 64)), (6, (80, 120), (11, 0, 53, 64)),
                                                   (0, (80, 120), (11, 0, 53, 64)), (8, (300, 200), (0, 11, 64, 53))])
def test_unmolding_in_the_graph_matches_unmold_detections(count, original, window, mask_overlap, rng):
    detections, masks = random_detections(rng, count, 8, (64, 64), window)
    expected = transform.unmold_detections(detections, masks, np.array(original + (3,)), np.array((64, 64, 3)),
                                           np.array(window), mask_overlap)
    actual = export.unmold_detections_graph(tf.constant(detections), tf.constant(masks), tf.constant(original + (3,)),
                                            tf.constant((64, 64, 3)), tf.constant(window), mask_overlap)
    if mask_overlap is not None and count > 3:
        # Random masks cover about half of each other: the threshold drops some, not all.
        everything = transform.unmold_detections(detections, masks, np.array(original + (3,)), np.array((64, 64, 3)),
                                                 np.array(window))
        assert 0 < len(expected[2]) < len(everything[2])
    for name, value in zip(export.OUTPUT_NAMES, expected):
        assert actual[name].dtype.as_numpy_dtype == value.dtype, name
        np.testing.assert_array_equal(actual[name].numpy(), value, err_msg=name)


def test_crop_mode_is_not_exportable():
    with pytest.raises(ValueError, match="IMAGE_RESIZE_MODE = 'crop' cannot be exported"):
        export.mold_image_graph(tf.zeros((64, 64, 3), tf.uint8), Config(IMAGE_RESIZE_MODE="crop", IMAGE_MIN_DIM=64))


def test_custom_backbone_anchors_in_the_graph_follow_compute_backbone_shape():
    config = custom_backbone_config()

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def anchors_of(image):  # as the serving function: the molded size is unknown when tracing
        molded, _, _ = export.mold_image_graph(image, config)
        return export.anchors_graph(tf.shape(molded), config)

    expected = MaskRCNN.get_anchors(numpy_side(config), (64, 64))
    assert expected.shape == (3 * (8 * 8 + 2 * 2), 4)
    np.testing.assert_array_equal(anchors_of(tf.zeros((40, 50, 3), tf.uint8)).numpy(), expected)
    with pytest.raises(ValueError, match="callable BACKBONE exports with IMAGE_RESIZE_MODE = 'square' only"):
        export.mold_image_graph(tf.zeros((64, 64, 3), tf.uint8), config.replace(IMAGE_RESIZE_MODE="pad64"))


def test_compare_detections_pairs_swapped_rows_and_reports_differences():
    masks = np.zeros((20, 20, 2), bool)
    masks[2:8, 2:8, 0] = masks[10:18, 10:18, 1] = True
    a = {"rois": np.array([[2, 2, 8, 8], [10, 10, 18, 18]], np.int32), "class_ids": np.array([1, 1], np.int32),
         "scores": np.array([0.90, 0.89], np.float32), "masks": masks}
    swapped = {"rois": a["rois"][::-1], "class_ids": a["class_ids"], "scores": a["scores"][::-1] + 1e-4,
               "masks": masks[..., ::-1]}
    assert export.compare_detections(a, swapped) == []
    moved = dict(a, rois=a["rois"] + [[0, 0, 0, 2], [0, 0, 0, 0]])
    assert "nearest [2, 2, 8, 10] (2 px > 1)" in export.compare_detections(a, moved)[0]
    flipped = dict(a, masks=masks.copy())
    flipped["masks"][2:4, 2:8, 0] = False
    assert export.compare_detections(a, flipped) == ["detection 0: 12 of its 36 box pixels differ in the mask"]
    assert export.compare_detections(a, dict(a, scores=np.array([0.8, 0.89], np.float32)))[0].startswith(
        "detection 0: score 0.900000 expected, 0.800000 found")
    fewer = {k: v[..., :1] if k == "masks" else v[:1] for k, v in a.items()}
    assert export.compare_detections(a, fewer) == ["2 detections expected, 1 found"]


# ------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def model(run):
    return inference_model(run["weights"])


@pytest.fixture(scope="module")
def images():
    """Images of several sizes: toy shapes at the model's size and larger, a rosette, a blank."""
    shapes = shapes_dataset(3, seed=1)
    large = np.repeat(np.repeat(shapes.load_image(1), 2, axis=0), 3, axis=1)          # 128 x 192
    return {"shapes": shapes.load_image(0), "large": large, "odd": shapes.load_image(2)[:45, :61],
            "rosette": generate_rosette(3, (90, 120)).image, "blank": np.zeros((50, 70, 3), np.uint8)}


def run_export(argv):
    return run_main(export_command.main, argv)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    """``leafseg export`` of the tiny model, checked by the command on its default images."""
    out = tmp_path_factory.mktemp("export") / "tiny_savedmodel"
    done = run_export(["--weights", run["weights"], "--config", run["config"], "--out", str(out)])
    done.path = out
    return done


def test_export_command_writes_a_savedmodel_and_checks_it(exported, run):
    assert exported.status == 0, exported.stderr + exported.stdout
    assert (exported.path / "saved_model.pb").is_file()
    assert f"wrote {exported.path}" in exported.stdout
    assert exported.stdout.count("same detections") == 2, exported.stdout
    # The config travels with the model, for reference: the training config, one image per batch.
    expected = yaml.safe_load(open(run["config"]))
    expected["IMAGES_PER_GPU"] = 1
    assert yaml.safe_load((exported.path / "config.yaml").read_text()) == expected
    assert not list(exported.path.parent.glob(".*")), "temporary export folders left behind"


def test_savedmodel_holds_no_combined_nms(exported):
    """CombinedNonMaxSuppression has no XLA kernel and no OpenVINO conversion rule (issue 28)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((exported.path / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    assert "While" in ops or "StatelessWhile" in ops, "the NMS loop should be in the graph"
    assert not {op for op in ops if "NonMaxSuppression" in op}


@pytest.fixture(scope="module")
def reloaded(exported):
    """The SavedModel reloaded with tf.saved_model.load (inside load_saved_model)."""
    return export.load_saved_model(exported.path)


def test_reloaded_savedmodel_gives_the_keras_models_detections(reloaded, model, images):
    served = reloaded.saved_model
    found = 0
    for name, image in images.items():
        expected = model.detect([image])[0]
        outputs = served.serve(tf.constant(image))
        actual = {key: outputs[key].numpy() for key in export.OUTPUT_NAMES}
        assert actual["masks"].shape == image.shape[:2] + (len(expected["scores"]),), name
        for key in export.OUTPUT_NAMES:
            assert actual[key].dtype == expected[key].dtype, (name, key)
        assert export.compare_detections(expected, actual) == [], name
        found += len(expected["scores"])
    assert found >= 5, "the tiny model should detect shapes: a comparison of empty results proves little"
    # TF Serving's entry point: the serving_default signature, input named "image".
    outputs = served.signatures["serving_default"](image=tf.constant(images["shapes"]))
    np.testing.assert_array_equal(outputs["class_ids"].numpy(), model.detect([images["shapes"]])[0]["class_ids"])


def test_the_serving_function_drops_covered_masks_as_detect_does(run, images):
    model = inference_model(run["weights"])
    config = model.config.replace(DETECTION_NMS_THRESHOLD=0.9, DETECTION_MASK_OVERLAP_THRESHOLD=0.1)
    loose = MaskRCNN("inference", config, model.model_dir)
    loose.keras_model.set_weights(model.keras_model.get_weights())
    serve = export.make_serving_function(loose)
    for name, image in images.items():
        expected = loose.detect([image])[0]
        actual = {key: value.numpy() for key, value in serve(tf.constant(image)).items()}
        assert export.compare_detections(expected, actual) == [], name
        keep = utils.suppress_covered_masks(expected["masks"], expected["class_ids"], expected["scores"], 0.1)
        assert keep.all(), name  # what detect returns is already suppressed
    # With box NMS nearly off, the tiny model finds a shape more than once; the masks decide.
    box_only = MaskRCNN("inference", config.replace(DETECTION_MASK_OVERLAP_THRESHOLD=None), model.model_dir)
    box_only.keras_model.set_weights(model.keras_model.get_weights())
    counts = [(len(box_only.detect([image])[0]["scores"]), len(loose.detect([image])[0]["scores"]))
              for image in images.values()]
    assert all(kept <= found for found, kept in counts) and any(kept < found for found, kept in counts), counts


def test_load_saved_model_returns_detect_like_dicts(reloaded, exported, model, images):
    result = reloaded(images["large"])
    assert set(result) == {"rois", "class_ids", "scores", "masks"}
    assert export.compare_detections(model.detect([images["large"]])[0], result) == []
    with pytest.raises(ValueError, match=r"uint8 images, got float32: pass a uint8 RGB image \(0-255\); convert "
                                         r"with np.clip\(image, 0, 255\).astype\(np.uint8\)"):
        reloaded(images["large"].astype(np.float32))
    with pytest.raises(FileNotFoundError, match="not a SavedModel"):
        export.load_saved_model(exported.path.parent / "nothing")


def test_savedmodel_refuses_float_images_with_a_message_naming_the_dtype(reloaded, images):
    served = reloaded.saved_model
    # The TF Serving signature stays uint8, input "image".
    spec = served.signatures["serving_default"].structured_input_signature[1]["image"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, 3]
    for dtype in (np.float32, np.float64, np.int64):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            served.serve(tf.constant(images["shapes"].astype(dtype)))
        message = str(error.value)
        assert f"the exported model takes uint8 images, got {tf.as_dtype(dtype).name}" in message, message
        assert export.WRONG_DTYPE_ADVICE in message
    # uint8 still detects.
    assert served.serve(tf.constant(images["shapes"]))["scores"].dtype == tf.float32


def test_export_refuses_to_replace_a_folder_unless_asked(model, tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        export.export_saved_model(model, tmp_path / "model")


# ------------------------------------------------------------------ the config export builds

@pytest.fixture
def captured_export(monkeypatch):
    """``leafseg export`` with mrcnn.export.export_saved_model standing in: the model it was given."""
    models = []

    def capture(model, path, overwrite=False):
        models.append(model)
        return path

    monkeypatch.setattr(export, "export_saved_model", capture)
    return models


def test_export_set_changes_the_config_of_the_exported_model(run, captured_export, tmp_path):
    done = run_export(["--weights", run["weights"], "--out", str(tmp_path / "m"), "--no-check", "--set",
                       "DETECTION_MAX_INSTANCES=4", "--set", "IMAGE_MIN_DIM=128", "--set", "IMAGE_MAX_DIM=128"])
    assert done.status == 0, done.stderr
    [model] = captured_export
    assert (model.config.DETECTION_MAX_INSTANCES, model.config.IMAGE_MAX_DIM) == (4, 128)
    assert model.config.BACKBONE_WIDTH == ToyConfig.BACKBONE_WIDTH  # the rest: the config stored in the weights
    assert done.stdout == (f"wrote {tmp_path / 'm'} (weights {run['weights']}, config the config stored in "
                           f"{run['weights']} --set DETECTION_MAX_INSTANCES=4 --set IMAGE_MIN_DIM=128 "
                           f"--set IMAGE_MAX_DIM=128)\n")


@pytest.mark.parametrize("pair, message", [
    ("NUM_CLASSEZ=3", "export: error: unknown config key 'NUM_CLASSEZ' in arguments; did you mean NUM_CLASSES"),
    ("IMAGE_RESIZE_MODE=squares", "export: error: IMAGE_RESIZE_MODE = 'squares' is invalid"),
    ("NUM_CLASSES", "export: error: --set 'NUM_CLASSES': expected KEY=VALUE"),
])
def test_export_bad_set_is_named_before_anything_is_written(run, captured_export, tmp_path, pair, message):
    done = run_export(["--weights", run["weights"], "--out", str(tmp_path / "m"), "--set", pair])
    assert done.status == 2 and message in done.stderr
    assert not captured_export


def test_export_config_file_may_start_from_a_preset_by_name(captured_export, tmp_path, monkeypatch):
    """--config my.yaml with ``_BASE_: leaf_small``, for the shipped leaf-small weights."""
    from leafseg.config import LeafSmallConfig
    from leafseg.models import zoo

    monkeypatch.delenv(zoo.ZOO_DIR_ENV, raising=False)
    mine = tmp_path / "my.yaml"
    mine.write_text("_BASE_: leaf_small\nIMAGE_MIN_DIM: 512\nIMAGE_MAX_DIM: 512\n")
    done = run_export(["--config", str(mine), "--out", str(tmp_path / "m"), "--no-check"])
    assert done.status == 0, done.stderr
    [model] = captured_export
    assert model.config.to_dict() == LeafSmallConfig(IMAGE_MIN_DIM=512, IMAGE_MAX_DIM=512, IMAGES_PER_GPU=1).to_dict()
    assert f"config {mine})" in done.stdout
