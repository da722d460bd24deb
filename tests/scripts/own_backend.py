"""A script in keras.io's style: it picks its own backend (and a framework variable) in code, then imports Keras.

With ``--import-devswitch`` its first import is ``import devswitch``, the one added line. Prints one RESULT line:
the backend in force, what the framework made of a tensor, the frameworks loaded before ``import keras``, and
the variable as the framework saw it.
"""

import json
import os
import sys

if "--import-devswitch" in sys.argv:
    import devswitch  # noqa: F401 - the one added line

FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")
loaded_before = sorted(name for name in FRAMEWORKS if name in sys.modules)
os.environ["KERAS_BACKEND"] = "jax"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"

import keras  # noqa: E402 - after the script's own choice, as keras.io's examples do

tensor = keras.ops.ones((2,))
from _devswitch import session  # noqa: E402 - what devswitch applied (None when it is not there)

plan = session.plan()
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "tensor": type(tensor).__module__,
    "loaded_before_keras": loaded_before,
    "tf_cpp_min_log_level": os.environ.get("TF_CPP_MIN_LOG_LEVEL"),
    "plan_backend": plan.backend if plan is not None else None,
}), flush=True)
