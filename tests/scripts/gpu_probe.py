"""On a real GPU, for the backend KERAS_BACKEND names: the switch applied and read back from the framework itself.

Started with DEVSWITCH_DEVICE=gpu:0, DEVSWITCH_PRECISION=half, DEVSWITCH_MATH=ieee and DEVSWITCH_FALLBACK=error.
Prints one ``RESULT {json}`` line: the plan; where the framework put a tensor; a real fit in the half type;
a 2048x2048 float32 matmul's error against float64 under math ieee and then tf32 (configure()); and a
benchmark record's GPU peak memory. Prints ``NOGPU reason`` instead when the framework sees no GPU.
"""

import devswitch  # noqa: F401  -- the one added line: applies the DEVSWITCH_* variables

import json
import subprocess

import keras
import numpy as np

from _devswitch import backends
from _devswitch.models import mlp

BACKEND = keras.backend.backend()
module = backends.get(BACKEND)


def framework_gpus() -> int:
    """The GPUs the framework itself sees (not devswitch's detection)."""
    if BACKEND == "jax":
        import jax

        return len([d for d in jax.devices() if d.platform == "gpu"])
    if BACKEND == "torch":
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    import tensorflow as tf

    return len(tf.config.list_logical_devices("GPU"))


def placed(tensor) -> str:
    """Where the framework put ``tensor``, in its own words."""
    if BACKEND == "jax":
        return ",".join(sorted(f"{d.platform}:{d.id}" for d in tensor.devices()))
    if BACKEND == "torch":
        return str(tensor.device)
    return str(tensor.device)


def compute_capability() -> list[int]:
    text = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader", "-i", "0"],
                          capture_output=True, text=True, timeout=30).stdout.strip()
    major, _, minor = text.partition(".")
    return [int(major), int(minor or 0)]


def rel(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.linalg.norm(x.astype(np.float64) - y) / np.linalg.norm(y))


if framework_gpus() == 0:
    print(f"NOGPU {BACKEND} sees no GPU (a CPU-only build of it?)")
    raise SystemExit(0)

plan = devswitch.plan()
out: dict = {"backend": BACKEND, "cc": compute_capability(), "framework_gpus": framework_gpus(),
             "plan": {"device": plan.device, "gpus": list(plan.gpus), "precision": plan.precision,
                      "summary": plan.summary()}}
out["placed"] = placed(keras.ops.ones((4, 4)))

# half: a real fit in the half type devswitch chose
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x, y = rng.standard_normal((512, 32)).astype("float32"), rng.integers(0, 10, 512)
model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(10, activation="softmax", dtype="float32")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
losses = model.fit(x, y, epochs=3, batch_size=64, verbose=0).history["loss"]
out["half"] = {"compute_dtype": model.layers[0].compute_dtype, "policy": keras.config.dtype_policy().name,
               "losses": [float(v) for v in losses]}

# math: ieee (the environment), then tf32 through configure(), each against float64
A, B = rng.standard_normal((2, 2048, 2048)).astype(np.float32)
exact = A.astype(np.float64) @ B.astype(np.float64)


def matmul() -> np.ndarray:  # float32 tensors: the dtype policy (layers only) does not apply
    return keras.ops.convert_to_numpy(keras.ops.matmul(keras.ops.convert_to_tensor(A, "float32"),
                                                       keras.ops.convert_to_tensor(B, "float32")))


out["math"] = {"ieee": {"plan": devswitch.plan().math, "state": module.math_state(), "rel_error": rel(matmul(), exact)}}
devswitch.configure(math="tf32")
out["math"]["tf32"] = {"plan": devswitch.plan().math, "state": module.math_state(), "rel_error": rel(matmul(), exact)}
devswitch.configure(math="ieee")

# the benchmark record carries the GPU allocator's peak
# and each batch size's own peak memory (smallest first; the matmul probe after them)
records = devswitch.benchmark(mlp(), batch_sizes=(256, 16384), iterations=3, warmup=1, predict_baseline=False,
                              energy=False)
record = records[0]
out["benchmark"] = {"status": record.status, "device": record.device, "gpu_memory_peak_bytes":
                    record.gpu_memory_peak_bytes, "samples_per_s": record.samples_per_s}
out["peak_memory"] = [{"batch": r.batch, "status": r.status, "peak": r.peak_memory_bytes,
                       "source": r.peak_memory_source, "gpu_peak": r.gpu_memory_peak_bytes} for r in records]
print("RESULT " + json.dumps(out))
