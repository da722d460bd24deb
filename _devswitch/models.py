"""Bundled models for benchmarks and comparisons: AlexNet, a small CNN and an MLP.

Each builder returns an uncompiled Keras model built under the global dtype
policy in effect (so build it after devswitch has applied the precision). The
last activation is float32 in every model, as mixed precision requires.
"""

from __future__ import annotations

from collections.abc import Callable


def alexnet(classes: int = 1000):
    """AlexNet as in the whitepaper comparison: 96-256-384-384-256 convolutions, 4096-4096-1000 dense.

    224x224x3 input; 50.8 M parameters and about 2.0 GFLOP per image (forward).
    """
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((224, 224, 3)),
            layers.Conv2D(96, 11, strides=4, activation="relu"),
            layers.MaxPooling2D(3, strides=2),
            layers.Conv2D(256, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(3, strides=2),
            layers.Conv2D(384, 3, padding="same", activation="relu"),
            layers.Conv2D(384, 3, padding="same", activation="relu"),
            layers.Conv2D(256, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(3, strides=2),
            layers.Flatten(),
            layers.Dense(4096, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(4096, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(classes),
            layers.Activation("softmax", dtype="float32"),
        ],
        name="alexnet",
    )


def small_cnn(classes: int = 10):
    """A small CIFAR-sized CNN (32x32x3): two conv blocks and a dense head."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(classes),
            layers.Activation("softmax", dtype="float32"),
        ],
        name="small_cnn",
    )


def mlp(classes: int = 10):
    """A multilayer perceptron on flattened 28x28 images: 784-512-512-10."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((784,)),
            layers.Dense(512, activation="relu"),
            layers.Dense(512, activation="relu"),
            layers.Dense(classes),
            layers.Activation("softmax", dtype="float32"),
        ],
        name="mlp",
    )


BUNDLED: dict[str, Callable] = {"alexnet": alexnet, "small_cnn": small_cnn, "mlp": mlp}
