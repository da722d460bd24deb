"""``devswitch tune``'s race, as pure functions of the rounds measured so far (no process, no clock).

Configurations take turns in rounds as compare's do. After each round the leader is the survivor with the
highest median rate; a survivor whose speed-up paired by round against the leader has an interval entirely
below 1 is dropped, with that interval as its reason (as F-race and successive halving drop). The race ends
when the leader leads the runner-up decisively under ``decision.py``'s rules, when one survivor is left, or
when another round would not fit in the budget (predicted from the last round's duration). The rules that
decide are ``decision.judge``'s: this module writes no second rule set.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Generic, TypeVar

from ..statistics import paired_ratio
from .decision import Evidence, Outcome, Rules, judge

K = TypeVar("K")  # a configuration (anything hashable that names one)

Rates = Mapping[int, float]  # round -> the configuration's rate in it (higher is faster)
DEFAULT_RULES = Rules()


@dataclass(frozen=True)
class Drop(Generic[K]):
    """A configuration out of the race, after which round, and why (its interval, or its error)."""

    config: K
    round: int
    reason: str


class Stop(enum.Enum):
    """Why the race ended (or ``GO_ON``: it has not)."""

    GO_ON = "go on"
    DECIDED = "the leader leads decisively"
    ALONE = "one configuration left"
    BUDGET = "another round would not fit in the budget"
    ROUNDS = "the most rounds were taken"


def evidence(a: Rates, b: Rates) -> Evidence | None:
    """How much faster ``a`` is than ``b``, paired by round (None with fewer than 2 rounds in common)."""
    ratio = paired_ratio(dict(a), dict(b))
    if ratio is None:
        return None
    return Evidence(ratio.value, ratio.low, ratio.high, ratio.coverage, ratio.rounds)


def ranked(rates: Mapping[K, Rates], alive: Sequence[K]) -> list[K]:
    """The survivors, fastest first by their median rate (a survivor without rates last, in its order)."""
    return sorted(alive, key=lambda k: -median(rates[k].values()) if rates.get(k) else float("inf"))


def interval_words(ev: Evidence) -> str:
    """'0.61x [0.55, 0.66]' (a ratio under 0.1 with two significant digits: '0.0012x [0.0011, 0.0013]')."""

    def show(v: float) -> str:
        return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.2g}"

    return f"{show(ev.value)}x [{show(ev.low)}, {show(ev.high)}]"


def drops(
    rates: Mapping[K, Rates], alive: Sequence[K], round_no: int, baseline: K | None = None, rules: Rules = DEFAULT_RULES
) -> list[Drop[K]]:
    """The survivors whose speed-up against the leader has an interval entirely below 1 after ``round_no``.
    The ``baseline`` (what a tie keeps) only once that interval has the coverage a decision needs, so that the
    decision at the end can weigh the winner against it."""
    order = ranked(rates, alive)
    if len(order) < 2:
        return []
    leader, out = order[0], []
    for k in order[1:]:
        ev = evidence(rates.get(k, {}), rates[leader])
        if ev is not None and ev.high < 1 and (k != baseline or ev.coverage >= rules.min_coverage - 1e-12):
            out.append(Drop(k, round_no, f"dropped after round {round_no}: {interval_words(ev)} of the leader"))
    return out


def accuracy_drop(config: K, round_no: int, what: str, value: float, limit: float, option: str) -> Drop[K] | None:
    """The accuracy guard: ``config`` over ``limit`` cannot win (None when within it)."""
    if value <= limit:
        return None
    return Drop(config, round_no, f"dropped after round {round_no}: {what} {value:.2g} over {option} {limit:g}")


def lead(rates: Mapping[K, Rates], alive: Sequence[K], rules: Rules) -> tuple[K | None, K | None, Outcome]:
    """The leader, the runner-up and what the rules make of the leader's lead over it."""
    order = ranked(rates, alive)
    if not order:
        return None, None, Outcome.UNKNOWN
    if len(order) == 1:
        return order[0], None, Outcome.ONLY
    ev = evidence(rates.get(order[0], {}), rates.get(order[1], {}))
    return order[0], order[1], judge(ev, rules)


def fits(elapsed_s: float, last_round_s: float, budget_s: float | None, finish_s: float = 0.0) -> bool:
    """Whether another round (as long as the last) and the finish still fit in the budget (None: no budget)."""
    return budget_s is None or elapsed_s + last_round_s + finish_s <= budget_s


def stop(
    rates: Mapping[K, Rates],
    alive: Sequence[K],
    rules: Rules,
    round_no: int,
    max_rounds: int,
    elapsed_s: float,
    last_round_s: float,
    budget_s: float | None,
    finish_s: float = 0.0,
) -> Stop:
    """Whether the race ends after ``round_no``, and why: decided, alone, out of budget or of rounds."""
    if len(alive) <= 1:
        return Stop.ALONE
    if lead(rates, alive, rules)[2] is Outcome.SWITCH:
        return Stop.DECIDED
    if round_no >= max_rounds:
        return Stop.ROUNDS
    if not fits(elapsed_s, last_round_s, budget_s, finish_s):
        return Stop.BUDGET
    return Stop.GO_ON
