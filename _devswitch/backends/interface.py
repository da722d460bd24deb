"""The backend interface in code: what the package calls on a backend module, as one ``typing.Protocol``.

A backend is a module (``tensorflow.py``, ``jax.py``, ``torch.py``), not a class: mypy checks each module
against :class:`Backend` where ``backends/__init__.py`` assigns it to a ``Backend``-typed name, and
``backends.get`` returns a ``Backend``, so every caller is checked against this class too. The table of
``docs/architecture.md`` is generated from it (``python -m _devswitch.docs``) and ``tests/test_backends.py``
reads it; neither restates it.

Constants are read-only properties here so that a module's ``UNSEEN_STEPS = None`` satisfies ``str | None``.
One name is optional and read with ``getattr``: ``cluster(config, environ)``, for a backend that joins a
multi-process cluster itself (JAX) and checks its variables before the devices are detected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..config import Config
    from ..plans import Gpu, Plan, StrategyPlan


class BenchmarkRunner(Protocol):
    """The benchmark's compiled call path on one backend (``benchmarking.py`` drives it)."""

    def input(self, shape: tuple[int, ...]) -> Any:
        """A float32 input of ``shape`` on the model's device (framework tensor)."""

    def to_host(self, x: Any) -> Any:
        """``x`` as a NumPy array."""

    def forward(self, x: Any) -> Any:
        """The model's compiled inference call on ``x``."""

    def sync(self, y: Any) -> None:
        """Wait until ``y`` is computed, without copying it to the host."""

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory measurement (where the framework can)."""

    def peak_memory(self) -> int | None:
        """Peak device memory in bytes since the last reset, or None when unknown."""

    def peak_memory_source(self) -> str:
        """How the last ``peak_memory()`` was measured on the GPU, in words (or why it is unknown)."""

    def host_pool_start(self) -> None:
        """On a CPU, before a batch size: note what the framework's own memory pool holds (where it keeps one)."""

    def host_pool_peak(self) -> int:
        """On a CPU, after the batch size's first steps: the peak of the framework's own pool above its use
        before them (0 where it keeps no statistics). A pool reuses memory it kept from earlier work without
        the process's resident memory growing, so this can see what the resident memory cannot."""

    def matmul_peak(
        self, dtype: str, size: int, iterations: int = ..., clock: Callable[[], float] = ...
    ) -> tuple[float, float]:
        """Measured GFLOP/s of a ``size`` x ``size`` matmul in ``dtype``, and the seconds it took."""


class HostPool(Protocol):
    """A framework's own CPU memory pool, read through its statistics (``Backend.cpu_pool``)."""

    def start(self) -> None:
        """Note the pool's use now and reset its peak."""

    def peak(self) -> int:
        """The pool's peak in bytes above its use at ``start`` (0 where the framework keeps no pool)."""


class Backend(Protocol):
    """Every name the package reads from a backend module."""

    @property
    def LIBRARY(self) -> str:
        """The framework's import name (``tensorflow``, ``jax``, ``torch``)."""

    @property
    def EXTRA(self) -> str:
        """The pip requirement that installs it (``devswitch[jax]``)."""

    @property
    def DISPLAY(self) -> str:
        """Its name in messages (``JAX``)."""

    @property
    def SEES_GPUS_WHEN_ON_CPU(self) -> bool:
        """Whether a process set up for the CPU still sees how many GPUs the machine has."""

    @property
    def CPU_HALF(self) -> tuple[str, str]:
        """What ``precision: half`` means on a CPU with native bf16: (precision, measured reason)."""

    @property
    def CPU_FP16(self) -> str:
        """What fp16 measured on a CPU with this backend, and on which model (the fp16 warning quotes it)."""

    @property
    def UNSEEN_STEPS(self) -> str | None:
        """The custom-loop steps devswitch cannot see on this backend, or None."""

    def environment(self, config: Config, environ: Mapping[str, str]) -> dict[str, str]:
        """Variables to set before the framework is imported; pure."""

    def refuse(self, config: Config) -> None:
        """Raise ConfigError for a setting this backend cannot honour at all, before anything changes."""

    def start(self, config: Config, environ: Mapping[str, str]) -> None:
        """What must happen before the devices are detected (JAX joins its multi-worker cluster)."""

    def detect_gpus(self) -> tuple[Gpu, ...]:
        """The GPUs this framework sees, numbered as it numbers them."""

    def math_effect(self, mode: str, kind: str, environ: Mapping[str, str]) -> tuple[str | None, str]:
        """What ``math: mode`` puts in force on ``kind`` of device (``maths.KINDS``): (mode or None, why)."""

    def apply_math(self, plan: Plan) -> None:
        """Set float32 math for ``plan.maths``, undoable by ``reset()``."""

    def math_state(self) -> dict[str, Any]:
        """What the framework itself says about float32 math, for tests and records."""

    def meanings(self, config: Config, plan: Plan) -> dict[str, str]:
        """Per setting, what it does on this backend (``devswitch info`` shows it)."""

    def notices(self, config: Config, plan: Plan) -> list[str]:
        """Warnings about this configuration on this backend."""

    def plan_distribution(self, config: Config, plan: Plan, environ: Mapping[str, str]) -> StrategyPlan:
        """The strategy, from the framework's own distribution engine; raises ConfigError."""

    def preflight(self, config: Config, plan: Plan) -> None:
        """Refuse what a running runtime can no longer take (TooLateError)."""

    def apply(self, config: Config, plan: Plan, strategy_plan: StrategyPlan) -> None:
        """Set the framework up: devices, memory, threads, math, strategy."""

    def strategy(self) -> Any:
        """The framework's strategy or distribution devswitch applied, or None."""

    def versions(self) -> dict[str, Any]:
        """Library versions for the records."""

    def model_device(self, model: Any) -> str:
        """Where the model's variables live (``CPU:0``, ``cuda:0``)."""

    def Runner(self, model: Any, jit_compile: bool, gpus: tuple[int, ...]) -> BenchmarkRunner:
        """The benchmark's compiled call path for ``model`` (a class in the module)."""

    def out_of_memory(self, error: BaseException) -> bool:
        """Whether ``error`` is this framework's device out-of-memory (the batch finder's failed trial)."""

    def release_memory(self) -> None:
        """Free what the last trial of the batch finder left cached (between trials)."""

    def cpu_pool(self) -> HostPool:
        """The framework's own CPU memory pool, which reuses what it kept unseen by the resident memory (one
        that reads 0 where the framework takes its CPU memory from C's allocator): the fit timing's memory."""


def members() -> list[tuple[str, str, str]]:
    """(name, signature, what) for every member of :class:`Backend`, in declaration order."""
    import inspect

    rows = []
    for name, value in vars(Backend).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            assert value.fget is not None
            annotation = inspect.signature(value.fget).return_annotation
            rows.append((name, f"{name}: {annotation}".replace("'", ""), inspect.getdoc(value.fget) or ""))
        elif inspect.isfunction(value):
            signature = inspect.signature(value)
            parameters = [p for p in signature.parameters.values() if p.name != "self"]
            shown = signature.replace(parameters=parameters)
            rows.append((name, f"{name}{shown}".replace("'", ""), inspect.getdoc(value) or ""))
    return rows
