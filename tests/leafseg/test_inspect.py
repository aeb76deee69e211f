"""The inspection helpers (leafseg.inspect) and the figures they draw (mrcnn.visualize), without training.

Figures are checked for what they claim to show (counts in titles, the values in image panels,
the lines drawn), not just for being created. The built-in tiny model is trained only by
tests/test_notebooks.py; here the model tests use an untrained toy model.
"""
import io
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from leafseg import inspect as li
from leafseg.config import LeafConfig
from leafseg.inspect import assets as inspect_assets
from leafseg.inspect.data import PYRAMID_NAMES
from mrcnn import utils, visualize
from mrcnn.anchors import get_anchors
from mrcnn.pipeline import compose_image_meta
from tests.toy_data import IMAGE_SIDE, ToyConfig, shapes_dataset

RED = (255, 0, 0)


def png_bytes(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def panel_titles(fig):
    return [ax.get_title() or ax.get_title(loc="left") for ax in fig.axes]


############################################################
#  mrcnn.visualize
############################################################

def test_draw_boxes_outlines_exclusive_boxes_and_leaves_the_input_alone():
    image = np.zeros((10, 12, 3), np.uint8)
    out = visualize.draw_boxes(image, [(2, 3, 6, 8)], RED)
    red = np.all(out == RED, axis=-1)
    expected = np.zeros((10, 12), bool)
    expected[2, 3:8] = expected[5, 3:8] = True  # y2 = 6 is exclusive: the bottom edge is row 5
    expected[2:6, 3] = expected[2:6, 7] = True
    np.testing.assert_array_equal(red, expected)
    assert not image.any(), "draw_boxes must draw on a copy"


def test_draw_boxes_scale_enlarges_image_and_boxes():
    image = np.zeros((4, 5), np.uint8)  # gray is expanded to RGB
    out = visualize.draw_boxes(image, [(1, 1, 3, 4)], RED, scale=3)
    assert out.shape == (12, 15, 3)
    red = np.all(out == RED, axis=-1)
    assert red[3, 3] and red[8, 11] and red[3, 11] and red[8, 3]  # corners (1*3, 1*3) .. (3*3-1, 4*3-1)
    assert not red[2].any() and not red[9].any()


def test_draw_boxes_refined_dims_the_original_and_joins_centres():
    image = np.zeros((20, 20, 3), np.uint8)
    out = visualize.draw_boxes(image, [(2, 2, 6, 6)], RED, refined_boxes=[(10, 10, 16, 16)])
    np.testing.assert_array_equal(out[2, 2], [127, 0, 0])  # the original box at half intensity
    np.testing.assert_array_equal(out[10, 10], RED)  # the refined box in full colour
    assert np.all(out[8, 8] == RED)  # on the line from centre (4, 4) to centre (13, 13)
    with pytest.raises(ValueError, match="refined_boxes"):
        visualize.draw_boxes(image, [(2, 2, 6, 6)], RED, refined_boxes=np.zeros((2, 4)))


def test_figures_are_not_pyplot_figures():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = visualize.show_images([np.zeros((4, 4, 3), np.uint8), np.arange(16.0).reshape(4, 4)], ["rgb", "map"],
                                cols=1)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert plt.get_fignums() == before  # nothing registered with pyplot, nothing left open
    assert png_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_title() for ax in fig.axes[:2]] == ["rgb", "map"]  # then the colour bar's axis
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), np.arange(16.0).reshape(4, 4))


def test_figure_grid_hides_the_unused_axes():
    fig, axes = visualize.figure_grid(5, cols=3)
    assert len(axes) == 5 and len(fig.axes) == 6
    assert not fig.axes[5].axison and all(ax.axison for ax in axes)


def test_plot_anchors_counts_each_level():
    config = ToyConfig()
    shape = (IMAGE_SIDE, IMAGE_SIDE)
    anchors = get_anchors(shape, config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES,
                          config.RPN_ANCHOR_STRIDE, normalized=False)
    counts = [3 * 16 * 16, 3 * 8 * 8, 3 * 4 * 4, 3 * 2 * 2, 3 * 1 * 1]
    fig = visualize.plot_anchors(np.zeros(shape + (3,), np.uint8), anchors, counts, PYRAMID_NAMES)
    titles = panel_titles(fig)
    assert titles[0].startswith("P2: 768 anchors\n256 positions x 3, side 8 px")
    assert titles[4].startswith("P6: 3 anchors\n1 positions x 3, side 128 px")
    assert len(fig.axes[0].patches) == 3  # the three ratios at the centre position
    with pytest.raises(ValueError, match="level_counts"):
        visualize.plot_anchors(np.zeros(shape + (3,), np.uint8), anchors, counts[:4])


