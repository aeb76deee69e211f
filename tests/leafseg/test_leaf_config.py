import ast
from pathlib import Path

import numpy as np
import pytest

import leafseg.config
from leafseg.config import PRESETS, LeafConfig, LeafSmallConfig, QuickstartConfig, coco_mismatches, load_config
from mrcnn.config import Config, read_yaml_layers

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


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


def test_each_preset_class_is_its_yaml_file():
    assert leafseg.config.preset_dir() == CONFIGS  # a checkout reads the repository's configs/
    assert set(PRESETS) == {path.stem for path in CONFIGS.glob("*.yaml")}
    for name, cls in PRESETS.items():
        path = CONFIGS / f"{name}.yaml"
        assert cls() == load_config(name) == load_config(str(path)) == Config.from_yaml(path), name
        assert (cls.__module__, cls.__qualname__) == ("leafseg.config", cls.__name__)
        assert getattr(leafseg.config, cls.__name__) is cls and issubclass(cls, Config)
        # The docstring is the file's header comment.
        assert cls.__doc__.startswith(f"{name} (leafseg.config.{cls.__name__}): "), cls.__doc__


def test_presets_start_from_their_bases():
    files = [Path(source).name for source, _ in read_yaml_layers(CONFIGS / "leaf_small.yaml")]
    assert files == ["leaf_r101.yaml", "quickstart_cpu.yaml", "leaf_small.yaml"]
    # Inherited from leaf_r101.yaml, which alone lists them.
    for cls in (QuickstartConfig, LeafSmallConfig):
        assert cls.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128) and cls.ADD_GT_AS_PROPOSALS is True
    # Inherited from quickstart_cpu.yaml, and overridden by leaf_small.yaml.
    assert (LeafSmallConfig.BACKBONE, LeafSmallConfig.TRAIN_BN, LeafSmallConfig.OPTIMIZER) == ("resnet18", True, "adam")
    assert (QuickstartConfig.DETECTION_MIN_CONFIDENCE, LeafSmallConfig.DETECTION_MIN_CONFIDENCE) == (0.5, 0.7)
    assert (QuickstartConfig.DETECTION_MASK_OVERLAP_THRESHOLD, LeafSmallConfig.DETECTION_MASK_OVERLAP_THRESHOLD) == (None, 0.3)
    # The classes follow the files: each preset's class derives from its _BASE_'s.
    assert LeafSmallConfig.__mro__[:4] == (LeafSmallConfig, QuickstartConfig, LeafConfig, Config)
    assert isinstance(LeafSmallConfig(), LeafConfig)


def test_the_yaml_files_are_the_only_source_of_preset_values():
    """leafseg/config.py assigns no config attribute: every preset value is in configs/*.yaml."""
    attributes = set(Config._attribute_names())
    tree = ast.parse(Path(leafseg.config.__file__).read_text(encoding="utf-8"))
    assigned = [node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)]
    keywords = [node.arg for node in ast.walk(tree) if isinstance(node, ast.keyword)]
    assert not attributes & {*assigned, *keywords}


