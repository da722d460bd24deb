"""One module per Keras backend, behind one small interface; chosen once, the way Keras picks its own
(``keras/src/backend/__init__.py``).

Every backend module defines the same names, and nothing outside this package
imports a framework (TensorFlow, JAX, PyTorch) directly:

``LIBRARY``, ``EXTRA``, ``DISPLAY``
    the import name of the framework, the pip extra that installs it, its name in messages.
``SEES_GPUS_WHEN_ON_CPU``
    whether a process set up for the CPU still sees how many GPUs the machine has.
``environment(config) -> dict``
    variables to set before the framework is imported (device visibility, memory, logging);
    a pure function of the configuration.
``refuse(config)``
    raise ConfigError for a setting this backend cannot honour at all (before anything changes).
``start(config, environ)``
    what must happen before the devices are detected (JAX joins its multi-worker cluster).
``detect_gpus() -> tuple[Gpu, ...]``
    the GPUs this framework sees, numbered as it numbers them.
``CPU_HALF = (precision, reason)``
    what ``precision: half`` means on a CPU with native bf16 on this backend, from measurements
    (the rule itself, and the GPU rule, live once in ``devices.half``).
``CPU_FP16``
    what precision fp16 measured on a CPU with this backend, and on which model (the fp16 warning quotes it).
``UNSEEN_STEPS``
    the custom-loop steps devswitch cannot see on this backend (its fp16 start-up warning names them), or None.
``meanings(config, plan) -> dict``
    per setting, what it does on this backend (``info`` shows it; "not applicable ... because ...").
``plan_distribution(config, plan, environ) -> StrategyPlan``
    the strategy, from the framework's own distribution engine; raises ConfigError.
``preflight(config, plan)``, ``apply(config, plan, strategy_plan)``
    refuse what a running runtime can no longer take (TooLateError), then set the framework up.
``versions() -> dict``, ``model_device(model) -> str``
    facts for the records.
``Runner(model, jit_compile, gpus)``
    the benchmark's compiled call path: ``input``, ``forward``, ``sync``, ``peak_memory``,
    ``matmul_peak``.

Adding a fourth backend means adding one module with these names: ``NAMES`` is every module of this
package but ``common``, and ``LIBRARIES``, ``EXTRAS``, ``DISPLAY`` are read from the modules on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from types import ModuleType

DEFAULT = "tensorflow"  # Keras' own default backend, listed first
_NOT_BACKENDS = {"common"}
NAMES: tuple[str, ...] = tuple(
    sorted(
        (m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_BACKENDS and not m.name.startswith("_")),
        key=lambda name: (name != DEFAULT, name),
    )
)
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


def get(name: str) -> ModuleType:
    """The backend module for ``name`` (imports devswitch's module, not yet the framework)."""
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


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
