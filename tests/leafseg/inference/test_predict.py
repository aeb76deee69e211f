"""leafseg predict end to end on the tiny trained model: inputs, label PNGs, overlays, CSVs, COCO.

One command run (``predicted``) over a folder of generated images in several formats, a
truncated PNG, a text file named .png, a text file and label images (``*_label.png``,
``*_fg.png``), plus a glob pattern and a missing path; the tests read what it wrote and compare
it with the Keras model's own detections. A second folder of ``*_rgb.png`` + ``*_label.png``
pairs goes through predict and back into ``leafseg prepare``.
"""
import contextlib
import csv
import io
import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from leafseg.models import loading

from leafseg.inference import predict
from leafseg.cli import predict as predict_command
from leafseg.data.masks import DEFAULT_MIN_AREA
from leafseg.data.prepare import find_samples, prepare_dataset
from leafseg.synth.rosettes import generate_rosette
from tests.tiny_trained import inference_model, trained_run
from tests.toy_data import shapes_dataset

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

MM_PER_PIXEL = 0.5
MIN_SCORE = 0.6
LEAF_COLUMNS_MM = ["image", "plant", "leaf", "score", "area_mm2", "bbox_y1_px", "bbox_x1_px", "bbox_y2_px", "bbox_x2_px",
                   "centroid_y_px", "centroid_x_px", "length_mm", "width_mm", "orientation_deg", "perimeter_mm"]
PLANT_COLUMNS_MM = ["image", "file", "plant", "bbox_y1_px", "bbox_x1_px", "bbox_y2_px", "bbox_x2_px", "centroid_y_px",
                    "centroid_x_px", "leaf_count", "rosette_area_mm2", "convex_hull_area_mm2", "compactness",
                    "diameter_mm"]
GOOD = ("a_shapes", "b_gray", "c_rgba", "d_large", "e_rosette", "f_extra")


