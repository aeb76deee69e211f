"""Input pipeline: image meta, load_image_gt, RPN targets, and the batched tf.data pipeline."""
import logging

import albumentations as A
import numpy as np
import pytest

from mrcnn import pipeline, utils
from mrcnn.config import Config
from mrcnn.dataset import Dataset

STD = np.array([0.1, 0.1, 0.2, 0.2])


class TinyConfig(Config):
    NAME = "tiny"
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 2
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 32
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 6
    USE_MINI_MASK = False
    MINI_MASK_SHAPE = (14, 14)


class ShapesDataset(Dataset):
    """In-memory images: each instance is a rectangle or an ellipse filled with its own colour.

    specs: per image, a list of (class_id, kind, (y1, x1, y2, x2)) with kind "rect" or "ellipse".
    broken: image ids whose load_image raises OSError.
    """

    def __init__(self, specs, shape=(32, 64), broken=(), source="shapes"):
        super().__init__()
        self.add_class(source, 1, "square")
        self.add_class(source, 2, "circle")
        self.add_class("other", 1, "other")
        self.shape = shape
        self.broken = set(broken)
        for i, instances in enumerate(specs):
            self.add_image(source, i, path=f"memory://{source}/{i}", instances=instances)
        self.prepare()

    def masks(self, image_id):
        instances = self.image_info[image_id]["instances"]
        masks = np.zeros(self.shape + (len(instances),), dtype=bool)
        yy, xx = np.mgrid[: self.shape[0], : self.shape[1]]
        for i, (_, kind, (y1, x1, y2, x2)) in enumerate(instances):
            if kind == "rect":
                masks[y1:y2, x1:x2, i] = True
            else:
                cy, cx, ry, rx = (y1 + y2 - 1) / 2, (x1 + x2 - 1) / 2, (y2 - y1) / 2, (x2 - x1) / 2
                masks[:, :, i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        return masks

    def load_image(self, image_id):
        if image_id in self.broken:
            raise OSError("disk on fire")
        image = np.full(self.shape + (3,), 40, dtype=np.uint8)
        for i in range(self.masks(image_id).shape[-1]):
            image[self.masks(image_id)[:, :, i]] = (60 + 20 * i, 200 - 10 * i, 30 * (image_id % 5))
        return image

    def load_mask(self, image_id):
        instances = self.image_info[image_id]["instances"]
        class_ids = np.array([self.map_source_class_id(f"{self.image_info[image_id]['source']}.{c}")
                              for c, _, _ in instances], dtype=np.int32)
        return self.masks(image_id), class_ids


def two_rects():
    return [(1, "rect", (4, 8, 10, 20)), (2, "rect", (12, 30, 30, 60))]


def varied_specs(count=6):
    rng = np.random.default_rng(3)
    specs = []
    for _ in range(count):
        instances = []
        for _ in range(int(rng.integers(1, 4))):
            y1, x1 = int(rng.integers(0, 20)), int(rng.integers(0, 44))
            kind = "rect" if rng.random() < 0.5 else "ellipse"
            instances.append((int(rng.integers(1, 3)), kind, (y1, x1, y1 + int(rng.integers(6, 12)),
                                                              x1 + int(rng.integers(6, 20)))))
        specs.append(instances)
    return specs


# ----------------------------------------------------------------------- meta and molding

def test_image_meta_round_trip():
    meta = pipeline.compose_image_meta(7, (30, 40, 3), (64, 64, 3), (12, 2, 52, 62), 1.5, [1, 1, 0, 1])
    assert meta.shape == (12 + 4,)
    parsed = pipeline.parse_image_meta(meta[np.newaxis])
    np.testing.assert_array_equal(parsed["image_id"], [7])
    np.testing.assert_array_equal(parsed["original_image_shape"], [[30, 40, 3]])
    np.testing.assert_array_equal(parsed["image_shape"], [[64, 64, 3]])
    np.testing.assert_array_equal(parsed["window"], [[12, 2, 52, 62]])
    np.testing.assert_allclose(parsed["scale"], [1.5])
    np.testing.assert_array_equal(parsed["active_class_ids"], [[1, 1, 0, 1]])
    np.testing.assert_array_equal(pipeline.parse_image_meta(meta)["window"], [12, 2, 52, 62])


def test_mold_unmold_round_trip():
    config = TinyConfig()
    image = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    molded = pipeline.mold_image(image, config)
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded[0, 0], image[0, 0] - np.array([123.7, 116.8, 103.9]), rtol=1e-6)
    np.testing.assert_array_equal(pipeline.unmold_image(molded, config), image)


