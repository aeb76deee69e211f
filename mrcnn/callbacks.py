"""Keras callbacks for training runs."""
import time

import keras

__all__ = ["TimeBudget"]


class TimeBudget(keras.callbacks.Callback):
    """Stop training after the step that passes a wall-clock budget (the epoch's checkpoint is still written)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = float(seconds)
        self.deadline = None

    def on_train_begin(self, logs=None):
        self.deadline = time.monotonic() + self.seconds

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() > self.deadline:
            self.model.stop_training = True
