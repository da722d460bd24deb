"""Starts TensorFlow's runtime first, then imports devswitch: the wrong order."""

import tensorflow as tf

tf.constant(1.0) + 1.0  # the runtime is now initialised

import devswitch  # noqa: E402,F401

print("RESULT {}")
