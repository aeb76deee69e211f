"""CVPPP metrics on hand-made label images, detection metrics against their references."""
import contextlib
import csv
import io
import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from leafseg.measure import metrics


def two_leaves():
    """6 x 6 ground truth: leaf 1 on rows 0-2, leaf 2 on rows 3-5 (18 pixels each)."""
    gt = np.zeros((6, 6), np.uint8)
    gt[:3] = 1
    gt[3:] = 2
    return gt


def brute_force(pred, gt):
    """The CVPPP definitions as loops over masks, to check the joint-histogram version."""
    pred_ids = [i for i in np.unique(pred) if i]
    gt_ids = [j for j in np.unique(gt) if j]

    def best(a_ids, a, b_ids, b):
        if not a_ids:
            return 1.0 if not b_ids else 0.0
        return np.mean([max([metrics.dice(a == i, b == j) for j in b_ids], default=0.0) for i in a_ids])

    return min(best(pred_ids, pred, gt_ids, gt), best(gt_ids, gt, pred_ids, pred))


# ---------------------------------------------------------------------------------------------
# dice
# ---------------------------------------------------------------------------------------------

def test_dice_hand_case():
    a = np.zeros((2, 4), bool)
    a[0] = True  # 4 pixels
    b = np.zeros((2, 4), bool)
    b[:, 0] = True  # 2 pixels, 1 shared with a
    assert metrics.dice(a, b) == pytest.approx(2 * 1 / (4 + 2))


def test_dice_empty_cases():
    empty = np.zeros((3, 3), bool)
    full = np.ones((3, 3), bool)
    assert metrics.dice(empty, empty) == 1.0
    assert metrics.dice(empty, full) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        metrics.dice(empty, np.zeros((3, 4), bool))


# ---------------------------------------------------------------------------------------------
# SBD, FBD, DiC
# ---------------------------------------------------------------------------------------------

def test_missing_leaf():
    gt = two_leaves()
    pred = gt.copy()
    pred[pred == 2] = 0
    assert metrics.best_dice(pred, gt) == pytest.approx(1.0)
    assert metrics.best_dice(gt, pred) == pytest.approx((1 + 0) / 2)
    assert metrics.symmetric_best_dice(pred, gt) == pytest.approx((1 + 0) / 2)
    assert metrics.foreground_dice(pred, gt) == pytest.approx(2 * 18 / (18 + 36))
    assert metrics.difference_in_count(pred, gt) == 1 - 2
    assert metrics.abs_difference_in_count(pred, gt) == 1


def test_two_merged_leaves():
    gt = two_leaves()
    pred = (gt > 0).astype(np.uint8)  # one 36-pixel leaf over both
    merged = 2 * 18 / (36 + 18)
    assert metrics.best_dice(pred, gt) == pytest.approx(merged)
    assert metrics.best_dice(gt, pred) == pytest.approx((merged + merged) / 2)
    assert metrics.symmetric_best_dice(pred, gt) == pytest.approx(merged)
    assert metrics.foreground_dice(pred, gt) == pytest.approx(1.0)
    assert metrics.difference_in_count(pred, gt) == -1


def test_split_leaf():
    gt = two_leaves()
    pred = gt.copy()
    pred[3:, 3:] = 3  # leaf 2 predicted as two 9-pixel halves (ids 2 and 3)
    half = 2 * 9 / (18 + 9)
    assert metrics.best_dice(pred, gt) == pytest.approx((1 + half + half) / 3)
    assert metrics.best_dice(gt, pred) == pytest.approx((1 + half) / 2)
    assert metrics.symmetric_best_dice(pred, gt) == pytest.approx((1 + half + half) / 3)
    assert metrics.difference_in_count(pred, gt) == +1
    assert metrics.foreground_dice(pred, gt) == pytest.approx(1.0)


def test_empty_prediction():
    gt = two_leaves()
    pred = np.zeros_like(gt)
    assert metrics.best_dice(pred, gt) == 0.0
    assert metrics.best_dice(gt, pred) == 0.0
    assert metrics.symmetric_best_dice(pred, gt) == 0.0
    assert metrics.foreground_dice(pred, gt) == 0.0
    assert metrics.difference_in_count(pred, gt) == 0 - 2


