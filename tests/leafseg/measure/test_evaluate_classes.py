"""``leafseg evaluate`` on a data set of several classes (issue 26, item 5): figures per class,
each class alone; a one-class set's outputs unchanged; a model of other classes refused. A
stand-in model with fixed detections, except for the command's check (a built, untrained model)."""
import contextlib
import csv
import io
import json
import numpy as np
import pytest
from PIL import Image

from leafseg.cli import evaluate as evaluate_command
from leafseg.measure import evaluate

SIZE = 64


def _square(y, x, side=8):
    mask = np.zeros((SIZE, SIZE), bool)
    mask[y:y + side, x:x + side] = True
    return mask


# Truth: image a has a leaf A and a stem B; image b has leaves C and D.
A, B, C, D, E = _square(4, 40), _square(40, 40), _square(40, 4), _square(4, 4), _square(24, 24)
TRUTH = {"a": ([A, B], ["leaf", "stem"]), "b": ([C, D], ["leaf", "leaf"])}
# Detections: a: A as a leaf, B as a leaf (the wrong class); b: C, D missed, an invented stem E.
DETECTIONS = {"a": ([A, B], [1, 1], [0.9, 0.8]), "b": ([C, E], [1, 2], [0.9, 0.6])}


def write_set(root, classes=("leaf", "stem")):
    if classes is not None:
        root.mkdir(parents=True)
        (root / "classes.json").write_text(json.dumps(list(classes)))
    for name, (masks, names) in TRUTH.items():
        folder = root / "val" / name
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        image = np.full((SIZE, SIZE, 3), 40, np.uint8)
        image[..., 0] = 40 + (name == "b")  # tells the stand-in which image it was given
        Image.fromarray(image).save(folder / "images" / f"{name}.png")
        for k, mask in enumerate(masks):
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{name}_{k}.png")
        (folder / "sample.json").write_text(json.dumps({"classes": names}))
    return root


class Fixed:
    """detect(): DETECTIONS of the image (told apart by its first pixel)."""

    def detect(self, images, verbose=0):
        results = []
        for image in images:
            masks, class_ids, scores = DETECTIONS["b" if image[0, 0, 0] == 41 else "a"]
            masks = np.stack(masks, axis=-1)
            rois = np.array([[ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
                             for ys, xs in (np.nonzero(masks[..., k]) for k in range(masks.shape[-1]))], np.int32)
            results.append({"rois": rois, "masks": masks, "class_ids": np.array(class_ids, np.int32),
                            "scores": np.array(scores, np.float32)})
        return results


def test_each_class_is_scored_alone(tmp_path):
    dataset = evaluate.load_eval_dataset(write_set(tmp_path / "data"), "val")
    assert dataset.class_names == ["BG", "leaf", "stem"]
    _, summary, outputs = evaluate.evaluate_dataset(Fixed(), dataset, tmp_path / "eval", gallery=0, progress=False)
    rows = {row["class"]: row for row in json.loads(outputs["metrics.json"].read_text())["per_class"]}
    leaf, stem = rows["leaf"], rows["stem"]
    assert (leaf["n_images"], leaf["gt_count"], leaf["pred_count"]) == (2, 3, 3)
    assert (stem["n_images"], stem["gt_count"], stem["pred_count"]) == (2, 1, 1)
    # Leaves: a: A found first, then B, no leaf (AP 1); b: C found, D missed (AP 0.5).
    assert leaf["ap50_mean"] == 0.75 and leaf["pooled_ap50"] == pytest.approx(2 / 3, abs=1e-4)
    # Stems: B was not found as a stem, E is no stem: nothing right.
    assert stem["ap50_mean"] == stem["pooled_ap50"] == stem["mask_AP50"] == 0.0
    # CVPPP within the class: a has one leaf too many, b one too few; a misses its stem, b invents one.
    assert (leaf["dic_mean"], leaf["abs_dic_mean"], stem["dic_mean"], stem["abs_dic_mean"]) == (0.0, 1.0, 0.0, 1.0)
    assert stem["sbd_mean"] == 0.0 and 0 < leaf["sbd_mean"] < 1
    with open(outputs["per_class.csv"], newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["class"] for row in table] == ["leaf", "stem"] and list(table[0]) == list(evaluate.CLASS_COLUMNS)
    assert float(table[0]["ap50_mean"]) == 0.75
    # The overall figures match within class too: B found only as a leaf is a miss there as well (AP 0.5 in a and b).
    assert summary["ap50_mean"] == 0.5
    printed = evaluate.format_class_table(list(rows.values()))
    assert printed.splitlines()[2].split()[:4] == ["leaf", "3", "3", "0.750"]
    assert printed.splitlines()[3].split()[:4] == ["stem", "1", "1", "0.000"]


def test_a_class_without_any_instance_has_no_figures(tmp_path):
    dataset = evaluate.load_eval_dataset(write_set(tmp_path / "data", ("leaf", "stem", "root")), "val")
    _, _, outputs = evaluate.evaluate_dataset(Fixed(), dataset, tmp_path / "eval", gallery=0, progress=False)
    root = json.loads(outputs["metrics.json"].read_text())["per_class"][2]
    assert (root["class"], root["n_images"], root["gt_count"]) == ("root", 0, 0) and root["ap50_mean"] is None
    assert evaluate.format_class_table([root]).splitlines()[2].split() == ["root", "0", "0"] + ["-"] * 6


def test_a_one_class_set_writes_no_class_figures(tmp_path):
    dataset = evaluate.load_eval_dataset(write_set(tmp_path / "data", None), "val")
    assert dataset.class_names == ["BG", "leaf"]
    _, _, outputs = evaluate.evaluate_dataset(Fixed(), dataset, tmp_path / "eval", gallery=0, progress=False)
    assert "per_class.csv" not in outputs and not (tmp_path / "eval" / "per_class.csv").exists()
    assert "per_class" not in json.loads(outputs["metrics.json"].read_text())


def test_the_command_refuses_a_model_of_other_classes(tmp_path):
    from mrcnn.model import MaskRCNN
    from tests.toy_data import ToyConfig

    weights = MaskRCNN("training", ToyConfig(), tmp_path / "logs").save_weights(tmp_path / "toy.weights.h5")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = evaluate_command.main(["--weights", str(weights), "--dataset", str(write_set(tmp_path / "data")),
                                        "--out", str(tmp_path / "eval"), "--quiet"])
    assert status == 2
    assert "evaluate: error: the model's classes ['leaf'] (ids 1.. in this order, from the config stored in " \
        in stderr.getvalue() and f"are not those of {tmp_path / 'data'}: ['leaf', 'stem']" in stderr.getvalue()


def test_the_command_prints_a_row_per_class(tmp_path, monkeypatch):
    import types
    from pathlib import Path

    model = Fixed()
    model.config = types.SimpleNamespace(NUM_CLASSES=3, CLASS_NAMES=["leaf", "stem"])
    monkeypatch.setattr(evaluate_command, "load_inference_model", lambda *args, **kwargs: (model, "test", Path("w")))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        status = evaluate_command.main(["--weights", "w", "--dataset", str(write_set(tmp_path / "data")),
                                        "--out", str(tmp_path / "eval"), "--quiet", "--gallery", "0"])
    assert status == 0
    lines = stdout.getvalue().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("class "))
    assert [line.split()[:4] for line in lines[header + 2:header + 4]] == [["leaf", "3", "3", "0.750"],
                                                                            ["stem", "1", "1", "0.000"]]
    assert "per_class.csv" in stdout.getvalue()
