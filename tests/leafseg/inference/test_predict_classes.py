"""``leafseg predict`` with a model of several classes (issue 26, item 5): leaves.csv's class
column, plants.csv's counts per class, one COCO category per class, overlays coloured by class
with a legend; a one-class model's outputs unchanged. A stand-in model with fixed detections."""
import csv
import json
import types

import numpy as np
from PIL import Image

from leafseg.inference import predict

SIZE = 128


def _square(y, x, side):
    mask = np.zeros((SIZE, SIZE), bool)
    mask[y:y + side, x:x + side] = True
    return mask


class Fixed:
    """An inference model's stand-in: every image gets the same three detections, best first:
    a leaf (10 x 10), a stem (4 x 12) and a leaf (8 x 8), apart from each other."""

    def __init__(self, class_names):
        self.config = types.SimpleNamespace(IMAGE_MAX_DIM=SIZE, NUM_CLASSES=1 + len(class_names),
                                            CLASS_NAMES=list(class_names), DETECTION_MIN_CONFIDENCE=0.5)

    def detect(self, images, verbose=0):
        masks = np.stack([_square(60, 60, 10), _square(100, 4, 4) | _square(100, 8, 4) | _square(100, 12, 4),
                          _square(60, 100, 8)], axis=-1)
        rois = np.array([[60, 60, 70, 70], [100, 4, 104, 16], [60, 100, 68, 108]], np.int32)
        result = {"rois": rois, "class_ids": np.array([1, 2, 1], np.int32),
                  "scores": np.array([0.9, 0.8, 0.7], np.float32), "masks": masks}
        return [dict(result) for _ in images]


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((SIZE, SIZE, 3), 100, np.uint8)).save(folder / f"{name}.png")
    return folder


def test_outputs_carry_the_class_of_each_detection(tmp_path):
    out = tmp_path / "out"
    report = predict.predict_images(Fixed(["leaf", "stem"]), [_photos(tmp_path)], out, coco_json="rle",
                                    progress=False)
    assert len(report.predicted) == 2
    leaves = _rows(out / "leaves.csv")
    assert [row["class"] for row in leaves] == ["leaf", "stem", "leaf"] * 2
    assert list(leaves[0])[:4] == ["image", "plant", "leaf", "class"]
    plants = _rows(out / "plants.csv")
    # leaf_count and the rosette are the leaves'; the stem is counted in a column of its own.
    assert [(row["leaf_count"], row["stem_count"], row["rosette_area_px"]) for row in plants] == [("2", "1", "164")] * 2
    document = json.loads((out / "predictions_coco.json").read_text())
    assert [(c["id"], c["name"]) for c in document["categories"]] == [(1, "leaf"), (2, "stem")]
    assert [a["category_id"] for a in document["annotations"]] == [1, 2, 1] * 2
    overlay = np.asarray(Image.open(out / "overlays" / "a_overlay.png").convert("RGB"))
    colours = predict.class_colours(2)
    assert tuple(overlay[60, 60]) == tuple(colours[0]) and tuple(overlay[100, 4]) == tuple(colours[1])  # outlines
    assert tuple(overlay[60, 100]) == tuple(colours[0])
    assert overlay[:8, :8].mean() < 100 * 0.5  # the legend's darkened box at the top left
    assert json.loads((out / ".predict" / "settings.json").read_text())["classes"] == ["leaf", "stem"]


def test_without_a_leaf_class_every_instance_is_counted(tmp_path):
    out = tmp_path / "out"
    predict.predict_images(Fixed(["stem", "root"]), [_photos(tmp_path)], out, progress=False)
    plants = _rows(out / "plants.csv")
    assert [(row["leaf_count"], row["stem_count"], row["root_count"]) for row in plants] == [("3", "2", "1")] * 2
    assert [row["class"] for row in _rows(out / "leaves.csv")][:3] == ["stem", "root", "stem"]


def test_a_one_class_model_writes_what_it_always_did(tmp_path):
    out = tmp_path / "out"
    model = Fixed(["leaf"])
    predict.predict_images(model, [_photos(tmp_path)], out, coco_json="rle", progress=False)
    leaves, plants = _rows(out / "leaves.csv"), _rows(out / "plants.csv")
    assert "class" not in leaves[0] and not any(key.endswith("_count") and key != "leaf_count" for key in plants[0])
    assert plants[0]["leaf_count"] == "3"
    document = json.loads((out / "predictions_coco.json").read_text())
    assert [(c["id"], c["name"]) for c in document["categories"]] == [(1, "leaf")]
    assert "classes" not in json.loads((out / ".predict" / "settings.json").read_text())
