"""LeafDataset on generated rosettes: prepared layout, raw colour masks and CVPPP-style folders."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leafseg.data.dataset import LeafDataset
from leafseg.data.masks import masks_to_label
from leafseg.data.prepare import assign_subset, prepare_dataset
from leafseg.synth.rosettes import generate_rosette, rosette_rng, write_dataset

SIZE = 96
COUNT = 6


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    write_dataset(raw, COUNT, seed=3, size=SIZE, progress=False)
    return raw


def _expected_masks(index):
    """The generator's own leaves for image ``index`` (in label-colour order, as the splitter orders them)."""
    rosette = generate_rosette(rosette_rng(3, index), size=SIZE)
    order = np.lexsort(rosette.colors[:, ::-1].T)  # ascending (R, G, B), R most significant
    return rosette.masks[..., order]


def _sample_index(info):
    return int(info["id"].replace("plant", ""))


def test_prepared_layout_loads_the_generators_leaves(generated, tmp_path):
    result = prepare_dataset(generated, tmp_path / "prepared", progress=False)
    assert result.finished == COUNT
    loaded = 0
    for subset in ("train", "val"):
        if not (tmp_path / "prepared" / subset).is_dir():
            continue
        dataset = LeafDataset()
        dataset.load_leaves(tmp_path / "prepared", subset)
        dataset.prepare()
        assert dataset.class_names == ["BG", "leaf"]
        for image_id in dataset.image_ids:
            info = dataset.image_info[image_id]
            masks, class_ids = dataset.load_mask(image_id)
            expected = _expected_masks(_sample_index(info))
            np.testing.assert_array_equal(masks, expected)
            np.testing.assert_array_equal(class_ids, np.ones(expected.shape[-1]))
            assert dataset.load_image(image_id).shape == (SIZE, SIZE, 3)
            loaded += 1
    assert loaded == COUNT


def test_raw_colour_masks_load_without_preparing_and_split_like_prepare(generated):
    train, val = LeafDataset(), LeafDataset()
    n_train = train.load_color_masks(generated, subset="train")
    n_val = val.load_color_masks(generated, subset="val")
    assert n_train + n_val == COUNT
    for dataset in (train, val):
        dataset.prepare()
        for image_id in dataset.image_ids:
            masks, _ = dataset.load_mask(image_id)
            np.testing.assert_array_equal(masks, _expected_masks(_sample_index(dataset.image_info[image_id])))
            assert "label" in dataset.image_reference(image_id)


def test_cvppp_indexed_labels_and_size_mismatch(tmp_path):
    rosette = generate_rosette(rosette_rng(5, 0), size=SIZE)
    Image.fromarray(rosette.image).save(tmp_path / "plant001_rgb.png")
    ids = masks_to_label(rosette.masks)
    # Non-consecutive ids in a palette PNG, twice the image's size (nearest-neighbour upscale).
    ids = np.where(ids > 0, ids * 3 + 1, 0).astype(np.uint8)
    big = np.repeat(np.repeat(ids, 2, axis=0), 2, axis=1)
    label = Image.fromarray(big, mode="P")
    label.putpalette([0, 0, 0] + [255, 128, 0] * 255)
    label.save(tmp_path / "plant001_label.png")
    (tmp_path / "plant001_fg.png").write_bytes((tmp_path / "plant001_label.png").read_bytes())

    dataset = LeafDataset()
    assert dataset.load_cvppp(tmp_path) == 1
    dataset.prepare()
    masks, _ = dataset.load_mask(0)
    np.testing.assert_array_equal(masks, rosette.masks)

    strict = LeafDataset()
    strict.load_cvppp(tmp_path, size_mismatch="error")
    strict.prepare()
    with pytest.raises(Exception, match="plant001_label.png.*size mismatch"):
        strict.load_mask(0)


