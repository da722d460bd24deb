"""A timed Keras call as a record: CallRecord and its epochs, written by ``to_dict``, read by ``call_from_dict``.

results.py writes them into reports and reads them back, and hands these names on (``results.CallRecord``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# --- records -------------------------------------------------------------------------


def metric(value: float | int | None, unit: str, **extra: Any) -> dict:
    return {"value": value, "unit": unit, **extra}


@dataclass(frozen=True)
class EpochTime:
    epoch: int
    seconds: float
    train_seconds: float
    validation_seconds: float
    loss: float | None


CALL_MEMORY = "resident memory of the process above its level at the call's start, sampled every 10 ms"


@dataclass(frozen=True)
class CallRecord:
    """One timed ``fit`` / ``evaluate`` / ``predict`` call."""

    kind: str
    model: str
    status: str  # "ok", "failed: <error>", "interrupted"
    wall_s: float
    traced: bool  # this call built (traced/compiled) its Keras function
    first_s: float | None  # fit: the first epoch; predict/evaluate: the whole call when traced
    steady_s: float | None  # fit: epochs after the first; predict/evaluate: the call when not traced
    steps: int | None  # batches per epoch (fit) or per call
    samples: int | None  # samples per epoch (fit) or per call; None when the input hides it
    steady_samples_per_s: float | None
    steady_steps_per_s: float | None
    epochs: tuple[EpochTime, ...] = ()
    device: str = "unknown"
    policy: str = "unknown"
    compute_dtypes: tuple[str, ...] = ()
    nonfinite_loss_epochs: tuple[int, ...] = ()
    batch_times_s: tuple[float, ...] | None = None  # only with per-batch timing (changes dispatch)
    replicas: int = 1
    workers: int = 1
    applied_policy: str = ""  # the policy devswitch applied when the call ran ("" = none)
    backend: str = ""  # the Keras backend that ran the call
    math: str = ""  # the float32 math mode in force (plan.math: "ieee", "auto (tf32)"; "" = none applied)
    history: Mapping[str, float] | None = None  # fit: the last epoch's logs (loss, metrics, val_*), as History has them
    cap: Mapping[str, Any] | None = None  # fit under --max-epochs/--max-steps: the caps, what was asked, what ran
    peak_memory_bytes: int | None = None  # TimingCallback(memory=True) on a CPU: resident memory above the start
    started_at: float = field(default_factory=time.time)

    @property
    def memory(self) -> bool:
        """Whether the call's peak memory was measured (opt-in: ``TimingCallback(memory=True)``, on a CPU)."""
        return self.peak_memory_bytes is not None

    @property
    def stale_policy(self) -> bool:
        """The model runs another policy than the one applied (it was built before the switch changed)."""
        return bool(self.applied_policy) and self.policy not in ("unknown", self.applied_policy)

    def to_dict(self) -> dict:
        return {
            "type": "call",
            "kind": self.kind,
            "model": self.model,
            "status": self.status,
            "backend": self.backend,
            "started_at": self.started_at,
            "traced": self.traced,
            "device": self.device,
            "policy": self.policy,
            "compute_dtypes": list(self.compute_dtypes),
            "applied_policy": self.applied_policy or None,
            "math": self.math or None,
            "replicas": self.replicas,
            "workers": self.workers,
            "metrics": {
                "wall": metric(self.wall_s, "s"),
                "first": metric(self.first_s, "s", note="first epoch / traced call: tracing and compilation"),
                "steady": metric(self.steady_s, "s"),
                "steps": metric(self.steps, "batches"),
                "samples": metric(self.samples, "samples"),
                "steady_throughput": metric(self.steady_samples_per_s, "samples/s"),
                "steady_throughput_per_replica": metric(
                    self.steady_samples_per_s / self.replicas if self.steady_samples_per_s else None, "samples/s"
                ),
                "steady_step_rate": metric(self.steady_steps_per_s, "steps/s"),
                **({"peak_memory": metric(self.peak_memory_bytes, "bytes", note=CALL_MEMORY)} if self.memory else {}),
            },
            "epochs": [dataclasses.asdict(e) for e in self.epochs],
            "nonfinite_loss_epochs": list(self.nonfinite_loss_epochs),
            "batch_times_s": list(self.batch_times_s) if self.batch_times_s is not None else None,
            **({"history": dict(self.history)} if self.history is not None else {}),
            **({"cap": dict(self.cap)} if self.cap is not None else {}),
        }


