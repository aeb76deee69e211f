"""Tests of the whole scenes: trays of rosettes and dishes of seedlings, with leaf and plant labels.
Small scenes (cells of 64..96 px, dishes of 256..768 px) so that the file runs in seconds."""
import os

import cv2
import numpy as np
import pytest

from leafseg.cli.synth import main
from leafseg.data.dataset import LeafDataset
from leafseg.data.masks import read_label, split_instances
from leafseg.data.prepare import prepare_dataset
from leafseg.synth.rosettes import contact_sheet, generate_rosette, rosette_rng, write_dataset
from leafseg.synth.trays import (CELL_ASPECT, ROW_BAND, Scene, generate_dish, generate_tray, parse_grid,
                                 position_name, reading_order, scene_paths, write_plants_png, write_scenes)


@pytest.fixture(scope="module")
def trays():
    return [generate_tray(rosette_rng(1, i), grid=(2, 3), cell=96) for i in range(2)]


@pytest.fixture(scope="module")
def dishes():
    return [generate_dish(rosette_rng(2, i), size=384) for i in range(4)]


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def check_scene(scene):
    """The label invariants every scene keeps."""
    assert isinstance(scene, Scene)
    height, width = scene.image.shape[:2]
    assert scene.image.dtype == np.uint8 and scene.image.shape == (height, width, 3)
    assert scene.label.dtype == np.uint8 and scene.label.shape == (height, width, 3)
    assert scene.leaf_ids.shape == (height, width) and scene.plants.shape == (height, width)
    n, count = scene.num_leaves, scene.num_plants
    # Leaf ids 1..N, each leaf visible, its own colour; black and the leaf colours only.
    np.testing.assert_array_equal(np.unique(scene.leaf_ids), np.arange(n + 1))
    lut = np.concatenate([[[0, 0, 0]], scene.colors]).astype(np.uint8)
    np.testing.assert_array_equal(scene.label, lut[scene.leaf_ids])
    assert len({tuple(c) for c in scene.colors}) == n
    # The colour label splits back into exactly the scene's leaves.
    split = split_instances(scene.label)
    assert split.count == n and split.dropped == []
    colour_id = {tuple(c): i + 1 for i, c in enumerate(scene.colors.tolist())}
    to_leaf = np.array([0] + [colour_id[tuple(key)] for key in split.keys.tolist()])
    np.testing.assert_array_equal(to_leaf[split.index], scene.leaf_ids)
    # Plant ids 1..P, contiguous; each leaf in one plant, leaves numbered plant by plant.
    np.testing.assert_array_equal(np.unique(scene.plants), np.arange(count + 1))
    assert [p.id for p in scene.plant_info] == list(range(1, count + 1))
    assert np.all(np.diff(scene.leaf_plant) >= 0) and set(scene.leaf_plant.tolist()) == set(range(1, count + 1))
    np.testing.assert_array_equal(scene.plants, np.concatenate([[0], scene.leaf_plant])[scene.leaf_ids])
    assert sum(len(p.leaves) for p in scene.plant_info) == n
    for plant in scene.plant_info:
        np.testing.assert_array_equal(scene.leaf_plant[np.array(plant.leaves) - 1], plant.id)
        region = scene.plants == plant.id
        np.testing.assert_array_equal(region, np.isin(scene.leaf_ids, plant.leaves))  # the union of its leaves
        ys, xs = np.nonzero(region)
        assert plant.box == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
        assert plant.area == len(ys)
        np.testing.assert_allclose(plant.centroid, (ys.mean(), xs.mean()))
    assert len({p.name for p in scene.plant_info}) == count


# ---------------------------------------------------------------------------------------------
# Trays
# ---------------------------------------------------------------------------------------------

def test_tray_label_invariants(trays):
    for tray in trays:
        check_scene(tray)
        assert tray.kind == "tray" and tray.parts is None and tray.plants.dtype == np.uint8


