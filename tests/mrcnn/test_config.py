from pathlib import Path

import numpy as np
import pytest
import yaml

from mrcnn.config import Config, ConfigError, read_yaml_layers


class ShapesConfig(Config):
    NAME = "shapes"
    NUM_CLASSES = 1 + 3
    IMAGES_PER_GPU = 8
    GPU_COUNT = 2
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128


def test_matterport_defaults():
    c = Config()
    assert c.NAME is None
    assert (c.GPU_COUNT, c.IMAGES_PER_GPU, c.BATCH_SIZE) == (1, 2, 2)
    assert c.BACKBONE == "resnet101"
    assert c.BACKBONE_STRIDES == [4, 8, 16, 32, 64]
    assert c.RPN_ANCHOR_SCALES == (32, 64, 128, 256, 512)
    assert (c.PRE_NMS_LIMIT, c.POST_NMS_ROIS_TRAINING, c.POST_NMS_ROIS_INFERENCE) == (6000, 2000, 1000)
    assert (c.IMAGE_MIN_DIM, c.IMAGE_MAX_DIM, c.IMAGE_RESIZE_MODE) == (800, 1024, "square")
    np.testing.assert_allclose(c.MEAN_PIXEL, [123.7, 116.8, 103.9])
    np.testing.assert_allclose(c.RPN_BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])
    assert c.MINI_MASK_SHAPE == (56, 56) and c.MASK_SHAPE == [28, 28]
    assert (c.TRAIN_ROIS_PER_IMAGE, c.ROI_POSITIVE_RATIO) == (200, 0.33)
    assert (c.DETECTION_MAX_INSTANCES, c.DETECTION_MIN_CONFIDENCE, c.DETECTION_NMS_THRESHOLD) == (100, 0.7, 0.3)
    assert (c.LEARNING_RATE, c.LEARNING_MOMENTUM, c.WEIGHT_DECAY) == (0.001, 0.9, 0.0001)
    assert c.LOSS_WEIGHTS == {k: 1.0 for k in ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
                                                 "mrcnn_bbox_loss", "mrcnn_mask_loss")}
    assert (c.TRAIN_BN, c.USE_RPN_ROIS, c.GRADIENT_CLIP_NORM) == (False, True, 5.0)
    # The hard-coded Matterport widths, now config values with Matterport's defaults.
    assert (c.RPN_CONV_CHANNELS, c.MASK_HEAD_CHANNELS, c.TOP_DOWN_PYRAMID_SIZE) == (512, 256, 256)


def test_derived_values():
    c = ShapesConfig()
    assert c.BATCH_SIZE == 8 * 2
    np.testing.assert_array_equal(c.IMAGE_SHAPE, [128, 128, 3])
    assert c.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 4
    np.testing.assert_array_equal(c.backbone_shapes(), [[32, 32], [16, 16], [8, 8], [4, 4], [2, 2]])
    # ceil for sizes that do not divide: 100 / 64 -> 2
    np.testing.assert_array_equal(c.backbone_shapes((100, 60))[-1], [2, 1])
    crop = Config(IMAGE_RESIZE_MODE="crop", IMAGE_MIN_DIM=256)
    np.testing.assert_array_equal(crop.IMAGE_SHAPE, [256, 256, 3])


def test_derived_values_follow_overrides_and_cannot_be_set():
    c = ShapesConfig()
    c.IMAGES_PER_GPU = 1
    assert c.BATCH_SIZE == 2
    with pytest.raises(ConfigError, match="BATCH_SIZE is derived"):
        c.BATCH_SIZE = 4


def test_instances_do_not_share_mutable_defaults():
    a, b = Config(), Config()
    a.LOSS_WEIGHTS["mrcnn_mask_loss"] = 2.0
    a.MEAN_PIXEL[0] = 0.0
    assert b.LOSS_WEIGHTS["mrcnn_mask_loss"] == 1.0
    assert Config.LOSS_WEIGHTS["mrcnn_mask_loss"] == 1.0
    assert b.MEAN_PIXEL[0] == pytest.approx(123.7)


def test_subclass_class_attributes_and_overrides():
    c = ShapesConfig(DETECTION_MIN_CONFIDENCE=0.5)
    assert c.NAME == "shapes" and c.NUM_CLASSES == 4
    assert c.DETECTION_MIN_CONFIDENCE == 0.5
    assert ShapesConfig.DETECTION_MIN_CONFIDENCE == 0.7
    d = c.replace(IMAGES_PER_GPU=1)
    assert (d.BATCH_SIZE, c.BATCH_SIZE) == (2, 16)
    assert isinstance(d, ShapesConfig)


