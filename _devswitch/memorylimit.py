"""``memory_limit``: a cap on the GPU memory this process takes, a size (``8GiB``) or a fraction of each
selected GPU's memory (``0.5``). The setting's canonical value is text (``settings.parse_memory_limit``):
``none``, a fraction (``0.5``) or a size with its unit (``8GiB``); this module turns it into what each
backend's own mechanism takes (bytes for TensorFlow's logical device, a fraction for JAX's variable and
PyTorch's ``set_per_process_memory_fraction``) against a device's memory, and says what it does where.
Pure: the device's memory comes in as an argument (the inventory's ``Gpu.memory_bytes``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from .errors import ConfigError, TooLateError
from .memory import format_size, parse_size

if TYPE_CHECKING:
    from .config import Config
    from .plans import Inventory, Plan

T = TypeVar("T", int, float)
NONE = "none"
ON_CPU = "nothing on a CPU: it caps GPU memory only (no backend caps host memory); set, it is warned about"


def parts(text: str) -> tuple[int | None, float | None]:
    """(bytes, None) for a size, (None, fraction) for a fraction, (None, None) for none."""
    if text == NONE:
        return None, None
    if text[-1:].isalpha():
        return parse_size(text), None
    return None, float(text)


def fraction_of(text: str, total: int | None) -> float | None:
    """The fraction of a device of ``total`` bytes that the limit allows (a size above it: 1.0); None when
    there is no limit, or a size on a device of unknown memory."""
    size, fraction = parts(text)
    if fraction is not None:
        return fraction
    if size is None or not total:
        return None
    return min(1.0, size / total)


def bytes_of(text: str, total: int | None) -> int | None:
    """The bytes the limit allows on a device of ``total`` bytes (at most ``total``); None when there is no
    limit, or a fraction of a device of unknown memory."""
    size, fraction = parts(text)
    if size is not None:
        return min(size, total) if total else size
    if fraction is None or not total:
        return None
    return int(fraction * total)


def fraction_text(fraction: float) -> str:
    """How the fraction is written into a variable: enough digits for a size of a large GPU (0.0576)."""
    return f"{fraction:.4g}"


def meaning(config: Config, plan: Plan, mechanism: str) -> str:
    """What memory_limit does here (``devswitch info``): the backend's ``mechanism`` on a GPU, nothing on a CPU."""
    if not plan.gpus:
        return ON_CPU
    return mechanism + ("" if config.memory_limit != NONE else " (not set: no cap)")


def notes(config: Config, plan: Plan, inventory: Inventory) -> list[str]:
    """The warnings memory_limit gives whatever the backend: set on a CPU, where it does nothing; a size
    above a selected GPU's memory, where it caps nothing."""
    value = config["memory_limit"]
    if value.value == NONE:
        return []
    if not plan.gpus:
        return [
            f"memory_limit={value.value} ({value.location}) does nothing on a CPU: it caps GPU memory only and no "
            "backend caps host memory, so nothing is limited here"
        ]
    size, _ = parts(value.value)
    out = []
    for index in plan.gpus:
        total = inventory.gpus[index].memory_bytes if index < len(inventory.gpus) else None
        if size is not None and total and size >= total:
            out.append(
                f"memory_limit={value.value} ({value.location}) is not below gpu:{index}'s {format_size(total)}: "
                "it caps nothing there"
            )
    return out


def per_gpu(
    config: Config,
    plan: Plan,
    inventory: Inventory | None,
    backend: str,
    convert: Callable[[str, int | None], T | None],
    hint: str,
) -> dict[int, T]:
    """``convert(limit, the GPU's memory)`` (bytes_of, fraction_of) for each selected GPU; {} without a limit;
    a ConfigError naming the source where it needs a GPU's memory that ``inventory`` does not know."""
    if config.memory_limit == NONE:
        return {}
    out = {}
    for index in plan.gpus:
        total = inventory.gpus[index].memory_bytes if inventory and index < len(inventory.gpus) else None
        value = convert(config.memory_limit, total)
        if value is None:
            raise ConfigError(unknown_memory(config, backend, index), where=config["memory_limit"].location, hint=hint)
        out[index] = value
    return out


