"""The leaf presets: each is one YAML file of the repository's ``configs/``, and only there.

``leaf_r101`` (:class:`LeafConfig`, the seed post's ResNet101 configuration), ``quickstart_cpu``
(:class:`QuickstartConfig`, a small model for a first run on a CPU) and ``leaf_small``
(:class:`LeafSmallConfig`, the shipped ``leaf-small`` model). The classes are built from the
files when this module is imported, so ``from leafseg.config import LeafConfig`` and
``class MyConfig(LeafConfig)`` work as with Matterport's config classes; why each value is what
it is stands in the files' comments. setup.py installs ``configs/`` as the package
``leafseg.configs``.

A YAML file of one's own may start from a preset by name, wherever leafseg reads a config file
(:func:`load_config`, ``--config`` of the commands)::

    _BASE_: leaf_small          # or a path relative to this file, e.g. ../configs/leaf_small.yaml
    IMAGE_MAX_DIM: 512

Classes: ``CLASS_NAMES`` (:class:`mrcnn.config.Config`'s, not Matterport's) names classes 1..N
in id order, ``[leaf]`` in every preset, and NUM_CLASSES = 1 + len(CLASS_NAMES). Setting it alone
(``--set CLASS_NAMES=leaf,stem``, a YAML file) sets NUM_CLASSES. It is stored in the config YAML
of runs and weights files, so predict and evaluate know the names from the weights alone; a
config written before it (none stored) is read as one class, leaf (:func:`class_names`).
"""
from pathlib import Path

from mrcnn.config import Config, read_yaml_layers


def preset_dir() -> Path:
    """The folder of the preset files: the installed package ``leafseg.configs`` or, in a source
    checkout (installed in editable mode or not installed), the repository's ``configs/``."""
    package = Path(__file__).resolve().parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def preset_files() -> dict:
    """{preset name: its YAML file}: the bases a ``_BASE_`` can name (``_BASE_: leaf_small``),
    as :func:`mrcnn.config.read_yaml_layers`'s ``named_bases``."""
    return {path.stem: path for path in sorted(preset_dir().glob("*.yaml"))}


def preset_class(name: str, class_name: str, base: type = Config) -> type:
    """A subclass of ``base`` named ``class_name`` whose attributes are the values of the preset
    file ``name``.yaml (its ``_BASE_`` chain merged); its docstring is the file's header comment.
    ``base`` is the class of the preset the file's ``_BASE_`` names, so that the classes follow
    the files (``isinstance(QuickstartConfig(), LeafConfig)``)."""
    path = preset_dir() / f"{name}.yaml"
    bases = preset_files()
    config = Config.from_yaml(path, named_bases=bases)
    keys = {key for _, values in read_yaml_layers(path, bases) for key in values}
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:].strip())
    attributes = {key: getattr(config, key) for key in sorted(keys)}
    attributes.update(__module__=__name__, __qualname__=class_name, __doc__="\n".join(header))
    return type(class_name, (base,), attributes)


LeafConfig = preset_class("leaf_r101", "LeafConfig")
QuickstartConfig = preset_class("quickstart_cpu", "QuickstartConfig", LeafConfig)
LeafSmallConfig = preset_class("leaf_small", "LeafSmallConfig", QuickstartConfig)

PRESETS = {"leaf_r101": LeafConfig, "quickstart_cpu": QuickstartConfig, "leaf_small": LeafSmallConfig}


def load_config(name_or_path="leaf_r101", **overrides):
    """A leaf config from a preset name (``leaf_r101``, ``quickstart_cpu``, ``leaf_small``) or a
    YAML file.

    A YAML file (and its ``_BASE_`` chain) is applied on top of :class:`LeafConfig`; ``overrides``
    (attribute=value) last. A ``_BASE_`` is a path relative to the file naming it or, where no
    such file exists, a preset name (:func:`preset_files`).
    """
    if name_or_path in PRESETS:
        return PRESETS[name_or_path](**overrides)
    path = Path(name_or_path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"unknown config {name_or_path!r}: a preset ({', '.join(PRESETS)}) or a .yaml file")
    return LeafConfig.from_yaml(path, named_bases=preset_files(), **overrides)


def config_for_weights(weights, **overrides):
    """The config that ``weights`` were trained with, and where it came from (for messages).

    In order: the config stored in the weights file (every ``.weights.h5`` leafseg writes has
    one), the ``config.yaml`` beside it, else the ``leaf_r101`` preset with a warning saying so.
    ``overrides`` (attribute=value) are applied on top.
    """
    import logging

    from mrcnn.weights import WeightsError, read_metadata

    weights = Path(weights)
    metadata = None
    if weights.is_file():
        try:
            metadata = read_metadata(weights)
        except WeightsError:
            metadata = None  # not a weights file: loading it reports that
    if metadata is not None and metadata.config_yaml:
        source = f"the config stored in {weights}"
        return LeafConfig.from_yaml_text(metadata.config_yaml, source=source, **overrides), source
    beside = weights.parent / "config.yaml"
    if beside.is_file():
        return load_config(str(beside), **overrides), str(beside)
    logging.getLogger(__name__).warning(
        "%s stores no config and has no config.yaml beside it: using the leaf_r101 preset (pass --config "
        "if the weights were trained with another one)", weights)
    return load_config("leaf_r101", **overrides), "leaf_r101 (default)"


def coco_mismatches(config):
    """How ``config`` differs from the architecture of Matterport's COCO weights ([] when it fits):
    "BACKBONE resnet18 (COCO: resnet101)", ..."""
    coco = {"BACKBONE": "resnet101", "BACKBONE_WIDTH": 1.0, "TOP_DOWN_PYRAMID_SIZE": 256, "RPN_CONV_CHANNELS": 512,
            "FPN_CLASSIF_FC_LAYERS_SIZE": 1024, "MASK_HEAD_CHANNELS": 256, "POOL_SIZE": 7,
            "IMAGE_CHANNEL_COUNT": 3}
    out = [f"{name} {getattr(config, name)} (COCO: {value})" for name, value in coco.items()
           if getattr(config, name) != value]
    if len(config.RPN_ANCHOR_RATIOS) != 3:
        out.append(f"{len(config.RPN_ANCHOR_RATIOS)} RPN_ANCHOR_RATIOS (COCO: 3)")
    return out


def class_names(config) -> list:
    """The names of a config's classes 1..N in id order: its CLASS_NAMES; for a config without
    them (written before CLASS_NAMES, or a plain mrcnn Config), ["leaf"] for one class, else
    class_1, class_2, ..."""
    names = getattr(config, "CLASS_NAMES", None)
    if names:
        return [str(n) for n in names]
    count = int(getattr(config, "NUM_CLASSES", 2)) - 1
    return ["leaf"] if count == 1 else [f"class_{i}" for i in range(1, count + 1)]
