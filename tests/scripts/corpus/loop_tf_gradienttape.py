"""A custom training loop in TensorFlow's own API: a tf.data pipeline, tf.GradientTape, a Keras model and
optimizer, a tf.function step, and a validation pass with a Keras metric."""

BACKENDS = ("tensorflow",)

import json

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(21)
rng = np.random.default_rng(21)
x = rng.normal(size=(320, 8)).astype("float32")
y = (x[:, 0] * x[:, 1] > 0).astype("int32")
train = tf.data.Dataset.from_tensor_slices((x[:256], y[:256])).batch(32)
val = tf.data.Dataset.from_tensor_slices((x[256:], y[256:])).batch(64)

model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2)])
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
optimizer = keras.optimizers.Adam(learning_rate=3e-3)
val_accuracy = keras.metrics.SparseCategoricalAccuracy()


@tf.function
def train_step(xb, yb):
    with tf.GradientTape() as tape:
        logits = model(xb, training=True)
        loss = loss_fn(yb, logits)
    grads = tape.gradient(loss, model.trainable_weights)
    optimizer.apply_gradients(zip(grads, model.trainable_weights))
    return loss


losses = []
for epoch in range(3):
    for xb, yb in train:
        losses.append(float(train_step(xb, yb)))
    val_accuracy.reset_state()
    for xb, yb in val:
        val_accuracy.update_state(yb, model(xb, training=False))
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "steps": len(losses),
    "loss": losses[-1],
    "val_accuracy": float(val_accuracy.result()),
}))
