"""Leaf and plant traits on hand-drawn masks, expected values worked out by hand."""
import csv
import math

import numpy as np
import pytest

from leafseg.measure import phenotype


def rectangle(shape, y1, x1, y2, x2):
    """bool [H, W, 1] with rows y1..y2-1 and columns x1..x2-1 set."""
    masks = np.zeros((*shape, 1), bool)
    masks[y1:y2, x1:x2, 0] = True
    return masks


def axis_length(pixels):
    """Ellipse axis of a filled run of n pixels: 4 sqrt(variance), variance (n² − 1) / 12."""
    return 4 * math.sqrt((pixels ** 2 - 1) / 12)


# ---------------------------------------------------------------------------------------------
# Leaves
# ---------------------------------------------------------------------------------------------

def test_horizontal_rectangle_leaf():
    (leaf,) = phenotype.measure_leaves(rectangle((30, 40), 5, 5, 15, 25), image_name="p1")  # 10 x 20
    assert leaf["image"] == "p1" and leaf["leaf"] == 1 and leaf["score"] is None
    assert leaf["area_px"] == 10 * 20
    assert (leaf["bbox_y1_px"], leaf["bbox_x1_px"], leaf["bbox_y2_px"], leaf["bbox_x2_px"]) == (5, 5, 15, 25)
    assert leaf["centroid_y_px"] == pytest.approx(5 + (10 - 1) / 2)
    assert leaf["centroid_x_px"] == pytest.approx(5 + (20 - 1) / 2)
    assert leaf["length_px"] == pytest.approx(axis_length(20))
    assert leaf["width_px"] == pytest.approx(axis_length(10))
    assert leaf["orientation_deg"] == pytest.approx(0.0)
    assert leaf["perimeter_px"] == pytest.approx(2 * (10 - 1) + 2 * (20 - 1))  # boundary pixel centres


def test_orientation_convention():
    (vertical,) = phenotype.measure_leaves(rectangle((40, 30), 5, 5, 25, 15))  # 20 tall, 10 wide
    assert vertical["orientation_deg"] == pytest.approx(90.0)
    assert vertical["length_px"] == pytest.approx(axis_length(20))
    up_right = np.zeros((20, 20, 2), bool)
    for i in range(10):
        up_right[15 - i, 3 + i, 0] = True  # rises to the right on screen
        up_right[3 + i, 3 + i, 1] = True  # falls to the right on screen
    rising, falling = phenotype.measure_leaves(up_right)
    assert rising["orientation_deg"] == pytest.approx(45.0)
    assert falling["orientation_deg"] == pytest.approx(135.0)
    assert phenotype.orientation_from_regionprops(-math.pi / 2) == 0.0
    assert 179.99 < phenotype.orientation_from_regionprops(-math.pi / 2 - 1e-15) < 180.0


def test_rounded_orientation_stays_below_180():
    rows = [{"orientation_deg": 179.996}, {"orientation_deg": 179.994}, {"orientation_deg": 0.004}]
    assert [r["orientation_deg"] for r in phenotype.round_traits(rows)] == [0.0, 179.99, 0.0]


def test_leaf_in_two_pieces_is_measured_as_one():
    masks = np.zeros((10, 20, 1), bool)
    masks[0:4, 0:4, 0] = True
    masks[0:4, 10:14, 0] = True  # same leaf, cut in two by another lying over it
    (leaf,) = phenotype.measure_leaves(masks)
    assert leaf["area_px"] == 2 * 16
    assert (leaf["bbox_y1_px"], leaf["bbox_x1_px"], leaf["bbox_y2_px"], leaf["bbox_x2_px"]) == (0, 0, 4, 14)
    assert leaf["centroid_x_px"] == pytest.approx((1.5 + 11.5) / 2)
    # column variance: within each square (4² − 1) / 12, plus the spread of the centres 1.5, 11.5
    assert leaf["length_px"] == pytest.approx(4 * math.sqrt((16 - 1) / 12 + 5.0 ** 2))
    assert leaf["width_px"] == pytest.approx(axis_length(4))
    assert phenotype.measure_plant(masks)["leaf_count"] == 1


