"""Training, FP32 vs half precision, on a real dataset that ships offline (scikit-learn's digits, upsampled
to 32x32 so the convolutions have work to do): time to train, steady samples/s, and the accuracy reached —
so you can see what half precision buys and that it does not cost accuracy.

    python examples/train_classifier.py                      # fp32 vs half on this machine
    python examples/train_classifier.py --precisions fp32,bf16,fp16 --epochs 8
    devswitch compare examples/train_classifier.py --mode training --devices cpu   # synthetic-data timing
"""

import devswitch

import argparse

import keras
import numpy as np


def load_data():
    """Digits (1,797 images, 10 classes) from scikit-learn's package data, upsampled 4x to 32x32."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.kron(digits.images / 16.0, np.ones((4, 4))).astype("float32")[..., None]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    return x[order], digits.target[order]


def build_model():
    return keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),
            keras.layers.Activation("softmax", dtype="float32"),
        ],
        name="digits_cnn",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", default="fp32,half")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    x, y = load_data()
    split = int(0.8 * len(x))
    rows = []
    for precision in args.precisions.split(","):
        plan = devswitch.configure(precision=precision)
        keras.utils.set_random_seed(0)
        model = build_model()  # built after configure(): the policy applies to its layers
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[:split], y[:split], epochs=args.epochs, batch_size=args.batch_size, verbose=0)
        fit = devswitch.runs()[-1]  # the record devswitch kept of that fit
        _, accuracy = model.evaluate(x[split:], y[split:], verbose=0)
        rows.append((f"{precision} ({plan.policy})", fit.wall_s, fit.first_s, fit.steady_samples_per_s, accuracy))

    print(f"\n{'precision':<28}{'train time':>12}{'1st epoch':>11}{'steady samples/s':>18}{'test accuracy':>15}")
    for name, wall, first, rate, accuracy in rows:
        print(f"{name:<28}{wall:>10.2f} s{first:>9.2f} s{rate or 0:>18,.0f}{accuracy:>15.3f}")
    base = rows[0][3]
    for name, _, _, rate, _ in rows[1:]:
        if base and rate:
            print(f"{name}: {rate / base:.2f}x the steady training throughput of {rows[0][0]}")


if __name__ == "__main__":
    main()