def test_from_dict_coerces_yaml_types():
    c = Config.from_dict({"MEAN_PIXEL": [1, 2, 3], "MINI_MASK_SHAPE": [28, 28], "LEARNING_RATE": "1e-4",
                          "RPN_ANCHOR_SCALES": [8, 16, 32, 64, 128]})
    assert isinstance(c.MEAN_PIXEL, np.ndarray) and c.MEAN_PIXEL.dtype == np.float64
    assert c.MINI_MASK_SHAPE == (28, 28)
    assert c.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128)
    assert c.LEARNING_RATE == 1e-4


def test_yaml_round_trip(tmp_path):
    c = ShapesConfig(RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), LEARNING_RATE=0.01)
    path = c.to_yaml(tmp_path / "shapes.yaml")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    loaded = ShapesConfig.from_yaml(path)
    assert loaded == c
    assert Config.from_yaml(path) == c  # the file holds every value, not only the differences


def test_to_dict_round_trip_accepts_consistent_derived_values():
    c = ShapesConfig()
    values = c.to_dict()
    assert values["BATCH_SIZE"] == 16 and values["IMAGE_SHAPE"] == [128, 128, 3]
    assert ShapesConfig.from_dict(values) == c
    values["BATCH_SIZE"] = 3
    with pytest.raises(ConfigError, match="BATCH_SIZE .* is derived"):
        ShapesConfig.from_dict(values)


