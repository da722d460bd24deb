"""Model factories for devswitch compare tests."""

import keras


def tiny():
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4, dtype="float32")(hidden), name="tiny")


def fp32_only():
    if keras.config.dtype_policy().name != "float32":
        raise RuntimeError("this factory refuses mixed precision")
    return tiny()


def build_model():
    return tiny()


def unnamed():
    """A model with Keras' automatic name ("sequential"): compare titles it with the factory's name."""
    return keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(4, dtype="float32")])
