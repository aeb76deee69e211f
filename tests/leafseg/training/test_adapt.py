"""leafseg adapt: pseudo-label selection on constructed views, ignore regions through the
dataset, the run folder's rules, and an adapt run of the tiny model (tests/tiny_trained.py) on
toy photographs, killed with SIGKILL while its first student trains and run again."""
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from leafseg.cli import adapt as adapt_command
from leafseg.data.dataset import LeafDataset
from leafseg.inference.tta import match_views
from leafseg.models import loading
from leafseg.models.runs import ADAPTED_WEIGHTS
from leafseg.training import adapt as A

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

REPO = Path(__file__).resolve().parents[3]
SIDE = 20


def box(y1, x1, y2, x2, side=SIDE):
    mask = np.zeros((side, side), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def result(masks, scores):
    """A Matterport result of masks [(H, W)] and their scores."""
    masks = np.stack(masks, axis=-1) if masks else np.zeros((SIDE, SIDE, 0), bool)
    return {"rois": np.zeros((masks.shape[-1], 4), np.int32), "class_ids": np.ones(masks.shape[-1], np.int32),
            "scores": np.asarray(scores, np.float32), "masks": masks}


# The identity view's leaves: A sure, B low-scored, C found by the identity alone, D under the
# low cut-off, E too small.
A_LEAF, B_LEAF, C_LEAF, D_LEAF, E_LEAF = box(0, 0, 6, 6), box(0, 10, 6, 16), box(10, 0, 16, 6), box(10, 10, 14, 14), \
    box(18, 18, 20, 19)


def five_leaves():
    identity = result([A_LEAF, B_LEAF, C_LEAF, D_LEAF, E_LEAF], [0.95, 0.7, 0.95, 0.4, 0.95])
    # The three other views: A with one more row in each (so the majority has it), B, D and E.
    others = [result([box(0, 0, 7, 6), B_LEAF, D_LEAF, E_LEAF], [0.97, 0.7, 0.4, 0.95]) for _ in range(3)]
    return [identity] + others


def test_sure_leaves_are_kept_unsure_ones_ignored_and_the_rest_dropped():
    selection = A.select_pseudo_labels(five_leaves(), keep_score=0.9, min_agreement=0.75, low_score=0.5,
                                       min_kept_share=0.5, min_area=5)
    fates = [(leaf["fate"], leaf["reasons"]) for leaf in selection.leaves]
    assert fates == [("kept", []), ("ignored", ["score"]), ("ignored", ["disagreement"]), ("dropped", ["low score"]),
                     ("dropped", ["small"])]
    # A's score is the mean over the 4 views that found it; C's agreement 0 of the 3 other views.
    assert selection.leaves[0]["score"] == pytest.approx((0.95 + 3 * 0.97) / 4, abs=1e-4)
    assert (selection.leaves[0]["agreement"], selection.leaves[2]["agreement"]) == (1.0, 0.0)
    assert selection.counts() == {"kept": 1, "ignored": 2, "dropped": 2, "ignored_score": 1,
                                  "ignored_disagreement": 1, "dropped_low_score": 1, "dropped_small": 1}
    # The kept mask is the majority: row 6 of A is in 3 of the 4 views.
    np.testing.assert_array_equal(selection.kept[..., 0], box(0, 0, 7, 6))
    np.testing.assert_array_equal(selection.ignored[..., 0], B_LEAF)
    np.testing.assert_array_equal(selection.ignored[..., 1], C_LEAF)
    # Kept 7 * 6 pixels of 7 * 6 + 6 * 6 + 6 * 6 found: under half, so the photograph goes.
    assert selection.kept_share == pytest.approx(42 / (42 + 36 + 36), abs=1e-4)
    assert not selection.keep_image and selection.reason.startswith("mostly unsure: kept leaves cover 37%")
    kept = A.select_pseudo_labels(five_leaves(), min_kept_share=0.3, min_area=5)
    assert kept.keep_image and kept.reason is None


def test_an_ignored_region_holds_every_pixel_any_view_gave_the_leaf():
    views = [result([B_LEAF], [0.7])] + [result([box(0, 10, 6, 17)], [0.7])] + [result([B_LEAF], [0.7])] * 2
    selection = A.select_pseudo_labels(views, min_area=5)
    np.testing.assert_array_equal(selection.ignored[..., 0], box(0, 10, 6, 17))
    assert selection.reason == "no sure leaf" and selection.kept.shape == (SIDE, SIDE, 0)


def test_agreement_is_judged_apart_from_the_score():
    """match_views' mean score counts a missing view as 0; the selection's does not."""
    views = [result([A_LEAF], [0.95]), result([A_LEAF], [0.95]), result([], []), result([], [])]
    selection = A.select_pseudo_labels(views, min_area=5)
    assert match_views(views)[0]["mean_score"] == pytest.approx(0.95 / 2)
    assert selection.leaves[0]["score"] == pytest.approx(0.95) and selection.leaves[0]["reasons"] == ["disagreement"]
    assert selection.leaves[0]["agreement"] == pytest.approx(1 / 3, abs=1e-4)
    loose = A.select_pseudo_labels(views, min_agreement=0.3, min_area=5)
    assert loose.keep_image and loose.leaves[0]["fate"] == "kept"


def test_an_image_without_detections_is_dropped():
    selection = A.select_pseudo_labels([result([], [])] * 4)
    assert not selection.keep_image and selection.reason == "no leaf found (scores >= 0.5)"
    assert selection.leaves == [] and selection.kept_share == 0.0


def test_ignore_regions_round_trip_through_the_dataset_as_crowds(tmp_path):
    from mrcnn.config import Config
    from mrcnn.pipeline import load_image_gt

    selection = A.select_pseudo_labels(five_leaves(), min_kept_share=0.3, min_area=5)
    image = np.random.default_rng(0).integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
    folder = A.write_pseudo_label(tmp_path / "labels", "photo-1", image, selection, {"photo": "p.png"})
    assert sorted(p.name for p in folder.iterdir()) == ["ignore", "images", "label.json", "masks"]
    assert not list((tmp_path / "labels").glob(".tmp-*"))
    dataset = LeafDataset()
    dataset.load_leaves(tmp_path, "labels")
    dataset.prepare()
    masks, class_ids = dataset.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1, -1, -1])
    np.testing.assert_array_equal(masks, np.concatenate([selection.kept, selection.ignored], axis=-1))
    np.testing.assert_array_equal(dataset.load_image(0), image)
    record = json.loads((folder / "label.json").read_text())
    assert record["counts"]["ignored"] == 2 and record["photo"] == "p.png" and record["kept_image"]

    class Tiny(Config):
        NAME, NUM_CLASSES, IMAGE_MIN_DIM, IMAGE_MAX_DIM, USE_MINI_MASK = "tiny", 2, 64, 64, False

    # The input pipeline keeps them as crowd boxes (negative class ids).
    _, _, ids, boxes, _ = load_image_gt(dataset, Tiny(), 0)
    np.testing.assert_array_equal(ids, [1, -1, -1])
    # A dropped photograph leaves its record only, which the dataset skips.
    A.write_pseudo_label(tmp_path / "labels", "photo-2", image, A.select_pseudo_labels(five_leaves()), {})
    assert sorted(p.name for p in (tmp_path / "labels" / "photo-2").iterdir()) == ["label.json"]
    again = LeafDataset()
    assert again.load_leaves(tmp_path, "labels") == 1


