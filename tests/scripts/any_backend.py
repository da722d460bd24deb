"""An ordinary Keras script on any backend with the one added line; prints what it ran with as JSON."""

import devswitch  # noqa: F401  -- the one added line

import json
import sys

import keras
import numpy as np

inputs = keras.Input(shape=(8,))
hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
outputs = keras.layers.Dense(1, name="out", dtype="float32")(hidden)
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss="mse")
x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
y = x.sum(axis=1, keepdims=True)
history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
loss = model.evaluate(x, y, verbose=0)
prediction = model.predict(x[:4], verbose=0)
plan = devswitch.plan()
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "hidden_compute_dtype": model.get_layer("hidden").compute_dtype,
    "global_policy": keras.config.dtype_policy().name,
    "jit_compile": bool(model.jit_compile),
    "tensorflow_imported": "tensorflow" in sys.modules,
    "loss_finite": bool(np.isfinite(history.history["loss"][-1])) and bool(np.isfinite(loss)),
    "prediction_shape": list(prediction.shape),
    "runs": [[r.kind, r.status, r.device, r.policy] for r in devswitch.runs()],
    "plan_backend": plan.backend if plan else None,
}))
