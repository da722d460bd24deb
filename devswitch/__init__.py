"""devswitch — one switch for device and precision in TensorFlow/Keras.

``import devswitch`` as the first import of a script resolves ``.devswitchrc``
files and ``DEVSWITCH_*`` variables and applies them to TensorFlow/Keras.
"""

from __future__ import annotations

from ._version import __version__
from .config import Config, Value
from .devices import Inventory, Plan
from .errors import ConfigError, DeviceError, DevswitchError, RunError, TooLateError, UsageError
from .session import config, configure, plan, reset, runs, scope, summary

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
]


def load_ipython_extension(ipython) -> None:
    """``%load_ext devswitch``: the ``%devswitch key=value ...`` magic, and each cell's timed calls shown."""
    from .notebook import load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext devswitch`` (and the first half of ``%reload_ext``): the after-cell tables stop; the
    configuration in effect, configure()'s values included, stays."""
    from .notebook import unload

    unload(ipython)


def __getattr__(name: str):
    # Keras-dependent parts load on first use, so the devswitch command starts without TensorFlow.
    if name in ("TimingCallback", "BatchTimingCallback"):
        from . import timing

        return getattr(timing, name)
    if name == "benchmark":
        from .benchmarking import benchmark

        return benchmark
    raise AttributeError(f"module 'devswitch' has no attribute {name!r}")


from . import session as _session

if not _session.invoked_as_cli():
    _session.activate_on_import()
