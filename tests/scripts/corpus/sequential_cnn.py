"""A small convnet written with keras.Sequential on 12x12 one-channel images: Conv2D, pooling, dropout,
a few steps of fit, then predict."""

BACKENDS = ("tensorflow", "jax", "torch")

import json

import keras
import numpy as np

keras.utils.set_random_seed(3)
rng = np.random.default_rng(3)
images = rng.uniform(size=(256, 12, 12, 1)).astype("float32")
labels = (images[:, :6].mean(axis=(1, 2, 3)) > images[:, 6:].mean(axis=(1, 2, 3))).astype("int32")

model = keras.Sequential([
    keras.Input(shape=(12, 12, 1)),
    keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
    keras.layers.MaxPooling2D(2),
    keras.layers.Conv2D(16, 3, activation="relu"),
    keras.layers.GlobalAveragePooling2D(),
    keras.layers.Dropout(0.25),
    keras.layers.Dense(2),
])
model.compile(optimizer="rmsprop", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["sparse_categorical_accuracy"])
history = model.fit(images, labels, batch_size=32, epochs=2, shuffle=True, verbose=0)
logits = model.predict(images[:16], verbose=0)
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "loss": history.history["loss"][-1],
    "logit_sum": float(np.abs(logits).sum()),
}))
