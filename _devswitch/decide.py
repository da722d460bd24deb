"""The whole decision, purely: a configuration and an inventory in, the plan with its strategy and warnings out.

``import devswitch`` (apply), a compare worker, ``%devswitch`` and ``devswitch info`` all decide through
``decide``, so what ``info`` shows is what applying would do. Nothing here changes any state: the
backend's ``refuse`` and ``plan_distribution`` are pure, and the environment is an argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from . import backends, determinism, memorylimit
from .config import Config
from .devices import Inventory, Plan, choose_device, choose_precision, half, where_from
from .maths import decide_math
from .plans import MathPlan, StrategyPlan


@dataclasses.dataclass(frozen=True)
class Decision:
    """What applying ``config`` on ``inventory`` would do, and why."""

    plan: Plan  # device and precision, with ``plan.strategy`` filled in
    warnings: tuple[str, ...]  # the plan's, the strategy's, the backend's notices and the math mode's, in that order
    half: tuple[str, str]  # what ``precision: half`` means here: (precision, reason)

    @property
    def strategy(self) -> StrategyPlan:
        """The distribute.StrategyPlan (also ``plan.strategy``)."""
        assert self.plan.strategy is not None  # decide() fills it in
        return self.plan.strategy

    @property
    def maths(self) -> MathPlan:
        """The float32 math mode in force (also ``plan.maths``)."""
        assert self.plan.maths is not None  # decide() fills it in
        return self.plan.maths


def choose(config: Config, inventory: Inventory) -> Plan:
    """Decide the effective device and precision for ``config`` on ``inventory``; raises DeviceError."""
    backend = backends.get(config.backend)
    device, gpus, device_reason, w1 = choose_device(config, inventory, backend.DISPLAY)
    precision, precision_reason, w2 = choose_precision(config, inventory, gpus, backend)
    return Plan(device, gpus, precision, device_reason, precision_reason, tuple(w1 + w2), backend=config.backend)


def decide(config: Config, inventory: Inventory, environ: Mapping[str, str]) -> Decision:
    """Decide device, precision and strategy for ``config`` on ``inventory``; raises a ConfigError or
    DeviceError for what cannot be honoured (the same refusals, in the same order, as applying)."""
    backend = backends.get(config.backend)
    backend.refuse(config)
    plan = choose(config, inventory)
    strategy = backend.plan_distribution(config, plan, environ)
    halved, reason, _ = half(inventory, plan.gpus, backend.CPU_HALF)
    math = decide_math(config.math, backend, inventory, plan.gpus, environ, where_from(config, "math"))
    warnings = plan.warnings + strategy.warnings + tuple(backend.notices(config, plan)) + math.warnings
    warnings += tuple(determinism.notices(config))
    warnings += tuple(memorylimit.notes(config, plan, inventory))
    return Decision(
        dataclasses.replace(plan, strategy=strategy, maths=math), warnings, (halved, f"{reason} [{config.backend}]")
    )