def test_plot_level_scores_maps_the_best_score_per_position():
    # Two levels: 2x2 positions and 1x1, 3 shapes each: 15 scores in anchor order.
    scores = np.zeros(15)
    scores[3 * 1 + 2] = 0.9  # level 0, position (0, 1), third shape
    scores[3 * 2 + 0] = 0.4  # level 0, position (1, 0)
    scores[12:] = [0.1, 0.7, 0.2]  # level 1
    fig = visualize.plot_level_scores(scores, [(2, 2), (1, 1)], 3, ["A", "B"], top_k=2)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), [[0.0, 0.9], [0.4, 0.0]])
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), [[0.7]])
    histogram = fig.axes[2]
    assert histogram.get_lines()[0].get_xdata()[0] == pytest.approx(0.7)  # the 2nd best score
    with pytest.raises(ValueError, match="15 scores"):
        visualize.plot_level_scores(scores, [(2, 2)], 3)


def test_plot_anchor_targets_titles_count_each_kind():
    anchors = np.array([[0, 0, 4, 4], [2, 2, 6, 6], [4, 4, 8, 8], [0, 4, 4, 8]], float)
    match = np.array([1, -1, 0, -1])
    fig = visualize.plot_anchor_targets(np.zeros((8, 8, 3), np.uint8), anchors, match, refined=[[0, 0, 5, 5]])
    assert panel_titles(fig)[0].startswith("1 positive anchors")
    assert panel_titles(fig)[1] == "2 negative anchors (1 neutral not drawn)"


def test_plot_activations_shows_the_most_active_channels():
    value = np.zeros((4, 4, 5), np.float32)
    value[..., 3] = 2.0
    value[..., 1] = 1.0
    fig = visualize.plot_activations({"C2": value}, channels=2)
    titles = panel_titles(fig)
    assert titles[0].startswith("C2 4x4x5\nmean of 5 channels")
    assert titles[1:3] == ["channel 3", "channel 1"]
    with pytest.raises(ValueError, match="expected"):
        visualize.plot_activations({"x": np.zeros((4, 4))})


def test_plot_histograms_titles_give_shape_and_moments():
    fig = visualize.plot_histograms({"w": np.array([[1.0, 3.0]]), "b": np.array([np.nan, 2.0])})
    assert panel_titles(fig) == ["w\n1x2: mean 2, std 1", "b\n2: mean 2, std 0"]


def test_plot_loss_comparison_overlays_runs_with_stages_and_rates():
    histories = {
        "a": {"epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.0], "val_loss": [3.5, 2.5, 2.0], "rpn_class_loss": [1, 0.5, 0.2],
              "learning_rate": [1e-3, 1e-3, 1e-4]},
        "b": {"epoch": [1, 2], "loss": [4.0, 3.0], "learning_rate": [1e-2, 1e-2]},
    }
    fig = visualize.plot_loss_comparison(histories, boundaries={"a": [2]}, spans={"b": [(1, 2)]}, cols=3)
    loss, rpn, rate = fig.axes[:3]
    assert [loss.get_title(), rpn.get_title(), rate.get_title()] == ["loss", "rpn_class_loss", "learning_rate"]
    styles = {line.get_label(): line.get_linestyle() for line in loss.get_lines()}
    assert styles["a training"] == "-" and styles["a validation"] == "--" and styles["b training"] == "-"
    assert any(line.get_linestyle() == ":" and line.get_xdata()[0] == 2 for line in loss.get_lines())
    assert len(loss.patches) == 1  # the span of b
    assert rate.get_yscale() == "log" and loss.get_yscale() == "linear"


############################################################
#  leafseg.inspect: data
############################################################

