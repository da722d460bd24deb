"""A model that overrides train_step the TensorFlow way (GradientTape inside, its own loss tracker and
metrics), then fit and evaluate with the built-in test_step."""

BACKENDS = ("tensorflow",)

import json

import keras
import numpy as np
import tensorflow as tf


class TrackedModel(keras.Model):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae_metric = keras.metrics.MeanAbsoluteError(name="mae")

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = keras.losses.mean_squared_error(y, y_pred)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        self.mae_metric.update_state(y, y_pred)
        return {"loss": self.loss_tracker.result(), "mae": self.mae_metric.result()}

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae_metric]


keras.utils.set_random_seed(5)
rng = np.random.default_rng(5)
x = rng.normal(size=(256, 10)).astype("float32")
y = np.sin(x[:, :1]) + 0.05 * rng.normal(size=(256, 1)).astype("float32")

inputs = keras.Input(shape=(10,))
h = keras.layers.Dense(32, activation="relu")(inputs)
outputs = keras.layers.Dense(1)(h)
model = TrackedModel(inputs, outputs)
model.compile(optimizer="adam", loss="mse")
history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
evaluated = model.evaluate(x, y, verbose=0, return_dict=True)
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "loss": history.history["loss"][-1],
    "mae": history.history["mae"][-1],
    "history_keys": sorted(history.history),
    "evaluated_keys": sorted(evaluated),
}))
