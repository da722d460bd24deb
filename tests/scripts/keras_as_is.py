"""Keras' own saving, loading and errors, plain and then with devswitch in the process: a compiled model saved
(.keras, legacy .h5, .weights.h5, ModelCheckpoint) and loaded back, evaluated, and a fit that fails inside the
framework (the data's shape is not the model's). Prints what each phase saw as JSON."""

import json
import os
import re
import sys
import warnings
from pathlib import Path

if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    # Keras' saving asks whether TensorFlow is importable (and so imports it) even on JAX and PyTorch; this
    # process keeps it out (TensorFlow and PyTorch are never in one process here), and Keras does without it
    sys.modules["tensorflow"] = None  # type: ignore[assignment]

import keras  # noqa: E402
import numpy as np  # noqa: E402


def phase(folder: Path) -> dict:
    folder.mkdir(exist_ok=True)
    keras.backend.clear_session()  # the same layer names in both phases
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)

    def build():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])

    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.MeanSquaredError(),
        metrics=[keras.metrics.MeanAbsoluteError()],
    )
    checkpoint = keras.callbacks.ModelCheckpoint(str(folder / "checkpoint.keras"))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[checkpoint])
    seen = {"evaluate": model.evaluate(x, y, verbose=0), "compile config": model.get_compile_config()}
    model.save(folder / "model.keras")
    model.save(folder / "model.h5")  # Keras' legacy HDF5 format
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("model.keras", "model.h5", "checkpoint.keras"):
            loaded = keras.models.load_model(folder / name)
            seen[name] = {
                "loss": repr(loaded.loss),
                "optimizer": type(getattr(loaded, "optimizer", None)).__name__,
                "compiled": loaded.compiled,
                "evaluate": loaded.evaluate(x, y, verbose=0),
                "compile config": loaded.get_compile_config(),
            }
    seen["warnings"] = sorted({str(w.message).split(".")[0] for w in caught if "compile" in str(w.message)})
    model.save_weights(folder / "model.weights.h5")
    again = build()
    again.load_weights(folder / "model.weights.h5")
    seen["weights"] = bool(np.array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0)))
    try:
        model.fit(np.zeros((16, 5), "float32"), np.zeros((16, 1), "float32"), verbose=0)  # 5 features, not 4
        seen["error"] = None
    except Exception as error:  # noqa: BLE001 - the framework's own error is what is compared
        # TensorFlow numbers its traced functions process-wide: the number is left out of the comparison
        seen["error"] = [type(error).__name__, re.sub(r"(__inference_\w+?)_\d+\b", r"\1", str(error))]
    return json.loads(json.dumps(seen, default=repr))


result = {"plain": phase(Path("plain"))}
import devswitch  # noqa: E402 -- after plain Keras on purpose

result["devswitch"] = phase(Path("devswitch"))
result["applied"] = devswitch.plan() is not None
result["tensorflow imported"] = sys.modules.get("tensorflow") is not None
print("RESULT " + json.dumps(result))
