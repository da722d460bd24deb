"""The record of one configuration of ``compare --script``: its runs (one per round), built here and checked
again when results.json is read.

A script's cell is the run as a whole. Its rate is runs per second (``runs_per_s``), 1 / the median wall
time of the script (``seconds_per_run``), so that the recommendation, the speed-up paired by round and
``devswitch report A B`` treat it like any cell: higher is faster, and a ratio of it is a ratio of wall
times. Beside it: every run's wall time, start-up and exit code, and the timed Keras calls of its timing
report (each fit with its history and its caps).

What is written carries ``schema_version`` (2). devswitch 0.2.0 wrote no version and named the figures
``throughput`` (runs/s) and ``wall``; they are read from the runs, which both versions hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import quote
from ..results import CallRecord, call_from_dict
from ..statistics import median, median_ci

KIND = "script"  # results.json options.kind of a script compare (factories: absent)
SCHEMA_VERSION = 2  # of a script record; 1: devswitch 0.2.0 (no schema_version, "throughput" in runs/s)
CALL_KINDS = ("fit", "evaluate", "predict")
MAX_CALLS = 1000  # timed calls kept per run
RATE_UNIT = "runs/s"


@dataclass(frozen=True)
class ScriptRun:
    """One run of the script: when it started (seconds after the compare began), its wall time (the script's
    own, devswitch's start-up apart), the whole process, its exit code, and the timed calls of its report."""

    round: int
    start_s: float
    wall_s: float | None
    startup_s: float | None = None
    process_s: float | None = None
    exit_code: int | None = None
    calls: tuple[CallRecord, ...] = ()  # the timed fit / evaluate / predict calls of its timing report
    calls_dropped: int = 0  # timed calls beyond MAX_CALLS, not kept
    overridden: str | None = None  # what the script changed of its column's settings
    given_up: str | None = None
    removed: str | None = None

    @classmethod
    def of(cls, run: Mapping[str, Any]) -> ScriptRun:
        """A finished run as script.run_once reports it (its first MAX_CALLS calls kept, the rest counted; each
        call as its timing report wrote it, CallRecord.to_dict, or the CallRecord itself)."""
        calls = [c if isinstance(c, CallRecord) else call_from_dict(c) for c in run.get("calls") or ()]
        return cls(
            round=run["round"],
            start_s=run["start_s"],
            wall_s=run["wall_s"],
            startup_s=run.get("startup_s"),
            process_s=run.get("process_s"),
            exit_code=run.get("exit_code"),
            calls=tuple(calls[:MAX_CALLS]),
            calls_dropped=max(0, len(calls) - MAX_CALLS) + int(run.get("calls_dropped") or 0),
            overridden=run.get("overridden"),
            given_up=run.get("given_up"),
            removed=run.get("removed"),
        )

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "round": self.round,
            "start_s": self.start_s,
            "wall_s": self.wall_s,
            "startup_s": self.startup_s,
            "process_s": self.process_s,
            "exit_code": self.exit_code,
            "overridden": self.overridden,
            "given_up": self.given_up,
            "removed": self.removed,
            "calls": [c.to_dict() for c in self.calls],
        }
        if self.calls_dropped:
            out["calls_dropped"] = self.calls_dropped
        return out

    @classmethod
    def from_dict(cls, data: object, where: str) -> ScriptRun:
        """A run as ``to_dict`` wrote it (devswitch 0.2.0 too); a ValueError naming the field if not."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} is {quote(data)}, not an object")
        calls = data.get("calls") or []
        if not isinstance(calls, list) or not all(isinstance(c, Mapping) for c in calls):
            raise ValueError(f"{where}.calls is not an array of objects")
        return cls(
            round=_whole(data.get("round"), f"{where}.round", 0) or 0,
            start_s=_number(data.get("start_s"), f"{where}.start_s") or 0.0,
            wall_s=_number(data.get("wall_s"), f"{where}.wall_s"),
            startup_s=_number(data.get("startup_s"), f"{where}.startup_s"),
            process_s=_number(data.get("process_s"), f"{where}.process_s"),
            exit_code=_whole(data.get("exit_code"), f"{where}.exit_code", None),
            calls=tuple(call_from_dict(c, f"{where}.calls[{j}]") for j, c in enumerate(calls)),
            calls_dropped=_whole(data.get("calls_dropped"), f"{where}.calls_dropped", 0) or 0,
            overridden=_text(data.get("overridden"), f"{where}.overridden"),
            given_up=_text(data.get("given_up"), f"{where}.given_up"),
            removed=_text(data.get("removed"), f"{where}.removed"),
        )


@dataclass(frozen=True)
class ScriptRecord:
    """What a script compare measured of one configuration: its runs, and what the first run applied."""

    runs: tuple[ScriptRun, ...]
    status: str = "ok"
    policy: str = ""  # the precision policy devswitch applied
    math: str = ""  # the float32 math in force (plan.math); "" = no plan
    versions: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)  # compare --vary: the varied settings as applied

    rate_unit = RATE_UNIT

    @property
    def walls(self) -> list[float]:
        return [r.wall_s for r in self.runs if r.wall_s is not None and r.wall_s > 0]

    @property
    def seconds_per_run(self) -> float | None:
        """The median wall time of the script over its runs (None: no run finished)."""
        return median(self.walls) if self.walls else None

    @property
    def runs_per_s(self) -> float | None:
        """1 / ``seconds_per_run``: the cell's rate (higher is faster)."""
        wall = self.seconds_per_run
        return 1.0 / wall if wall else None

    @property
    def seconds_per_run_ci(self) -> tuple[float, float, float] | None:
        """(low, high, coverage) of the median wall time; None with fewer than two runs."""
        return median_ci(self.walls) if len(self.walls) >= 2 else None

    @property
    def runs_per_s_ci(self) -> tuple[float, float, float] | None:
        ci = self.seconds_per_run_ci
        return (1.0 / ci[1], 1.0 / ci[0], ci[2]) if ci else None

    @property
    def startup_s(self) -> float | None:
        """The median start-up of the runs (Python, the framework, devswitch applied, until the script ran)."""
        values = [r.startup_s for r in self.runs if r.startup_s is not None]
        return median(values) if values else None

    @property
    def samples(self) -> dict[str, list]:
        """Round, start and wall time of every run: the speed-up is paired by round from them."""
        timed = [r for r in self.runs if r.wall_s is not None and r.wall_s > 0]
        return {
            "round": [r.round for r in timed],
            "start_s": [r.start_s for r in timed],
            "seconds_per_step": [r.wall_s for r in timed],
        }

    @property
    def calls(self) -> list[list[CallRecord]]:
        """The timed calls of each run, in order (one list per run)."""
        return [list(r.calls) for r in self.runs]

    def to_dict(self) -> dict:
        per_run, rate = self.seconds_per_run_ci, self.runs_per_s_ci
        out: dict[str, Any] = {
            "type": KIND,
            "schema_version": SCHEMA_VERSION,
            "status": self.status,
            "metrics": {
                "runs_per_s": {
                    "value": self.runs_per_s,
                    "unit": RATE_UNIT,
                    "note": "1 / the median wall time of the script",
                    **({"ci": [rate[0], rate[1]], "ci_coverage": rate[2]} if rate else {}),
                },
                "seconds_per_run": {
                    "value": self.seconds_per_run,
                    "unit": "s",
                    "note": "the median wall time of the script",
                    **({"ci": [per_run[0], per_run[1]], "ci_coverage": per_run[2]} if per_run else {}),
                },
                "startup": {"value": self.startup_s, "unit": "s"},
            },
            "policy": self.policy,
            "math": self.math,
            "versions": dict(self.versions),
            "samples": self.samples,
            "runs": [r.to_dict() for r in self.runs],
        }
        if self.settings:
            out["settings"] = dict(self.settings)
        return out

    @classmethod
    def from_dict(cls, data: object, where: str = "record") -> ScriptRecord:
        """The record ``to_dict`` wrote (or devswitch 0.2.0, without schema_version), validated: a ValueError
        naming the field (``where.runs[2].wall_s``). Its figures are those of its runs."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} is {quote(data)}, not an object")
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
            raise ValueError(f"{where}.schema_version is {quote(version)}: this devswitch reads 1 to {SCHEMA_VERSION}")
        runs = data.get("runs")
        if not isinstance(runs, list):
            raise ValueError(f"{where}.runs is {quote(runs)}, not an array")
        versions = data.get("versions") or {}
        settings = data.get("settings") or {}
        if not isinstance(versions, Mapping) or not isinstance(settings, Mapping):
            raise ValueError(f"{where}.versions and {where}.settings must be objects")
        return cls(
            runs=tuple(ScriptRun.from_dict(run, f"{where}.runs[{i}]") for i, run in enumerate(runs)),
            status=_text(data.get("status"), f"{where}.status") or "ok",
            policy=_text(data.get("policy"), f"{where}.policy") or "",
            math=_text(data.get("math"), f"{where}.math") or "",
            versions={k: v for k, v in versions.items() if isinstance(v, str)},
            settings=dict(settings),
        )


def build(runs: list[dict], plan: Mapping | None, environment: Mapping | None, applied: Mapping | None) -> ScriptRecord:
    """The record of one configuration from its finished runs (each: round, start_s, wall_s, startup_s,
    process_s, exit_code, calls)."""
    return ScriptRecord(
        runs=tuple(ScriptRun.of(r) for r in runs),
        policy=(plan or {}).get("policy") or "",
        math=(plan or {}).get("math") or "",
        versions={k: v for k, v in (environment or {}).items() if isinstance(v, str)},
        settings=dict(applied or {}),
    )


def _number(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} is {quote(value)}, not a number")
    return float(value)


def _whole(value: object, where: str, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where} is {quote(value)}, not a whole number")
    return value


def _text(value: object, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where} is {quote(value)}, not a string")
    return value


# --- reading it back: input handling ---------------------------------------------------------------


def check_options(r, options: dict) -> None:
    """options.kind, and what a script compare adds to the options: the script's arguments and the caps."""
    if options.get("kind") != KIND:
        raise r.fail("options.kind", f"expected {KIND!r} or nothing, found {str(options.get('kind'))[:20]!r}")
    args = r.get(options, "args", "options", list, required=False, default=[])
    if not all(isinstance(a, str) for a in args):
        raise r.fail("options.args", "expected an array of strings")
    caps = r.get(options, "caps", "options", dict, required=False, default={})
    for name in ("max_epochs", "max_steps"):
        r.get(caps, name, "options.caps", int, required=False)


