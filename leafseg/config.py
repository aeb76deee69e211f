"""LeafConfig: the leaf configuration of the seed post, on top of Matterport's defaults.

ResNet101-FPN from COCO weights, 512x512 square inputs, small anchors (8..128 pixels on
P2..P6) because leaves are small objects, 256 RPN training anchors per image and
6000 -> 2000 (training) / 1000 (inference) proposals. ``configs/leaf_r101.yaml`` holds the
same values for users who prefer files; a test keeps the two identical.
"""
from mrcnn.config import Config


class LeafConfig(Config):
    """Leaf instance segmentation: one class (leaf) plus background."""

    NAME = "leaf"
    NUM_CLASSES = 1 + 1  # background + leaf
    BACKBONE = "resnet101"

    IMAGES_PER_GPU = 2
    # 8,000 training images (80% of the 10,000 synthetic rosettes) at 2 per step: one
    # epoch is a full pass; the seed trained 9 epochs of heads, then all layers to epoch 79.
    STEPS_PER_EPOCH = 4000
    VALIDATION_STEPS = 50

    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 512
    IMAGE_MAX_DIM = 512

    # One anchor size per pyramid level P2..P6; the default 32 smallest missed small leaves.
    # 3 ratios x (128^2 + 64^2 + 32^2 + 16^2 + 8^2) = 65,472 anchors at 512x512.
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    PRE_NMS_LIMIT = 6000
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    # A rosette has 4..22 leaves (CVPPP A1: 11..20); 50 leaves is a generous cap.
    MAX_GT_INSTANCES = 50
    DETECTION_MAX_INSTANCES = 50

    # The heads also sample from the ground-truth boxes (Detectron's and torchvision's
    # default): every leaf is a positive ROI from the first step, not only once the RPN finds it.
    ADD_GT_AS_PROPOSALS = True


class QuickstartConfig(LeafConfig):
    """A first run on a laptop CPU: a small model trained from scratch on generated rosettes.

    Quarter-size images, a half-width ResNet-18, narrow FPN/RPN/heads and fewer proposals and
    sampled ROIs, so a step takes a fraction of a second on two cores. BatchNorm trains,
    because from random initialisation frozen statistics (mean 0, variance 1) would pass the
    raw pixel scale through the network. ``configs/quickstart_cpu.yaml`` holds the same values.
    """

    NAME = "leaf_quickstart"
    BACKBONE = "resnet18"
    BACKBONE_WIDTH = 0.5
    TRAIN_BN = True

    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 50
    VALIDATION_STEPS = 5

    IMAGE_MIN_DIM = 256
    IMAGE_MAX_DIM = 256

    TOP_DOWN_PYRAMID_SIZE = 64
    RPN_CONV_CHANNELS = 64
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    MASK_HEAD_CHANNELS = 64

    PRE_NMS_LIMIT = 2000
    POST_NMS_ROIS_TRAINING = 1000
    POST_NMS_ROIS_INFERENCE = 300
    TRAIN_ROIS_PER_IMAGE = 128
    MAX_GT_INSTANCES = 30
    DETECTION_MAX_INSTANCES = 30
    DETECTION_MIN_CONFIDENCE = 0.5
    MINI_MASK_SHAPE = (28, 28)

    # From scratch, Adam gets a small model going far faster than SGD (the demo and
    # ``leafseg train`` use it unless --optimizer says otherwise).
    OPTIMIZER = "adam"
    LEARNING_RATE = 0.001


class LeafSmallConfig(QuickstartConfig):
    """``leaf-small``, the pretrained model that ships with leafseg (``leafseg.zoo``).

    The quickstart architecture (half-width ResNet-18 FPN, narrow heads: a 16 MB file) at
    384 px, so the small leaves of a 500 px photograph keep most of their pixels; up to 40
    leaves. Trained from scratch on domain-randomised rosettes with the ``domain``
    augmentation (``configs/leaf_small.yaml``, ``leafseg recipe leaf-small``; see
    docs/MODEL_CARD_leaf_small.md).
    """

    NAME = "leaf_small"
    STEPS_PER_EPOCH = 200
    VALIDATION_STEPS = 10

    IMAGE_MIN_DIM = 384
    IMAGE_MAX_DIM = 384

    MAX_GT_INSTANCES = 40
    DETECTION_MAX_INSTANCES = 40
    POST_NMS_ROIS_INFERENCE = 400
    # The cut-off its recipe chose (leafseg.recipe.choose_min_score) and stored in the shipped file.
    DETECTION_MIN_CONFIDENCE = 0.7


PRESETS = {"leaf_r101": LeafConfig, "quickstart_cpu": QuickstartConfig, "leaf_small": LeafSmallConfig}


def load_config(name_or_path="leaf_r101", **overrides):
    """A leaf config from a preset name (``leaf_r101``, ``quickstart_cpu``) or a YAML file.

    A YAML file is applied on top of :class:`LeafConfig`; ``overrides`` (attribute=value) last.
    """
    from pathlib import Path

    if name_or_path in PRESETS:
        return PRESETS[name_or_path](**overrides)
    path = Path(name_or_path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"unknown config {name_or_path!r}: a preset ({', '.join(PRESETS)}) or a .yaml file")
    return LeafConfig.from_yaml(path, **overrides)


def config_for_weights(weights, **overrides):
    """The config that ``weights`` were trained with, and where it came from (for messages).

    In order: the config stored in the weights file (every ``.weights.h5`` leafseg writes has
    one), the ``config.yaml`` beside it, else the ``leaf_r101`` preset with a warning saying so.
    ``overrides`` (attribute=value) are applied on top.
    """
    import logging
    from pathlib import Path

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
