"""The record of one batch size measured by ``devswitch.benchmark``, and its JSON form (``to_dict``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .energy import Energy
from .results import metric
from .statistics import Summary


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
    peak_gflops: float | None = None
    peak_source: str = ""
    probe_s: float | None = None
    energy: Energy | None = None
    host_rss_peak_bytes: int | None = None
    gpu_memory_peak_bytes: int | None = None
    versions: dict = field(default_factory=dict)  # devswitch, python, keras, the backend's framework, ...
    backend: str = ""
    training: dict = field(default_factory=dict)  # training mode: the loss and optimizer that were timed
    started_at: float = field(default_factory=time.time)
    rounds: int = 1  # the timed samples were taken in this many rounds
    accuracy: dict | None = None  # outputs against a strict float32 reference (accuracy.py)
    more_phases_s: dict = field(default_factory=dict)  # predict_first_call, accuracy: work beside the timing
    samples: dict = field(default_factory=dict)  # round, start_s and seconds_per_step of every timed sample
    math: str = ""  # float32 math in force (plan.math), e.g. "ieee"; "" = no plan

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
            "accuracy": dict(self.accuracy) if self.accuracy else None,
            "samples": dict(self.samples) or None,
        }

    def _metrics(self) -> dict:
        """Every figure of the record, each with its unit (results.metric)."""
        s = self.summary
        achieved = self.achieved_gflops
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
            "fraction_of_peak": metric(achieved / self.peak_gflops if achieved and self.peak_gflops else None, "1"),
            "energy": metric(self.energy.joules if self.energy else None, "J"),
            "power": metric(self.energy.mean_watts if self.energy else None, "W"),
            "samples_per_watt": metric(self.samples_per_watt, "samples/s/W"),
            "host_rss_peak": metric(self.host_rss_peak_bytes, "bytes", note="peak of the whole process"),
            "gpu_memory_peak": metric(self.gpu_memory_peak_bytes, "bytes"),
        }
