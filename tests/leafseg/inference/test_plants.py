"""Whole scenes plants first (leafseg.inference.plants): trays, dishes and large photographs.

No trained network: an :class:`Oracle` stands in for Mask R-CNN. The scenes are painted with one
colour per leaf (green, so that the vegetation index sees them too) on a black background, and
the oracle returns one mask per colour in whatever image it is given: a crop of a scene gets
exactly the scene's leaves within it, a leaf cut by the crop's edge as the part inside. So every
leaf the plants-first pipeline returns can be compared pixel for pixel with the painted one.
"""
import csv
import json
import logging
import re
import shutil
import types

import cv2
import numpy as np
import pytest
from PIL import Image

from leafseg.cli import evaluate as evaluate_command
from leafseg.cli import predict as predict_command
from leafseg.inference import plants as P
from leafseg.inference.predict import predict_images
from leafseg.synth.trays import generate_dish, generate_tray, scene_paths, write_scenes
from tests.command_output import refused, run_main

BACKGROUND = (0, 0, 0)


# ---------------------------------------------------------------------------------- stand-ins

def leaf_colour(k):
    """The colour of painted leaf ``k`` (1..1599): green, each leaf its own."""
    return 10 + k % 40, 200, 10 + k // 40


class Oracle:
    """A deterministic stand-in for an inference MaskRCNN: ``detect(images)`` returns, per image,
    Matterport's result with one mask per colour other than black (its box, class 1, a score
    that depends on the colour only). ``seen`` keeps every image it was given."""

    def __init__(self, size=64):
        self.config = types.SimpleNamespace(IMAGE_MAX_DIM=size, NUM_CLASSES=2, DETECTION_MIN_CONFIDENCE=0.5)
        self.seen = []

    def detect(self, images, verbose=0):
        return [self._detect(np.asarray(image)) for image in images]

    def _detect(self, image):
        self.seen.append(image.copy())
        code = (image[..., 0].astype(np.int64) << 16) | (image[..., 1].astype(np.int64) << 8) | image[..., 2]
        colours = [c for c in np.unique(code) if c != (BACKGROUND[0] << 16 | BACKGROUND[1] << 8 | BACKGROUND[2])]
        masks = np.stack([code == c for c in colours], axis=-1) if colours else np.zeros((*code.shape, 0), bool)
        rois = np.zeros((len(colours), 4), np.int32)
        for k in range(len(colours)):
            ys, xs = np.nonzero(masks[..., k])
            rois[k] = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
        scores = np.array([0.5 + (int(c) * 7919 % 4801) / 10000 for c in colours], np.float32)
        return {"rois": rois, "class_ids": np.ones(len(colours), np.int32), "scores": scores, "masks": masks}


# ---------------------------------------------------------------------------------- painting

class Painting:
    """A scene being painted: ``ids`` [H, W] leaf ids (0 background, later leaves on top) and the
    plant each leaf was painted for (``plant_of[leaf]``)."""

    def __init__(self, height, width):
        self.ids = np.zeros((height, width), np.int32)
        self.plant_of = {}

    def leaf(self, plant, cy, cx, ry, rx=None, angle=0.0):
        """An elliptic leaf of ``plant`` centred at (cy, cx); returns its id."""
        rx = ry if rx is None else rx
        ys, xs = np.ogrid[:self.ids.shape[0], :self.ids.shape[1]]
        cos, sin = np.cos(angle), np.sin(angle)
        u, v = (xs - cx) * cos + (ys - cy) * sin, -(xs - cx) * sin + (ys - cy) * cos
        return self._add(plant, (u / rx) ** 2 + (v / ry) ** 2 <= 1)

    def rosette(self, plant, cy, cx, leaves=4, spread=10, radius=8, turn=0.3):
        """``leaves`` round leaves around (cy, cx), ``spread`` from it."""
        return [self.leaf(plant, cy + spread * np.sin(turn + 2 * np.pi * k / leaves),
                          cx + spread * np.cos(turn + 2 * np.pi * k / leaves), radius) for k in range(leaves)]

    def _add(self, plant, where):
        leaf = len(self.plant_of) + 1
        self.ids[where] = leaf
        self.plant_of[leaf] = plant
        return leaf

    @property
    def image(self):
        lut = np.array([BACKGROUND] + [leaf_colour(k) for k in range(1, len(self.plant_of) + 1)], np.uint8)
        return lut[self.ids]

    def visible(self):
        """The leaves with a visible pixel: {leaf: plant}."""
        present = set(np.unique(self.ids).tolist()) - {0}
        return {leaf: plant for leaf, plant in self.plant_of.items() if leaf in present}


def painted_tray(rows=3, cols=4, cell=80, empty=(), seed=0):
    """A tray filling the frame: a rosette in the middle of each cell but the ``empty`` (row, col)
    ones; each leaf's plant is its cell (row, col)."""
    rng = np.random.default_rng(seed)
    painting = Painting(rows * cell, cols * cell)
    for r in range(rows):
        for c in range(cols):
            if (r, c) not in empty:
                painting.rosette((r, c), (r + 0.5) * cell, (c + 0.5) * cell, leaves=int(rng.integers(3, 6)),
                                 spread=0.15 * cell, radius=0.11 * cell, turn=rng.uniform(0, 2))
    return painting


