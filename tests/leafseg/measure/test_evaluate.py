"""leafseg evaluate end to end on the tiny trained model, and its pieces on hand-made cases.

One command run (``evaluated``) on toy images in the prepared layout; the tests recompute every
number it wrote with leafseg.measure.metrics from the Keras model's own detections of the same images.
"""
import contextlib
import csv
import io
import json
import re
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leafseg.measure import evaluate
from leafseg.cli import evaluate as evaluate_command

from leafseg.data.prepare import assign_subset
from leafseg.data.masks import masks_to_label
from leafseg.models.runtime import choose_runtime
from leafseg.measure.metrics import COCO_STAT_NAMES, coco_evaluate, evaluate_labels, label_from_detections, mask_ap50
from leafseg.synth.rosettes import write_dataset
from mrcnn import utils, visualize
from tests.tiny_trained import inference_model, trained_run, write_prepared
from tests.toy_data import shapes_dataset

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

VAL_IMAGES = 5
# The runtime `leafseg evaluate` runs by default here (--runtime auto), as its settings record it.
AUTO_RUNTIME = "openvino f32" if choose_runtime("auto") == "openvino" else "tensorflow"
LIMIT = 4
PER_IMAGE_COLUMNS = ["image", "subset", "sbd", "best_dice_pred_gt", "best_dice_gt_pred", "fbd", "dic", "abs_dic", "pred_count",
                     "gt_count", "ap50", "mask_AP", "mask_AP50", "mask_AP75", "box_AP", "box_AP50", "box_AP75"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def model(run):
    return inference_model(run["weights"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Toy images (seed 1, unseen in training) in the prepared layout: 5 in val, 2 in train."""
    root = tmp_path_factory.mktemp("prepared")
    val = shapes_dataset(VAL_IMAGES, seed=1)
    ids = write_prepared(val, root, "val")
    write_prepared(shapes_dataset(2, seed=2), root, "train")
    return types.SimpleNamespace(root=root, val=val, ids=ids)


@pytest.fixture(scope="module")
def evaluated(run, data, tmp_path_factory):
    """``leafseg evaluate`` on the val subset (the default), first 4 images, weights and config
    given as the training run folder."""
    out = tmp_path_factory.mktemp("evaluated")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = evaluate_command.main(["--weights", run["run"], "--config", run["run"], "--dataset", str(data.root),
                                "--out", str(out), "--limit", str(LIMIT), "--quiet"])
    document = json.loads((out / "metrics.json").read_text()) if status == 0 else None
    return types.SimpleNamespace(status=status, out=out, stdout=stdout.getvalue(), stderr=stderr.getvalue(),
                                 document=document)


@pytest.fixture(scope="module")
def expected(model, data):
    """leafseg.measure.metrics on the Keras model's detections of the first 4 val images."""
    names, gt, predictions, pairs, ap50 = [], [], [], [], []
    for image_id in data.val.image_ids[:LIMIT]:
        result = model.detect([data.val.load_image(image_id)])[0]
        masks, class_ids = data.val.load_mask(image_id)
        names.append(data.ids[image_id])
        gt.append((masks, class_ids))
        predictions.append((result["masks"], result["class_ids"], result["scores"]))
        pairs.append((data.ids[image_id], label_from_detections(result["masks"], result["scores"]),
                      masks_to_label(masks)))
        ap50.append(mask_ap50(masks, result["masks"], result["scores"]))
    per_image, summary = evaluate_labels(pairs)
    kinds = (("mask", "segm"), ("box", "bbox"))
    coco = {kind: coco_evaluate(gt, predictions, iou_type) for kind, iou_type in kinds}
    per_image_coco = [{kind: coco_evaluate([g], [p], iou_type) for kind, iou_type in kinds}
                      for g, p in zip(gt, predictions)]
    return types.SimpleNamespace(names=names, per_image=per_image, summary=summary, ap50=ap50, coco=coco,
                                 per_image_coco=per_image_coco, predictions=predictions)


def test_command_writes_metrics_plots_and_a_table(evaluated):
    assert evaluated.status == 0, evaluated.stderr
    for name in ("metrics.json", "per_image.csv", "summary.csv", "pr_curve.png", "gallery.png"):
        assert (evaluated.out / name).is_file(), name
    for name in ("pr_curve.png", "gallery.png"):
        with Image.open(evaluated.out / name) as image:
            assert image.format == "PNG" and min(image.size) > 200, name
            assert np.array(image.convert("L")).std() > 5, f"{name} is blank"
    for text in ("SBD", "FBD", "|DiC|", "mask AP50", "(4 images)", "COCO", "masks", "boxes",
                 "Symmetric Best Dice", "Foreground-Background Dice", "Difference in Count"):
        assert text in evaluated.stdout, text
    assert "(%)" not in evaluated.stdout
    assert not [p for p in evaluated.out.rglob(".*")], "temporary files left behind"


def test_printed_scores_are_fractions_and_the_three_ap50s_are_named(evaluated):
    summary = evaluated.document["summary"]
    lines = evaluated.stdout.splitlines()
    sbd = next(line for line in lines if line.startswith("SBD "))
    assert sbd.split()[1:] == [f"{summary['sbd_mean']:.3f}", f"{summary['sbd_std']:.3f}"]  # 0..1, not percent
    printed = {}
    for name, key in (("mask AP50 (mean of per-image AP)", "ap50_mean"),
                      ("pooled mask AP50 (pr_curve.png)", "pooled_ap50"),
                      ("COCO mask AP50 (pycocotools)", "mask_AP50")):
        line = next(line for line in lines if line.strip().startswith(name))
        printed[key] = line.strip()[len(name):].split()[0]
        assert printed[key] == f"{summary[key]:.3f}", (name, line)
    assert "pooled_ap50" in evaluated.document["definitions"] and "sbd" in evaluated.document["definitions"]
    assert "Symmetric Best Dice" in evaluated.document["definitions"]["sbd"]


def test_numbers_equal_leafseg_metrics_on_the_same_predictions(evaluated, expected):
    summary, per_image = evaluated.document["summary"], evaluated.document["per_image"]
    assert [row["image"] for row in per_image] == expected.names
    assert len(expected.names) == LIMIT and summary["n_images"] == LIMIT
    # metrics.json holds every value rounded to 4 decimals.
    tol = 5e-5 + 1e-12
    for row, want, ap50, coco in zip(per_image, expected.per_image, expected.ap50, expected.per_image_coco):
        assert row["subset"] == "val"
        for key in ("sbd", "best_dice_pred_gt", "best_dice_gt_pred", "fbd", "dic", "abs_dic", "pred_count",
                    "gt_count"):
            assert row[key] == pytest.approx(want[key], abs=tol), (row["image"], key)
        assert row["ap50"] == pytest.approx(ap50, abs=tol)
        for kind in ("mask", "box"):
            for stat in ("AP", "AP50", "AP75"):
                assert row[f"{kind}_{stat}"] == pytest.approx(coco[kind][stat], abs=tol), (row["image"], kind, stat)
    for key, value in expected.summary.items():
        assert summary[key] == pytest.approx(value, abs=tol), key
    assert summary["ap50_mean"] == pytest.approx(np.mean(expected.ap50), abs=tol)
    assert summary["ap50_std"] == pytest.approx(np.std(expected.ap50), abs=tol)
    for kind in ("mask", "box"):
        for stat in COCO_STAT_NAMES:
            assert summary[f"{kind}_{stat}"] == pytest.approx(expected.coco[kind][stat], abs=tol), (kind, stat)
    # The tiny model finds shapes (how well depends on training details): not a comparison of zeros.
    assert summary["ap50_mean"] > 0 and summary["mask_AP50"] > 0 and 0 < summary["sbd_mean"] < 1, summary


def test_csv_files_hold_the_json_numbers(evaluated):
    with open(evaluated.out / "per_image.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == PER_IMAGE_COLUMNS
        rows = list(reader)
    for row, want in zip(rows, evaluated.document["per_image"], strict=True):
        assert row["subset"] == want["subset"] == "val"
        for key in PER_IMAGE_COLUMNS[2:]:
            assert float(row[key]) == want[key], key
    with open(evaluated.out / "summary.csv", newline="") as handle:
        summary = {row["metric"]: float(row["value"]) for row in csv.DictReader(handle)}
    assert summary == evaluated.document["summary"]
    for name in ("sbd_mean", "abs_dic_mean", "ap50_mean", "pooled_ap50", "pooled_ap75", "mask_AP", "mask_AP50",
                 "mask_AP75", "box_AP", "box_AP50", "box_AP75"):
        assert name in summary


def assert_no_float_noise(path, decimals=evaluate.DECIMALS):
    """Every number of a CSV has at most ``decimals`` decimals (no 0.30000000000000004)."""
    with open(path, newline="") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    numbers = [cell for cell in cells if re.fullmatch(r"-?\d+\.\d+", cell)]
    assert numbers, path
    for cell in numbers:
        assert len(cell.split(".")[1]) <= decimals, (path.name, cell)


def test_csv_files_carry_no_float_noise(evaluated):
    assert_no_float_noise(evaluated.out / "per_image.csv")
    assert_no_float_noise(evaluated.out / "summary.csv")


def test_evaluate_model_keeps_its_rows_for_the_demo(model, data, evaluated):
    per_image, summary = evaluate.evaluate_model(model, data.val, data.val.image_ids[:2], progress=False)
    assert set(per_image[0]) == {"image", "sbd", "best_dice_pred_gt", "best_dice_gt_pred", "fbd", "dic", "abs_dic",
                                 "pred_count", "gt_count", "ap50"}
    assert set(summary) == {"n_images"} | {f"{m}_{s}" for m in ("sbd", "fbd", "dic", "abs_dic", "ap50")
                                           for s in ("mean", "std")}
    for row, full in zip(per_image, evaluated.document["per_image"]):
        assert data.ids[int(row["image"])] == full["image"]  # the toy dataset's ids, written as toy<id>
        for key in set(row) - {"image"}:
            assert row[key] == pytest.approx(full[key], abs=5e-5 + 1e-12), key  # metrics.json: 4 decimals


# ---------------------------------------------------------------------------- pieces, by hand

def square(size, y, x, side):
    mask = np.zeros((size, size), bool)
    mask[y:y + side, x:x + side] = True
    return mask


def scored(name, gt, pred, scores):
    result = {"masks": np.stack(pred, axis=-1) if pred else np.zeros(gt[0].shape + (0,), bool), "scores": np.asarray(scores, np.float32),
              "class_ids": np.ones(len(pred), np.int32)}
    gt = np.stack(gt, axis=-1)
    return evaluate.score_image(name, gt, np.ones(gt.shape[-1], np.int32), result)


def test_pooled_precision_recall_by_hand():
    # Image a: 2 leaves; detections 0.9 (on leaf 1) and 0.6 (on nothing).
    # Image b: 1 leaf; detection 0.8 on it. Ranked together: hit, hit, miss of 3 leaves.
    a = scored("a", [square(20, 0, 0, 6), square(20, 10, 10, 6)], [square(20, 0, 0, 6), square(20, 0, 12, 4)],
               [0.9, 0.6])
    b = scored("b", [square(20, 5, 5, 8)], [square(20, 5, 5, 8)], [0.8])
    precisions, recalls, ap = evaluate.precision_recall([a, b], 0.5)
    np.testing.assert_allclose(precisions, [1, 1, 2 / 3])
    np.testing.assert_allclose(recalls, [1 / 3, 2 / 3, 2 / 3])
    assert ap == pytest.approx(2 / 3)
    # One image alone: the pooled AP is Matterport's compute_ap of that image (mask_ap50).
    assert evaluate.precision_recall([a], 0.5)[2] == pytest.approx(a.row["ap50"]) == pytest.approx(0.5)
    # At IoU 0.75 a 6 x 6 detection shifted by one pixel no longer matches: 25 / 47 < 0.75 <= 1.
    c = scored("c", [square(20, 0, 0, 6)], [square(20, 1, 1, 6)], [0.9])
    assert evaluate.precision_recall([c], 0.5)[2] == pytest.approx(1.0)
    assert evaluate.precision_recall([c], 0.75)[2] == pytest.approx(0.0)


def test_no_detections_give_an_empty_curve_and_ap_0(tmp_path):
    nothing = scored("n", [square(20, 0, 0, 6)], [], [])
    precisions, recalls, ap = evaluate.precision_recall([nothing], 0.5)
    assert precisions.size == recalls.size == 0 and ap == 0
    assert (nothing.row["sbd"], nothing.row["ap50"], nothing.row["mask_AP"]) == (0, 0, 0)
    path = visualize.plot_pr_curves({"IoU 0.50": (recalls, precisions)}, tmp_path / "pr.png")
    with Image.open(path) as image:
        assert image.format == "PNG"


def test_score_image_and_summary_on_a_hand_made_case():
    a = scored("a", [square(20, 0, 0, 6), square(20, 10, 10, 6)], [square(20, 0, 0, 6), square(20, 0, 12, 4)],
               [0.9, 0.6])
    # Leaf 1 found exactly, leaf 2 missed, one false leaf: BestDice both ways is (1 + 0) / 2.
    assert a.row["sbd"] == pytest.approx(0.5)
    assert a.row["fbd"] == pytest.approx(2 * 36 / (36 + 16 + 72))
    assert (a.row["dic"], a.row["pred_count"], a.row["gt_count"]) == (0, 2, 2)
    assert a.row["ap50"] == pytest.approx(0.5)
    assert a.row["mask_AP50"] == pytest.approx(coco_evaluate([(a.gt[0], None)], [a.pred], "segm")["AP50"])
    summary = evaluate.summarize([a, a])
    assert summary["sbd_mean"] == pytest.approx(0.5) and summary["sbd_std"] == 0
    assert summary["n_images"] == 2


def test_crowd_regions_are_not_leaves_to_find():
    """A region of class id -1 (COCO's iscrowd) is left out of the ground truth: one leaf found
    exactly beside a crowd region is a perfect image, not a missed leaf."""
    leaf, crowd = square(20, 0, 0, 6), square(20, 10, 10, 8)
    result = {"masks": leaf[..., None], "scores": np.asarray([0.9], np.float32), "class_ids": np.ones(1, np.int32)}
    a = evaluate.score_image("a", np.stack([leaf, crowd], axis=-1), np.asarray([1, -1]), result)
    assert (a.row["sbd"], a.row["dic"], a.row["gt_count"], a.row["ap50"]) == (1.0, 0, 1, 1.0)

    class OneImage:
        def load_mask(self, image_id):
            return np.stack([leaf, crowd], axis=-1), np.asarray([1, -1], np.int32)

    assert np.array_equal(evaluate.leaf_masks(OneImage(), 0), leaf[..., None])


def test_rle_masks_decode_to_the_masks_they_hold():
    masks = np.stack([square(9, 1, 2, 3), square(9, 0, 0, 9)], axis=-1)
    np.testing.assert_array_equal(np.asarray(evaluate._RLEMasks(masks)), masks)
    assert np.asarray(evaluate._RLEMasks(np.zeros((4, 5, 0), bool))).shape == (4, 5, 0)


def test_dataset_folders_prepared_and_raw(data, tmp_path):
    prepared = evaluate.load_eval_dataset(data.root)  # auto: the val subset of a prepared layout
    assert prepared.num_images == VAL_IMAGES
    assert {info["subset"] for info in prepared.image_info} == {"val"}
    both = evaluate.load_eval_dataset(data.root, "all")
    assert both.num_images == VAL_IMAGES + 2
    assert sorted(info["subset"] for info in both.image_info) == ["train"] * 2 + ["val"] * VAL_IMAGES
    write_dataset(tmp_path / "raw", 3, size=64, progress=False)
    # auto: every pair of a raw folder (no hidden val split), each with the subset prepare would give it.
    for subset in ("auto", "all"):
        raw = evaluate.load_eval_dataset(tmp_path / "raw", subset)
        assert raw.num_images == 3
        assert [info["subset"] for info in raw.image_info] == [assign_subset(info["id"]) for info in raw.image_info]
    assert evaluate.resolve_subset(tmp_path / "raw") == "all" and evaluate.resolve_subset(data.root) == "val"
    masks, _ = raw.load_mask(0)
    assert masks.shape[:2] == (64, 64) and masks.shape[-1] >= 1
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        evaluate.load_eval_dataset(tmp_path / "no_such_folder")


def test_subset_help_documents_auto(capsys):
    with pytest.raises(SystemExit):
        evaluate_command.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "auto (default): val of a prepared layout, every image of a raw folder" in text


def test_metrics_json_records_the_weights_config_and_overrides(evaluated, run):
    assert evaluated.document["settings"] == {"weights": run["weights"], "config": run["run"] + "/config.yaml",
                                              "overrides": {}, "min_score": None, "plants": "auto", "grid": None,
                                              "runtime": AUTO_RUNTIME}
    assert list(evaluated.document)[0] == "settings"


def test_set_changes_the_config_evaluated_with_and_is_recorded(run, data, tmp_path, capsys):
    out = tmp_path / "out"
    status = evaluate_command.main(["--weights", run["weights"], "--dataset", str(data.root), "--out", str(out),
                                    "--limit", "2", "--gallery", "0", "--set", "DETECTION_MAX_INSTANCES=1",
                                    "--min-score", "0.3"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "config the config stored in" in captured.err and " --set DETECTION_MAX_INSTANCES=1" in captured.err
    document = json.loads((out / "metrics.json").read_text())
    assert document["settings"] == {"weights": run["weights"], "config": f"the config stored in {run['weights']}",
                                    "overrides": {"DETECTION_MAX_INSTANCES": 1}, "min_score": 0.3, "plants": "auto",
                                    "grid": None, "runtime": AUTO_RUNTIME}
    # One detection at most per image (the tiny model finds several shapes of most at 0.3).
    counts = [row["pred_count"] for row in document["per_image"]]
    assert max(counts) == 1 and len(counts) == 2


@pytest.mark.parametrize("pair, message", [
    ("DETECTION_MAX_INSTANCE=1", "evaluate: error: unknown config key 'DETECTION_MAX_INSTANCE' in arguments; did you "
                                 "mean DETECTION_MAX_INSTANCES"),
    ("DETECTION_MAX_INSTANCES=-1", "evaluate: error: DETECTION_MAX_INSTANCES = -1 is invalid"),
    ("DETECTION_MAX_INSTANCES:1", "evaluate: error: --set 'DETECTION_MAX_INSTANCES:1': expected KEY=VALUE"),
])
def test_bad_set_is_named_before_any_image(run, data, tmp_path, capsys, pair, message):
    status = evaluate_command.main(["--weights", run["weights"], "--dataset", str(data.root), "--out",
                                    str(tmp_path / "out"), "--quiet", "--set", pair])
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_missing_dataset_is_an_error_naming_it(tmp_path, capsys):
    status = evaluate_command.main(["--weights", str(tmp_path / "w.weights.h5"), "--dataset", str(tmp_path / "nowhere"),
                            "--out", str(tmp_path / "out"), "--quiet"])
    assert status == 2
    assert f"dataset folder not found: {tmp_path / 'nowhere'}" in capsys.readouterr().err


class FixedModel:
    """Stands in for MaskRCNN.detect: the same two square detections on every image."""

    def detect(self, images):
        h, w = images[0].shape[:2]
        masks = np.zeros((h, w, 2), bool)
        masks[h // 4:h // 2, w // 4:w // 2, 0] = True
        masks[h // 2:, w // 3:, 1] = True
        return [{"masks": masks, "scores": np.array([0.9, 0.6], np.float32), "class_ids": np.ones(2, np.int32),
                 "rois": utils.extract_bboxes(masks)}]


def test_prediction_sheet_shows_photograph_prediction_and_truth_of_the_first_images(tmp_path, monkeypatch):
    write_dataset(tmp_path / "a", 3, size=64, progress=False)
    write_dataset(tmp_path / "b", 2, size=64, seed=5, style="classic", progress=False)
    sets = [("a", evaluate.load_eval_dataset(tmp_path / "a", "all"), 2),
            ("b", evaluate.load_eval_dataset(tmp_path / "b", "all"), 5)]
    drawn = {}
    monkeypatch.setattr(visualize, "plot_image_grid", lambda rows, path, **kw: drawn.update(rows=rows, path=path, **kw))
    evaluate.prediction_sheet(FixedModel(), sets, tmp_path / "sheet.png", title="t")
    assert drawn["path"] == tmp_path / "sheet.png" and drawn["title"] == "t"
    assert drawn["column_titles"] == ("photograph", "prediction", "ground truth")
    # The first 2 of a, every image of b (it has fewer than 5), in order; the photograph as it is.
    names = [sets[0][1].image_info[i]["id"] for i in (0, 1)] + [sets[1][1].image_info[i]["id"] for i in (0, 1)]
    assert [title.split(":")[0] for title in drawn["row_titles"]] == [f"a {names[0]}", f"a {names[1]}",
                                                                      f"b {names[2]}", f"b {names[3]}"]
    np.testing.assert_array_equal(drawn["rows"][2][0], sets[1][1].load_image(0))
    # FixedModel finds 2 leaves in every image; the title gives the count against the truth.
    gt_count = sets[0][1].load_mask(0)[0].shape[-1]
    assert f"(2 vs {gt_count} leaves)" in drawn["row_titles"][0]
    assert all(len(row) == 3 and row[1].shape == row[0].shape for row in drawn["rows"])
    with pytest.raises(ValueError, match="no images"):
        evaluate.prediction_sheet(FixedModel(), [("a", sets[0][1], 0)], tmp_path / "none.png")
    monkeypatch.undo()
    evaluate.prediction_sheet(FixedModel(), sets[:1], tmp_path / "sheet.png")
    assert Image.open(tmp_path / "sheet.png").size[0] > 0


def test_raw_folder_defaults_to_every_image_and_the_pr_legend_names_its_ap(tmp_path, monkeypatch, capsys):
    write_dataset(tmp_path / "raw", 5, size=64, progress=False)
    monkeypatch.setattr(evaluate_command, "load_inference_model", lambda *args, **kwargs: (FixedModel(), "test", Path("w")))
    legends = []
    plot = visualize.plot_pr_curves
    monkeypatch.setattr(visualize, "plot_pr_curves", lambda curves, *a, **k: legends.extend(curves) or plot(curves, *a, **k))
    status = evaluate_command.main(["--weights", "w", "--dataset", str(tmp_path / "raw"), "--out", str(tmp_path / "out"),
                            "--gallery", "0"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "evaluating 5 images" in captured.err and "(subset all (auto))" in captured.err
    with open(tmp_path / "out" / "per_image.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5
    assert [row["subset"] for row in rows] == [assign_subset(row["image"]) for row in rows]
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())["summary"]
    # The legend shows the pooled AP, the figure printed as "pooled mask AP50 (pr_curve.png)".
    assert legends == [f"IoU 0.50: pooled mask AP50 = {summary['pooled_ap50']:.3f}",
                       f"IoU 0.75: pooled mask AP75 = {summary['pooled_ap75']:.3f}"]
    assert re.search(rf"pooled mask AP50 \(pr_curve.png\) +{summary['pooled_ap50']:.3f} ", captured.out)
    assert_no_float_noise(tmp_path / "out" / "per_image.csv")
    assert_no_float_noise(tmp_path / "out" / "summary.csv")



def test_detection_sweep_equals_detecting_with_each_mask_overlap_and_cut_off(run, data):
    from mrcnn.model import MaskRCNN
    from tests.tiny_trained import OVERRIDES
    from tests.toy_data import ToyConfig

    def loose(overlap, cut=0.3):  # box NMS nearly off, so that shapes are found more than once
        config = ToyConfig(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=cut, DETECTION_NMS_THRESHOLD=0.9,
                           DETECTION_MASK_OVERLAP_THRESHOLD=overlap, **OVERRIDES)
        model = MaskRCNN("inference", config, Path(run["weights"]).parent)
        model.load_weights(run["weights"])
        return model

    sweep = evaluate.detection_sweep(loose(None), data.val, [0.6, 0.3], [None, 0.2], progress=False)
    assert set(sweep) == {(None, 0.3), (None, 0.6), (0.2, 0.3), (0.2, 0.6)}
    for overlap in (None, 0.2):
        for cut in (0.3, 0.6):
            _, summary = evaluate.evaluate_model(loose(overlap, cut), data.val, progress=False)
            for metric in ("sbd_mean", "fbd_mean", "dic_mean", "abs_dic_mean"):
                assert sweep[overlap, cut][metric] == pytest.approx(summary[metric], abs=1e-9), (overlap, cut, metric)
    # Duplicates found with box NMS at 0.9 are dropped by their masks: fewer shapes counted.
    assert sweep[0.2, 0.3]["dic_mean"] < sweep[None, 0.3]["dic_mean"]
    with pytest.raises(ValueError, match="already drops masks covered more than 0.2"):
        evaluate.detection_sweep(loose(0.2), data.val, [0.3], [None, 0.5], progress=False)


def test_min_score_sweep_equals_detecting_at_each_cut_off(run, data):
    low = inference_model(run["weights"], 0.3)
    # A cut-off above the lowest score of a detection that shows in the flattened label (one
    # covered everywhere by better ones counts for nothing) and below the highest score drops a
    # counted detection, and every detection that would show instead scores lower still, so the
    # counts differ between cut-offs whatever the trained model's scores are (they differ
    # between hosts, and between runs: the toy model's training is not bit-reproducible).
    scores, shown = [], []
    for i in data.val.image_ids:
        result = low.detect([data.val.load_image(i)])[0]
        label = label_from_detections(result["masks"], result["scores"])
        scores += list(result["scores"])
        shown += [result["scores"][k - 1] for k in np.unique(label) if k]
    assert shown and min(shown) < max(scores)
    middle = round(float(min(shown) + max(scores)) / 2, 4)
    assert min(shown) < middle <= max(scores)
    cuts = sorted({0.3, middle, 0.95})
    sweep = evaluate.min_score_sweep(low, data.val, cuts[::-1], progress=False)
    assert list(sweep) == cuts
    for cut in cuts:
        _, summary = evaluate.evaluate_model(inference_model(run["weights"], cut), data.val, progress=False)
        for metric in ("sbd_mean", "fbd_mean", "dic_mean", "abs_dic_mean"):
            assert sweep[cut][metric] == pytest.approx(summary[metric], abs=1e-9), (cut, metric)
    assert sweep[0.3]["dic_mean"] > sweep[middle]["dic_mean"]  # the cut-offs change the counts
    with pytest.raises(ValueError, match="drops detections under 0.3, above the lowest cut-off 0.2"):
        evaluate.min_score_sweep(low, data.val, [0.2, 0.5], progress=False)


# ---------------------------------------------------------------------------- scenes: per-plant figures

SCENE_SHAPE = (32, 48)
# (plant, rows, columns) of each leaf: plant 1 of two leaves, plant 2 of one.
SCENE_LEAVES = [(1, slice(4, 12), slice(4, 12)), (1, slice(14, 22), slice(4, 12)), (2, slice(4, 12), slice(30, 40))]


def scene_labels(leaves, shape=SCENE_SHAPE):
    """(leaf label, plant label) uint8 of [(plant id, rows, columns)]: leaf k + 1 painted k-th."""
    leaf_label, plant_label = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    for k, (plant, rows, cols) in enumerate(leaves):
        leaf_label[rows, cols] = k + 1
        plant_label[rows, cols] = plant
    return leaf_label, plant_label


class SceneModel:
    """Stands in for MaskRCNN.detect on a scene: both leaves of plant 1 as its plant 1, plant 2's
    leaf missed, and a leaf on bare ground as a plant 2 of its own."""

    def detect(self, images):
        masks = np.zeros(images[0].shape[:2] + (3,), bool)
        for k, (rows, cols) in enumerate([SCENE_LEAVES[0][1:], SCENE_LEAVES[1][1:], (slice(24, 30), slice(30, 40))]):
            masks[rows, cols, k] = True
        return [{"masks": masks, "scores": np.array([0.9, 0.8, 0.7], np.float32), "class_ids": np.ones(3, np.int32),
                 "rois": utils.extract_bboxes(masks), "plant_ids": np.array([1, 1, 2])}]


def test_scenes_with_a_plants_file_get_per_plant_figures(tmp_path, monkeypatch, capsys):
    from leafseg.data.masks import save_indexed_png
    from leafseg.measure.plants import FIGURES, PLANT_COLUMNS

    raw = tmp_path / "raw"
    raw.mkdir()
    leaf_label, plant_label = scene_labels(SCENE_LEAVES)
    for name in ("scene00001", "scene00002"):
        Image.fromarray(np.full(SCENE_SHAPE + (3,), 90, np.uint8)).save(raw / f"{name}_rgb.png")
        save_indexed_png(leaf_label, raw / f"{name}_label.png")
    save_indexed_png(plant_label, raw / "scene00001_plants.png")  # scene00002 has none
    monkeypatch.setattr(evaluate_command, "load_inference_model",
                        lambda *args, **kwargs: (SceneModel(), "test", Path("w")))

    def run(out):
        status = evaluate_command.main(["--weights", "w", "--dataset", str(raw), "--out", str(out), "--gallery", "0",
                                        "--quiet"])
        assert status == 0, capsys.readouterr().err
        with open(out / "per_image.csv", newline="") as handle:
            reader = csv.DictReader(handle)
            columns, rows = reader.fieldnames, list(reader)
        return columns, rows, json.loads((out / "metrics.json").read_text()), capsys.readouterr().out

    columns, rows, document, printed = run(tmp_path / "out")
    assert columns == PER_IMAGE_COLUMNS + list(FIGURES)
    # Plant 1 found with its two leaves, plant 2 missed, the leaf on bare ground an invented plant.
    assert [rows[0][key] for key in FIGURES] == ["2", "1", "1", "1", "0.0", "1.0"]
    assert [rows[1][key] for key in FIGURES] == [""] * len(FIGURES)  # no plants file: empty, as before
    with open(tmp_path / "out" / "per_plant.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["image", "subset"] + list(PLANT_COLUMNS)
        plant_rows = list(reader)
    assert {(row["image"], row["subset"]) for row in plant_rows} == {("scene00001", assign_subset("scene00001"))}
    assert [[row[key] for key in PLANT_COLUMNS] for row in plant_rows] == [
        ["1", "1", "matched", "1.0", "2", "2", "0", "0", "1.0"],
        ["2", "", "missed", "0.0", "1", "0", "-1", "1", "0.0"],
        ["", "2", "invented", "0.0", "0", "1", "1", "1", "0.0"]]
    summary = document["summary"]
    assert summary["n_plant_images"] == 1 and summary["plants_true_mean"] == 2 and summary["plants_missed_mean"] == 1
    assert (summary["plant_abs_dic_mean"], summary["plant_sbd_mean"]) == (0, 1)
    assert "plants_found" in document["definitions"]
    assert "plants found" in printed and "(2 images, 1 with plants)" in printed and "per_plant.csv" in printed
    assert_no_float_noise(tmp_path / "out" / "per_plant.csv")

    # Without any plants file: the outputs of before, no plant column, no per_plant.csv.
    (raw / "scene00001_plants.png").unlink()
    columns, rows, document, printed = run(tmp_path / "plain")
    assert columns == PER_IMAGE_COLUMNS and not (tmp_path / "plain" / "per_plant.csv").exists()
    assert not [key for key in document["summary"] if "plant" in key] and "plants_found" not in document["definitions"]
    assert "with plants" not in printed


def test_score_image_of_a_scene_without_plant_ids_takes_the_image_as_one_plant():
    leaf_label, plant_label = scene_labels(SCENE_LEAVES)
    gt_masks = np.stack([leaf_label == k for k in (1, 2, 3)], axis=-1)
    result = {"masks": gt_masks, "scores": np.array([0.9, 0.8, 0.7], np.float32), "class_ids": np.ones(3, np.int32)}
    scores = evaluate.score_image("a", gt_masks, np.ones(3, np.int32), result, plant_label)
    # One predicted plant, all three leaves: it is 128 of its 208 pixels plant 1, so matches it.
    assert [(row["gt_plant"], row["pred_plant"], row["dic"]) for row in scores.plants] == [(1, 1, 1), (2, None, -1)]
    assert scores.plants[0]["iou"] == pytest.approx(128 / 208)
    assert (scores.row["plants_found"], scores.row["plants_missed"], scores.row["plant_abs_dic_mean"]) == (1, 1, 1)
    assert evaluate.score_image("a", gt_masks, np.ones(3, np.int32), result).plants is None
    wrong = plant_label.copy()
    wrong[4, 4] = 2
    with pytest.raises(ValueError, match=r"image a: gt_leaves: leaf 1 lies in plants \[1, 2\]"):
        evaluate.score_image("a", gt_masks, np.ones(3, np.int32), result, wrong)


def test_gallery_rows_are_cropped_to_the_leaves_of_a_large_photograph(tmp_path):
    """Issue 26, 11: the small leaves of a 1536 px photograph cover many pixels of its gallery
    row, not the few of a photograph shrunk whole to the row's size; the title gives the crop."""
    size = 1536
    image = np.zeros((size, size, 3), np.uint8)
    leaves = [square(size, 700, 700, 30), square(size, 740, 760, 30)]
    image[np.any(leaves, axis=0)] = (60, 160, 40)
    scores = scored("big", leaves, leaves, [0.9, 0.8])
    dataset = types.SimpleNamespace(load_image=lambda image_id: image)
    path = evaluate._gallery(dataset, [0], [scores], 1, tmp_path / "gallery.png")
    rendered = np.asarray(Image.open(path).convert("RGB")).astype(int)
    coloured = int(((rendered.max(axis=-1) - rendered.min(axis=-1)) > 60).sum())
    # Shrunk whole into a 300 px cell, each 30 px leaf is about 6 x 6 px: some 150 px in all.
    assert coloured > 5000, coloured
    assert evaluate.leaf_crop(np.stack(leaves, -1)) == (684, 684, 786, 806)
    pictures, title = evaluate.comparison_row(image, scores)
    assert pictures[0].shape == (102, 122, 3)
    assert title.endswith("cropped to x 684-806, y 684-786 of 1536 x 1536 px (where the leaves are)")
    # Leaves that fill the image leave it whole.
    assert evaluate.leaf_crop(np.stack([square(64, 2, 2, 60)], -1)) is None
    assert evaluate.comparison_row(image, scores, crop=False)[0][0].shape == image.shape
