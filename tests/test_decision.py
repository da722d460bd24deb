"""A recommendation is a decision (issue 27 item 0): a tie keeps the baseline, a switch needs about 95%
coverage and at least --min-speedup, and the line, the table and --save-profile follow the same rules."""

from __future__ import annotations

import random

import pytest
from errorparts import parts

from _devswitch.compare import Cell, ResultSet, recommend, recommendation_lines
from _devswitch.compare.decision import MIN_COVERAGE, Outcome, Rules
from _devswitch.compare.resultset import Model
from _devswitch.statistics import median_ci, samples_for


def _cell(precision: str, rates_by_round: dict[int, list[float]], error: float | None = None) -> Cell:
    """A measured cell whose samples were timed in the given rounds (batch 10)."""
    rounds = [r for r, rates in rates_by_round.items() for _ in rates]
    everything = [rate for rates in rates_by_round.values() for rate in rates]
    low, high, coverage = median_ci(everything)
    record = {
        "metrics": {"throughput": {"value": sorted(everything)[len(everything) // 2], "ci": [low, high],
                                   "ci_coverage": coverage}},
        "samples": {"round": rounds, "start_s": list(range(len(rounds))),
                    "seconds_per_step": [10 / rate for rate in everything]},
        "accuracy": None if error is None else {"status": "ok", "max_rel_error": error, "samples": 8},
    }
    return Cell("tensorflow", "cpu", precision, 10, "ok", precision, record)


def _results(*cells: Cell, rounds: int, **options) -> ResultSet:
    return ResultSet(options={"batch_sizes": [10], "backends": ["tensorflow"], "target": "mlp",
                              "baseline": "tensorflow cpu fp32", "rounds": rounds, **options},
                     model=Model("mlp", "m", unit="samples"), cells=cells)


def _by_round(rates: list[float], per_round: int = 3) -> dict[int, list[float]]:
    return {r: [rate] * per_round for r, rate in enumerate(rates)}


def test_the_coverage_a_decision_needs_is_that_of_five_rounds():
    """3 rounds' range covers 75%, 5 rounds' 93.75% ("about 95%"), and from 6 rounds the order-statistic
    interval covers 95% or more; the rules ask for 5 rounds."""
    assert median_ci([1.0, 2.0, 3.0])[2] == pytest.approx(0.75)
    assert MIN_COVERAGE == pytest.approx(median_ci(range(5))[2]) == pytest.approx(0.9375)
    assert samples_for(MIN_COVERAGE) == 5 and samples_for(0.95) == 6 and Rules().rounds == 5
    assert all(median_ci(range(n))[2] >= 0.95 for n in range(6, 60))


@pytest.mark.parametrize("rounds", [3, 5, 6, 10])
def test_an_a_a_pair_keeps_the_baseline_whatever_its_medians_say(rounds):
    """Two columns of the same computation (their per-round rates differ by 1% noise): over 200 seeded runs,
    the recommendation never leaves the baseline, also when the other's median is the higher."""
    switched, higher = 0, 0
    for seed in range(200):
        rng = random.Random(seed)
        base = [100.0 * (1 + 0.3 * rng.random()) for _ in range(rounds)]  # a machine that drifts, round by round
        a = {r: [rate * (1 + rng.gauss(0, 0.01)) for _ in range(3)] for r, rate in enumerate(base)}
        b = {r: [rate * (1 + rng.gauss(0, 0.01)) for _ in range(3)] for r, rate in enumerate(base)}
        results = _results(_cell("fp32", a), _cell("fp16", b), rounds=rounds)
        (pick,) = recommend(results)
        higher += results.cells[1].throughput > results.cells[0].throughput
        switched += pick.best is not results.cells[0]
    assert switched == 0 and higher > 50  # the other led by median often enough to have been picked before


def test_three_rounds_cannot_decide_even_when_every_ratio_is_above_1():
    """The issue's A/A run (1.04x over 3 rounds, its 75% interval [1.00, 1.07] above 1) keeps the baseline;
    so does 1.08x [1.06, 1.10], and its line says it cannot decide and that 5 rounds would."""
    issue = _results(_cell("fp32", _by_round([100.0, 100.0, 100.0])),
                     _cell("fp16", _by_round([100.5, 104.0, 107.0])), rounds=3)
    assert recommend(issue)[0].best is issue.cells[0]
    results = _results(_cell("fp32", _by_round([100.0, 100.0, 100.0])),
                       _cell("fp16", _by_round([106.0, 108.0, 110.0])), rounds=3)
    (pick,) = recommend(results)
    assert pick.best is results.cells[0] and pick.decision.outcome is Outcome.FEW and not pick.decision.decided
    (line,) = recommendation_lines(results)
    assert line.startswith("Recommendation, batch 10: keep the baseline: cannot decide whether the fastest "
                           "measured, cpu fp16 (108.0 samples/s), is faster than the baseline, cpu fp32")
    assert "its 75% interval [1.06, 1.10] lies above 1, but it covers less than the 94% a decision needs; 5 rounds " \
           "(--rounds 5) would decide" in line
    assert 'DEVSWITCH_FLAGS="device=cpu,precision=fp32"' in line


def test_four_rounds_of_a_real_2x_are_still_too_few_and_five_decide():
    four = _results(_cell("fp32", _by_round([100.0] * 4)), _cell("bf16", _by_round([200.0] * 4)), rounds=4)
    assert recommend(four)[0].decision.outcome is Outcome.FEW and recommend(four)[0].best.precision == "fp32"
    five = _results(_cell("fp32", _by_round([100.0, 90, 110, 95, 105])),
                    _cell("bf16", _by_round([200.0, 185, 215, 190, 212])), rounds=5)
    (pick,) = recommend(five)
    assert pick.best.precision == "bf16" and pick.decision.outcome is Outcome.SWITCH and pick.decision.decided
    (line,) = recommendation_lines(five)
    assert "Recommendation, batch 10: cpu bf16 (" in line and ", faster than the baseline, cpu fp32 (" in line
    assert "paired by round over 5 rounds, its 94% interval" in line and "lies above 1, at least " \
           "--min-speedup 1.05" in line


def test_a_significant_speed_up_under_min_speedup_is_reported_but_keeps_the_baseline():
    """1.02x in each of 6 rounds is significant (its 95% interval lies above 1) but under 1.05: kept;
    with --min-speedup 1.01 the same measurements switch."""
    cells = (_cell("fp32", _by_round([100.0, 120, 90, 110, 95, 105])),
             _cell("fp16", _by_round([102.0, 122.4, 91.8, 112.2, 96.9, 107.1])))
    (pick,) = recommend(_results(*cells, rounds=6))
    assert pick.best.precision == "fp32" and pick.decision.outcome is Outcome.SMALL
    (line,) = recommendation_lines(_results(*cells, rounds=6))
    assert "keep the baseline: the fastest measured, cpu fp16 (" in line and "1.02x paired by round over 6 rounds, its 95% interval " \
           "[1.02, 1.02] lies above 1, but 1.02x is under --min-speedup 1.05" in line
    (lower,) = recommend(_results(*cells, rounds=6, min_speedup=1.01))
    assert lower.best.precision == "fp16" and lower.decision.outcome is Outcome.SWITCH


def test_among_configurations_tied_with_the_fastest_the_most_accurate_is_chosen():
    """fp16 and bf16 both beat fp32 2x decisively but cannot be told apart: the more accurate one (fp16,
    though its median is lower) is recommended, and the line says why."""
    base = _cell("fp32", _by_round([100.0, 90, 110, 95, 105, 100]), error=1e-7)
    bf16 = _cell("bf16", _by_round([205.0, 181, 222, 190, 209, 200]), error=3e-3)
    fp16 = _cell("fp16", _by_round([200.0, 184, 219, 192, 206, 199]), error=3e-4)
    results = _results(base, bf16, fp16, rounds=6)
    (pick,) = recommend(results)
    assert pick.decision.leader is bf16 and pick.best is fp16 and pick.decision.outcome is Outcome.SWITCH
    (line,) = recommendation_lines(results)
    assert "cpu fp16 (" in line.split(":")[1] and "tied with cpu bf16 (" in line
    assert "the most accurate of them (max relative error 3.0e-04)" in line


def test_without_the_baseline_a_tie_is_no_decision():
    """The baseline failed: two tied configurations are not a decision (nothing is saved), and the more
    accurate one is shown."""
    results = _results(Cell("tensorflow", "cpu", "fp32", 10, "failed: OOM"),
                       _cell("bf16", _by_round([101.0, 99, 100, 102, 98, 100]), error=3e-3),
                       _cell("fp16", _by_round([100.0, 100, 101, 101, 99, 99]), error=3e-4), rounds=6)
    (pick,) = recommend(results)
    assert pick.decision.baseline is None and not pick.decision.decided and pick.best.precision == "fp16"
    (line,) = recommendation_lines(results)
    assert "no decision (no baseline measured to keep): no significant difference between" in line


def test_the_table_marks_the_decision_by_the_same_rules():
    from _devswitch.render.compare import render_markdown

    kept = _results(_cell("fp32", _by_round([100.0] * 3)), _cell("fp16", _by_round([106.0, 108.0, 110.0])),
                    rounds=3)
    assert "| decision | kept: too few rounds (5 needed) | fastest, not chosen |" in render_markdown(kept)
    moved = _results(_cell("fp32", _by_round([100.0, 90, 110, 95, 105])),
                     _cell("bf16", _by_round([200.0, 185, 215, 190, 212])), rounds=5)
    assert "| decision |  | recommended |" in render_markdown(moved)


def test_save_profile_saves_a_real_2x_over_5_rounds_and_nothing_from_a_tie(tmp_path, capsys):
    from _devswitch.cli.compare import save_winner
    from _devswitch.config import resolve

    tie = _results(_cell("fp32", _by_round([100.0] * 3)), _cell("fp16", _by_round([106.0, 108.0, 110.0])),
                   rounds=3)
    assert save_winner(tie, "fast", tmp_path / ".devswitchrc")
    err = capsys.readouterr().err
    [note] = [line for line in err.splitlines() if line.startswith("devswitch: profile 'fast' not saved: ")]
    assert all(part in note for part in ("cpu fp16", "--rounds 5", "--save-profile-anyway")), note  # why, the fixes
    assert not (tmp_path / ".devswitchrc").exists()
    real = _results(_cell("fp32", _by_round([100.0, 90, 110, 95, 105])),
                    _cell("bf16", _by_round([200.0, 185, 215, 190, 212])), rounds=5)
    assert save_winner(real, "fast", tmp_path / ".devswitchrc")
    assert "saved profile 'fast' (device=cpu, precision=bf16: recommended at batch 10, the largest: faster " \
           "than the baseline, decisively)" in capsys.readouterr().err
    assert "cpu bf16, recommended at batch 10 (200.0 samples/s, 2.00x the baseline, cpu fp32)" in \
        (tmp_path / ".devswitchrc").read_text()
    config = resolve({"DEVSWITCH_PROFILE": "fast"}, tmp_path / "home", tmp_path)
    assert (config.device, config.precision) == ("cpu", "bf16")


@pytest.mark.parametrize("text, ok", [("1.05", True), ("1", True), ("0.9", False), ("fast", False), ("nan", False)])
def test_min_speedup_is_a_number_of_at_least_1_recorded_in_the_options(text, ok):
    from _devswitch.cli import parse_args
    from _devswitch.cli.compare_options import options_from_args
    from _devswitch.errors import UsageError

    args = parse_args(["compare", "mlp", "--devices", "cpu", "--precisions", "fp32", "--backends", "tensorflow",
                       "--min-speedup", text])
    if ok:
        assert options_from_args(args).min_speedup == float(text)
    else:
        with pytest.raises(UsageError) as caught:
            options_from_args(args)
        parts(caught, UsageError, named=["--min-speedup", f"'{text}'", ">= 1"], fix="--min-speedup 1")
