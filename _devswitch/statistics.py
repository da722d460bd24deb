"""The statistics behind every figure: median, percentiles, the distribution-free interval of the median."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826  # scales the median absolute deviation to a standard deviation for normal data


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default 'linear' method)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def std_error(values: Sequence[float]) -> float:
    """Standard error of the mean: sample standard deviation / sqrt(n); 0 for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


def median_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """A distribution-free confidence interval of the median, from order statistics: (low, high, coverage).

    The number of samples below the true median is Binomial(n, 1/2) for independent samples from any
    continuous distribution, so [x_(j), x_(n-j+1)] covers the median with probability
    1 - 2 P(B <= j - 1); j is the largest rank that keeps that at or above ``level``. With fewer than 6
    samples no pair reaches 95%: the interval is then the whole range, and ``coverage`` says how sure
    it is (for n = 5, 93.75%). The interval is about the median, not about the mean.
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median_ci of no values")
    tail = (1.0 - level) / 2
    j, cumulative, term = 0, 0.0, 0.5**n if n <= 1000 else None
    if term is None:  # large n: the normal approximation of the binomial is exact enough
        j = max(1, int(math.floor(n / 2 - 1.959964 * math.sqrt(n) / 2)))
        return ordered[j - 1], ordered[n - j], level
    for rank in range(1, n // 2 + 1):  # P(B <= rank - 1), accumulated term by term
        cumulative += term
        term = term * (n - rank + 1) / rank
        if cumulative <= tail:
            j = rank
        else:
            break
    if j == 0:
        return ordered[0], ordered[-1], 1.0 - 2 * 0.5**n
    below = sum(math.comb(n, k) for k in range(j)) / 2**n
    return ordered[j - 1], ordered[n - j], 1.0 - 2 * below


def samples_for(coverage: float, most: int = 1000) -> int:
    """The fewest samples whose interval of the median (``median_ci``) covers it with at least ``coverage``:
    5 for 93.75% (the whole range of 5), 6 for 95%; ``most`` if none up to it does."""
    for n in range(2, most):
        if median_ci(range(n))[2] >= coverage - 1e-12:
            return n
    return most


def jitter(values: Sequence[float]) -> float:
    """Robust spread: 1.4826 x the median absolute deviation."""
    if not values:
        return 0.0
    mid = median(values)
    return MAD_TO_SIGMA * median([abs(v - mid) for v in values])


@dataclass(frozen=True)
class Summary:
    """Throughput and latency statistics of timed iterations of ``batch`` samples each."""

    n: int
    batch: int
    total_s: float
    samples_per_s: float  # median of per-iteration throughput
    samples_per_s_err: float  # std / sqrt(n) of per-iteration throughput
    samples_per_s_jitter: float  # 1.4826 x MAD of per-iteration throughput
    samples_per_s_overall: float  # all samples / all timed seconds (what a stopwatch sees)
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    steps_per_sample: int = 1  # each timed sample is the mean of this many back-to-back steps
    samples_per_s_ci: tuple[float, float] = (0.0, 0.0)  # confidence interval of the median throughput
    ci_coverage: float = 0.0  # the interval's coverage (0.95, or less with fewer than 6 samples)

    @classmethod
    def of(cls, durations: Sequence[float], batch: int, steps_per_sample: int = 1) -> Summary:
        """``durations``: seconds per step, one per timed sample (a sample may average several steps)."""
        if not durations:
            raise ValueError("no timed iterations")
        rates = [batch / d for d in durations]
        total = sum(durations) * steps_per_sample
        ms = [d * 1000 for d in durations]
        low, high, coverage = median_ci(rates)
        return cls(
            len(durations),
            batch,
            total,
            median(rates),
            std_error(rates),
            jitter(rates),
            batch * len(durations) / sum(durations),
            percentile(ms, 50),
            percentile(ms, 90),
            percentile(ms, 99),
            steps_per_sample,
            (low, high),
            coverage,
        )


@dataclass(frozen=True)
class Ratio:
    """A ratio of two throughputs measured in the same rounds: the median of the per-round ratios and the
    distribution-free interval of that median (``coverage`` as in ``median_ci``), over ``rounds`` pairs."""

    value: float
    low: float
    high: float
    coverage: float
    rounds: int


def round_medians(rounds: Sequence[int], rates: Sequence[float]) -> dict[int, float]:
    """Round number -> the median of the rates timed in that round."""
    by_round: dict[int, list[float]] = {}
    for number, rate in zip(rounds, rates, strict=False):  # from a result file: may not match, as before
        by_round.setdefault(number, []).append(rate)
    return {number: median(values) for number, values in by_round.items()}


def paired_ratio(numerator: dict[int, float], denominator: dict[int, float]) -> Ratio | None:
    """``numerator / denominator`` paired by round (each a round -> median rate mapping): a burst or a drift
    that slows one round slows both sides of its pair, so it moves the ratio far less than either figure.
    None with fewer than 2 rounds in common (nothing to pair: the caller falls back to unpaired figures)."""
    common = sorted(set(numerator) & set(denominator))
    ratios = [numerator[r] / denominator[r] for r in common if denominator[r] > 0]
    if len(ratios) < 2:
        return None
    low, high, coverage = median_ci(ratios)
    return Ratio(median(ratios), low, high, coverage, len(ratios))
