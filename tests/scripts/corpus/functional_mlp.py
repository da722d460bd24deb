"""A functional-API classifier on tabular data: fit with a validation split, evaluate, save as .keras,
load it back and evaluate the loaded model."""

BACKENDS = ("tensorflow", "jax", "torch")

import json
import os
import zipfile

import keras
import numpy as np
from keras import layers

keras.utils.set_random_seed(7)
rng = np.random.default_rng(7)
x = rng.normal(size=(320, 12)).astype("float32")
y = (x[:, :3].sum(axis=1) > 0).astype("int32")

inputs = keras.Input(shape=(12,), name="features")
h = layers.Dense(32, activation="relu", name="hidden")(inputs)
h = layers.BatchNormalization()(h)
h = layers.Dense(16, activation="relu")(h)
outputs = layers.Dense(2, activation="softmax", name="label")(h)
model = keras.Model(inputs, outputs, name="tabular")
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(x, y, batch_size=32, epochs=2, validation_split=0.2, verbose=0)
test_loss, test_acc = model.evaluate(x, y, batch_size=64, verbose=0)

os.makedirs("saved", exist_ok=True)
model.save("saved/tabular.keras")
loaded = keras.models.load_model("saved/tabular.keras")
loaded_loss, _ = loaded.evaluate(x, y, batch_size=64, verbose=0)

with zipfile.ZipFile("saved/tabular.keras") as archive:
    members = sorted(archive.namelist())
    config = json.loads(archive.read("config.json"))
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "loss": history.history["loss"][-1],
    "val_loss": history.history["val_loss"][-1],
    "test_loss": test_loss,
    "loaded_loss": loaded_loss,
    "files": {"names": sorted(os.listdir("saved")), "members": members, "config_keys": sorted(config),
              "compile_config_keys": sorted(config.get("compile_config") or {}),
              "weight_shapes": [list(w.shape) for w in loaded.weights]},
}))
