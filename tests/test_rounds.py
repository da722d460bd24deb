"""Rounds taken in turn: the schedule, the samples' rounds and start times, the speed-up paired by round."""

from __future__ import annotations

import pytest

import devswitch
from _devswitch.compare import Cell, ResultSet
from _devswitch.compare.resultset import Model
from _devswitch.measure import shares
from _devswitch.statistics import paired_ratio, round_medians


pytestmark = pytest.mark.usefixtures("on_cpu")


def test_samples_are_split_over_rounds_as_evenly_as_can_be():
    assert shares(20, 6) == [4, 4, 3, 3, 3, 3] and sum(shares(20, 6)) == 20
    assert shares(3, 3) == [1, 1, 1] and shares(7, 1) == [7]
    with pytest.raises(ValueError):
        shares(2, 3)


def test_benchmark_in_rounds_takes_turns_and_keeps_each_samples_round_and_start():
    phases = []
    records = devswitch.benchmark("mlp", batch_sizes=(1, 4), warmup=1, iterations=7, rounds=3, turn=phases.append,
                                  peak_probe=False, min_sample_s=0)
    assert phases == ["warm", "round 1", "round 2", "round 3", "finish"]
    for record in records:
        samples = record.to_dict()["samples"]
        assert record.status == "ok" and record.rounds == 3 and record.summary.n == 7
        assert samples["round"] == [0, 0, 0, 1, 1, 2, 2]  # 7 samples over 3 rounds: 3, 2, 2
        starts = samples["start_s"]
        assert starts == sorted(starts) and starts[0] >= 0 and len(samples["seconds_per_step"]) == 7
    # batch 1's samples of round 2 come after batch 4's of round 1: the rounds alternate over batch sizes too
    b1, b4 = (r.to_dict()["samples"] for r in records)
    assert b1["start_s"][3] > b4["start_s"][2]


def test_an_interrupt_between_rounds_keeps_the_rounds_measured():
    seen = []

    def turn(phase):
        seen.append(phase)
        if phase == "round 2":
            raise KeyboardInterrupt

    records = []
    with pytest.raises(KeyboardInterrupt):
        devswitch.benchmark("mlp", batch_sizes=(2,), warmup=1, iterations=4, rounds=2, turn=turn, peak_probe=False,
                            predict_baseline=False, min_sample_s=0, on_record=records.append)
    (record,) = records
    assert record.status == "ok" and record.rounds == 1 and record.summary.n == 2
    assert record.to_dict()["samples"]["round"] == [0, 0]


def test_the_speedup_is_paired_by_round():
    # a burst in round 1 slows both columns alike: their per-round ratio stays 2
    fast = {0: 200.0, 1: 100.0, 2: 210.0}
    slow = {0: 100.0, 1: 50.0, 2: 105.0}
    ratio = paired_ratio(fast, slow)
    assert ratio.value == pytest.approx(2.0) and ratio.low == pytest.approx(2.0) and ratio.high == pytest.approx(2.0)
    assert ratio.rounds == 3 and ratio.coverage == pytest.approx(0.75)  # 3 pairs: the whole range, 75%
    assert paired_ratio({0: 1.0}, {0: 2.0}) is None  # one round: nothing to pair
    assert round_medians([0, 0, 0, 1], [1.0, 3.0, 2.0, 5.0]) == {0: 2.0, 1: 5.0}


