"""The keras.io opening: the script picks its backend in code (KERAS_BACKEND=jax before import keras),
trains with fit, then uses JAX itself on the model's outputs (jax.jit, jax.nn)."""

BACKENDS = ("jax",)

import os

os.environ["KERAS_BACKEND"] = "jax"

import json

import jax
import jax.numpy as jnp
import keras
import numpy as np

keras.utils.set_random_seed(41)
rng = np.random.default_rng(41)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x[:, 0] - x[:, 1] > 0).astype("int32")

inputs = keras.Input((8,))
outputs = keras.layers.Dense(2)(keras.layers.Dense(16, activation="relu")(inputs))
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)

logits = model(x)  # a jax.Array on this backend
entropy = jax.jit(lambda z: -jnp.sum(jax.nn.softmax(z) * jax.nn.log_softmax(z), axis=-1).mean())(logits)
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "logits_type": type(logits).__module__.split(".")[0],
    "loss": history.history["loss"][-1],
    "entropy": float(entropy),
}))
