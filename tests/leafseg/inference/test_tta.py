"""Test-time augmentation (leafseg.inference.tta): views, their mapping back, matching, fusing,
the wrapper and the ``--tta`` option.

A :class:`Blobs` model stands in for Mask R-CNN: it returns one mask per connected blob of green
pixels of whatever image it gets, so it finds the same leaves in every view, and each view's
masks, mapped back, must be the blobs of the original image pixel for pixel. Matching and
fusing are checked on results written by hand; one test runs the tiny trained Mask R-CNN.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from leafseg.cli import evaluate as evaluate_command
from leafseg.cli import predict as predict_command
from leafseg.cli.options import tta_views
from leafseg.inference import tta as T
from leafseg.inference.plants import PlantsFirst
from leafseg.inference.predict import predict_images
from leafseg.inference.results import SETTINGS_FILE, STATE_DIR, SettingsMismatch
from leafseg.synth.trays import scene_paths, write_scenes
from tests.command_output import refused, run_main
from tests.leafseg.inference.test_plants import Oracle, Painting, painted_tray, read_png, write_rgb

# ---------------------------------------------------------------------------------- stand-ins


class Blobs:
    """Matterport's result with one mask per 4-connected blob of green pixels (G > 100), class
    1, score = the blob's mean red value / 255: a function of the image's content only, in any
    orientation. ``calls`` keeps the images of each call."""

    def __init__(self, batch_size=None, resize_mode="square"):
        self.config = types.SimpleNamespace(IMAGE_MAX_DIM=64, IMAGE_RESIZE_MODE=resize_mode,
                                            DETECTION_MIN_CONFIDENCE=0.5, DETECTION_MASK_OVERLAP_THRESHOLD=None)
        if batch_size:
            self.config.BATCH_SIZE = batch_size
        self.calls = []

    def detect(self, images, verbose=0):
        if getattr(self.config, "BATCH_SIZE", None):
            assert len(images) == self.config.BATCH_SIZE
        self.calls.append([np.array(image) for image in images])
        return [self._detect(np.asarray(image)) for image in images]

    @staticmethod
    def _detect(image):
        labels, n = ndimage.label(image[..., 1] > 100)
        masks = labels[..., None] == np.arange(1, n + 1)
        scores = np.array([image[..., 0][masks[..., k]].mean() / 255 for k in range(n)], np.float32)
        return {"rois": T.mask_boxes(masks), "class_ids": np.ones(n, np.int32), "scores": scores, "masks": masks}


def blob_image(height, width, seed=0):
    """An image of four elliptic green blobs, one per quadrant, each with its own size and red
    value, and a fifth at the top right corner (a flip or rotation must keep the frame's edges
    exact)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    ys, xs = np.ogrid[:height, :width]
    for k, (qy, qx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        cy, cx = (qy + 0.5) * height / 2, (qx + 0.5) * width / 2
        ry, rx = rng.uniform(2, height / 5), rng.uniform(2, width / 5)
        where = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
        image[where] = (60 + 40 * k, 200, 0)
    image[:3, -5:] = (250, 200, 0)
    return image


def detections(result):
    """One result's detections as a set of (class, score, box, mask bytes): order-free."""
    masks = np.asarray(result["masks"], bool)
    return {(int(c), round(float(s), 6), tuple(np.asarray(r).tolist()), masks[..., k].tobytes())
            for k, (c, s, r) in enumerate(zip(result["class_ids"], result["scores"], result["rois"]))}


def rect(shape, y1, x1, y2, x2):
    mask = np.zeros(shape, bool)
    mask[y1:y2, x1:x2] = True
    return mask


def result_of(masks, scores, class_ids=None, rois=None):
    """A Matterport result from a list of masks [H, W]."""
    n = len(masks)
    stacked = np.stack(masks, axis=-1) if n else np.zeros((20, 20, 0), bool)
    return {"rois": T.mask_boxes(stacked) if rois is None else np.asarray(rois, np.int32).reshape(n, 4),
            "class_ids": np.asarray(class_ids if class_ids is not None else [1] * n, np.int32),
            "scores": np.asarray(scores, np.float32).reshape(n), "masks": stacked}


# ---------------------------------------------------------------------------------- views

def test_views_are_the_eight_symmetries_in_order_and_a_count_takes_the_first():
    assert T.VIEWS == ("identity", "hflip", "vflip", "rot180", "transpose", "rot90", "rot270", "antitranspose")
    assert T.view_names(1) == ("identity",) and T.view_names(4) == T.VIEWS[:4] and T.view_names(8) == T.VIEWS
    a = np.arange(3 * 5).reshape(3, 5)
    expected = {"identity": a, "hflip": a[:, ::-1], "vflip": a[::-1], "rot180": a[::-1, ::-1], "transpose": a.T,
                "rot90": np.rot90(a, 1), "rot270": np.rot90(a, -1), "antitranspose": a[::-1, ::-1].T}
    for view in T.VIEWS:
        np.testing.assert_array_equal(T.apply_view(a, view), expected[view])
        np.testing.assert_array_equal(T.invert_view(T.apply_view(a, view), view), a)
    assert len({T.apply_view(a, view).tobytes() + bytes(T.apply_view(a, view).shape) for view in T.VIEWS}) == 8


@pytest.mark.parametrize("views", [0, 3, 5, 16, "4", 4.0, True, None])
def test_a_view_count_other_than_1_2_4_8_is_refused_naming_it(views):
    with pytest.raises(ValueError, match=f"views must be one of 1, 2, 4, 8, got {views!r}"):
        T.view_names(views)
    with pytest.raises(ValueError, match="views must be one of 1, 2, 4, 8"):
        T.detect_views(Blobs(), [np.zeros((8, 8, 3), np.uint8)], views=views)
    with pytest.raises(ValueError, match="views must be one of 1, 2, 4, 8"):
        T.TTAModel(Blobs(), views=views)


@pytest.mark.parametrize("view", T.VIEWS)
def test_boxes_map_back_as_their_pixels_do(view, rng):
    shape = (13, 21)
    for _ in range(20):
        y1, y2 = sorted(rng.choice(shape[0] + 1, 2, replace=False))
        x1, x2 = sorted(rng.choice(shape[1] + 1, 2, replace=False))
        mask = rect(shape, y1, x1, y2, x2)
        seen = T.apply_view(mask, view)
        box = T.mask_boxes(seen[..., None])
        np.testing.assert_array_equal(T.invert_view_boxes(box, view, seen.shape), [[y1, x1, y2, x2]])


def test_mask_boxes_are_exclusive_and_zero_for_an_empty_mask():
    masks = np.stack([rect((6, 9), 1, 2, 4, 9), np.zeros((6, 9), bool), rect((6, 9), 5, 0, 6, 1)], axis=-1)
    np.testing.assert_array_equal(T.mask_boxes(masks), [[1, 2, 4, 9], [0, 0, 0, 0], [5, 0, 6, 1]])
    assert T.mask_boxes(np.zeros((6, 9, 0), bool)).shape == (0, 4)


@pytest.mark.parametrize("shape", [(40, 40), (36, 53)])
def test_every_view_maps_back_to_the_original_frame_exactly(shape):
    image = blob_image(*shape)
    model = Blobs()
    views = T.detect_views(model, [image], views=8)[0]
    plain = Blobs._detect(image)
    assert len(views) == 8 and len(plain["scores"]) == 5
    for view, result in zip(T.VIEWS, views):
        assert result["masks"].shape == (*shape, 5) and result["masks"].dtype == bool, view
        assert result["rois"].dtype == np.int32 and result["class_ids"].dtype == np.int32
        assert result["scores"].dtype == np.float32
        assert detections(result) == detections(plain), view
    # The model saw each view: [W, H] for the four that swap the axes.
    seen = [image.shape for image in model.calls[0]]
    assert seen == [(*shape, 3)] * 4 + [(shape[1], shape[0], 3)] * 4
    for view, shown in zip(T.VIEWS, model.calls[0]):
        np.testing.assert_array_equal(shown, T.apply_view(image, view))


def test_the_identity_view_is_the_models_own_result():
    image = blob_image(30, 30)
    model = Blobs()
    result = T.detect_views(model, [image], views=2)[0][0]
    expected = Blobs._detect(image)
    for key in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(result[key], expected[key])


def test_an_empty_masks_box_is_the_inverted_box():
    class EmptyMask:
        config = types.SimpleNamespace(BATCH_SIZE=2)

        def detect(self, images, verbose=0):
            return [{"rois": np.array([[0, 1, 2, 4]], np.int32), "class_ids": np.ones(1, np.int32),
                     "scores": np.ones(1, np.float32), "masks": np.zeros((*image.shape[:2], 1), bool)}
                    for image in images]

    views = T.detect_views(EmptyMask(), [np.zeros((10, 6, 3), np.uint8)], views=2)[0]
    np.testing.assert_array_equal(views[1]["rois"], [[0, 6 - 4, 2, 6 - 1]])


@pytest.mark.parametrize("batch_size", [1, 3])
def test_views_go_to_the_model_batch_size_at_a_time_the_last_call_padded(batch_size):
    images = [blob_image(32, 32, seed=1), blob_image(24, 40, seed=2)]
    model = Blobs(batch_size=batch_size)
    views = T.detect_views(model, images, views=4)
    jobs = [(i, view) for i in range(2) for view in T.VIEWS[:4]]  # 8 images to detect
    assert len(model.calls) == -(-8 // batch_size)
    assert all(len(call) == batch_size for call in model.calls)
    shown = [image for call in model.calls for image in call]
    for (i, view), image in zip(jobs, shown):
        np.testing.assert_array_equal(image, T.apply_view(images[i], view))
    for extra in shown[8:]:  # the padding repeats the last image
        np.testing.assert_array_equal(extra, T.apply_view(images[1], "rot180"))
    for i, image in enumerate(images):
        assert [detections(result) for result in views[i]] == [detections(Blobs._detect(image))] * 4


def test_a_model_that_keeps_shapes_gets_one_shape_per_call():
    image = blob_image(24, 40)
    model = Blobs(batch_size=3, resize_mode="pad64")
    views = T.detect_views(model, [image], views=8)[0]
    assert [len({shown.shape for shown in call}) for call in model.calls] == [1, 1, 1, 1]  # 3 + 1, 3 + 1
    assert [detections(result) for result in views] == [detections(Blobs._detect(image))] * 8


def test_a_stand_in_without_batch_size_gets_every_view_in_one_call():
    model = Blobs()
    T.detect_views(model, [blob_image(20, 20), blob_image(20, 30)], views=4)
    assert [len(call) for call in model.calls] == [8]


# ---------------------------------------------------------------------------------- matching

SHAPE = (20, 20)


def test_match_views_a_detection_found_in_three_of_four_views():
    leaf = rect(SHAPE, 2, 2, 10, 10)                # 64 px
    shifted = rect(SHAPE, 2, 3, 10, 11)             # IoU 56 / 72
    other = rect(SHAPE, 12, 12, 18, 18)
    views = [result_of([leaf, other], [0.9, 0.8]),
             result_of([other, shifted], [0.7, 0.6]),
             result_of([other], [0.75]),            # leaf missed
             result_of([leaf], [0.5])]              # other missed
    matches = T.match_views(views)
    assert [m["index"] for m in matches] == [0, 1]
    assert (matches[0]["agreement"], matches[0]["votes"]) == (pytest.approx(2 / 3), 3)
    assert matches[0]["mean_score"] == pytest.approx((0.9 + 0.6 + 0 + 0.5) / 4)
    assert (matches[1]["agreement"], matches[1]["votes"]) == (pytest.approx(2 / 3), 3)
    assert matches[1]["mean_score"] == pytest.approx((0.8 + 0.7 + 0.75 + 0) / 4)
    vote = matches[0]["mask_vote"]
    assert vote.dtype == np.float32 and vote.shape == SHAPE
    np.testing.assert_allclose([vote[5, 2], vote[5, 5], vote[5, 10], vote[15, 15]], [2 / 4, 3 / 4, 1 / 4, 0])


def test_match_views_needs_the_class_and_the_iou():
    leaf = rect(SHAPE, 2, 2, 10, 10)
    half = rect(SHAPE, 2, 2, 10, 6)  # IoU 32 / 64 = 0.5
    views = [result_of([leaf], [0.9]), result_of([leaf], [0.9], class_ids=[2]), result_of([half], [0.9])]
    assert [(m["votes"], m["agreement"]) for m in T.match_views(views)] == [(2, 0.5)]
    assert [m["votes"] for m in T.match_views(views, iou=0.51)] == [1]


def test_match_views_is_one_to_one_best_iou_first():
    # Both plain detections match the other view's one (IoU 90 / 100 with big, 80 / 90 with
    # small); the better takes it, the other is left without.
    big, small, other = rect(SHAPE, 0, 0, 10, 10), rect(SHAPE, 0, 0, 10, 8), rect(SHAPE, 0, 0, 10, 9)
    matches = T.match_views([result_of([small, big], [0.9, 0.8]), result_of([other], [0.7])])
    assert [m["votes"] for m in matches] == [1, 2]


def test_match_views_with_one_view_or_none_found():
    leaf = rect(SHAPE, 2, 2, 10, 10)
    (match,) = T.match_views([result_of([leaf], [0.9])])
    assert (match["agreement"], match["votes"], match["mean_score"]) == (1.0, 1, pytest.approx(0.9))
    assert T.match_views([result_of([], []), result_of([leaf], [0.9])]) == []
    with pytest.raises(ValueError, match="view_results is empty"):
        T.match_views([])


def test_pairwise_iou_matches_brute_force(rng):
    masks = [rng.random((24, 30)) < 0.3 for _ in range(6)]
    masks = [m & rect((24, 30), *sorted(rng.choice(24, 2, replace=False)), 0, 30) for m in masks]
    classes = [1, 1, 2, 1, 2, 1]
    a = T._Detections.of(result_of(masks[:3], [1] * 3, class_ids=classes[:3]))
    b = T._Detections.of(result_of(masks[3:], [1] * 3, class_ids=classes[3:]))
    expected = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            if classes[i] == classes[3 + j]:
                union = (masks[i] | masks[3 + j]).sum()
                expected[i, j] = (masks[i] & masks[3 + j]).sum() / union if union else 0
    np.testing.assert_allclose(T._pairwise_iou(a, b), expected)


# ---------------------------------------------------------------------------------- fusing

def test_merge_views_keeps_the_majority_and_drops_a_one_view_detection():
    leaf = rect(SHAPE, 2, 2, 10, 10)
    wider = rect(SHAPE, 2, 2, 10, 12)                # IoU 64 / 80 with leaf
    spurious = rect(SHAPE, 14, 14, 18, 18)
    views = [result_of([leaf, spurious], [0.9, 0.95]),
             result_of([wider], [0.8]),
             result_of([leaf], [0.7]),
             result_of([], [])]
    fused = T.merge_views(views)
    assert fused["masks"].shape == (*SHAPE, 1)
    np.testing.assert_array_equal(fused["masks"][..., 0], leaf)  # columns 10, 11: in 1 of 3 masks, under half
    np.testing.assert_array_equal(fused["rois"], [[2, 2, 10, 10]])
    np.testing.assert_allclose(fused["scores"], [(0.9 + 0.8 + 0.7 + 0) / 4], rtol=1e-6)
    assert fused["votes"].tolist() == [3] and fused["class_ids"].tolist() == [1]
    assert fused["rois"].dtype == np.int32 and fused["scores"].dtype == np.float32


def test_merge_views_mask_is_the_pixels_of_at_least_half_the_clusters_masks():
    a, b = rect(SHAPE, 2, 2, 10, 10), rect(SHAPE, 2, 4, 10, 12)   # IoU 48 / 80
    fused = T.merge_views([result_of([a], [0.9]), result_of([b], [0.9])])
    np.testing.assert_array_equal(fused["masks"][..., 0], a | b)  # 1 of 2 is half
    fused = T.merge_views([result_of([a], [0.9]), result_of([b], [0.9]), result_of([b], [0.9])])
    np.testing.assert_array_equal(fused["masks"][..., 0], b)      # 1 of 3 is not
    np.testing.assert_array_equal(fused["rois"], [[2, 4, 10, 12]])


def test_merge_views_a_detection_the_plain_view_missed_seeds_a_cluster():
    leaf, late = rect(SHAPE, 2, 2, 10, 10), rect(SHAPE, 12, 12, 18, 19)
    views = [result_of([leaf], [0.9]), result_of([late, leaf], [0.6, 0.9]), result_of([leaf, late], [0.9, 0.8]),
             result_of([late, leaf], [0.7, 0.9])]
    fused = T.merge_views(views)
    assert fused["votes"].tolist() == [4, 3]
    np.testing.assert_allclose(fused["scores"], [0.9, (0.6 + 0.8 + 0.7) / 4], rtol=1e-6)
    np.testing.assert_array_equal(fused["rois"], [[2, 2, 10, 10], [12, 12, 18, 19]])
    assert T.merge_views(views, min_votes=4)["votes"].tolist() == [4]


def test_merge_views_sorts_by_score_and_min_votes_one_keeps_everything():
    a, b, c = rect(SHAPE, 0, 0, 5, 5), rect(SHAPE, 6, 6, 12, 12), rect(SHAPE, 14, 0, 19, 5)
    views = [result_of([a, b], [0.6, 0.9]), result_of([b, c], [0.9, 0.99])]
    fused = T.merge_views(views, min_votes=1)
    np.testing.assert_allclose(fused["scores"], [0.9, 0.99 / 2, 0.6 / 2], rtol=1e-6)
    np.testing.assert_array_equal(fused["rois"], [[6, 6, 12, 12], [14, 0, 19, 5], [0, 0, 5, 5]])
    assert T.merge_views(views)["votes"].tolist() == [2]  # more than half of 2 views: both


def test_merge_views_does_not_cut_the_fused_score_at_the_models_min_score_unless_asked():
    """A leaf found at 0.9 in 3 of 4 views fuses to 0.675, under a 0.8 cut-off every view's
    detection passed; TTAModel keeps it (the module docstring says why), min_score cuts."""
    leaf = rect(SHAPE, 5, 5, 15, 15)  # the middle of the frame: the same in every view
    views = [result_of([leaf], [0.9])] * 3 + [result_of([], [])]
    assert T.merge_views(views)["scores"].tolist() == [pytest.approx(3 * 0.9 / 4)]
    assert len(T.merge_views(views, min_score=0.7)["scores"]) == 0

    class Fixed:
        config = types.SimpleNamespace(DETECTION_MIN_CONFIDENCE=0.8, DETECTION_MASK_OVERLAP_THRESHOLD=None)

        def detect(self, images, verbose=0):  # the leaf in the first 3 views, none in the 4th
            return [views[k] for k in range(len(images))]

    fused = T.TTAModel(Fixed(), views=4).detect([np.zeros((*SHAPE, 3), np.uint8)])[0]
    np.testing.assert_allclose(fused["scores"], [3 * 0.9 / 4], rtol=1e-6)


def test_merge_views_applies_the_mask_overlap_suppression():
    big, inside = rect(SHAPE, 0, 0, 10, 10), rect(SHAPE, 0, 0, 10, 4)   # IoU 0.4: two clusters
    views = [result_of([big, inside], [0.9, 0.8])] * 2
    assert T.merge_views(views)["votes"].tolist() == [2, 2]
    fused = T.merge_views(views, mask_overlap=0.5)
    assert fused["votes"].tolist() == [2]
    np.testing.assert_array_equal(fused["masks"][..., 0], big)


def test_merge_views_keeps_at_most_max_instances_the_best_first():
    a, b, c = rect(SHAPE, 0, 0, 5, 5), rect(SHAPE, 6, 6, 12, 12), rect(SHAPE, 14, 0, 19, 5)
    views = [result_of([a, b, c], [0.7, 0.9, 0.8])] * 2
    fused = T.merge_views(views, max_instances=2)
    np.testing.assert_allclose(fused["scores"], [0.9, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(fused["rois"], [[6, 6, 12, 12], [14, 0, 19, 5]])


def test_disjoint_masks_never_match_even_at_iou_zero():
    a, b = rect(SHAPE, 0, 0, 5, 5), rect(SHAPE, 6, 6, 12, 12)
    assert [m["votes"] for m in T.match_views([result_of([a], [0.9]), result_of([b], [0.9])], iou=0)] == [1]


def test_merge_views_of_one_view_is_that_view_and_of_nothing_is_empty():
    single = result_of([rect(SHAPE, 2, 2, 10, 10)], [0.9], rois=[[1, 1, 11, 11]])
    assert T.merge_views([single]) is single
    fused = T.merge_views([result_of([], []), result_of([], [])])
    assert fused["masks"].shape == (20, 20, 0) and fused["rois"].shape == (0, 4)
    with pytest.raises(ValueError, match="view_results is empty"):
        T.merge_views([])


# ---------------------------------------------------------------------------------- the wrapper

def test_tta_model_fuses_the_views_of_each_image():
    images = [blob_image(30, 30), blob_image(26, 41, seed=3)]
    model = T.TTAModel(Blobs(batch_size=2), views=8)
    assert model.config is model.model.config and model.views == 8
    results = model.detect(images)
    for image, result in zip(images, results):
        plain = Blobs._detect(image)
        assert detections({key: result[key] for key in plain}) == detections(plain)
        assert result["votes"].tolist() == [8] * 5
        assert list(result["scores"]) == sorted(result["scores"], reverse=True)
    assert len(model.detect_views(images)[1]) == 8


def leaves(result):
    """PlantsFirst's leaves as a set of (plant id, class, score, box, mask bytes): order-free."""
    return {(int(result["plant_ids"][k]), int(result["class_ids"][k]), round(float(result["scores"][k]), 6),
             tuple(result["rois"][k].tolist()), result["masks"][..., k].tobytes())
            for k in range(len(result["scores"]))}


def test_plants_first_of_a_tta_model_finds_a_trays_plants_and_leaves_as_without():
    """The colour oracle finds the same leaves in every view, so PlantsFirst(TTAModel(oracle))
    gives what PlantsFirst(oracle) gives, scene (by plant) and whole photograph alike."""
    tray = painted_tray(empty=[(1, 2)])
    one = Painting(40, 60)
    one.rosette(0, 20, 30, leaves=4, spread=8, radius=6)
    for image in (tray.image, one.image):
        plain = PlantsFirst(Oracle(64)).detect([image])[0]
        oracle = Oracle(64)
        fused = PlantsFirst(T.TTAModel(oracle, views=4)).detect([image])[0]
        assert fused["plan"].mode == plain["plan"].mode
        assert [(p.id, p.name, p.box) for p in fused["plants"]] == [(p.id, p.name, p.box) for p in plain["plants"]]
        # (the oracle's detections come in colour order, the fused ones by score)
        assert leaves(fused) == leaves(plain)
        assert any(seen.shape[0] != seen.shape[1] or not np.array_equal(seen, seen[:, ::-1]) for seen in oracle.seen)
    assert plain["plan"].mode == "one" and len(plain["scores"]) == 4


# ---------------------------------------------------------------------------------- commands

def test_tta_option_parses_and_is_off_by_default():
    for command in (predict_command, evaluate_command):
        argv = ["--dataset", "d", "--out", "o"] if command is evaluate_command else ["a.png"]
        parse = command.build_parser().parse_args
        assert parse(argv).tta is None
        assert parse([*argv, "--tta"]).tta == 4
        assert parse([*argv, "--tta", "8"]).tta == 8
        assert parse(["--tta", "2", *argv]).tta == 2
    args = predict_command.build_parser().parse_args(["--tta", "photos/", "b.png"])
    assert (args.tta, args.tta_inputs, args.inputs) == (4, ["photos/"], ["b.png"])
    assert tta_views("1") == 1
    with pytest.raises(argparse.ArgumentTypeError, match="must be one of 1, 2, 4, 8 \\(views\\), got 3"):
        tta_views("3")


@pytest.mark.parametrize("command", [predict_command, evaluate_command])
@pytest.mark.parametrize("value", ["3", "0", "16"])
def test_the_commands_refuse_a_bad_view_count_naming_it(command, value, tmp_path):
    err = refused(command.main, tmp_path / "a.png", tmp_path / "out", "--tta", value,
                  dataset=command is evaluate_command)
    assert "--tta" in err and f"got {value}" in err


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    write_rgb(folder / "tray.png", painted_tray(empty=[(0, 0)]).image)
    one = Painting(50, 70)
    one.rosette(0, 25, 35, leaves=5, spread=10, radius=7)
    write_rgb(folder / "one.png", one.image)
    return folder


def test_predict_records_tta_only_when_on_and_finds_the_same_leaves(photos, tmp_path):
    plain = predict_images(Oracle(64), [photos], tmp_path / "plain", progress=False)
    fused = predict_images(Oracle(64), [photos], tmp_path / "tta", progress=False, tta=4)
    assert [item[2] for item in fused.predicted] == [item[2] for item in plain.predicted]
    settings = {name: json.loads((tmp_path / name / STATE_DIR / SETTINGS_FILE).read_text())
                for name in ("plain", "tta")}
    assert "tta" not in settings["plain"] and settings["tta"]["tta"] == 4
    assert {k: v for k, v in settings["tta"].items() if k != "tta"} == settings["plain"]
    for name in ("one", "tray"):
        np.testing.assert_array_equal(read_png(tmp_path / "tta" / "labels" / f"{name}_label.png"),
                                      read_png(tmp_path / "plain" / "labels" / f"{name}_label.png"))
    assert (tmp_path / "tta" / "leaves.csv").read_bytes() == (tmp_path / "plain" / "leaves.csv").read_bytes()
    with pytest.raises(SettingsMismatch, match="tta"):
        predict_images(Oracle(64), [photos], tmp_path / "plain", progress=False, tta=8)
    with pytest.raises(ValueError, match="views must be one of 1, 2, 4, 8, got 3"):
        predict_images(Oracle(64), [photos], tmp_path / "bad", progress=False, tta=3)


def test_predict_command_passes_tta(photos, tmp_path, monkeypatch):
    seen = {}

    def load(*args, **kwargs):
        seen["model"] = Oracle(64)
        seen["model"].config.DETECTION_MASK_OVERLAP_THRESHOLD = None
        return seen["model"], "test", "oracle"

    monkeypatch.setattr(predict_command, "load_inference_model", load)
    monkeypatch.setattr(predict_command, "setup_command_logging", lambda *args, **kwargs: None)
    run = run_main(predict_command.main, ["--tta", str(photos / "one.png"), "--out", str(tmp_path / "out")])
    assert run.status == 0, run.stderr
    assert "TTA 4 views" in run.stderr
    assert json.loads((tmp_path / "out" / STATE_DIR / SETTINGS_FILE).read_text())["tta"] == 4
    assert len(seen["model"].seen) == 4


@pytest.mark.parametrize("tta", [None, "2"])
def test_evaluate_records_tta_only_when_on(tta, tmp_path, monkeypatch):
    data = tmp_path / "scenes"
    write_scenes(data, count=1, seed=3, scene="tray", grid=(2, 3), size=64, style="classic", progress=False)
    rgb, label, _ = scene_paths(data, 0)
    shutil.copy(label, rgb)  # the oracle reads the colour label
    oracle = Oracle(48)
    monkeypatch.setattr(evaluate_command, "load_inference_model", lambda *args, **kwargs: (oracle, "test", "oracle"))
    monkeypatch.setattr(evaluate_command, "setup_command_logging", lambda *args, **kwargs: None)
    argv = ["--dataset", str(data), "--out", str(tmp_path / "out"), "--gallery", "0", "--quiet"]
    run = run_main(evaluate_command.main, argv + (["--tta", tta] if tta else []))
    assert run.status == 0, run.stderr
    settings = json.loads((tmp_path / "out" / "metrics.json").read_text())["settings"]
    if tta:
        assert settings["tta"] == 2
    else:
        assert "tta" not in settings


# ---------------------------------------------------------------------------------- a real model

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.tiny_trained import inference_model, trained_run

    return inference_model(trained_run(tmp_path_factory)["weights"], 0.1)


def test_tta_on_the_tiny_mask_rcnn(tiny):
    from tests.toy_data import shapes_dataset

    image = shapes_dataset(1).load_image(0)
    plain = tiny.detect([image])[0]
    views = T.detect_views(tiny, [image, image[:, :48]], views=8)
    assert [len(v) for v in views] == [8, 8]
    for key in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(views[0][0][key], plain[key])
    for image_views, shape in zip(views, [(64, 64), (64, 48)]):
        for view, result in zip(T.VIEWS, image_views):
            n = len(result["scores"])
            assert result["masks"].shape == (*shape, n) and result["rois"].shape == (n, 4)
            if view != "identity":  # (the model's own boxes hold its masks; a mapped view's are the masks')
                filled = result["masks"].any(axis=(0, 1))
                np.testing.assert_array_equal(result["rois"][filled], T.mask_boxes(result["masks"])[filled])
    assert sum(len(r["scores"]) for r in views[0]) > 0
    same = T.TTAModel(tiny, views=1).detect([image])[0]
    for key in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(same[key], plain[key])
    fused = T.TTAModel(tiny, views=4).detect([image])[0]
    assert fused["masks"].shape[:2] == (64, 64) and np.all(fused["votes"] >= 3)
    assert np.all(np.diff(fused["scores"]) <= 0)


def test_the_benchmark_explains_itself():
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_tta.py"), "--help"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--views" in done.stdout and "--dataset" in done.stdout
