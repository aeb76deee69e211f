"""Mask R-CNN configuration: Matterport's attribute names and defaults, validated.

Subclass and override class attributes, exactly as Matterport users do::

    class ShapesConfig(Config):
        NAME = "shapes"
        NUM_CLASSES = 1 + 3
        IMAGES_PER_GPU = 8

    config = ShapesConfig()

Values can also come from a dict or a YAML file (a flat mapping of attribute names)::

    config = ShapesConfig.from_yaml("configs/shapes.yaml", IMAGES_PER_GPU=1)
    config = config.replace(DETECTION_MIN_CONFIDENCE=0.5)

As in detectron2's ``configs/*.yaml``, a YAML file may start from another one and list only what
differs: ``_BASE_: shapes.yaml`` (a path relative to the file; a base may have its own base). An
application can give names to its base files (``named_bases={"shapes": "/path/to/shapes.yaml"}``
of :meth:`Config.from_yaml` and :func:`read_yaml_layers`), so that ``_BASE_: shapes`` works from
any folder.

Derived values (``BATCH_SIZE``, ``IMAGE_SHAPE``, ``IMAGE_META_SIZE``) are computed from the
others whenever they are read, so they never go stale after an override. Every config is
validated when it is built; ``validate()`` can be called again after attributes were assigned
by hand. Errors are :class:`ConfigError` (a ``ValueError``) and name the attribute, the value
and what was expected.
"""
from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