def test_empty_ground_truth():
    pred = two_leaves()
    gt = np.zeros_like(pred)
    assert metrics.symmetric_best_dice(pred, gt) == 0.0
    assert metrics.foreground_dice(pred, gt) == 0.0
    assert metrics.difference_in_count(pred, gt) == 2 - 0


def test_both_empty():
    empty = np.zeros((4, 5), np.uint8)
    assert metrics.best_dice(empty, empty) == 1.0
    assert metrics.symmetric_best_dice(empty, empty) == 1.0
    assert metrics.foreground_dice(empty, empty) == 1.0
    assert metrics.difference_in_count(empty, empty) == 0
    assert metrics.compare_labels(empty, empty) == {
        "sbd": 1.0, "best_dice_pred_gt": 1.0, "best_dice_gt_pred": 1.0, "fbd": 1.0,
        "dic": 0, "abs_dic": 0, "pred_count": 0, "gt_count": 0}


def test_non_consecutive_ids_score_like_consecutive_ones():
    gt = two_leaves()
    pred = gt.copy()
    pred[3:, 3:] = 3
    # Same leaves, ids with gaps (3, 17, 250 / 5, 1000) and other dtypes.
    pred_gappy = np.choose(pred, [0, 3, 17, 250]).astype(np.uint8)
    gt_gappy = np.choose(gt, [0, 5, 1000]).astype(np.int32)
    assert metrics.compare_labels(pred_gappy, gt_gappy) == metrics.compare_labels(pred, gt)
    # Ids beyond any lookup table take the sorting path.
    huge = np.choose(gt, [0, 2**40, 7]).astype(np.int64)
    assert metrics.compare_labels(pred, huge) == metrics.compare_labels(pred, gt)


def test_foreground_dice_partial_overlap():
    pred = np.zeros((4, 4), np.uint8)
    pred[:, :2] = 7  # 8 pixels
    gt = np.zeros((4, 4), np.uint8)
    gt[:2, :] = 1  # 8 pixels, 4 shared
    assert metrics.foreground_dice(pred, gt) == pytest.approx(2 * 4 / (8 + 8))
    # one leaf each, Dice 0.5: SBD equals it both ways
    assert metrics.symmetric_best_dice(pred, gt) == pytest.approx(2 * 4 / (8 + 8))


def test_compare_labels_matches_the_definitions(rng):
    for _ in range(5):
        pred = rng.integers(0, 6, size=(12, 9)) * 3
        gt = rng.integers(0, 4, size=(12, 9))
        result = metrics.compare_labels(pred, gt)
        assert result["sbd"] == pytest.approx(brute_force(pred, gt))
        assert result["sbd"] == pytest.approx(metrics.symmetric_best_dice(pred, gt))
        assert result["best_dice_pred_gt"] == pytest.approx(metrics.best_dice(pred, gt))
        assert result["best_dice_gt_pred"] == pytest.approx(metrics.best_dice(gt, pred))
        assert result["fbd"] == pytest.approx(metrics.foreground_dice(pred, gt))
        assert result["dic"] == metrics.difference_in_count(pred, gt)
        assert result["dic"] == len(np.unique(pred[pred > 0])) - len(np.unique(gt[gt > 0]))


def test_label_errors():
    gt = two_leaves()
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.symmetric_best_dice(gt, gt[:5])
    with pytest.raises(ValueError, match="integer"):
        metrics.symmetric_best_dice(gt.astype(float), gt)
    with pytest.raises(ValueError, match="negative"):
        metrics.compare_labels(gt.astype(np.int8) - 2, gt)
    with pytest.raises(ValueError, match=r"2-D"):
        metrics.compare_labels(gt[..., None], gt)


# ---------------------------------------------------------------------------------------------
# label_from_detections
# ---------------------------------------------------------------------------------------------

def overlapping_masks():
    """Two 1 x 3 masks sharing the middle pixel of a 1 x 5 image."""
    masks = np.zeros((1, 5, 2), bool)
    masks[0, 0:3, 0] = True
    masks[0, 2:5, 1] = True
    return masks


def test_label_from_detections_higher_score_wins():
    masks = overlapping_masks()
    np.testing.assert_array_equal(metrics.label_from_detections(masks, [0.6, 0.9]), [[1, 1, 2, 2, 2]])
    np.testing.assert_array_equal(metrics.label_from_detections(masks, [0.9, 0.6]), [[1, 1, 1, 2, 2]])
    # equal scores: the first detection (lower index) is on top
    np.testing.assert_array_equal(metrics.label_from_detections(masks, [0.7, 0.7]), [[1, 1, 1, 2, 2]])


