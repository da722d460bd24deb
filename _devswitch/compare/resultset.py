"""A compare result set as typed data: cells keyed by configuration (backend x device x precision x the
varied settings) and batch, and the one schema of results.json (``ResultSet.to_json``; ``resultfile`` reads
it back, bounded and validated)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..benchrecord import BenchmarkRecord
from ..errors import UsageError
from ..statistics import Ratio, paired_ratio, round_medians
from .scriptrecord import KIND as SCRIPT
from .scriptrecord import ScriptRecord

SCHEMA_VERSION = 2  # results.json of devswitch compare; 1 (and 0.1 without backends) still read
MAX_BYTES = 32 << 20  # a 1,000-cell matrix writes about 3 MB
MAX_DEPTH = 32  # the schema itself needs 6
MAX_CELLS = 100_000


class ResultFileError(UsageError):
    """A results file that cannot be read as a devswitch result set (exit code 2)."""


Settings = tuple  # ((name, value), ...): the varied settings of a configuration, in the order --vary gave them


class Configuration(NamedTuple):
    """One column of a compare: what a worker runs. ``settings``: the varied settings, as (name, value text)
    pairs in the order they were given (empty when nothing varies)."""

    backend: str
    device: str
    precision: str
    settings: Settings = ()

    @classmethod
    def of(cls, config) -> Configuration:
        """A Configuration from one, or from a plain (backend, device, precision[, settings]) tuple."""
        if isinstance(config, cls):
            return config
        backend, device, precision, *rest = config
        return cls(backend, device, precision, tuple(tuple(pair) for pair in (rest[0] if rest else ())))

    def label(self, several_backends: bool = False) -> str:
        """ "cpu fp32 xla=true" (the backend first when several are compared)."""
        text = f"{self.backend} " if several_backends else ""
        return text + " ".join([self.device, self.precision, *(f"{k}={v}" for k, v in self.settings)])

    def words(self) -> str:
        """The configuration in one line without spaces inside a part: results.json's ``baseline``."""
        return " ".join([self.backend, self.device, self.precision, *(f"{k}={v}" for k, v in self.settings)])

    @classmethod
    def from_words(cls, text: str) -> Configuration:
        """The inverse of ``words`` (devswitch 0.1 wrote "DEVICE PRECISION": tensorflow is its backend);
        ValueError when it is not one."""
        parts = text.split(" ")
        count = next((i for i, part in enumerate(parts) if "=" in part), len(parts))
        head, pairs = parts[:count], [part.partition("=") for part in parts[count:]]
        if len(head) == 2:
            head = ["tensorflow", *head]
        if len(head) != 3 or not all(head) or any(not k or not sep or not v for k, sep, v in pairs):
            raise ValueError(f"expected 'BACKEND DEVICE PRECISION [KEY=VALUE ...]', found {text!r}")
        return cls(head[0], head[1], head[2], tuple((k, v) for k, _, v in pairs))


class Key(NamedTuple):
    """What identifies a cell: the configuration and the batch size."""

    backend: str
    device: str
    precision: str
    batch: int
    settings: Settings = ()

    @classmethod
    def of(cls, config, batch: int) -> Key:
        config = Configuration.of(config)
        return cls(config.backend, config.device, config.precision, batch, config.settings)

    @property
    def config(self) -> Configuration:
        return Configuration(self.backend, self.device, self.precision, self.settings)

    def label(self) -> str:
        return f"{self.config.words()} batch {self.batch}"


class Interval(NamedTuple):
    """A confidence interval of a median and the probability that it covers it."""

    low: float
    high: float
    coverage: float

    def overlaps(self, other: Interval) -> bool:
        return not (self.low > other.high or other.low > self.high)


Record = BenchmarkRecord | ScriptRecord  # a factory's batch size, or a script's runs


def read_record(data: object, where: str = "record") -> Record:
    """The typed record of a cell from its JSON form (``to_dict``): a ScriptRecord for ``"type": "script"``,
    else a BenchmarkRecord; a ValueError naming the field when it is not one."""
    if isinstance(data, Mapping) and data.get("type") == SCRIPT:
        return ScriptRecord.from_dict(data, where)
    return BenchmarkRecord.from_dict(data, where)


