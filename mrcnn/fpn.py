"""Feature pyramid network: backbone stages C2..C5 -> pyramid levels P2..P6.

Layer names are Matterport's (``fpn_c5p5`` ... ``fpn_c2p2`` lateral 1x1 convolutions,
``fpn_p2`` ... ``fpn_p5`` 3x3 output convolutions, ``fpn_p6`` max-pool), so its weights load.

Odd sizes: the backbone maps a side n to ceil(n / 2) at every stride-2 step, so doubling a
coarser level can give one row or column more than the finer lateral map (an input side of
100 gives C4 7 and C5 4, and 4 * 2 = 8). The upsampled map is then cropped at its bottom
and right edges to the lateral map's size, which keeps every level at ceil(side / stride)
as the anchors expect. With the "square", "pad64" and "crop" resize modes the input sides
are multiples of 64 and the crop removes nothing; "none" mode may give any size.
"""
import keras
from keras import layers as KL
import tensorflow as tf

from mrcnn.conv import Conv2D

__all__ = ["CropToMatch", "fpn_graph"]


@keras.saving.register_keras_serializable(package="mrcnn")
class CropToMatch(keras.layers.Layer):
    """Crop ``x`` [B, h, w, C] at the bottom and right to the height and width of ``reference``.

    ``x`` must be at least as large as ``reference`` in both directions.
    """

    def call(self, x, reference):
        size = tf.shape(reference)[1:3]
        return x[:, :size[0], :size[1], :]

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


def fpn_graph(backbone_maps, pyramid_size=256):
    """Top-down pathway with lateral connections (Lin et al. 2017), Matterport's layout.

    backbone_maps: [C2, C3, C4, C5], backbone maps [B, ceil(H / s), ceil(W / s), channels]
        for strides s = 4, 8, 16, 32 (``resnet_graph(...)[1:]``).
    pyramid_size: channels of every pyramid level (TOP_DOWN_PYRAMID_SIZE).

    Returns: [P2, P3, P4, P5, P6], each [B, ceil(H / s), ceil(W / s), pyramid_size] for
        s = 4, 8, 16, 32, 64. P6 (P5 subsampled by 2) feeds only the RPN.
    """
    C2, C3, C4, C5 = backbone_maps
    P5 = Conv2D(pyramid_size, (1, 1), name="fpn_c5p5")(C5)
    P4 = _top_down(P5, C4, pyramid_size, 4)
    P3 = _top_down(P4, C3, pyramid_size, 3)
    P2 = _top_down(P3, C2, pyramid_size, 2)
    # A 3x3 convolution on each merged map reduces the aliasing of the upsampling.
    P2 = Conv2D(pyramid_size, (3, 3), padding="same", name="fpn_p2")(P2)
    P3 = Conv2D(pyramid_size, (3, 3), padding="same", name="fpn_p3")(P3)
    P4 = Conv2D(pyramid_size, (3, 3), padding="same", name="fpn_p4")(P4)
    P5 = Conv2D(pyramid_size, (3, 3), padding="same", name="fpn_p5")(P5)
    P6 = KL.MaxPooling2D(pool_size=(1, 1), strides=2, name="fpn_p6")(P5)
    return [P2, P3, P4, P5, P6]


def _top_down(coarser, C, pyramid_size, level):
    """Upsample level ``level + 1`` by 2 (nearest) and add the 1x1 lateral of ``C``."""
    lateral = Conv2D(pyramid_size, (1, 1), name=f"fpn_c{level}p{level}")(C)
    upsampled = KL.UpSampling2D(size=(2, 2), name=f"fpn_p{level + 1}upsampled")(coarser)
    upsampled = CropToMatch(name=f"fpn_p{level + 1}crop")(upsampled, lateral)
    return KL.Add(name=f"fpn_p{level}add")([upsampled, lateral])
