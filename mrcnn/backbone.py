"""ResNet backbones with Matterport's layer names: image -> [C1, C2, C3, C4, C5].

Layer names and weight shapes of "resnet50" and "resnet101" are those of Matterport's
``resnet_graph`` (and so of ``mask_rcnn_coco.h5``): stem ``conv1`` / ``bn_conv1``, then per
stage s and block letter b the convolutions ``res{s}{b}_branch2a``, ``_branch2b``,
``_branch2c``, the shortcut ``res{s}{b}_branch1`` (first block of a stage) and the
BatchNorms ``bn{s}{b}_...``. The small presets "resnet18" and "resnet34" use basic blocks
(two 3x3 convolutions, ``_branch2a`` and ``_branch2b``) under the same naming scheme, so
the training presets of :mod:`mrcnn.trainable` ("3+", "4+", ...) select the same stages.

Sizes: every stride-2 step maps a side n to ceil(n / 2), so C2..C5 have sides
ceil(side / 4) ... ceil(side / 32), as :func:`mrcnn.anchors.compute_backbone_shapes`
assumes. C1 is, as in Matterport, the output of the stem's max-pool (stride 4); nothing
uses it.
"""
from keras import layers as KL

from mrcnn.conv import Conv2D
from mrcnn.layers import BatchNorm

__all__ = ["ARCHITECTURES", "resnet_graph"]

# Blocks per stage (2, 3, 4, 5) and whether the stage uses bottleneck blocks.
_STAGE_BLOCKS = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
}
ARCHITECTURES = tuple(_STAGE_BLOCKS)

# Inner widths of stages 2..5; bottleneck blocks output four times as many channels.
_STAGE_FILTERS = (64, 128, 256, 512)
_BOTTLENECK_EXPANSION = 4


def resnet_graph(input_image, architecture, stage5=True, train_bn=True, width=1.0):
    """Build a ResNet on ``input_image`` and return its stage outputs.

    input_image: KerasTensor [batch, height, width, channels], the molded image.
    architecture: "resnet18", "resnet34", "resnet50", "resnet101", or a callable
        ``f(input_image, stage5=..., train_bn=...) -> [C1, C2, C3, C4, C5]`` (a user
        backbone; C2..C5 must have strides 4, 8, 16, 32).
    stage5: build stage 5; if False, C5 is None.
    train_bn: see :class:`mrcnn.layers.BatchNorm` (False: BatchNorms frozen in inference mode).
    width: multiplier of every channel count (stem and stages), for quick CPU presets.
        Values other than 1 change the weight shapes, so Matterport's files no longer load.

    Returns: [C1, C2, C3, C4, C5], strides 4, 4, 8, 16, 32. Channels (width 1):
        bottleneck 64, 256, 512, 1024, 2048; basic 64, 64, 128, 256, 512.
    """
    if callable(architecture):
        outputs = architecture(input_image, stage5=stage5, train_bn=train_bn)
        if not isinstance(outputs, (list, tuple)) or len(outputs) != 5:
            raise ValueError(
                f"the backbone callable {getattr(architecture, '__name__', architecture)!r} must return "
                f"[C1, C2, C3, C4, C5]; it returned {type(outputs).__name__} of length "
                f"{len(outputs) if isinstance(outputs, (list, tuple)) else 'n/a'}")
        return list(outputs)
    if architecture not in _STAGE_BLOCKS:
        raise ValueError(f"unknown backbone {architecture!r}: expected one of {', '.join(ARCHITECTURES)} or a callable")
    if not width > 0:
        raise ValueError(f"backbone width multiplier must be positive, got {width!r}")

    blocks_per_stage, bottleneck = _STAGE_BLOCKS[architecture]

    def channels(n):
        return max(1, int(round(n * width)))

    x = KL.ZeroPadding2D((3, 3), name="conv1_pad")(input_image)
    x = Conv2D(channels(64), (7, 7), strides=2, use_bias=True, name="conv1")(x)
    x = BatchNorm(train_bn=train_bn, name="bn_conv1")(x)
    x = KL.Activation("relu", name="conv1_relu")(x)
    x = KL.MaxPooling2D((3, 3), strides=2, padding="same", name="pool1")(x)
    outputs = [x]

    for stage, (blocks, filters) in enumerate(zip(blocks_per_stage, _STAGE_FILTERS), start=2):
        if stage == 5 and not stage5:
            outputs.append(None)
            break
        for index in range(blocks):
            # Stage 2 follows the max-pool and keeps its resolution; later stages halve it.
            strides = 2 if index == 0 and stage > 2 else 1
            block = _bottleneck_block if bottleneck else _basic_block
            x = block(x, channels(filters), stage, chr(ord("a") + index), strides, train_bn)
        outputs.append(x)
    return outputs


def _bottleneck_block(x, filters, stage, block, strides, train_bn):
    """1x1 (filters, stride) -> 3x3 (filters) -> 1x1 (4 * filters), plus the shortcut.

    As in Matterport (and Caffe's ResNet), the stride sits on the first 1x1 convolution.
    """
    name = f"{stage}{block}"
    out_channels = _BOTTLENECK_EXPANSION * filters
    y = Conv2D(filters, (1, 1), strides=strides, use_bias=True, name=f"res{name}_branch2a")(x)
    y = BatchNorm(train_bn=train_bn, name=f"bn{name}_branch2a")(y)
    y = KL.Activation("relu", name=f"res{name}_branch2a_relu")(y)
    y = Conv2D(filters, (3, 3), padding="same", use_bias=True, name=f"res{name}_branch2b")(y)
    y = BatchNorm(train_bn=train_bn, name=f"bn{name}_branch2b")(y)
    y = KL.Activation("relu", name=f"res{name}_branch2b_relu")(y)
    y = Conv2D(out_channels, (1, 1), use_bias=True, name=f"res{name}_branch2c")(y)
    y = BatchNorm(train_bn=train_bn, name=f"bn{name}_branch2c")(y)
    return _merge(x, y, name, out_channels, strides, train_bn, block == "a")


def _basic_block(x, filters, stage, block, strides, train_bn):
    """3x3 (filters, stride) -> 3x3 (filters), plus the shortcut (ResNet-18/34)."""
    name = f"{stage}{block}"
    y = Conv2D(filters, (3, 3), strides=strides, padding="same", use_bias=True, name=f"res{name}_branch2a")(x)
    y = BatchNorm(train_bn=train_bn, name=f"bn{name}_branch2a")(y)
    y = KL.Activation("relu", name=f"res{name}_branch2a_relu")(y)
    y = Conv2D(filters, (3, 3), padding="same", use_bias=True, name=f"res{name}_branch2b")(y)
    y = BatchNorm(train_bn=train_bn, name=f"bn{name}_branch2b")(y)
    needs_projection = strides != 1 or x.shape[-1] != filters
    return _merge(x, y, name, filters, strides, train_bn, needs_projection)


def _merge(x, y, name, out_channels, strides, train_bn, project):
    """Add the (projected, if ``project``) input to the residual branch, then relu."""
    if project:
        x = Conv2D(out_channels, (1, 1), strides=strides, use_bias=True, name=f"res{name}_branch1")(x)
        x = BatchNorm(train_bn=train_bn, name=f"bn{name}_branch1")(x)
    y = KL.Add(name=f"res{name}_add")([y, x])
    return KL.Activation("relu", name=f"res{name}_out")(y)