def test_overlapping_leaves_are_each_measured_whole():
    masks = np.zeros((10, 10, 3), bool)
    masks[0:4, 0:4, 0] = True
    masks[2:6, 0:4, 1] = True  # overlaps leaf 1 on rows 2-3
    masks[8:10, 8:10, 2] = True
    scores = [0.9, 0.8, 0.7]
    rows = phenotype.measure_leaves(masks, scores=scores)
    assert [row["area_px"] for row in rows] == [16, 16, 4]
    assert [row["score"] for row in rows] == scores
    assert rows[1]["centroid_y_px"] == pytest.approx(3.5)
    assert [row["leaf"] for row in rows] == [1, 2, 3]


def test_empty_leaf_mask_row():
    masks = np.zeros((5, 5, 2), bool)
    masks[1:3, 1:3, 1] = True
    empty, leaf = phenotype.measure_leaves(masks)
    assert empty["area_px"] == 0 and empty["length_px"] == 0
    assert math.isnan(empty["centroid_y_px"]) and math.isnan(empty["orientation_deg"])
    assert leaf["area_px"] == 4
    assert phenotype.measure_plant(masks)["leaf_count"] == 1


def test_leaf_units_in_mm():
    scale = 0.5
    (leaf,) = phenotype.measure_leaves(rectangle((30, 40), 5, 5, 15, 25), mm_per_pixel=scale)
    assert leaf["area_mm2"] == pytest.approx(10 * 20 * scale ** 2)
    assert leaf["length_mm"] == pytest.approx(axis_length(20) * scale)
    assert leaf["width_mm"] == pytest.approx(axis_length(10) * scale)
    assert leaf["perimeter_mm"] == pytest.approx((2 * 9 + 2 * 19) * scale)
    assert leaf["centroid_y_px"] == pytest.approx(9.5)  # positions stay in pixels
    assert not any(key.endswith("_px") and not key.startswith(("bbox", "centroid")) for key in leaf)


def test_leaf_input_errors():
    masks = rectangle((5, 5), 0, 0, 2, 2)
    with pytest.raises(ValueError, match="scores"):
        phenotype.measure_leaves(masks, scores=[0.1, 0.2])
    with pytest.raises(ValueError, match="mm_per_pixel"):
        phenotype.measure_leaves(masks, mm_per_pixel=0)
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        phenotype.measure_leaves(masks[..., 0])


# ---------------------------------------------------------------------------------------------
# Plants
# ---------------------------------------------------------------------------------------------

def test_plant_union_of_overlapping_leaves():
    masks = np.zeros((10, 10, 2), bool)
    masks[0:4, 0:4, 0] = True
    masks[0:4, 2:6, 1] = True  # shares a 4 x 2 strip with leaf 1
    plant = phenotype.measure_plant(masks, image_name="p")
    assert plant["image"] == "p" and plant["leaf_count"] == 2
    assert plant["rosette_area_px"] == 16 + 16 - 4 * 2
    assert plant["convex_hull_area_px"] == pytest.approx(4 * 6)  # the union is a 4 x 6 rectangle
    assert plant["compactness"] == pytest.approx(1.0)
    assert plant["diameter_px"] == pytest.approx(math.sqrt(4 ** 2 + 6 ** 2))


def test_plant_convex_hull_of_an_l_shape():
    masks = np.zeros((8, 8, 2), bool)
    masks[0:6, 0:2, 0] = True  # upright arm, 2 wide and 6 tall
    masks[4:6, 0:6, 1] = True  # foot, 6 wide and 2 tall
    plant = phenotype.measure_plant(masks)
    assert plant["rosette_area_px"] == 12 + 12 - 4
    # hull corners (x, y): (0, 0) (2, 0) (6, 4) (6, 6) (0, 6): the 6 x 6 square less the
    # triangle (2, 0) (6, 0) (6, 4)
    assert plant["convex_hull_area_px"] == pytest.approx(6 * 6 - 4 * 4 / 2)
    assert plant["compactness"] == pytest.approx((12 + 12 - 4) / (6 * 6 - 4 * 4 / 2))
    assert plant["diameter_px"] == pytest.approx(math.sqrt(6 ** 2 + 6 ** 2))


