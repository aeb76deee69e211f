"""Programs that tests/leafseg/training/test_train.py runs in fresh Python processes.

    python -m tests.train_subprocess mirrored OUT_DIR     # losses on one device vs MirroredStrategy
    python -m tests.train_subprocess train MARKER EPOCH ARGS...   # leafseg train ARGS, held at EPOCH
    python -m tests.train_subprocess adapt MARKER EPOCH ARGS...   # leafseg adapt ARGS, its first
                                                                  # training held at EPOCH

``mirrored`` needs a fresh process because the two logical CPU devices must be configured
before TensorFlow starts; it prints one JSON line. TensorFlow is imported inside the functions,
after that configuration.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# Steps compared between one device and two replicas, and their learning rate (large enough
# that every step moves the weights, and clipping at GRADIENT_CLIP_NORM takes part).
MIRRORED_STEPS = 3
MIRRORED_LR = 0.01


def mirrored(out_dir):
    """Train the toy model for a few steps on one device (train_on_batch) and under a
    MirroredStrategy over two logical CPUs (MaskRCNN.train) from the same weights.

    Each replica gets the very batch the single device gets (the global batch is that batch
    twice), so with correct gradient averaging and clipping every step's losses agree.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from mrcnn import model as modellib
    from mrcnn.pipeline import build_dataset
    from mrcnn.trainable import set_trainable
    from tests.toy_data import ToyConfig, shapes_dataset

    class StepLosses(keras.callbacks.Callback):
        """Each step's own losses (Keras reports running means over the epoch)."""

        def __init__(self):
            super().__init__()
            self.steps, self._mean = [], {}

        def on_train_batch_end(self, batch, logs=None):
            mean = {name: float(value) for name, value in logs.items()}
            self.steps.append({name: (batch + 1) * value - batch * self._mean.get(name, 0.0)
                               for name, value in mean.items()})
            self._mean = mean

    dataset = shapes_dataset(4)
    config = ToyConfig(STEPS_PER_EPOCH=MIRRORED_STEPS)
    keras.utils.set_random_seed(0)
    single = modellib.MaskRCNN("training", config, os.path.join(out_dir, "single"))
    initial = single.save_weights(os.path.join(out_dir, "initial.weights.h5"))
    set_trainable(single.keras_model, "all", train_bn=config.TRAIN_BN)
    trainer = single.compile_trainer(learning_rate=MIRRORED_LR)
    batches = build_dataset(dataset, config, seed=0).take(MIRRORED_STEPS)
    one_device = [trainer.train_on_batch(batch, return_dict=True) for batch in batches]

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        keras.utils.set_random_seed(0)  # the same seed for the ROI sampling of DetectionTargetLayer
        replicated = modellib.MaskRCNN("training", config.replace(GPU_COUNT=2), os.path.join(out_dir, "mirrored"))
    replicated.load_weights(initial)
    doubled = build_dataset(dataset, config, seed=0).map(
        lambda batch: {name: tf.concat([value, value], axis=0) for name, value in batch.items()})
    steps = StepLosses()
    replicated.train(doubled, None, learning_rate=MIRRORED_LR, epochs=1, layers="all", custom_callbacks=[steps],
                     verbose=0)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "devices": devices,
                      "one_device": [{k: float(v) for k, v in s.items()} for s in one_device],
                      "mirrored": steps.steps}))


# Seconds a held training run waits for the test's signal before giving up.
HOLD_SECONDS = 600


def hold_callback(marker, epoch):
    """A Keras callback whose epoch ``epoch`` (counted from 1) begins by writing the file
    ``marker`` and then waiting for a signal (SIGKILL, SIGINT) from the test: the test acts on an
    observable event, at a known point of the run, whatever the host's speed."""
    import time

    import keras

    class Hold(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            if index + 1 == int(epoch):
                with open(marker, "w") as handle:
                    handle.write(f"epoch {epoch} began\n")
                deadline = time.monotonic() + HOLD_SECONDS
                while time.monotonic() < deadline:
                    time.sleep(0.05)

    return Hold()


def train(marker, epoch, *argv):
    """``leafseg train ARGV``, held when epoch ``epoch`` begins (:func:`hold_callback`)."""
    from leafseg.cli.train import main

    sys.exit(main(list(argv), callbacks=[hold_callback(marker, epoch)]))


def adapt(marker, epoch, *argv):
    """``leafseg adapt ARGV``, each student's training held when its epoch ``epoch`` begins
    (:func:`hold_callback`)."""
    from leafseg.cli.adapt import main

    sys.exit(main(list(argv), callbacks=[hold_callback(marker, epoch)]))


if __name__ == "__main__":
    {"mirrored": mirrored, "train": train, "adapt": adapt}[sys.argv[1]](*sys.argv[2:])
