"""An ordinary script: one import, a fit with validation, an evaluate and two predicts.

Prints what it saw (RESULT line: the number of timed runs, its argv, __name__ and sys.path[0]), then ends
as asked: --crash (Keras raises inside a fit), --raise (its own error), --exit N.
"""

import devswitch  # noqa: F401

import json
import sys

import keras
import numpy as np

x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)],
                         name="tiny")
model.compile(optimizer="adam", loss="mse")
model.fit(x, y, epochs=3, batch_size=32, validation_split=0.25, verbose=0)
model.evaluate(x, y, verbose=0)
model.predict(x, verbose=0)
model.predict(x, verbose=0)
if "--crash" in sys.argv:
    model.fit(x, np.zeros((3, 1)), epochs=1, verbose=0)  # mismatched sizes: Keras raises
print("RESULT " + json.dumps({"runs": len(devswitch.runs()), "argv": sys.argv, "name": __name__,
                              "path0": sys.path[0]}))
if "--raise" in sys.argv:
    raise LookupError("the script's own error")
if "--exit" in sys.argv:
    sys.exit(int(sys.argv[sys.argv.index("--exit") + 1]))