def _cell(precision: str, rates_by_round: dict[int, list[float]], batch: int = 10) -> Cell:
    rounds = [r for r, rates in rates_by_round.items() for _ in rates]
    seconds = [batch / rate for rates in rates_by_round.values() for rate in rates]
    everything = [rate for rates in rates_by_round.values() for rate in rates]
    record = {"metrics": {"throughput": {"value": sorted(everything)[len(everything) // 2], "ci": None}},
              "samples": {"round": rounds, "start_s": list(range(len(rounds))), "seconds_per_step": seconds}}
    return Cell("tensorflow", "cpu", precision, batch, "ok", precision, record)


def test_a_result_set_pairs_its_cells_by_round_and_the_recommendation_says_so():
    from _devswitch.compare import recommend, recommendation_lines

    noisy = {r: [100.0 * (1 + 0.5 * (r % 2))] * 3 for r in range(6)}           # rounds 1, 3, 5 are 1.5x faster
    double = {r: [200.0 * (1 + 0.5 * (r % 2)) * (1 + 0.01 * r)] * 3 for r in range(6)}
    results = ResultSet(options={"batch_sizes": [10], "backends": ["tensorflow"], "baseline": "tensorflow cpu fp32",
                                 "rounds": 6}, model=Model("m"),
                        cells=(_cell("fp32", noisy), _cell("bf16", double)))
    bf16 = results.cells[1]
    ratio = results.speedup_interval(bf16)
    assert 2.0 <= ratio.low <= ratio.value <= ratio.high <= 2.11 and ratio.rounds == 6
    assert ratio.coverage > 0.95  # 6 pairs: the whole range covers the median with 1 - 2/64
    (pick,) = recommend(results)
    paired = results.paired(bf16, results.cells[0])
    assert pick.best is bf16 and pick.decision.decided and pick.decision.evidence.value == paired.value
    assert (pick.decision.evidence.low, pick.decision.evidence.rounds) == (paired.low, 6)
    (line,) = recommendation_lines(results)
    assert "paired by round over 6 rounds, its 95% interval" in line and "lies above 1" in line
    doc = results.to_json()
    assert doc["cells"][1]["speedup"]["ci"] == [ratio.low, ratio.high] and doc["cells"][0]["speedup"]["value"] == 1


@pytest.mark.subprocess
def test_a_real_compare_interleaves_its_configurations_round_by_round(shared_compare):
    """The shared compare (3 iterations, so 3 rounds): the start times of its two CPU columns alternate."""
    import json

    doc = json.loads((shared_compare.out / "results.json").read_text())
    assert doc["options"]["rounds"] == 3
    spans = {}  # (precision, round) -> (first start, last start), over both batch sizes
    for cell in doc["cells"]:
        if cell["status"] != "ok":
            continue
        samples = cell["record"]["samples"]
        for number, start in zip(samples["round"], samples["start_s"]):
            low, high = spans.get((cell["precision"], number), (start, start))
            spans[(cell["precision"], number)] = (min(low, start), max(high, start))
    order = sorted(spans, key=lambda key: spans[key][0])
    assert order == [("fp32", 0), ("fp16", 0), ("fp32", 1), ("fp16", 1), ("fp32", 2), ("fp16", 2)], order
    for earlier, later in zip(order, order[1:]):  # a turn ends before the next one starts
        assert spans[earlier][1] < spans[later][0]
    speedup = next(c["speedup"] for c in doc["cells"] if c["precision"] == "fp16" and c["batch"] == 8)
    assert speedup["rounds"] == 3 and speedup["ci"][0] <= speedup["value"] <= speedup["ci"][1]


def test_the_recommendation_follows_the_rounds_when_pooled_medians_disagree():
    """Pooled, A's median is higher (it also ran three quick rounds that B, interrupted, did not); round by
    round B is 1.1x faster: B leads, and significantly."""
    a = {r: [100.0 if 2 <= r <= 5 else 300.0] * 3 for r in range(9)}
    b = {r: [110.0 if 2 <= r <= 5 else 330.0] * 3 for r in range(6)}
    from _devswitch.compare import recommend

    results = ResultSet(options={"batch_sizes": [10], "backends": ["tensorflow"], "baseline": "tensorflow cpu fp32",
                                 "rounds": 6}, model=Model("m"), cells=(_cell("fp32", a), _cell("bf16", b)))
    assert results.cells[0].metric("throughput") > results.cells[1].metric("throughput")  # pooled: A "wins"
    (pick,) = recommend(results)
    assert pick.best.precision == "bf16" and pick.decision.evidence.value == pytest.approx(1.1)
    assert pick.decision.decided