def coded(scene):
    """A synthetic scene (leafseg.synth.trays) painted as the oracle reads it: its leaf ids in
    leaf colours; {leaf: plant id} (1-based)."""
    painting = Painting(*scene.leaf_ids.shape)
    painting.ids = scene.leaf_ids.copy()
    painting.plant_of = {k + 1: int(plant) for k, plant in enumerate(scene.leaf_plant)}
    return painting


def found_leaves(result, ids):
    """{painted leaf: [(its plant id in the result, exact)]}: for each detection the painted leaf
    under it and whether its pixels are exactly the painted leaf's (all of them, nothing else)."""
    found = {}
    for k in range(result["masks"].shape[-1]):
        mask = result["masks"][..., k]
        under = np.unique(ids[mask])
        exact = len(under) == 1 and under[0] > 0 and np.array_equal(mask, ids == under[0])
        found.setdefault(int(under[0]) if len(under) == 1 else tuple(under.tolist()), []).append(
            (int(result["plant_ids"][k]), exact))
    return found


def assert_each_leaf_once(result, painting, plant_id):
    """Every visible painted leaf comes back once, exactly its pixels, with plant
    ``plant_id[painted plant]``; nothing else comes back."""
    found = found_leaves(result, painting.ids)
    expected = {leaf: [(plant_id[plant], True)] for leaf, plant in painting.visible().items()}
    assert found == expected


def crops_given(oracle, image, crop):
    """How often the oracle was given ``image[crop]``."""
    y1, x1, y2, x2 = crop
    part = image[y1:y2, x1:x2]
    return sum(seen.shape == part.shape and np.array_equal(seen, part) for seen in oracle.seen)


# ---------------------------------------------------------------------------------- the single-plant path

def small_photo():
    """Three plants in 150 x 192 px: no larger than SCENE_FACTOR x a 64 px model."""
    painting = Painting(150, 192)
    for i, (cy, cx) in enumerate([(40, 40), (50, 120), (110, 80)]):
        painting.rosette(i, cy, cx)
    return painting


def test_a_photograph_up_to_scene_factor_times_the_model_goes_whole_with_the_models_result():
    assert max(small_photo().ids.shape) == P.SCENE_FACTOR * 64
    image = small_photo().image
    oracle = Oracle(64)
    expected = Oracle(64).detect([image])[0]
    result = P.PlantsFirst(oracle).detect([image])[0]
    assert len(oracle.seen) == 1 and np.array_equal(oracle.seen[0], image)  # one call, the whole photograph
    for key in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(result[key], expected[key])
        assert result[key].dtype == expected[key].dtype
    np.testing.assert_array_equal(result["plant_ids"], np.ones(len(expected["scores"]), np.int32))
    assert result["plan"].mode == "one"
    assert result["plants"] == [P.Plant(1, "1", (0, 0, 150, 192), (0, 0, 150, 192))]


class MoldingOracle(Oracle):
    """An Oracle that molds ahead as MaskRCNN.mold does and counts the molded images detect gets."""

    def __init__(self, size=64):
        super().__init__(size)
        self.molds = self.molded_seen = 0

    def mold(self, image):
        from mrcnn.pipeline import MoldedImage

        self.molds += 1
        return MoldedImage(np.asarray(image), np.asarray(image, np.float32), np.zeros(14), np.zeros(4, np.int32))

    def detect(self, images, verbose=0):
        from mrcnn.pipeline import MoldedImage, raw_image

        self.molded_seen += sum(isinstance(image, MoldedImage) for image in images)
        return super().detect([raw_image(image) for image in images], verbose)


def test_prepare_molds_ahead_only_what_goes_whole_without_looking():
    """PlantsFirst.prepare molds (the model's ``mold``) a photograph that goes whole at sight, and
    detect hands the molded image to the model with the same result; a scene that may be split,
    a grid, or a model without ``mold`` get the image back as it is."""
    small, tray = small_photo().image, painted_tray().image
    oracle = MoldingOracle(64)
    first = P.PlantsFirst(oracle)
    prepared = first.prepare(small)
    assert oracle.molds == 1 and prepared.image is small
    result = first.detect([prepared])[0]
    assert oracle.molded_seen == 1
    expected = P.PlantsFirst(Oracle(64)).detect([small])[0]
    for key in ("rois", "class_ids", "scores", "masks", "plant_ids"):
        np.testing.assert_array_equal(result[key], expected[key])
    assert first.prepare(tray) is tray  # 5 x the model: plants first may split it
    assert P.PlantsFirst(oracle, grid="2x3").prepare(small) is small  # a grid always splits
    assert oracle.molds == 1
    assert P.PlantsFirst(oracle, plants="one").prepare(tray).image is tray  # plants one: whole at any size
    assert oracle.molds == 2
    assert P.PlantsFirst(Oracle(64)).prepare(small) is small  # a model that cannot mold ahead
    assert P.goes_whole_at_sight(small.shape, 64) and not P.goes_whole_at_sight(tray.shape, 64)


