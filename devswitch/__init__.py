"""devswitch — one switch for device and precision in Keras (TensorFlow, JAX, PyTorch).

This package is the face: the public API and the one-import activation, nothing else. The machinery lives
in ``_devswitch``, which imports without side effects (the CLI, the workers and the tests import it).

``import devswitch`` as the first import of a script resolves ``.devswitchrc`` files and ``DEVSWITCH_*``
variables and sets what a framework reads when it starts; the rest is applied when the script first imports
Keras, so a ``KERAS_BACKEND`` the script sets before that import is seen (a backend given to devswitch wins,
and the summary says so).
"""

from __future__ import annotations

from _devswitch._version import __version__
from _devswitch.config import Config, Value
from _devswitch.devices import Inventory, Plan
from _devswitch.errors import ConfigError, DeviceError, DevswitchError, RunError, TooLateError, UsageError
from _devswitch.session import config, configure, plan, reset, runs, scope, summary

__all__ = [
    "Config",
    "ConfigError",
    "DeviceError",
    "DevswitchError",
    "Inventory",
    "Plan",
    "RunError",
    "TooLateError",
    "UsageError",
    "Value",
    "config",
    "configure",
    "plan",
    "reset",
    "runs",
    "scope",
    "summary",
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
    "TimingCallback",
    "BatchTimingCallback",
    "benchmark",
    "find_batch_size",
]


def load_ipython_extension(ipython) -> None:
    """``%load_ext devswitch``: the ``%devswitch key=value ...`` magic, and each cell's timed calls shown."""
    from _devswitch.notebook import load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext devswitch`` (and the first half of ``%reload_ext``): the after-cell tables stop; the
    configuration in effect, configure()'s values included, stays."""
    from _devswitch.notebook import unload

    unload(ipython)


def __getattr__(name: str):
    # Keras-dependent parts load on first use, so the devswitch command starts without TensorFlow.
    if name in ("TimingCallback", "BatchTimingCallback"):
        from _devswitch import timing

        return getattr(timing, name)
    if name == "benchmark":
        from _devswitch.benchmarking import benchmark

        return benchmark
    if name == "find_batch_size":
        from _devswitch.batchfinder import find_batch_size

        return find_batch_size
    raise AttributeError(f"module 'devswitch' has no attribute {name!r}")


from _devswitch import session as _session

_session.activate_on_import()
