"""The rules that turn measurements into a decision, stated once (docs/compare.md, "Decisions").

compare's recommendation line, its table's decision row and ``--save-profile`` all decide through
``decide`` (and so will ``devswitch tune``):

1. **A tie keeps what you have.** Without a decisive difference the baseline is kept (with no baseline
   measured, the most accurate of the configurations the rules cannot tell apart), and the line says why.
2. **A decision needs about 95% coverage.** The interval of the speed-up must cover its median with at
   least 93.75%: the whole range of 5 rounds (3 rounds give 75%); from 6 rounds on, the order-statistic
   interval of ``statistics.median_ci`` (95% or more, computed exactly from the binomial). With less, it
   cannot decide, and says how many rounds would.
3. **A minimum worthwhile speed-up** (``--min-speedup``, default 1.05): a significant 1.01x is reported
   as what it is, but it does not move the decision off the baseline.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..statistics import Ratio, samples_for
from .resultset import Cell

MIN_SPEEDUP = 1.05  # --min-speedup's default, in the spirit of asv's --factor
MIN_COVERAGE = 1 - 2 * 0.5**5  # 93.75%: the whole range of 5 paired ratios, "about 95%"


def below_95(coverage: float) -> bool:
    """An interval from too few samples for 95% (the whole range of them, covering less)."""
    return coverage < 0.95 - 1e-9


def coverage_words(*coverages: float) -> str:
    """'95%' or, when an interval covers less, the lowest coverage among them ('75%')."""
    level = min(coverages)
    return f"{level:.0%}" if below_95(level) else "95%"


@dataclass(frozen=True)
class Rules:
    """What a decision to leave the baseline needs: a speed-up of at least ``min_speedup`` whose interval
    lies above 1 and covers the median with at least ``min_coverage``."""

    min_speedup: float = MIN_SPEEDUP
    min_coverage: float = MIN_COVERAGE

    @property
    def rounds(self) -> int:
        """The fewest rounds (or samples) whose interval has the coverage a decision needs: 5."""
        return samples_for(self.min_coverage)


@dataclass(frozen=True)
class Evidence:
    """How much faster ``a`` is than ``b``: the ratio of their throughputs and an interval of it."""

    value: float
    low: float
    high: float
    coverage: float
    rounds: int | None  # paired by round over this many rounds; None: from the two cells' own intervals

    @classmethod
    def between(cls, a: Cell, b: Cell, paired: Ratio | None) -> Evidence | None:
        """The ratio paired by round where there is one; else from the two intervals of the medians, the
        ratio's interval [a.low / b.high, a.high / b.low] (above 1 exactly when they do not overlap); None
        without intervals."""
        if paired is not None:
            return cls(paired.value, paired.low, paired.high, paired.coverage, paired.rounds)
        ia, ib = a.interval, b.interval
        if ia is None or ib is None or ib.low <= 0 or b.throughput <= 0:
            return None
        return cls(a.throughput / b.throughput, ia.low / ib.high, ia.high / ib.low, min(ia.coverage, ib.coverage), None)

    def words(self, above: bool) -> str:
        """'1.90x paired by round over 6 rounds, its 95% interval [1.85, 1.95] lies above 1' (or 'does not')."""
        cov = coverage_words(self.coverage)
        if self.rounds is not None:
            verb = "lies above 1" if above else "does not lie above 1"
            return f"{self.value:.2f}x paired by round over {self.rounds} rounds, its {cov} interval " + (
                f"[{self.low:.2f}, {self.high:.2f}] {verb}"
            )
        return f"{self.value:.2f}x, their {cov} intervals " + ("do not overlap" if above else "overlap")


class Outcome(enum.Enum):
    """What the rules made of the leader's lead (or of the baseline's, when it leads)."""

    SWITCH = "switch"  # leave the baseline: decisively faster
    FASTEST = "fastest"  # no switch needed or no baseline: the chosen one leads decisively
    ONLY = "only"  # one configuration measured: nothing to compare it with
    TIE = "tie"  # the interval does not lie above 1
    SMALL = "small"  # significantly faster, but under --min-speedup
    FEW = "few"  # the interval covers less than a decision needs
    UNKNOWN = "unknown"  # no interval to tell


def judge(evidence: Evidence | None, rules: Rules) -> Outcome:
    """The rules, in order: an interval at all; above 1; at least --min-speedup; enough coverage."""
    if evidence is None:
        return Outcome.UNKNOWN
    if not evidence.low > 1:
        return Outcome.TIE
    if evidence.value < rules.min_speedup:
        return Outcome.SMALL
    if evidence.coverage < rules.min_coverage - 1e-12:
        return Outcome.FEW
    return Outcome.SWITCH


@dataclass(frozen=True)
class Decision:
    """The configuration to run at one batch size, and why."""

    chosen: Cell  # what to run: the baseline kept, or the configuration to switch to
    leader: Cell  # the fastest by median (paired by round where it can be)
    against: Cell | None  # what the decisive comparison was against: the baseline, else the next
    evidence: Evidence | None  # chosen (or, when the baseline is kept, the leader) over ``against``
    outcome: Outcome
    rules: Rules
    baseline: Cell | None  # the baseline, where it was measured and is eligible
    tied: tuple[Cell, ...] = ()  # when several qualify and the rules cannot tell them apart: all of them

    @property
    def decided(self) -> bool:
        """A decision to save (``--save-profile``): a switch, or a configuration that leads decisively."""
        return self.outcome in (Outcome.SWITCH, Outcome.FASTEST)

    @property
    def kept(self) -> bool:
        """The baseline is kept."""
        return self.baseline is not None and self.chosen is self.baseline

    def short(self, cell: Cell) -> str:
        """The table's decision row for ``cell``: 'recommended', 'kept: a tie', ..., or ''."""
        if cell is not self.chosen:
            return "fastest, not chosen" if cell is self.leader else ""
        if self.outcome is Outcome.SWITCH:
            return "recommended"
        if self.outcome in (Outcome.FASTEST, Outcome.ONLY):
            return "recommended" if self.outcome is Outcome.FASTEST else "the only one"
        what = "kept" if self.kept else "chosen"
        return f"{what}: {SHORT[self.outcome].format(rules=self.rules)}"

    def why(self, show: Callable[[Cell], str]) -> str:
        """The decision in words; ``show(cell)`` names a configuration with its figure ('cpu fp32 (100.0 img/s)')."""
        return _why(self, show)


