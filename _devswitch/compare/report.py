"""``report A B``: two result sets compared cell by cell, paired by key, with one gate rule.

The gate rule (``--fail-above PCT``): a cell fails when B takes more than PCT% longer per sample than A,
that is when A's median throughput / B's median throughput > 1 + PCT/100. A cell that A measured and B
did not (failed, unavailable, not run, a NaN throughput, missing from B) fails the gate too: an
incomplete B never passes as "no regression".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError
from .recommend import coverage_words
from .resultset import Cell, Key, ResultSet

MAX_FAIL_ABOVE = 1000.0  # percent: 11x slower; anything above is a typo


def parse_fail_above(text: str) -> float:
    """--fail-above PCT: a finite number from 0 to 1000 (percent more time per sample)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= MAX_FAIL_ABOVE:
        from ..errors import quote

        raise UsageError(
            f"--fail-above {quote(text)}: expected a percentage from 0 to {MAX_FAIL_ABOVE:g}",
            hint="e.g. --fail-above 10: fail when a cell of B takes more than 10% longer per sample",
        )
    return value


@dataclass(frozen=True)
class Change:
    """One cell measured on both sides: B's median throughput over A's, and whether that is outside the noise."""

    key: Key
    before: float
    after: float
    significant: bool | None  # the two intervals of the median do not overlap (None: no interval recorded)
    coverage: float | None = None

    @property
    def ratio(self) -> float:
        """B / A in throughput: below 1 is slower."""
        return self.after / self.before

    @property
    def slower_pct(self) -> float:
        """How much longer B takes per sample than A, in percent (negative: B is faster)."""
        return (self.before / self.after - 1) * 100

    def fails(self, fail_above: float | None) -> bool:
        return fail_above is not None and self.slower_pct > fail_above


@dataclass(frozen=True)
class Lost:
    """A cell that only one side measured, or that both measured in different units (``unlike``: which)."""

    key: Key
    a: Cell | None
    b: Cell | None
    unlike: str = ""  # "throughput samples/s in A, ms in B": measured on both sides, not comparable

    @property
    def measured_by_a(self) -> bool:
        return self.a is not None and self.a.ok

    def why(self) -> str:
        if self.unlike:
            return f"not paired: the units differ ({self.unlike})"
        side, cell = ("B", self.b) if self.measured_by_a else ("A", self.a)
        return f"not measured in {side}: {cell.status if cell is not None else 'no such cell'}"


@dataclass(frozen=True)
class Comparison:
    a: ResultSet
    b: ResultSet
    changes: tuple[Change, ...]
    lost: tuple[Lost, ...]
    fail_above: float | None = None

    @property
    def failures(self) -> list[str]:
        """Why the gate fails (empty when it passes, or with no gate)."""
        if self.fail_above is None:
            return []
        out = [
            f"{c.key.label()}: {c.slower_pct:.1f}% more time per sample"
            for c in self.changes
            if c.fails(self.fail_above)
        ]
        out += [f"{x.key.label()}: {x.why()}" for x in self.lost if x.measured_by_a]
        if not self.b.complete or self.b.interrupted:
            out.append("B is incomplete (" + ("interrupted" if self.b.interrupted else "written while running") + ")")
        return out


def _identity(results: ResultSet) -> dict[str, str]:
    return {
        "model": results.model.title,
        "factory": results.model.target,
        "mode": results.mode,
        "unit": results.model.unit,
    }


def unlike_units(x: Cell, y: Cell) -> str:
    """The metrics that two cells record in different units ("" when none): a ratio of a figure in samples/s
    and one in ms would read as a speed-up. The unit of every metric is part of a cell's identity."""
    units_x, units_y = x.units, y.units
    out = []
    for name, ux in units_x.items():
        uy = units_y.get(name)
        if uy is not None and ux != uy:
            out.append(f"{name} {ux} in A, {uy} in B")
    return "; ".join(out)


def compare(a: ResultSet, b: ResultSet, fail_above: float | None = None) -> Comparison:
    """Pair the cells of A and B by their full key (backend, device, precision, the varied settings, batch);
    refuse sets of different things."""
    ida, idb = _identity(a), _identity(b)
    differ = [f"{k} {ida[k]!r} in A, {idb[k]!r} in B" for k in ida if ida[k] != idb[k]]
    if differ:
        raise UsageError(
            f"A ({a.path}) and B ({b.path}) measure different things: " + "; ".join(differ),
            hint="compare result sets of the same model, mode and unit",
        )
    left, right = a.by_key(), b.by_key()
    changes, lost = [], []
    for key in dict.fromkeys([*left, *right]):
        x, y = left.get(key), right.get(key)
        unlike = unlike_units(x, y) if x is not None and y is not None and x.ok and y.ok else ""
        if unlike:
            lost.append(Lost(key, x, y, unlike))
        elif x is not None and y is not None and x.ok and y.ok:
            significant = coverage = None
            if x.interval and y.interval:
                significant = not x.interval.overlaps(y.interval)
                coverage = min(x.interval.coverage, y.interval.coverage)
            changes.append(Change(key, x.throughput, y.throughput, significant, coverage))
        elif (x is not None and x.ok) or (y is not None and y.ok):
            lost.append(Lost(key, x, y))
    if not changes and not any(x.measured_by_a for x in lost):
        raise UsageError(
            "A and B have no measured cell in common",
            hint="compare results of the same model, devices, precisions and batch sizes",
        )
    return Comparison(a, b, tuple(changes), tuple(lost), fail_above)


def verdict(change: Change, fail_above: float | None) -> str:
    if change.significant is None or change.coverage is None:  # set together, from the intervals
        text = "noise unknown (no confidence intervals recorded)"
    elif change.significant:
        text = (
            "faster" if change.ratio > 1 else "slower"
        ) + f" (the {coverage_words(change.coverage)} intervals do not overlap)"
    else:
        text = f"within the noise (the {coverage_words(change.coverage)} intervals overlap)"
    if change.fails(fail_above):
        text += f"; FAIL: more than {fail_above:g}% more time per sample"
    return text
