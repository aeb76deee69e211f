"""mrcnn.optimizers: schedules and warmup by hand-computed values, optimiser settings, state files."""
import math

import h5py
import keras
import numpy as np
import pytest

from mrcnn import optimizers as O
from mrcnn.config import Config

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


class SmallConfig(Config):
    NAME = "small"
    LEARNING_MOMENTUM = 0.8
    GRADIENT_CLIP_NORM = 2.5
    WEIGHT_DECAY = 0.05


def rate_at(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step))) if callable(schedule) else float(schedule)


# ---------------------------------------------------------------------------------- schedules

def test_constant_without_warmup_is_a_plain_rate():
    assert O.make_schedule("constant", 0.02) == 0.02


def test_step_decay_drops_at_each_boundary_from_that_step_on():
    schedule = O.make_schedule("step", 0.1, boundaries=[10, 20], decay_factor=0.5)
    expected = {0: 0.1, 9: 0.1, 10: 0.1 * 0.5, 19: 0.1 * 0.5, 20: 0.1 * 0.5 ** 2, 1000: 0.1 * 0.5 ** 2}
    for step, rate in expected.items():
        assert rate_at(schedule, step) == pytest.approx(rate, rel=1e-6), step
    assert rate_at(O.make_schedule("step", 0.1, boundaries=[]), 50) == pytest.approx(0.1)


@pytest.mark.parametrize("final_fraction", [0.0, 0.1])
def test_cosine_decays_to_the_final_fraction_over_total_steps(final_fraction):
    schedule = O.make_schedule("cosine", 0.1, total_steps=100, final_fraction=final_fraction)
    for step in (0, 25, 50, 100, 150):
        progress = min(step, 100) / 100
        expected = 0.1 * ((1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)) + final_fraction)
        assert rate_at(schedule, step) == pytest.approx(expected, rel=1e-5, abs=1e-9), step


def test_linear_warmup_rises_from_start_factor_to_the_schedule():
    schedule = O.make_schedule("constant", 0.1, warmup_steps=10)
    assert isinstance(schedule, O.LinearWarmup)
    start = O.WARMUP_START
    for step, factor in {0: start, 5: start + (1 - start) * 5 / 10, 10: 1.0, 20: 1.0}.items():
        assert rate_at(schedule, step) == pytest.approx(0.1 * factor, rel=1e-5), step
    # The wrapped schedule runs on the same step count: warmup multiplies the cosine at step 4.
    cosine = O.make_schedule("cosine", 0.1, total_steps=20, warmup_steps=8)
    expected = 0.1 * 0.5 * (1 + math.cos(math.pi * 4 / 20)) * (start + (1 - start) * 4 / 8)
    assert rate_at(cosine, 4) == pytest.approx(expected, rel=1e-5)


def test_plateau_rate_is_a_variable_the_callback_can_lower():
    schedule = O.make_schedule("plateau", 0.1, warmup_steps=4)
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    variable = O.plateau_variable(optimizer)
    assert O.schedule_variables(optimizer) == [variable]
    variable.assign(0.01)
    assert rate_at(schedule, 2) == pytest.approx(0.01 * (O.WARMUP_START + (1 - O.WARMUP_START) * 2 / 4), rel=1e-5)
    assert rate_at(schedule, 100) == pytest.approx(0.01, rel=1e-6)
    # A constant rate is the optimiser's own variable; a decaying schedule has none to lower.
    constant = keras.optimizers.SGD(learning_rate=0.1)
    assert O.plateau_variable(constant) is constant._learning_rate
    assert O.plateau_variable(keras.optimizers.SGD(O.make_schedule("cosine", 0.1, total_steps=5))) is None