def unknown_memory(config: Config, backend: str, index: int) -> str:
    """The reason a limit cannot be turned into what ``backend`` takes: the device's memory is unknown."""
    return (
        f"memory_limit={config.memory_limit} is a {'fraction' if parts(config.memory_limit)[1] else 'size'} "
        f"but gpu:{index}'s memory is unknown to {backend} here (it is read through NVML: pip install nvidia-ml-py)"
    )


# --- JAX: one fraction, in a variable read when its GPU client starts --------------------------------------

# The current name, and the older one, which newer jaxlibs still read but refuse beside the current one
# (xla_client: "XLA_CLIENT_MEM_FRACTION is specified together with XLA_PYTHON_CLIENT_MEM_FRACTION").
MEM_FRACTION = ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION")


@functools.cache
def fraction_variable() -> str:
    """The variable this jaxlib reads (found in its xla_client.py without importing it); the older name,
    which every jaxlib reads, where that cannot be told."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("jaxlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            if MEM_FRACTION[0] in (Path(folder) / "xla_client.py").read_text(encoding="utf-8", errors="replace"):
                return MEM_FRACTION[0]
        except OSError:
            continue
    return MEM_FRACTION[1]


def jax_mechanism() -> str:
    """What memory_limit does on JAX, for ``devswitch info``."""
    return (
        f"{fraction_variable()} (a fraction of each GPU; a size as a fraction of the largest GPU's memory, read "
        "through NVML) before JAX starts; with memory_growth=false JAX takes it all at start"
    )


def jax_refuse_late(config: Config, plan: Plan, wanted: Mapping[str, str], environ: Mapping[str, str]) -> None:
    """A TooLateError where JAX has started with another fraction than the limit's (``wanted``: the variables
    devswitch would set; JAX reads them once, when its GPU client starts)."""
    if plan.gpus and any(environ.get(n) != v for n, v in wanted.items() if n in MEM_FRACTION):
        raise TooLateError(
            f"memory_limit={config.memory_limit} cannot be applied: JAX has already started",
            hint="make 'import devswitch' the first import of the script, run it with 'devswitch run script.py', "
            "or set DEVSWITCH_MEMORY_LIMIT before Python starts",
        )


def jax_variables(
    config: Config, environ: Mapping[str, str], gpu_memory: Callable[[], Mapping[int, int]]
) -> dict[str, str]:
    """memory_limit as JAX's fraction of each GPU's memory (JAX applies one fraction to every GPU; a size is
    taken of the largest GPU, ``gpu_memory()`` read through NVML before JAX starts: exactly the size there,
    less on a smaller one). The name a user already set is kept (jaxlib refuses both names); with none set,
    the name this jaxlib reads. {} without a limit, on device=cpu, or for a size of GPUs of unknown memory
    (``jax_notices`` says so)."""
    if config.memory_limit == NONE or config.device == "cpu":
        return {}
    fraction = parts(config.memory_limit)[1]
    if fraction is None:
        fraction = fraction_of(config.memory_limit, max(gpu_memory().values(), default=None))
        if fraction is None:
            return {}
    names = [name for name in MEM_FRACTION if environ.get(name)] or [fraction_variable()]
    return {name: fraction_text(fraction) for name in names}


def jax_notices(
    config: Config, plan: Plan, before: Callable[[str], str | None], gpu_memory: Callable[[], Mapping[int, int]]
) -> list[str]:
    """A limit JAX did not get (a size with no GPU memory known before JAX starts), and a user's own fraction
    variable that the limit replaces (``before(name)``: its value before devswitch set it; a setting given to
    devswitch wins, and says so)."""
    value = config["memory_limit"]
    if value.value == NONE or not plan.gpus:
        return []
    wanted = jax_variables(config, {name: before(name) or "" for name in MEM_FRACTION}, gpu_memory)
    if not wanted:
        return [
            f"{unknown_memory(config, 'JAX', plan.gpus[0])}: JAX takes a fraction, so no limit is applied; give a "
            "fraction instead, e.g. memory_limit: 0.5"
        ]
    out = []
    for name, ours in wanted.items():
        theirs = before(name)  # the user's (or the script's) value, before devswitch set its own
        if theirs and theirs != ours:
            out.append(
                f"{name}={ours} (memory_limit={value.value}, {value.location}) over {name}={theirs} from the "
                "environment: a setting given to devswitch wins"
            )
    return out