def test_label_from_detections_edge_cases():
    masks = np.zeros((2, 3, 2), bool)
    masks[0, :, 0] = True
    masks[0, 1, 1] = True  # entirely under detection 0, which scores higher
    np.testing.assert_array_equal(metrics.label_from_detections(masks, [0.9, 0.5]), [[1, 1, 1], [0, 0, 0]])
    no_detections = metrics.label_from_detections(np.zeros((2, 3, 0), bool), [])
    np.testing.assert_array_equal(no_detections, np.zeros((2, 3)))
    soft = overlapping_masks().astype(np.float32) * 0.8  # float masks are thresholded at 0.5
    np.testing.assert_array_equal(metrics.label_from_detections(soft, [0.6, 0.9]), [[1, 1, 2, 2, 2]])
    with pytest.raises(ValueError, match="scores"):
        metrics.label_from_detections(overlapping_masks(), [0.5])


# ---------------------------------------------------------------------------------------------
# mask_ap50
# ---------------------------------------------------------------------------------------------

def squares(size=20, count=2):
    """count 5 x 5 squares along the diagonal of a size x size image."""
    masks = np.zeros((size, size, count), bool)
    for k in range(count):
        masks[6 * k:6 * k + 5, 6 * k:6 * k + 5, k] = True
    return masks


def test_mask_ap50_perfect_and_missed():
    gt = squares()
    assert metrics.mask_ap50(gt, gt, [0.9, 0.8]) == pytest.approx(1.0)
    # one of two leaves found: precision 1 up to recall 1/2
    assert metrics.mask_ap50(gt, gt[..., :1], [0.9]) == pytest.approx(1 / 2 * 1.0)
    # a low-scoring false positive after both hits costs nothing
    extra = np.concatenate([gt, squares(count=3)[..., 2:]], axis=2)
    assert metrics.mask_ap50(gt, extra, [0.9, 0.8, 0.1]) == pytest.approx(1.0)


def test_mask_ap50_empty_masks_and_classes():
    gt = squares(count=1)
    # an empty ground-truth mask is dropped: still perfect
    gt_with_empty = np.concatenate([np.zeros_like(gt), gt], axis=2)
    assert metrics.mask_ap50(gt_with_empty, gt, [0.9]) == pytest.approx(1.0)
    # an empty prediction ranked first is a false positive: precision 1/2 at recall 1
    pred = np.concatenate([np.zeros_like(gt), gt], axis=2)
    assert metrics.mask_ap50(gt, pred, [0.9, 0.8]) == pytest.approx(1 / 2)
    # the right mask with the wrong class is no match
    assert metrics.mask_ap50(gt, gt, [0.9], gt_class_ids=[1], pred_class_ids=[2]) == 0.0
    assert metrics.mask_ap50(gt[..., :0], gt[..., :0], []) == 1.0


# ---------------------------------------------------------------------------------------------
# coco_evaluate: pycocotools' numbers
# ---------------------------------------------------------------------------------------------

def pycocotools_stats(gt, predictions, iou_type):
    """COCOeval run directly on the same data, written out independently of leafseg."""
    images, annotations, results = [], [], []
    for image_id, ((gt_masks, _), (pred_masks, _, scores)) in enumerate(zip(gt, predictions), 1):
        images.append({"id": image_id, "height": gt_masks.shape[0], "width": gt_masks.shape[1]})
        for k in range(gt_masks.shape[2]):
            rle = mask_utils.encode(np.asfortranarray(gt_masks[..., k].astype(np.uint8)))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "segmentation": rle, "area": float(mask_utils.area(rle)),
                                "bbox": list(mask_utils.toBbox(rle)), "iscrowd": 0})
        for k in range(pred_masks.shape[2]):
            rle = mask_utils.encode(np.asfortranarray(pred_masks[..., k].astype(np.uint8)))
            shape = {"segmentation": rle} if iou_type == "segm" else {"bbox": list(mask_utils.toBbox(rle))}
            results.append({"image_id": image_id, "category_id": 1, "score": float(scores[k]), **shape})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations,
                           "categories": [{"id": 1, "name": "leaf"}]}
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(metrics.COCO_STAT_NAMES, evaluator.stats))


