"""Per-plant figures on hand-made scenes: plants found, missed, invented and merged, leaf counts
and SBD per plant, matching that does not depend on the plants' ids."""
import numpy as np
import pytest

from leafseg.measure import metrics, plants

SHAPE = (8, 16)
# Two plants of two 4 x 6 leaves each (24 pixels a leaf) side by side; columns 12-15 are empty.
TWO_PLANTS = [(1, slice(0, 4), slice(0, 6)), (1, slice(4, 8), slice(0, 6)),
              (2, slice(0, 4), slice(6, 12)), (2, slice(4, 8), slice(6, 12))]


def scene(leaves, shape=SHAPE):
    """(leaf label, plant label) of [(plant id, rows, columns)], leaf k + 1 painted k-th."""
    leaf_label = np.zeros(shape, np.uint8)
    plant_label = np.zeros(shape, np.uint8)
    for k, (plant, rows, cols) in enumerate(leaves):
        leaf_label[rows, cols] = k + 1
        plant_label[rows, cols] = plant
    return leaf_label, plant_label


def compare(pred, gt, **kwargs):
    return plants.compare_plants(*pred, *gt, **kwargs)


def by_gt(rows):
    return {row["gt_plant"]: row for row in rows}


def test_a_perfect_prediction_with_other_ids_finds_every_plant():
    gt = scene(TWO_PLANTS)
    # The same leaves, listed in another order, the plants numbered the other way round.
    pred = scene([(2, slice(4, 8), slice(0, 6)), (1, slice(0, 4), slice(6, 12)), (1, slice(4, 8), slice(6, 12)),
                  (2, slice(0, 4), slice(0, 6))])
    rows, figures = compare(pred, gt)
    assert [(row["gt_plant"], row["pred_plant"], row["status"]) for row in rows] == [(1, 2, "matched"),
                                                                                      (2, 1, "matched")]
    for row in rows:
        assert [row[key] for key in ("iou", "gt_count", "pred_count", "dic", "abs_dic", "sbd")] == [1, 2, 2, 0, 0, 1]
    assert figures == {"plants_true": 2, "plants_found": 2, "plants_invented": 0, "plants_missed": 0,
                       "plant_abs_dic_mean": 0.0, "plant_sbd_mean": 1.0}
    assert list(rows[0]) == list(plants.PLANT_COLUMNS) and list(figures) == list(plants.FIGURES)


def test_a_missed_plant_counts_its_leaves_in_its_row_but_not_in_the_means():
    gt = scene(TWO_PLANTS)
    pred = scene(TWO_PLANTS[:2])  # plant 2 not found
    rows, figures = compare(pred, gt)
    missed = by_gt(rows)[2]
    assert (missed["pred_plant"], missed["status"], missed["iou"]) == (None, "missed", 0.0)
    assert [missed[key] for key in ("gt_count", "pred_count", "dic", "abs_dic", "sbd")] == [2, 0, -2, 2, 0]
    assert figures == {"plants_true": 2, "plants_found": 1, "plants_invented": 0, "plants_missed": 1,
                       "plant_abs_dic_mean": 0.0, "plant_sbd_mean": 1.0}


def test_an_invented_plant_gets_its_own_row_after_the_true_plants():
    gt = scene(TWO_PLANTS)
    pred = scene(TWO_PLANTS + [(3, slice(2, 6), slice(13, 16))])  # a 12-pixel plant of one leaf on the empty side
    rows, figures = compare(pred, gt)
    assert [row["status"] for row in rows] == ["matched", "matched", "invented"]
    invented = rows[-1]
    assert (invented["gt_plant"], invented["pred_plant"], invented["iou"]) == (None, 3, 0.0)
    assert [invented[key] for key in ("gt_count", "pred_count", "dic", "abs_dic", "sbd")] == [0, 1, 1, 1, 0]
    assert (figures["plants_found"], figures["plants_invented"], figures["plants_missed"]) == (2, 1, 0)
    assert (figures["plant_abs_dic_mean"], figures["plant_sbd_mean"]) == (0.0, 1.0)


