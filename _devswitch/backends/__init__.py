"""One module per Keras backend, behind one small interface; chosen once, the way Keras picks its own
(``keras/src/backend/__init__.py``).

Every backend module defines the names of the ``typing.Protocol`` ``interface.Backend`` (the one statement of
the interface; mypy checks each module against it in ``_checked.py``, and ``get`` returns a ``Backend``), and nothing
outside this package imports a framework (TensorFlow, JAX, PyTorch) directly.

Adding a fourth backend means adding one module that mypy accepts as a ``Backend`` (and naming it in a
``_check_<name>: Backend`` line of ``_checked.py``): ``NAMES`` (``../backendnames.py``) is every module of this
package but ``common`` and ``interface``, and ``LIBRARIES``, ``EXTRAS``, ``DISPLAY`` are read from
the modules on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import cast

from ..backendnames import NAMES
from ..devices import detect_cpu
from ..plans import Gpu, Inventory
from .interface import Backend

_FROM_MODULES = {"LIBRARIES": "LIBRARY", "EXTRAS": "EXTRA", "DISPLAY": "DISPLAY"}


def __getattr__(name: str) -> dict[str, str]:
    # read from the backend modules (devswitch's, not the frameworks) when first asked for, then kept
    if name in _FROM_MODULES:
        table = {backend: getattr(get(backend), _FROM_MODULES[name]) for backend in NAMES}
        globals()[name] = table
        return table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _table(name: str) -> dict[str, str]:
    return globals().get(name) or __getattr__(name)


def get(name: str) -> Backend:
    """The backend module for ``name`` (imports devswitch's module, not yet the framework)."""
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}")
    # each module is checked against Backend by its _check_<name> line above
    return cast(Backend, importlib.import_module(f"{__name__}.{name}"))


def detect_gpus(name: str = "tensorflow") -> tuple[Gpu, ...]:
    """The GPUs backend ``name``'s framework sees, numbered as it numbers them (imports that framework)."""
    return get(name).detect_gpus()


def detect(name: str = "tensorflow") -> Inventory:
    """The machine as backend ``name`` sees it: the CPU, and the GPUs its framework lists."""
    return Inventory(detect_cpu(), detect_gpus(name))


def installed(name: str) -> bool:
    """Whether the framework can be imported, without importing it."""
    library = _table("LIBRARIES")[name]
    if library in sys.modules:
        return True
    try:
        return importlib.util.find_spec(library) is not None
    except (ImportError, ValueError):
        return False


def missing_reason(name: str) -> str | None:
    """Why ``name`` cannot run here (its framework is not installed), or None."""
    if installed(name):
        return None
    return f'{_table("LIBRARIES")[name]} is not installed: pip install "{_table("EXTRAS")[name]}"'


def keras_running() -> str | None:
    """The backend of an already imported Keras, or None when Keras is not imported yet."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        return keras.backend.backend()
    except AttributeError:  # Keras is being imported right now
        config = sys.modules.get("keras.src.backend.config")
        return getattr(config, "_BACKEND", None)
