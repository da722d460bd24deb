"""Keras' own dtype-policy machinery step by step, plain and then with devswitch in the process (nothing
chosen, reset, precision chosen, the choice withdrawn); prints what each step built as JSON."""

import json
import os
import sys

import keras


def dense() -> list[str]:
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    return [layer.dtype_policy.name, layer.compute_dtype, layer.variable_dtype]


def steps(policy: str = "mixed_bfloat16") -> list[list[str]]:
    """set_floatx, clear_session, set_dtype_policy, clear_session: the layer each builds; then Keras as
    it starts (floatx float32, no global policy)."""
    built = []
    keras.config.set_floatx("float16")
    built.append(dense())
    keras.backend.clear_session()
    built.append(dense())
    keras.config.set_dtype_policy(policy)
    built.append(dense())
    keras.backend.clear_session()
    built.append(dense())
    keras.config.set_floatx("float32")
    keras.backend.clear_session()
    return built


result = {"plain": steps()}
import devswitch  # noqa: E402 -- after plain Keras on purpose; every setting at its default

result["precision source"] = devswitch.config()["precision"].source
result["devswitch"] = steps()
devswitch.reset()
result["after reset"] = steps()
os.environ["DEVSWITCH_PRECISION"] = "bf16"
devswitch.configure()
result["chosen"] = steps("float32")
del os.environ["DEVSWITCH_PRECISION"]
devswitch.configure()  # the choice withdrawn: Keras' own mechanism again
result["withdrawn"] = steps()
devswitch.reset()
result["tensorflow imported"] = "tensorflow" in sys.modules
print("RESULT " + json.dumps(result))
