"""What the factory table and the script table share: a speed-up's text, an interval's, numbered footnotes."""

from __future__ import annotations

from dataclasses import replace

from ..compare.options import KNEE_BATCH
from ..compare.recommend import Pick, below_95, fmt
from ..compare.resultset import Cell, ResultSet
from ..memory import format_size
from .escape import safe
from .table import Table


def interval_text(cell: Cell) -> str:
    ci = cell.interval
    if ci is None:
        return ""
    text = f"[{fmt(ci.low)}, {fmt(ci.high)}]"
    if below_95(ci.coverage):  # too few samples for 95%: the whole range, with what it covers
        text += f" ({ci.coverage:.0%})"
    return text


def speedup_text(results: ResultSet, cell: Cell) -> str:
    """ "1.79x [1.70, 1.85]": the speed-up paired by round with its interval (its coverage when under 95%);
    the plain ratio of medians when the cells were not timed in shared rounds."""
    if cell.config == results.baseline:
        return "1.00x (baseline)"
    ratio = results.speedup_interval(cell)
    if ratio is None:
        speedup = results.speedup(cell)
        return f"{speedup:.2f}x" if speedup else "-"
    text = f"{ratio.value:.2f}x [{ratio.low:.2f}, {ratio.high:.2f}]"
    return text + (f" ({ratio.coverage:.0%})" if below_95(ratio.coverage) else "")


def memory_ratio(results: ResultSet, cell: Cell) -> float | None:
    """This cell's peak memory over the baseline column's at the same batch size (None where either is unknown)."""
    base = results.cell(results.baseline, cell.batch)
    mine = cell.metric("peak_memory") if cell.ok else None
    theirs = base.metric("peak_memory") if base is not None and base.ok else None
    return mine / theirs if mine and theirs else None


def memory_text(results: ResultSet, cell: Cell) -> str:
    """ "312 MiB (0.52x)": the batch size's peak memory, and in brackets the ratio to the baseline column's
    (what the speed-up row is to time); "(baseline)" in the baseline's column; "-" where it is unknown."""
    peak = cell.metric("peak_memory") if cell.ok else None
    if peak is None:
        return "-"
    if cell.config == results.baseline:
        return f"{format_size(peak)} (baseline)"
    ratio = memory_ratio(results, cell)
    return format_size(peak) + (f" ({ratio:.2f}x)" if ratio is not None else "")


def with_decision(results: ResultSet, table: Table, batch: int, picks: list[Pick]) -> Table:
    """``table`` (one column per configuration at ``batch``, in ``results.configs`` order, after the row
    names) with a last row saying what the recommendation decided for each: the same rules as its line."""
    pick = next((p for p in picks if p.batch == batch and p.decision is not None), None)
    if pick is None or pick.decision is None:
        return table
    cells = [c for c in (results.cell(config, batch) for config in results.configs) if c is not None]
    if len(cells) + 1 != len(table.columns):
        return table
    row = ("decision", *(safe(pick.decision.short(c)) for c in cells))
    return replace(table, rows=(*table.rows, row))


class Footnotes:
    """Long reasons ("unavailable: TensorFlow sees no GPU ...") become numbered notes under the tables."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, status: str) -> str:
        kind, _, reason = status.partition(": ")
        if not reason:
            return status
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"{kind} [{self.reasons.index(reason) + 1}]"

    def lines(self) -> list[str]:
        return [f"[{i}] {reason}" for i, reason in enumerate(self.reasons, 1)]


def baseline_label(results: ResultSet) -> str:
    return results.baseline.label(results.several_backends)


def found_line(results: ResultSet) -> str:
    """What ``--batch-sizes max[,knee]`` measured: each column at its own batch, and what "fits" meant."""
    budget = results.options.get("memory_budget")
    limit = (
        f"a memory budget of {format_size(budget)}"
        if budget
        else "half the memory available to its worker on a CPU, the device's memory on a GPU"
    )
    knee = (
        "; knee: the smallest batch within 5% of the best throughput its search saw"
        if KNEE_BATCH in results.batch_sizes
        else ""
    )
    return (
        "Batch: each column at its own batch, found in its own worker (max: the largest batch that fits under "
        f"{limit}, grown by powers of two then searched between the last that fit and the first that did not{knee}). "
        "The speed-up compares each column at its own batch, as the whitepaper's table did (GPU at 128, CPU at 48)."
    )