def test_anchor_levels_of_the_leaf_config():
    levels = li.anchor_levels(LeafConfig())
    assert [row["level"] for row in levels] == ["P2", "P3", "P4", "P5", "P6"]
    assert [row["anchors"] for row in levels] == [3 * 128 ** 2, 3 * 64 ** 2, 3 * 32 ** 2, 3 * 16 ** 2, 3 * 8 ** 2]
    assert sum(row["anchors"] for row in levels) == 65472
    assert [row["anchor side"] for row in levels] == ["8", "16", "32", "64", "128"]


def test_rpn_targets_refined_positives_land_on_the_boxes():
    dataset = shapes_dataset(1)
    config = ToyConfig()
    targets = li.rpn_targets(dataset, dataset.image_ids[0], config)
    positives = targets["anchors"][targets["match"] == 1]
    assert len(positives) == len(targets["refined"]) > 0
    overlaps = utils.compute_overlaps(targets["refined"], targets["gt_boxes"])
    np.testing.assert_allclose(overlaps.max(axis=1), 1.0, atol=1e-4)


def test_data_figures_of_a_prepared_toy_dataset():
    dataset = shapes_dataset(2)
    config = ToyConfig()
    image_id = dataset.image_ids[0]
    titles = panel_titles(li.plot_samples(dataset, dataset.image_ids))
    assert titles[2] == "3 leaves, boxes from the masks"
    assert panel_titles(li.plot_leaf_masks(dataset, image_id))[0].startswith("3 leaves")
    assert "64x64" in panel_titles(li.plot_resize(dataset, image_id, config))[1]
    mini = panel_titles(li.plot_mini_masks(dataset, image_id, config, count=2))
    assert len(mini) == 6 and mini[1] == "mini-mask 28x28" and mini[2].startswith("expanded back, IoU")
    assert "positive" in li.plot_rpn_targets(dataset, image_id, config).get_suptitle()
    assert len(li.plot_augmentations(dataset, image_id, config, count=2).axes) == 3
    assert "leaves of 2 images" in li.plot_leaf_sizes(dataset, config).axes[0].get_title()
    assert "1,023 anchors" in li.plot_anchor_levels(config).get_suptitle()


def test_colour_label_reads_the_label_file_or_paints_the_masks(tmp_path):
    from leafseg.measure.evaluate import load_eval_dataset
    from leafseg.data.masks import masks_to_color
    from leafseg.synth.rosettes import generate_rosette, write_png

    rosette = generate_rosette(0, 64)
    write_png(tmp_path / "plant00000_rgb.png", rosette.image)
    write_png(tmp_path / "plant00000_label.png", rosette.label)
    raw = load_eval_dataset(tmp_path, "all")
    np.testing.assert_array_equal(li.colour_label(raw, raw.image_ids[0]), rosette.label)
    toy = shapes_dataset(1)
    np.testing.assert_array_equal(li.colour_label(toy, 0), masks_to_color(toy.load_mask(0)[0]))


def test_default_dataset_is_made_once_per_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(inspect_assets, "DEFAULT_IMAGES", 3)
    monkeypatch.setattr(inspect_assets, "DEFAULT_SIZE", (48, 64))
    assets = li.default_dataset(tmp_path)
    assert assets.root.parent == tmp_path.resolve() and assets.root.name.startswith("tiny-")
    images = sorted(assets.rosettes.glob("plant*_rgb.png"))
    assert len(images) == 3
    prepared = sorted(assets.dataset.glob("*/*/images/*.png"))
    assert len(prepared) == 3
    stamp = images[0].stat().st_mtime_ns
    assert li.default_dataset(tmp_path) == assets
    assert images[0].stat().st_mtime_ns == stamp  # not generated again
    monkeypatch.setenv(li.CACHE_ENV, str(tmp_path / "env"))
    assert li.default_dataset().root.parent == (tmp_path / "env").resolve()
    monkeypatch.setitem(li.TINY_CONFIG, "STEPS_PER_EPOCH", 21)
    assert inspect_assets._cache_root(tmp_path) != assets.root  # another tiny model, another cache


