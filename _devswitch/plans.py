"""The plain data that the choice of device and precision works on and produces: the hardware (an
``Inventory``: a ``Cpu`` and its GPUs, each a ``Gpu``) and the ``Plan``, with the parts that ``distribute``
and ``maths`` decide (``StrategyPlan``, ``MathPlan``). It lives below devices, distribute, maths and the
backends' interface, which all read it, so their imports run one way."""

from __future__ import annotations

from dataclasses import dataclass, field

from .settings import ENV_CPU_FEATURES

POLICIES = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}

BF16_FEATURES = ("AMX-BF16", "AVX512-BF16")  # a CPU with either runs bf16 natively


@dataclass(frozen=True)
class StrategyPlan:
    name: str  # none | mirrored | multi_worker
    devices: tuple[str, ...] = ()  # this machine's replica devices
    workers: int = 1
    task_type: str = ""
    task_index: int = 0
    tf_config: str | None = None  # TF_CONFIG to set (when built from settings)
    reason: str = ""
    warnings: tuple[str, ...] = field(default=())

    @property
    def replicas(self) -> int:
        return max(1, len(self.devices)) * self.workers

    @property
    def role(self) -> str:
        if self.name != "multi_worker":
            return "single machine"
        chief = " (chief)" if self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0) else ""
        return f"{self.task_type} {self.task_index} of {self.workers} workers{chief}"

    def summary(self) -> str:
        if self.name == "none":
            return "strategy=none"
        return f"strategy={self.name} ({self.replicas} replicas, {self.role})"


@dataclass(frozen=True)
class MathPlan:
    """The float32 math mode in force, and why."""

    mode: str  # what was asked: auto, ieee, tf32, bf16
    in_force: str  # what float32 ops compute with: ieee, tf32, bf16 (or a mix, e.g. "ieee matmul, tf32 conv")
    reason: str
    apply: str | None = None  # the mode the backend sets; None = the framework's default is left alone
    warnings: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """For records and columns: the mode in force; under auto, ``auto (<in force>)``."""
        return f"auto ({self.in_force})" if self.mode == "auto" else self.in_force


def cc_label(cc: tuple[int, int] | None) -> str:
    return f"{cc[0]}.{cc[1]}" if cc else "unknown"


@dataclass(frozen=True)
class Cpu:
    model: str
    cores: int
    features: frozenset[str] = frozenset()  # names from CPU_FEATURES' values
    edits: tuple[str, ...] = ()  # DEVSWITCH_CPU_FEATURES applied to what the machine reported ("-AMX-BF16", ...)

    @property
    def native_bf16(self) -> bool:
        return bool(set(BF16_FEATURES) & self.features)

    @property
    def edited_note(self) -> str:
        """The note that says features were edited, e.g. `` (DEVSWITCH_CPU_FEATURES=-AMX-BF16 applied)``; "" if not."""
        return f" ({ENV_CPU_FEATURES}={','.join(self.edits)} applied)" if self.edits else ""


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    compute_capability: tuple[int, int] | None
    memory_bytes: int | None = None

    @property
    def cc(self) -> str:
        return cc_label(self.compute_capability)

    def describe(self) -> str:
        mem = f", {self.memory_bytes / 2**30:.0f} GiB" if self.memory_bytes else ""
        return f"gpu:{self.index} ({self.name}, compute capability {self.cc}{mem})"


@dataclass(frozen=True)
class Inventory:
    cpu: Cpu
    gpus: tuple[Gpu, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What will be used, and why, in words a user can check."""

    device: str  # "cpu" or "gpu:0,1" — the effective device
    gpus: tuple[int, ...]  # indices of the GPUs made visible; () = CPU only
    precision: str  # fp32 / fp16 / bf16 — the effective precision
    device_reason: str
    precision_reason: str
    warnings: tuple[str, ...] = field(default=())
    strategy: StrategyPlan | None = None  # filled in when applied
    backend: str = "tensorflow"
    maths: MathPlan | None = None  # the float32 math mode in force, filled in by decide()

    @property
    def policy(self) -> str:
        return POLICIES[self.precision]

    @property
    def math(self) -> str:
        """The float32 math mode in force, as records carry it ("ieee", "tf32", "auto (tf32)"); "" = undecided."""
        return self.maths.label if self.maths is not None else ""

    def summary(self) -> str:
        math = (
            f" math={self.math} ({self.maths.reason})"
            if self.maths is not None and self.maths.in_force != "ieee"
            else ""
        )
        return f"device={self.device} ({self.device_reason}) precision={self.precision} ({self.precision_reason}){math}"
