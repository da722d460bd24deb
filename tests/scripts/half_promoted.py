"""half_mismatch.py's float32-only layer for JAX and PyTorch (no TensorFlow): a positional encoding that adds a
float32 constant to its input, and a loss that subtracts float32 labels from the model's output. Under a half
policy TensorFlow refuses the addition; JAX and PyTorch promote float16 with float32 to float32 instead, so the
fit runs. Prints RESULT with the backend, the policy, the layer's output dtype, the loss and whether TensorFlow
was imported."""

import json
import sys

import devswitch  # noqa: F401 -- the one added line
import keras
import numpy as np


class PositionalEncoding(keras.layers.Layer):
    def __init__(self, length: int, width: int, **kwargs):
        super().__init__(**kwargs)
        table = np.linspace(0, 1, length * width).reshape(length, width)
        self.encoding = keras.ops.convert_to_tensor(table, dtype="float32")

    def call(self, x):
        return x + self.encoding


def loss(y_true, y_pred):
    return keras.ops.mean((y_true - y_pred) ** 2)  # float32 labels minus the model's output


encoding = PositionalEncoding(8, 16)
inputs = keras.Input((8, 16))
outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(encoding(inputs)))
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss=loss)
history = model.fit(np.ones((16, 8, 16), "float32"), np.ones((16, 1), "float32"), epochs=1, verbose=0)
half = keras.ops.ones((2, 8, 16), dtype=encoding.compute_dtype)
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "policy": keras.config.dtype_policy().name,
    "input dtype": keras.backend.standardize_dtype(half.dtype),
    "output dtype": keras.backend.standardize_dtype(encoding(half).dtype),
    "loss": float(history.history["loss"][-1]),
    "tensorflow imported": "tensorflow" in sys.modules,
}))
