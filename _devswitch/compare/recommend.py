"""The recommendation: per batch size, the decision of ``decision.py``'s rules (switch, or keep the baseline, and
why) and its switch.

Every word about an interval states its real coverage: with too few samples for 95% an interval is the
whole range of the samples, which covers the median with less (75% for 3 samples), and the text says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from .decision import MIN_SPEEDUP, Decision, Rules, below_95, coverage_words, decide
from .options import batch_label
from .resultset import Cell, ResultSet

__all__ = ["Pick", "below_95", "coverage_words", "fmt", "recommend", "recommendation_lines", "rules_of", "switch_text"]


@dataclass(frozen=True)
class Pick:
    """The decision at one batch size (``decision.py``'s rules), and what --max-error left out."""

    batch: int
    decision: Decision | None  # None: every measured configuration was left out by --max-error
    excluded: tuple = ()  # (cell, why) left out by --max-error

    @property
    def best(self) -> Cell | None:
        """The configuration to run: the one switched to, or the baseline kept."""
        return None if self.decision is None else self.decision.chosen

    def switch(self, several_backends: bool) -> dict[str, str]:
        """The settings that select the chosen configuration (half is kept as half: it means the same
        there), with every setting the compare varied, at its value."""
        if self.best is None:
            raise ValueError(f"batch {self.batch}: no configuration was picked, so there is none to select")
        chosen = {"device": self.best.device, "precision": self.best.precision, **dict(self.best.settings)}
        return {"backend": self.best.backend, **chosen} if several_backends else chosen


def rules_of(results: ResultSet) -> Rules:
    """The rules a result set was decided by: its --min-speedup (the default for files without one)."""
    value = results.options.get("min_speedup")
    return Rules(min_speedup=value if isinstance(value, (int, float)) and value >= 1 else MIN_SPEEDUP)


def recommend(results: ResultSet) -> list[Pick]:
    """Per batch size: the decision among the measured configurations within --max-error, fastest first
    (round by round where they shared rounds: a configuration the other beats in most rounds ranks below)."""
    picks, rules = [], rules_of(results)
    for batch in results.batch_sizes:
        ranked = sorted(
            (c for c in results.cells if c.batch == batch and (c.ok or outpaced(c))),
            key=lambda c: c.throughput,
            reverse=True,
        )
        ranked, excluded = within_error(ranked, results.options.get("max_error"))
        if not ranked:
            if excluded:
                picks.append(Pick(batch, None, tuple(excluded)))
            continue
        if len(ranked) > 1:
            paired = results.paired(ranked[0], ranked[1])
            if paired is not None and paired.value < 1:  # round by round the next is faster: it leads
                ranked[0], ranked[1] = ranked[1], ranked[0]
        base = results.cell(results.baseline, batch)
        baseline = base if base is not None and any(c is base for c in ranked) else None
        if any(outpaced(c) for c in ranked):  # a tune's: a dropped row is weighed, never chosen in a tie
            decision = decide(ranked, baseline, results.paired, rules, _survivors_first)
        else:
            decision = decide(ranked, baseline, results.paired, rules)
        picks.append(Pick(batch, decision, tuple(excluded)))
    return picks


def outpaced(cell: Cell) -> bool:
    """A row ``devswitch tune`` dropped as significantly slower than its leader ("dropped after round 3: 0.61x
    [0.55, 0.66] of the leader"): measured, so the decision weighs it (as the baseline, or as the next), but
    never the configuration it switches to."""
    rate = cell.rate()
    return cell.status.startswith("dropped after round ") and cell.status.endswith(" of the leader") and bool(rate)


def _survivors_first(cell: Cell) -> float:
    """The tie-break's error for a tune's cells: a dropped row last, a survivor without a measured error after
    those with one (so that among survivors alone, none measured, the fastest is chosen)."""
    if outpaced(cell):
        return float("inf")
    error = cell.error()
    return error if error is not None else float("1e300")


def within_error(cells: list[Cell], limit: float | None) -> tuple[list[Cell], list[tuple[Cell, str]]]:
    """The cells whose error against the reference is at most ``limit`` (all when no limit), and the others
    with the reason each was left out."""
    if limit is None:
        return cells, []
    kept, excluded = [], []
    for cell in cells:
        error = cell.error()
        if error is None:
            acc = cell.accuracy
            excluded.append(
                (cell, "error not measured" + (f" ({acc['status']})" if acc and acc.get("status") != "ok" else ""))
            )
        elif not error <= limit:
            excluded.append(
                (cell, "outputs not finite" if error == float("inf") else f"max relative error {error:.1e} > {limit:g}")
            )
        else:
            kept.append(cell)
    return kept, excluded


def switch_text(settings: dict[str, str]) -> str:
    flags = ",".join(f"{k}={v}" for k, v in settings.items())
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items())
    return f'`DEVSWITCH_FLAGS="{flags}" python train.py` or `devswitch run {options} train.py`'


def fmt(value: float | None, digits: int = 1) -> str:
    """A figure as the tables and lines show it: thousands separated, ``digits`` decimals, "-" for none."""
    return "-" if value is None else f"{value:,.{digits}f}"


def recommendation_lines(results: ResultSet, picks: list[Pick] | None = None) -> list[str]:
    """One line per batch size that has a measured configuration: the decision, why, and its switch."""
    unit = results.model.unit

    def show(cell: Cell) -> str:
        return f"{results.column(cell)} ({fmt(cell.metric('throughput'))} {unit}/s)"

    lines = []
    for pick in recommend(results) if picks is None else picks:
        left_out = ""
        if pick.excluded:
            left_out = (
                f" Left out by --max-error {results.options.get('max_error'):g}: "
                + "; ".join(f"{results.column(c)} ({why})" for c, why in pick.excluded)
                + "."
            )
        if pick.decision is None:
            lines.append(
                f"Recommendation, {batch_label(pick.batch)}: none: no measured configuration is within "
                f"--max-error.{left_out}"
            )
            continue
        lines.append(
            f"Recommendation, {batch_label(pick.batch)}: {pick.decision.why(show)}; selected by "
            f"{switch_text(pick.switch(results.several_backends))}.{left_out}"
        )
    return lines
