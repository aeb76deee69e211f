"""ResNet backbones and the FPN: strides, Matterport's layer names and weight shapes."""
import math

import keras
import numpy as np
import pytest

from mrcnn.anchors import compute_backbone_shapes
from mrcnn.backbone import resnet_graph
from mrcnn.fpn import fpn_graph
from mrcnn.layers import BatchNorm

STRIDES = [4, 8, 16, 32, 64]


def weight_shapes(model, name):
    return [tuple(w.shape) for w in model.get_layer(name).weights]


@pytest.fixture(scope="module")
def resnet101():
    """Symbolic only: the weights are created, nothing is computed."""
    image = keras.Input((64, 64, 3))
    return keras.Model(image, resnet_graph(image, "resnet101", train_bn=False))


def test_resnet101_outputs_have_strides_4_to_32(resnet101):
    shapes = [tuple(c.shape) for c in resnet101.outputs]
    assert shapes == [(None, 64 // 4, 64 // 4, 64), (None, 64 // 4, 64 // 4, 256), (None, 64 // 8, 64 // 8, 512),
                      (None, 64 // 16, 64 // 16, 1024), (None, 64 // 32, 64 // 32, 2048)]


def test_resnet101_layer_names_and_weight_shapes(resnet101):
    assert weight_shapes(resnet101, "conv1") == [(7, 7, 3, 64), (64,)]
    assert weight_shapes(resnet101, "bn_conv1") == [(64,)] * 4
    assert [w.name for w in resnet101.get_layer("bn_conv1").weights] == [
        "gamma", "beta", "moving_mean", "moving_variance"]
    assert weight_shapes(resnet101, "res2a_branch1") == [(1, 1, 64, 256), (256,)]
    assert weight_shapes(resnet101, "res2a_branch2a") == [(1, 1, 64, 64), (64,)]
    assert weight_shapes(resnet101, "res2a_branch2b") == [(3, 3, 64, 64), (64,)]
    assert weight_shapes(resnet101, "res2a_branch2c") == [(1, 1, 64, 256), (256,)]
    assert weight_shapes(resnet101, "res3a_branch1") == [(1, 1, 256, 512), (512,)]
    assert weight_shapes(resnet101, "res4a_branch2a") == [(1, 1, 512, 256), (256,)]
    # Stage 4 of resnet101 has 23 blocks, letters a..w.
    assert weight_shapes(resnet101, "res4w_branch2c") == [(1, 1, 256, 1024), (1024,)]
    assert weight_shapes(resnet101, "bn4w_branch2c") == [(1024,)] * 4
    assert weight_shapes(resnet101, "res5a_branch1") == [(1, 1, 1024, 2048), (2048,)]
    assert weight_shapes(resnet101, "res5c_branch2b") == [(3, 3, 512, 512), (512,)]
    assert weight_shapes(resnet101, "res5c_branch2c") == [(1, 1, 512, 2048), (2048,)]
    names = {layer.name for layer in resnet101.layers}
    assert "res4x_branch2a" not in names and "res5d_branch2a" not in names
    # Only the first block of a stage has a shortcut convolution.
    assert "res4b_branch1" not in names


def test_resnet101_every_convolution_has_a_bias_and_a_batchnorm(resnet101):
    convs = [layer for layer in resnet101.layers if isinstance(layer, keras.layers.Conv2D)]
    bns = [layer for layer in resnet101.layers if isinstance(layer, keras.layers.BatchNormalization)]
    # Stem, 3 convolutions per block, one shortcut per stage.
    assert len(convs) == 1 + 3 * (3 + 4 + 23 + 3) + 4
    assert all(conv.use_bias for conv in convs)
    assert sorted(bn.name for bn in bns) == sorted(
        "bn_conv1" if conv.name == "conv1" else "bn" + conv.name[len("res"):] for conv in convs)
    assert all(isinstance(bn, BatchNorm) and bn.epsilon == 1e-3 for bn in bns)


def test_resnet50_has_six_blocks_in_stage_4():
    image = keras.Input((64, 64, 3))
    model = keras.Model(image, resnet_graph(image, "resnet50")[1:])
    names = {layer.name for layer in model.layers}
    assert "res4f_branch2c" in names and "res4g_branch2c" not in names
    assert weight_shapes(model, "res5c_branch2c") == [(1, 1, 512, 2048), (2048,)]


@pytest.mark.parametrize("architecture, blocks", [("resnet18", (2, 2, 2, 2)), ("resnet34", (3, 4, 6, 3))])
def test_small_resnets_use_basic_blocks_with_matterport_names(architecture, blocks):
    image = keras.Input((64, 64, 3))
    outputs = resnet_graph(image, architecture)
    model = keras.Model(image, outputs[1:])
    assert [tuple(c.shape) for c in outputs] == [(None, 16, 16, 64), (None, 16, 16, 64), (None, 8, 8, 128),
                                                 (None, 4, 4, 256), (None, 2, 2, 512)]
    names = {layer.name for layer in model.layers}
    for stage, count in zip("2345", blocks):
        last = chr(ord("a") + count - 1)
        assert f"res{stage}{last}_branch2b" in names
        assert f"res{stage}{chr(ord(last) + 1)}_branch2a" not in names
        assert f"res{stage}a_branch2c" not in names
    # Stage 2 keeps 64 channels and the resolution, so it needs no shortcut convolution.
    assert "res2a_branch1" not in names
    assert weight_shapes(model, "res3a_branch1") == [(1, 1, 64, 128), (128,)]
    assert weight_shapes(model, "res5a_branch2a") == [(3, 3, 256, 512), (512,)]
    assert weight_shapes(model, "res5b_branch2b") == [(3, 3, 512, 512), (512,)]
    assert weight_shapes(model, "bn5b_branch2b") == [(512,)] * 4


def test_width_multiplier_scales_every_stage():
    image = keras.Input((64, 64, 3))
    outputs = resnet_graph(image, "resnet18", width=0.25)
    assert [c.shape[-1] for c in outputs] == [64 // 4, 64 // 4, 128 // 4, 256 // 4, 512 // 4]


def test_stage5_false_gives_no_c5():
    image = keras.Input((64, 64, 3))
    outputs = resnet_graph(image, "resnet18", stage5=False, width=0.25)
    assert outputs[4] is None and outputs[3].shape == (None, 4, 4, 256 // 4)


def test_callable_backbone_is_used_and_checked():
    def tiny(image, stage5=True, train_bn=False):
        maps = [image]
        for stride in (4, 4, 8, 16, 32):
            maps.append(keras.layers.AveragePooling2D(stride)(image))
        return maps[1:]

    image = keras.Input((64, 64, 3))
    outputs = resnet_graph(image, tiny)
    assert [c.shape[1] for c in outputs] == [16, 16, 8, 4, 2]
    with pytest.raises(ValueError, match="must return"):
        resnet_graph(image, lambda image, stage5, train_bn: [image])
    with pytest.raises(ValueError, match="resnet101"):
        resnet_graph(image, "resnet152")


@pytest.mark.parametrize("side", [100, 128])
def test_fpn_levels_have_strides_4_to_64_also_for_odd_sizes(side):
    """100 gives C2..C5 sides 25, 13, 7, 4: the upsampled maps are cropped to fit."""
    image = keras.Input((side, side, 3))
    _, C2, C3, C4, C5 = resnet_graph(image, "resnet18", width=0.125)
    model = keras.Model(image, fpn_graph([C2, C3, C4, C5], pyramid_size=8))
    expected = [(math.ceil(side / s),) * 2 for s in STRIDES]
    np.testing.assert_array_equal(expected, compute_backbone_shapes((side, side), STRIDES))
    assert [tuple(p.shape[1:3]) for p in model.outputs] == expected
    outputs = model.predict(np.random.default_rng(0).normal(size=(2, side, side, 3)).astype("float32"), verbose=0)
    assert [o.shape for o in outputs] == [(2, *shape, 8) for shape in expected]
    assert all(np.isfinite(o).all() for o in outputs)


def test_fpn_layer_names_and_weight_shapes():
    maps = [keras.Input((64 // s, 64 // s, c)) for s, c in zip(STRIDES, (256, 512, 1024, 2048))]
    model = keras.Model(maps, fpn_graph(maps, 256))
    for level, channels in zip((2, 3, 4, 5), (256, 512, 1024, 2048)):
        assert weight_shapes(model, f"fpn_c{level}p{level}") == [(1, 1, channels, 256), (256,)]
        assert weight_shapes(model, f"fpn_p{level}") == [(3, 3, 256, 256), (256,)]
    assert model.get_layer("fpn_p6").weights == []
    assert isinstance(model.get_layer("fpn_p5upsampled"), keras.layers.UpSampling2D)
    assert isinstance(model.get_layer("fpn_p4add"), keras.layers.Add)


def test_fpn_top_down_sum_by_hand():
    """With 1x1 laterals set to identity and 3x3 outputs to the centre tap, P4 = C4 + up(C5)."""
    C4, C5 = keras.Input((4, 4, 1)), keras.Input((2, 2, 1))
    C2, C3 = keras.Input((16, 16, 1)), keras.Input((8, 8, 1))
    model = keras.Model([C2, C3, C4, C5], fpn_graph([C2, C3, C4, C5], pyramid_size=1))
    for level in (2, 3, 4, 5):
        model.get_layer(f"fpn_c{level}p{level}").set_weights([np.ones((1, 1, 1, 1)), np.zeros(1)])
        centre = np.zeros((3, 3, 1, 1))
        centre[1, 1] = 1
        model.get_layer(f"fpn_p{level}").set_weights([centre, np.zeros(1)])
    c5 = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    c4 = np.full((1, 4, 4, 1), 10.0)
    P2, P3, P4, P5, P6 = model.predict([np.zeros((1, 16, 16, 1)), np.zeros((1, 8, 8, 1)), c4, c5], verbose=0)
    np.testing.assert_allclose(P5[0, ..., 0], c5[0, ..., 0])
    np.testing.assert_allclose(P4[0, ..., 0], 10.0 + np.kron(c5[0, ..., 0], np.ones((2, 2))))
    np.testing.assert_allclose(P2[0, ..., 0], 10.0 + np.kron(c5[0, ..., 0], np.ones((8, 8))))
    # P6 keeps every other cell of P5.
    np.testing.assert_allclose(P6[0, ..., 0], [[1.0]])