def test_plants_one_sends_a_large_scene_whole_and_notes_the_shrink(caplog):
    image = painted_tray().image  # 240 x 320: 5 x the model
    oracle = Oracle(64)
    with caplog.at_level(logging.WARNING, logger="leafseg.inference.plants"):
        result = P.PlantsFirst(oracle, plants="one").detect([image], names=["tray7"])[0]
    assert len(oracle.seen) == 1 and np.array_equal(oracle.seen[0], image)
    expected = Oracle(64).detect([image])[0]
    for key in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(result[key], expected[key])
    assert set(result["plant_ids"].tolist()) == {1} and len(result["plants"]) == 1
    # Its leaves came out small at the model's scale: the note says so, by name, and what to do.
    assert result["note"] is not None and result["note"].startswith("tray7: shrunk 5.0x")
    assert [r.getMessage() for r in caplog.records] == [result["note"]]


def test_one_plant_filling_a_large_frame_goes_through_whole():
    painting = Painting(400, 400)
    painting.rosette(0, 200, 200, leaves=6, spread=95, radius=70)  # six large leaves around an open centre
    oracle = Oracle(64)
    for finder in ("model", "vegetation"):
        oracle.seen.clear()
        result = P.PlantsFirst(oracle, finder=finder).detect([painting.image])[0]
        assert result["plan"].mode == "one", finder
        # (the model finder looks for the plants in tiles first) the last call: the whole photograph
        assert np.array_equal(oracle.seen[-1], painting.image)
        assert_each_leaf_once(result, painting, {0: 1})


# ---------------------------------------------------------------------------------- seams

def neighbours(thin_tip=False):
    """A scattered scene (no lattice) for a 240 px model, 600 x 800 px: plant 0 reaches a long leaf
    towards the small plant 1, whose crop (at least a third of the model's size) takes in the
    leaf's tip; with ``thin_tip`` the tip ends in a line a pixel wide (too thin for a plant's
    region). Returns (painting, that leaf)."""
    painting = Painting(600, 800)
    painting.rosette(0, 300, 300, leaves=4, spread=14, radius=12)
    if thin_tip:  # the leaf's body ends before the small plant's crop, its tip (x 365..376) reaches in
        reaching = painting.leaf(0, 300, 340, 9, 25)
        painting.ids[300, 365:377] = reaching
    else:  # x from 315 to 375
        reaching = painting.leaf(0, 300, 345, 9, 30)
    painting.leaf(1, 300, 410, 9)  # the small plant: x from 401 to 419
    for plant, (cy, cx) in enumerate([(300, 120), (120, 400), (500, 420), (200, 640), (440, 700)], start=2):
        painting.rosette(plant, cy, cx, leaves=4, spread=14, radius=12)
    return painting, reaching


def region_of(regions, where):
    """The plant whose region holds most of the pixels ``where`` (0: none holds any)."""
    votes = np.bincount(regions[where])
    votes[0] = 0
    return int(votes.argmax())


def plant_of_region(plan, painting):
    """{painted plant: the plan's plant whose region holds most of its leaves' pixels}."""
    leaves = {}
    for leaf, plant in painting.visible().items():
        leaves.setdefault(plant, []).append(leaf)
    return {plant: region_of(plan.regions, np.isin(painting.ids, own)) for plant, own in leaves.items()}


@pytest.mark.parametrize("finder", ["model", "vegetation"])
@pytest.mark.parametrize("thin_tip", [False, True])
def test_region_seam_a_neighbours_leaf_in_a_crop_margin_comes_back_once_whole(finder, thin_tip):
    painting, reaching = neighbours(thin_tip)
    image = painting.image
    oracle = Oracle(240)
    result = P.PlantsFirst(oracle, finder=finder).detect([image])[0]
    plan = result["plan"]
    assert plan.mode == "plants" and plan.cells is None and plan.regions is not None  # the region path
    by_region = plant_of_region(plan, painting)
    assert len(plan.plants) == 7 and sorted(set(by_region.values())) == list(range(1, 8))
    # The reaching leaf is cut by the small plant's crop, which was given part of it ...
    small, own = plan.plants[by_region[1] - 1], plan.plants[by_region[0] - 1]
    y1, x1, y2, x2 = small.crop
    leaf = painting.ids == reaching
    assert 0 < leaf[y1:y2, x1:x2].sum() < leaf.sum()
    assert crops_given(oracle, image, small.crop) == 1
    y1, x1, y2, x2 = own.crop
    assert leaf[y1:y2, x1:x2].sum() == leaf.sum()  # ... and its own plant's crop holds it whole.
    if thin_tip:  # the part the small plant's crop sees lies in no plant's region
        assert not plan.regions[small.crop[0]:small.crop[2], small.crop[1]:small.crop[3]][
            leaf[small.crop[0]:small.crop[2], small.crop[1]:small.crop[3]]].any()
    # Its own plant keeps it, whole and once.
    assert_each_leaf_once(result, painting, by_region)


