"""TensorFlow's CPU memory pool, read through its own statistics (the benchmark's and the fit timing's).

TensorFlow is imported by ``cpu_pool``, never when this module is imported.
"""

from __future__ import annotations

from typing import Any


class CpuPool:
    """TensorFlow's CPU allocator's own statistics (oneDNN's BFC pool, the default on x86): its use at a start,
    and its peak above it. The pool keeps what it once took and reuses it without the resident memory growing,
    so its peak sees what the resident memory cannot. ``peak()`` is 0 where the allocator keeps none."""

    def __init__(self, tf: Any) -> None:
        self.tf = tf
        self._start: int | None = None

    def _info(self) -> dict | None:
        try:
            return self.tf.config.experimental.get_memory_info("CPU:0")
        except (ValueError, RuntimeError):  # an allocator without them (TF_ENABLE_ONEDNN_OPTS=0): malloc's
            return None

    def start(self) -> None:
        info = self._info()
        self._start = None if info is None else int(info["current"])
        if info is not None:
            self.tf.config.experimental.reset_memory_stats("CPU:0")

    def peak(self) -> int:
        info = self._info()
        return 0 if info is None or self._start is None else max(0, int(info["peak"]) - self._start)


def cpu_pool() -> CpuPool:
    """The CPU pool's statistics (TensorFlow is imported by then: the backend in use)."""
    import tensorflow as tf

    return CpuPool(tf)
