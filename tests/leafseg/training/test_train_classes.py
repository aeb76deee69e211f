"""``leafseg train`` with several classes (issue 26, item 5): the classes come from the prepared
set's classes.json, weights of another NUM_CLASSES load without their class-specific heads, and
the checkpoints carry the class names. One training run of one step (30-60 s to trace on a CPU)."""
import json
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from leafseg.training import train as T
from mrcnn import model as modellib
from mrcnn.weights import COCO_EXCLUDE, read_metadata
from tests.toy_data import ToyConfig, shapes_dataset

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

CLASSES = ["rectangle", "ellipse"]


def write_classed(root, subsets, classes=CLASSES):
    """Toy shapes in the prepared layout with classes.json: each shape's class is its kind."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(classes))
    for subset, dataset in subsets.items():
        for image_id in dataset.image_ids:
            name = f"{subset}_{image_id}"
            folder = root / subset / name
            (folder / "images").mkdir(parents=True)
            (folder / "masks").mkdir()
            cv2.imwrite(str(folder / "images" / f"{name}.png"), dataset.load_image(image_id)[..., ::-1])
            masks, _ = dataset.load_mask(image_id)
            for k in range(masks.shape[-1]):
                cv2.imwrite(str(folder / "masks" / f"{name}_{k}.png"), masks[..., k].astype(np.uint8) * 255)
            kinds = [shape[0] for shape in dataset._instances(image_id)]
            (folder / "sample.json").write_text(json.dumps({"classes": kinds}))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("classes")
    dataset = write_classed(root / "data", {"train": shapes_dataset(2, seed=0), "val": shapes_dataset(1, seed=1)})
    ToyConfig().to_yaml(root / "toy.yaml")
    # Weights of the one-class toy model (built, not trained): what leaf-small is to a leaf + stem set.
    one_class = modellib.MaskRCNN("training", ToyConfig(), root / "one")
    weights = one_class.save_weights(root / "one_class.weights.h5")
    return types.SimpleNamespace(root=root, dataset=dataset, config=root / "toy.yaml", weights=Path(weights),
                                 one_class=one_class)


def _args(data, *extra):
    return T.build_parser().parse_args(["--config", str(data.config), "--dataset", str(data.dataset), "--logs",
                                        str(data.root / "logs"), *extra])


def test_the_data_s_classes_make_the_config(data):
    from leafseg.config import class_names

    args = _args(data, "--stage", "heads", "--epochs", "1", "--weights", "none")
    config = T.build_config(args, 1)
    assert (config.NUM_CLASSES, class_names(config)) == (2, ["leaf"])  # (toy.yaml: CLASS_NAMES null)
    train, val = T.load_datasets(args.dataset, config)
    assert train.class_names == val.class_names == ["BG", "rectangle", "ellipse"]
    config = T.config_for_classes(config, train, args)
    assert (config.NUM_CLASSES, config.CLASS_NAMES) == (3, CLASSES)
    # --resume of a run trained with other classes: an error naming both.
    resume = _args(data, "--resume")
    resume.config = None
    with pytest.raises(T.SetupError,
                       match=r"trained with the classes \['leaf'\] but .* has \['rectangle', 'ellipse'\]"):
        T.config_for_classes(T.build_config(_args(data, "--resume"), 1), train, resume)


def test_train_and_val_of_other_classes_is_an_error_naming_both(data, tmp_path):
    from leafseg.data.dataset import LeafDataset

    other = write_classed(tmp_path / "other", {"val": shapes_dataset(1, seed=1)}, ["ellipse", "rectangle"])
    train, val = LeafDataset(), LeafDataset()
    train.load_leaves(data.dataset, "train")
    val.load_leaves(other, "val")
    train.prepare()
    val.prepare()
    with pytest.raises(T.SetupError, match=r"different classes: train \['rectangle', 'ellipse'\], "
                                           r"val \['ellipse', 'rectangle'\]"):
        T.check_same_classes(train, val, data.dataset)


def test_weights_of_another_num_classes_load_without_their_heads(data):
    config = ToyConfig(CLASS_NAMES=CLASSES)
    model = modellib.MaskRCNN("training", config, data.root / "three")
    args = _args(data, "--stage", "heads", "--epochs", "1", "--weights", str(data.weights))
    start = T.load_start_weights(model, args)
    assert start.source == "file"
    loaded = {w.path: w.numpy() for w in model.keras_model.weights}
    source = {w.path: w.numpy() for w in data.one_class.keras_model.weights}
    heads = [path for path in source if path.split("/")[0] in COCO_EXCLUDE]
    assert heads and all(path in loaded for path in source)
    for path, value in source.items():
        if path.split("/")[0] not in COCO_EXCLUDE:
            np.testing.assert_array_equal(loaded[path], value, err_msg=path)
    assert loaded["mrcnn_class_logits/kernel"].shape[-1] == 3 != source["mrcnn_class_logits/kernel"].shape[-1]


def test_a_two_class_set_trains_a_model_that_stores_its_classes(data):
    result = T.run(["--dataset", str(data.dataset), "--logs", str(data.root / "run_logs"),
                    "--weights", str(data.weights), "--stage", "heads", "--epochs", "1", "--steps-per-epoch", "1", "--validation-steps", "0",
                    "--verbose", "0"])
    assert result.checkpoint and result.model.config.CLASS_NAMES == CLASSES
    metadata = read_metadata(result.checkpoint)
    assert metadata.class_names == ["BG", *CLASSES]
    from leafseg.config import config_for_weights

    stored, _ = config_for_weights(result.checkpoint)
    assert (stored.NUM_CLASSES, stored.CLASS_NAMES) == (3, CLASSES)
