"""A layer written for float32, as keras.io's transformer examples write a positional encoding: it adds a float32
TensorFlow constant to its input. Under a half policy TensorFlow refuses the addition ("Input 'y' of 'AddV2' Op has
type float32 that does not match type float16"). ``--keras-policy NAME`` sets Keras' own policy by hand first."""

import sys

import devswitch  # noqa: F401 -- the one added line
import keras
import numpy as np
import tensorflow as tf

if sys.argv[1:2] == ["--keras-policy"]:
    keras.config.set_dtype_policy(sys.argv[2])


class PositionalEncoding(keras.layers.Layer):
    def __init__(self, length: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.encoding = tf.constant(np.linspace(0, 1, length * width).reshape(length, width), dtype=tf.float32)

    def call(self, x):
        return x + self.encoding


inputs = keras.Input((8, 16))
hidden = PositionalEncoding(8, 16)(inputs)
outputs = keras.layers.Dense(1, dtype="float32")(keras.layers.GlobalAveragePooling1D()(hidden))
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss="mse")
model.fit(np.ones((16, 8, 16), "float32"), np.ones((16, 1), "float32"), epochs=1, verbose=0)
print("RESULT ok")
