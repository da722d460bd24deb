"""An unmodified training script (plus the one import): deterministic data and weights, no shuffling.

Prints the losses, the final weights' checksum and what it ran on.
"""

import devswitch  # noqa: F401

import json

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(1)
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x @ rng.normal(size=(8, 1))).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh",
                                                               kernel_initializer=keras.initializers.GlorotUniform(3)),
                          keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(4))])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
history = model.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)
runs = devswitch.runs()
print("RESULT " + json.dumps({
    "losses": [float(v) for v in history.history["loss"]],
    "checksum": float(sum(float(np.sum(w)) for w in model.get_weights())),
    "replicas": model.distribute_strategy.num_replicas_in_sync,
    "strategy": type(model.distribute_strategy).__name__,
    "multi_worker": isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy),
    "variable_type": type(model.weights[0].value).__name__,
    "record_replicas": runs[0].replicas if runs else None,
    "record_workers": runs[0].workers if runs else None,
}))