def test_two_plants_merged_into_one_match_the_larger_and_miss_the_smaller():
    # Plant 1: two 24-pixel leaves (48 pixels); plant 2: one 4 x 3 leaf (12 pixels) beside it.
    gt = scene(TWO_PLANTS[:2] + [(2, slice(0, 4), slice(6, 9))])
    pred = (gt[0], (gt[1] > 0).astype(np.uint8))  # the same leaves, all of them one plant
    rows, figures = compare(pred, gt)
    merged, small = by_gt(rows)[1], by_gt(rows)[2]
    assert merged["pred_plant"] == 1 and merged["iou"] == pytest.approx(48 / (48 + 12))
    # The merge has the small plant's leaf too: 3 leaves for 2, two found exactly, one extra.
    assert (merged["gt_count"], merged["pred_count"], merged["dic"]) == (2, 3, 1)
    assert merged["sbd"] == pytest.approx(min((1 + 1 + 0) / 3, (1 + 1) / 2))
    assert (small["status"], small["dic"], small["sbd"]) == ("missed", -1, 0)
    assert (figures["plants_found"], figures["plants_missed"], figures["plants_invented"]) == (1, 1, 0)


def test_two_equal_plants_merged_match_neither_at_iou_above_one_half():
    gt = scene([(1, slice(0, 4), slice(0, 6)), (2, slice(4, 8), slice(0, 6))])
    pred = (gt[0], (gt[1] > 0).astype(np.uint8))
    # Each plant is 24 of the merge's 48 pixels: IoU exactly 0.5, not above it.
    assert plants.match_plants(pred[1], gt[1]) == ([], [1, 2], [1])
    rows, figures = compare(pred, gt)
    assert [row["status"] for row in rows] == ["missed", "missed", "invented"]
    assert (figures["plant_abs_dic_mean"], figures["plant_sbd_mean"]) == (None, None)
    # A looser threshold lets the assignment take one of the two (a tie: either).
    matches, missed, invented = plants.match_plants(pred[1], gt[1], min_iou=0.4)
    assert [(pred_id, iou) for _, pred_id, iou in matches] == [(1, 0.5)] and len(missed) == 1 and invented == []


def test_leaf_miscounts_give_each_plant_its_dic_where_the_image_sees_none():
    gt = scene(TWO_PLANTS)
    # Plant 1: its first leaf split in two halves (one leaf too many); plant 2: its leaves merged (one too few).
    pred = scene([(1, slice(0, 2), slice(0, 6)), (1, slice(2, 4), slice(0, 6)), (1, slice(4, 8), slice(0, 6)),
                  (2, slice(0, 8), slice(6, 12))])
    assert metrics.compare_labels(pred[0], gt[0])["dic"] == 0  # 4 leaves for 4
    rows, figures = compare(pred, gt)
    first, second = by_gt(rows)[1], by_gt(rows)[2]
    assert (first["gt_count"], first["pred_count"], first["dic"], first["abs_dic"]) == (2, 3, 1, 1)
    assert (second["gt_count"], second["pred_count"], second["dic"], second["abs_dic"]) == (2, 1, -1, 1)
    # A half leaf against its leaf: Dice 2 * 12 / (12 + 24).
    half = 2 * 12 / (12 + 24)
    assert first["sbd"] == pytest.approx(min((half + half + 1) / 3, (half + 1) / 2))
    # The merged leaf against either leaf: Dice 2 * 24 / (48 + 24).
    merged = 2 * 24 / (48 + 24)
    assert second["sbd"] == pytest.approx(min(merged, (merged + merged) / 2))
    assert figures["plant_abs_dic_mean"] == 1.0
    assert figures["plant_sbd_mean"] == pytest.approx((first["sbd"] + second["sbd"]) / 2)