SHORT = {
    Outcome.TIE: "no significant difference",
    Outcome.SMALL: "under --min-speedup {rules.min_speedup:g}",
    Outcome.FEW: "too few rounds ({rules.rounds} needed)",
    Outcome.UNKNOWN: "no interval to tell",
}


def decide(
    ranked: Sequence[Cell],
    baseline: Cell | None,
    paired: Callable[[Cell, Cell], Ratio | None],
    rules: Rules = Rules(),
    error: Callable[[Cell], float | None] = lambda cell: cell.error(),
) -> Decision:
    """Decide among ``ranked`` (the eligible configurations at one batch size, fastest first; not empty).

    ``baseline``: the baseline's cell where it is among them (None: nothing to keep); ``paired(a, b)``: a's
    throughput over b's paired by round, or None; ``error``: how far a cell is from the reference (None:
    not measured), for choosing among configurations the rules cannot tell apart."""
    leader = ranked[0]

    def evidence(a: Cell, b: Cell) -> Evidence | None:
        return Evidence.between(a, b, paired(a, b))

    if len(ranked) == 1:
        return Decision(leader, leader, None, None, Outcome.ONLY, rules, baseline)
    if baseline is None or baseline is leader:
        nxt = ranked[1]
        lead = evidence(leader, nxt)
        outcome = judge(lead, rules)
        if outcome is Outcome.SWITCH or (baseline is leader and outcome is Outcome.SMALL):  # no minimum to stay
            return Decision(leader, leader, nxt, lead, Outcome.FASTEST, rules, baseline)
        if baseline is leader:  # a tie keeps what you have
            return Decision(leader, leader, nxt, lead, outcome, rules, baseline)
        tied = (leader, *(c for c in ranked[1:] if judge(evidence(leader, c), rules) is not Outcome.SWITCH))
        return Decision(_most_accurate(tied, error), leader, nxt, lead, outcome, rules, None, tied)
    lead = evidence(leader, baseline)
    outcome = judge(lead, rules)
    if outcome is not Outcome.SWITCH:  # a tie, too small, too few rounds or unknown: keep the baseline
        return Decision(baseline, leader, baseline, lead, outcome, rules, baseline)
    qualified = [c for c in ranked[1:] if c is not baseline and judge(evidence(c, baseline), rules) is Outcome.SWITCH]
    tied = (leader, *(c for c in qualified if judge(evidence(leader, c), rules) is not Outcome.SWITCH))
    chosen = _most_accurate(tied, error)
    return Decision(
        chosen, leader, baseline, evidence(chosen, baseline), outcome, rules, baseline, tied if len(tied) > 1 else ()
    )


