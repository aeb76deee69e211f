"""mrcnn.callbacks on a tiny Keras model: checkpoints (keep, best, never NaN), NaN stop, CSV log,
loss plot, plateau. Most tests call the callbacks' methods with made-up logs, as fit would."""
import json

import h5py
import keras
import numpy as np
import pytest

from mrcnn import callbacks as C
from mrcnn import optimizers as O

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def tiny_model(optimizer="sgd"):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="fc")(inputs))
    model.compile(optimizer=optimizer, loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def attach(callback, model):
    callback.set_model(model)
    return callback


# -------------------------------------------------------------------------------- checkpoints

def test_checkpoint_keeps_the_last_k_and_the_best_and_state_of_the_newest(tmp_path):
    model = tiny_model()
    template = str(tmp_path / "mask_rcnn_x_{epoch:04d}.weights.h5")
    checkpoint = attach(C.EpochCheckpoint(template, keep=2, metadata={"stage": "heads"}), model)
    checkpoint.on_train_begin()
    val_losses = [5.0, 1.0, 3.0, 4.0, 6.0, 7.0]  # epoch 2 is the best
    for epoch, val_loss in enumerate(val_losses):
        checkpoint.on_epoch_end(epoch, {"loss": 10.0 - epoch, "val_loss": val_loss})

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoints.json", "mask_rcnn_x_0002.weights.h5", "mask_rcnn_x_0005.weights.h5",
                     "mask_rcnn_x_0006.optimizer.hdf5", "mask_rcnn_x_0006.weights.h5"]
    index = json.loads((tmp_path / "checkpoints.json").read_text())
    assert index["best"] == {"epoch": 2, "monitor": "val_loss", "value": 1.0,
                             "path": str(tmp_path / "mask_rcnn_x_0002.weights.h5")}
    assert [entry["epoch"] for entry in index["checkpoints"]] == [2, 5, 6]
    state = O.read_optimizer_state(tmp_path / "mask_rcnn_x_0006.optimizer.hdf5")
    assert state["metadata"]["epoch"] == 6 and state["metadata"]["stage"] == "heads"
    assert state["metadata"]["logs"] == {"loss": 5.0, "val_loss": 7.0}
    assert checkpoint.last_epoch == 6

    # A resumed run (new callback, same folder) knows the best and keeps it.
    resumed = attach(C.EpochCheckpoint(template, keep=2), model)
    resumed.on_train_begin()
    assert resumed.best() == (2, "val_loss", 1.0)
    resumed.on_epoch_end(6, {"loss": 1.0, "val_loss": 0.5})
    assert sorted(p.name for p in tmp_path.glob("*.weights.h5")) == ["mask_rcnn_x_0006.weights.h5",
                                                                     "mask_rcnn_x_0007.weights.h5"]


def test_checkpoint_is_not_written_for_non_finite_losses_or_weights(tmp_path):
    model = tiny_model()
    template = str(tmp_path / "mask_rcnn_x_{epoch:04d}.weights.h5")
    checkpoint = attach(C.EpochCheckpoint(template), model)
    checkpoint.on_train_begin()
    checkpoint.on_epoch_end(0, {"loss": 1.0})
    good = (tmp_path / "mask_rcnn_x_0001.weights.h5").read_bytes()
    checkpoint.on_epoch_end(1, {"loss": float("nan"), "val_loss": 1.0})
    model.get_layer("fc").kernel.assign(np.full((3, 1), np.inf, np.float32))
    checkpoint.on_epoch_end(2, {"loss": 1.0})
    assert checkpoint.skipped == [2, 3]
    assert sorted(p.name for p in tmp_path.glob("mask_rcnn_*")) == ["mask_rcnn_x_0001.optimizer.hdf5",
                                                                    "mask_rcnn_x_0001.weights.h5"]
    assert (tmp_path / "mask_rcnn_x_0001.weights.h5").read_bytes() == good
    assert checkpoint.last_path == str(tmp_path / "mask_rcnn_x_0001.weights.h5")