def test_tray_layout_names_and_cells(trays):
    tray = trays[0]
    assert [p.name for p in tray.plant_info] == ["A1", "A2", "A3", "B1", "B2", "B3"]
    cells = [p.cell for p in tray.plant_info]
    height, width = tray.image.shape[:2]
    # Tiled edge to edge in reading order: rows share heights, columns share widths.
    assert cells[0][:2] == (0, 0) and cells[-1][2:] == (height, width)
    for k, (y1, x1, y2, x2) in enumerate(cells):
        row, col = divmod(k, 3)
        assert y1 == (cells[k - 3][2] if row else 0) and x1 == (cells[k - 1][3] if col else 0)
        assert round(0.98 * round(CELL_ASPECT * 96)) <= y2 - y1 <= round(1.02 * round(CELL_ASPECT * 96))
        assert round(0.98 * 96) <= x2 - x1 <= round(1.02 * 96)
        by, bx, by2, bx2 = tray.plant_info[k].box
        assert y1 <= by and by2 <= y2 and x1 <= bx and bx2 <= x2  # each plant in its own cell
    # Plants differ from cell to cell.
    assert len({p.area for p in tray.plant_info}) > 3
    # Without jitter the cells are exact: 3 x 4 cells of 500 would make the real target's 1590 x 2000.
    exact = generate_tray(0, grid=(2, 3), cell=64, jitter=0.0)
    assert exact.image.shape == (2 * round(CELL_ASPECT * 64), 3 * 64, 3)
    assert round(CELL_ASPECT * 500) * 3 == 1590


def test_tray_cells_are_rosettes_of_their_own_and_classic_style_works():
    tray = generate_tray(4, grid=(1, 2), cell=96, style="classic", jitter=0.0)
    check_scene(tray)
    for plant in tray.plant_info:
        assert 4 <= len(plant.leaves) <= 22
    y1, x1, y2, x2 = tray.plant_info[1].cell
    assert not np.array_equal(tray.image[:, :x2 - x1], tray.image[:, x1:x2])


