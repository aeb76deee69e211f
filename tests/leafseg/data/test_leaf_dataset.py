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


# ------------------------------------------------------------------------------ several classes

def _write_classed_sample(root, subset, sample, masks, classes=None, ignore=()):
    """A prepared sample of 32 x 32 squares: masks/<sample>_<k>.png, and sample.json naming their classes."""
    import json

    folder = Path(root) / subset / sample
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(folder / "images" / f"{sample}.png")
    for k, mask in enumerate(masks):
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{sample}_{k}.png")
    for k, mask in enumerate(ignore):
        (folder / "ignore").mkdir(exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "ignore" / f"{sample}_{k}.png")
    meta = {"source": "test"}
    if classes is not None:
        meta["classes"] = classes
    (folder / "sample.json").write_text(json.dumps(meta))


def _square(y, x, side=6):
    mask = np.zeros((32, 32), bool)
    mask[y:y + side, x:x + side] = True
    return mask


def test_a_prepared_root_with_classes_json_gives_each_mask_its_class(tmp_path):
    import json

    (tmp_path / "classes.json").write_text(json.dumps(["leaf", "stem"]))
    # Eleven masks: sorted naturally (_2 before _10), as sample.json's list is.
    masks = [_square(2 * (k % 4), 8 * (k // 4)) for k in range(11)]
    classes = ["stem" if k in (2, 10) else "leaf" for k in range(11)]
    _write_classed_sample(tmp_path, "train", "a", masks, classes, ignore=[_square(20, 20)])
    _write_classed_sample(tmp_path, "train", "b", masks[:2])  # no "classes" key: leaves
    dataset = LeafDataset()
    dataset.load_leaves(tmp_path, "train")
    dataset.prepare()
    assert dataset.class_names == ["BG", "leaf", "stem"] and dataset.num_classes == 3
    loaded, class_ids = dataset.load_mask(0)
    np.testing.assert_array_equal(loaded[..., :11], np.stack(masks, axis=-1))
    assert class_ids.tolist() == [2 if k in (2, 10) else 1 for k in range(11)] + [-1]
    assert dataset.load_mask(1)[1].tolist() == [1, 1]


def test_classes_json_and_sample_json_errors_name_the_file(tmp_path):
    import json

    (tmp_path / "classes.json").write_text(json.dumps(["leaf", "stem"]))
    _write_classed_sample(tmp_path, "train", "a", [_square(2, 2)], ["root"])
    _write_classed_sample(tmp_path, "train", "b", [_square(2, 2)], ["leaf", "stem"])
    dataset = LeafDataset()
    dataset.load_leaves(tmp_path, "train")
    with pytest.raises(ValueError, match=r"a/sample.json: class 'root' is not one of the classes \['leaf', 'stem'\]"):
        dataset.load_mask(0)
    with pytest.raises(ValueError, match=r"b/sample.json: \"classes\" names 2 classes but .* holds 1 masks"):
        dataset.load_mask(1)
    (tmp_path / "classes.json").write_text(json.dumps(["leaf", "leaf"]))
    with pytest.raises(ValueError, match="classes.json: class names must be distinct"):
        LeafDataset().load_leaves(tmp_path, "train")
    # Data of other classes cannot join a dataset whose images use the ids differently.
    (tmp_path / "classes.json").write_text(json.dumps(["stem", "leaf"]))
    plain = tmp_path / "plain"
    _write_classed_sample(plain, "train", "c", [_square(2, 2)])
    mixed = LeafDataset()
    mixed.load_leaves(plain, "train")
    with pytest.raises(ValueError, match=r"classes \['stem', 'leaf'\] differ from the classes \['leaf'\]"):
        mixed.load_leaves(tmp_path, "train")


def test_without_classes_every_mask_stays_a_leaf(tmp_path):
    _write_classed_sample(tmp_path, "train", "a", [_square(2, 2), _square(12, 12)], ["leaf", "stem"])
    dataset = LeafDataset()
    dataset.load_leaves(tmp_path, "train")  # no classes.json: sample.json's key is not read
    dataset.prepare()
    assert dataset.class_names == ["BG", "leaf"] and dataset.load_mask(0)[1].tolist() == [1, 1]


def _two_category_coco(tmp_path):
    import json

    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "p.png")
    square = lambda x, y, s: [[x, y, x + s, y, x + s, y + s, x, y + s]]  # noqa: E731
    annotations = [{"id": 1, "image_id": 1, "category_id": 3, "segmentation": square(2, 2, 8), "iscrowd": 0},
                   {"id": 2, "image_id": 1, "category_id": 5, "segmentation": square(20, 20, 6), "iscrowd": 0},
                   {"id": 3, "image_id": 1, "category_id": 3, "segmentation": square(2, 20, 6), "iscrowd": 1},
                   {"id": 4, "image_id": 1, "category_id": 9, "segmentation": square(20, 2, 6), "iscrowd": 0}]
    (tmp_path / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "p.png", "height": 32, "width": 32}], "annotations": annotations,
        "categories": [{"id": 3, "name": "leaf"}, {"id": 5, "name": "stem"}, {"id": 9, "name": "root"}]}))
    return tmp_path / "coco.json"


