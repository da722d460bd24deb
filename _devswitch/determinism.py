"""``deterministic`` and ``seed``: what they ask for, the warnings that go with them, and the seeding.

Each backend applies its own mechanism (``backends/*.py``: the variables it sets before the framework starts
in ``environment``, the calls in ``apply``, the ops it cannot vouch for in ``notices``, what it does in
``meanings``); this module holds what is the same on every backend: whether determinism is asked for
(``wanted``), the warning a setting alone cannot keep its promise with, and the seeding through Keras
(``seed``), which happens once Keras is imported.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config

CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")  # the two values cuBLAS documents as deterministic
XLA_GPU_FLAG = "--xla_gpu_deterministic_ops"


def wanted(config: Config) -> bool:
    """Whether deterministic ops are asked for: ``true``, or ``auto`` with a seed set."""
    value = config.deterministic
    return value is True or (value == "auto" and config.seed is not None)


def words(config: Config) -> str:
    """The setting as ``info`` shows it: 'true', 'auto (true: seed is set)', 'auto (false: no seed)'."""
    value = config.deterministic
    if value == "auto":
        return "auto (true: seed is set)" if wanted(config) else "auto (false: no seed, the framework's default)"
    return str(value).lower()


def notices(config: Config) -> list[str]:
    """What ``deterministic`` cannot promise on any backend without a seed."""
    if wanted(config) and config.seed is None:
        return [
            f"deterministic=true ({config['deterministic'].location}) without a seed: the ops are deterministic, "
            "but every run starts from other random weights, dropout masks and shuffles; set seed: N "
            "(DEVSWITCH_SEED=N) for runs that repeat"
        ]
    return []


def on_gpu(config: Config, gpus: tuple[int, ...], gap: str) -> list[str]:
    """The warning for what a backend's mechanism does not cover on a GPU ([] on a CPU or when not asked)."""
    return [f"deterministic=true on {config.backend}: {gap}"] if wanted(config) and gpus else []


def xla_flags(existing: str) -> str:
    """``existing`` XLA_FLAGS with the deterministic-ops flag appended (a user's own value of it kept)."""
    if XLA_GPU_FLAG in existing:
        return existing
    return f"{existing} {XLA_GPU_FLAG}=true".strip()


def seed(config: Config) -> None:
    """Seed Python, NumPy and the backend through ``keras.utils.set_random_seed`` (with Keras imported).

    Keras also seeds TensorFlow whenever it is installed, importing it to do so; in a jax or torch process
    that has not imported TensorFlow, devswitch keeps it out (a second framework's start-up and memory), so
    a tf.data pipeline that script builds later is not seeded by devswitch (``info`` says so)."""
    if config.seed is None:
        return
    import keras
    from keras.src.utils import module_utils

    lazy = module_utils.tensorflow
    keep_out = config.backend != "tensorflow" and "tensorflow" not in sys.modules and lazy._available is None
    if keep_out:
        lazy._available = False  # what Keras reads to decide whether to import TensorFlow and seed it
    try:
        keras.utils.set_random_seed(config.seed)
    finally:
        if keep_out:
            lazy._available = None


def meanings(config: Config, mechanism: str, generators: str) -> dict[str, str]:
    """``info``'s lines for deterministic and seed on a backend: ``mechanism``, what ``deterministic: true``
    sets there; ``generators``, what ``keras.utils.set_random_seed`` seeds there."""
    deterministic = (
        f"{words(config)}: {mechanism}"
        if wanted(config)
        else f"{words(config)}: nothing set, the framework's default (GPU kernels, threads and shuffles may "
        "differ run to run)"
    )
    if config.backend != "tensorflow":
        generators += " (TensorFlow only where it is already imported: devswitch does not start it here)"
    seeded = (
        f"{config.seed}: keras.utils.set_random_seed({config.seed}) when Keras is set up: {generators}"
        if config.seed is not None
        else "none: nothing seeded (every run starts from other random weights)"
    )
    return {"deterministic": deterministic, "seed": seeded}