# ---------------------------------------------------------------------------- load_image_gt

def test_load_image_gt_square_pads_and_shifts_boxes():
    ds = ShapesDataset([two_rects()])  # 32 x 64 image
    config = TinyConfig()
    image, meta, class_ids, bbox, mask = pipeline.load_image_gt(ds, config, 0)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    # Scale 1 (shorter side 32 = IMAGE_MIN_DIM, longer 64 = IMAGE_MAX_DIM), 16 rows of padding on top.
    top = (64 - 32) // 2
    np.testing.assert_array_equal(bbox, [[4 + top, 8, 10 + top, 20], [12 + top, 30, 30 + top, 60]])
    np.testing.assert_array_equal(class_ids, [1, 2])
    assert mask.shape == (64, 64, 2) and mask.dtype == bool
    np.testing.assert_array_equal(utils.extract_bboxes(mask), bbox)
    parsed = pipeline.parse_image_meta(meta)
    np.testing.assert_array_equal(parsed["window"], [top, 0, top + 32, 64])
    np.testing.assert_array_equal(parsed["original_image_shape"], [32, 64, 3])
    # Only the image's own source's classes (and BG) are active.
    assert ds.class_names == ["BG", "square", "circle", "other"]
    np.testing.assert_array_equal(parsed["active_class_ids"], [1, 1, 1, 0])


def test_load_image_gt_square_scales_up():
    ds = ShapesDataset([[(1, "rect", (2, 4, 5, 10))]], shape=(16, 32))
    image, meta, _, bbox, _ = pipeline.load_image_gt(ds, TinyConfig(), 0)
    # Scale 32 / 16 = 2 makes the image 32 x 64, padded by 16 rows on top.
    np.testing.assert_allclose(pipeline.parse_image_meta(meta)["scale"], 2.0)
    np.testing.assert_array_equal(bbox, [[2 * 2 + 16, 4 * 2, 5 * 2 + 16, 10 * 2]])


def test_load_image_gt_none_and_pad64():
    ds = ShapesDataset([two_rects()], shape=(64, 40))
    config = TinyConfig(IMAGE_RESIZE_MODE="none")
    image, _, _, bbox, _ = pipeline.load_image_gt(ds, config, 0)
    assert image.shape == (64, 40, 3)
    np.testing.assert_array_equal(bbox, [[4, 8, 10, 20], [12, 30, 30, 40]])  # second box clipped by the image

    config = TinyConfig(IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=None)
    image, meta, _, bbox, mask = pipeline.load_image_gt(ds, config, 0)
    left = (64 - 40) // 2
    assert image.shape == (64, 64, 3)
    np.testing.assert_array_equal(bbox, [[4, 8 + left, 10, 20 + left], [12, 30 + left, 30, 40 + left]])
    np.testing.assert_array_equal(pipeline.parse_image_meta(meta)["window"], [0, left, 64, left + 40])
    np.testing.assert_array_equal(utils.extract_bboxes(mask), bbox)


