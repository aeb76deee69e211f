from pathlib import Path

import numpy as np

from leafseg.config import LeafConfig
from mrcnn.config import Config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_leaf_config_values_of_the_seed_post():
    c = LeafConfig()
    assert (c.NAME, c.NUM_CLASSES, c.BACKBONE) == ("leaf", 2, "resnet101")
    assert c.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128)
    assert c.RPN_TRAIN_ANCHORS_PER_IMAGE == 256
    assert (c.PRE_NMS_LIMIT, c.POST_NMS_ROIS_TRAINING, c.POST_NMS_ROIS_INFERENCE) == (6000, 2000, 1000)
    np.testing.assert_array_equal(c.IMAGE_SHAPE, [512, 512, 3])
    shapes = c.backbone_shapes()
    np.testing.assert_array_equal(shapes, [[128, 128], [64, 64], [32, 32], [16, 16], [8, 8]])
    assert len(c.RPN_ANCHOR_RATIOS) * int(np.prod(shapes, axis=1).sum()) == 3 * (128**2 + 64**2 + 32**2 + 16**2 + 8**2)


def test_yaml_preset_is_the_same_config():
    path = CONFIGS / "leaf_r101.yaml"
    assert LeafConfig.from_yaml(path) == LeafConfig()
    assert Config.from_yaml(path).to_dict() == LeafConfig().to_dict()


def test_quickstart_yaml_is_the_same_config_and_presets_resolve():
    from leafseg.config import QuickstartConfig, load_config

    assert load_config(str(CONFIGS / "quickstart_cpu.yaml")) == QuickstartConfig()
    assert load_config("quickstart_cpu") == QuickstartConfig()
    assert load_config("leaf_r101", IMAGES_PER_GPU=1).BATCH_SIZE == 1
    import pytest

    with pytest.raises(ValueError, match="unknown config 'r50'"):
        load_config("r50")