def call_from_dict(data: object, where: str = "call") -> CallRecord:
    """The CallRecord that ``to_dict`` wrote, read back: ``kind`` and ``status`` are needed, what is missing
    of the rest reads as unknown (None, "unknown", 0), keys of other versions are ignored; a field of the
    wrong type is a ValueError naming it (``where.metrics.wall.value``)."""
    d = _as(data, dict, where)
    m = _as(d.get("metrics"), dict, f"{where}.metrics") or {}

    def figure(name: str) -> float | None:
        value = (m.get(name) or {}).get("value") if isinstance(m.get(name) or {}, Mapping) else None
        return _as(value, (int, float), f"{where}.metrics.{name}.value")

    def whole(name: str) -> int | None:
        value = figure(name)
        return None if value is None else int(value)

    epochs = _as(d.get("epochs"), list, f"{where}.epochs") or []
    times = _as(d.get("batch_times_s"), list, f"{where}.batch_times_s")
    return CallRecord(
        kind=_text(d, "kind", where, required=True),
        model=_text(d, "model", where) or "",
        status=_text(d, "status", where, required=True),
        wall_s=figure("wall") or 0.0,
        traced=bool(_as(d.get("traced"), bool, f"{where}.traced")),
        first_s=figure("first"),
        steady_s=figure("steady"),
        steps=whole("steps"),
        samples=whole("samples"),
        steady_samples_per_s=figure("steady_throughput"),
        steady_steps_per_s=figure("steady_step_rate"),
        epochs=tuple(_epoch(e, f"{where}.epochs[{i}]") for i, e in enumerate(epochs)),
        device=_text(d, "device", where) or "unknown",
        policy=_text(d, "policy", where) or "unknown",
        compute_dtypes=tuple(str(t) for t in _as(d.get("compute_dtypes"), list, f"{where}.compute_dtypes") or ()),
        nonfinite_loss_epochs=tuple(
            int(e) for e in _as(d.get("nonfinite_loss_epochs"), list, f"{where}.nonfinite_loss_epochs") or ()
        ),
        batch_times_s=None if times is None else tuple(float(t) for t in times),
        replicas=int(_as(d.get("replicas"), int, f"{where}.replicas") or 1),
        workers=int(_as(d.get("workers"), int, f"{where}.workers") or 1),
        applied_policy=_text(d, "applied_policy", where) or "",
        backend=_text(d, "backend", where) or "",
        math=_text(d, "math", where) or "",
        history=_as(d.get("history"), Mapping, f"{where}.history"),
        cap=_as(d.get("cap"), Mapping, f"{where}.cap"),
        peak_memory_bytes=whole("peak_memory"),
        started_at=float(_as(d.get("started_at"), (int, float), f"{where}.started_at") or 0.0),
    )


_NONFINITE = ("nan", "inf", "-inf")


def _as(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """``value`` when it is of ``kind`` (a bool is no number), None for null; a ValueError naming ``where``."""
    if value is None:
        return None
    numeric = kind in ((int, float), int)
    if kind == (int, float) and value in _NONFINITE:  # NaN/inf, as _sanitise wrote them (JSON has none)
        return float(value)
    if (numeric and isinstance(value, bool)) or not isinstance(value, kind):
        raise ValueError(f"{where} is of type {type(value).__name__}, not {getattr(kind, '__name__', 'a number')}")
    return value


def _text(d: Mapping[str, Any], key: str, where: str, required: bool = False) -> str:
    value = _as(d.get(key), str, f"{where}.{key}")
    if value is None and required:
        raise ValueError(f"{where} lacks its field {key!r}")
    return value or ""


def _epoch(data: object, where: str) -> EpochTime:
    d = _as(data, dict, where)
    epoch, seconds, train, validation, loss = (
        _as(d.get(key), (int, float), f"{where}.{key}")
        for key in ("epoch", "seconds", "train_seconds", "validation_seconds", "loss")
    )
    return EpochTime(int(epoch or 0), float(seconds or 0.0), float(train or 0.0), float(validation or 0.0), loss)