def test_load_image_gt_crop_is_seeded_and_consistent():
    ds = ShapesDataset([[(1, "rect", (10, 5, 40, 120)), (2, "rect", (50, 100, 60, 110))]], shape=(64, 128))
    config = TinyConfig(IMAGE_RESIZE_MODE="crop", IMAGE_MIN_DIM=64)
    full = ds.load_image(0)
    image, meta, class_ids, bbox, mask = pipeline.load_image_gt(ds, config, 0, rng=np.random.default_rng(1))
    again = pipeline.load_image_gt(ds, config, 0, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(again[0], image)
    assert image.shape == (64, 64, 3)
    offsets = [x for x in range(65) if np.array_equal(full[:, x:x + 64], image)]
    assert offsets, "the crop is not a window of the original image"
    x = offsets[0]
    np.testing.assert_array_equal(utils.extract_bboxes(mask), bbox)
    np.testing.assert_array_equal(bbox[0], [10, max(5 - x, 0), 40, min(120 - x, 64)])
    # The second rectangle is kept only if the crop reaches it.
    assert len(class_ids) == (2 if x + 64 > 100 else 1)


def test_load_image_gt_mini_masks():
    ds = ShapesDataset([two_rects()])
    config = TinyConfig(USE_MINI_MASK=True)
    _, _, _, bbox, mini = pipeline.load_image_gt(ds, config, 0)
    assert mini.shape == (14, 14, 2) and mini.dtype == bool
    # A rectangle fills its box, so its mini mask is all True and expands back exactly.
    assert mini.all()
    full = pipeline.load_image_gt(ds, TinyConfig(), 0)[4]
    np.testing.assert_array_equal(utils.expand_mask(bbox, mini, (64, 64)), full)


def test_load_image_gt_flip_mirrors_boxes():
    ds = ShapesDataset([two_rects()])
    plain = pipeline.load_image_gt(ds, TinyConfig(), 0)
    flipped = pipeline.load_image_gt(ds, TinyConfig(), 0, augmentation=A.HorizontalFlip(p=1.0),
                                 rng=np.random.default_rng(0))
    width = 64
    y1, x1, y2, x2 = plain[3].T
    np.testing.assert_array_equal(flipped[3], np.stack([y1, width - x2, y2, width - x1], axis=1))
    np.testing.assert_array_equal(flipped[0], plain[0][:, ::-1])
    np.testing.assert_array_equal(flipped[4], plain[4][:, ::-1])


def test_load_image_gt_drops_masks_emptied_by_augmentation():
    ds = ShapesDataset([two_rects()])

    def erase_first(image, masks, rng):
        masks = masks.copy()
        masks[:, :, 0] = False
        return image, masks

    _, _, class_ids, bbox, mask = pipeline.load_image_gt(ds, TinyConfig(), 0, augmentation=erase_first)
    np.testing.assert_array_equal(class_ids, [2])
    np.testing.assert_array_equal(bbox, [[12 + 16, 30, 30 + 16, 60]])
    assert mask.shape == (64, 64, 1)


def test_load_image_gt_rejects_size_changing_augmentation():
    ds = ShapesDataset([two_rects()])

    def shrink(image, masks, rng):
        return image[:32], masks[:32]

    with pytest.raises(ValueError, match="augmentation changed the image"):
        pipeline.load_image_gt(ds, TinyConfig(), 0, augmentation=shrink)


# -------------------------------------------------------------------------- RPN targets

class RpnConfig:
    RPN_TRAIN_ANCHORS_PER_IMAGE = 8
    RPN_BBOX_STD_DEV = STD


ANCHORS = np.array([
    [0, 0, 10, 10],
    [0, 10, 10, 20],
    [20, 20, 30, 30],
    [0, 5, 10, 15],
    [40, 40, 50, 50],
    [42, 40, 52, 50],
], dtype=np.float32)


def test_rpn_gt_equal_to_an_anchor_is_positive_with_zero_deltas():
    match, bbox = pipeline.build_rpn_targets((64, 64, 3), ANCHORS, [1], [[20, 20, 30, 30]], RpnConfig,
                                         np.random.default_rng(0))
    np.testing.assert_array_equal(match, [-1, -1, 1, -1, -1, -1])
    assert bbox.shape == (8, 4) and bbox.dtype == np.float32
    np.testing.assert_array_equal(bbox, np.zeros((8, 4)))


def test_rpn_best_anchor_is_positive_below_the_iou_threshold():
    # GT (0, 0, 10, 20): anchors 0 and 1 each cover half of it (IoU 0.5), tied for its best;
    # anchor 3 has IoU 100 / 200 = 0.5 too; all three are positive. Anchor 2 does not overlap.
    gt = [[0, 0, 10, 20]]
    match, bbox = pipeline.build_rpn_targets((64, 64, 3), ANCHORS, [1], gt, RpnConfig, np.random.default_rng(0))
    np.testing.assert_array_equal(match, [1, 1, -1, 1, -1, -1])
    # Deltas in anchor order: GT centre (5, 10), size 10 x 20.
    expected = np.array([
        [0, (10 - 5) / 10, np.log(10 / 10), np.log(20 / 10)],
        [0, (10 - 15) / 10, 0, np.log(2)],
        [0, (10 - 10) / 10, 0, np.log(2)],
    ]) / STD
    np.testing.assert_allclose(bbox[:3], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bbox[3:], 0)


def test_rpn_iou_between_thresholds_is_neutral_unless_best():
    # GT (40, 40, 50, 50) equals anchor 4; anchor 5 overlaps it with IoU 80 / 120 = 0.67: neutral.
    match, _ = pipeline.build_rpn_targets((64, 64, 3), ANCHORS, [1], [[40, 40, 50, 50]], RpnConfig,
                                      np.random.default_rng(0))
    assert 80 / 120 < 0.7
    np.testing.assert_array_equal(match, [-1, -1, -1, -1, 1, 0])


def test_rpn_no_gt_gives_only_negatives_and_no_nan():
    config = TinyConfig()
    anchors = pipeline.pipeline_anchors(config)
    match, bbox = pipeline.build_rpn_targets((64, 64, 3), anchors, np.zeros([0], np.int32), np.zeros([0, 4]),
                                         config, np.random.default_rng(0))
    assert match.shape == (len(anchors),) and match.dtype == np.int32
    assert np.count_nonzero(match == 1) == 0
    assert np.count_nonzero(match == -1) == config.RPN_TRAIN_ANCHORS_PER_IMAGE
    np.testing.assert_array_equal(bbox, 0)
    assert np.isfinite(bbox).all()


def test_rpn_crowd_boxes_neutralise_overlapping_anchors():
    # A crowd box over anchors 4 and 5; a normal GT equal to anchor 2.
    match, bbox = pipeline.build_rpn_targets((64, 64, 3), ANCHORS, [1, -1], [[20, 20, 30, 30], [38, 38, 55, 55]],
                                         RpnConfig, np.random.default_rng(0))
    np.testing.assert_array_equal(match, [-1, -1, 1, -1, 0, 0])
    np.testing.assert_array_equal(bbox, 0)
    # Only crowd boxes: no positives at all, anchors away from the crowd are negative.
    match, _ = pipeline.build_rpn_targets((64, 64, 3), ANCHORS, [-1], [[38, 38, 55, 55]], RpnConfig,
                                      np.random.default_rng(0))
    np.testing.assert_array_equal(match, [-1, -1, -1, -1, 0, 0])


def test_rpn_sampling_caps_counts_and_is_seeded():
    config = TinyConfig()
    anchors = pipeline.pipeline_anchors(config)
    rng = np.random.default_rng(5)
    y, x = rng.integers(0, 48, 20), rng.integers(0, 48, 20)
    gt = np.stack([y, x, y + rng.integers(8, 16, 20), x + rng.integers(8, 16, 20)], axis=1)
    ids = np.ones(20, np.int32)
    match, bbox = pipeline.build_rpn_targets((64, 64, 3), anchors, ids, gt, config, np.random.default_rng(0))
    positives = np.flatnonzero(match == 1)
    assert len(positives) == config.RPN_TRAIN_ANCHORS_PER_IMAGE // 2  # 20 boxes give more than 16
    assert np.count_nonzero(match != 0) == config.RPN_TRAIN_ANCHORS_PER_IMAGE
    # Each positive's deltas, in anchor order, decode back onto its best GT box.
    overlaps = utils.compute_overlaps(anchors[positives], gt)
    decoded = utils.apply_box_deltas(anchors[positives], bbox[: len(positives)] * STD)
    np.testing.assert_allclose(decoded, gt[np.argmax(overlaps, axis=1)], atol=1e-3)
    again = pipeline.build_rpn_targets((64, 64, 3), anchors, ids, gt, config, np.random.default_rng(0))
    np.testing.assert_array_equal(again[0], match)
    other = pipeline.build_rpn_targets((64, 64, 3), anchors, ids, gt, config, np.random.default_rng(1))
    assert not np.array_equal(other[0], match)


def test_anchor_matching_agrees_with_compute_overlaps():
    anchors = pipeline.pipeline_anchors(TinyConfig())
    rng = np.random.default_rng(2)
    y, x = rng.integers(0, 56, 7), rng.integers(0, 56, 7)
    gt = np.stack([y, x, y + rng.integers(1, 30, 7), x + rng.integers(1, 30, 7)], axis=1)
    best_iou, best_gt, tied = pipeline._match_anchors(pipeline._box_columns(anchors), gt)
    overlaps = utils.compute_overlaps(anchors, gt)
    np.testing.assert_allclose(best_iou, overlaps.max(axis=1), atol=1e-6)
    np.testing.assert_array_equal(best_gt, overlaps.argmax(axis=1))
    gt_max = overlaps.max(axis=0)
    np.testing.assert_array_equal(tied, np.any(np.isclose(overlaps, gt_max, rtol=0, atol=1e-7) & (gt_max > 0), axis=1))


# ------------------------------------------------------------------------ the pipeline

def batches(pipeline, count):
    iterator = iter(pipeline)
    return [{k: v.numpy() for k, v in next(iterator).items()} for _ in range(count)]


def test_pipeline_shapes_dtypes_and_values():
    config = TinyConfig(USE_MINI_MASK=True)
    ds = ShapesDataset(varied_specs())
    (batch,) = batches(pipeline.build_dataset(ds, config, shuffle=False, seed=0, num_parallel_calls=2), 1)
    num_anchors = len(pipeline.pipeline_anchors(config))
    expected = {
        "input_image": (np.float32, (2, 64, 64, 3)),
        "input_image_meta": (np.float32, (2, 12 + 4)),
        "input_rpn_match": (np.int32, (2, num_anchors, 1)),
        "input_rpn_bbox": (np.float32, (2, 32, 4)),
        "input_gt_class_ids": (np.int32, (2, 6)),
        "input_gt_boxes": (np.float32, (2, 6, 4)),
        "input_gt_masks": (np.bool_, (2, 14, 14, 6)),
    }
    assert set(batch) == set(pipeline.INPUT_NAMES)
    for name, (dtype, shape) in expected.items():
        assert batch[name].dtype == dtype, name
        assert batch[name].shape == shape, name
    for row, image_id in enumerate([0, 1]):
        image, meta, class_ids, bbox, mini = pipeline.load_image_gt(ds, config, image_id)
        count = len(class_ids)
        np.testing.assert_array_equal(pipeline.unmold_image(batch["input_image"][row], config), image)
        np.testing.assert_allclose(batch["input_image_meta"][row], meta)
        np.testing.assert_array_equal(batch["input_gt_class_ids"][row], np.pad(class_ids, (0, 6 - count)))
        np.testing.assert_array_equal(batch["input_gt_boxes"][row], np.pad(bbox, ((0, 6 - count), (0, 0))))
        np.testing.assert_array_equal(batch["input_gt_masks"][row][..., :count], mini)
        assert not batch["input_gt_masks"][row][..., count:].any()
        positives = np.count_nonzero(batch["input_rpn_match"][row] == 1)
        assert 1 <= positives <= 16
        assert np.count_nonzero(batch["input_rpn_match"][row]) <= 32
        assert np.count_nonzero(batch["input_rpn_bbox"][row].any(axis=1)) <= positives


def test_pipeline_is_deterministic_under_a_seed():
    config = TinyConfig()
    ds = ShapesDataset(varied_specs())
    augmentation = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomBrightnessContrast(p=0.5)])

    def run(seed, parallel):
        return batches(pipeline.build_dataset(ds, config, augmentation=augmentation, seed=seed,
                                          num_parallel_calls=parallel), 4)

    first, second = run(3, 2), run(3, 1)
    for a, b in zip(first, second):
        for name in pipeline.INPUT_NAMES:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    other = run(4, 2)
    assert any(not np.array_equal(a["input_image"], b["input_image"]) for a, b in zip(first, other))