def test_plant_units_in_mm():
    masks = np.zeros((10, 10, 1), bool)
    masks[0:4, 0:6, 0] = True
    plant = phenotype.measure_plant(masks, mm_per_pixel=0.2)
    assert plant["rosette_area_mm2"] == pytest.approx(24 * 0.2 ** 2)
    assert plant["convex_hull_area_mm2"] == pytest.approx(24 * 0.2 ** 2)
    assert plant["diameter_mm"] == pytest.approx(math.sqrt(4 ** 2 + 6 ** 2) * 0.2)
    assert plant["compactness"] == pytest.approx(1.0)
    assert "rosette_area_px" not in plant


def test_empty_plant():
    masks = np.zeros((6, 7, 0), bool)
    assert phenotype.measure_leaves(masks) == []
    plant = phenotype.measure_plant(masks, image_name="bare", mm_per_pixel=0.1)
    assert plant["leaf_count"] == 0
    assert plant["rosette_area_mm2"] == 0 and plant["convex_hull_area_mm2"] == 0
    assert plant["diameter_mm"] == 0
    assert math.isnan(plant["compactness"])


def test_write_csv_round_trip(tmp_path):
    rows = phenotype.measure_leaves(rectangle((10, 10), 1, 1, 3, 5), scores=[0.9], image_name="p")
    path = phenotype.write_csv(rows, tmp_path / "leaves.csv")
    with open(path, newline="") as f:
        (read,) = list(csv.DictReader(f))
    assert list(read) == list(rows[0])
    assert float(read["area_px"]) == 2 * 4 and read["image"] == "p"
    assert [p.name for p in tmp_path.iterdir()] == ["leaves.csv"]


def test_round_traits_rounds_to_what_the_pixel_grid_supports(tmp_path):
    masks = np.concatenate([rectangle((40, 50), 3, 4, 20, 31), rectangle((40, 50), 22, 10, 37, 17)], axis=-1)
    masks[25:30, 20:40, 1] = True  # an L: hull area a multiple of 0.5, compactness < 1
    scale = 0.12
    leaves = phenotype.measure_leaves(masks, scores=[0.987654321, 0.5], image_name="p", mm_per_pixel=scale)
    plant = phenotype.measure_plant(masks, image_name="p", mm_per_pixel=scale)
    rounded = phenotype.round_traits(leaves, scale)
    (rounded_plant,) = phenotype.round_traits([plant], scale)
    # 0.12 mm/px: 0.01 px is 0.0012 mm (3 decimals), 0.1 px² is 0.00144 mm² (3 decimals).
    assert rounded[0]["score"] == 0.9877
    assert rounded[0]["area_mm2"] == round(leaves[0]["area_mm2"], 3)
    assert rounded[0]["length_mm"] == round(leaves[0]["length_mm"], 3)
    assert rounded[0]["centroid_y_px"] == round(leaves[0]["centroid_y_px"], 2)
    assert rounded[0]["bbox_y1_px"] == 3 and rounded[0]["image"] == "p" and rounded[0]["leaf"] == 1
    assert rounded_plant["compactness"] == round(plant["compactness"], 4) < 1
    assert leaves[0]["score"] == 0.987654321, "the measures themselves keep full precision"
    # In pixels: pixel counts are integers, lengths 0.01 px; no float noise once written.
    (in_px,) = phenotype.round_traits([phenotype.measure_plant(masks)])
    assert isinstance(in_px["rosette_area_px"], int) and in_px["rosette_area_px"] == masks.any(-1).sum()
    assert in_px["convex_hull_area_px"] * 2 == int(in_px["convex_hull_area_px"] * 2)
    path = phenotype.write_csv(rounded + phenotype.round_traits(leaves[:1], scale), tmp_path / "leaves.csv")
    for row in csv.DictReader(open(path, newline="")):
        for key, text in row.items():
            if "." in text:
                assert len(text.split(".")[1]) <= 4, (key, text)
    # NaN (an empty plant's compactness) and None stay as they are.
    (empty,) = phenotype.round_traits([phenotype.measure_plant(np.zeros((5, 5, 0), bool))])
    assert math.isnan(empty["compactness"]) and empty["rosette_area_px"] == 0
    assert phenotype.round_traits(phenotype.measure_leaves(masks[..., :1]))[0]["score"] is None