def test_schedule_position_is_the_optimizer_iteration_count():
    optimizer = O.make_optimizer("sgd", 0.1, SmallConfig(), schedule="step", boundaries=[3], decay_factor=0.1)
    assert O.learning_rate_value(optimizer) == pytest.approx(0.1)
    optimizer.iterations.assign(3)
    assert O.learning_rate_value(optimizer) == pytest.approx(0.01)
    assert O.learning_rate_value(optimizer, step=0) == pytest.approx(0.1)


def test_schedules_serialise_and_come_back_with_the_same_rates():
    nested = O.make_schedule("step", 0.1, boundaries=[5], decay_factor=0.5, warmup_steps=3)
    for schedule in (nested, O.make_schedule("cosine", 0.1, total_steps=9, warmup_steps=2),
                     O.make_schedule("plateau", 0.3)):
        restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
        assert type(restored) is type(schedule)
        for step in (0, 2, 4, 6, 12):
            assert rate_at(restored, step) == pytest.approx(rate_at(schedule, step), rel=1e-6)
    optimizer = keras.optimizers.SGD(learning_rate=nested, momentum=0.9)
    again = keras.optimizers.SGD.from_config(optimizer.get_config())
    assert rate_at(again._learning_rate, 5) == pytest.approx(0.1 * 0.5, rel=1e-6)


def test_bad_schedule_values_are_rejected_by_name():
    with pytest.raises(ValueError, match="schedule must be one of .* got 'linear'"):
        O.make_schedule("linear", 0.1)
    with pytest.raises(ValueError, match="cosine schedule needs total_steps"):
        O.make_schedule("cosine", 0.1)
    with pytest.raises(ValueError, match="learning rate must be a positive number, got -0.1"):
        O.make_schedule("constant", -0.1)
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adagrad, adam, adamw, got 'rmsprop'"):
        O.make_optimizer("rmsprop", 0.1, SmallConfig())


# --------------------------------------------------------------------------------- optimisers

def test_make_optimizer_uses_the_config():
    config = SmallConfig()
    sgd = O.make_optimizer("sgd", 0.01, config)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert sgd.momentum == 0.8 and sgd.global_clipnorm == 2.5
    assert O.learning_rate_value(sgd) == pytest.approx(0.01)
    assert isinstance(O.make_optimizer("adagrad", 0.01, config), keras.optimizers.Adagrad)
    adam = O.make_optimizer("adam", 0.01, config)
    assert type(adam) is keras.optimizers.Adam and adam.global_clipnorm == 2.5
    adamw = O.make_optimizer("adamw", 0.01, config)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == 0.05
    # AdamW decays kernels only, like the L2 term the trainer then leaves out.
    assert [O.decays_weights(o) for o in (sgd, adam, adamw)] == [False, False, True]
    model = tiny_model()
    adamw.build(model.trainable_variables)
    kernel, bias = model.get_layer("fc").kernel, model.get_layer("fc").bias
    assert adamw._use_weight_decay(kernel) and not adamw._use_weight_decay(bias)


# ------------------------------------------------------------------------------- state files

def tiny_model(extra_layer=False):
    """A functional model, whose variable paths are its layer names (as MaskRCNN's are)."""
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name="fc")(inputs)
    if extra_layer:
        outputs = keras.layers.Dense(1, name="out")(outputs)
    return keras.Model(inputs, outputs)


def take_steps(optimizer, model, count=3):
    rng = np.random.default_rng(0)
    for _ in range(count):
        gradients = [rng.normal(size=v.shape).astype("float32") for v in model.trainable_variables]
        optimizer.apply(gradients, model.trainable_variables)


