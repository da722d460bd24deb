"""Result records, the statistics behind them, and their rendering (tables, JSON).

Records are frozen; ``to_dict`` builds new dicts and never mutates a record.
Every metric is written with its unit. Files are written atomically (temporary
file + ``os.replace``), and appends from concurrent processes are serialised
with an exclusive lock, so an interrupted or concurrent run never leaves a
half-written or corrupt results file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

SCHEMA_VERSION = 1
MAD_TO_SIGMA = 1.4826  # scales the median absolute deviation to a standard deviation for normal data


# --- statistics --------------------------------------------------------------------

def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default 'linear' method)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def std_error(values: Sequence[float]) -> float:
    """Standard error of the mean: sample standard deviation / sqrt(n); 0 for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


def jitter(values: Sequence[float]) -> float:
    """Robust spread: 1.4826 x the median absolute deviation."""
    if not values:
        return 0.0
    mid = median(values)
    return MAD_TO_SIGMA * median([abs(v - mid) for v in values])


@dataclass(frozen=True)
class Summary:
    """Throughput and latency statistics of timed iterations of ``batch`` samples each."""

    n: int
    batch: int
    total_s: float
    samples_per_s: float          # median of per-iteration throughput
    samples_per_s_err: float      # std / sqrt(n) of per-iteration throughput
    samples_per_s_jitter: float   # 1.4826 x MAD of per-iteration throughput
    samples_per_s_overall: float  # all samples / all timed seconds (what a stopwatch sees)
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    steps_per_sample: int = 1     # each timed sample is the mean of this many back-to-back steps

    @classmethod
    def of(cls, durations: Sequence[float], batch: int, steps_per_sample: int = 1) -> "Summary":
        """``durations``: seconds per step, one per timed sample (a sample may average several steps)."""
        if not durations:
            raise ValueError("no timed iterations")
        rates = [batch / d for d in durations]
        total = sum(durations) * steps_per_sample
        ms = [d * 1000 for d in durations]
        return cls(len(durations), batch, total, median(rates), std_error(rates), jitter(rates),
                   batch * len(durations) / sum(durations), percentile(ms, 50), percentile(ms, 90),
                   percentile(ms, 99), steps_per_sample)


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


@dataclass(frozen=True)
class CallRecord:
    """One timed ``fit`` / ``evaluate`` / ``predict`` call."""

    kind: str
    model: str
    status: str                    # "ok", "failed: <error>", "interrupted"
    wall_s: float
    traced: bool                   # this call built (traced/compiled) its Keras function
    first_s: float | None          # fit: the first epoch; predict/evaluate: the whole call when traced
    steady_s: float | None         # fit: epochs after the first; predict/evaluate: the call when not traced
    steps: int | None              # batches per epoch (fit) or per call
    samples: int | None            # samples per epoch (fit) or per call; None when the input hides it
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
    started_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return {
            "type": "call", "kind": self.kind, "model": self.model, "status": self.status,
            "started_at": self.started_at, "traced": self.traced,
            "device": self.device, "policy": self.policy, "compute_dtypes": list(self.compute_dtypes),
            "replicas": self.replicas, "workers": self.workers,
            "metrics": {
                "wall": metric(self.wall_s, "s"),
                "first": metric(self.first_s, "s", note="first epoch / traced call: tracing and compilation"),
                "steady": metric(self.steady_s, "s"),
                "steps": metric(self.steps, "batches"),
                "samples": metric(self.samples, "samples"),
                "steady_throughput": metric(self.steady_samples_per_s, "samples/s"),
                "steady_throughput_per_replica": metric(
                    self.steady_samples_per_s / self.replicas if self.steady_samples_per_s else None,
                    "samples/s"),
                "steady_step_rate": metric(self.steady_steps_per_s, "steps/s"),
            },
            "epochs": [dataclasses.asdict(e) for e in self.epochs],
            "nonfinite_loss_epochs": list(self.nonfinite_loss_epochs),
            "batch_times_s": list(self.batch_times_s) if self.batch_times_s is not None else None,
        }


# --- files ---------------------------------------------------------------------------

def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
    if hasattr(value, "_asdict"):
        return value._asdict()
    return str(value)


def _sanitise(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings ('nan', 'inf') rather than produce invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _sanitise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitise(v) for v in value]
    return value


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def document(records: Iterable[Any], **context: Any) -> dict:
    data = {"schema_version": SCHEMA_VERSION, **context,
            "records": [r.to_dict() if hasattr(r, "to_dict") else r for r in records]}
    # round-trip through JSON so dataclasses and tuples become plain data; NaN/inf become strings
    return _sanitise(json.loads(json.dumps(data, default=_json_default)))


def append_records(path: str | Path, records: Sequence[Any], **context: Any) -> None:
    """Add ``records`` to the results file at ``path`` (created if missing), safely across processes."""
    path = Path(path)
    new = document(records, **context)
    with _locked(path):
        if path.exists() and path.stat().st_size:
            existing = json.loads(path.read_text(encoding="utf-8"))
            if existing.get("schema_version") != SCHEMA_VERSION:
                raise ValueError(f"{path}: schema_version {existing.get('schema_version')} is not "
                                 f"{SCHEMA_VERSION}; write to a new file")
            existing["records"].extend(new["records"])
            for key, value in new.items():
                existing.setdefault(key, value)
            new = existing
        write_atomic(path, json.dumps(new, indent=2, allow_nan=False) + "\n")


# --- rendering ------------------------------------------------------------------------

def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_rate(rate: float | None, unit: str = "") -> str:
    if rate is None:
        return "-"
    text = f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}" if rate >= 1 else f"{rate:.3f}"
    return text + (f" {unit}" if unit else "")


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def render_calls(records: Sequence[CallRecord]) -> str:
    """The compact end-of-run table of timed Keras calls."""
    rows = []
    for i, r in enumerate(records, 1):
        if r.kind == "fit":
            epochs = len(r.epochs)
            steady = f"{fmt_s(r.steady_s)} ({epochs - 1} ep)" if epochs > 1 else "- (1 epoch only)"
        else:
            steady = fmt_s(r.steady_s) if not r.traced else "- (first call)"
        if r.steady_samples_per_s is not None:
            rate = fmt_rate(r.steady_samples_per_s, "samples/s")
        elif r.steady_steps_per_s is not None:
            rate = fmt_rate(r.steady_steps_per_s, "steps/s")
        else:
            rate = "-"
        notes = []
        if r.status != "ok":
            notes.append(r.status)
        if r.nonfinite_loss_epochs:
            notes.append("loss NaN/inf at epoch " + ",".join(str(e + 1) for e in r.nonfinite_loss_epochs))
        if r.replicas > 1 or r.workers > 1:
            notes.append(f"{r.replicas} replicas, {r.workers} worker(s)")
        if r.batch_times_s is not None:
            notes.append("per-batch timing on")
        rows.append([str(i), r.kind, r.model, fmt_s(r.wall_s), fmt_s(r.first_s) if r.first_s is not None else "-",
                     steady, rate, r.device, r.policy, "; ".join(notes)])
    header = ["#", "call", "model", "wall", "first (tracing)", "steady", "steady rate", "device", "policy", "notes"]
    return "devswitch: timed Keras calls\n" + table(rows, header)
