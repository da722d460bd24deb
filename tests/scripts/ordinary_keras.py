"""An ordinary Keras script with one added line (`import devswitch`); prints what it ran with as JSON."""

import devswitch  # noqa: F401  -- the one added line

import json
import sys

import keras
import numpy as np
import tensorflow as tf

inputs = keras.Input(shape=(8,))
hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
outputs = keras.layers.Dense(1, name="out", dtype="float32")(hidden)
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss="mse")
x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
y = x.sum(axis=1, keepdims=True)
history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
prediction = model.predict(x[:4], verbose=0)

print("RESULT " + json.dumps({
    "hidden_compute_dtype": model.get_layer("hidden").compute_dtype,
    "hidden_variable_dtype": model.get_layer("hidden").variable_dtype,
    "global_policy": keras.config.dtype_policy().name,
    "visible_gpus": len(tf.config.get_visible_devices("GPU")),
    "jit_compile": bool(model.jit_compile),
    "intra_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    "loss_finite": bool(np.isfinite(history.history["loss"][-1])),
    "prediction_shape": list(prediction.shape),
    "argv": sys.argv[1:],
}))
