"""Timed Keras calls as tables: the summary of this process's calls and the runs of a timing report.

Producers here build ``Table``s as data (``calls_table``, ``runs_tables``); text, HTML and the terminal are
the renderers' business. The columns that matter least are optional, so a narrow terminal drops them
(notes, then policy, device, first call) before it would break a word.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..memory import format_size
from . import html, terminal, text
from .table import Column, Table, clip

if TYPE_CHECKING:  # records are read by attribute; results.py imports this module, not the reverse
    from ..results import CallRecord, ReportRun

TITLE = "devswitch: timed Keras calls"
NONE_YET = "devswitch: no timed Keras calls yet"
CALL_COLUMNS = (
    Column("#", numeric=True),
    Column("call"),
    Column("model"),
    Column("wall", numeric=True),
    Column("first (tracing)", optional=True),
    Column("steady"),
    Column("steady rate", numeric=True),
    Column("device", optional=True),
    Column("policy", optional=True),
    Column("notes", optional=True),
)
RUN_COLUMNS = (
    Column("#", numeric=True),
    Column("call"),
    Column("model"),
    Column("wall", numeric=True),
    Column("first (tracing)", optional=True),
    Column("steady rate", numeric=True),
    Column("device", optional=True),
    Column("policy", optional=True),
    Column("status"),
)
SUMMARY_ROWS = 20  # the summary at exit: the first and last 10 calls, the rest counted
SUMMARY_CELL = 60  # ... and no cell longer than this (clipped with an ellipsis)
SUMMARY_HINT = "devswitch.summary()"
RUN_HINT = "devswitch run --report PATH.json SCRIPT keeps every call"  # the script's process is gone by then
LOG_WIDTH = 120  # plain text for a log or a pipe (no terminal to fit)


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_rate(rate: float | None, unit: str = "") -> str:
    if rate is None:
        return "-"
    rendered = f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}" if rate >= 1 else f"{rate:.3f}"
    return rendered + (f" {unit}" if unit else "")


def _notes(r: CallRecord) -> str:
    notes = []
    if r.status != "ok":
        notes.append(r.status)
    if r.nonfinite_loss_epochs:
        notes.append("loss NaN/inf at epoch " + ",".join(str(e + 1) for e in r.nonfinite_loss_epochs))
    if r.replicas > 1 or r.workers > 1:
        notes.append(f"{r.replicas} replicas, {r.workers} worker(s)")
    if r.batch_times_s is not None:
        notes.append("per-batch timing on")
    if r.peak_memory_bytes is not None:
        notes.append(f"peak memory {format_size(r.peak_memory_bytes)}")
    if r.stale_policy:
        notes.append(f"model built under {r.policy}, not the applied {r.applied_policy}")
    return "; ".join(notes)


def call_row(number: int, r: CallRecord) -> tuple[str, ...]:
    """One timed call as the cells of ``CALL_COLUMNS``."""
    first = fmt_s(r.first_s)
    if r.kind == "fit":
        epochs = len(r.epochs)
        steady = f"{fmt_s(r.steady_s)} ({epochs - 1} ep)" if epochs > 1 else "- (1 epoch only)"
        if epochs < 2:
            first = "-"  # the whole fit is its one epoch (in "wall"): not a first epoch set apart by tracing
    else:
        steady = fmt_s(r.steady_s) if not r.traced else "- (first call)"
    if r.steady_samples_per_s is not None:
        rate = fmt_rate(r.steady_samples_per_s, "samples/s")
    elif r.steady_steps_per_s is not None:
        rate = fmt_rate(r.steady_steps_per_s, "steps/s")
    else:
        rate = "-"
    return (str(number), r.kind, r.model, fmt_s(r.wall_s), first, steady, rate, r.device, r.policy, _notes(r))


def calls_table(records: Sequence[CallRecord], cell_limit: int | None = None) -> Table:
    """The timed calls as a Table; with ``cell_limit`` no cell is longer (clipped with an ellipsis)."""
    rows = (call_row(i, r) for i, r in enumerate(records, 1))
    if cell_limit is not None:
        rows = (tuple(clip(cell, cell_limit) for cell in row) for row in rows)
    return Table.of(CALL_COLUMNS, rows, title=TITLE)


def _kinds(rows: Sequence[Sequence[str]]) -> str:
    """What rows of calls are: "2 fit, 1 evaluate" (in the order first seen)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[1]] = counts.get(row[1], 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


def summary_table(records: Sequence[CallRecord], max_rows: int | None = SUMMARY_ROWS, hint: str = "") -> Table:
    """The summary printed at exit: short cells, at most ``max_rows`` rows (the first and the last ones; the
    line under them says which rows are left out, what they are, and ``hint``: where to see them all)."""
    return calls_table(records, SUMMARY_CELL).limited(max_rows, hint=hint or SUMMARY_HINT, what=_kinds)


def render_calls(records: Sequence[CallRecord], width: int | None = None) -> str:
    """Every timed call as plain text (fitted to ``width`` when given)."""
    return text.render(calls_table(records), width)


def render_calls_html(records: Sequence[CallRecord]) -> str:
    """Every timed call as an HTML table, for Jupyter (every value escaped)."""
    return html.render(calls_table(records))


def print_calls(
    records: Sequence[CallRecord], stream=None, max_rows: int | None = SUMMARY_ROWS, hint: str | None = None
) -> None:
    """The summary at exit: a rich table on a terminal, plain text otherwise (logs, CI), both fitted to a
    width and limited to ``max_rows`` rows. ``hint`` says where to see every row; by default the way that
    works here: under ``devswitch run`` the process ends with the script, so ``--report``."""
    stream = stream or sys.stderr
    if hint is None:
        from .. import state

        hint = RUN_HINT if state.current().process.get("launched") else SUMMARY_HINT
    table = summary_table(records, max_rows, hint)
    if getattr(stream, "isatty", lambda: False)():
        from rich.console import Console

        terminal.print_table(table, Console(file=stream))
    else:
        print(text.render(table, LOG_WIDTH), file=stream)  # a log or a pipe: its own width, not the terminal's


def _finite(value: float | None) -> float | None:
    """A finite float, else None (NaN, inf, an integer beyond float's range): shown as "-"."""
    if value is None:
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _run_title(number: int, run: ReportRun) -> str:
    plan, env = run.plan, run.environment
    applied = ", ".join(f"{k}={plan[k]}" for k in ("backend", "device", "precision", "policy") if plan.get(k))
    backend = str(env.get("backend") or "tensorflow")
    return (
        f"run {number}: {applied or 'no plan recorded'}; keras {env.get('keras', '?')}, "
        f"{backend} {env.get(backend, '')}"
    ).rstrip()


def _run_row(number: int, record: CallRecord) -> tuple[str, ...]:
    rate = _finite(record.steady_samples_per_s)
    one_epoch = record.kind == "fit" and len(record.epochs) < 2
    return (
        str(number),
        record.kind,
        record.model or "?",
        fmt_s(_finite(record.wall_s)),
        "-" if one_epoch else fmt_s(_finite(record.first_s)),  # a one-epoch fit: no first epoch set apart
        fmt_rate(rate, "samples/s") if rate else "-",
        record.device,
        record.policy,
        record.status,
    )


def runs_tables(runs: Sequence[ReportRun]) -> list[Table]:
    """A timing report (``report: PATH.jsonl``): per run, a table of its timed calls titled with what was
    applied."""
    tables = []
    for i, run in enumerate(runs, 1):
        if run.records:
            rows = (_run_row(n, r) for n, r in enumerate(run.records, 1))
            tables.append(Table.of(RUN_COLUMNS, rows, title=_run_title(i, run)))
        else:  # no columns: the title and the note alone
            tables.append(Table.of((), (), title=_run_title(i, run), notes=("(no timed calls)",)))
    return tables


def render_report_runs(runs: Sequence[ReportRun], width: int | None = None) -> str:
    """A timing report as text: each run's table, a blank line after each."""
    return "".join(text.render(table, width) + "\n\n" for table in runs_tables(runs))


class Calls(list):
    """Timed calls: a plain list of CallRecord that prints as the table of them all, and renders as an HTML
    table in Jupyter."""

    def __str__(self) -> str:
        return render_calls(self) if self else NONE_YET

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return render_calls_html(self) if self else f"<p>{NONE_YET}</p>"