def shifted(masks, dx):
    return np.roll(masks, dx, axis=1)


def mixed_case():
    """Two images: hits, a shifted hit, a miss, a false positive, an image with no prediction."""
    gt_a = squares(size=30, count=3)
    pred_a = np.concatenate([gt_a[..., :1], shifted(gt_a[..., 1:2], 1), squares(30, 5)[..., 4:]], axis=2)
    gt_b = squares(size=30, count=2)
    gt = [(gt_a, None), (gt_b, None), (gt_b, [1, 1])]
    predictions = [(pred_a, None, [0.9, 0.7, 0.8]), (gt_b[..., :1], [1], [0.6]),
                   (gt_b[..., :0], None, [])]
    return gt, predictions


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_coco_evaluate_is_pycocotools(iou_type):
    gt, predictions = mixed_case()
    result = metrics.coco_evaluate(gt, predictions, iou_type=iou_type)
    expected = pycocotools_stats(gt, predictions, iou_type)
    for name in metrics.COCO_STAT_NAMES:
        assert result[name] == pytest.approx(expected[name]), name
    assert "Average Precision" in result["summary"]
    assert "index created" not in result["summary"]


def test_coco_perfect_and_shifted():
    gt_masks = np.zeros((30, 30, 1), bool)
    gt_masks[5:15, 5:15, 0] = True  # 10 x 10
    gt = [(gt_masks, None)]
    perfect = metrics.coco_evaluate(gt, [(gt_masks, None, [0.9])])
    for name in ("AP", "AP50", "AP75", "AR100"):
        assert perfect[name] == pytest.approx(1.0), name
    # two columns off: IoU 80 / 120, between 0.5 and 0.75
    predictions = [(shifted(gt_masks, 2), None, [0.9])]
    result = metrics.coco_evaluate(gt, predictions)
    expected = pycocotools_stats(gt, predictions, "segm")
    assert expected["AP50"] == pytest.approx(1.0) and expected["AP75"] == pytest.approx(0.0)
    assert result["AP50"] == pytest.approx(expected["AP50"])
    assert result["AP75"] == pytest.approx(expected["AP75"])
    assert result["AP"] == pytest.approx(expected["AP"])


def test_coco_bbox_uses_boxes():
    gt_masks = np.zeros((20, 20, 1), bool)
    gt_masks[2:12, 2:12, 0] = True
    pred = gt_masks.copy()
    pred[3:12, 3:12, 0] = False  # an L inside the same box: mask IoU 19 / 100
    segm = metrics.coco_evaluate([(gt_masks, None)], [(pred, None, [0.9])], iou_type="segm")
    bbox = metrics.coco_evaluate([(gt_masks, None)], [(pred, None, [0.9])], iou_type="bbox")
    assert segm["AP50"] == pytest.approx(0.0)
    assert bbox["AP50"] == pytest.approx(1.0)


def test_coco_without_predictions_or_ground_truth():
    gt_masks = squares(count=2)
    none = metrics.coco_evaluate([(gt_masks, None)], [(gt_masks[..., :0], None, [])])
    assert none["AP"] == 0.0 and none["AP50"] == 0.0 and none["AR100"] == 0.0
    nothing = metrics.coco_evaluate([(gt_masks[..., :0], None)], [(gt_masks[..., :0], None, [])])
    assert nothing["AP"] == -1.0  # pycocotools' "undefined"
    with pytest.raises(ValueError, match="prediction entries"):
        metrics.coco_evaluate([(gt_masks, None)], [])
    with pytest.raises(ValueError, match="iou_type"):
        metrics.coco_evaluate([(gt_masks, None)], [(gt_masks, None, [1, 1])], iou_type="keypoints")


# ---------------------------------------------------------------------------------------------
# Data sets and files
# ---------------------------------------------------------------------------------------------

def two_image_pairs():
    gt = two_leaves()
    missing = gt.copy()
    missing[missing == 2] = 0  # SBD 1/2, FBD 2/3, DiC -1
    return [("a", missing, gt), ("b", gt, gt)]  # image b perfect