def test_region_seam_a_leaf_outside_every_region_seen_whole_by_two_crops_comes_back_once():
    """A fragment (a fallen leaf, moss) too small and too far to belong to a plant, between two
    seedlings whose crops both hold it whole: it comes back once."""
    painting = Painting(600, 800)
    painting.leaf(0, 300, 380, 8)   # x from 372 to 388
    painting.leaf(1, 300, 446, 8)   # x from 438 to 454
    fragment = painting.leaf(0, 300, 412, 2)
    for plant, (cy, cx) in enumerate([(130, 110), (90, 430), (480, 300), (230, 650), (470, 610)], start=2):
        painting.rosette(plant, cy, cx, leaves=4, spread=14, radius=12)
    image = painting.image
    result = P.PlantsFirst(Oracle(240)).detect([image])[0]
    plan = result["plan"]
    assert plan.regions is not None and not plan.regions[painting.ids == fragment].any()
    by_region = plant_of_region(plan, painting)
    assert len(plan.plants) == 7 and sorted(set(by_region.values())) == list(range(1, 8))
    for plant in (0, 1):
        y1, x1, y2, x2 = plan.plants[by_region[plant] - 1].crop
        assert (painting.ids[y1:y2, x1:x2] == fragment).sum() == (painting.ids == fragment).sum()
    found = found_leaves(result, painting.ids)
    assert found.pop(fragment) in ([(by_region[0], True)], [(by_region[1], True)])
    assert found == {leaf: [(by_region[plant], True)] for leaf, plant in painting.visible().items() if leaf != fragment}


def test_region_seam_dish_seedlings_leaves_come_back_once_whole():
    """A dish whose seedlings' pointed cotyledon tips reach into the crops of their neighbours."""
    painting = coded(generate_dish(2, size=400))
    result = P.PlantsFirst(Oracle(64)).detect([painting.image])[0]
    assert result["plan"].regions is not None
    found = found_leaves(result, painting.ids)
    assert sorted(found) == sorted(painting.visible())
    assert all(len(copies) == 1 and copies[0][1] for copies in found.values()), found


def cross_tray():
    """A 3 x 4 tray of 80 px cells whose plant B2 lays a leaf across the edge into B3's cell, less
    far than a cell's crop margin; returns (painting, that leaf)."""
    painting = painted_tray()
    # B2's cell is rows 80..160, columns 80..160; the leaf's centre stays in it, its tip reaches x = 167.
    reaching = painting.leaf((1, 1), 120, 148, 6, 19)
    return painting, reaching


@pytest.mark.parametrize("grid", [None, "3x4"])
def test_cell_seam_a_leaf_across_a_cell_edge_comes_back_once_whole_with_its_cell(grid):
    painting, reaching = cross_tray()
    image = painting.image
    oracle = Oracle(64)
    result = P.PlantsFirst(oracle, grid=grid).detect([image])[0]
    plan = result["plan"]
    assert plan.mode == "plants" and plan.cells == (3, 4) and plan.regions is None  # the cell path
    assert plan.fixed == (grid is not None)
    # The leaf lies in two cells; B2's crop holds it whole, B3's cuts it (and was given it cut).
    b2, b3 = plan.plants[5], plan.plants[6]
    assert (b2.box, b3.box) == ((80, 80, 160, 160), (80, 160, 160, 240))
    leaf = painting.ids == reaching
    assert leaf[:, :160].any() and leaf[:, 160:].any()
    assert leaf[b2.crop[0]:b2.crop[2], b2.crop[1]:b2.crop[3]].sum() == leaf.sum()
    assert 0 < leaf[b3.crop[0]:b3.crop[2], b3.crop[1]:b3.crop[3]].sum() < leaf.sum()
    assert crops_given(oracle, image, b3.crop) == 1
    assert_each_leaf_once(result, painting, {(r, c): 4 * r + c + 1 for r in range(3) for c in range(4)})


# ---------------------------------------------------------------------------------- grouping and order

def discs(shape, circles):
    """A mask of the discs ``circles`` [(cy, cx, radius)]."""
    ys, xs = np.ogrid[:shape[0], :shape[1]]
    return np.any([(ys - cy) ** 2 + (xs - cx) ** 2 <= r * r for cy, cx, r in circles], axis=0)


