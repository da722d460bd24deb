"""A small training script with its own arguments, for compare --script: --epochs N, --no-fit,
--fail-under NAME (raises when the Keras policy's name holds NAME, e.g. float16), --validation."""

import argparse
import json

import keras
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument("--no-fit", action="store_true")
parser.add_argument("--fail-under", default="")
parser.add_argument("--validation", action="store_true")
args = parser.parse_args()

policy = keras.config.dtype_policy().name
if args.fail_under and args.fail_under in policy:
    raise RuntimeError(f"this script does not run under {policy}")
rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 2, size=(64,))
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu"),
                          keras.layers.Dense(2, activation="softmax", dtype="float32")])
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
if not args.no_fit:
    history = model.fit(x, y, epochs=args.epochs, batch_size=8, verbose=0,
                        validation_split=0.25 if args.validation else 0.0)
    print("HISTORY " + json.dumps({"epochs": len(history.history["loss"]), "keys": sorted(history.history)}))
model.evaluate(x, y, verbose=0)
model.predict(x, verbose=0)
print(f"done under {policy}")