def check(r, record: dict, where: str) -> None:
    """Check what the script tables read from a script record (``r``: resultfile's reader); raises its
    ResultFileError naming the field."""
    runs = r.get(record, "runs", where, list)
    for i, run in enumerate(runs):
        at = f"{where}.runs[{i}]"
        if not isinstance(run, dict):
            raise r.fail(at, f"expected an object, found {type(run).__name__}")
        for key in ("wall_s", "startup_s", "process_s"):
            run[key] = r.number(run.get(key), f"{at}.{key}")
        r.get(run, "exit_code", at, int, required=False)
        r.get(run, "calls_dropped", at, int, required=False)
        r.get(run, "round", at, int, required=False)
        items = r.get(run, "calls", at, list, required=False, default=[])
        if len(items) > MAX_CALLS:
            raise r.fail(f"{at}.calls", f"{len(items)} calls, more than {MAX_CALLS}")
        for j, call in enumerate(items):
            _check_call(r, call, f"{at}.calls[{j}]")


def _check_call(r, call: Any, where: str) -> None:
    if not isinstance(call, dict):
        raise r.fail(where, f"expected an object, found {type(call).__name__}")
    kind = r.get(call, "kind", where, str)
    if kind not in CALL_KINDS:
        raise r.fail(f"{where}.kind", f"expected one of {', '.join(CALL_KINDS)}, found {kind[:20]!r}")
    r.get(call, "status", where, str)
    r.get(call, "model", where, str, required=False)
    metrics = r.get(call, "metrics", where, dict, required=False, default={})
    for name, m in metrics.items():
        if not isinstance(m, dict):
            raise r.fail(f"{where}.metrics.{name}", f"expected an object, found {type(m).__name__}")
        m["value"] = r.number(m.get("value"), f"{where}.metrics.{name}.value")
    history = r.get(call, "history", where, dict, required=False)
    for name, value in (history or {}).items():
        history[name] = r.number(value, f"{where}.history.{name}")
    cap = r.get(call, "cap", where, dict, required=False)
    for name in (
        "max_epochs",
        "max_steps",
        "epochs_asked",
        "steps_asked",
        "epochs_run",
        "steps_run",
        "batches_per_epoch",
    ):
        if cap is not None:
            r.get(cap, name, f"{where}.cap", int, required=False)
    r.get(call, "epochs", where, list, required=False)