def test_relative_paths_from_notebooks_fall_back_on_the_folder_above(tmp_path, monkeypatch):
    from leafseg.synth.rosettes import generate_rosette, write_png

    rosette = generate_rosette(0, 64)
    data = tmp_path / "data" / "leaves"
    write_png(data / "plant00000_rgb.png", rosette.image)
    write_png(data / "plant00000_label.png", rosette.label)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # a notebook's kernel runs in its folder
    assert li.resolve_path("data/leaves") == data.resolve()
    assert len(li.load_dataset("data/leaves", "all").image_ids) == 1
    monkeypatch.chdir(tmp_path)
    assert li.resolve_path("data/leaves") == data.resolve()  # from the working directory first


def test_relative_paths_fall_back_on_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path(li.__file__).resolve().parents[2]
    assert li.resolve_path("configs/quickstart_cpu.yaml") == root / "configs" / "quickstart_cpu.yaml"
    assert li.config_from("configs/quickstart_cpu.yaml").NAME == li.config_from("quickstart_cpu").NAME


def test_missing_path_error_names_what_was_tried_and_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    with pytest.raises(FileNotFoundError) as error:
        li.load_dataset("data/none")
    message = str(error.value)
    root = Path(li.__file__).resolve().parents[2]
    for tried in (tmp_path / "notebooks" / "data" / "none", tmp_path / "data" / "none", root / "data" / "none"):
        assert str(tried.resolve()) in message
    assert f"working directory {(tmp_path / 'notebooks').resolve()}" in message


############################################################
#  leafseg.inspect: model
############################################################

def detection_outputs(rng, num_rois=12, num_classes=3):
    """Fake run_graph outputs for one 64 x 64 image whose window leaves out the bottom rows."""
    y1x1 = rng.uniform(0.0, 0.6, (num_rois, 2))
    rois = np.concatenate([y1x1, y1x1 + rng.uniform(0.1, 0.4, (num_rois, 2))], axis=-1)
    rois[-2:] = 0.0  # padding
    logits = rng.normal(scale=2.0, size=(num_rois, num_classes))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    deltas = rng.normal(size=(num_rois, num_classes, 4))
    meta = compose_image_meta(0, (56, 64, 3), (64, 64, 3), (4, 0, 60, 64), 1.0, np.ones(num_classes))
    return {"rpn_rois": rois[None].astype(np.float32), "mrcnn_class": probs[None].astype(np.float32),
            "mrcnn_bbox": deltas[None].astype(np.float32), "image_metas": meta[None]}


@pytest.mark.parametrize("min_confidence, max_instances", [(0.0, 20), (0.4, 20), (0.0, 3)])
def test_refine_proposals_gives_the_detection_layers_detections(min_confidence, max_instances):
    from mrcnn.detection import DetectionLayer

    outputs = detection_outputs(np.random.default_rng(7))
    config = ToyConfig(NUM_CLASSES=3, DETECTION_MIN_CONFIDENCE=min_confidence,
                       DETECTION_MAX_INSTANCES=max_instances, DETECTION_NMS_THRESHOLD=0.3)
    layer = DetectionLayer(max_instances, min_confidence, 0.3, config.BBOX_STD_DEV)
    expected = np.asarray(layer([outputs["rpn_rois"], outputs["mrcnn_class"], outputs["mrcnn_bbox"],
                                 outputs["image_metas"].astype(np.float32)]))[0]
    expected = expected[expected[:, 4] > 0]
    steps = li.refine_proposals(outputs, config)
    chosen = steps["detections"]
    assert len(chosen) == len(expected) > 0
    np.testing.assert_allclose(steps["refined"][chosen], expected[:, :4], atol=1e-5)
    np.testing.assert_array_equal(steps["class_ids"][chosen], expected[:, 4])
    np.testing.assert_allclose(steps["scores"][chosen], expected[:, 5], atol=1e-6)
    assert not steps["keep"][-2:].any()  # padding rows are never kept


@pytest.fixture(scope="module")
def toy_model_outputs():
    """An untrained toy inference model (every proposal's best class counts) and its stages."""
    import keras

    from mrcnn.model import MaskRCNN

    keras.utils.set_random_seed(0)
    model = MaskRCNN("inference", ToyConfig(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0), "unused_logs")
    dataset = shapes_dataset(1)
    return model, li.stage_outputs(model, dataset.load_image(0)), dataset