RESIZE_MODES = ("none", "square", "pad64", "crop")
OPTIMIZERS = ("sgd", "adagrad", "adam", "adamw")
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")
DERIVED = ("BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE")
# The key of a YAML config file that names the file it starts from (detectron2's name).
BASE_KEY = "_BASE_"
# The backbone halves the resolution this many times (C2..C5 and P6), so square inputs must be
# divisible by 2**6 for the FPN's upsampled and lateral maps to line up.
_DOWNSCALE_STEPS = 6


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the attribute and value."""


class Config:
    """Base configuration. Subclass it and override the attributes you need."""

    # Name the configurations, e.g. "coco", "leaf". Used in log directory and checkpoint names.
    NAME = None

    # Number of GPUs (replicas) to train on, and images each one processes per step.
    # A 12 GB GPU typically handles two 1024x1024 images.
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2

    # Training steps per epoch and validation steps run at the end of each epoch.
    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50

    # "resnet50", "resnet101" (matterport), "resnet18"/"resnet34" (small CPU presets), or a
    # callable(input_image, stage5=True, train_bn=...) -> [C1..C5]; a callable also needs
    # COMPUTE_BACKBONE_SHAPE(image_shape) -> [[h, w] per stride].
    BACKBONE = "resnet101"
    COMPUTE_BACKBONE_SHAPE = None
    # Channel multiplier for the built-in ResNets (small CPU presets). 1.0 keeps the standard
    # widths, which pretrained weights such as Matterport's COCO file need.
    BACKBONE_WIDTH = 1.0

    # Strides of the pyramid levels P2..P6 relative to the input image.
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]

    # Width of the classifier head's fully connected layers, and of the FPN maps.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    TOP_DOWN_PYRAMID_SIZE = 256

    # Widths Matterport hard-codes, exposed so that small presets can shrink the whole model.
    # The defaults keep Matterport's weight shapes.
    RPN_CONV_CHANNELS = 512
    MASK_HEAD_CHANNELS = 256

    # Classes including background.
    NUM_CLASSES = 1
    # Not in Matterport: the names of classes 1..NUM_CLASSES-1 in id order (the background, 0, is
    # not named), or None (unnamed, as in Matterport). When set, NUM_CLASSES = 1 + len(CLASS_NAMES)
    # (checked); setting CLASS_NAMES without NUM_CLASSES sets NUM_CLASSES, and "a,b" is ["a", "b"].
    CLASS_NAMES = None

    # Anchor side lengths in pixels, one per pyramid level, and their height/width ratios.
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]
    # 1: an anchor at every feature-map cell; 2: every other cell, and so on.
    RPN_ANCHOR_STRIDE = 1

    # Non-max suppression threshold for RPN proposals. Raise it for more proposals.
    RPN_NMS_THRESHOLD = 0.7
    # Anchors per image sampled to train the RPN.
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    # Anchors kept by score before NMS, and proposals kept after NMS.
    PRE_NMS_LIMIT = 6000
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    # Store instance masks resized to MINI_MASK_SHAPE inside their boxes, to save memory.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)  # (height, width)

    # "none": keep the image; "square": resize (keep aspect, shorter side >= IMAGE_MIN_DIM,
    # longer <= IMAGE_MAX_DIM) and zero-pad to IMAGE_MAX_DIM x IMAGE_MAX_DIM; "pad64": as
    # square but pad each side only to a multiple of 64; "crop": resize, then random crops of
    # IMAGE_MIN_DIM x IMAGE_MIN_DIM (training only).
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    # Minimum scale-up factor, applied after IMAGE_MIN_DIM (0 = none).
    IMAGE_MIN_SCALE = 0
    IMAGE_CHANNEL_COUNT = 3

    # Mean pixel (RGB) subtracted from images.
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    # ROIs per image fed to the classifier and mask heads during training, and the share of
    # them that are positive.
    TRAIN_ROIS_PER_IMAGE = 200
    ROI_POSITIVE_RATIO = 0.33

    # ROIAlign output sizes for the classifier and mask heads; the mask head upsamples once,
    # so MASK_SHAPE is twice MASK_POOL_SIZE.
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14
    MASK_SHAPE = [28, 28]

    # Ground-truth instances kept per image.
    MAX_GT_INSTANCES = 100

    # Standard deviations that box deltas are divided by, for the RPN and the final boxes.
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    # Final detections per image, their minimum score, and the per-class NMS threshold.
    DETECTION_MAX_INSTANCES = 100
    DETECTION_MIN_CONFIDENCE = 0.7
    DETECTION_NMS_THRESHOLD = 0.3
    # Not in Matterport (None keeps its results): after the box NMS, drop a detection when more
    # than this fraction of its mask lies under the masks of better-scored detections of its
    # class that were kept (mrcnn.utils.suppress_covered_masks). Box NMS cannot tell a second
    # mask of one object from a neighbour whose box overlaps: with this set, the box NMS
    # threshold can be raised to keep neighbours, and the duplicates go by their masks.
    DETECTION_MASK_OVERLAP_THRESHOLD = None

    # Optimiser settings (SGD with momentum, as in the Mask R-CNN paper). OPTIMIZER is the one a
    # training command uses unless told otherwise: "sgd", "adagrad", "adam" or "adamw".
    OPTIMIZER = "sgd"
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9
    WEIGHT_DECAY = 0.0001

    # Weight of each loss in the total.
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.0,
        "rpn_bbox_loss": 1.0,
        "mrcnn_class_loss": 1.0,
        "mrcnn_bbox_loss": 1.0,
        "mrcnn_mask_loss": 1.0,
    }

    # Train the heads on RPN proposals (True) or on ROIs from the input pipeline (False).
    USE_RPN_ROIS = True

    # Add the ground-truth boxes to the proposals the heads' ROIs are sampled from (not in
    # Matterport; standard in Detectron and torchvision): positives from the first step on.
    ADD_GT_AS_PROPOSALS = False

    # Train BatchNorm layers. Off by default: batches are too small for good statistics.
    TRAIN_BN = False

    # Clip gradients to this global norm.
    GRADIENT_CLIP_NORM = 5.0

    def __init__(self, **overrides: Any):
        """Build the config, applying ``overrides`` (attribute name -> value) on top."""
        # Instances get their own copies of mutable class attributes, so that changing one
        # config never changes another or the class.
        for name in self._attribute_names():
            value = getattr(type(self), name)
            if isinstance(value, (list, dict, np.ndarray)):
                object.__setattr__(self, name, copy.deepcopy(value))
        self._apply(overrides, source="arguments")
        self.validate()

    # ----------------------------------------------------------------------------- derived

    @property
    def BATCH_SIZE(self) -> int:
        """Images per training step across all replicas."""
        return self.IMAGES_PER_GPU * self.GPU_COUNT

    @property
    def IMAGE_SHAPE(self) -> np.ndarray:
        """[height, width, channels] of the model input (crop mode: IMAGE_MIN_DIM square)."""
        side = self.IMAGE_MIN_DIM if self.IMAGE_RESIZE_MODE == "crop" else self.IMAGE_MAX_DIM
        return np.array([side, side, self.IMAGE_CHANNEL_COUNT])

    @property
    def IMAGE_META_SIZE(self) -> int:
        """Length of the image meta vector: id, original shape, shape, window, scale, classes."""
        return 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES

    def backbone_shapes(self, image_shape=None) -> np.ndarray:
        """[levels, 2] (height, width) of the P2..P6 feature maps for ``image_shape``."""
        if image_shape is None:
            image_shape = self.IMAGE_SHAPE
        if callable(self.BACKBONE):
            return np.asarray(self.COMPUTE_BACKBONE_SHAPE(image_shape))
        return np.array(
            [[math.ceil(image_shape[0] / stride), math.ceil(image_shape[1] / stride)] for stride in self.BACKBONE_STRIDES]
        )

    def __setattr__(self, name, value):
        if name in DERIVED:
            raise ConfigError(
                f"{name} is derived from other attributes and cannot be set "
                "(BATCH_SIZE = IMAGES_PER_GPU * GPU_COUNT; IMAGE_SHAPE from IMAGE_RESIZE_MODE, "
                "IMAGE_MIN_DIM/IMAGE_MAX_DIM and IMAGE_CHANNEL_COUNT; IMAGE_META_SIZE from NUM_CLASSES)"
            )
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------------- building

    @classmethod
    def _attribute_names(cls) -> list[str]:
        """Settable attribute names: upper-case class attributes, excluding derived ones."""
        names = {n for klass in cls.__mro__ for n in vars(klass) if n.isupper() and not n.startswith("_")}
        return sorted(names - set(DERIVED))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], **overrides: Any) -> "Config":
        """A config of this class with ``values`` (then ``overrides``) applied."""
        merged = dict(values)
        merged.update(overrides)
        return cls(**merged)

    @classmethod
    def from_yaml(cls, path, *, named_bases: Mapping[str, Any] | None = None, **overrides: Any) -> "Config":
        """A config of this class with the values of a YAML mapping file applied.

        The file is a flat mapping of attribute names (``IMAGES_PER_GPU: 1``). ``_BASE_: other.yaml``
        (relative to the file) applies that file first, and ``_BASE_: NAME`` the file that
        ``named_bases`` (name -> path) gives that name (see :func:`read_yaml_layers`). Unknown keys
        are errors that name the file holding them and suggest the closest attribute.
        """
        return cls._from_layers(read_yaml_layers(path, named_bases), overrides)

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "YAML text", **overrides: Any) -> "Config":
        """As :meth:`from_yaml`, from YAML text (``to_yaml_text()`` output, e.g. the config stored
        in a weights file); ``source`` names it in error messages. Text has no folder for a
        ``_BASE_`` path to be relative to, so a ``_BASE_`` key is an error."""
        values = _parse_yaml(text, source)
        if BASE_KEY in values:
            raise ConfigError(f"{BASE_KEY} in {source}: only a YAML file can name a base (its path is "
                              "relative to the file); load the file with from_yaml")
        return cls._from_layers([(source, values)], overrides)

    @classmethod
    def _from_layers(cls, layers, overrides: Mapping[str, Any]) -> "Config":
        config = cls()
        for source, values in layers:
            config._apply(values, source=source)
        config._apply(overrides, source="arguments")
        config.validate()
        return config

    def replace(self, **overrides: Any) -> "Config":
        """A validated copy of this config with ``overrides`` applied; this one is unchanged."""
        clone = copy.deepcopy(self)
        clone._apply(overrides, source="arguments")
        clone.validate()
        return clone

    def _apply(self, values: Mapping[str, Any], source: str) -> None:
        known = self._attribute_names()
        if isinstance(values.get("CLASS_NAMES"), str):  # a command line's "leaf,stem"
            values = dict(values, CLASS_NAMES=[part.strip() for part in values["CLASS_NAMES"].split(",")])
        for key, value in values.items():
            name = str(key)
            if name in DERIVED:
                # to_dict() output carries derived values; they are accepted when consistent
                # (checked once every other key is applied) and otherwise explained.
                continue
            if name not in known:
                close = difflib.get_close_matches(name.upper(), known, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"unknown config key {name!r} in {source}{hint}")
            object.__setattr__(self, name, _coerce(name, value, getattr(type(self), name), source))
        if "CLASS_NAMES" in values and "NUM_CLASSES" not in values and isinstance(self.CLASS_NAMES, (list, tuple)):
            object.__setattr__(self, "NUM_CLASSES", 1 + len(self.CLASS_NAMES))
        for name in DERIVED:
            if name in values:
                current = getattr(self, name)
                given = values[name]
                if np.asarray(given).tolist() != np.asarray(current).tolist():
                    raise ConfigError(
                        f"{name} in {source} is {given!r} but the other values give {np.asarray(current).tolist()!r}; "
                        f"{name} is derived: remove it or change the values it comes from"
                    )

    # ----------------------------------------------------------------------- validation

    def validate(self) -> "Config":
        """Check that the values can build a model; raises :class:`ConfigError` naming the culprit."""
        _require(self.IMAGE_RESIZE_MODE in RESIZE_MODES, "IMAGE_RESIZE_MODE", self.IMAGE_RESIZE_MODE,
                 f"one of {', '.join(RESIZE_MODES)}")
        for name in ("GPU_COUNT", "IMAGES_PER_GPU", "STEPS_PER_EPOCH", "NUM_CLASSES", "IMAGE_MAX_DIM",
                     "IMAGE_CHANNEL_COUNT", "RPN_TRAIN_ANCHORS_PER_IMAGE", "PRE_NMS_LIMIT",
                     "POST_NMS_ROIS_TRAINING", "POST_NMS_ROIS_INFERENCE", "TRAIN_ROIS_PER_IMAGE",
                     "POOL_SIZE", "MASK_POOL_SIZE", "MAX_GT_INSTANCES", "DETECTION_MAX_INSTANCES",
                     "RPN_ANCHOR_STRIDE", "TOP_DOWN_PYRAMID_SIZE", "FPN_CLASSIF_FC_LAYERS_SIZE",
                     "RPN_CONV_CHANNELS", "MASK_HEAD_CHANNELS"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 1, name, value, "a positive integer")
        names = self.CLASS_NAMES
        if names is not None:
            _require(isinstance(names, (list, tuple)) and len(names) > 0
                     and all(isinstance(n, str) and n.strip() for n in names), "CLASS_NAMES", names,
                     "None or a list of class names, e.g. [leaf, stem]")
            _require(len(set(names)) == len(names) and "BG" not in names, "CLASS_NAMES", names,
                     "distinct names, none of them BG (the background, class 0, is not named)")
            if self.NUM_CLASSES != 1 + len(names):
                raise ConfigError(
                    f"NUM_CLASSES = {self.NUM_CLASSES} but CLASS_NAMES = {list(names)!r} names {len(names)} "
                    f"class{'es' if len(names) != 1 else ''}: NUM_CLASSES counts the background too, so it must be "
                    f"{1 + len(names)}; give CLASS_NAMES the {self.NUM_CLASSES - 1} names of the classes "
                    f"(NUM_CLASSES then follows), or leave NUM_CLASSES out")
        _require(_is_number(self.BACKBONE_WIDTH) and self.BACKBONE_WIDTH > 0, "BACKBONE_WIDTH",
                 self.BACKBONE_WIDTH, "a positive number (1.0 = standard ResNet widths)")
        _require(_is_int(self.VALIDATION_STEPS) and self.VALIDATION_STEPS >= 0, "VALIDATION_STEPS",
                 self.VALIDATION_STEPS, "an integer >= 0")
        _require(self.IMAGE_MIN_DIM is None or (_is_int(self.IMAGE_MIN_DIM) and self.IMAGE_MIN_DIM >= 1),
                 "IMAGE_MIN_DIM", self.IMAGE_MIN_DIM, "a positive integer or None")

        step = 2 ** _DOWNSCALE_STEPS
        if self.IMAGE_RESIZE_MODE == "square":
            _require(self.IMAGE_MAX_DIM % step == 0, "IMAGE_MAX_DIM", self.IMAGE_MAX_DIM,
                     f"divisible by {step} in square mode (the backbone halves it {_DOWNSCALE_STEPS} times), "
                     f"e.g. {max(step, round(self.IMAGE_MAX_DIM / step) * step)}")
        if self.IMAGE_RESIZE_MODE == "crop":
            _require(self.IMAGE_MIN_DIM is not None and self.IMAGE_MIN_DIM % step == 0, "IMAGE_MIN_DIM",
                     self.IMAGE_MIN_DIM, f"divisible by {step} in crop mode")
        if self.IMAGE_MIN_DIM is not None and self.IMAGE_RESIZE_MODE in ("square", "pad64"):
            _require(self.IMAGE_MIN_DIM <= self.IMAGE_MAX_DIM, "IMAGE_MIN_DIM", self.IMAGE_MIN_DIM,
                     f"<= IMAGE_MAX_DIM ({self.IMAGE_MAX_DIM})")
        _require(_is_number(self.IMAGE_MIN_SCALE) and self.IMAGE_MIN_SCALE >= 0, "IMAGE_MIN_SCALE",
                 self.IMAGE_MIN_SCALE, "a number >= 0")

        if callable(self.BACKBONE):
            _require(callable(self.COMPUTE_BACKBONE_SHAPE), "COMPUTE_BACKBONE_SHAPE", self.COMPUTE_BACKBONE_SHAPE,
                     "a callable(image_shape) -> [[h, w], ...] when BACKBONE is a callable")
        else:
            _require(self.BACKBONE in BACKBONES, "BACKBONE", self.BACKBONE,
                     f"one of {', '.join(BACKBONES)} or a callable")

        strides = list(self.BACKBONE_STRIDES)
        _require(len(strides) > 0 and all(_is_int(s) and s >= 1 for s in strides), "BACKBONE_STRIDES",
                 self.BACKBONE_STRIDES, "a non-empty list of positive integers")
        _require(len(self.RPN_ANCHOR_SCALES) == len(strides), "RPN_ANCHOR_SCALES", tuple(self.RPN_ANCHOR_SCALES),
                 f"one scale per stride in BACKBONE_STRIDES ({len(strides)} strides: {strides}), "
                 f"got {len(self.RPN_ANCHOR_SCALES)}")
        _require(all(_is_number(s) and s > 0 for s in self.RPN_ANCHOR_SCALES), "RPN_ANCHOR_SCALES",
                 tuple(self.RPN_ANCHOR_SCALES), "positive numbers")
        _require(len(self.RPN_ANCHOR_RATIOS) > 0 and all(_is_number(r) and r > 0 for r in self.RPN_ANCHOR_RATIOS),
                 "RPN_ANCHOR_RATIOS", self.RPN_ANCHOR_RATIOS, "a non-empty list of positive numbers")

        for name in ("RPN_NMS_THRESHOLD", "DETECTION_NMS_THRESHOLD", "DETECTION_MIN_CONFIDENCE"):
            value = getattr(self, name)
            _require(_is_number(value) and 0 <= value <= 1, name, value, "a number in [0, 1]")
        _require(self.DETECTION_MASK_OVERLAP_THRESHOLD is None or (_is_number(self.DETECTION_MASK_OVERLAP_THRESHOLD)
                                                                    and 0 <= self.DETECTION_MASK_OVERLAP_THRESHOLD < 1),
                 "DETECTION_MASK_OVERLAP_THRESHOLD", self.DETECTION_MASK_OVERLAP_THRESHOLD, "None or a number in [0, 1)")
        _require(_is_number(self.ROI_POSITIVE_RATIO) and 0 < self.ROI_POSITIVE_RATIO <= 1, "ROI_POSITIVE_RATIO",
                 self.ROI_POSITIVE_RATIO, "a number in (0, 1]")

        for name in ("RPN_BBOX_STD_DEV", "BBOX_STD_DEV"):
            value = np.asarray(getattr(self, name), dtype=float)
            _require(value.shape == (4,) and np.all(value > 0), name, getattr(self, name),
                     "four positive numbers (dy, dx, dh, dw)")
        mean = np.asarray(self.MEAN_PIXEL, dtype=float)
        _require(mean.shape == (self.IMAGE_CHANNEL_COUNT,), "MEAN_PIXEL", self.MEAN_PIXEL,
                 f"one value per channel (IMAGE_CHANNEL_COUNT = {self.IMAGE_CHANNEL_COUNT})")

        _require(len(self.MINI_MASK_SHAPE) == 2 and all(_is_int(v) and v >= 1 for v in self.MINI_MASK_SHAPE),
                 "MINI_MASK_SHAPE", self.MINI_MASK_SHAPE, "(height, width) positive integers")
        _require(list(self.MASK_SHAPE) == [2 * self.MASK_POOL_SIZE] * 2, "MASK_SHAPE", self.MASK_SHAPE,
                 f"[{2 * self.MASK_POOL_SIZE}, {2 * self.MASK_POOL_SIZE}] (the mask head upsamples "
                 f"MASK_POOL_SIZE = {self.MASK_POOL_SIZE} once by 2)")

        _require(isinstance(self.LOSS_WEIGHTS, Mapping) and set(self.LOSS_WEIGHTS) == set(LOSS_NAMES),
                 "LOSS_WEIGHTS", self.LOSS_WEIGHTS, f"a mapping with exactly the keys {', '.join(LOSS_NAMES)}")
        _require(all(_is_number(w) and w >= 0 for w in self.LOSS_WEIGHTS.values()), "LOSS_WEIGHTS",
                 self.LOSS_WEIGHTS, "non-negative weights")
        _require(self.OPTIMIZER in OPTIMIZERS, "OPTIMIZER", self.OPTIMIZER, f"one of {', '.join(OPTIMIZERS)}")
        for name in ("LEARNING_RATE", "LEARNING_MOMENTUM", "WEIGHT_DECAY"):
            value = getattr(self, name)
            _require(_is_number(value) and value >= 0, name, value, "a number >= 0")
        _require(self.GRADIENT_CLIP_NORM is None or (_is_number(self.GRADIENT_CLIP_NORM) and self.GRADIENT_CLIP_NORM > 0),
                 "GRADIENT_CLIP_NORM", self.GRADIENT_CLIP_NORM, "a positive number or None")
        for name in ("USE_MINI_MASK", "USE_RPN_ROIS", "TRAIN_BN", "ADD_GT_AS_PROPOSALS"):
            value = getattr(self, name)
            _require(isinstance(value, (bool, np.bool_)) or value is None, name, value, "True or False")
        return self

    # ------------------------------------------------------------------------ exporting

    def to_dict(self) -> dict[str, Any]:
        """All attributes, derived ones included, as plain Python values (YAML/JSON safe).

        A callable backbone is written as its dotted import path.
        """
        out = {}
        for name in self._attribute_names() + list(DERIVED):
            out[name] = _plain(getattr(self, name))
        return out

    def to_yaml_text(self) -> str:
        """The settable attributes as YAML text, which :meth:`from_yaml_text` reads back."""
        import yaml

        values = {k: v for k, v in self.to_dict().items() if k not in DERIVED}
        return yaml.safe_dump(values, sort_keys=True)

    def to_yaml(self, path) -> Path:
        """Write the settable attributes to a YAML file atomically; returns the path."""
        from mrcnn.fileio import write_text_atomic

        return write_text_atomic(path, self.to_yaml_text())

    def display(self) -> None:
        """Print every attribute, one per line, as Matterport's ``display()`` does."""
        print("\nConfigurations:")
        for name, value in self.to_dict().items():
            print(f"{name:30} {value}")
        print("\n")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} NAME={self.NAME!r}>"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None


