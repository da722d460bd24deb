"""A script compare (``compare --script``) as one table, its lines, and CSV: the same table model as factories.

One column per configuration; rows: the script's seconds per run (its median wall time: the recommendation
ranks by it) and runs/s, the speed-up paired by round, the start-up, then per timed ``fit`` its steady
samples/s, first epoch, epochs x steps (with the caps) and the final loss and metrics of its history, then
each ``evaluate`` / ``predict`` rate.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from ..compare.recommend import Pick, recommend, switch_text
from ..compare.resultset import Cell, ResultSet
from ..compare.scriptrecord import MAX_CALLS
from ..results import CallRecord
from ..statistics import median
from .cells import Footnotes, speedup_text
from .escape import csv_row, safe
from .table import Column, Table

NO_FIT = "the script called no fit"
PER_RUN = "s per run"  # the median wall time of the script; the first row
RATE = "runs/s"  # 1 / PER_RUN: what the speed-up is a ratio of


def _median(values: list) -> float | None:
    values = [v for v in values if isinstance(v, (int, float))]
    return median(values) if values else None


def _rate(call: CallRecord) -> float | None:
    """samples/s of a call: its steady rate, else samples over the whole call (tracing included)."""
    if call.steady_samples_per_s is not None:
        return call.steady_samples_per_s
    return call.samples / call.wall_s if call.samples and call.wall_s else None


def figures(cell: Cell) -> dict[str, Any]:
    """The figures of one measured configuration, by row name (numbers where they are numbers)."""
    record = cell.script
    if record is None:
        return {}
    out: dict[str, Any] = {PER_RUN: record.seconds_per_run, RATE: record.runs_per_s, "start-up (s)": record.startup_s}
    per_run = record.calls
    last = per_run[-1] if per_run else []
    counts: dict[str, int] = {}
    for index, call in enumerate(last):
        kind = call.kind
        counts[kind] = counts.get(kind, 0) + 1
        name = f"{kind} {counts[kind]}"
        same = [run[index] for run in per_run if len(run) > index and run[index].kind == kind]
        if call.status != "ok":
            out[f"{name}: status"] = call.status
            continue
        if kind == "fit":
            steady = _median([c.steady_samples_per_s for c in same])
            one = len(call.epochs) == 1
            out[f"{name}: steady samples/s"] = "- (one epoch: no steady state)" if steady is None and one else steady
            out[f"{name}: first epoch (s)"] = _median([c.first_s for c in same])
            cap = call.cap or {}
            epochs, steps = len(call.epochs), call.steps
            text = f"{epochs} x {steps if steps is not None else '?'}"
            if cap:
                asked = cap.get("steps_asked") or cap.get("batches_per_epoch")
                text += (
                    f" (capped; asked {cap.get('epochs_asked')} x {asked if asked is not None else '?'})"
                    if cap.get("applied")
                    else " (within the caps)"
                )
            out[f"{name}: epochs x steps"] = text
            for key, value in (call.history or {}).items():
                out[f"{name}: final {key}"] = value
        else:
            out[f"{name}: samples/s"] = _median([_rate(c) for c in same])
    if not counts.get("fit"):
        out["fit"] = NO_FIT
    return out


def _text(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if name.endswith("(s)") or name == PER_RUN:
        return f"{value:,.2f} s"
    if name == RATE:
        return f"{value:#.3g}"
    if name.endswith("samples/s"):
        return f"{value:,.1f}"
    return f"{value:.4g}"


def table(results: ResultSet, notes: Footnotes) -> Table:
    cells = [c for c in (results.cell(config, 1) for config in results.configs) if c is not None]
    data = {id(c): figures(c) for c in cells if c.ok}
    names = [PER_RUN, RATE, f"speed-up vs {results.baseline.label(results.several_backends)}", "start-up (s)"]
    for values in data.values():
        names += [n for n in values if n not in names]
    rows = []
    for name in names:
        row = [name]
        for c in cells:
            if not c.ok:
                row.append(notes.mark(c.status) if name == names[0] else "-")
            elif name.startswith("speed-up"):
                row.append(speedup_text(results, c))
            else:
                value = data[id(c)].get(name)
                text = _text(name, value)
                ci = c.script.seconds_per_run_ci if c.script is not None else None
                if name == PER_RUN and ci:
                    text += f" [{ci[0]:,.2f}, {ci[1]:,.2f}]"
                row.append(text)
        rows.append(row)
    columns = [Column("the run as a whole")] + [Column(results.column(c), numeric=True) for c in cells]
    return Table.of(columns, rows)


def preamble(results: ResultSet) -> list[str]:
    options = results.options
    env = results.environment or {}
    args = " ".join(options.get("args") or [])
    caps = options.get("caps") or {}
    capped = [
        f"at most {v} {'epoch' if k == 'max_epochs' else 'step'}{'s' if v != 1 else ''}"
        + ("" if k == "max_epochs" else " per epoch")
        for k, v in caps.items()
        if v
    ]
    lines = [
        f"Machine: {env.get('cpu')} ({env.get('cpu_cores')} cores); Keras {env.get('keras')}." if env else "",
        f"Each column ran the whole script (`{results.model.target}{' ' + args if args else ''}`) as `devswitch "
        "run` runs it, in its own process, with its settings explicit and `fallback: error`; its output is in "
        "`logs/` beside results.json."
        + (
            f" Every fit was capped by devswitch to {' and '.join(capped)} (--max-epochs / --max-steps); the "
            "history the script saw, and its final loss and metrics here, are those of the capped fit."
            if capped
            else ""
        ),
    ]
    rounds = options.get("rounds") or 1
    if rounds > 1:
        lines.append(
            f"Each configuration ran the script {rounds} times, the configurations taking turns (A B A B "
            "...): the wall time is the median of the runs with, in brackets, its interval; the speed-up is "
            "the median of the per-round ratios of wall times, with its interval."
        )
    else:
        lines.append(
            "Each configuration ran the script once (--rounds 1, the default for scripts): the speed-up is "
            "a ratio of single wall times, without an interval; --rounds N runs each N times in turn."
        )
    return [line for line in lines if line]


def recommendation_lines(results: ResultSet, picks: list[Pick] | None = None) -> list[str]:
    """The decision by the script's wall time (the run as a whole), why, and its switch."""

    def show(cell: Cell) -> str:
        return f"{results.column(cell)} ({1.0 / cell.throughput:,.2f} s)"

    lines = []
    for pick in recommend(results) if picks is None else picks:
        if pick.decision is None:
            continue
        lines.append(
            f"Recommendation, by the script's wall time: {pick.decision.why(show)}; selected by "
            f"{switch_text(pick.switch(results.several_backends))}."
        )
    return lines


