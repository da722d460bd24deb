"""The timed loop of one batch size: first call, warm-up, then timed samples taken in one or several rounds.

``benchmark`` runs a ``Measure`` per batch size. Taken in one go (one round), a measure is what it always
was. Taken in rounds, ``devswitch compare`` lets each configuration's worker time a share of its samples
in turn (A B C A B C ...), so that a burst or a drift of the machine lands on every configuration alike;
each sample keeps its round and its start time, so that figures can be paired by round afterwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .energy import Meter

GROUP_BELOW_S = 0.01  # steps shorter than this are timed in groups (their own duration is mostly noise) ...
MIN_SAMPLE_S = 0.05  # ... of k steps, so that each timed sample lasts at least this long
REWARM_BELOW_S = 0.25  # rounds: a sample shorter than this gets one untimed step at the start of each round


class FinishEarly(Exception):
    """Raised by a ``turn`` told "finish" where it expected a round (``devswitch tune`` ended the race early)."""


def shares(total: int, rounds: int) -> list[int]:
    """``total`` timed samples split over ``rounds`` as evenly as can be (the first rounds take one more)."""
    if rounds < 1 or total < rounds:
        raise ValueError(f"{total} samples cannot be split over {rounds} rounds")
    base, extra = divmod(total, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


@dataclass
class Measure:
    """One batch size: its step, how it was warmed, and every timed sample so far.

    ``seconds[i]`` is the mean duration of one step in sample ``i`` (a sample is ``k`` back-to-back
    steps), ``starts[i]`` its start in seconds since ``origin`` (wall-clock time, so that the samples of
    several processes line up), ``rounds[i]`` the round it was taken in.
    """

    batch: int
    step: Callable[[], object]
    clock: Callable[[], float] = time.perf_counter
    origin: float = field(default_factory=time.time)
    min_sample_s: float = MIN_SAMPLE_S
    first_s: float | None = None
    warm_s: float | None = None
    warmup: int = 0
    k: int = 1
    seconds: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    readings: list = field(default_factory=list)  # one energy reading per round

    def warm(self, warmup: int) -> None:
        """The first call (tracing and compiling, timed apart), then ``warmup`` untimed steps, which also
        calibrate the group size: steps under 10 ms are timed in groups of k lasting >= 50 ms (like
        timeit's autorange), so that brief disturbances average out and the median agrees with a stopwatch."""
        clock = self.clock
        t0 = clock()
        self.step()
        self.first_s = clock() - t0
        t0 = clock()
        for _ in range(warmup):
            self.step()
        self.warm_s, self.warmup = clock() - t0, warmup
        per_step = self.warm_s / warmup if warmup else self.first_s
        small = 0 < per_step < GROUP_BELOW_S
        self.k = max(1, math.ceil(self.min_sample_s / per_step)) if small else 1

    def take(
        self,
        samples: int,
        min_time: float = 0.0,
        round_number: int = 0,
        meter: Meter | None = None,
        rewarm: bool = False,
    ) -> None:
        """Time ``samples`` samples (and keep going until ``min_time`` seconds have passed).

        ``rewarm``: one untimed step first, for a round that follows other processes' work (caches and
        clocks have moved on). ``meter`` (start/stop) brackets exactly the timed samples.
        """
        clock, step, k = self.clock, self.step, self.k
        if rewarm:
            step()
        taken = 0
        if meter is not None:
            meter.start()
        try:
            start = clock()
            while taken < samples or (clock() - start) < min_time:
                began = time.time()
                t = clock()
                for _ in range(k):
                    step()
                self.seconds.append((clock() - t) / k)
                self.starts.append(began - self.origin)
                self.rounds.append(round_number)
                taken += 1
        finally:
            if meter is not None:
                reading = meter.stop()  # also after a failure: the meter's thread stops; the reading is kept
                if taken:
                    self.readings.append(reading)

    def rewarm_needed(self) -> bool:
        """Whether a round should start with one untimed step: for short samples, where caches and clocks
        left cold by the other processes' turns would weigh on the first one; a sample of REWARM_BELOW_S or
        longer outweighs them, and a step that long would cost more than it buys."""
        per_step = self.warm_s / self.warmup if self.warmup and self.warm_s else (self.first_s or 0.0)
        return per_step * self.k < REWARM_BELOW_S

    def samples(self) -> dict:
        """The raw samples, as a record carries them."""
        return {"round": list(self.rounds), "start_s": list(self.starts), "seconds_per_step": list(self.seconds)}
