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


def test_leaf_small_yaml_is_the_same_config():
    from leafseg.config import LeafSmallConfig, load_config

    assert load_config(str(CONFIGS / "leaf_small.yaml")) == LeafSmallConfig() == load_config("leaf_small")
    assert LeafSmallConfig().IMAGE_MAX_DIM == 384 and LeafSmallConfig().BACKBONE == "resnet18"


def test_presets_carry_their_optimizer():
    from leafseg.config import QuickstartConfig, load_config

    assert LeafConfig().OPTIMIZER == "sgd"
    assert QuickstartConfig().OPTIMIZER == "adam"
    assert load_config(str(CONFIGS / "quickstart_cpu.yaml")).OPTIMIZER == "adam"


def _weights_file(path, config=None):
    """An HDF5 file standing in for weights: only what resolve_config reads (its metadata)."""
    import h5py

    from mrcnn import weights as W

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_group("layers")
    if config is not None:
        W.write_metadata(path, config.to_yaml_text(), ["BG", "leaf"])
    return path


def test_config_order_flag_then_the_files_own_then_beside_then_leaf_r101(tmp_path, caplog):
    import logging

    from leafseg.config import QuickstartConfig, load_config
    from leafseg.loading import resolve_config

    own = QuickstartConfig(DETECTION_MIN_CONFIDENCE=0.4)
    beside = LeafConfig(IMAGE_MIN_DIM=384, IMAGE_MAX_DIM=384)
    with_both = _weights_file(tmp_path / "a" / "m.weights.h5", own)
    beside.to_yaml(tmp_path / "a" / "config.yaml")
    only_beside = _weights_file(tmp_path / "b" / "m.weights.h5")
    beside.to_yaml(tmp_path / "b" / "config.yaml")
    bare = _weights_file(tmp_path / "c" / "m.weights.h5")

    # 1. --config wins over everything.
    config, source = resolve_config("quickstart_cpu", with_both, IMAGES_PER_GPU=1)
    assert config == QuickstartConfig(IMAGES_PER_GPU=1) and source == "quickstart_cpu"
    # 2. The config stored in the weights file, with the inference overrides on top.
    config, source = resolve_config(None, with_both, IMAGES_PER_GPU=1)
    assert config == own.replace(IMAGES_PER_GPU=1) and str(with_both) in source
    # 3. The config.yaml beside a file without one.
    config, source = resolve_config(None, only_beside, IMAGES_PER_GPU=1)
    assert config == load_config(str(tmp_path / "b" / "config.yaml"), IMAGES_PER_GPU=1)
    assert config.IMAGE_MAX_DIM == 384 and source == str(tmp_path / "b" / "config.yaml")
    # 4. leaf_r101, with a warning that says so.
    with caplog.at_level(logging.WARNING):
        config, source = resolve_config(None, bare, IMAGES_PER_GPU=1)
    assert config == LeafConfig(IMAGES_PER_GPU=1) and source.startswith("leaf_r101")
    assert any("using the leaf_r101 preset" in r.getMessage() and str(bare) in r.getMessage()
               for r in caplog.records)


def test_coco_fits_only_resnet101_presets():
    from leafseg.config import QuickstartConfig, coco_mismatches

    assert coco_mismatches(LeafConfig()) == []
    assert coco_mismatches(QuickstartConfig())[:2] == ["BACKBONE resnet18 (COCO: resnet101)",
                                                       "BACKBONE_WIDTH 0.5 (COCO: 1.0)"]
