"""The record of one configuration of ``compare --script``: its runs (one per round), built here and checked
again when results.json is read.

A script's cell is the run as a whole (batch 1 = one run of the script). Its ``throughput`` is runs per
second, 1 / the median wall time of the script, so that the recommendation, the speed-up paired by round and
``devswitch report A B`` treat it like any cell: higher is faster, and a ratio of it is a ratio of wall
times. Beside it: every run's wall time, start-up and exit code, and the timed Keras calls of its timing
report (each fit with its history and its caps).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..statistics import median, median_ci

KIND = "script"  # results.json options.kind of a script compare (factories: absent)
CALL_KINDS = ("fit", "evaluate", "predict")
MAX_CALLS = 1000  # timed calls kept per run


def build(runs: list[dict], plan: Mapping | None, environment: Mapping | None, applied: Mapping | None) -> dict:
    """The record of one configuration from its finished runs (each: round, start_s, wall_s, startup_s,
    process_s, exit_code, calls)."""
    walls = [r["wall_s"] for r in runs]
    wall = median(walls)
    metrics: dict[str, Any] = {
        "throughput": {
            "value": 1.0 / wall if wall > 0 else None,
            "unit": "runs/s",
            "note": "1 / the median wall time of the script",
        },
        "wall": {"value": wall, "unit": "s"},
        "startup": {
            "value": median([r["startup_s"] for r in runs if r["startup_s"] is not None] or [0.0]),
            "unit": "s",
        },
    }
    if len(walls) >= 2:
        low, high, coverage = median_ci(walls)
        metrics["wall"].update(ci=[low, high], ci_coverage=coverage)
        metrics["throughput"].update(ci=[1.0 / high, 1.0 / low], ci_coverage=coverage)
    versions = {k: v for k, v in (environment or {}).items() if isinstance(v, str)}
    runs = [
        {**r, "calls": r["calls"][:MAX_CALLS], "calls_dropped": len(r["calls"]) - MAX_CALLS}
        if len(r.get("calls") or ()) > MAX_CALLS
        else r
        for r in runs
    ]  # what a reader accepts, and how many not
    record = {
        "type": KIND,
        "status": "ok",
        "metrics": metrics,
        "policy": (plan or {}).get("policy") or "",
        "math": (plan or {}).get("math") or "",
        "versions": versions,
        "samples": {
            "round": [r["round"] for r in runs],
            "start_s": [r["start_s"] for r in runs],
            "seconds_per_step": walls,
        },
        "runs": runs,
    }
    if applied:
        record["settings"] = dict(applied)
    return record


def calls(record: Mapping) -> list[list[dict]]:
    """The timed calls of each run, in order (one list per run)."""
    return [list(r.get("calls") or []) for r in record.get("runs") or []]


def figure(call: Mapping, name: str) -> float | None:
    value = ((call.get("metrics") or {}).get(name) or {}).get("value")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
