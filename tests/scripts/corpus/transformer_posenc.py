"""A transformer encoder block for sequence classification: token embedding plus a sinusoidal positional
encoding (a custom layer adding a constant table), multi-head self-attention, a feed-forward block, layer
norms and residuals; fit on a toy task (does token 1 appear before token 2?)."""

BACKENDS = ("tensorflow", "jax", "torch")

import json

import keras
import numpy as np
from keras import layers, ops

VOCAB, LENGTH, WIDTH = 20, 16, 32


class PositionalEncoding(layers.Layer):
    def __init__(self, length, width, **kwargs):
        super().__init__(**kwargs)
        position = np.arange(length)[:, None]
        rate = 1 / np.power(10000, (2 * (np.arange(width) // 2)) / width)
        table = position * rate
        table[:, 0::2], table[:, 1::2] = np.sin(table[:, 0::2]), np.cos(table[:, 1::2])
        self.table = table[None].astype("float32")

    def call(self, x):
        return x + ops.convert_to_tensor(self.table)


class EncoderBlock(layers.Layer):
    def __init__(self, width, heads, hidden, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.attention = layers.MultiHeadAttention(num_heads=heads, key_dim=width // heads)
        self.ffn = keras.Sequential([layers.Dense(hidden, activation="relu"), layers.Dense(width)])
        self.norm1, self.norm2 = layers.LayerNormalization(epsilon=1e-6), layers.LayerNormalization(epsilon=1e-6)
        self.drop1, self.drop2 = layers.Dropout(rate), layers.Dropout(rate)

    def call(self, x, training=False):
        attended = self.drop1(self.attention(x, x), training=training)
        x = self.norm1(x + attended)
        return self.norm2(x + self.drop2(self.ffn(x), training=training))


keras.utils.set_random_seed(29)
rng = np.random.default_rng(29)
tokens = rng.integers(3, VOCAB, size=(384, LENGTH))
for row in tokens:
    a, b = rng.choice(LENGTH, size=2, replace=False)
    row[a], row[b] = 1, 2
labels = (np.argmax(tokens == 1, axis=1) < np.argmax(tokens == 2, axis=1)).astype("int32")

inputs = keras.Input(shape=(LENGTH,), dtype="int32")
h = layers.Embedding(VOCAB, WIDTH)(inputs)
h = PositionalEncoding(LENGTH, WIDTH)(h)
h = EncoderBlock(WIDTH, heads=4, hidden=64)(h)
h = layers.GlobalAveragePooling1D()(h)
outputs = layers.Dense(2, activation="softmax")(h)
model = keras.Model(inputs, outputs)
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(tokens, labels, batch_size=32, epochs=2, verbose=0)
probabilities = model.predict(tokens[:32], verbose=0)
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "loss": history.history["loss"][-1],
    "probability_sum": float(ops.convert_to_numpy(ops.sum(probabilities))),
}))