def test_yaml_unknown_key_names_file_and_suggests(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"IMAGE_MAX_DIMS": 512}))
    with pytest.raises(ConfigError, match=r"unknown config key 'IMAGE_MAX_DIMS' in .*bad.yaml.*IMAGE_MAX_DIM"):
        Config.from_yaml(path)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*missing.yaml"):
        Config.from_yaml(tmp_path / "missing.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        Config.from_yaml(listed)
    broken = tmp_path / "broken.yaml"
    broken.write_text("A: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.from_yaml(broken)


def test_yaml_base_is_applied_first_relative_to_the_file(tmp_path):
    (tmp_path / "base.yaml").write_text("NAME: base\nIMAGES_PER_GPU: 4\nIMAGE_MIN_DIM: 256\nIMAGE_MAX_DIM: 256\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nIMAGES_PER_GPU: 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "grandchild.yaml").write_text("_BASE_: ../child.yaml\nNAME: grandchild\n")

    child = Config.from_yaml(tmp_path / "child.yaml")
    assert (child.NAME, child.IMAGES_PER_GPU, child.IMAGE_MAX_DIM, child.NUM_CLASSES) == ("base", 1, 256, 1)
    grandchild = ShapesConfig.from_yaml(tmp_path / "sub" / "grandchild.yaml", GPU_COUNT=1)
    assert (grandchild.NAME, grandchild.BATCH_SIZE, grandchild.IMAGE_MAX_DIM) == ("grandchild", 1, 256)
    assert grandchild.NUM_CLASSES == 4  # what no file sets comes from the class
    layers = read_yaml_layers(tmp_path / "sub" / "grandchild.yaml")
    assert [(Path(source).resolve(), values) for source, values in layers] == [
        (tmp_path.resolve() / "base.yaml", {"NAME": "base", "IMAGES_PER_GPU": 4, "IMAGE_MIN_DIM": 256, "IMAGE_MAX_DIM": 256}),
        (tmp_path.resolve() / "child.yaml", {"IMAGES_PER_GPU": 1}),
        (tmp_path.resolve() / "sub" / "grandchild.yaml", {"NAME": "grandchild"}),
    ]


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a.yaml": "_BASE_: b.yaml\nNAME: a\n", "b.yaml": "_BASE_: a.yaml\nNAME: b\n"},
         r"_BASE_ cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml$"),
        ({"a.yaml": "_BASE_: nowhere.yaml\n"}, r"cannot read config file .*nowhere\.yaml \(the _BASE_ of .*a\.yaml\)"),
        ({"a.yaml": "_BASE_: typo.yaml\n", "typo.yaml": "IMAGE_MAX_DIMS: 256\n"},
         r"unknown config key 'IMAGE_MAX_DIMS' in .*typo\.yaml; did you mean IMAGE_MAX_DIM"),
        ({"a.yaml": "_BASE_: [b.yaml]\n"}, r"_BASE_ in .*a\.yaml must be the path of a YAML file, got \['b.yaml'\]"),
    ],
)
def test_yaml_base_errors_name_the_files(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.from_yaml(tmp_path / "a.yaml")


def test_yaml_base_may_be_a_name_the_application_gives_a_file(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "shapes.yaml").write_text("NAME: shapes\nIMAGES_PER_GPU: 4\nIMAGE_MIN_DIM: 256\nIMAGE_MAX_DIM: 256\n")
    (shared / "beside.yaml").write_text("_BASE_: shapes.yaml\nNAME: beside\n")
    named = {"shapes": shared / "shapes.yaml", "beside": str(shared / "beside.yaml")}
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.yaml").write_text("_BASE_: shapes\nIMAGES_PER_GPU: 1\n")
    (mine / "b.yaml").write_text("_BASE_: a.yaml\n")                  # a path, whose base is a name
    (mine / "c.yaml").write_text("_BASE_: beside\nNAME: c\n")       # a name, whose base is a path beside it

    a = Config.from_yaml(mine / "a.yaml", named_bases=named, GPU_COUNT=1)
    assert (a.NAME, a.BATCH_SIZE, a.IMAGE_MAX_DIM) == ("shapes", 1, 256)
    assert [Path(source).name for source, _ in read_yaml_layers(mine / "b.yaml", named)] == ["shapes.yaml", "a.yaml",
                                                                                             "b.yaml"]
    assert [Path(source).name for source, _ in read_yaml_layers(mine / "c.yaml", named)] == ["shapes.yaml",
                                                                                             "beside.yaml", "c.yaml"]
    # A file of that name beside the file wins over the name.
    (mine / "shapes").write_text("NAME: local\n")
    assert Config.from_yaml(mine / "a.yaml", named_bases=named).NAME == "local"
    # Without named bases a name is a path, as before.
    (mine / "shapes").unlink()
    with pytest.raises(ConfigError, match=r"cannot read config file .*shapes \(the _BASE_ of .*a\.yaml\): [^;]*$"):
        Config.from_yaml(mine / "a.yaml")


def test_a_base_that_is_neither_a_file_nor_a_name_names_both(tmp_path):
    (tmp_path / "a.yaml").write_text("_BASE_: shapez\n")
    named = {"shapes": tmp_path / "s.yaml", "circles": tmp_path / "c.yaml"}
    with pytest.raises(ConfigError) as caught:
        Config.from_yaml(tmp_path / "a.yaml", named_bases=named)
    assert str(caught.value) == (f"cannot read config file {tmp_path / 'shapez'} (the _BASE_ of "
                                 f"{tmp_path / 'a.yaml'}): No such file or directory; nor is 'shapez' the name of a "
                                 "base: shapes, circles")
    (tmp_path / "a.yaml").write_text("_BASE_: 3\n")
    with pytest.raises(ConfigError, match="must be the path of a YAML file or the name of a base, got 3"):
        Config.from_yaml(tmp_path / "a.yaml", named_bases=named)


def test_yaml_text_cannot_name_a_base():
    with pytest.raises(ConfigError, match="_BASE_ in the config stored in w.h5: only a YAML file can name a base"):
        Config.from_yaml_text("_BASE_: a.yaml", source="the config stored in w.h5")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"IMAGE_MAX_DIM": 500}, r"IMAGE_MAX_DIM = 500 is invalid: expected divisible by 64 in square mode.*e\.g\. 512"),
        ({"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 200}, "IMAGE_MIN_DIM = 200 .* divisible by 64 in crop mode"),
        ({"RPN_ANCHOR_SCALES": (8, 16, 32)}, r"RPN_ANCHOR_SCALES .* one scale per stride .*5 strides.*got 3"),
        ({"IMAGE_RESIZE_MODE": "fit"}, "IMAGE_RESIZE_MODE = 'fit' .* one of none, square, pad64, crop"),
        ({"BACKBONE": "vgg16"}, "BACKBONE = 'vgg16'"),
        ({"BACKBONE": lambda x: x}, "COMPUTE_BACKBONE_SHAPE"),
        ({"NUM_CLASSES": 0}, "NUM_CLASSES = 0 .* positive integer"),
        ({"IMAGES_PER_GPU": 1.5}, "IMAGES_PER_GPU = 1.5"),
        ({"MEAN_PIXEL": [1.0, 2.0]}, "MEAN_PIXEL .* one value per channel"),
        ({"MASK_SHAPE": [56, 56]}, r"MASK_SHAPE .* \[28, 28\]"),
        ({"LOSS_WEIGHTS": {"rpn_class_loss": 1.0}}, "LOSS_WEIGHTS .* exactly the keys"),
        ({"DETECTION_MIN_CONFIDENCE": 1.5}, r"DETECTION_MIN_CONFIDENCE = 1.5 .* \[0, 1\]"),
        ({"RPN_BBOX_STD_DEV": [0.1, 0.1]}, "RPN_BBOX_STD_DEV .* four positive numbers"),
        ({"IMAGE_MIN_DIM": 2048}, r"IMAGE_MIN_DIM = 2048 .* <= IMAGE_MAX_DIM \(1024\)"),
        ({"TRAIN_BN": "yes"}, "TRAIN_BN = 'yes'"),
        ({"LEARNING_RATE": "fast"}, "LEARNING_RATE in arguments must be a number"),
    ],
)
def test_validation_errors_name_attribute_and_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Config(**overrides)