def test_coco_and_labelme_categories_become_classes(tmp_path):
    import json

    path = _two_category_coco(tmp_path)
    dataset = LeafDataset()
    dataset.load_coco(path, tmp_path, classes=["stem", "leaf"])  # ids in the order asked; root is not read
    dataset.prepare()
    assert dataset.class_names == ["BG", "stem", "leaf"]
    masks, class_ids = dataset.load_mask(0)
    assert class_ids.tolist() == [2, 1, -1] and masks[3, 3, 0] and masks[22, 22, 1]
    plain = LeafDataset()
    plain.load_coco(path, tmp_path)  # as before: every category a leaf
    plain.prepare()
    assert plain.class_names == ["BG", "leaf"] and plain.load_mask(0)[1].tolist() == [1, 1, -1, 1]
    with pytest.raises(ValueError, match="no category named 'flower'"):
        LeafDataset().load_coco(path, tmp_path, classes=["leaf", "flower"])
    folder = tmp_path / "labelme"
    folder.mkdir()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(folder / "p.png")
    shapes = [{"label": label, "points": [[x, y], [x + 6, y], [x + 6, y + 6], [x, y + 6]], "shape_type": "polygon"}
              for label, x, y in (("leaf", 2, 2), ("stem", 20, 20), ("leaf", 20, 2))]
    (folder / "p.json").write_text(json.dumps({"imagePath": "p.png", "imageHeight": 32, "imageWidth": 32,
                                               "shapes": shapes}))
    labelme = LeafDataset()
    labelme.load_labelme(folder, classes=["leaf", "stem"])
    labelme.prepare()
    assert labelme.class_names == ["BG", "leaf", "stem"] and labelme.load_mask(0)[1].tolist() == [1, 2, 1]


def test_a_set_prepared_with_classes_loads_each_mask_with_its_class(tmp_path):
    """leafseg prepare --coco --classes stem,leaf writes what load_leaves reads: the classes in that order."""
    import contextlib
    import io
    import json

    from leafseg.cli import prepare as prepare_command

    path = _two_category_coco(tmp_path)
    document = json.loads(path.read_text())
    document["annotations"] = [a for a in document["annotations"] if not a["iscrowd"]]  # prepare skips crowds
    path.write_text(json.dumps(document))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = prepare_command.main(["--coco", str(path), "--input", str(tmp_path), "--output", str(tmp_path / "out"),
                                       "--classes", "stem,leaf", "--val-fraction", "0"])
    assert status == 0
    dataset = LeafDataset()
    dataset.load_leaves(tmp_path / "out", "train")
    dataset.prepare()
    assert dataset.class_names == ["BG", "stem", "leaf"]
    masks, class_ids = dataset.load_mask(0)
    # The leaf (8 x 8 at 2, 2) and the stem (6 x 6 at 20, 20), in prepare's mask order; the root is not a class.
    assert sorted(zip(class_ids.tolist(), masks.sum(axis=(0, 1)).tolist())) == [(1, 36), (2, 64)]