def test_optimizer_state_round_trip_restores_every_variable(tmp_path):
    config = SmallConfig()
    model = tiny_model()
    optimizer = O.make_optimizer("adam", 0.01, config, schedule="plateau", warmup_steps=2)
    take_steps(optimizer, model)
    O.plateau_variable(optimizer).assign(0.004)
    path = O.save_optimizer_state(optimizer, tmp_path / "mask_rcnn_x_0003.optimizer.hdf5", model.trainable_variables,
                                  metadata={"epoch": 3, "stage": {"stage": "heads"}})
    assert [p.name for p in tmp_path.iterdir()] == ["mask_rcnn_x_0003.optimizer.hdf5"]  # no temporary file left

    fresh = O.make_optimizer("adam", 0.01, config, schedule="plateau", warmup_steps=2)
    fresh.build(model.trainable_variables)
    info = O.load_optimizer_state(fresh, path, model.trainable_variables)
    assert info["iterations"] == 3 and info["metadata"] == {"epoch": 3, "stage": {"stage": "heads"}}
    assert int(fresh.iterations.numpy()) == 3
    for saved, restored in zip(optimizer.variables, fresh.variables, strict=True):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.path)
    assert float(O.plateau_variable(fresh).numpy()) == pytest.approx(0.004)
    assert O.read_optimizer_state(path)["trainable_variables"] == ["fc/kernel", "fc/bias"]


def test_optimizer_state_refuses_another_optimizer_or_other_layers(tmp_path):
    config = SmallConfig()
    model = tiny_model()
    sgd = O.make_optimizer("sgd", 0.01, config)
    take_steps(sgd, model, 1)
    path = O.save_optimizer_state(sgd, tmp_path / "s.optimizer.hdf5", model.trainable_variables)

    adagrad = O.make_optimizer("adagrad", 0.01, config)
    adagrad.build(model.trainable_variables)
    with pytest.raises(O.OptimizerStateError, match=r"s\.optimizer\.hdf5 holds the state of a SGD optimizer, not of "
                                                    r"this Adagrad"):
        O.load_optimizer_state(adagrad, path, model.trainable_variables)

    other = tiny_model(extra_layer=True)
    sgd2 = O.make_optimizer("sgd", 0.01, config)
    sgd2.build(other.trainable_variables)
    before = [v.numpy().copy() for v in sgd2.variables]
    with pytest.raises(O.OptimizerStateError, match=r"saved for other trainable layers \(2 trainable variables in "
                                                    r"the file, 4 now; not in the file: out/kernel, out/bias\)"):
        O.load_optimizer_state(sgd2, path, other.trainable_variables)
    for value, variable in zip(before, sgd2.variables):  # nothing was assigned
        np.testing.assert_array_equal(variable.numpy(), value)

    unbuilt = O.make_optimizer("sgd", 0.01, config)
    with pytest.raises(O.OptimizerStateError, match="build the optimizer before restoring"):
        O.load_optimizer_state(unbuilt, path, model.trainable_variables)
    with h5py.File(tmp_path / "junk.h5", "w"):
        pass
    with pytest.raises(O.OptimizerStateError, match=r"cannot read optimizer state .*junk\.h5"):
        O.read_optimizer_state(tmp_path / "junk.h5")


def test_optimizer_state_path_sits_beside_the_weights():
    assert O.optimizer_state_path("run/mask_rcnn_leaf_0007.weights.h5") == "run/mask_rcnn_leaf_0007.optimizer.hdf5"
    assert O.optimizer_state_path("run/mask_rcnn_leaf_0007.h5") == "run/mask_rcnn_leaf_0007.optimizer.hdf5"
    with pytest.raises(ValueError, match="not a weights file name"):
        O.optimizer_state_path("run/model.keras")


@pytest.mark.parametrize("name,cls", [("sgd", keras.optimizers.SGD), ("adam", keras.optimizers.Adam)])
def test_the_trainer_uses_the_configs_optimizer_when_given_none(tmp_path, name, cls):
    from mrcnn.model import MaskRCNN
    from tests.toy_data import ToyConfig

    model = MaskRCNN("training", ToyConfig(OPTIMIZER=name), tmp_path)
    optimizer = model.compile_trainer(learning_rate=0.005).optimizer
    assert type(optimizer) is cls
    assert math.isclose(float(keras.ops.convert_to_numpy(optimizer.learning_rate)), 0.005, rel_tol=1e-6)
