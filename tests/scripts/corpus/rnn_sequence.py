"""A recurrent model on a toy time series: a bidirectional LSTM then a GRU, predicting the next value;
fit with a validation set and a learning-rate schedule."""

BACKENDS = ("tensorflow", "jax", "torch")

import json

import keras
import numpy as np

keras.utils.set_random_seed(31)
rng = np.random.default_rng(31)
t = np.arange(0, 200 * 0.1 + 20 * 0.1, 0.1)
series = (np.sin(t) + 0.1 * rng.normal(size=t.shape)).astype("float32")
windows = np.stack([series[i:i + 21] for i in range(200)])
x, y = windows[:, :20, None], windows[:, 20:]

model = keras.Sequential([
    keras.Input((20, 1)),
    keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True)),
    keras.layers.GRU(8),
    keras.layers.Dense(1),
])
schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=10, decay_rate=0.9)
model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
history = model.fit(x[:160], y[:160], validation_data=(x[160:], y[160:]), batch_size=20, epochs=2, verbose=0)
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "loss": history.history["loss"][-1],
    "val_loss": history.history["val_loss"][-1],
}))
