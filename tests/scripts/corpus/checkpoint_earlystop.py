"""The everyday callbacks: ModelCheckpoint keeping the best model by val_loss, EarlyStopping restoring the
best weights, then keras.models.load_model of the checkpoint and evaluate on held-out data."""

BACKENDS = ("tensorflow", "jax", "torch")

import json
import os
import zipfile

import keras
import numpy as np

keras.utils.set_random_seed(37)
rng = np.random.default_rng(37)
x = rng.normal(size=(400, 5)).astype("float32")
y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 1.5], dtype="float32") > 0).astype("float32")
x_train, y_train, x_test, y_test = x[:300], y[:300], x[300:], y[300:]

model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer=keras.optimizers.Adam(5e-3), loss="binary_crossentropy",
              metrics=["accuracy", keras.metrics.AUC(name="auc")])
os.makedirs("checkpoints", exist_ok=True)
callbacks = [
    keras.callbacks.ModelCheckpoint("checkpoints/best.keras", monitor="val_loss", save_best_only=True),
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True),
]
history = model.fit(x_train, y_train, validation_split=0.25, batch_size=25, epochs=4, callbacks=callbacks,
                    verbose=0)

best = keras.models.load_model("checkpoints/best.keras")
evaluated = best.evaluate(x_test, y_test, batch_size=50, verbose=0, return_dict=True)
with zipfile.ZipFile("checkpoints/best.keras") as archive:
    members = sorted(archive.namelist())
    config = json.loads(archive.read("config.json"))
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "epochs_run": len(history.history["loss"]),
    "loss": history.history["loss"][-1],
    "test_loss": evaluated["loss"],
    "test_metrics": sorted(evaluated),
    "files": {"names": sorted(os.listdir("checkpoints")), "members": members, "config_keys": sorted(config),
              "compile_config_keys": sorted(config.get("compile_config") or {}),
              "loss_in_compile_config": (config.get("compile_config") or {}).get("loss"),
              "weight_shapes": [list(w.shape) for w in best.weights]},
}))