@dataclass(frozen=True)
class Cell:
    """One (configuration, batch) result: measured (``record``), or why not (``status``). A script's cell is
    the run as a whole (its batch is 1 and says nothing): its rate is in runs/s (``rate``, ``rate_unit``)."""

    backend: str
    device: str
    precision: str
    batch: int
    status: str  # ok | unavailable: ... | failed: ... | interrupted | not run (...)
    resolved: str = ""  # the precision actually run (half -> bf16 ...)
    record: Record | None = None  # what was measured: the worker's benchmark record, or a script's runs
    settings: Settings = ()  # the varied settings of its configuration: ((name, value), ...)
    written_units: tuple[tuple[str, str], ...] = ()  # read from a file: the unit it gave each metric

    def __post_init__(self) -> None:
        # a record in its JSON form (what a worker sends; a short one in tests) is read into its dataclass;
        # the fields a cell knows (batch, device, status) stand in for those a short one leaves out
        if isinstance(self.record, Mapping):
            known = {"model": "", "mode": "inference", "batch": self.batch, "device": self.device}
            known |= {"policy": "", "compute_dtype": "", "status": "ok"}
            object.__setattr__(self, "record", read_record({**known, **self.record}))

    @classmethod
    def of(cls, config, batch: int, status: str, resolved: str = "", record: Record | Mapping | None = None) -> Cell:
        config = Configuration.of(config)
        return cls(
            config.backend,
            config.device,
            config.precision,
            batch,
            status,
            resolved,
            record,  # type: ignore[arg-type]  # a Mapping is read into its dataclass by __post_init__
            config.settings,
        )

    @property
    def key(self) -> Key:
        return Key(self.backend, self.device, self.precision, self.batch, self.settings)

    @property
    def config(self) -> Configuration:
        return Configuration(self.backend, self.device, self.precision, self.settings)

    @property
    def benchmark(self) -> BenchmarkRecord | None:
        """The benchmark record of a factory's cell (None: a script's cell, or nothing measured)."""
        return self.record if isinstance(self.record, BenchmarkRecord) else None

    @property
    def script(self) -> ScriptRecord | None:
        """The runs of a script's cell (None: a factory's cell, or nothing measured)."""
        return self.record if isinstance(self.record, ScriptRecord) else None

    def rate(self) -> float | None:
        """How fast, higher is faster: a factory's median samples/s, a script's runs/s (``rate_unit``)."""
        if isinstance(self.record, ScriptRecord):
            return self.record.runs_per_s
        return self.record.samples_per_s if self.record is not None else None

    @property
    def rate_unit(self) -> str:
        """ "runs/s" for a script's cell, else "samples/s" (the model's unit names what a sample is)."""
        return ScriptRecord.rate_unit if isinstance(self.record, ScriptRecord) else "samples/s"

    @property
    def ok(self) -> bool:
        rate = self.rate()
        return self.status == "ok" and rate is not None and rate > 0

    def column(self, several_backends: bool = False) -> str:
        label = self.config.label(several_backends)
        if self.resolved and self.resolved != self.precision:
            label += f" ({self.resolved})"
        asked = dict(self.settings).get("math")
        if asked is not None:  # math varies: the column names the mode asked for; say so when another is in force
            if self.in_force and self.in_force != asked:
                label += f" ({self.in_force} in force)"
        elif self.math:
            label += f" ({self.math} math)"
        return label

    @property
    def in_force(self) -> str:
        """The float32 math the record says was in force ("ieee", "tf32", ...; "" when it says nothing)."""
        label = self.record.math if self.record is not None else ""
        return label[len("auto (") : -1] if label.startswith("auto (") and label.endswith(")") else label

    @property
    def math(self) -> str:
        """The float32 math in force when it is not full float32 ("tf32", "ieee matmul, tf32 conv"); else ""."""
        return "" if self.in_force == "ieee" else self.in_force

    @property
    def throughput(self) -> float:
        """The rate of a measured (``ok``) cell (``rate``); ValueError for a cell that has none."""
        value = self.rate()
        if value is None:
            raise ValueError(f"{self.key.label()} has no rate ({self.status})")
        return value

    def metric(self, name: str) -> float | None:
        """A figure of the record by its name in the JSON form (``throughput``, ``power``; a script's
        ``runs_per_s``, ``seconds_per_run``); None when the record has none."""
        value = (self._metrics.get(name) or {}).get("value")
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def units(self) -> dict[str, str]:
        """The unit of every metric: as the file gave them, else as the record writes them."""
        if self.written_units:
            return dict(self.written_units)
        return {name: str(m["unit"]) for name, m in self._metrics.items() if isinstance(m.get("unit"), str)}

    @functools.cached_property
    def _metrics(self) -> Mapping[str, Mapping[str, Any]]:
        return self.record.to_dict()["metrics"] if self.record is not None else {}

    @functools.cached_property
    def round_rates(self) -> dict[int, float]:
        """Round -> the median rate of the samples timed in it ({} for a record without samples): a factory's
        samples/s (batch / seconds per step), a script's runs/s (1 / its wall time)."""
        if self.record is None:
            return {}
        samples = self.record.samples or {}
        seconds = samples.get("seconds_per_step") or []
        if not seconds or not all(isinstance(v, (int, float)) and v > 0 for v in seconds):
            return {}
        # one run; a batch of samples (the batch it ran at: a found batch's cell is keyed by its kind, max or knee)
        work = 1 if isinstance(self.record, ScriptRecord) else (getattr(self.record, "batch", 0) or self.batch)
        return round_medians(samples.get("round") or [], [work / v for v in seconds])

    @property
    def accuracy(self) -> Mapping | None:
        """How far this configuration's outputs land from the strict float32 reference (None: not measured)."""
        value = self.benchmark.accuracy if self.benchmark is not None else None
        return value if isinstance(value, Mapping) else None

    def error(self) -> float | None:
        """The figure ``--max-error`` bounds: the maximum relative error (training: of the loss); inf when
        outputs were not finite; None when not measured."""
        acc = self.accuracy
        if not acc or acc.get("status") != "ok":
            return None
        value = acc.get("max_rel_error")
        if value is None and (acc.get("nonfinite_samples") or acc.get("loss") is None):
            return math.inf  # written as null: the outputs (or the loss) were not finite
        return value if isinstance(value, (int, float)) else None

    @property
    def interval(self) -> Interval | None:
        """The interval of the rate's median, or None for records that carry none."""
        if isinstance(self.record, ScriptRecord):
            ci = self.record.runs_per_s_ci
            return Interval(*ci) if ci else None
        summary = self.record.summary if self.record is not None else None
        if summary is None or not summary.ci_coverage or summary.samples_per_s_ci[0] > summary.samples_per_s_ci[1]:
            return None
        return Interval(summary.samples_per_s_ci[0], summary.samples_per_s_ci[1], summary.ci_coverage)