def read_csv(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def write_rgb(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def model(run):
    return inference_model(run["weights"], MIN_SCORE)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of images in several formats and sizes, broken files, and one image elsewhere.

    Returns the folder, the extra folder and {name: the RGB image the model should see}.
    """
    root = tmp_path_factory.mktemp("inputs")
    folder, extra = root / "photos", root / "more"
    folder.mkdir()
    extra.mkdir()
    shapes = shapes_dataset(4, seed=1)
    images = {name: shapes.load_image(i) for i, name in enumerate(("a_shapes", "b_gray", "c_rgba", "f_extra"))}
    write_rgb(folder / "a_shapes.png", images["a_shapes"])
    gray = cv2.cvtColor(images["b_gray"], cv2.COLOR_RGB2GRAY)
    assert cv2.imwrite(str(folder / "b_gray.png"), gray)
    images["b_gray"] = np.repeat(gray[..., np.newaxis], 3, axis=-1)
    Image.fromarray(np.dstack([images["c_rgba"], np.full(images["c_rgba"].shape[:2], 200, np.uint8)]),
                    "RGBA").save(folder / "c_rgba.png")
    # Larger than the model's 64 x 64 input and not square: resized for the model, results
    # mapped back to 96 x 144.
    images["d_large"] = cv2.resize(shapes.load_image(3), (144, 96), interpolation=cv2.INTER_NEAREST)
    write_rgb(folder / "d_large.png", images["d_large"])
    images["e_rosette"] = generate_rosette(3, (90, 120)).image
    write_rgb(folder / "e_rosette.png", images["e_rosette"])
    write_rgb(extra / "f_extra.png", images["f_extra"])
    (folder / "broken.png").write_bytes((folder / "a_shapes.png").read_bytes()[:300])   # truncated PNG
    (folder / "fake.png").write_text("not an image\n")
    (folder / "header_only.png").write_bytes((folder / "a_shapes.png").read_bytes()[:8])  # the PNG signature only
    (folder / "notes.txt").write_text("measured on 2026-01-01\n")
    # Label images, not photos: skipped unless --include-labels.
    masks, _ = shapes.load_mask(0)
    label = np.zeros(masks.shape[:2] + (3,), np.uint8)
    for k in range(masks.shape[-1]):
        label[masks[..., k]] = (60 * (k + 1), 255 - 50 * k, 40)
    write_rgb(folder / "a_shapes_label.png", label)
    assert cv2.imwrite(str(folder / "a_shapes_fg.png"), masks.any(axis=-1).astype(np.uint8) * 255)
    return types.SimpleNamespace(folder=folder, extra=extra, images=images, root=root)


@pytest.fixture(scope="module")
def predicted(run, inputs, tmp_path_factory):
    """``leafseg predict`` on the folder, a glob and a missing file, in mm, with COCO JSON.

    The weights are given as a checkpoint file: the config comes from the config.yaml beside it.
    """
    out = tmp_path_factory.mktemp("predicted")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = predict_command.main([str(inputs.folder), str(inputs.extra / "*.png"), str(inputs.root / "missing.png"),
                               "--weights", run["weights"], "--out", str(out), "--mm-per-pixel", str(MM_PER_PIXEL),
                               "--min-score", str(MIN_SCORE), "--coco-json"])
    return types.SimpleNamespace(status=status, out=out, stdout=stdout.getvalue(), stderr=stderr.getvalue())


@pytest.fixture(scope="module")
def in_pixels(model, inputs, tmp_path_factory):
    """The library call on the same inputs with the test's own model (same min score), in pixels."""
    out = tmp_path_factory.mktemp("pixels")
    report = predict.predict_images(model, [inputs.folder, inputs.extra / "*.png"], out, progress=False)
    return types.SimpleNamespace(report=report, out=out)


def detections(model, image):
    """The model's detections, sorted by descending score (the order leaf ids follow)."""
    result = model.detect([image])[0]
    order = np.argsort(-result["scores"], kind="stable")
    return {name: value[..., order] if name == "masks" else value[order] for name, value in result.items()}


# ------------------------------------------------------------------------------------ inputs

def test_good_images_are_predicted_and_bad_inputs_reported_by_name(predicted, inputs):
    assert predicted.status == 0, predicted.stderr
    for name in GOOD:
        assert (predicted.out / "overlays" / f"{name}_overlay.png").is_file(), name
        assert (predicted.out / "labels" / f"{name}_label.png").is_file(), name
    # Reported by name, skipped, the rest went on.
    assert f"skipped {inputs.folder / 'broken.png'}: cannot decode" in predicted.stdout
    assert "truncated or corrupt" in predicted.stdout
    assert f"skipped {inputs.folder / 'header_only.png'}: cannot decode this PNG file; truncated or corrupt" \
        in predicted.stdout
    # A text file named .png is no image; imageio's plugin advice would mislead.
    assert f"skipped {inputs.folder / 'fake.png'}: not an image file" in predicted.stdout
    assert "pip install" not in predicted.stdout + predicted.stderr
    # Label images are not segmented as photos, and the summary says so.
    assert "skipped 2 label images (a_shapes_fg.png, a_shapes_label.png)" in predicted.stdout
    assert "--include-labels" in predicted.stdout
    assert f"skipped {inputs.root / 'missing.png'}: no such file or folder" in predicted.stdout
    assert "ignored 1 file of the input folders without an image suffix: notes.txt" in predicted.stdout
    assert f"predicted {len(GOOD)} images" in predicted.stdout
    assert {p.name for p in (predicted.out / "labels").iterdir()} == {f"{name}_label.png" for name in GOOD}
    assert {p.name for p in (predicted.out / "overlays").iterdir()} == {f"{name}_overlay.png" for name in GOOD}
    # Atomic writes leave no temporary files behind (.predict is the run's own state: leafseg.inference.results).
    assert [p.name for p in predicted.out.rglob(".*")] == [".predict"]


def test_nothing_predicted_exits_non_zero(model, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(predict_command, "load_inference_model", lambda *args, **kwargs: (model, "test", Path("w")))
    status = predict_command.main([str(inputs.folder / "broken.png"), str(inputs.folder / "fake.png"),
                           "--weights", "w", "--out", str(tmp_path), "--quiet"])
    assert status == 1
    assert "no image could be predicted" in capsys.readouterr().err
    assert not (tmp_path / "leaves.csv").exists()


def test_label_suffix_must_name_a_png(tmp_path, capsys):
    status = predict_command.main([str(tmp_path), "--weights", "w", "--out", str(tmp_path / "out"), "--label-suffix", "_m.tif"])
    assert status == 2
    assert "--label-suffix must end with .png" in capsys.readouterr().err


def test_find_inputs_expands_folders_globs_and_drops_duplicates(inputs):
    files, problems, ignored, labels = predict.find_inputs(
        [inputs.folder, inputs.folder / "a_shapes.png", str(inputs.root / "**" / "f_*.png"),
         str(inputs.root / "nothing_*.png")])
    assert [p.name for p in files] == ["a_shapes.png", "b_gray.png", "broken.png", "c_rgba.png", "d_large.png",
                                       "e_rosette.png", "fake.png", "header_only.png", "f_extra.png"]
    assert problems == [(str(inputs.root / "nothing_*.png"), "no file matches this pattern")]
    assert [p.name for p in ignored] == ["notes.txt"]
    assert [p.name for p in labels] == ["a_shapes_fg.png", "a_shapes_label.png"]
    # Named explicitly (as a shell expands raw/*.png) they are still labels; --include-labels keeps them.
    files, _, _, labels = predict.find_inputs([inputs.folder / "a_shapes_label.png"])
    assert files == [] and labels == [inputs.folder / "a_shapes_label.png"]
    files, _, _, labels = predict.find_inputs([inputs.folder], label_suffix=None)
    assert {"a_shapes_label.png", "a_shapes_fg.png"} <= {p.name for p in files} and labels == []
    # Another label suffix, as prepare's --label-suffix.
    assert predict.is_label_file("x_mask.png", "_mask.png") and not predict.is_label_file("x_label.png", "_mask.png")


def test_read_image_converts_gray_and_rgba_to_rgb_and_names_broken_files(inputs):
    for name in ("b_gray", "c_rgba", "d_large"):
        image = predict.read_image(inputs.folder / f"{name}.png")
        assert image.dtype == np.uint8 and image.shape == inputs.images[name].shape
        np.testing.assert_array_equal(image, inputs.images[name])
    with pytest.raises(predict.ImageReadError, match="broken.png: cannot decode"):
        predict.read_image(inputs.folder / "broken.png")
    with pytest.raises(predict.ImageReadError) as error:
        predict.read_image(inputs.folder / "fake.png")
    assert str(error.value) == f"{inputs.folder / 'fake.png'}: not an image file (its content is in no image format)"
    with pytest.raises(predict.ImageReadError, match="header_only.png: cannot decode this PNG file"):
        predict.read_image(inputs.folder / "header_only.png")


# ------------------------------------------------------------------------------------ labels

def test_label_png_is_a_palette_png_whose_ids_are_the_visible_detections(predicted, model, inputs):
    _, leaves = read_csv(predicted.out / "leaves.csv")
    total = 0
    for name in GOOD:
        with Image.open(predicted.out / "labels" / f"{name}_label.png") as png:
            assert png.mode == "P"
            label = np.array(png)
        image = inputs.images[name]
        assert label.shape == image.shape[:2]
        result = detections(model, image)
        rows = [row for row in leaves if row["image"] == name]
        ids = np.unique(label[label > 0])
        np.testing.assert_array_equal(ids, np.arange(1, len(rows) + 1))
        # Leaf k is the k-th detection, in descending score, that kept a visible pixel: its pixels
        # lie in that detection's mask, and no detection scoring higher covers them.
        kept = [k for k in range(len(result["scores"]))
                if np.any(result["masks"][..., k] & ~result["masks"][..., :k].any(axis=-1))]
        assert len(kept) == len(rows)
        assert all(float(row["score"]) >= MIN_SCORE for row in rows)
        for leaf, k in enumerate(kept, start=1):
            pixels = label == leaf
            np.testing.assert_array_equal(pixels, result["masks"][..., k] & ~result["masks"][..., :k].any(axis=-1))
            assert float(rows[leaf - 1]["score"]) == pytest.approx(result["scores"][k], abs=5e-5)  # 4 decimals
            assert int(rows[leaf - 1]["leaf"]) == leaf
        np.testing.assert_array_equal(label > 0, result["masks"].any(axis=-1))
        total += len(rows)
    assert total > len(GOOD), "the tiny model should find several leaves in most images"


def test_visible_leaves_by_plant_then_score_with_ties_and_hidden_detections():
    """Each pixel goes to the highest score covering it (a tie: the leaf listed first); leaves are
    listed by plant, then descending score, then detection order; a detection hidden everywhere
    is dropped. With boxes that hold the masks and with boxes that do not; the stack equals the label."""
    rng = np.random.default_rng(11)
    n, height, width = 9, 30, 40
    masks = np.zeros((height, width, n), bool)
    rois = np.zeros((n, 4), np.int32)
    for k in range(n):
        y1, x1 = rng.integers(0, 20), rng.integers(0, 30)
        y2, x2 = y1 + rng.integers(4, 11), x1 + rng.integers(4, 11)
        masks[y1:y2, x1:x2, k] = rng.random((y2 - y1, x2 - x1)) < 0.8
        rois[k] = y1, x1, y2, x2
    masks[..., 8] = masks[..., 0]  # hidden under detection 0 (a higher score)
    rois[8] = rois[0]
    scores = np.array([0.9, 0.8, 0.8, 0.95, 0.7, 0.8, 0.6, 0.99, 0.5])
    plant_ids = np.array([2, 1, 2, 1, 1, 2, 2, 3, 2])
    listed = sorted(range(n), key=lambda k: (plant_ids[k], -scores[k], k))
    expected = np.zeros((height, width), int)
    for y in range(height):
        for x in range(width):
            covering = [k for k in listed if masks[y, x, k]]
            if covering:
                expected[y, x] = max(covering, key=lambda k: (scores[k], -listed.index(k))) + 1
    kept = [k for k in listed if np.any(expected == k + 1)]
    assert 8 not in kept and len(kept) == n - 1
    renumber = np.zeros(n + 1, int)
    renumber[np.array(kept) + 1] = np.arange(1, len(kept) + 1)
    result = {"masks": masks, "scores": scores, "class_ids": np.arange(n) + 1, "rois": rois, "plant_ids": plant_ids}
    for given in (result, {**result, "rois": np.zeros_like(rois)}):  # boxes that do not hold the masks
        label, visible, details = predict.visible_leaves(given)
        np.testing.assert_array_equal(label, renumber[expected])
        np.testing.assert_array_equal(visible, label[..., None] == np.arange(1, len(kept) + 1))
        np.testing.assert_array_equal(details["class_ids"], np.array(kept) + 1)
        np.testing.assert_array_equal(details["plant_ids"], plant_ids[kept])
        np.testing.assert_array_equal(details["rois"], given["rois"][kept])
        label_only, details_only = predict.visible_label(given)
        np.testing.assert_array_equal(label_only, label)
        np.testing.assert_array_equal(details_only["scores"], scores[kept])


def test_a_photograph_is_one_plant_on_its_leaves(predicted):
    """Photographs no larger than 3 x the model go through whole: each is plant "1", its plant
    label 1 on every leaf pixel and 0 elsewhere, one plants.csv row."""
    _, leaves = read_csv(predicted.out / "leaves.csv")
    _, plants = read_csv(predicted.out / "plants.csv")
    assert [(row["image"], row["plant"]) for row in plants] == [(name, "1") for name in GOOD]
    assert {row["plant"] for row in leaves} == {"1"}
    for name in GOOD:
        label = np.array(Image.open(predicted.out / "labels" / f"{name}_label.png"))
        plant = np.array(Image.open(predicted.out / "plants" / f"{name}_plants.png"))
        np.testing.assert_array_equal(plant, (label > 0).astype(plant.dtype))


# ------------------------------------------------------------------------------------ tables

def test_csv_columns_and_units_in_mm_and_in_pixels(predicted, in_pixels):
    columns, leaves_mm = read_csv(predicted.out / "leaves.csv")
    assert columns == LEAF_COLUMNS_MM
    columns, plants_mm = read_csv(predicted.out / "plants.csv")
    assert columns == PLANT_COLUMNS_MM
    columns, leaves_px = read_csv(in_pixels.out / "leaves.csv")
    assert columns == [c.replace("_mm2", "_px").replace("_mm", "_px") for c in LEAF_COLUMNS_MM]
    columns, plants_px = read_csv(in_pixels.out / "plants.csv")
    assert columns == [c.replace("_mm2", "_px").replace("_mm", "_px") for c in PLANT_COLUMNS_MM]

    assert [row["image"] for row in plants_mm] == list(GOOD)
    assert len(leaves_mm) == len(leaves_px) > 0
    for mm, px in zip(leaves_mm, leaves_px):
        assert (mm["image"], mm["leaf"], mm["bbox_y1_px"], mm["centroid_x_px"]) == \
               (px["image"], px["leaf"], px["bbox_y1_px"], px["centroid_x_px"])
        # Pixel counts are exact; lengths are rounded to 0.01 px (0.005 mm here, written with 3 decimals).
        assert float(mm["area_mm2"]) == int(px["area_px"]) * MM_PER_PIXEL ** 2
        assert float(mm["length_mm"]) == pytest.approx(float(px["length_px"]) * MM_PER_PIXEL, abs=0.0051)
        assert float(mm["width_mm"]) == pytest.approx(float(px["width_px"]) * MM_PER_PIXEL, abs=0.0051)
        assert mm["score"] == px["score"]
    for mm, px in zip(plants_mm, plants_px):
        assert float(mm["rosette_area_mm2"]) == int(px["rosette_area_px"]) * MM_PER_PIXEL ** 2
        # The hull area is a multiple of half a pixel: exact in both units.
        assert float(mm["convex_hull_area_mm2"]) == pytest.approx(float(px["convex_hull_area_px"]) * MM_PER_PIXEL ** 2,
                                                                  abs=0.0051)
        assert mm["leaf_count"] == px["leaf_count"]


def test_csv_values_describe_the_label_pixels(predicted, in_pixels, inputs):
    _, leaves = read_csv(in_pixels.out / "leaves.csv")
    _, plants = read_csv(in_pixels.out / "plants.csv")
    for plant in plants:
        label = np.array(Image.open(in_pixels.out / "labels" / f"{plant['image']}_label.png"))
        rows = [row for row in leaves if row["image"] == plant["image"]]
        assert int(plant["leaf_count"]) == len(rows) == label.max()
        assert float(plant["rosette_area_px"]) == np.count_nonzero(label)
        assert Path(plant["file"]).stem == plant["image"]
        for row in rows:
            pixels = label == int(row["leaf"])
            ys, xs = np.nonzero(pixels)
            assert float(row["area_px"]) == pixels.sum()
            assert [int(row[k]) for k in ("bbox_y1_px", "bbox_x1_px", "bbox_y2_px", "bbox_x2_px")] == \
                   [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
            np.testing.assert_allclose([float(row["centroid_y_px"]), float(row["centroid_x_px"])],
                                       [ys.mean(), xs.mean()], atol=0.005)  # rounded to 0.01 px
            assert float(row["length_px"]) >= float(row["width_px"]) >= 0
            assert 0 <= float(row["orientation_deg"]) < 180


# Decimals each column may have (predict's rounding), for the mm run at 0.5 mm/px and in pixels.
DECIMALS = {"leaf_count": 0, "score": 4, "compactness": 4, "orientation_deg": 2, "centroid_y_px": 2, "centroid_x_px": 2,
            "area_px": 0, "rosette_area_px": 0, "convex_hull_area_px": 1, "length_px": 2, "width_px": 2,
            "perimeter_px": 2, "diameter_px": 2, "area_mm2": 2, "rosette_area_mm2": 2, "convex_hull_area_mm2": 2,
            "length_mm": 3, "width_mm": 3, "perimeter_mm": 3, "diameter_mm": 3}


def test_csv_numbers_carry_no_float_noise(predicted, in_pixels):
    checked = set()
    for out in (predicted.out, in_pixels.out):
        for table in ("leaves.csv", "plants.csv"):
            columns, rows = read_csv(out / table)
            assert rows
            for row in rows:
                for column, text in row.items():
                    if column in ("image", "file", "leaf", "plant") or column.startswith("bbox_"):
                        assert "." not in text or column == "file", (table, column, text)
                        continue
                    assert re.fullmatch(r"-?\d+(\.\d+)?|nan", text), (table, column, text)
                    decimals = len(text.split(".")[1]) if "." in text else 0
                    assert decimals <= DECIMALS[column], (table, column, text)
                    checked.add(column)
    assert checked == set(DECIMALS)
    # Values really are rounded, not merely short: e.g. some score needs its 4 decimals.
    _, leaves = read_csv(in_pixels.out / "leaves.csv")
    assert any(len(row["score"].split(".")[1]) == 4 for row in leaves)


def test_predicted_labels_go_back_into_prepare(model, tmp_path):
    """A folder of *_rgb.png + *_label.png pairs: the photos are predicted, the labels skipped, and
    the predicted labels, put beside the photos, are paired by leafseg prepare: a loop."""
    raw = tmp_path / "raw"
    raw.mkdir()
    shapes = shapes_dataset(3, seed=3)
    for i in shapes.image_ids:
        write_rgb(raw / f"plant{i:05d}_rgb.png", shapes.load_image(i))
        masks, _ = shapes.load_mask(i)
        write_rgb(raw / f"plant{i:05d}_label.png",
                  np.stack([masks[..., k] * (80 * (k + 1)) for k in range(3)], axis=-1).astype(np.uint8))
    report = predict.predict_images(model, [raw], tmp_path / "out", progress=False)
    assert [name for _, name, _ in report.predicted] == ["plant00000", "plant00001", "plant00002"]
    assert [p.name for p in report.labels] == [f"plant{i:05d}_label.png" for i in range(3)]
    assert "skipped 3 label images" in report.summary()
    _, plants = read_csv(tmp_path / "out" / "plants.csv")
    assert [row["image"] for row in plants] == ["plant00000", "plant00001", "plant00002"]
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == \
        [f"plant{i:05d}_label.png" for i in range(3)]

    corrected = tmp_path / "corrected"
    corrected.mkdir()
    for path in raw.glob("*_rgb.png"):
        shutil.copy(path, corrected / path.name)
    for path in (tmp_path / "out" / "labels").iterdir():
        shutil.copy(path, corrected / path.name)
    samples, problems, _ = find_samples(corrected)
    assert problems == []
    assert [(s.id, s.image.name, s.label.name) for s in samples] == \
        [(f"plant{i:05d}", f"plant{i:05d}_rgb.png", f"plant{i:05d}_label.png") for i in range(3)]
    result = prepare_dataset(corrected, tmp_path / "prepared", workers=1, progress=False)
    _, leaves = read_csv(tmp_path / "out" / "leaves.csv")
    # prepare drops regions under its --min-area (5 px), noise to it.
    counts = {row["image"]: sum(1 for leaf in leaves if leaf["image"] == row["image"]
                                and int(leaf["area_px"]) >= DEFAULT_MIN_AREA) for row in plants}
    assert sum(counts.values()) > 0
    _, manifest = read_csv(result.manifest)
    # Each prepared sample has the leaves predict found (a label without leaves is reported as such).
    assert {row["id"]: int(row["leaf_count"]) for row in manifest} == {k: v for k, v in counts.items() if v}
    assert {p.path.name for p in result.problems} == {f"{k}_label.png" for k, v in counts.items() if not v}


# ------------------------------------------------------------------------------ COCO, overlays

def test_coco_json_loads_with_pycocotools_and_matches_the_labels(predicted, inputs):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(predicted.out / "predictions_coco.json"))
    _, leaves = read_csv(predicted.out / "leaves.csv")
    assert len(coco.getAnnIds()) == len(leaves)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["leaf"]
    images = coco.loadImgs(coco.getImgIds())
    assert [image["name"] for image in images] == list(GOOD)
    for image in images:
        label = np.array(Image.open(predicted.out / "labels" / f"{image['name']}_label.png"))
        assert (image["height"], image["width"]) == label.shape
        assert Path(image["file_name"]).stem == image["name"]
        assert image["file_name"] == Path(image["path"]).name  # base name: what CVAT and Label Studio match
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        rows = [row for row in leaves if row["image"] == image["name"]]
        assert len(annotations) == len(rows)
        for ann, row in zip(annotations, rows):
            assert ann["leaf_id"] == int(row["leaf"])
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), label == ann["leaf_id"])
            assert ann["area"] == np.count_nonzero(label == ann["leaf_id"])
            assert ann["score"] == pytest.approx(float(row["score"]), abs=5e-5)  # the CSV's has 4 decimals
            assert ann["bbox"] == list(mask_utils.toBbox(coco.annToRLE(ann)))


def test_overlay_colours_each_leaf_and_leaves_the_background(predicted, inputs):
    for name in GOOD:
        overlay = cv2.imread(str(predicted.out / "overlays" / f"{name}_overlay.png"))[..., ::-1]
        label = np.array(Image.open(predicted.out / "labels" / f"{name}_label.png"))
        image = inputs.images[name]
        assert overlay.shape == image.shape
        if label.max() == 0:
            np.testing.assert_array_equal(overlay, image)
            continue
        changed = np.any(overlay != image, axis=-1)
        assert changed[label > 0].mean() > 0.9, name
        # Far from every leaf (outlines and id texts are drawn near the leaves) nothing changes.
        near = cv2.dilate((label > 0).astype(np.uint8), np.ones((25, 25), np.uint8)) > 0
        assert not changed[~near].any(), name


# ---------------------------------------------------------------------------------- commands

def test_script_and_cli_entry_points():
    root = Path(__file__).resolve().parents[3]
    help_text = subprocess.run([sys.executable, str(root / "scripts" / "predict.py"), "--help"], capture_output=True,
                               text=True, check=True, cwd=root).stdout
    for option in ("--weights", "--out", "--config", "--mm-per-pixel", "--coco-json", "--min-score", "--include-labels",
                   "--label-suffix", "--plants", "--grid"):
        assert option in help_text
    from leafseg.cli import COMMANDS

    assert COMMANDS["predict"][0] == "leafseg.cli.predict"


@pytest.mark.parametrize("argv,coco_json,inputs", [
    (["a.png"], None, ["a.png"]),
    (["a.png", "--coco-json"], "rle", ["a.png"]),
    (["--coco-json", "polygons", "a.png"], "polygons", ["a.png"]),
    (["--coco-json", "rle", "photos/", "b.png"], "rle", ["photos/", "b.png"]),
    (["--coco-json", "photos/", "b.png"], "rle", ["photos/", "b.png"]),  # as before the option took a value
    (["--coco-json", "photos/"], "rle", ["photos/"]),
])
def test_coco_json_takes_a_format_and_older_command_lines_still_work(argv, coco_json, inputs):
    args = predict_command.build_parser().parse_args(argv)
    assert args.coco_json == coco_json
    assert [*args.coco_json_inputs, *args.inputs] == inputs


def test_no_input_is_a_usage_error(capsys):
    assert predict_command.main(["--coco-json", "polygons"]) == 2
    assert "predict: error: no INPUT given" in capsys.readouterr().err


def test_weights_from_a_file_a_run_folder_or_a_logs_folder(tmp_path):
    logs = tmp_path / "logs"
    older, newer = logs / "leaf20261204T1200", logs / "leaf20261204T1300"
    for path in (older / "mask_rcnn_leaf_0001.weights.h5", older / "mask_rcnn_leaf_0002.weights.h5",
                 newer / "mask_rcnn_leaf_0001.weights.h5"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (logs / "notes").mkdir()
    assert loading.resolve_weights(older / "mask_rcnn_leaf_0001.weights.h5") == older / "mask_rcnn_leaf_0001.weights.h5"
    assert loading.resolve_weights(older) == older / "mask_rcnn_leaf_0002.weights.h5"      # a run folder: its newest
    assert loading.resolve_weights(logs) == newer / "mask_rcnn_leaf_0001.weights.h5"       # --logs: the newest run's
    with pytest.raises(FileNotFoundError, match="notes holds no checkpoint"):
        loading.resolve_weights(logs / "notes")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        loading.resolve_weights(logs / "missing.weights.h5")


def test_the_summary_counts_in_words_that_agree():
    """Issue 26, 10: "predicted 1 image (1 leaf)", never "1 images" or "1 folder files"."""
    from leafseg.inference.predict import PredictReport

    report = PredictReport(predicted=[("a", "a.png", 1)], ignored=[Path("notes.txt")], labels=[Path("a_label.png")])
    text = report.summary()
    assert text.startswith("predicted 1 image (1 leaf), skipped 0 (and 1 label image)")
    assert "ignored 1 file of the input folders" in text and "1 images" not in text
    two = PredictReport(predicted=[("a", "a.png", 2), ("b", "b.png", 3)]).summary()
    assert two.startswith("predicted 2 images (5 leaves)")


def _photos_in_subfolders(root, inputs):
    """photos/dish_a/p1.png, photos/dish_a/p2.png and photos/dish_b/p1.png: nothing in photos/ itself."""
    for rel in ("dish_a/p1.png", "dish_a/p2.png", "dish_b/p1.png"):
        (root / "photos" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(inputs.folder / "a_shapes.png", root / "photos" / rel)
    (root / "photos" / ".hidden").mkdir()
    shutil.copyfile(inputs.folder / "a_shapes.png", root / "photos" / ".hidden" / "x.png")
    return root / "photos"


def test_a_folder_of_subfolders_is_refused_before_the_model_is_loaded(inputs, tmp_path, monkeypatch, capsys):
    """Issue 26, 9: the subfolders are named with their images, and --recursive is suggested."""
    def no_model(*args, **kwargs):
        raise AssertionError("the model is loaded before the inputs are checked")

    monkeypatch.setattr(predict_command, "load_inference_model", no_model)
    photos = _photos_in_subfolders(tmp_path, inputs)
    status = predict_command.main([str(photos), "--weights", "w", "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert f"{photos} holds no image itself, but its subfolders do: dish_a/ (2 images), dish_b/ (1 image)" in err
    assert "--recursive" in err and ".hidden" not in err
    assert not (tmp_path / "out").exists()


def test_recursive_predicts_subfolders_and_outputs_keep_them(model, inputs, tmp_path, monkeypatch, capsys):
    """Issue 26, 9: same-named photographs of two subfolders do not clash; the CSVs name the relative path."""
    monkeypatch.setattr(predict_command, "load_inference_model", lambda *args, **kwargs: (model, "test", Path("w")))
    photos = _photos_in_subfolders(tmp_path, inputs)
    out = tmp_path / "out"
    status = predict_command.main([str(photos), "--recursive", "--weights", "w", "--out", str(out), "--quiet"])
    assert status == 0
    for name in ("dish_a/p1", "dish_a/p2", "dish_b/p1"):
        assert (out / "overlays" / f"{name}_overlay.png").is_file()
        assert (out / "labels" / f"{name}_label.png").is_file()
    _, plants = read_csv(out / "plants.csv")
    assert [row["image"] for row in plants] == ["dish_a/p1", "dish_a/p2", "dish_b/p1"]
    assert plants[2]["file"] == str(photos / "dish_b" / "p1.png")
    # A rerun into the same folder finds them done.
    files, _, _, _ = predict.find_inputs([photos], recursive=True)
    assert [p.relative_to(photos).as_posix() for p in files] == ["dish_a/p1.png", "dish_a/p2.png", "dish_b/p1.png"]
    report = predict.predict_images(model, [photos], out, progress=False, recursive=True)
    assert report.resumed == 3


def test_a_rerun_says_how_many_were_predicted_before_in_words_that_agree(model, inputs, tmp_path, caplog):
    """Issue 26, 10: "1 of 1 image was predicted before", not "1 of 1 images were"."""
    source = tmp_path / "one"
    source.mkdir()
    shutil.copyfile(inputs.folder / "a_shapes.png", source / "a.png")
    predict.predict_images(model, [source], tmp_path / "out", progress=False)
    with caplog.at_level("INFO", logger="leafseg.inference.predict"):
        predict.predict_images(model, [source], tmp_path / "out", progress=False)
    assert "1 of 1 image was predicted before" in caplog.text


def test_the_runtime_is_stated_recorded_and_gives_the_same_leaves(run, inputs, tmp_path):
    """--runtime tensorflow and --runtime openvino: the first lines say which ran, the settings record
    it, and the leaves are the same (only the network's stem changes hands; issue 28)."""
    from tests.optional_packages import require

    require("openvino", "openvino")
    tables = {}
    for runtime in ("tensorflow", "openvino"):
        out = tmp_path / runtime
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = predict_command.main([str(inputs.folder), "--weights", run["weights"], "--out", str(out),
                                           "--min-score", str(MIN_SCORE), "--runtime", runtime, "--no-report"])
        assert status == 0, stderr.getvalue()
        first = {"tensorflow": "runtime TensorFlow", "openvino": "runtime OpenVINO"}[runtime]
        assert f"{first} " in stderr.getvalue() and ": asked for" in stderr.getvalue()
        settings = json.loads((out / ".predict" / "settings.json").read_text())
        assert settings["runtime"] == {"tensorflow": "tensorflow", "openvino": "openvino f32"}[runtime]
        tables[runtime] = [(row["image"], row["leaf"], row["area_mm2"] if "area_mm2" in row else row["area_px"])
                           for row in read_csv(out / "leaves.csv")[1]]
    assert tables["openvino"] == tables["tensorflow"] and tables["tensorflow"]
    # A rerun into the TensorFlow folder with OpenVINO is refused, naming the way back.
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        status = predict_command.main([str(inputs.folder), "--weights", run["weights"], "--out",
                                       str(tmp_path / "tensorflow"), "--min-score", str(MIN_SCORE),
                                       "--runtime", "openvino", "--no-report"])
    assert status == 2 and "--runtime tensorflow to go on as before" in stderr.getvalue()