def test_activation_layers_name_the_backbone_stages_and_pyramid(toy_model_outputs):
    model, outputs, _ = toy_model_outputs
    layers = li.activation_layers(model)
    assert [name for name, _ in layers] == ["C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "P6"]
    assert layers[0][1].startswith("res2") and layers[4][1] == "fpn_p2"
    # Strides 4..32 of the 64-pixel input for C2..C5, then P2..P6 at strides 4..64.
    assert [outputs[name].shape[1] for name, _ in layers] == [16, 8, 4, 2, 16, 8, 4, 2, 1]


def test_model_figures_of_an_untrained_model(toy_model_outputs):
    model, outputs, dataset = toy_model_outputs
    config = model.config
    steps = li.refine_proposals(outputs, config)
    count = int(np.count_nonzero(outputs["detections"][0][:, 4] > 0))
    assert len(steps["detections"]) == count
    nms = li.plot_detection_nms(outputs, config)
    assert f"{count} detections" in panel_titles(nms)[1] and f"DetectionLayer: {count})" in panel_titles(nms)[1]
    assert f"top {config.PRE_NMS_LIMIT}" in li.plot_top_anchors(outputs, config).get_suptitle()
    proposals = li.plot_proposals(outputs, config)
    assert f"-> {int(outputs['post_nms_count'][0])} proposals" in proposals.get_suptitle()
    assert len(li.plot_rpn_scores(outputs, config).axes) >= 6
    assert "clipped" in panel_titles(li.plot_refinement(outputs, config))[1]
    assert "kept" in panel_titles(li.plot_classification(outputs, config))[1]
    masks = li.plot_masks(model, outputs)
    assert panel_titles(masks)[-1] == f"{count} masks in the original image"
    assert len(li.plot_activations(outputs, ["P2", "P3"], channels=2).axes) == 6
    result = li.detections_of(model, outputs)
    assert result["masks"].shape == (IMAGE_SIDE, IMAGE_SIDE, count)
    gt_masks, _ = dataset.load_mask(0)
    assert "mask AP50" in li.plot_detections_vs_truth(outputs["image"], gt_masks, result).get_suptitle()


def test_weight_stats_and_histograms(toy_model_outputs):
    model = toy_model_outputs[0]
    rows = li.weight_stats(model)
    assert len(rows) == len(model.keras_model.weights)
    conv1 = next(row for row in rows if row["layer"] == "conv1" and row["weight"] == "kernel")
    assert conv1["shape"] == "7x7x3x16" and conv1["note"] == ""
    value = next(w for w in model.keras_model.weights if w.path == "conv1/kernel").numpy()
    assert conv1["std"] == pytest.approx(float(value.std()), rel=1e-5)
    fig = li.plot_weights(model, count=5)
    assert sum(ax.axison for ax in fig.axes) == 5 and fig.get_suptitle().startswith("5 of ")


def test_weight_stats_flag_zero_kernels_and_nan():
    import keras

    layer = keras.layers.Dense(2, kernel_initializer="zeros", name="dense")
    net = keras.Sequential([keras.Input((3,)), layer])
    holder = type("Holder", (), {"keras_model": net})()
    notes = {row["weight"]: row["note"] for row in li.weight_stats(holder)}
    assert notes == {"kernel": "all zero", "bias": ""}  # a zero bias is normal
    layer.bias.assign([np.nan, 0.0])
    assert {row["weight"]: row["note"] for row in li.weight_stats(holder)}["bias"] == "NaN/Inf"


def test_image_scores_of_a_perfect_and_an_empty_prediction():
    gt = np.zeros((8, 8, 2), bool)
    gt[:4, :4, 0] = gt[4:, 4:, 1] = True
    perfect = li.image_scores(gt, {"masks": gt, "scores": np.array([0.9, 0.8]), "class_ids": np.array([1, 1])})
    assert perfect["sbd"] == 1.0 and perfect["ap50"] == 1.0 and perfect["dic"] == 0
    empty = li.image_scores(gt, {"masks": np.zeros((8, 8, 0), bool), "scores": np.zeros(0),
                                 "class_ids": np.zeros(0, int)})
    assert empty["sbd"] == 0.0 and empty["ap50"] == 0.0 and empty["dic"] == -2


############################################################
#  leafseg.inspect: training runs
############################################################

def write_run(folder, stages=True):
    folder.mkdir(parents=True)
    rows = ["epoch,stage,optimizer,loss,rpn_class_loss,val_loss,learning_rate,time"]
    for epoch, (stage, optimizer, loss, rate) in enumerate([("heads", "sgd", 3.0, 1e-3), ("heads", "sgd", 2.0, 1e-3),
                                                            ("all", "sgd", 1.9, 1e-3), ("all", "adagrad", 1.0, 1e-3)]):
        rows.append(f"{epoch + 1},{stage},{optimizer},{loss},{loss / 3},{loss + 0.5},{rate},2026-01-01T00:00:0{epoch}")
    (folder / "training_log.csv").write_text("\n".join(rows) + "\n")
    if stages:
        (folder / "run.json").write_text(json.dumps({"stages": [
            {"stage": "heads", "optimizer": "sgd", "learning_rate": 1e-3, "start_epoch": 0, "end_epoch": 2},
            {"stage": "all", "optimizer": "sgd", "learning_rate": 1e-3, "start_epoch": 2, "end_epoch": 3},
            {"stage": "all", "optimizer": "adagrad", "learning_rate": 1e-3, "start_epoch": 3, "end_epoch": 4}]}))
    return folder


def test_read_run_takes_stage_boundaries_from_run_json_or_the_csv(tmp_path):
    run = li.read_run(write_run(tmp_path / "a"))
    assert run.label == "a" and run.boundaries == [2, 3]
    np.testing.assert_allclose(run.history["loss"], [3.0, 2.0, 1.9, 1.0])
    assert run.text["optimizer"] == ["sgd", "sgd", "sgd", "adagrad"] and "time" in run.text
    without = li.read_run(write_run(tmp_path / "b", stages=False), label="B")
    assert without.label == "B" and without.stages == [] and without.boundaries == [2, 3]
    with pytest.raises(FileNotFoundError, match="training_log.csv"):
        li.read_run(tmp_path)


def test_load_runs_stage_table_and_figures(tmp_path):
    runs = li.load_runs([write_run(tmp_path / "a"), write_run(tmp_path / "b")], labels=["first", "second"])
    assert [run.label for run in runs] == ["first", "second"]
    assert len(li.load_runs(str(tmp_path / "a"))) == 1
    table = li.stage_table(runs)
    assert len(table) == 6 and table[2]["optimizer"] == "adagrad" and table[2]["epochs"] == "3 -> 4"
    assert "adagrad" in li.format_table(table)
    fig = li.plot_runs(runs, plateau_window=1, min_drop=0.1)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["loss", "rpn_class_loss", "learning_rate"]
    assert len(fig.axes[0].patches) == 2  # epoch 2 -> 3 fell 5 % < 10 %: one plateau per run
    plateaus = li.plot_plateaus(runs, window=1, min_drop=0.1)
    np.testing.assert_allclose(plateaus.axes[0].get_lines()[0].get_ydata(), [1.0, 2 / 3, 1.9 / 3, 1 / 3])


def test_find_plateaus():
    epochs = np.arange(1, 9)
    values = np.array([10.0, 8.0, 7.9, 7.85, 7.8, 5.0, 4.95, 4.0])
    # Falls over 2 epochs, (values[i - 2] - values[i]) / values[i - 2]: epoch 3: 21 %, 4: 1.9 %,
    # 5: 1.3 %, 6: 36 %, 7: 37 %, 8: 20 %; over 1 epoch: 2: 20 %, 3: 1.3 %, 4: 0.6 %, 5: 0.6 %,
    # 6: 36 %, 7: 1 %, 8: 19 %.
    assert li.find_plateaus(epochs, values, window=2, min_drop=0.02) == [(2.0, 5.0)]
    assert li.find_plateaus(epochs, values, window=1, min_drop=0.02) == [(2.0, 5.0), (6.0, 7.0)]
    assert li.find_plateaus(epochs, values, window=10) == []
    assert li.find_plateaus([1, 2, 3], [1.0, np.nan, 1.0], window=1) == []


def test_format_table_aligns_columns():
    text = li.format_table([{"name": "a", "value": 1.5}, {"name": "long name", "value": 123456.0}])
    # Text left-aligned, numbers right-aligned, two spaces between columns, no trailing spaces.
    assert text.splitlines() == ["name       value", "a" + " " * 16 + "1.5", "long name  1.235e+05"]
    assert li.format_table([]) == "(none)"
