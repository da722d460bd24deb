"""The recommendation: per batch size, the fastest configuration, whether it is distinguishable, and its switch.

Every word about an interval states its real coverage: with too few samples for 95% an interval is the
whole range of the samples, which covers the median with less (75% for 3 samples), and the text says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..statistics import Ratio
from .resultset import Cell, ResultSet


def below_95(coverage: float) -> bool:
    """An interval from too few samples for 95% (the whole range of them, covering less)."""
    return coverage < 0.95 - 1e-9


def coverage_words(*coverages: float) -> str:
    """'95%' or, when an interval covers less, the lowest coverage among them ('75%')."""
    level = min(coverages)
    return f"{level:.0%}" if below_95(level) else "95%"


@dataclass(frozen=True)
class Pick:
    """The fastest configuration at one batch size, and whether it is distinguishable from the next."""

    batch: int
    best: Cell | None  # None: every measured configuration was left out by --max-error
    runner_up: Cell | None
    significant: bool | None  # None: no runner-up, or no intervals to tell
    coverage: float | None = None  # the lowest coverage of the two intervals compared
    paired: Ratio | None = None  # best / runner-up paired by round, when both were timed in shared rounds
    excluded: tuple = ()  # (cell, why) left out by --max-error

    def switch(self, several_backends: bool) -> dict[str, str]:
        """The settings that select this configuration (half is kept as half: it means the same there), with
        every setting the compare varied, at the winner's value."""
        if self.best is None:
            raise ValueError(f"batch {self.batch}: no configuration was picked, so there is none to select")
        chosen = {"device": self.best.device, "precision": self.best.precision, **dict(self.best.settings)}
        return {"backend": self.best.backend, **chosen} if several_backends else chosen

    @property
    def ratio(self) -> float | None:
        if self.best is None or self.runner_up is None:  # there is a runner-up only beside a best
            return None
        if self.paired is not None:
            return self.paired.value
        return self.best.throughput / self.runner_up.throughput


def recommend(results: ResultSet) -> list[Pick]:
    """Per batch size: the measured configuration with the highest median throughput."""
    picks = []
    for batch in results.batch_sizes:
        ranked = sorted(
            (c for c in results.cells if c.batch == batch and c.ok), key=lambda c: c.throughput, reverse=True
        )
        ranked, excluded = within_error(ranked, results.options.get("max_error"))
        if not ranked:
            if excluded:
                picks.append(Pick(batch, None, None, None, excluded=tuple(excluded)))
            continue
        best, runner_up = ranked[0], ranked[1] if len(ranked) > 1 else None
        significant, coverage, paired = None, None, None
        if runner_up is not None:
            paired = results.paired(best, runner_up)
            if paired is not None and paired.value < 1:  # round by round the other is faster: it leads
                best, runner_up = runner_up, best
                paired = results.paired(best, runner_up)
        if paired is not None:  # timed in the same rounds: the interval of the paired ratio lies above 1
            significant, coverage = paired.low > 1, paired.coverage
        elif runner_up is not None and best.interval and runner_up.interval:
            significant = best.interval.low > runner_up.interval.high  # the intervals do not overlap
            coverage = min(best.interval.coverage, runner_up.interval.coverage)
        picks.append(Pick(batch, best, runner_up, significant, coverage, paired, tuple(excluded)))
    return picks


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
    """One line per batch size that has a measured configuration."""
    several = results.several_backends
    unit = results.model.unit
    lines = []
    for pick in recommend(results) if picks is None else picks:
        left_out = ""
        if pick.excluded:
            left_out = (
                f" Left out by --max-error {results.options.get('max_error'):g}: "
                + "; ".join(f"{results.column(c)} ({why})" for c, why in pick.excluded)
                + "."
            )
        if pick.best is None:
            lines.append(
                f"Recommendation, batch {pick.batch}: none: no measured configuration is within --max-error.{left_out}"
            )
            continue
        best = results.column(pick.best)
        rate = f"{fmt(pick.best.metric('throughput'))} {unit}/s"
        if pick.runner_up is None:
            verdict = f"{best} ({rate}), the only configuration measured"
        else:
            nxt = results.column(pick.runner_up)
            if pick.significant is None or pick.coverage is None:  # set together, from the intervals
                verdict = (
                    f"fastest measured: {best} ({rate}, {pick.ratio:.2f}x the next, {nxt}; "
                    "significance unknown: no intervals recorded)"
                )
            elif pick.paired is not None:
                r = pick.paired
                paired = (
                    f"{r.value:.2f}x paired by round over {r.rounds} rounds, its {coverage_words(r.coverage)} "
                    f"interval [{r.low:.2f}, {r.high:.2f}]"
                )
                if pick.significant:
                    verdict = f"fastest: {best} ({rate}) against the next, {nxt}: {paired} lies above 1"
                else:
                    verdict = (
                        f"no significant difference between {best} ({rate}) and {nxt} "
                        f"({fmt(pick.runner_up.metric('throughput'))} {unit}/s): {paired} does not lie "
                        "above 1"
                    )
            elif pick.significant:
                verdict = (
                    f"fastest: {best} ({rate}, {pick.ratio:.2f}x the next, {nxt}; their "
                    f"{coverage_words(pick.coverage)} intervals do not overlap)"
                )
            else:
                verdict = (
                    f"no significant difference between {best} ({rate}) and {nxt} "
                    f"({fmt(pick.runner_up.metric('throughput'))} {unit}/s): their "
                    f"{coverage_words(pick.coverage)} intervals overlap"
                )
        lines.append(
            f"Recommendation, batch {pick.batch}: {verdict}; selected by {switch_text(pick.switch(several))}.{left_out}"
        )
    return lines