def test_validate_after_manual_assignment():
    c = Config()
    c.IMAGE_MAX_DIM = 500
    with pytest.raises(ConfigError, match="IMAGE_MAX_DIM = 500"):
        c.validate()


def test_callable_backbone_and_pad64_mode_accepted():
    def backbone(image, stage5=True, train_bn=False):
        return image

    c = Config(BACKBONE=backbone, COMPUTE_BACKBONE_SHAPE=lambda shape: [[shape[0] // 4, shape[1] // 4]],
               BACKBONE_STRIDES=[4], RPN_ANCHOR_SCALES=(16,))
    np.testing.assert_array_equal(c.backbone_shapes((64, 32, 3)), [[16, 8]])
    assert c.to_dict()["BACKBONE"].endswith("backbone")
    # pad64 does not need IMAGE_MAX_DIM divisible by 64: the padding makes it so.
    assert Config(IMAGE_RESIZE_MODE="pad64", IMAGE_MAX_DIM=500, IMAGE_MIN_DIM=400).IMAGE_RESIZE_MODE == "pad64"


def test_display_lists_every_attribute(capsys):
    ShapesConfig().display()
    out = capsys.readouterr().out
    assert "Configurations:" in out
    for name in ("NAME", "BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE", "RPN_ANCHOR_SCALES", "LOSS_WEIGHTS"):
        assert f"\n{name} " in out
    assert "shapes" in out


def test_yaml_text_round_trip_and_source_in_errors():
    c = ShapesConfig(RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), OPTIMIZER="adagrad")
    text = c.to_yaml_text()
    assert yaml.safe_load(text)["OPTIMIZER"] == "adagrad" and "BATCH_SIZE" not in yaml.safe_load(text)
    assert ShapesConfig.from_yaml_text(text) == c
    assert Config.from_yaml_text(text, IMAGES_PER_GPU=1).BATCH_SIZE == 2  # overrides on top
    with pytest.raises(ConfigError, match="unknown config key 'NUM_CLASS' in the config stored in w.h5"):
        Config.from_yaml_text("NUM_CLASS: 3", source="the config stored in w.h5")


def test_optimizer_is_a_validated_config_value():
    assert Config().OPTIMIZER == "sgd"
    assert Config(OPTIMIZER="adamw").OPTIMIZER == "adamw"
    with pytest.raises(ConfigError, match="OPTIMIZER = 'rmsprop' is invalid: expected one of sgd, adagrad, adam"):
        Config(OPTIMIZER="rmsprop")
    from mrcnn.config import OPTIMIZERS as config_optimizers
    from mrcnn.optimizers import OPTIMIZERS

    assert config_optimizers == OPTIMIZERS


def test_class_names_are_optional_and_set_num_classes():
    assert Config().CLASS_NAMES is None and Config(NUM_CLASSES=5).NUM_CLASSES == 5  # Matterport's way still works
    c = Config(CLASS_NAMES=["square", "circle"])
    assert (c.NUM_CLASSES, c.IMAGE_META_SIZE) == (3, 12 + 3)
    assert Config.from_yaml_text(c.to_yaml_text()) == c
    assert Config(CLASS_NAMES="square,circle") == c
    with pytest.raises(ConfigError, match=r"NUM_CLASSES = 4 but CLASS_NAMES = \['square', 'circle'\] names 2 classes"):
        Config(NUM_CLASSES=4, CLASS_NAMES=["square", "circle"])