def test_nan_stops_fit_at_the_step_and_names_the_loss(tmp_path):
    model = tiny_model()
    x = np.ones((12, 3), np.float32)
    x[8] = np.nan  # batches of 2: epoch 2 (6 samples an epoch), its step 2
    y = np.zeros((12, 1), np.float32)
    guard = C.TerminateOnNonFinite()
    checkpoint = C.EpochCheckpoint(str(tmp_path / "m_{epoch:04d}.weights.h5"))
    model.fit(x, y, batch_size=2, epochs=3, steps_per_epoch=3, shuffle=False, verbose=0,
              callbacks=[guard, checkpoint])
    assert guard.failure.startswith("non-finite loss at epoch 2, step 2 of 3 (optimizer step 5): loss = nan")
    assert model.stop_training
    assert sorted(p.name for p in tmp_path.glob("*.weights.h5")) == ["m_0001.weights.h5"]
    assert checkpoint.skipped == [2]
    with h5py.File(tmp_path / "m_0001.weights.h5") as f:
        arrays = []
        f.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    assert arrays and all(np.all(np.isfinite(a)) for a in arrays)


# ----------------------------------------------------------------------------- logs and plot

def test_csv_log_rewrites_rows_of_a_resumed_epoch_and_adds_columns(tmp_path):
    path = tmp_path / "training_log.csv"
    first = C.CSVLog(path, extra={"stage": "heads"})
    first.on_train_begin()
    for epoch in range(3):
        first.on_epoch_begin(epoch)
        first.on_epoch_end(epoch, {"loss": 3.0 - epoch, "rpn_class_loss": 1.0})
    # A run killed during epoch 3 after its row was written, resumed from checkpoint 2.
    second = C.CSVLog(path, extra={"stage": "all"})
    second.on_train_begin()
    second.on_epoch_begin(2)
    second.on_epoch_end(2, {"loss": 0.5, "rpn_class_loss": 0.2, "val_loss": 0.7, "learning_rate": 0.01})
    rows = C.read_csv_log(path)
    assert [(r["epoch"], r["stage"], r["loss"]) for r in rows] == [("1", "heads", "3.0"), ("2", "heads", "2.0"),
                                                                   ("3", "all", "0.5")]
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["epoch", "stage", "loss", "rpn_class_loss", "val_loss", "learning_rate", "time"]
    assert rows[0]["val_loss"] == "" and rows[2]["learning_rate"] == "0.01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training_log.csv"]  # written atomically


def test_loss_plot_draws_the_csv_log(tmp_path):
    csv_log = C.CSVLog(tmp_path / "log.csv", extra={"stage": "heads", "optimizer": "sgd"})
    csv_log.on_train_begin()
    for epoch, stage in enumerate(["heads", "heads", "all"]):
        csv_log.extra["stage"] = stage
        csv_log.on_epoch_begin(epoch)
        csv_log.on_epoch_end(epoch, {"loss": 3.0 - epoch, "val_loss": 3.5 - epoch, "learning_rate": 0.001})
    plot = C.LossPlot(tmp_path / "log.csv", tmp_path / "losses.png")
    plot.on_epoch_end(2)
    assert (tmp_path / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learning_rate_logger_adds_the_scheduled_rate():
    model = tiny_model(keras.optimizers.SGD(O.make_schedule("step", 0.1, boundaries=[2], decay_factor=0.1)))
    logger = attach(C.LearningRateLogger(), model)
    logs = {"loss": 1.0}
    logger.on_epoch_end(0, logs)
    assert logs["learning_rate"] == pytest.approx(0.1)
    model.optimizer.iterations.assign(2)
    logger.on_epoch_end(1, logs)
    assert logs["learning_rate"] == pytest.approx(0.01)


# ------------------------------------------------------------------------------------ plateau

def test_reduce_on_plateau_lowers_the_rate_and_its_state_survives_a_resume():
    model = tiny_model(keras.optimizers.SGD(O.make_schedule("plateau", 0.1)))
    plateau = attach(C.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.01), model)
    plateau.on_train_begin()
    rate = O.plateau_variable(model.optimizer)
    for epoch, val_loss in enumerate([1.0, 0.9, 0.895, 0.95]):  # 0.895 is not 0.01 better than 0.9
        plateau.on_epoch_end(epoch, {"loss": 5.0, "val_loss": val_loss})
    assert float(rate.numpy()) == pytest.approx(0.05)
    assert plateau.reductions == [{"epoch": 4, "from": pytest.approx(0.1), "to": pytest.approx(0.05)}]
    plateau.on_epoch_end(4, {"val_loss": 0.95})
    state = plateau.get_state()
    assert state["best"] == pytest.approx(0.9) and state["wait"] == 1

    resumed = attach(C.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.01), model)
    resumed.set_state(json.loads(json.dumps(state)))
    resumed.on_epoch_end(5, {"val_loss": 0.96})  # the second epoch without improvement
    assert float(rate.numpy()) == pytest.approx(0.025)

    scheduled = attach(C.ReduceLROnPlateau(), tiny_model(keras.optimizers.SGD(
        O.make_schedule("cosine", 0.1, total_steps=10))))
    with pytest.raises(ValueError, match="needs an optimizer made with schedule='plateau' or a constant"):
        scheduled.on_train_begin()


