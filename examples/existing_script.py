"""An ordinary Keras training script. The only devswitch line is the first import.

python examples/existing_script.py                         # defaults / .devswitchrc
DEVSWITCH_PRECISION=half python examples/existing_script.py
DEVSWITCH_DEVICE=cpu DEVSWITCH_PRECISION=bf16 python examples/existing_script.py
devswitch run --precision half examples/existing_script.py --epochs 3   # no import needed at all
"""

import devswitch  # noqa: F401  -- the one added line

import argparse

import keras
from sklearn.datasets import load_digits

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()

digits = load_digits()  # 1,797 8x8 images shipped inside scikit-learn: no download
x = (digits.images / 16.0).astype("float32")[..., None]
y = digits.target
split = int(0.8 * len(x))

model = keras.Sequential(
    [
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
        keras.layers.Activation("softmax", dtype="float32"),  # keep the softmax in float32 under mixed precision
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x[:split], y[:split], epochs=args.epochs, batch_size=32, validation_split=0.1, verbose=0)
loss, accuracy = model.evaluate(x[split:], y[split:], verbose=0)
model.predict(x[split:], verbose=0)
print(f"test accuracy {accuracy:.3f} (policy {keras.config.dtype_policy().name})")