def test_pipeline_shuffles_each_epoch():
    config = TinyConfig()
    ds = ShapesDataset(varied_specs(6))

    def ids(pipeline, count):
        return [int(i) for b in batches(pipeline, count) for i in b["input_image_meta"][:, 0]]

    assert ids(pipeline.build_dataset(ds, config, shuffle=False, repeat=False), 3) == [0, 1, 2, 3, 4, 5]
    order = ids(pipeline.build_dataset(ds, config, shuffle=True, seed=11), 6)  # two epochs
    assert sorted(order[:6]) == list(range(6)) and sorted(order[6:]) == list(range(6))
    assert order[:6] != list(range(6)) and order[:6] != order[6:]
    assert ids(pipeline.build_dataset(ds, config, shuffle=True, seed=11), 6) == order
    one_epoch = pipeline.build_dataset(ds, config, repeat=False)
    assert sum(1 for _ in one_epoch) == 3


def test_broken_sample_raises_an_error_naming_the_image():
    import tensorflow as tf

    ds = ShapesDataset(varied_specs(4), broken={2})
    batched = pipeline.build_dataset(ds, TinyConfig(), shuffle=False, repeat=False, num_parallel_calls=1)
    with pytest.raises(tf.errors.OpError, match=r"image_id 2 \(memory://shapes/2\) failed: OSError: disk on fire"):
        batches(batched, 2)