def test_reduce_on_plateau_says_1_epoch_not_1_epochs(caplog):
    """Issue 26, 10: counts in words that agree."""
    model = tiny_model(keras.optimizers.SGD(O.make_schedule("plateau", 0.1)))
    plateau = attach(C.ReduceLROnPlateau(factor=0.5, patience=1), model)
    plateau.on_train_begin()
    with caplog.at_level("WARNING", logger="mrcnn.callbacks"):
        for epoch, val_loss in enumerate([1.0, 1.5]):
            plateau.on_epoch_end(epoch, {"loss": 5.0, "val_loss": val_loss})
    assert "has not improved for 1 epoch;" in caplog.text


def test_loss_plot_marks_the_stage_switch_and_says_why_l2_loss_jumps(tmp_path, monkeypatch):
    """Issue 26, 7: at heads -> all the backbone's kernels join the L2 sum; the plot says so."""
    from mrcnn import visualize

    rows = [{"epoch": str(e), "stage": s, "optimizer": "sgd", "loss": "1", "l2_loss": l2}
            for e, s, l2 in ((1, "heads", "0.5"), (2, "heads", "0.5"), (3, "all", "1.1"))]
    switches, notes = C.stage_switches(rows)
    assert switches == [(2.0, "heads -> all")]
    assert "backbone" in notes["l2_loss"] and "trainable layers" in notes["l2_loss"]
    assert C.stage_switches(rows[:2]) == ([], {})
    optimiser_only = [dict(rows[0]), dict(rows[1], optimizer="adagrad")]
    assert C.stage_switches(optimiser_only) == ([(1.0, "sgd -> adagrad")], {})

    history = {"epoch": [1.0, 2.0, 3.0], "loss": [1.0, 1.0, 1.0], "l2_loss": [0.5, 0.5, 1.1]}
    figure = visualize.plot_history(history, boundaries=switches, notes=notes)
    texts = {ax.get_title(): [t.get_text() for t in ax.texts] + [" ".join(ax.get_xlabel().split())]
             for ax in figure.axes}
    assert "heads -> all" in texts["l2_loss"] and f"epoch {notes['l2_loss']}" in texts["l2_loss"]
    assert texts["loss"] == ["heads -> all", "epoch"]

    drawn = {}
    monkeypatch.setattr(visualize, "plot_history", lambda history, path, **kw: drawn.update(kw))
    csv_log = C.CSVLog(tmp_path / "log.csv", extra={"stage": "heads", "optimizer": "sgd"})
    csv_log.on_train_begin()
    for epoch, stage in enumerate(["heads", "all"]):
        csv_log.extra["stage"] = stage
        csv_log.on_epoch_begin(epoch)
        csv_log.on_epoch_end(epoch, {"loss": 1.0, "l2_loss": 0.5 + epoch})
    C.LossPlot(tmp_path / "log.csv", tmp_path / "losses.png").on_epoch_end(1)
    assert drawn["boundaries"] == [(1.0, "heads -> all")] and "l2_loss" in drawn["notes"]
