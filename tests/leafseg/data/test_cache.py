"""Issue 26, item 8: large photographs are decoded and shrunk once before training
(leafseg.data.cache), giving the input pipeline the very samples it made from the photographs."""
import hashlib
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from leafseg.data import cache
from leafseg.data.dataset import LeafDataset
from leafseg.data.prepare import prepare_dataset
from leafseg.synth.rosettes import write_dataset
from mrcnn.pipeline import load_image_gt
from tests.toy_data import ToyConfig

# Photographs four times the toy model's 64 px, one not square: three in train/, one in val/.
SIZE = 256


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    write_dataset(root / "raw", 3, seed=5, size=SIZE, progress=False)
    write_dataset(root / "raw", 1, seed=6, size=(SIZE, 3 * SIZE // 2), start=3, progress=False)
    prepare_dataset(root / "raw", root / "data", val_ids=["plant00002"], progress=False)
    # An ignore region (class id -1) in one sample, as leafseg adapt writes them.
    sample = sorted((root / "data" / "train").iterdir())[0]
    (sample / "ignore").mkdir()
    region = np.zeros((SIZE, SIZE), np.uint8)
    region[10:40, 20:60] = 255
    cv2.imwrite(str(sample / "ignore" / "0.png"), region)
    return root / "data"


def load(data):
    dataset = LeafDataset()
    dataset.load_leaves(data, "train")
    dataset.prepare()
    return dataset


def fingerprints(folder):
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_the_pipeline_gets_the_same_samples_from_the_shrunk_copies(prepared, tmp_path, caplog):
    config = ToyConfig()
    before = fingerprints(prepared)
    dataset = load(prepared)
    with caplog.at_level(logging.INFO, logger="leafseg.data.cache"):
        resized = cache.resized_for_training(dataset, config, tmp_path / ".image_cache")
    assert isinstance(resized, cache.ResizedDataset) and len(resized.files) == 3
    assert ("image cache: 3 images larger than IMAGE_MAX_DIM 64; training reads copies shrunk to it once, in "
            f"{tmp_path / '.image_cache'} (3 made now, 0 reused") in caplog.text
    for image_id in dataset.image_ids:
        small = resized.load_image(image_id)
        assert max(small.shape[:2]) == 64 and small.shape[:2] in ((64, 64), (43, 64))
        assert resized.load_mask(image_id)[0].shape[:2] == small.shape[:2]
        original = load_image_gt(dataset, config, image_id, rng=np.random.default_rng(0))
        cached = load_image_gt(resized, config, image_id, rng=np.random.default_rng(0))
        for name, a, b in zip(("image", "meta", "class_ids", "bbox", "mask"), original, cached):
            if name == "meta":  # the original size, unused in training, differs; the rest is the same
                np.testing.assert_array_equal(np.delete(a, [1, 2, 3, 11]), np.delete(b, [1, 2, 3, 11]))
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{name} of image {image_id}")
    # The ignore region kept its class id -1.
    assert -1 in resized.load_mask(0)[1] and -1 in load_image_gt(resized, config, 0)[2]
    assert fingerprints(prepared) == before  # the source is only read
    assert resized.class_names == dataset.class_names and resized.num_classes == dataset.num_classes


def test_copies_are_reused_until_a_source_file_changes(prepared, tmp_path, caplog):
    config = ToyConfig()
    folder = tmp_path / ".image_cache"
    cache.resized_for_training(load(prepared), config, folder)
    dataset = load(prepared)
    with caplog.at_level(logging.INFO, logger="leafseg.data.cache"):
        resized = cache.resized_for_training(dataset, config, folder)
    assert "(0 made now, 3 reused" in caplog.text
    dataset.load_image = dataset.load_mask = None  # every image is read from its copy
    assert resized.load_image(1).shape[:2] == (64, 64)

    mask = sorted((sorted((prepared / "train").iterdir())[1] / "masks").iterdir())[0]
    saved = mask.read_bytes()
    try:
        cv2.imwrite(str(mask), np.zeros((SIZE, SIZE), np.uint8))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="leafseg.data.cache"):
            changed = cache.resized_for_training(load(prepared), config, folder)
        assert "(1 made now, 2 reused" in caplog.text
        assert changed.load_mask(1)[0].shape[-1] == resized.load_mask(1)[0].shape[-1]
        assert not changed.load_mask(1)[0][..., 0].any()
        # Another size is another copy.
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="leafseg.data.cache"):
            cache.resized_for_training(load(prepared), ToyConfig(IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128), folder)
        assert "(3 made now, 0 reused" in caplog.text
    finally:
        mask.write_bytes(saved)
    assert not list(folder.glob(".*"))  # written atomically: no temporary file left


def test_images_at_the_models_size_and_other_modes_are_read_as_before(prepared, tmp_path):
    dataset = load(prepared)
    assert cache.resized_for_training(dataset, ToyConfig(IMAGE_MIN_DIM=384, IMAGE_MAX_DIM=384),
                                      tmp_path) is dataset
    assert cache.resized_for_training(dataset, ToyConfig(IMAGE_RESIZE_MODE="crop"), tmp_path) is dataset
    assert not any(tmp_path.iterdir())


def test_train_shrinks_large_photographs_once_unless_told_not_to(prepared, tmp_path, monkeypatch):
    from leafseg.training import train as T

    seen = {}

    def captured(model, args, argv, config, strategy, spec, start, restore, train_set, val_set, *rest):
        seen.update(train=train_set, val=val_set)
        return T.TrainResult(model, model.log_dir, model.epoch, None, None, spec)

    monkeypatch.setattr(T, "_train_stage", captured)
    ToyConfig().to_yaml(tmp_path / "toy.yaml")
    argv = ["--config", str(tmp_path / "toy.yaml"), "--dataset", str(prepared), "--logs", str(tmp_path / "logs"),
            "--stage", "heads", "--epochs", "1", "--weights", "none"]
    T.run(argv)
    assert isinstance(seen["train"], cache.ResizedDataset) and isinstance(seen["val"], cache.ResizedDataset)
    assert len(list((tmp_path / "logs" / cache.CACHE_DIR).glob("*.npz"))) == 4
    T.run(argv + ["--no-image-cache"])
    assert isinstance(seen["train"], LeafDataset) and isinstance(seen["val"], LeafDataset)
