"""What a strategy and a float32 math mode come to, as plain data: the parts of a ``devices.Plan`` that
``distribute`` and ``maths`` decide. They live below all three, so the imports run one way."""

from __future__ import annotations

from dataclasses import dataclass, field


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