def test_matching_does_not_depend_on_the_plants_ids_or_their_reading_order():
    # Three plants; the prediction merges plant 3's leaves, shifts plant 2 by a column and invents one.
    gt = scene(TWO_PLANTS + [(3, slice(0, 4), slice(12, 16)), (3, slice(4, 8), slice(12, 16))])
    pred = scene([(1, slice(0, 4), slice(0, 6)), (1, slice(4, 8), slice(0, 6)), (2, slice(0, 4), slice(7, 12)),
                  (2, slice(4, 8), slice(7, 12)), (3, slice(0, 8), slice(12, 16)), (4, slice(0, 1), slice(6, 7))])
    rows, figures = compare(pred, gt)
    for pred_order, gt_order in (([4, 3, 2, 1], [2, 3, 1]), ([2, 4, 1, 3], [3, 1, 2])):
        pred_ids = np.array([0] + pred_order, np.uint8)  # old id i -> new id pred_order[i - 1]
        gt_ids = np.array([0] + gt_order, np.uint8)
        renumbered, again = compare((pred[0], pred_ids[pred[1]]), (gt[0], gt_ids[gt[1]]))
        assert again == figures
        expected = [{**row, "gt_plant": None if row["gt_plant"] is None else int(gt_ids[row["gt_plant"]]),
                     "pred_plant": None if row["pred_plant"] is None else int(pred_ids[row["pred_plant"]])}
                    for row in rows]
        assert sorted(renumbered, key=repr) == sorted(expected, key=repr)
    # Mirrored left to right, the plants are read in the other order: the same figures.
    assert compare((pred[0][:, ::-1], pred[1][:, ::-1]), (gt[0][:, ::-1], gt[1][:, ::-1]))[1] == figures
    assert (figures["plants_found"], figures["plants_invented"], figures["plants_missed"]) == (3, 1, 0)
    assert by_gt(rows)[2]["iou"] == pytest.approx(40 / 48) and by_gt(rows)[3]["dic"] == -1


def test_plant_label_from_detections():
    leaves = np.array([[0, 1, 1], [2, 3, 0]], np.uint8)
    np.testing.assert_array_equal(plants.plant_label_from_detections(leaves, [2, 1, 2]), [[0, 2, 2], [1, 2, 0]])
    # Without plant ids the whole image is one plant.
    np.testing.assert_array_equal(plants.plant_label_from_detections(leaves, None), [[0, 1, 1], [1, 1, 0]])
    # More plant ids than leaves left in the label (a detection covered by better ones) is fine.
    assert plants.plant_label_from_detections(leaves, np.array([1, 1, 2, 3])).dtype == np.int32
    with pytest.raises(ValueError, match="leaf id 3 but plant_of_leaf has 2 plant ids"):
        plants.plant_label_from_detections(leaves, [1, 2])
    with pytest.raises(ValueError, match=r"plant_of_leaf\[1\] is 0: plant ids are 1..P"):
        plants.plant_label_from_detections(leaves, [1, 0, 2])
    with pytest.raises(ValueError, match="integer plant ids"):
        plants.plant_label_from_detections(leaves, [1.0, 2.0, 2.0])


def test_detections_to_plant_figures():
    """Mask R-CNN's result as evaluate reads it: the label of the detections, the plant of each."""
    gt = scene(TWO_PLANTS)
    masks = np.stack([gt[0] == k for k in (3, 1, 4, 2)], axis=-1)
    leaf_label = metrics.label_from_detections(masks, np.array([0.9, 0.8, 0.7, 0.6]))
    plant_label = plants.plant_label_from_detections(leaf_label, np.array([5, 7, 5, 7]))
    np.testing.assert_array_equal(plant_label, np.where(gt[1] == 1, 7, np.where(gt[1] == 2, 5, 0)))
    rows, figures = plants.compare_plants(leaf_label, plant_label, *gt)
    assert [(row["gt_plant"], row["pred_plant"]) for row in rows] == [(1, 7), (2, 5)]
    assert figures["plants_found"] == 2 and figures["plant_sbd_mean"] == 1.0