@dataclass(frozen=True)
class Model:
    target: str
    name: str | None = None
    parameters: int | None = None
    unit: str = "samples"

    @property
    def title(self) -> str:
        return self.name or self.target


@dataclass(frozen=True)
class ResultSet:
    """Everything one ``devswitch compare`` measured, keyed by its axes; immutable."""

    options: Mapping[str, Any]
    model: Model
    cells: tuple[Cell, ...]
    environment: Mapping | None = None
    config: Mapping | None = None
    timing: Mapping = field(default_factory=dict)
    command: tuple[str, ...] = ()
    interrupted: bool = False
    complete: bool = True
    path: str = ""  # where it was read from ("" when made in this process)
    reference: Mapping | None = None  # the strict float32 reference run: how it was computed, or why none

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return tuple(self.options["batch_sizes"])

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(self.options.get("backends") or ("tensorflow",))

    @property
    def several_backends(self) -> bool:
        return len(self.backends) > 1

    @property
    def kind(self) -> str:
        """ "script" for ``compare --script`` (a cell is the run as a whole), else "benchmark" (a factory)."""
        return self.options.get("kind") or "benchmark"

    @property
    def mode(self) -> str:
        return self.options.get("mode", "inference")

    @property
    def baseline(self) -> Configuration:
        return Configuration.from_words(self.options["baseline"])

    @property
    def configs(self) -> list[Configuration]:
        """The configurations in the order they were run."""
        return list(dict.fromkeys(c.config for c in self.cells))

    @property
    def varied(self) -> tuple[str, ...]:
        """The names of the settings varied beside backend, device and precision (--vary), in their order."""
        return tuple(dict.fromkeys(name for c in self.cells for name, _ in c.settings))

    @functools.cached_property
    def _index(self) -> dict[Key, Cell]:
        return {c.key: c for c in self.cells}

    def by_key(self) -> dict[Key, Cell]:
        return dict(self._index)

    def cell(self, config, batch: int) -> Cell | None:
        """The cell of a configuration (a ``Configuration``, or a plain (backend, device, precision) tuple when
        nothing varies) at a batch size."""
        return self._index.get(Key.of(config, batch))

    def column(self, cell: Cell) -> str:
        return cell.column(self.several_backends)

    def speedup(self, cell: Cell) -> float | None:
        """This cell's throughput over the baseline's at the same batch size: paired by round where both were
        timed in the same rounds (``paired``), else the ratio of their medians."""
        base = self.cell(self.baseline, cell.batch)
        if base is None or not base.ok or not cell.ok:
            return None
        paired = self.paired(cell, base)
        if paired is not None:
            return paired.value
        rate, base_rate = cell.rate(), base.rate()
        return rate / base_rate if rate and base_rate else None

    def speedup_interval(self, cell: Cell) -> Ratio | None:
        """The speed-up over the baseline with its interval, paired by round; None without rounds to pair."""
        base = self.cell(self.baseline, cell.batch)
        return self.paired(cell, base) if base is not None and base.ok and cell.ok else None

    def paired(self, a: Cell, b: Cell) -> Ratio | None:
        """``a``'s throughput over ``b``'s, one ratio per round both were timed in, with the interval of the
        median ratio (None when they share fewer than 2 rounds)."""
        return paired_ratio(a.round_rates, b.round_rates)

    def to_json(self) -> dict:
        """The document written as results.json (plain data; nothing private)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "command": list(self.command),
            "options": dict(self.options),
            "model": {
                "target": self.model.target,
                "name": self.model.name,
                "parameters": self.model.parameters,
                "unit": self.model.unit,
            },
            "environment": self.environment,
            "config": self.config,
            "interrupted": self.interrupted,
            "complete": self.complete,
            "cells": [
                {
                    "backend": c.backend,
                    "device": c.device,
                    "precision": c.precision,
                    "settings": dict(c.settings),
                    "resolved_precision": c.resolved,
                    "batch": c.batch,
                    "status": c.status,
                    "speedup": self._speedup_json(c),
                    "record": c.record.to_dict() if c.record is not None else None,
                }
                for c in self.cells
            ],
            "timing": dict(self.timing),
            "reference": dict(self.reference) if self.reference else None,
        }

    def _speedup_json(self, cell: Cell) -> dict | None:
        """Derived, for readers of results.json (devswitch itself recomputes it from the records)."""
        value = self.speedup(cell)
        if value is None:
            return None
        ratio = self.speedup_interval(cell)
        return {
            "vs": self.baseline.words(),
            "value": value,
            "ci": [ratio.low, ratio.high] if ratio else None,
            "ci_coverage": ratio.coverage if ratio else None,
            "rounds": ratio.rounds if ratio else None,
            "method": "median of per-round ratios of median throughput, order-statistics interval"
            if ratio
            else "ratio of median throughputs (no shared rounds: no interval)",
        }

    def dumps(self) -> str:
        return json.dumps(_finite(self.to_json()), indent=2, default=str, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: they are written as null (a reader then sees a cell without a figure)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