def test_an_installed_leafseg_reads_the_presets_of_leafseg_configs(tmp_path, monkeypatch):
    """setup.py installs configs/ as the package leafseg.configs, which preset_dir finds."""
    tree = ast.parse((CONFIGS.parent / "setup.py").read_text(encoding="utf-8"))
    setup = {k.arg: k.value for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", "") == "setup" for k in node.keywords}
    assert ast.literal_eval(setup["package_dir"]) == {"leafseg.configs": "configs"}
    assert ast.literal_eval(setup["package_data"])["leafseg.configs"] == ["*.yaml"]
    assert "leafseg.configs" in ast.unparse(setup["packages"]) and (CONFIGS / "__init__.py").is_file()
    (tmp_path / "leafseg" / "configs").mkdir(parents=True)
    monkeypatch.setattr(leafseg.config, "__file__", str(tmp_path / "leafseg" / "config.py"))
    assert leafseg.config.preset_dir() == tmp_path / "leafseg" / "configs"


def test_presets_resolve_by_name_and_unknown_names_are_errors():
    assert load_config("leaf_r101", IMAGES_PER_GPU=1).BATCH_SIZE == 1
    assert LeafSmallConfig().IMAGE_MAX_DIM == 384 and LeafSmallConfig().BACKBONE == "resnet18"
    with pytest.raises(ValueError, match="unknown config 'r50'"):
        load_config("r50")


def test_a_file_of_ones_own_starts_from_a_preset_by_name(tmp_path):
    from leafseg.models.loading import resolve_config

    mine = tmp_path / "my.yaml"
    mine.write_text("_BASE_: leaf_small\nIMAGE_MIN_DIM: 512\nIMAGE_MAX_DIM: 512\n")
    config = load_config(str(mine), IMAGES_PER_GPU=1)
    assert config == LeafSmallConfig(IMAGE_MIN_DIM=512, IMAGE_MAX_DIM=512, IMAGES_PER_GPU=1)
    assert leafseg.config.preset_files() == {name: CONFIGS / f"{name}.yaml" for name in PRESETS}
    # What --config of the commands reads (leafseg.models.loading.resolve_config), and train's.
    config, source = resolve_config(str(mine), None, DETECTION_MIN_CONFIDENCE=0.6)
    assert (config.BACKBONE, config.IMAGE_MAX_DIM, config.DETECTION_MIN_CONFIDENCE, source) == (
        "resnet18", 512, 0.6, str(mine))
    # A base of one's own, by path, whose base is a preset.
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("_BASE_: ../my.yaml\nDETECTION_MAX_INSTANCES: 100\n")
    child = load_config(str(tmp_path / "sub" / "child.yaml"))
    assert (child.NAME, child.IMAGE_MAX_DIM, child.DETECTION_MAX_INSTANCES) == ("leaf_small", 512, 100)
    # A preset by path still works, and a file beside the YAML wins over a preset's name.
    (tmp_path / "by_path.yaml").write_text(f"_BASE_: {CONFIGS / 'quickstart_cpu.yaml'}\n")
    assert load_config(str(tmp_path / "by_path.yaml")) == QuickstartConfig()
    (tmp_path / "leaf_small").write_text("_BASE_: leaf_r101.yaml\nNAME: mine\n")
    (tmp_path / "leaf_r101.yaml").write_text("IMAGES_PER_GPU: 3\n")
    beside = load_config(str(mine))
    assert (beside.NAME, beside.IMAGES_PER_GPU, beside.BACKBONE, beside.IMAGE_MAX_DIM) == ("mine", 3, "resnet101", 512)


def test_an_unknown_base_is_named_with_the_presets(tmp_path):
    mine = tmp_path / "my.yaml"
    mine.write_text("_BASE_: leaf_smal\n")
    with pytest.raises(ValueError) as caught:
        load_config(str(mine))
    presets = ", ".join(sorted(PRESETS))
    assert str(caught.value) == (f"cannot read config file {tmp_path / 'leaf_smal'} (the _BASE_ of {mine}): No such "
                                 f"file or directory; nor is 'leaf_smal' the name of a base: {presets}")


def test_leaf_small_is_the_config_stored_in_the_shipped_model(monkeypatch):
    from leafseg.models import zoo
    from mrcnn.weights import read_metadata

    monkeypatch.delenv(zoo.ZOO_DIR_ENV, raising=False)
    path = zoo.path("leaf-small")
    stored = Config.from_yaml_text(read_metadata(path).config_yaml, source=str(path))
    # The file predates CLASS_NAMES (none stored): read as a leaf config, it is one class, leaf.
    unnamed = {k: v for k, v in LeafSmallConfig().to_dict().items() if k != "CLASS_NAMES"}
    assert stored.CLASS_NAMES is None and {k: v for k, v in stored.to_dict().items() if k != "CLASS_NAMES"} == unnamed
    assert LeafSmallConfig.from_yaml_text(read_metadata(path).config_yaml).CLASS_NAMES == ["leaf"]


def test_a_subclass_of_a_preset_keeps_its_values_and_overrides():
    class MyConfig(LeafConfig):
        NAME = "mine"
        IMAGES_PER_GPU = 1

    c = MyConfig(DETECTION_MIN_CONFIDENCE=0.6)
    assert (c.NAME, c.BATCH_SIZE, c.DETECTION_MIN_CONFIDENCE) == ("mine", 1, 0.6)
    assert c.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128) and LeafConfig.NAME == "leaf"


def test_presets_carry_their_optimizer():
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

    from leafseg.models.loading import resolve_config

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
    assert coco_mismatches(LeafConfig()) == []
    assert coco_mismatches(QuickstartConfig())[:2] == ["BACKBONE resnet18 (COCO: resnet101)",
                                                       "BACKBONE_WIDTH 0.5 (COCO: 1.0)"]


# ------------------------------------------------------------------------------ several classes

def test_class_names_default_to_leaf_and_set_num_classes():
    from mrcnn.config import ConfigError

    assert (LeafConfig().CLASS_NAMES, LeafSmallConfig().NUM_CLASSES) == (["leaf"], 2)
    # CLASS_NAMES alone sets NUM_CLASSES: as an argument, a --set value ("leaf,stem"), replace() and a YAML file.
    assert LeafSmallConfig(CLASS_NAMES=["leaf", "stem"]).NUM_CLASSES == 3
    assert load_config("leaf_small", CLASS_NAMES="leaf, stem,root").CLASS_NAMES == ["leaf", "stem", "root"]
    assert LeafSmallConfig().replace(CLASS_NAMES=["leaf", "stem"]).NUM_CLASSES == 3
    three = LeafSmallConfig(CLASS_NAMES=["leaf", "stem", "root"])
    text = three.to_yaml_text()
    assert "CLASS_NAMES" in text and LeafConfig.from_yaml_text(text) == three
    # Both given and disagreeing: an error naming both.
    with pytest.raises(ConfigError, match=r"NUM_CLASSES = 3 but CLASS_NAMES = \['leaf'\] names 1 class.*must be 2"):
        LeafConfig(NUM_CLASSES=3)
    with pytest.raises(ConfigError, match="NUM_CLASSES = 2 but CLASS_NAMES"):
        LeafConfig(NUM_CLASSES=2, CLASS_NAMES=["leaf", "stem"])
    for bad in ([], ["leaf", "leaf"], ["BG", "leaf"], ["leaf", ""]):
        with pytest.raises(ConfigError, match="CLASS_NAMES"):
            LeafConfig(CLASS_NAMES=bad)


def test_a_config_written_before_class_names_is_one_class_leaf(tmp_path):
    from leafseg.config import class_names

    old = {k: v for k, v in LeafSmallConfig().to_dict().items() if k != "CLASS_NAMES"}
    (tmp_path / "old.yaml").write_text(__import__("yaml").safe_dump(old))
    assert load_config(str(tmp_path / "old.yaml")).CLASS_NAMES == ["leaf"]
    # A plain mrcnn Config has no names: one class is leaf, more are numbered.
    assert class_names(Config()) == [] and class_names(Config(NUM_CLASSES=2)) == ["leaf"]
    assert class_names(Config(NUM_CLASSES=3)) == ["class_1", "class_2"]
    assert class_names(LeafSmallConfig(CLASS_NAMES=["leaf", "stem"])) == ["leaf", "stem"]
