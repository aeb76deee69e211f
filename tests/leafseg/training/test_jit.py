"""The training step compiled by XLA (``train --jit``, ``jit_compile=True``) against the same
step in TensorFlow's graph: the toy model (tests/toy_data.py), two steps each from the same
weights on the same batch.

The two steps sample the same ROIs: DetectionTargetLayer's random keys are replaced by an
integer hash, because XLA's stateless generators draw other numbers than TensorFlow's for the
same seed (see DetectionTargetLayer.random_keys). BatchNorm is frozen (TRAIN_BN False): with
TRAIN_BN the mask head's statistics would come from max_positive_rois rows under XLA and from
the batch's positive count in the graph (see mrcnn.heads.TakeRois). What is left to differ is
rounding: XLA fuses and reorders float32 arithmetic, and the untrained toy model carries
activations of hundreds (unnormalised pixels through frozen BatchNorms); the losses agreed to
4e-6 relative or better (both steps), and the test allows 1e-4.
Tracing and compiling take about 40 s on two CPU cores.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.model import MaskRCNN
from mrcnn.pipeline import build_sample, pipeline_anchors
from mrcnn.targets import DetectionTargetLayer
from mrcnn.trainable import LAYER_REGEX, set_trainable
from tests.toy_data import ToyConfig, shapes_dataset

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def hashed_keys(self, shape):
    """Uniform-looking keys in [0, 1) from integer arithmetic only, the same in the graph and
    under XLA; a new draw on every call (the layer's seed state counts the calls)."""
    calls = tf.cast(self.seed_generator.next()[1], tf.int32)
    index = tf.reshape(tf.range(shape[0] * shape[1], dtype=tf.int32), shape) + calls * 7919
    h = index * 747796405 + 289133645  # wraps around, as int32 arithmetic does in both
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 15)) * 277803737
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 13))
    return tf.cast(tf.bitwise.bitwise_and(h, 0xFFFFFF), tf.float32) / float(1 << 24)


def train_two_steps(config, inputs, jit_compile):
    keras.utils.set_random_seed(0)
    model = MaskRCNN("training", config, "unused")
    set_trainable(model.keras_model, LAYER_REGEX["all"], train_bn=config.TRAIN_BN)
    trainer = model.compile_trainer(learning_rate=0.002, jit_compile=jit_compile)
    trainer.make_train_function()
    first_weight = model.keras_model.get_layer("conv1").get_weights()[0].copy()
    losses = []
    for _ in range(2):
        logs = trainer.train_function([inputs])
        losses.append({name: float(value) for name, value in logs.items()})
    return first_weight, losses


def test_jit_compiled_training_steps_give_the_graphs_losses(monkeypatch):
    monkeypatch.setattr(DetectionTargetLayer, "random_keys", hashed_keys)
    config = ToyConfig().replace(TRAIN_BN=False)
    dataset = shapes_dataset(2)
    anchors = pipeline_anchors(config)
    samples = [build_sample(dataset, config, i, anchors, rng=np.random.default_rng(i)) for i in dataset.image_ids]
    inputs = {name: tf.constant(np.stack([s[name] for s in samples])) for name in samples[0]}

    weight, graph_losses = train_two_steps(config, inputs, jit_compile=False)
    jit_weight, jit_losses = train_two_steps(config, inputs, jit_compile=True)
    np.testing.assert_array_equal(jit_weight, weight)  # the same initial weights
    for step, (expected, actual) in enumerate(zip(graph_losses, jit_losses)):
        assert expected.keys() == actual.keys()
        for name, value in actual.items():
            assert np.isfinite(value), (step, name)
            assert value == pytest.approx(expected[name], rel=1e-4, abs=1e-6), (step, name)
    assert jit_losses[1]["loss"] < jit_losses[0]["loss"]  # the first step trained something