@pytest.mark.parametrize("seedling,speck", [((300, 200), (300, 600)), ((300, 600), (300, 200))])
def test_a_small_plant_far_from_the_others_is_a_plant_and_a_speck_is_not(seedling, speck):
    """Five rosettes, a seedling (over MIN_PLANT_AREA of the frame, under MIN_PLANT_FRACTION of a
    rosette) and specks far from them, one of them the last region in label order."""
    rosettes = [(150, 150, 30), (150, 650, 30), (450, 150, 30), (450, 650, 30), (300, 400, 30)]
    mask = discs((600, 800), rosettes + [(*seedling, 8), (*speck, 2), (591, 791, 1)])
    assert 8 * 8 * np.pi / mask.size > P.MIN_PLANT_AREA > 5 * 5 / mask.size
    assert 8 * 8 < P.MIN_PLANT_FRACTION * 30 * 30 * np.pi
    plants, regions = P.plants_from_mask(mask, 1.0, mask.shape, 240)
    assert len(plants) == 6
    assert regions[seedling] == next(p.id for p in plants if p.box[0] <= seedling[0] < p.box[2]
                                     and p.box[1] <= seedling[1] < p.box[3])
    assert regions[speck] == regions[591, 791] == 0
    # Reading order: the seedling's row is the middle rosette's.
    assert [p.box[:2] for p in plants] == sorted([p.box[:2] for p in plants], key=lambda b: (b[0] // 100, b[1]))


def expected_cells(rows, cols, empty=()):
    """{(row, col): plant id} in reading order, the empty cells left out."""
    cells = [(r, c) for r in range(rows) for c in range(cols) if (r, c) not in empty]
    return {cell: i for i, cell in enumerate(cells, start=1)}


@pytest.mark.parametrize("finder", ["model", "vegetation"])
def test_a_painted_tray_gives_its_twelve_plants_in_reading_order(finder):
    painting = painted_tray()
    result = P.PlantsFirst(Oracle(64), finder=finder).detect([painting.image])[0]
    assert [p.id for p in result["plants"]] == list(range(1, 13))
    assert [p.name for p in result["plants"]] == [str(i) for i in range(1, 13)]
    for plant in result["plants"]:  # plant k's box holds the centre of the k-th cell in reading order
        r, c = divmod(plant.id - 1, 4)
        y1, x1, y2, x2 = plant.box
        assert y1 <= (r + 0.5) * 80 < y2 and x1 <= (c + 0.5) * 80 < x2
    assert_each_leaf_once(result, painting, expected_cells(3, 4))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_synthetic_tray_gives_its_plants_in_reading_order(seed):
    tray = generate_tray(seed, grid=(3, 4), cell=64, style="classic")
    painting = coded(tray)
    assert max(painting.ids.shape) > P.SCENE_FACTOR * 64
    result = P.PlantsFirst(Oracle(64)).detect([painting.image])[0]
    assert result["plan"].cells == (3, 4)
    assert [p.id for p in result["plants"]] == list(range(1, 13))
    # The tray's plant ids are its cells in reading order (A1, A2, ... C4).
    assert_each_leaf_once(result, painting, {plant: plant for plant in range(1, 13)})


def test_grid_names_every_cell_and_reports_an_empty_one_while_auto_drops_it():
    painting = painted_tray(empty=[(1, 2)])
    by_grid = P.PlantsFirst(Oracle(64), grid="3x4").detect([painting.image])[0]
    names = [f"{row}{col}" for row in "ABC" for col in range(1, 5)]
    assert [(p.id, p.name) for p in by_grid["plants"]] == list(enumerate(names, start=1))
    assert by_grid["plan"].fixed and 7 not in by_grid["plant_ids"]  # B3 is reported, without leaves
    assert_each_leaf_once(by_grid, painting, {(r, c): 4 * r + c + 1 for r in range(3) for c in range(4)})

    auto = P.PlantsFirst(Oracle(64)).detect([painting.image])[0]
    assert not auto["plan"].fixed
    assert [(p.id, p.name) for p in auto["plants"]] == [(i, str(i)) for i in range(1, 12)]
    assert_each_leaf_once(auto, painting, expected_cells(3, 4, empty=[(1, 2)]))


def uneven_rows(seed):
    """Three rows of four plants 39 px high, rows 130 px apart, unevenly spaced in x, each centre
    jittered in y by up to 10 px (less than a quarter of a plant's height, so that two centres
    of a row differ by less than half of it); {plant: (row, col)} as the painting's plants."""
    rng = np.random.default_rng(seed)
    painting = Painting(420, 640)
    for r in range(3):
        x = 60 + rng.uniform(0, 30)
        for c in range(4):
            painting.rosette((r, c), 80 + 130 * r + rng.uniform(-10, 10), x, spread=10, radius=10)
            x += 100 + rng.uniform(0, 50)
    return painting


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_reading_order_when_rows_are_uneven(seed):
    painting = uneven_rows(seed)
    order = sorted(set(painting.plant_of.values()))  # (row, col) tuples sort in reading order
    leaves = {plant: [k for k, p in painting.plant_of.items() if p == plant] for plant in order}
    ys = {plant: np.argwhere(np.isin(painting.ids, leaves[plant]))[:, 0].mean() for plant in order}
    # The rows really are uneven: within some row, top to bottom is not left to right.
    assert any(sorted(order[4 * r:4 * r + 4], key=ys.get) != order[4 * r:4 * r + 4] for r in range(3))
    plants, regions = P.plants_from_mask(painting.ids > 0, 1.0, painting.ids.shape, 128)
    assert len(plants) == 12
    assert [region_of(regions, np.isin(painting.ids, leaves[plant])) for plant in order] == list(range(1, 13))
    result = P.PlantsFirst(Oracle(128)).detect([painting.image])[0]
    assert_each_leaf_once(result, painting, {plant: i for i, plant in enumerate(order, start=1)})


# ---------------------------------------------------------------------------------- lattices

@pytest.mark.parametrize("rows,cols", [(2, 3), (3, 4), (4, 6), (3, 5)])
def test_frame_lattice_finds_a_tray_filling_the_frame(rows, cols):
    assert P.frame_lattice(painted_tray(rows, cols, cell=70).ids > 0) == (rows, cols)


def test_frame_lattice_finds_a_synthetic_tray():
    assert P.frame_lattice(generate_tray(0, grid=(3, 4), cell=64, style="classic").plants > 0) == (3, 4)
    assert P.frame_lattice(generate_tray(1, grid=(2, 5), cell=48, style="classic").plants > 0) == (2, 5)


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_scattered_seedlings_are_no_lattice(seed):
    dish = generate_dish(seed, size=400)
    assert P.frame_lattice(dish.plants > 0) is None
    assert P.find_lattice([p.box for p in dish.plant_info], dish.plants.shape) is None
    plan = P.plan_scene(coded(dish).image, 64, model=Oracle(64))
    assert plan.mode == "plants" and plan.cells is None


def test_find_lattice_gives_the_edges_between_rows_and_columns():
    # A 3 x 4 tray in the middle of a 500 x 700 frame: plants 40 px wide, 100 px apart.
    boxes = [(100 + 100 * r - 20, 150 + 100 * c - 20, 100 + 100 * r + 20, 150 + 100 * c + 20)
             for r in range(3) for c in range(4)]
    rows, cols = P.find_lattice(boxes, (500, 700))
    np.testing.assert_array_equal(rows, [0, 150, 250, 500])
    np.testing.assert_array_equal(cols, [0, 200, 300, 400, 700])
    # A cell holding a seedling too small to count still keeps the lattice.
    assert P.find_lattice(boxes[:5] + [(195, 245, 205, 255)] + boxes[6:], (500, 700)) is not None
    # Two plants far apart in one row are no tray; nor are plants at random.
    assert P.find_lattice(boxes[:1], (500, 700)) is None
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 600, (12, 2))
    assert P.find_lattice([(y, x, y + 40, x + 40) for y, x in corners], (700, 700)) is None


def test_plan_scene_finds_a_tray_framed_with_a_margin_by_its_lattice():
    # The tray's plants in the middle of a larger photograph: no tray filling the frame, but a lattice.
    painting = Painting(500, 700)
    for r in range(3):
        for c in range(4):
            painting.rosette((r, c), 150 + 100 * r, 200 + 100 * c, spread=10, radius=10)
    plan = P.plan_scene(painting.image, 128)
    assert plan.mode == "plants" and plan.cells == (3, 4) and plan.regions is None
    result = P.PlantsFirst(Oracle(128), finder="vegetation").detect([painting.image])[0]
    assert_each_leaf_once(result, painting, expected_cells(3, 4))


# ---------------------------------------------------------------------------------- the shrink note

def result_with(areas, shape=(900, 1200)):
    masks = np.zeros((*shape, len(areas)), bool)
    for k, area in enumerate(areas):
        masks.reshape(-1, len(areas))[:area, k] = True
    return {"masks": masks, "scores": np.ones(len(areas), np.float32)}


def test_shrink_note_names_what_to_do_for_a_shrunk_photograph_with_small_leaves():
    note = P.shrink_note("tray3", 1200 / 384, result_with([900, 1200, 1500]), 384)  # about 120 px at the model
    assert note.startswith("tray3: shrunk 3.1x to the model's 384 px")
    assert "3 found, median 123 px" in note
    for advice in ("--plants auto", "--grid ROWSxCOLS", "--set IMAGE_MAX_DIM="):
        assert advice in note
    assert P.shrink_note("tray3", 4.0, result_with([]), 384) is not None  # nothing found at all


def test_shrink_note_is_none_otherwise():
    assert P.shrink_note("a", 2.99, result_with([10]), 384) is None             # not shrunk 3x
    assert P.shrink_note("a", 3.0, result_with([3000, 4000]), 384) is None      # leaves large enough
    assert P.shrink_note("a", 1.0, result_with([]), 384) is None


# ---------------------------------------------------------------------------------- bad values

@pytest.mark.parametrize("text", ["0x4", "3x0", "abc", "3x", "x4", "3 by 4", "-1x4", "703x1"])
def test_parse_grid_names_a_bad_value(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        P.parse_grid(text)


def test_parse_grid_reads_rows_by_columns():
    assert P.parse_grid("3x4") == (3, 4) and P.parse_grid(" 2 X 6 ") == (2, 6) and P.parse_grid("1×1") == (1, 1)
    assert P.parse_grid(None) is None and P.parse_grid((5, 2)) == (5, 2)
    assert [P.grid_name(r, c) for r, c in [(0, 0), (2, 3), (25, 0), (26, 1), (701, 0)]] == \
        ["A1", "C4", "Z1", "AA2", "ZZ1"]
    with pytest.raises(ValueError, match=r"\(0, 4\)"):
        P.parse_grid((0, 4))


def test_the_library_names_a_bad_plants_grid_or_finder(tmp_path):
    oracle, image = Oracle(64), np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="plants must be one of auto, one, got 'many'"):
        P.PlantsFirst(oracle, plants="many")
    with pytest.raises(ValueError, match="got '0x4'"):
        P.PlantsFirst(oracle, grid="0x4")
    with pytest.raises(ValueError, match="finder must be one of model, vegetation, got 'eyes'"):
        P.PlantsFirst(oracle, finder="eyes")
    with pytest.raises(ValueError, match="plants must be one of auto, one, got 'many'"):
        P.plan_scene(image, 64, plants="many")
    with pytest.raises(ValueError, match="got 'abc'"):
        P.plan_scene(image, 64, grid="abc")
    with pytest.raises(ValueError, match="plants must be one of auto, one, got 'many'"):
        predict_images(oracle, [tmp_path], tmp_path / "out", plants="many", progress=False)
    with pytest.raises(ValueError, match="got '2x0'"):
        predict_images(oracle, [tmp_path], tmp_path / "out", grid="2x0", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [predict_command, evaluate_command])
@pytest.mark.parametrize("option,value,message", [
    ("--grid", "0x4", "grid must have at least 1 row and 1 column"),
    ("--grid", "abc", "grid must be ROWSxCOLS"),
    ("--plants", "many", "invalid choice"),
])
def test_the_commands_refuse_a_bad_plants_or_grid_naming_it(command, option, value, message, tmp_path):
    err = refused(command.main, tmp_path, tmp_path / "out", option, value, dataset=command is evaluate_command)
    assert f"{option}" in err and value in err and message in err


def test_the_commands_take_good_plants_and_grid_values():
    for command in (predict_command, evaluate_command):
        argv = ["--dataset", "d", "--out", "o"] if command is evaluate_command else ["a.png"]
        args = command.build_parser().parse_args([*argv, "--grid", "3x4", "--plants", "one"])
        assert (args.grid, args.plants) == ((3, 4), "one")
        args = command.build_parser().parse_args(argv)
        assert (args.grid, args.plants) == (None, "auto")


# ---------------------------------------------------------------------------------- predict on scenes

def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_rgb(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def read_png(path):
    with Image.open(path) as png:
        return np.array(png)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """A folder with a tray (3 x 4, B3 empty, 240 x 320 px) and a photograph of one plant."""
    folder = tmp_path_factory.mktemp("scenes")
    tray = painted_tray(empty=[(1, 2)])
    write_rgb(folder / "tray.png", tray.image)
    one = Painting(120, 160)
    one.rosette(0, 60, 80, leaves=5, spread=18, radius=14)
    write_rgb(folder / "one.png", one.image)
    return types.SimpleNamespace(folder=folder, tray=tray, one=one)


@pytest.fixture(scope="module")
def predicted(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("predicted")
    report = predict_images(Oracle(64), [scenes.folder], out, coco_json="rle", progress=False)
    assert [name for _, name, _ in report.predicted] == ["one", "tray"]
    return out


@pytest.fixture(scope="module")
def predicted_grid(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("predicted_grid")
    predict_images(Oracle(64), [scenes.folder / "tray.png"], out, grid="3x4", progress=False)
    return out


def check_outputs(out, name, painting, plant_name, names):
    """The outputs of image ``name`` against its painting: ``plant_name[painted plant]`` is the
    plant each leaf must be in; ``names`` the plants.csv rows expected, in order."""
    label = read_png(out / "labels" / f"{name}_label.png")
    plant_label = read_png(out / "plants" / f"{name}_plants.png")
    leaves = [row for row in read_csv(out / "leaves.csv") if row["image"] == name]
    plants = [row for row in read_csv(out / "plants.csv") if row["image"] == name]
    assert [row["plant"] for row in plants] == names
    # One label value per painted leaf, exactly its pixels; its row names its plant.
    visible = painting.visible()
    assert len(leaves) == len(visible) == label.max()
    plant_ids = {plant: i for i, plant in enumerate(names, start=1)}
    for row in leaves:
        pixels = label == int(row["leaf"])
        painted = np.unique(painting.ids[pixels])
        assert len(painted) == 1 and np.array_equal(pixels, painting.ids == painted[0])
        assert row["plant"] == plant_name[visible[int(painted[0])]]
        assert set(np.unique(plant_label[pixels])) == {plant_ids[row["plant"]]}
    assert not plant_label[label == 0].any()
    # Each plant's row: its leaves' pixels.
    for row in plants:
        own = plant_label == plant_ids[row["plant"]]
        assert int(row["leaf_count"]) == sum(leaf["plant"] == row["plant"] for leaf in leaves)
        assert int(row["rosette_area_px"]) == own.sum()
        if not own.any():
            assert [row[k] for k in ("bbox_y1_px", "bbox_x2_px", "centroid_y_px")] == ["0", "0", "nan"]
            continue
        ys, xs = np.nonzero(own)
        assert [int(row[k]) for k in ("bbox_y1_px", "bbox_x1_px", "bbox_y2_px", "bbox_x2_px")] == \
            [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
        np.testing.assert_allclose([float(row["centroid_y_px"]), float(row["centroid_x_px"])], [ys.mean(), xs.mean()],
                                   atol=0.005)
    return label


def test_predict_writes_a_tray_by_plant(predicted, scenes):
    cells = expected_cells(3, 4, empty=[(1, 2)])
    label = check_outputs(predicted, "tray", scenes.tray, {cell: str(i) for cell, i in cells.items()},
                          [str(i) for i in range(1, 12)])
    overlay = cv2.imread(str(predicted / "overlays" / "tray_overlay.png"))[..., ::-1]
    assert overlay.shape == scenes.tray.image.shape
    assert np.any(overlay != scenes.tray.image, axis=-1)[label > 0].mean() > 0.9
    # Each plant's outline (white) is drawn around it: white background pixels in every cell but the empty B3.
    white = np.all(overlay == 255, axis=-1) & (label == 0)
    counts = [white[80 * r:80 * r + 80, 80 * c:80 * c + 80].sum() for r in range(3) for c in range(4)]
    assert counts[6] == 0 and min(counts[:6] + counts[7:]) > 100


def test_predict_gives_a_photograph_of_one_plant_one_row(predicted, scenes):
    check_outputs(predicted, "one", scenes.one, {0: "1"}, ["1"])
    plants = read_csv(predicted / "plants.csv")
    assert [row["image"] for row in plants].count("one") == 1


def test_predict_coco_annotations_carry_the_plant(predicted, scenes):
    document = json.loads((predicted / "predictions_coco.json").read_text())
    leaves = read_csv(predicted / "leaves.csv")
    assert len(document["annotations"]) == len(leaves)
    images = {image["id"]: image["name"] for image in document["images"]}
    for annotation, row in zip(document["annotations"], leaves):
        assert (images[annotation["image_id"]], annotation["leaf_id"]) == (row["image"], int(row["leaf"]))
        assert annotation["plant"] == row["plant"]
    assert {a["plant"] for a in document["annotations"] if images[a["image_id"]] == "tray"} == \
        {str(i) for i in range(1, 12)}


def test_predict_with_a_grid_names_the_pots_and_reports_the_empty_one(predicted_grid, scenes):
    names = [f"{row}{col}" for row in "ABC" for col in range(1, 5)]
    check_outputs(predicted_grid, "tray", scenes.tray, {(r, c): names[4 * r + c] for r in range(3) for c in range(4)},
                  names)
    empty = next(row for row in read_csv(predicted_grid / "plants.csv") if row["plant"] == "B3")
    assert (empty["leaf_count"], empty["rosette_area_px"]) == ("0", "0")


# ---------------------------------------------------------------------------------- evaluate on scenes

def test_evaluate_scores_synthetic_scenes_plant_by_plant(tmp_path, monkeypatch):
    """``leafseg evaluate`` on a raw folder of two trays and a dish (leafseg.synth.trays), the
    photographs repainted as the oracle reads them (the colour labels)."""
    data = tmp_path / "scenes"
    write_scenes(data, count=2, seed=3, scene="tray", grid=(2, 3), size=64, style="classic", progress=False)
    write_scenes(data, count=1, seed=3, scene="dish", size=256, start=2, progress=False)
    counts = {}
    for index in range(3):
        rgb, label, plants = scene_paths(data, index)
        shutil.copy(label, rgb)
        counts[rgb.name.replace("_rgb.png", "")] = len(np.unique(read_png(plants))) - 1
    assert counts["scene00000"] == counts["scene00001"] == 6 and counts["scene00002"] >= 3
    oracle = Oracle(48)  # the trays are 136 x 192 px: more than 3 x the model
    monkeypatch.setattr(evaluate_command, "load_inference_model", lambda *args, **kwargs: (oracle, "test", "oracle"))
    monkeypatch.setattr(evaluate_command, "setup_command_logging", lambda *args, **kwargs: None)  # (no TensorFlow)
    run = run_main(evaluate_command.main, ["--dataset", str(data), "--out", str(tmp_path / "out"), "--gallery", "0",
                                           "--quiet"])
    assert run.status == 0, run.stderr
    assert len(oracle.seen) > 3  # by plant, not whole
    per_image = {row["image"]: row for row in read_csv(tmp_path / "out" / "per_image.csv")}
    assert {name: int(row["plants_true"]) for name, row in per_image.items()} == counts
    for name in ("scene00000", "scene00001"):  # exact leaves in a tray's cells: every plant found
        assert (int(per_image[name]["plants_found"]), float(per_image[name]["sbd"])) == (6, 1.0)
    per_plant = read_csv(tmp_path / "out" / "per_plant.csv")
    for name, count in counts.items():
        assert sorted(int(row["gt_plant"]) for row in per_plant if row["image"] == name and row["gt_plant"]) == \
            list(range(1, count + 1))
    assert {row["status"] for row in per_plant if row["image"] != "scene00002"} == {"matched"}
    settings = json.loads((tmp_path / "out" / "metrics.json").read_text())["settings"]
    assert (settings["plants"], settings["grid"]) == ("auto", None)
