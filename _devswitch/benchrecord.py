"""The record of one batch size measured by ``devswitch.benchmark``, and its JSON form (``to_dict``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from .energy import Energy
from .errors import quote
from .peaks import above_peak_note
from .results import metric
from .statistics import Summary

T = TypeVar("T")


@dataclass(frozen=True)
class BenchmarkRecord:
    model: str
    mode: str  # inference | training
    batch: int
    device: str
    policy: str
    compute_dtype: str
    status: str = "ok"
    first_call_s: float | None = None
    warmup_iterations: int = 0
    warmup_s: float | None = None
    summary: Summary | None = None
    predict_samples_per_s: float | None = None  # plain model.predict, for comparison
    predict_s: float | None = None
    flops_per_sample: float | None = None
    flops_note: str = ""
    peak_gflops: float | None = None  # the device's theoretical peak in the dtype in use (peaks.py); None: unknown
    peak_source: str = ""  # how the peak was found (its arithmetic and sources), or why there is none
    probe_gflops: float | None = None  # the matmul probe: a measured rate, never a peak
    probe_source: str = ""
    probe_s: float | None = None
    energy: Energy | None = None
    host_rss_peak_bytes: int | None = None
    gpu_memory_peak_bytes: int | None = None
    # this batch size's own peak: the GPU allocator's peak while it ran, or on a CPU the process's resident
    # memory above its level before the batch, sampled while it ran (memory.RssSampler); None = not known
    peak_memory_bytes: int | None = None
    peak_memory_source: str = ""  # how peak_memory_bytes was measured, in words
    versions: dict = field(default_factory=dict)  # devswitch, python, keras, the backend's framework, ...
    backend: str = ""
    training: dict = field(default_factory=dict)  # training mode: the loss and optimizer that were timed
    started_at: float = field(default_factory=time.time)
    rounds: int = 1  # the timed samples were taken in this many rounds
    accuracy: dict | None = None  # outputs against a strict float32 reference (accuracy.py)
    more_phases_s: dict = field(default_factory=dict)  # predict_first_call, accuracy: work beside the timing
    samples: dict = field(default_factory=dict)  # round, start_s and seconds_per_step of every timed sample
    math: str = ""  # float32 math in force (plan.math), e.g. "ieee"; "" = no plan
    settings: dict = field(default_factory=dict)  # compare --vary: the varied settings as the worker applied them

    @property
    def samples_per_s(self) -> float | None:
        return self.summary.samples_per_s if self.summary else None

    @property
    def achieved_gflops(self) -> float | None:
        if self.flops_per_sample and self.summary:
            return self.flops_per_sample * self.summary.samples_per_s / 1e9
        return None

    @property
    def samples_per_watt(self) -> float | None:
        return self.energy.per_watt(self.samples_per_s) if self.energy else None

    def to_dict(self) -> dict:
        s = self.summary
        return {
            "type": "benchmark",
            "backend": self.backend,
            "model": self.model,
            "mode": self.mode,
            "batch": self.batch,
            "device": self.device,
            "policy": self.policy,
            "compute_dtype": self.compute_dtype,
            "math": self.math or None,
            "status": self.status,
            "started_at": self.started_at,
            "versions": dict(self.versions),
            "training": dict(self.training) or None,
            "metrics": self._metrics(),
            "phases_s": {
                "first_call": self.first_call_s,
                "warmup": self.warmup_s,
                "timed": s.total_s if s else None,
                "predict_baseline": self.predict_s,
                **self.more_phases_s,
                "peak_probe": self.probe_s,
            },
            "energy": self.energy.to_dict() if self.energy else None,
            "rounds": self.rounds,
            "warmup_iterations": self.warmup_iterations,
            "accuracy": dict(self.accuracy) if self.accuracy else None,
            "samples": dict(self.samples) or None,
            **({"settings": dict(self.settings)} if self.settings else {}),
        }

    @classmethod
    def from_dict(cls, data: object, where: str = "record") -> BenchmarkRecord:
        """The record ``to_dict`` wrote, read back and validated: ``from_dict(r.to_dict()).to_dict() ==
        r.to_dict()``. A missing or mistyped field is a ValueError naming it (``where.metrics.throughput``);
        keys this version does not know are ignored, so files of other versions stay readable."""
        d = _Reader(data, where)
        metrics = d.mapping("metrics")
        phases = dict(d.mapping("phases_s"))
        m = {name: _Reader(metrics.get(name, {}), f"{where}.metrics.{name}") for name in _METRIC_NAMES}
        summary = _summary(m, d.integer("batch"), _number(phases.get("timed"), f"{where}.phases_s.timed"), where)
        energy = d.get("energy", dict)
        for known in ("first_call", "warmup", "timed", "predict_baseline", "peak_probe"):
            phases.pop(known, None)
        return cls(
            model=d.text("model"),
            mode=d.text("mode"),
            batch=d.integer("batch"),
            device=d.text("device"),
            policy=d.text("policy"),
            compute_dtype=d.text("compute_dtype"),
            status=d.text("status"),
            first_call_s=m["first_call"].number("value"),
            warmup_iterations=int(d.number("warmup_iterations") or 0),  # absent from files before 0.2
            warmup_s=_number(d.mapping("phases_s").get("warmup"), f"{where}.phases_s.warmup"),
            summary=summary,
            predict_samples_per_s=m["predict_throughput"].number("value"),
            predict_s=_number(d.mapping("phases_s").get("predict_baseline"), f"{where}.phases_s.predict_baseline"),
            flops_per_sample=m["flops_per_sample"].number("value"),
            flops_note=m["flops_per_sample"].get("note", str) or "",
            **_peak_and_probe(m),
            probe_s=_number(d.mapping("phases_s").get("peak_probe"), f"{where}.phases_s.peak_probe"),
            energy=_energy(energy, f"{where}.energy") if energy else None,
            host_rss_peak_bytes=_integer(m["host_rss_peak"].number("value")),
            gpu_memory_peak_bytes=_integer(m["gpu_memory_peak"].number("value")),
            peak_memory_bytes=_integer(m["peak_memory"].number("value")),  # absent from older files: None
            peak_memory_source=m["peak_memory"].get("note", str) or "",
            versions=d.get("versions", dict) or {},
            backend=d.get("backend", str) or "",
            training=d.get("training", dict) or {},
            started_at=d.number("started_at") or 0.0,
            rounds=int(d.number("rounds") or 1),
            accuracy=d.get("accuracy", dict),
            more_phases_s=phases,
            samples=d.get("samples", dict) or {},
            math=d.get("math", str) or "",
            settings=d.get("settings", dict) or {},
        )

    def _metrics(self) -> dict:
        """Every figure of the record, each with its unit (results.metric)."""
        s = self.summary
        achieved = self.achieved_gflops
        fraction = achieved / self.peak_gflops if achieved and self.peak_gflops else None
        above = fraction is not None and fraction > 1  # not a fraction: the peak is wrong, and the note says so
        latency_note = (
            "per batch"
            if not s or s.steps_per_sample == 1
            else f"per batch, mean over groups of {s.steps_per_sample} steps"
        )
        return {
            "throughput": metric(
                s.samples_per_s if s else None,
                "samples/s",
                stat="median",
                ci=list(s.samples_per_s_ci) if s else None,
                ci_coverage=s.ci_coverage if s else None,
                ci_method="order statistics (distribution-free) of the per-sample throughputs",
                sem_of_mean=s.samples_per_s_err if s else None,
                jitter=s.samples_per_s_jitter if s else None,
            ),
            "throughput_overall": metric(
                s.samples_per_s_overall if s else None, "samples/s", note="all timed samples / all timed seconds"
            ),
            "latency_p50": metric(s.latency_p50_ms if s else None, "ms", note=latency_note),
            "latency_p90": metric(s.latency_p90_ms if s else None, "ms", note=latency_note),
            "latency_p99": metric(s.latency_p99_ms if s else None, "ms", note=latency_note),
            "timed_samples": metric(
                s.n if s else None, "samples of timing", note="each the mean of steps_per_sample back-to-back steps"
            ),
            "steps_per_sample": metric(s.steps_per_sample if s else None, "steps"),
            "predict_throughput": metric(
                self.predict_samples_per_s, "samples/s", note="plain model.predict, for comparison"
            ),
            "first_call": metric(self.first_call_s, "s", note="tracing and compilation"),
            "flops_per_sample": metric(self.flops_per_sample, "FLOP", note=self.flops_note),
            "achieved": metric(achieved, "GFLOP/s"),
            "peak": metric(self.peak_gflops, "GFLOP/s", note=self.peak_source),
            "fraction_of_peak": metric(
                None if above else fraction, "1", **({"note": above_peak_note(fraction)} if above else {})
            ),
            "matmul_probe": metric(self.probe_gflops, "GFLOP/s", note=self.probe_source),
            "energy": metric(self.energy.joules if self.energy else None, "J"),
            "power": metric(self.energy.mean_watts if self.energy else None, "W"),
            "samples_per_watt": metric(self.samples_per_watt, "samples/s/W"),
            "host_rss_peak": metric(self.host_rss_peak_bytes, "bytes", note="peak of the whole process"),
            "gpu_memory_peak": metric(self.gpu_memory_peak_bytes, "bytes"),
            "peak_memory": metric(self.peak_memory_bytes, "bytes", note=self.peak_memory_source),
        }


_METRIC_NAMES = (
    "throughput",
    "throughput_overall",
    "latency_p50",
    "latency_p90",
    "latency_p99",
    "timed_samples",
    "steps_per_sample",
    "predict_throughput",
    "first_call",
    "flops_per_sample",
    "peak",
    "matmul_probe",
    "host_rss_peak",
    "gpu_memory_peak",
    "peak_memory",
)


def _peak_and_probe(m: dict[str, _Reader]) -> dict:
    """The peak and the matmul probe of a record's metrics. Files before the theoretical peak (no
    ``matmul_probe``) stored the probe as ``peak`` ("measured: ..."): it is read back as the probe it was."""
    peak, note = m["peak"].number("value"), m["peak"].get("note", str) or ""
    if m["matmul_probe"].data.get("value") is None and note.startswith("measured:"):
        return {"peak_gflops": None, "peak_source": "", "probe_gflops": peak, "probe_source": "matmul probe, " + note}
    return {
        "peak_gflops": peak,
        "peak_source": note,
        "probe_gflops": m["matmul_probe"].number("value"),
        "probe_source": m["matmul_probe"].get("note", str) or "",
    }


def _energy(data: Mapping, where: str) -> Energy:
    """The energy reading of a record (Energy.to_dict); keys of other versions ignored."""
    d = _Reader(data, where)
    available = d.data.get("available")
    if not isinstance(available, bool):
        raise ValueError(f"{where}.available is {quote(available)}, not true or false")
    samples = d.number("samples")
    return Energy(
        available=available,
        source=d.text("source"),
        scope=d.get("scope", str) or "",
        joules=d.number("joules"),
        seconds=d.number("seconds"),
        mean_watts=d.number("mean_watts"),
        samples=None if samples is None else int(samples),
        reason=d.get("reason", str),
    )


def _number(value: object, where: str) -> float | None:
    """A JSON number (or null), as a float; a ValueError naming ``where`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} is {quote(value)}, not a number")
    return float(value)


def _integer(value: float | None) -> int | None:
    return None if value is None else int(value)


class _Reader:
    """Typed reads of one JSON object of a record, each error naming the field (``where.key``)."""

    def __init__(self, data: object, where: str):
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} is {quote(data)}, not an object")
        self.data, self.where = data, where

    def get(self, key: str, kind: type[T]) -> T | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, kind):
            raise ValueError(f"{self.where}.{key} is {quote(value)}, not {kind.__name__}")
        return value

    def mapping(self, key: str) -> Mapping:
        return self.get(key, Mapping) or {}  # type: ignore[type-abstract]

    def text(self, key: str) -> str:
        value = self.get(key, str)
        if value is None:
            raise ValueError(f"{self.where} lacks its field {key!r}")
        return value

    def number(self, key: str) -> float | None:
        return _number(self.data.get(key), f"{self.where}.{key}")

    def integer(self, key: str) -> int:
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{self.where}.{key} is {quote(value)}, not an integer")
        return value


def _summary(m: dict[str, _Reader], batch: int, timed: float | None, where: str) -> Summary | None:
    """The timing statistics of a record's metrics (None when nothing was timed)."""
    throughput = m["throughput"].number("value")
    if throughput is None:
        return None
    ci = m["throughput"].get("ci", list) or [0.0, 0.0]
    return Summary(
        n=int(m["timed_samples"].number("value") or 0),
        batch=batch,
        total_s=timed or 0.0,
        samples_per_s=throughput,
        samples_per_s_err=m["throughput"].number("sem_of_mean") or 0.0,
        samples_per_s_jitter=m["throughput"].number("jitter") or 0.0,
        samples_per_s_overall=m["throughput_overall"].number("value") or 0.0,
        latency_p50_ms=m["latency_p50"].number("value") or 0.0,
        latency_p90_ms=m["latency_p90"].number("value") or 0.0,
        latency_p99_ms=m["latency_p99"].number("value") or 0.0,
        steps_per_sample=int(m["steps_per_sample"].number("value") or 1),
        samples_per_s_ci=(_number(ci[0], f"{where}.ci") or 0.0, _number(ci[-1], f"{where}.ci") or 0.0),
        ci_coverage=m["throughput"].number("ci_coverage") or 0.0,
    )