def _close(a, b):
    if a is None or isinstance(a, str):
        return a == b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == pytest.approx(b, rel=1e-12, abs=1e-9)


def test_a_label_image_of_non_overlapping_leaves_gives_the_rows_of_their_masks():
    rng = np.random.default_rng(7)
    label = np.zeros((80, 100), np.uint8)
    yy, xx = np.mgrid[:80, :100]
    for k in range(1, 9):  # ellipses at any angle; later leaves cover earlier ones
        cy, cx, ry, rx, angle = *rng.integers(0, 80, 2), *rng.integers(2, 15, 2), rng.uniform(0, np.pi)
        u = ((yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)) / ry
        v = (-(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)) / rx
        label[u ** 2 + v ** 2 < 1] = k
    label[label == 5] = 0  # leaf 5 hidden entirely: an empty mask
    masks = label[..., np.newaxis] == np.arange(1, 9)
    scores = np.linspace(0.99, 0.7, 8)
    for mm in (None, 0.25):
        rows = phenotype.measure_leaves(masks, scores, "p", mm)  # skimage's regionprops
        fast = phenotype.measure_leaves(masks, scores, "p", mm, label=label)  # OpenCV's moments in each box
        assert "nan" in str(rows[4]) and "nan" in str(fast[4])  # the hidden leaf's row
        for row, other in zip(rows, fast):
            assert row.keys() == other.keys()
            round_shape = row["leaf"] != 5 and abs(row[f"length_{'mm' if mm else 'px'}"]
                                                   - row[f"width_{'mm' if mm else 'px'}"]) < 1e-6
            for key in row:
                if key == "orientation_deg" and round_shape:
                    continue  # a shape without a long axis has an arbitrary orientation
                assert _close(row[key], other[key]), (row["leaf"], key, row[key], other[key])
        assert phenotype.measure_plant(masks, "p", mm, label=label) == phenotype.measure_plant(masks, "p", mm)
        # the label alone: N from the scores, or from its largest id
        assert _same_rows(phenotype.measure_leaves(None, scores, "p", mm, label=label), fast)
        assert _same_rows(phenotype.measure_leaves(None, None, "p", mm, label=label),
                          phenotype.measure_leaves(masks, None, "p", mm, label=label))


def _same_rows(rows, others):
    """Rows equal, NaN equal to NaN."""
    return len(rows) == len(others) and all(
        row.keys() == other.keys() and all(_close(row[key], other[key]) for key in row) for row, other in zip(rows, others))


def test_label_properties_match_regionprops_on_many_shapes():
    import skimage.measure

    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:120, :140]
    for _ in range(10):
        label = np.zeros((120, 140), np.int32)
        for k in range(1, 13):
            cy, cx, ry, rx, angle = *rng.integers(0, 120, 2), *rng.integers(1, 30, 2), rng.uniform(0, np.pi)
            u = ((yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)) / ry
            v = (-(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)) / rx
            label[(u ** 2 + v ** 2 < 1) & ((yy * 7 + xx * 3) % 11 > 0)] = k  # with holes and pieces
        reference = skimage.measure.regionprops_table(label, properties=phenotype._REGION_PROPERTIES)
        mine = phenotype.label_properties(label)
        assert sorted(mine) == [int(i) - 1 for i in reference["label"]]
        for i, leaf in enumerate(reference["label"]):
            p = mine[int(leaf) - 1]
            round_shape = reference["axis_major_length"][i] - reference["axis_minor_length"][i] < 1e-6
            for name, values in reference.items():
                if name == "orientation" and round_shape:
                    continue
                assert p[name] == pytest.approx(float(values[i]), rel=1e-12, abs=1e-9), (leaf, name)