def test_clear_errors_for_missing_or_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no 'train' folder"):
        LeafDataset().load_leaves(tmp_path, "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="holds no samples"):
        LeafDataset().load_leaves(tmp_path, "train")
    with pytest.raises(ValueError, match="holds no image/label pairs"):
        LeafDataset().load_color_masks(tmp_path)
    with pytest.raises(ValueError, match="subset must be one of"):
        LeafDataset().load_color_masks(tmp_path, subset="test")


def test_coco_of_the_generators_leaves_loads_them_exactly(generated, tmp_path):
    """The generated leaves as COCO RLE (one image with a crowd region): load_coco gives them back,
    split like load_color_masks, crowds as class id -1."""
    import json

    from pycocotools import mask as mask_utils

    colour = LeafDataset()
    colour.load_color_masks(generated)
    images, annotations = [], []
    for k, info in enumerate(colour.image_info):
        masks, _ = colour.load_mask(k)
        images.append({"id": k, "file_name": Path(info["path"]).name, "height": SIZE, "width": SIZE})
        for leaf in range(masks.shape[-1]):
            rle = mask_utils.encode(np.asfortranarray(masks[..., leaf].astype(np.uint8)))
            annotations.append({"id": len(annotations), "image_id": k, "category_id": 7,
                                "iscrowd": int(k == 0 and leaf == 0),
                                "segmentation": {"size": [SIZE, SIZE], "counts": rle["counts"].decode()}})
    (tmp_path / "coco.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                    "categories": [{"id": 7, "name": "leaf"}]}))
    by_coco = LeafDataset()
    by_coco.load_coco(tmp_path / "coco.json", generated)
    assert [i["id"] for i in by_coco.image_info] == [i["id"] + "_rgb" for i in colour.image_info]  # file stems
    for image_id in range(COUNT):
        masks, class_ids = by_coco.load_mask(image_id)
        np.testing.assert_array_equal(masks, colour.load_mask(image_id)[0])
        assert class_ids.tolist() == [-1 if image_id == 0 and leaf == 0 else 1 for leaf in range(masks.shape[-1])]
    train, val = LeafDataset(), LeafDataset()
    train.load_coco(tmp_path / "coco.json", generated, "train")
    val.load_coco(tmp_path / "coco.json", generated, "val")
    assert sorted(i["id"] for i in train.image_info + val.image_info) == [i["id"] for i in by_coco.image_info]
    assert all(assign_subset(i["id"]) == "val" for i in val.image_info) and val.image_info


def test_plants_file_of_a_raw_scene_is_found_read_and_fitted_to_its_image(tmp_path, generated):
    """``<sample>_plants.png`` beside the label: an indexed or 16-bit gray PNG of plant ids, resized
    with the label under size_mismatch; None where there is none."""
    from leafseg.data.masks import save_indexed_png

    plants = np.zeros((SIZE, SIZE), np.uint16)
    plants[:, SIZE // 2:] = 300  # a 16-bit id
    plants[:10, :10] = 1
    for name in ("scene1", "scene2", "scene3"):
        (tmp_path / f"{name}_rgb.png").write_bytes((generated / "plant00000_rgb.png").read_bytes())
        (tmp_path / f"{name}_label.png").write_bytes((generated / "plant00000_label.png").read_bytes())
    Image.fromarray(plants).save(tmp_path / "scene1_plants.png")
    save_indexed_png((plants > 0).astype(np.uint8), tmp_path / "scene2_plants.png")
    dataset = LeafDataset()
    dataset.load_color_masks(tmp_path)
    dataset.prepare()
    assert [dataset.plants_path(i) for i in dataset.image_ids] == [tmp_path / "scene1_plants.png",
                                                                   tmp_path / "scene2_plants.png", None]
    np.testing.assert_array_equal(dataset.load_plants(0), plants)
    np.testing.assert_array_equal(dataset.load_plants(1), plants > 0)
    assert dataset.load_plants(2) is None
    # The prepared layout has no plants file: leafseg prepare does not copy it.
    prepare_dataset(tmp_path, tmp_path / "prepared", val_fraction=0, progress=False)
    prepared = LeafDataset()
    prepared.load_leaves(tmp_path / "prepared", "train")
    assert prepared.plants_path(0) is None and prepared.load_plants(0) is None

    # A label at twice the image's size: the plants file too, both resized to the image.
    (tmp_path / "scene3_label.png").unlink()
    label = np.asarray(Image.open(generated / "plant00000_label.png"))
    Image.fromarray(np.repeat(np.repeat(label, 2, axis=0), 2, axis=1)).save(tmp_path / "scene3_label.png")
    Image.fromarray(np.repeat(np.repeat(plants, 2, axis=0), 2, axis=1)).save(tmp_path / "scene3_plants.png")
    np.testing.assert_array_equal(dataset.load_plants(2), plants)

    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(tmp_path / "scene1_plants.png")
    with pytest.raises(ValueError, match=r"scene1_plants.png: a plants file holds one plant id per pixel"):
        dataset.load_plants(0)
    Image.fromarray(plants[:, :-1]).save(tmp_path / "scene1_plants.png")
    with pytest.raises(ValueError, match=rf"scene1_plants.png is {SIZE - 1}x{SIZE} but its label .*scene1_label.png "
                                         rf"is {SIZE}x{SIZE}"):
        dataset.load_plants(0)
