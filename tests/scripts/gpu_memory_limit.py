"""On a real GPU, for the backend KERAS_BACKEND names: memory_limit applied, read back from the framework itself,
and met: an allocation above the cap fails with the framework's own out-of-memory error.

Started with DEVSWITCH_DEVICE=gpu:0, DEVSWITCH_MEMORY_LIMIT=0.25 and DEVSWITCH_FALLBACK=error. Prints one
``RESULT {json}`` line: the GPU's memory, the limit the framework reports, and whether a buffer of 0.4 of the GPU
(above the cap, far below the GPU) was refused as out of memory. Prints ``NOGPU reason`` when it sees no GPU.
"""

import devswitch  # noqa: F401  -- the one added line: applies the DEVSWITCH_* variables

import json

import keras

from _devswitch import apply, backends

BACKEND = keras.backend.backend()
module = backends.get(BACKEND)


def limit_and_total() -> tuple[float | None, int | None]:
    """The cap as the framework reports it (bytes), and the GPU's memory (the inventory's: framework or NVML)."""
    inventory = apply.inventory()
    total = inventory.gpus[0].memory_bytes if inventory and inventory.gpus else None
    if BACKEND == "torch":
        import torch

        total = total or torch.cuda.get_device_properties(0).total_memory
        return torch.cuda.get_per_process_memory_fraction(0) * total, total
    if BACKEND == "jax":
        import jax

        return float(jax.devices("gpu")[0].memory_stats()["bytes_limit"]), total
    import tensorflow as tf

    (config,) = tf.config.get_logical_device_configuration(tf.config.list_physical_devices("GPU")[0])
    return float(config.memory_limit) * 2**20, total


def allocate(nbytes: int) -> str:
    """Allocate ``nbytes`` on the GPU: "ok", "oom" (the backend's own out-of-memory error) or the error's name."""
    try:
        count = nbytes // 4
        if BACKEND == "torch":
            import torch

            torch.empty(count, dtype=torch.float32, device="cuda:0").fill_(1.0)
        elif BACKEND == "jax":
            import jax.numpy as jnp

            jnp.ones((count,), dtype=jnp.float32).block_until_ready()
        else:
            import tensorflow as tf

            with tf.device("/GPU:0"):
                tf.ones((count,), dtype=tf.float32).numpy()
        return "ok"
    except Exception as error:  # noqa: BLE001 - which error it was is the result
        return "oom" if module.out_of_memory(error) else f"{type(error).__name__}: {str(error)[:200]}"


if not module.detect_gpus():
    print("NOGPU the framework sees no GPU")
else:
    limit, total = limit_and_total()
    result = {"backend": BACKEND, "limit_bytes": limit, "total_bytes": total}
    result["above_the_cap"] = allocate(int(0.4 * total)) if total else "unknown total"
    result["below_the_cap"] = allocate(int(0.05 * total)) if total else "unknown total"
    print("RESULT " + json.dumps(result), flush=True)