def test_an_adapt_folder_resolves_to_its_weights(tmp_path):
    (tmp_path / ADAPTED_WEIGHTS).write_bytes(b"")
    assert loading.resolve_weights(tmp_path) == tmp_path / ADAPTED_WEIGHTS


def test_rounds_take_other_photographs_and_the_steps_make_whole_epochs():
    photos = [f"p{i}.png" for i in range(10)]
    first, second = A.choose_photos(photos, 1, 4, seed=3), A.choose_photos(photos, 2, 4, seed=3)
    assert len(set(first)) == 4 and not set(first) & set(second)
    assert A.choose_photos(photos, 1, 4, seed=3) == first and A.choose_photos(photos, 1, 4, seed=4) != first
    assert sorted(A.choose_photos(photos, 2, 20, seed=0)) == sorted(photos)
    assert A.epoch_plan(1000) == (20, 50) and A.epoch_plan(120, 50) == (3, 40) and A.epoch_plan(3, 2) == (2, 2)


def test_a_folder_of_another_run_is_refused_naming_the_arguments(tmp_path):
    options = A.AdaptOptions(photos=["a.png"], out=str(tmp_path), weights="w.h5")
    state = A.RunState(tmp_path, options)
    state.save()
    A.RunState(tmp_path, A.AdaptOptions(photos=["a.png"], out=str(tmp_path), weights="w.h5", minutes=5))
    with pytest.raises(A.AdaptError, match=r"other arguments: --rounds 2 \(now 3\); --seed 0 \(now 1\)\. .*only "
                                           r"--minutes may change"):
        A.RunState(tmp_path, A.AdaptOptions(photos=["a.png"], out=str(tmp_path), weights="w.h5", rounds=3, seed=1))


@pytest.mark.parametrize("argv, message", [
    (["--keep-score", "0.4", "--low-score", "0.6"], "--low-score 0.6 is above --keep-score 0.4"),
    (["--synthetic-dir", "nowhere"], "--synthetic-dir nowhere: not a prepared folder"),
    (["--weights", "missing.weights.h5"], "--weights missing.weights.h5: weights file not found"),
])
def test_bad_options_are_named(argv, message, tmp_path, capsys):
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    assert adapt_command.main([str(photo), "--out", str(tmp_path / "out")] + argv) == 2
    assert message in capsys.readouterr().err
