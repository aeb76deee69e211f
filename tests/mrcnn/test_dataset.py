"""Dataset API: class and image registration, mapping across sources, image loading."""
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mrcnn.dataset import Dataset, load_image_file


def two_source_dataset():
    ds = Dataset()
    ds.add_class("leaf", 1, "leaf")
    ds.add_class("coco", 1, "person, people")
    ds.add_class("coco", 3, "car")
    ds.add_class("leaf", 2, "stem")
    ds.add_image("leaf", "a", "/data/a.png", width=40)
    ds.add_image("coco", 42, "/coco/42.jpg")
    ds.add_image("leaf", "b", "/data/b.png")
    ds.prepare()
    return ds


def test_prepare_builds_ids_and_names():
    ds = two_source_dataset()
    np.testing.assert_array_equal(ds.image_ids, [0, 1, 2])
    np.testing.assert_array_equal(ds.class_ids, [0, 1, 2, 3, 4])
    assert ds.num_classes == 5
    assert ds.num_images == 3
    # COCO-style "a, b" names keep their first part; background is class 0.
    assert ds.class_names == ["BG", "leaf", "person", "car", "stem"]
    assert ds.image_info[0] == {"id": "a", "source": "leaf", "path": "/data/a.png", "width": 40}


def test_class_mapping_across_sources():
    ds = two_source_dataset()
    assert ds.sources == ["coco", "leaf"]
    assert ds.source_class_ids == {"coco": [0, 2, 3], "leaf": [0, 1, 4]}
    assert ds.map_source_class_id("leaf.2") == 4
    assert ds.map_source_class_id("coco.3") == 3
    assert ds.class_from_source_map[".0"] == 0
    assert ds.image_from_source_map == {"leaf.a": 0, "coco.42": 1, "leaf.b": 2}
    assert ds.get_source_class_id(4, "leaf") == 2
    assert ds.get_source_class_id(3, "coco") == 3


def test_unknown_source_class_id_names_it():
    ds = two_source_dataset()
    with pytest.raises(KeyError, match="leaf.7"):
        ds.map_source_class_id("leaf.7")
    with pytest.raises(KeyError, match="belongs to source 'coco', not 'leaf'"):
        ds.get_source_class_id(2, "leaf")


def test_duplicate_class_is_ignored_and_dots_rejected():
    ds = Dataset()
    ds.add_class("leaf", 1, "leaf")
    ds.add_class("leaf", 1, "another name")
    ds.prepare()
    assert ds.class_names == ["BG", "leaf"]
    with pytest.raises(ValueError, match="dot"):
        ds.add_class("le.af", 1, "leaf")


def test_use_before_prepare_is_a_clear_error():
    ds = Dataset()
    ds.add_class("leaf", 1, "leaf")
    ds.add_image("leaf", 0, "x.png")
    with pytest.raises(RuntimeError, match="prepare"):
        ds.image_ids
    ds.prepare()
    np.testing.assert_array_equal(ds.image_ids, [0])
    # Adding an image after prepare() asks for prepare() again instead of giving stale ids.
    ds.add_image("leaf", 1, "y.png")
    with pytest.raises(RuntimeError, match="prepare"):
        ds.num_images
    ds.prepare()
    np.testing.assert_array_equal(ds.image_ids, [0, 1])


def test_image_source_without_classes_gets_background_only():
    ds = Dataset()
    ds.add_image("unlabelled", 0, "x.png")
    ds.prepare()
    assert ds.source_class_ids["unlabelled"] == [0]


def test_append_data_merges_two_datasets():
    first = two_source_dataset()
    other = Dataset()
    other.add_class("leaf", 1, "leaf")  # already known to `first`
    other.add_class("plant", 1, "plant")
    other.add_image("plant", 9, "/p/9.png", mask_dir="/p/9")
    other.prepare()
    first.append_data(other.class_info, other.image_info)
    first.prepare()
    assert first.class_names == ["BG", "leaf", "person", "car", "stem", "plant"]
    assert first.num_images == 4
    assert first.image_info[3] == {"id": 9, "source": "plant", "path": "/p/9.png", "mask_dir": "/p/9"}
    assert first.map_source_class_id("plant.1") == 5


def test_default_load_mask_is_empty_with_a_warning(caplog):
    ds = two_source_dataset()
    with caplog.at_level(logging.WARNING, logger="mrcnn.dataset"):
        mask, class_ids = ds.load_mask(0)
        ds.load_mask(1)
    assert mask.shape == (0, 0, 0) and mask.dtype == bool
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32
    assert sum("load_mask" in r.getMessage() for r in caplog.records) == 1


def test_image_reference_is_the_path():
    ds = two_source_dataset()
    assert ds.image_reference(1) == "/coco/42.jpg"


# ------------------------------------------------------------------------- image files

def test_load_image_rgb_order_gray_alpha_and_16_bit(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[..., ::-1])  # OpenCV writes BGR
    rgba = np.dstack([rgb[..., ::-1], np.full((4, 5), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    gray16 = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "gray16.png"), gray16)

    ds = Dataset()
    for name in ("rgb", "rgba", "gray", "gray16"):
        ds.add_image("files", name, str(tmp_path / f"{name}.png"))
    ds.prepare()

    np.testing.assert_array_equal(ds.load_image(0), rgb)
    np.testing.assert_array_equal(ds.load_image(1), rgb)
    image = ds.load_image(2)
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, np.repeat(gray[..., None], 3, axis=-1))
    # 16 bits -> 8 bits over the full range: value / 257.
    np.testing.assert_array_equal(ds.load_image(3)[..., 0], [[0, 1, 255, round(32896 / 257)]])


def test_unreadable_image_names_the_path(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    with pytest.raises(OSError, match="broken.png"):
        load_image_file(broken)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image_file(tmp_path / "missing.png")


def test_importing_dataset_does_not_import_tensorflow():
    code = "import sys, mrcnn.dataset, mrcnn.augment; sys.exit(int('tensorflow' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