def test_broken_sample_is_skipped_with_a_warning(caplog):
    ds = ShapesDataset(varied_specs(4), broken={2})
    batched = pipeline.build_dataset(ds, TinyConfig(), shuffle=False, repeat=False, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="mrcnn.pipeline"):
        got = [batch["input_image_meta"].numpy() for batch in batched]
    # Image 3 is left alone in an incomplete batch, which is dropped.
    assert len(got) == 1
    np.testing.assert_array_equal(got[0][:, 0], [0, 1])
    messages = [r.getMessage() for r in caplog.records]
    assert any("image_id 2 (memory://shapes/2) failed: OSError: disk on fire" in m for m in messages)


def test_skip_gives_up_when_too_many_samples_fail():
    import tensorflow as tf

    ds = ShapesDataset(varied_specs(4), broken={0, 1, 2, 3})
    batched = pipeline.build_dataset(ds, TinyConfig(), on_error="skip")
    with pytest.raises(tf.errors.OpError, match="gave up"):
        batches(batched, 1)


def test_more_instances_than_max_gt_keeps_a_random_subset(caplog):
    many = [(1, "rect", (2 * i, 3 * i, 2 * i + 4, 3 * i + 5)) for i in range(9)]
    ds = ShapesDataset([many, many])
    config = TinyConfig()
    with caplog.at_level(logging.WARNING, logger="mrcnn.pipeline"):
        (batch,) = batches(pipeline.build_dataset(ds, config, shuffle=False, repeat=False), 1)
    all_boxes = pipeline.load_image_gt(ds, config, 0)[3]
    for row in range(2):
        np.testing.assert_array_equal(batch["input_gt_class_ids"][row], np.ones(6))
        kept = batch["input_gt_boxes"][row]
        assert all(any(np.array_equal(box, b) for b in all_boxes) for box in kept)
        assert len({tuple(b) for b in kept}) == 6
        assert batch["input_gt_masks"][row].any(axis=(0, 1)).all()
    warnings = [r for r in caplog.records if "MAX_GT_INSTANCES" in r.getMessage()]
    assert len(warnings) == 1


def test_images_without_instances_are_skipped():
    specs = varied_specs(4)
    specs[1] = []
    ds = ShapesDataset(specs)
    (batch,) = batches(pipeline.build_dataset(ds, TinyConfig(), shuffle=False, repeat=False), 1)
    np.testing.assert_array_equal(batch["input_image_meta"][:, 0], [0, 2])


def test_pipeline_argument_errors():
    ds = ShapesDataset(varied_specs(2))
    with pytest.raises(ValueError, match="on_error"):
        pipeline.build_dataset(ds, TinyConfig(), on_error="ignore")
    with pytest.raises(ValueError, match="NUM_CLASSES is 5"):
        pipeline.build_dataset(ds, TinyConfig(NUM_CLASSES=5))


def test_images_that_do_not_fit_the_batch_shape_are_named():
    import tensorflow as tf

    ds = ShapesDataset(varied_specs(2))  # 32 x 64 images stay 32 x 64 in "none" mode
    batched = pipeline.build_dataset(ds, TinyConfig(IMAGE_RESIZE_MODE="none"), shuffle=False)
    with pytest.raises(tf.errors.OpError, match=r"image_id 0 .*shape \(32, 64, 3\) but config.IMAGE_SHAPE"):
        batches(batched, 1)
