"""A script that sets Keras' mixed precision itself (the global policy mixed_float16 before building), with
the output layer kept in float32, as the Keras guide recommends; fit and evaluate."""

BACKENDS = ("tensorflow", "jax", "torch")

import json

import keras
import numpy as np

keras.mixed_precision.set_global_policy("mixed_float16")
keras.utils.set_random_seed(43)
rng = np.random.default_rng(43)
x = rng.normal(size=(256, 16)).astype("float32")
y = (x[:, :8].mean(axis=1) > 0).astype("int32")

inputs = keras.Input((16,))
h = keras.layers.Dense(32, activation="relu")(inputs)
h = keras.layers.Dense(32, activation="relu")(h)
outputs = keras.layers.Dense(2, activation="softmax", dtype="float32")(h)
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
loss, accuracy = model.evaluate(x, y, verbose=0)
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "policy": keras.mixed_precision.global_policy().name,
    "hidden_compute_dtype": model.layers[1].compute_dtype,
    "optimizer": type(model.optimizer).__name__,
    "loss": history.history["loss"][-1],
    "test_loss": loss,
}))