def test_evaluate_labels_mean_and_population_std():
    per_image, summary = metrics.evaluate_labels(two_image_pairs())
    assert [row["image"] for row in per_image] == ["a", "b"]
    assert per_image[0]["sbd"] == pytest.approx(1 / 2)
    assert summary["n_images"] == 2
    assert summary["sbd_mean"] == pytest.approx((1 / 2 + 1) / 2)
    assert summary["sbd_std"] == pytest.approx((1 - 1 / 2) / 2)  # population std of two values
    assert summary["fbd_mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["fbd_std"] == pytest.approx((1 - 2 / 3) / 2)
    assert summary["dic_mean"] == pytest.approx((-1 + 0) / 2)
    assert summary["dic_std"] == pytest.approx(1 / 2)
    assert summary["abs_dic_mean"] == pytest.approx((1 + 0) / 2)
    assert summary["abs_dic_std"] == pytest.approx(1 / 2)


def test_evaluate_labels_names_and_errors():
    pairs = [pair[1:] for pair in two_image_pairs()]
    per_image, _ = metrics.evaluate_labels(pairs)
    assert [row["image"] for row in per_image] == ["0", "1"]
    with pytest.raises(ValueError, match="no"):
        metrics.evaluate_labels([])
    with pytest.raises(ValueError, match="image bad"):
        metrics.evaluate_labels([("bad", two_leaves(), two_leaves()[:3])])


def test_format_summary():
    _, summary = metrics.evaluate_labels(two_image_pairs())
    table = metrics.format_summary(summary)
    lines = table.splitlines()
    # Fractions, as everywhere in leafseg's output (not percent).
    assert lines[2].split() == ["SBD", "0.750", "0.250"]
    assert lines[4].split() == ["DiC", "-0.500", "0.500"]
    assert "|DiC|" in table and "(2 images)" in table and "%" not in table
    for name, words in (("sbd", "Symmetric Best Dice"), ("fbd", "Foreground-Background Dice"),
                        ("dic", "Difference in Count")):
        assert words in metrics.CVPPP_DEFINITIONS[name]


def test_round_floats_and_write_metrics_decimals(tmp_path):
    noisy = {"a": 0.1 + 0.2, "b": [2.2300000000000004, np.float64(1 / 3)], "n": 7, "s": "x", "nan": float("nan")}
    rounded = metrics.round_floats(noisy, 4)
    assert rounded["a"] == 0.3 and rounded["b"] == [2.23, 0.3333] and rounded["n"] == 7 and rounded["s"] == "x"
    assert math.isnan(rounded["nan"])
    json_path, csv_path = metrics.write_metrics([{"image": "a", "sbd": 0.1 + 0.2, "dic": -1}], {"sbd_mean": 1 / 3},
                                                tmp_path, decimals=4, definitions={"sbd": "Symmetric Best Dice"})
    assert csv_path.read_text() == "image,sbd,dic\na,0.3,-1\n"
    document = json.loads(json_path.read_text())
    assert document == {"definitions": {"sbd": "Symmetric Best Dice"}, "summary": {"sbd_mean": 0.3333},
                        "per_image": [{"image": "a", "sbd": 0.3, "dic": -1}]}


def test_write_metrics(tmp_path):
    per_image, summary = metrics.evaluate_labels(two_image_pairs())
    summary["nan_example"] = float("nan")
    json_path, csv_path = metrics.write_metrics(per_image, summary, tmp_path / "out")
    document = json.loads(json_path.read_text())
    assert document["summary"]["sbd_mean"] == pytest.approx(summary["sbd_mean"])
    assert document["summary"]["nan_example"] is None  # JSON has no NaN
    assert len(document["per_image"]) == 2
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["image"] for row in rows] == ["a", "b"]
    assert float(rows[0]["sbd"]) == pytest.approx(1 / 2)
    assert int(rows[0]["dic"]) == -1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "per_image.csv"]


def test_write_csv_columns_and_missing_values(tmp_path):
    path = metrics.write_csv([{"a": 1, "b": None}, {"a": 2, "c": 3.5}], tmp_path / "t.csv")
    assert path.read_text() == "a,b,c\n1,,\n2,,3.5\n"
    empty = metrics.write_csv([], tmp_path / "e.csv", fieldnames=["image", "area_px"])
    assert empty.read_text() == "image,area_px\n"