# ---------------------------------------------------------------------------- YAML files

def read_yaml_layers(path, named_bases: Mapping[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The mappings of a YAML config file and of its ``_BASE_`` chain, base first:
    ``[(file, values), ...]``, each without its ``_BASE_`` key.

    ``_BASE_: other.yaml`` is relative to the file naming it, and a base may have a base. The
    later file's value of a key replaces the base's whole (a LOSS_WEIGHTS mapping lists all five
    losses, as it does anywhere else).

    named_bases: {name: path of a YAML file}, the bases an application knows by name (say, its
        presets): a ``_BASE_`` value that is no file beside the file naming it but is one of these
        names stands for that file, in any file of the chain. A file of that name beside the
        file wins over the name.

    A chain that comes back to a file is a :class:`ConfigError` naming the files of the cycle; a
    base that cannot be read is one naming it and the file whose ``_BASE_`` it is, and the named
    bases there are.
    """
    path = Path(path)
    named_bases = dict(named_bases or {})
    # base: the _BASE_ value that led to ``path`` (None for the first file); by_name: it was a name.
    layers, chain, base, by_name = [], [], None, False
    while True:
        resolved = path.resolve()
        if resolved in chain:
            files = " -> ".join(str(source) for source, _ in reversed(layers))
            raise ConfigError(f"{BASE_KEY} cycle: {files} -> {path}")
        chain.append(resolved)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            of = f" (the {BASE_KEY} of {layers[0][0]})" if layers else ""
            names = ""
            if base is not None and not by_name and named_bases:
                names = f"; nor is {base!r} the name of a base: {', '.join(named_bases)}"
            raise ConfigError(f"cannot read config file {path}{of}: {err.strerror or err}{names}") from err
        values = _parse_yaml(text, str(path))
        base = values.pop(BASE_KEY, None)
        layers.insert(0, (str(path), values))
        if base is None:
            return layers
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{BASE_KEY} in {path} must be the path of a YAML file"
                              + (" or the name of a base" if named_bases else "") + f", got {base!r}")
        beside = path.parent / base
        by_name = base in named_bases and not beside.is_file()
        path = Path(named_bases[base]) if by_name else beside


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    """The mapping a YAML config holds ({} for an empty one)."""
    import yaml

    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from err
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source} must hold a mapping of config attributes, not {type(values).__name__}")
    return values


# ------------------------------------------------------------------------------- helpers

def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _require(ok: bool, name: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{name} = {value!r} is invalid: expected {expected}")


def _coerce(name: str, value, default, source: str):
    """Give ``value`` the container type of the attribute's default (YAML has only lists)."""
    if isinstance(default, np.ndarray):
        try:
            return np.array(value, dtype=default.dtype)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{name} in {source} must be numbers like {default.tolist()}, got {value!r}") from err
    if isinstance(default, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(default, list) and isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(default, float) and (_is_int(value) or isinstance(value, str)):
        # YAML 1.1 reads "1e-3" as a string; accept it as the number it plainly is.
        try:
            return float(value)
        except ValueError as err:
            raise ConfigError(f"{name} in {source} must be a number, got {value!r}") from err
    if name == "BACKBONE" and isinstance(value, str) and "." in value and value not in BACKBONES:
        return _import_callable(value, name, source)
    return value


def _import_callable(dotted: str, name: str, source: str) -> Callable:
    import importlib

    module_name, _, attr = dotted.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{name} = {dotted!r} in {source}: cannot import it ({err})") from err
    if not callable(target):
        raise ConfigError(f"{name} = {dotted!r} in {source} is not callable")
    return target


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if callable(value):
        return f"{value.__module__}.{value.__qualname__}"
    return value
