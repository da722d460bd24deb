"""A factory for devswitch compare tests: quick in fp32, endless under a mixed policy.

The second configuration of a compare then runs on and on, standing in for a long --min-time, while the
first one finishes at once.
"""

import threading

import keras


def build_model():
    if keras.config.dtype_policy().name != "float32":
        threading.Event().wait()  # never set: the factory never returns, until compare ends the worker
    inputs = keras.Input((16,))
    return keras.Model(inputs, keras.layers.Dense(4, dtype="float32")(inputs), name="quick")