def dropped_lines(results: ResultSet) -> list[str]:
    """Per column, the timed calls not kept beyond the first MAX_CALLS of a run (the table shows only those
    kept; results.json counts the rest as calls_dropped)."""
    lines = []
    for cell in results.cells:
        dropped = sum(r.calls_dropped for r in cell.script.runs) if cell.script is not None else 0
        if dropped:
            lines.append(
                f"{results.column(cell)}: {dropped:,} timed call{'s' if dropped != 1 else ''} not kept (a run keeps "
                f"its first {MAX_CALLS:,}); the figures above are of the calls kept."
            )
    return lines


def epilogue(results: ResultSet, notes: Footnotes, picks: list[Pick]) -> list[str]:
    lines = list(notes.lines())
    lines += dropped_lines(results)
    measured = [c for c in results.cells if c.ok]
    if measured and all(figures(c).get("fit") == NO_FIT for c in measured):
        lines.append("The script called no fit: the table has its wall time and its evaluate/predict calls.")
    lines += recommendation_lines(results, picks)
    t = results.timing
    if t.get("overhead_ratio"):
        lines.append(
            f"Wall time {t['total_s']:.1f} s = {t['overhead_ratio']:.2f}x the runs' processes: the "
            f"scripts themselves ({t['sum_measured_s']:.1f} s) plus start-ups and exits "
            f"({t['sum_startup_s']:.1f} s)."
        )
    if results.interrupted:
        lines.append("Interrupted: the columns marked 'interrupted' / 'not run' were not measured.")
    if not results.complete:
        lines.append("Incomplete: written while compare was running.")
    return lines


def render_csv(results: ResultSet) -> str:
    """One row per configuration: its settings, status, and every figure of the table as a number."""
    cells = list(results.cells)
    data = [figures(c) if c.ok else {} for c in cells]
    names = list(dict.fromkeys(n for d in data for n in d))
    fields = [
        "backend",
        "device",
        "precision",
        *results.varied,
        "resolved_precision",
        "status",
        "policy",
        "speedup_vs_baseline",
        "speedup_ci_low",
        "speedup_ci_high",
        "speedup_rounds",
        *names,
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, [safe(f, "csv") for f in fields], lineterminator="\n")
    writer.writeheader()
    for c, d in zip(cells, data, strict=True):
        ratio = results.speedup_interval(c)
        writer.writerow(
            csv_row(
                {
                    "backend": c.backend,
                    "device": c.device,
                    "precision": c.precision,
                    **dict(c.settings),
                    "resolved_precision": c.resolved,
                    "status": c.status,
                    "policy": c.record.policy if c.record is not None else None,
                    "speedup_vs_baseline": results.speedup(c),
                    "speedup_ci_low": ratio.low if ratio else None,
                    "speedup_ci_high": ratio.high if ratio else None,
                    "speedup_rounds": ratio.rounds if ratio else None,
                    **d,
                }
            )
        )
    return out.getvalue()