def _most_accurate(cells: Sequence[Cell], error: Callable[[Cell], float | None]) -> Cell:
    """The cell with the smallest measured error; the first (the fastest) when none was measured."""
    measured = [(e, i) for i, c in enumerate(cells) if (e := error(c)) is not None]
    return cells[min(measured)[1]] if measured else cells[0]


def _why(d: Decision, show: Callable[[Cell], str]) -> str:
    """The sentence behind a decision: what was compared with what, the evidence and the rule applied."""
    rules, ev = d.rules, d.evidence
    if d.outcome is Outcome.ONLY:
        return f"{show(d.chosen)}, the only configuration measured"
    assert d.against is not None  # there are two or more
    if d.outcome is Outcome.SWITCH:
        assert ev is not None
        text = (
            f"{show(d.chosen)}, faster than the baseline, {show(d.against)}: {ev.words(True)}, at least "
            f"--min-speedup {rules.min_speedup:g}"
        )
        return text + _tie_break(d, show)
    if d.outcome is Outcome.FASTEST:
        assert ev is not None
        who = "the baseline, " if d.kept else ""
        missing = "" if d.baseline is not None else " (no baseline measured to keep)"
        return f"{show(d.chosen)}, {who}the fastest{missing}: against the next, {show(d.against)}, {ev.words(True)}"
    if d.baseline is None:
        return f"no decision (no baseline measured to keep): {_doubt(d, show(d.leader), show(d.against))}" + (
            _tie_break(d, show)
        )
    baseline = f"the baseline, {show(d.baseline)}"
    if d.leader is d.baseline:
        return f"keep the baseline: {_doubt(d, f'{baseline}, the fastest measured,', show(d.against))}"
    return f"keep the baseline: {_doubt(d, f'the fastest measured, {show(d.leader)},', baseline)}"


def _doubt(d: Decision, faster: str, slower: str) -> str:
    """Why the lead of ``faster`` over ``slower`` does not decide, in words (``faster`` may end in a comma: an
    apposition, 'the fastest measured, cpu fp16 (104.0 img/s),')."""
    rules, ev = d.rules, d.evidence
    if d.outcome is Outcome.UNKNOWN or ev is None:
        return (
            f"it is unknown whether {faster} is faster than {slower} (no intervals recorded; --rounds {rules.rounds} "
            "or more would tell)"
        )
    if d.outcome is Outcome.TIE:
        return f"no significant difference between {faster} and {slower}: {ev.words(False)}"
    if d.outcome is Outcome.SMALL:
        return (
            f"{faster} is faster than {slower}, {ev.words(True)}, but {ev.value:.2f}x is under --min-speedup "
            f"{rules.min_speedup:g}"
        )
    needed = f"{rules.rounds} rounds (--rounds {rules.rounds})" if ev.rounds is not None else "more samples each"
    return (
        f"cannot decide whether {faster} is faster than {slower}: {ev.words(True)}, but it covers less than the "
        f"{rules.min_coverage:.0%} a decision needs; {needed} would decide"
    )


def _tie_break(d: Decision, show: Callable[[Cell], str]) -> str:
    if len(d.tied) < 2:
        return ""
    error = d.chosen.error()
    why = f" (max relative error {error:.1e})" if error is not None else " (no error measured: the fastest)"
    if d.baseline is None:
        return f"; {show(d.chosen)} is the most accurate of those the rules cannot tell apart{why}"
    others = ", ".join(show(c) for c in d.tied if c is not d.chosen)
    return f"; tied with {others}, and the most accurate of them{why}"