def test_ground_truth_leaves_must_lie_in_one_plant():
    leaves, plant_label = scene(TWO_PLANTS)
    outside = plant_label.copy()
    outside[4:6, :6] = 0  # 12 of leaf 2's pixels in no plant
    with pytest.raises(ValueError, match=r"leaf 2 has 12 of its 24 pixels outside every plant"):
        plants.compare_plants(leaves, plant_label, leaves, outside)
    spread = plant_label.copy()
    spread[0, 0] = 2  # leaf 1 in both plants
    with pytest.raises(ValueError, match=r"leaf 1 lies in plants \[1, 2\]"):
        plants.compare_plants(leaves, plant_label, leaves, spread)
    with pytest.raises(ValueError, match=r"different shapes: pred_leaves \(8, 16\), pred_plants \(8, 15\)"):
        plants.compare_plants(leaves, plant_label[:, 1:], leaves, plant_label)
    with pytest.raises(ValueError, match=r"min_iou must be in \[0, 1\)"):
        plants.match_plants(plant_label, plant_label, min_iou=1)


def test_empty_scenes():
    empty = np.zeros(SHAPE, np.uint8)
    assert plants.compare_plants(empty, empty, empty, empty) == ([], {
        "plants_true": 0, "plants_found": 0, "plants_invented": 0, "plants_missed": 0,
        "plant_abs_dic_mean": None, "plant_sbd_mean": None})
    rows, figures = plants.compare_plants(empty, empty, *scene(TWO_PLANTS))
    assert [row["status"] for row in rows] == ["missed", "missed"] and figures["plants_missed"] == 2


def test_summarize_plants_pools_the_matched_plants_of_every_image():
    matched = {"status": "matched"}
    a = {"plants_true": 3, "plants_found": 2, "plants_invented": 0, "plants_missed": 1}
    b = {"plants_true": 1, "plants_found": 1, "plants_invented": 2, "plants_missed": 0}
    rows = [{**matched, "abs_dic": 0, "sbd": 0.9}, {**matched, "abs_dic": 2, "sbd": 0.6},
            {"status": "missed", "abs_dic": 5, "sbd": 0.0}, {**matched, "abs_dic": 1, "sbd": 0.9}]
    summary = plants.summarize_plants([a, b], rows)
    assert summary["n_plant_images"] == 2
    assert (summary["plants_true_mean"], summary["plants_true_std"]) == (2.0, 1.0)
    assert (summary["plants_invented_mean"], summary["plants_invented_std"]) == (1.0, 1.0)
    # Over the three matched plants, not the mean of the images' means ((0 + 2) / 2 and 1).
    assert summary["plant_abs_dic_mean"] == pytest.approx((0 + 2 + 1) / 3)
    assert summary["plant_abs_dic_std"] == pytest.approx(np.sqrt(2 / 3))
    assert summary["plant_sbd_mean"] == pytest.approx((0.9 + 0.6 + 0.9) / 3)
    nothing = plants.summarize_plants([a], [{"status": "missed", "abs_dic": 5, "sbd": 0.0}])
    assert nothing["plant_sbd_mean"] is None and nothing["plant_abs_dic_std"] is None
    with pytest.raises(ValueError, match="no images"):
        plants.summarize_plants([], [])


def test_the_summary_table_shows_the_plant_figures():
    table = metrics.format_summary({"n_images": 2, "sbd_mean": 0.5, "sbd_std": 0.1, "plants_invented_mean": 1.0,
                                    "plants_invented_std": 0.0, "plant_sbd_mean": None, "plant_sbd_std": None,
                                    "n_plant_images": 1})
    lines = table.splitlines()
    assert lines[2].split() == ["SBD", "0.500", "0.100"]
    assert lines[3].split() == ["plants", "invented", "1.000", "0.000"]
    assert lines[4].split() == ["plant", "SBD", "-", "-"]
    assert len({len(line) for line in lines[:5]}) == 1  # the columns stay aligned
    assert lines[-1] == "(2 images, 1 with plants)"