def test_contact_sheet_keeps_the_aspect_of_scenes(trays):
    tray = trays[0]
    height, width = tray.image.shape[:2]
    assert width > height
    sheet = contact_sheet([tray], tile=64, gap=4, keep_aspect=True)
    h = round(height * 64 / width)
    top = 4 + (64 - h) // 2
    assert (sheet[4:top, 4:68] == 255).all() and (sheet[top + h:68, 4:68] == 255).all()  # white above and below
    np.testing.assert_array_equal(sheet[top:top + h, 4:68],
                                  cv2.resize(tray.image, (64, h), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(sheet[top:top + h, 72:136],
                                  cv2.resize(tray.label, (64, h), interpolation=cv2.INTER_NEAREST))


def test_position_names():
    assert [position_name(0, 0), position_name(2, 3), position_name(25, 0), position_name(26, 0),
            position_name(27, 11)] == ["A1", "C4", "Z1", "AA1", "AB12"]


def test_tray_of_more_than_255_plants_and_leaves(tmp_path):
    tray = generate_tray(0, grid=(16, 17), cell=34, style="classic", min_leaves=1, max_leaves=4)
    check_scene(tray)
    assert tray.num_plants == 272 and tray.plants.dtype == np.uint16 and tray.num_leaves > 255
    assert tray.plant_info[-1].name == "P17"
    path = write_plants_png(tmp_path / "scene00000_plants.png", tray.plants)
    np.testing.assert_array_equal(read_label(path), tray.plants)


def test_same_seed_same_scene_different_seed_differs(trays):
    again = generate_tray(np.random.default_rng([1, 0]), grid=(2, 3), cell=96)
    for name in ("image", "label", "leaf_ids", "plants"):
        np.testing.assert_array_equal(getattr(again, name), getattr(trays[0], name))
    assert not np.array_equal(trays[0].image, trays[1].image)
    a, b = generate_dish(7, size=256), generate_dish(7, size=256)
    for name in ("image", "label", "plants", "parts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.image, generate_dish(8, size=256).image)


# ---------------------------------------------------------------------------------------------
# Dishes
# ---------------------------------------------------------------------------------------------

def test_dish_label_invariants_and_shape(dishes):
    for dish in dishes:
        check_scene(dish)
        assert dish.kind == "dish" and dish.image.shape == (288, 384, 3)
        assert 1 <= dish.num_plants <= 8
        assert all(len(p.leaves) <= 4 for p in dish.plant_info)  # two cotyledons, up to two true leaves
        assert dish.parts.shape == (288, 384) and not dish.parts[dish.leaf_ids > 0].any()
    assert generate_dish(0, size=(200, 260), seedlings=(2, 2)).image.shape == (200, 260, 3)


def test_a_seedling_without_a_visible_leaf_is_no_plant(dishes):
    # The same seedlings (drawn before their leaves are painted) with a stricter visibility cut.
    dish = dishes[0]
    strict = generate_dish(rosette_rng(2, 0), size=384, min_visible_pixels=55)
    check_scene(strict)
    assert strict.num_plants < dish.num_plants and strict.num_leaves < dish.num_leaves
    assert np.bincount(strict.leaf_ids.ravel())[1:].min() >= 55
    bare = generate_dish(rosette_rng(2, 0), size=384, min_visible_pixels=10**6)
    assert bare.num_plants == bare.num_leaves == 0 and not bare.plants.any() and not bare.label.any()
    assert (bare.parts > 0).any()  # the stems and roots are still in the photograph


def test_dish_plant_ids_follow_rows_of_centroids(dishes):
    # Hand-computed: band 10 puts y 10, 12, 13 in one row and 40, 45 in the next.
    order, rows = reading_order(np.array([(10, 50), (12, 5), (40, 30), (45, 1), (13, 100)]), band=10)
    assert order.tolist() == [1, 0, 4, 3, 2] and rows.tolist() == [0, 0, 0, 1, 1]
    for dish in dishes:
        centroids = np.array([p.centroid for p in dish.plant_info])
        order, rows = reading_order(centroids, ROW_BAND * dish.image.shape[0])
        assert order.tolist() == list(range(dish.num_plants))
        names = [position_name(row, int(np.sum(rows[:k] == row))) for k, row in enumerate(rows)]
        assert [p.name for p in dish.plant_info] == names


def test_dish_draws_stems_roots_and_seed_coats_outside_the_labels():
    """Hypocotyls (1) and roots (2) of every dish, and seed coats (3) of some, are in the
    photograph, never in the labels, and stand out from the plate around them."""
    seen_coats = 0
    for i in range(4):
        dish = generate_dish(rosette_rng(3, i), size=768, seedlings=(3, 5))
        counts = np.bincount(dish.parts.ravel(), minlength=4)
        assert counts[1] > 50 and counts[2] > 50, counts
        seen_coats += counts[3] > 0
        assert not (dish.plants[dish.parts > 0]).any()
        stems = dish.parts == 1
        around = cv2.dilate(stems.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        plate = around & (dish.parts == 0) & (dish.leaf_ids == 0)
        difference = np.abs(dish.image[stems].mean(axis=0) - dish.image[plate].mean(axis=0))
        assert difference.max() > 8, difference
    assert seen_coats >= 1


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def test_write_scenes_names_content_and_rerun(tmp_path):
    written = write_scenes(tmp_path, 2, seed=5, grid=(1, 2), start=3, progress=False, size=64)
    names = sorted(os.listdir(tmp_path))
    assert names == [f"scene{i:05d}_{kind}.png" for i in (3, 4) for kind in ("label", "plants", "rgb")]
    assert written == [p for i in (3, 4) for p in scene_paths(tmp_path, i)]
    tray = generate_tray(rosette_rng(5, 4), grid=(1, 2), cell=64)
    np.testing.assert_array_equal(read_rgb(tmp_path / "scene00004_rgb.png"), tray.image)
    np.testing.assert_array_equal(read_rgb(tmp_path / "scene00004_label.png"), tray.label)
    plants = read_label(tmp_path / "scene00004_plants.png")  # a palette PNG: its index
    assert plants.dtype == np.uint8
    np.testing.assert_array_equal(plants, tray.plants)
    # A rerun writes nothing; a missing file is written again, the same bytes.
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    content = (tmp_path / "scene00003_plants.png").read_bytes()
    assert write_scenes(tmp_path, 2, seed=5, grid=(1, 2), start=3, progress=False, size=64) == []
    (tmp_path / "scene00003_plants.png").unlink()
    assert write_scenes(tmp_path, 2, seed=5, grid=(1, 2), start=3, progress=False, size=64) == [
        tmp_path / "scene00003_plants.png"]
    assert (tmp_path / "scene00003_plants.png").read_bytes() == content
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name != "scene00003_plants.png"} == \
        {name: stamp for name, stamp in stamps.items() if name != "scene00003_plants.png"}


def test_dishes_same_bytes_with_one_or_two_workers(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    write_scenes(one, 2, seed=1, scene="dish", size=256, progress=False)
    write_scenes(two, 2, seed=1, scene="dish", size=256, workers=2, progress=False)
    names = sorted(os.listdir(one))
    assert len(names) == 6 and sorted(os.listdir(two)) == names
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    np.testing.assert_array_equal(read_label(one / "scene00001_plants.png"),
                                  generate_dish(rosette_rng(1, 1), size=256).plants)


def test_prepare_and_leaf_dataset_read_scenes_and_leave_the_plant_files_alone(tmp_path):
    raw = tmp_path / "raw"
    write_scenes(raw, 2, seed=2, grid=(1, 2), progress=False, size=64)
    scenes = [generate_tray(rosette_rng(2, i), grid=(1, 2), cell=64) for i in range(2)]
    result = prepare_dataset(raw, tmp_path / "prepared", progress=False)
    assert sorted(result.prepared) == ["scene00000", "scene00001"]
    assert result.problems == [] and result.ignored_files == 2  # the two _plants.png
    for i, scene in enumerate(scenes):
        sample = next((tmp_path / "prepared").glob(f"*/scene{i:05d}"))
        assert len(list((sample / "masks").iterdir())) == scene.num_leaves
    dataset = LeafDataset()
    assert dataset.load_color_masks(raw) == 2
    dataset.prepare()
    for image_id in dataset.image_ids:
        scene = scenes[int(dataset.image_info[image_id]["id"][-5:])]
        masks, class_ids = dataset.load_mask(image_id)
        assert masks.shape == scene.leaf_ids.shape + (scene.num_leaves,) and len(class_ids) == scene.num_leaves
        np.testing.assert_array_equal(masks.any(axis=2), scene.leaf_ids > 0)
        np.testing.assert_array_equal(dataset.load_image(image_id), scene.image)


# ---------------------------------------------------------------------------------------------
# Command line and errors
# ---------------------------------------------------------------------------------------------

def test_command_line_scenes(tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert main(["--out", str(tmp_path / "trays"), "--count", "2", "--scene", "tray", "--grid", "1x2", "--size", "64",
                 "--seed", "3", "--contact-sheet", str(sheet), "--quiet"]) == 0
    assert len(list((tmp_path / "trays").glob("scene*_plants.png"))) == 2 and sheet.exists()
    np.testing.assert_array_equal(read_rgb(tmp_path / "trays" / "scene00001_rgb.png"),
                                  generate_tray(rosette_rng(3, 1), grid=(1, 2), cell=64).image)
    assert main(["--out", str(tmp_path / "classic"), "--count", "1", "--scene", "tray", "--grid", "1x1", "--size", "64",
                 "--style", "classic", "--only", "dark", "--quiet"]) == 2  # families need the random style
    assert "random style only" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "dark"), "--count", "1", "--scene", "tray", "--grid", "1x1", "--size", "64",
                 "--only", "dark", "--quiet"]) == 0
    np.testing.assert_array_equal(read_rgb(tmp_path / "dark" / "scene00000_label.png"),
                                  generate_tray(rosette_rng(0, 0), grid=(1, 1), cell=64, families={"dark": True}).label)
    assert main(["--out", str(tmp_path / "dish"), "--count", "1", "--scene", "dish", "--size", "256", "--quiet"]) == 0
    np.testing.assert_array_equal(read_rgb(tmp_path / "dish" / "scene00000_label.png"),
                                  generate_dish(rosette_rng(0, 0), size=256).label)
    assert main(["--out", str(tmp_path / "talk"), "--count", "1", "--scene", "dish", "--size", "256"]) == 0
    assert "wrote 3 files" in capsys.readouterr().out


def test_command_line_rosettes_unchanged(tmp_path):
    assert main(["--out", str(tmp_path / "cli"), "--count", "2", "--size", "64", "--seed", "2", "--quiet"]) == 0
    write_dataset(tmp_path / "api", 2, seed=2, size=64, style="random", progress=False)
    for name in sorted(os.listdir(tmp_path / "api")):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes(), name
    np.testing.assert_array_equal(read_rgb(tmp_path / "cli" / "plant00000_rgb.png"),
                                  generate_rosette(rosette_rng(2, 0), 64, style="random").image)


@pytest.mark.parametrize("argv, message", [
    (["--scene", "dish", "--grid", "2x3"], "--grid is for --scene tray, not --scene dish"),
    (["--grid", "2x3"], "--grid is for --scene tray, not --scene rosette"),
    (["--scene", "tray", "--clutter", "0.5"], "--clutter 0.5 is for --scene rosette"),
    (["--scene", "dish", "--style", "classic"], "--style is for --scene rosette or tray, not --scene dish"),
    (["--scene", "dish", "--only", "dark"], "--only is for --scene rosette or tray, not --scene dish"),
    (["--scene", "tray", "--size", "20"], "cell 20"),
    (["--scene", "dish", "--size", "40"], "size 40"),
])
def test_command_line_errors_name_the_bad_value(tmp_path, capsys, argv, message):
    assert main(["--out", str(tmp_path / "x"), "--count", "1", "--quiet"] + argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


@pytest.mark.parametrize("argv, message", [
    (["--scene", "tray", "--grid", "0x4"], "argument --grid: a tray grid is ROWSxCOLS with positive integers, "
                                           "e.g. 3x4; got '0x4'"),
    (["--scene", "tray", "--grid", "abc"], "got 'abc'"),
    (["--scene", "forest"], "argument --scene: invalid choice: 'forest'"),
])
def test_command_line_parse_errors_exit_2_naming_the_value(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "x"), "--count", "1"] + argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_library_errors_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"grid must be \(rows, columns\).*\(0, 4\)"):
        generate_tray(0, grid=(0, 4))
    with pytest.raises(ValueError, match="style must be one of .* 'fancy'"):
        generate_tray(0, style="fancy")
    with pytest.raises(ValueError, match=r"jitter .* got 0.5"):
        generate_tray(0, cell=64, jitter=0.5)
    with pytest.raises(ValueError, match=r"seedlings\[1\] <= 60, got \(5, 2\)"):
        generate_dish(0, size=256, seedlings=(5, 2))
    with pytest.raises(ValueError, match="seedlings"):
        generate_dish(0, size=256, seedlings=(1, 61))
    with pytest.raises(ValueError, match="scene must be one of .* 'forest'"):
        write_scenes(tmp_path, 1, scene="forest")
    with pytest.raises(ValueError, match="grid is for trays, not dishes; got grid=.2, 2."):
        write_scenes(tmp_path, 1, scene="dish", grid=(2, 2))
    with pytest.raises(ValueError, match="style is for trays"):
        write_scenes(tmp_path, 1, scene="dish", style="random")
    with pytest.raises(ValueError, match="'3x0'"):
        parse_grid("3x0")
    assert parse_grid(" 3X4 ") == (3, 4)
    assert list(tmp_path.iterdir()) == []
