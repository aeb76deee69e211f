"""Layer presets, set_trainable on a resnet101 FPN model, and frozen BatchNorm."""
import re

import keras
import numpy as np
import pytest

from mrcnn.backbone import resnet_graph
from mrcnn.fpn import fpn_graph
from mrcnn.heads import build_fpn_mask_graph, fpn_classifier_graph
from mrcnn.layers import BatchNorm
from mrcnn.rpn import build_rpn_model
from mrcnn.trainable import LAYER_REGEX, set_trainable, trainable_layer_names

FPN = {f"fpn_c{i}p{i}" for i in range(2, 6)} | {f"fpn_p{i}" for i in range(2, 6)}
RPN = {"rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"}
HEAD_LAYERS = ({"mrcnn_class_conv1", "mrcnn_class_conv2", "mrcnn_class_logits", "mrcnn_bbox_fc",
                "mrcnn_mask_deconv", "mrcnn_mask"} | {f"mrcnn_mask_conv{i}" for i in range(1, 5)})
HEAD_BNS = {"mrcnn_class_bn1", "mrcnn_class_bn2"} | {f"mrcnn_mask_bn{i}" for i in range(1, 5)}


def test_presets_are_matterports():
    assert LAYER_REGEX == {
        "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
        "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
        "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
        "5+": r"(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
        "all": ".*",
    }


@pytest.fixture(scope="module")
def network():
    """resnet101 + FPN + shared RPN + heads, built symbolically (small heads, nothing run)."""
    image = keras.Input((64, 64, 3))
    meta = keras.Input((12 + 4,))
    rois = keras.Input((4, 4))
    _, C2, C3, C4, C5 = resnet_graph(image, "resnet101", train_bn=False)
    P2, P3, P4, P5, P6 = fpn_graph([C2, C3, C4, C5], 32)
    rpn = build_rpn_model(1, 3, 32, conv_channels=32)
    rpn_outputs = [rpn(p) for p in (P2, P3, P4, P5, P6)]
    heads = fpn_classifier_graph(rois, [P2, P3, P4, P5], meta, 7, 4, train_bn=False, fc_layers_size=16)
    mask = build_fpn_mask_graph(rois, [P2, P3, P4, P5], meta, 14, 4, train_bn=False, conv_channels=8)
    return keras.Model([image, meta, rois], [*heads, mask, *rpn_outputs[0]])


def backbone_layers(model, prefix_regex, kind):
    return {layer.name for layer in model.layers
            if isinstance(layer, kind) and re.match(prefix_regex, layer.name)}


def test_heads_trains_exactly_fpn_rpn_and_mrcnn_layers(network):
    names = set_trainable(network, "heads")
    assert set(names) == FPN | RPN | HEAD_LAYERS
    assert sorted(trainable_layer_names(network)) == sorted(names)
    # 8 FPN convolutions, 3 RPN layers (inside rpn_model), 10 head layers, 2 weights each.
    assert len(network.trainable_weights) == 2 * (8 + 3 + 10)


def test_4_plus_adds_stage_4_and_5_convolutions(network):
    names = set(set_trainable(network, "4+"))
    res45 = backbone_layers(network, r"res[45]", keras.layers.Conv2D)
    assert "res4w_branch2c" in res45 and "res5c_branch2c" in res45 and "res4a_branch1" in res45
    assert len(res45) == 3 * (23 + 3) + 2
    assert names == FPN | RPN | HEAD_LAYERS | res45
    assert set(trainable_layer_names(network)) == names


def test_all_trains_every_layer_but_batchnorm(network):
    names = set(set_trainable(network, "all"))
    carrying = {layer.name for layer in network.layers if layer.weights and not isinstance(layer, keras.Model)}
    bns = {layer.name for layer in network.layers if isinstance(layer, BatchNorm)}
    assert len(bns) == 1 + 3 * (3 + 4 + 23 + 3) + 4 + len(HEAD_BNS)
    assert names == (carrying - bns) | RPN
    assert not any(network.get_layer(bn).trainable_weights for bn in bns)


def test_train_bn_lets_matching_batchnorms_train(network):
    names = set(set_trainable(network, "4+", train_bn=True))
    bn45 = backbone_layers(network, r"bn[45]", keras.layers.BatchNormalization)
    assert "bn4w_branch2c" in bn45 and "bn3a_branch2a" not in bn45
    assert names == (FPN | RPN | HEAD_LAYERS | HEAD_BNS | bn45
                     | backbone_layers(network, r"res[45]", keras.layers.Conv2D))
    # gamma and beta train; the moving statistics never do.
    assert [w.name for w in network.get_layer("bn4a_branch2a").trainable_weights] == ["gamma", "beta"]
    assert not network.get_layer("bn3a_branch2a").trainable_weights
    names = set(set_trainable(network, "all", train_bn=True))
    carrying = {layer.name for layer in network.layers if layer.weights and not isinstance(layer, keras.Model)}
    assert names == carrying | RPN


def test_a_nested_model_matches_by_its_own_name(network, capsys):
    assert set(set_trainable(network, r"rpn_model", verbose=1)) == RPN
    assert "In model: rpn_model" in capsys.readouterr().out
    assert set(set_trainable(network, r"res5c_branch2c|rpn_class_raw")) == {"res5c_branch2c", "rpn_class_raw"}
    assert set(trainable_layer_names(network)) == {"res5c_branch2c", "rpn_class_raw"}


# ------------------------------------------------------------------------ frozen BatchNorm

def bn_model(train_bn):
    x = keras.Input((4, 4, 3))
    return keras.Model(x, BatchNorm(train_bn=train_bn, name="bn")(x))


def batch(rng, shift):
    return (rng.normal(size=(8, 4, 4, 3)) * 3 + shift).astype(np.float32)


def test_frozen_batchnorm_ignores_batch_statistics_even_when_training(rng):
    model = bn_model(train_bn=False)
    bn = model.get_layer("bn")
    bn.set_weights([np.array([2.0, 1.0, 0.5]), np.array([0.1, 0.2, 0.3]),
                    np.array([1.0, -1.0, 0.0]), np.array([4.0, 1.0, 0.25])])
    x = batch(rng, shift=5.0)
    expected = (x - [1.0, -1.0, 0.0]) / np.sqrt(np.array([4.0, 1.0, 0.25]) + 1e-3) * [2.0, 1.0, 0.5] + [0.1, 0.2, 0.3]
    # Matterport's TRAIN_BN = False: training=True is overruled, and so is trainable=True.
    model.trainable = True
    for training in (False, True):
        np.testing.assert_allclose(model(x, training=training).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.moving_mean.numpy(), [1.0, -1.0, 0.0])
    assert not bn_model(train_bn=False).get_layer("bn").trainable


def test_trainable_batchnorm_uses_batch_statistics_until_frozen(rng):
    model = bn_model(train_bn=True)
    x = batch(rng, shift=5.0)
    out = model(x, training=True).numpy()
    # Normalised with the batch's own mean and variance (gamma 1, beta 0 at initialisation).
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    assert np.all(model.get_layer("bn").moving_mean.numpy() > 0)
    # Frozen by set_trainable, it runs in inference mode whatever the training flag says.
    set_trainable(model, "all", train_bn=False)
    np.testing.assert_allclose(model(x, training=True).numpy(), model(x, training=False).numpy(), rtol=1e-6)


def test_batchnorm_config_round_trip():
    layer = BatchNorm(train_bn=False, name="bn_conv1")
    clone = BatchNorm.from_config(layer.get_config())
    assert clone.train_bn is False and clone.trainable is False and clone.epsilon == 1e-3