def test_label_perimeters_are_skimages_perimeter_of_each_id():
    """Every id's perimeter at once equals skimage.measure.perimeter(label == id, 4) exactly: random
    labels (regions touching each other and the image's edges, ids without pixels), blocky ones,
    one-pixel images and an empty one."""
    import skimage.measure
    from scipy import ndimage

    rng = np.random.default_rng(4)
    cases = [np.zeros((5, 6), np.uint8), np.ones((1, 1), np.uint8), np.array([[0, 3, 3, 0]], np.uint16)]
    for _ in range(120):
        height, width = rng.integers(1, 30, 2)
        label = rng.integers(0, rng.integers(1, 8), (height, width)).astype(np.uint8)
        cases.append(label if rng.random() < 0.5 else ndimage.zoom(label, 3, order=0))
    for label in cases:
        perimeters = phenotype.label_perimeters(label)
        assert perimeters.shape == (int(label.max()) + 1,)
        for index in range(1, int(label.max()) + 1):
            expected = skimage.measure.perimeter(label == index, 4) if np.any(label == index) else 0.0
            assert perimeters[index] == expected, (label.shape, index)


def test_measure_plants_gives_each_plant_its_own_leaves_traits_box_and_centroid():
    """Per plant of a scene: measure_plant of that plant's leaves alone, with their box and
    centroid in the image's pixels; a plant without leaves gets count 0, box 0, NaN centroid;
    one plant owning every leaf is measured the same way."""
    label = np.zeros((60, 80), np.uint8)
    label[5:15, 4:20] = 1       # plant 1
    label[10:25, 12:18] = 2     # plant 1, over leaf 1
    label[30:50, 40:70] = 3     # plant 2
    label[42:48, 62:78] = 4     # plant 2
    plant_of_leaf = [1, 1, 2, 2]
    plants = [(1, "A1", (0, 0, 30, 40)), (2, "A2", (25, 35, 60, 80)), (3, "A3", (0, 50, 20, 80))]
    rows = phenotype.measure_plants(label, plant_of_leaf, plants, "scene", 0.5)
    assert [row["plant"] for row in rows] == ["A1", "A2", "A3"]
    for row, (plant_id, _, _) in zip(rows, plants):
        own = np.isin(label, [k + 1 for k, p in enumerate(plant_of_leaf) if p == plant_id])
        expected = phenotype.measure_plant(np.stack([own & (label == k) for k in range(1, 5)], axis=-1), "scene", 0.5)
        assert {key: row[key] for key in expected} == pytest.approx(expected, nan_ok=True)
        ys, xs = np.nonzero(own)
        if len(ys):
            assert (row["bbox_y1_px"], row["bbox_x1_px"], row["bbox_y2_px"], row["bbox_x2_px"]) == \
                (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
            assert (row["centroid_y_px"], row["centroid_x_px"]) == pytest.approx((ys.mean(), xs.mean()), rel=1e-14)
        else:
            assert row["leaf_count"] == 0 and row["bbox_y2_px"] == 0 and math.isnan(row["centroid_y_px"])
    (whole,) = phenotype.measure_plants(label, [1, 1, 1, 1], [(1, "1", (0, 0, 60, 80))], "scene")
    ys, xs = np.nonzero(label)
    assert whole["leaf_count"] == 4 and whole["rosette_area_px"] == len(ys)
    assert (whole["centroid_y_px"], whole["centroid_x_px"]) == pytest.approx((ys.mean(), xs.mean()), rel=1e-14)
    assert whole == {**whole, **phenotype.measure_plant(np.zeros((60, 80, 0), bool), "scene", label=label)}
