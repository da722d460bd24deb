"""A subclassed keras.Model with its own call (dropout only in training), trained with fit; its weights
saved to .weights.h5 and loaded into a fresh instance, whose predictions must match."""

BACKENDS = ("torch", "tensorflow", "jax")

import json
import os

import h5py
import keras
import numpy as np


class Regressor(keras.Model):
    def __init__(self, width=24, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Dense(width, activation="tanh")
        self.second = keras.layers.Dense(width // 2, activation="relu")
        self.dropout = keras.layers.Dropout(0.1)
        self.head = keras.layers.Dense(1)

    def call(self, inputs, training=False):
        h = self.first(inputs)
        h = self.dropout(self.second(h), training=training)
        return self.head(h)


keras.utils.set_random_seed(11)
rng = np.random.default_rng(11)
x = rng.normal(size=(300, 6)).astype("float32")
y = (x @ rng.normal(size=(6, 1)) + 0.1 * rng.normal(size=(300, 1))).astype("float32")

model = Regressor()
model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse", metrics=["mae"])
history = model.fit(x, y, batch_size=30, epochs=3, verbose=0)

os.makedirs("weights", exist_ok=True)
model.save_weights("weights/regressor.weights.h5")
fresh = Regressor()
fresh(x[:1])
fresh.load_weights("weights/regressor.weights.h5")
same = bool(np.allclose(model.predict(x, verbose=0), fresh.predict(x, verbose=0), rtol=1e-6, atol=1e-6))

datasets = []
with h5py.File("weights/regressor.weights.h5", "r") as f:
    f.visititems(lambda name, obj: datasets.append([name, list(obj.shape)]) if isinstance(obj, h5py.Dataset)
                 else None)
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "loss": history.history["loss"][-1],
    "reloaded_predictions_match": same,
    "files": {"names": sorted(os.listdir("weights")), "datasets": sorted(datasets)},
}))
