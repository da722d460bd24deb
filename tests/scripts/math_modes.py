"""The float32 math modes applied for real on this CPU, on the backend KERAS_BACKEND names; prints JSON.

Started with DEVSWITCH_MATH=ieee: reads the mode back from the framework, times a tiny benchmark and a fit
(their records carry the mode), then switches to bf16 and to auto with configure() and measures what a
1024x1024 float32 matmul computes under each, then reset().
"""

import devswitch  # noqa: F401  -- the one added line: applies DEVSWITCH_MATH

import json
import os

import keras
import numpy as np

from _devswitch import backends
from _devswitch.devices import detect_cpu

BACKEND = keras.backend.backend()
module = backends.get(BACKEND)
rng = np.random.default_rng(0)
A, B = rng.standard_normal((2, 1024, 1024), dtype=np.float32)


def framework() -> object:
    """The framework's own reading, straight from its API (not devswitch's)."""
    if BACKEND == "torch":
        import torch

        try:
            legacy = torch.get_float32_matmul_precision()
        except RuntimeError:  # PyTorch refuses the old reading once the new API was used
            legacy = "mixed"
        return [legacy, getattr(torch.backends.mkldnn.matmul, "fp32_precision", None)]
    if BACKEND == "jax":
        import jax

        return jax.config.jax_default_matmul_precision
    import tensorflow as tf

    return tf.config.experimental.tensor_float_32_execution_enabled()


def matmul() -> np.ndarray:
    return keras.ops.convert_to_numpy(keras.ops.matmul(keras.ops.convert_to_tensor(A), keras.ops.convert_to_tensor(B)))


def rel(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.linalg.norm(x.astype(np.float64) - y) / np.linalg.norm(y.astype(np.float64)))


out = {"backend": BACKEND, "ieee": {"framework": framework(), "plan": devswitch.plan().math,
                                    "state": module.math_state()}}
from _devswitch import accuracy  # noqa: E402
from _devswitch.models import mlp  # noqa: E402

keras.utils.set_random_seed(0)
reference = accuracy.reference(mlp(), samples=8)  # this backend, full float32: the same configuration again
(record,) = devswitch.benchmark(mlp(), batch_sizes=(2,), iterations=2, warmup=1, peak_probe=False,
                                predict_baseline=False, energy=False, reference=reference)
out["ieee"]["record"] = record.to_dict()["math"]
out["ieee"]["error_same_configuration"] = record.to_dict()["accuracy"]["max_rel_error"]
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
model.compile(optimizer="sgd", loss="mse")
model.fit(np.ones((8, 4), "float32"), np.ones((8, 2), "float32"), epochs=1, verbose=0)
out["ieee"]["call"] = devswitch.runs()[-1].to_dict()["math"]
ieee = matmul()

devswitch.configure(math="bf16")
out["bf16"] = {"framework": framework(), "plan": devswitch.plan().math, "rel_error": rel(matmul(), ieee)}
# the claims behind the warnings, measured: forced by hand, bf16 math changes nothing where devswitch says so
if BACKEND == "jax":
    import jax

    with jax.default_matmul_precision("bfloat16"):
        out["bf16"]["forced_rel_error"] = rel(matmul(), ieee)
elif BACKEND == "torch":
    import torch

    before = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    out["bf16"]["forced_rel_error"] = rel(matmul(), ieee)
    torch.backends.mkldnn.matmul.fp32_precision = before
devswitch.configure(math="auto")
out["auto"] = {"framework": framework(), "plan": devswitch.plan().math}
devswitch.reset()
out["after_reset"] = framework()
out["cpu_flags"] = sorted(detect_cpu().features)
out["env"] = os.environ.get("DEVSWITCH_MATH")
print("RESULT " + json.dumps(out))
