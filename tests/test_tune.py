"""devswitch tune (issue 27 item 2): the race as pure functions of synthetic rounds, then real tunes on this CPU
(a factory and a script) whose results.json ``devswitch report`` reads as a compare's."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from errorparts import parts

from _devswitch.cli import main
from _devswitch.cli.tune import parse_budget
from _devswitch.compare import Cell, ResultSet, race
from _devswitch.compare.decision import Rules
from _devswitch.compare.tune import RaceLog, TuneOptions, final_loss, loss_change, marked, winner_lines
from _devswitch.errors import UsageError
from _devswitch.statistics import median_ci

FAST = {1: 100.0, 2: 102.0, 3: 98.0, 4: 101.0, 5: 99.0, 6: 100.0}
SLOW = {1: 60.0, 2: 62.0, 3: 59.0, 4: 61.0, 5: 60.5, 6: 60.0}  # about 0.6x of FAST in every round
TWIN = {1: 99.0, 2: 103.0, 3: 97.0, 4: 102.0, 5: 100.0, 6: 99.5}  # FAST's A/A twin


def upto(rates: dict[int, float], n: int) -> dict[int, float]:
    return {r: v for r, v in rates.items() if r <= n}


def test_a_configuration_whose_interval_against_the_leader_lies_below_1_is_dropped_with_it():
    """After round 3, SLOW's paired ratio to the leader is ~0.6x with its whole interval below 1: dropped, and
    the reason is the interval; FAST's twin, whose interval straddles 1, stays."""
    rates = {"fast": upto(FAST, 3), "slow": upto(SLOW, 3), "twin": upto(TWIN, 3)}
    dropped = race.drops(rates, ["fast", "slow", "twin"], 3)
    assert [d.config for d in dropped] == ["slow"]
    m = re.fullmatch(r"dropped after round 3: (\d\.\d\d)x \[(\d\.\d\d), (\d\.\d\d)\] of the leader", dropped[0].reason)
    assert m is not None, dropped[0].reason
    value, low, high = map(float, m.groups())
    assert low <= value <= high < 1 and value == pytest.approx(0.6, abs=0.03)


def test_the_baseline_is_dropped_only_once_its_interval_has_a_decisions_coverage():
    """What a tie keeps stays in the race until the decision at the end could weigh the winner against it:
    SLOW as the baseline survives round 3 (75% coverage) and is dropped after round 5 (94%)."""
    three = {"fast": upto(FAST, 3), "slow": upto(SLOW, 3)}
    assert race.drops(three, ["fast", "slow"], 3, baseline="slow") == []
    five = {"fast": upto(FAST, 5), "slow": upto(SLOW, 5)}
    assert [d.config for d in race.drops(five, ["fast", "slow"], 5, baseline="slow")] == ["slow"]


def test_nothing_is_dropped_after_one_round_there_is_no_interval_yet():
    """One round gives no paired interval: even a configuration 0.6x of the leader stays until the second."""
    assert race.drops({"fast": upto(FAST, 1), "slow": upto(SLOW, 1)}, ["fast", "slow"], 1) == []


def test_the_race_stops_when_the_leader_leads_decisively_under_the_decision_rules():
    """With 5 rounds (the coverage a decision needs) FAST leads SLOW decisively: DECIDED; with 3 rounds the
    same lead covers 75% only and the race goes on; an A/A pair never decides."""
    rules = Rules()
    alive = ["fast", "slow"]
    five = {"fast": upto(FAST, 5), "slow": upto(SLOW, 5)}
    three = {"fast": upto(FAST, 3), "slow": upto(SLOW, 3)}
    assert race.stop(five, alive, rules, 5, 20, 10.0, 1.0, 60.0) is race.Stop.DECIDED
    assert race.stop(three, alive, rules, 3, 20, 10.0, 1.0, 60.0) is race.Stop.GO_ON
    twins = {"fast": FAST, "twin": TWIN}
    assert race.stop(twins, ["fast", "twin"], rules, 6, 20, 10.0, 1.0, 60.0) is race.Stop.GO_ON
    assert race.lead(twins, ["fast", "twin"], rules)[2] is not race.Outcome.SWITCH


def test_the_race_stops_when_another_round_would_not_fit_in_the_budget():
    """The next round is predicted as long as the last: 50 s spent, 12 s rounds, 60 s budget: it stops; 6 s
    rounds with a 6 s finish too; 6 s rounds alone go on; without a budget it never stops so."""
    twins, alive, rules = {"a": upto(FAST, 2), "b": upto(TWIN, 2)}, ["a", "b"], Rules()
    assert race.stop(twins, alive, rules, 2, 20, 50.0, 12.0, 60.0) is race.Stop.BUDGET
    assert race.stop(twins, alive, rules, 2, 20, 50.0, 6.0, 60.0, finish_s=6.0) is race.Stop.BUDGET
    assert race.stop(twins, alive, rules, 2, 20, 50.0, 6.0, 60.0) is race.Stop.GO_ON
    assert race.stop(twins, alive, rules, 2, 20, 500.0, 12.0, None) is race.Stop.GO_ON
    assert race.stop(twins, alive, rules, 20, 20, 5.0, 1.0, 60.0) is race.Stop.ROUNDS
    assert race.stop(twins, ["a"], rules, 2, 20, 5.0, 1.0, 60.0) is race.Stop.ALONE


def test_the_accuracy_guard_drops_a_configuration_over_the_limit_with_its_figure():
    """Over --max-error (or --max-loss-change) a configuration cannot win: dropped with its figure and the limit."""
    drop = race.accuracy_drop("fp16", 4, "max relative error", 0.031, 0.01, "--max-error")
    assert drop is not None and drop.reason == "dropped after round 4: max relative error 0.031 over --max-error 0.01"
    assert race.accuracy_drop("fp32", 4, "max relative error", 0.0, 0.01, "--max-error") is None


def test_the_race_log_drops_notes_each_round_and_runs_to_the_last_round_while_a_pair_ties():
    """RaceLog.after_round: SLOW dropped after round 2 (its interval below 1), the round noted with its
    survivors and leader; by round 5 FAST against TWIN is still a tie, so the race goes on to the rounds' end."""
    log = RaceLog(TuneOptions(budget_s=None, max_rounds=6))
    alive = ["fast", "slow", "twin"]
    for n in range(1, 7):
        log.rates.update({k: upto(v, n) for k, v in {"fast": FAST, "slow": SLOW, "twin": TWIN}.items()})
        log.after_round(n, 1.0, [c for c in alive if c not in log.dropped], str)  # type: ignore[arg-type]
        if log.stop is not race.Stop.GO_ON:
            break
    assert log.dropped["slow"].round == 2  # type: ignore[index]
    assert log.rounds[1]["dropped"] == {"slow": log.dropped["slow"].reason}  # type: ignore[index]
    assert log.rounds[-1]["survivors"] == ["fast", "twin"] and log.rounds[-1]["leader"] in ("fast", "twin")
    assert log.stop is race.Stop.ROUNDS and len(log.rounds) == 6


def test_budgets_read_as_seconds_and_a_bad_one_is_a_usage_error():
    assert [parse_budget(t) for t in ("90s", "5m", "1h", "120", "1.5min")] == [90, 300, 3600, 120, 90]
    with pytest.raises(UsageError) as caught:
        parse_budget("soon")
    parts(caught, UsageError, named=["--budget", "'soon'"], fix="90s")


def test_a_scripts_final_loss_is_its_last_fits_last_epoch_and_its_change_is_relative():
    calls = [{"kind": "fit", "epochs": [{"loss": 2.0}, {"loss": 1.0}]}, {"kind": "evaluate"}]
    assert final_loss(calls) == 1.0
    assert final_loss([{"kind": "predict"}]) is None
    assert loss_change(1.1, 1.0) == pytest.approx(0.1)
    assert loss_change(None, 1.0) == math.inf and loss_change(1.0, None) is None


# --- real tunes on this CPU -------------------------------------------------------------------------------------

DROP = re.compile(r"dropped after round \d+: (\d+\.\d\dx \[\d+\.\d\d, \d+\.\d\d\] of the leader|max relative error .*)")


def _report(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devswitch", "report", str(out / "results.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_real_tune_of_mlp_writes_a_compare_result_set_that_report_reads(tmp_path, capsys):
    """mlp on TensorFlow, fp32 and fp16 with 1 and 2 threads, --max-error 1e-4, a 60 s budget: fp16 (2.9e-4 from
    the reference here) is dropped after round 1 by the accuracy guard, its rows kept with the reason; the fp32
    rows are ok or marked dropped with their interval; every round is in results.json, the winner and its
    switch are printed, and ``devswitch report`` reads the file as a compare's."""
    out = tmp_path / "tune"
    code = main(
        [
            "tune",
            "mlp",
            "--backends",
            "tensorflow",
            "--devices",
            "cpu",
            "--precisions",
            "fp32,fp16",
            "--vary",
            "threads=1,2",
            "--batch-sizes",
            "32",
            "--rounds",
            "6",
            "--iterations",
            "12",
            "--budget",
            "60s",
            "--max-error",
            "1e-4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert re.search(r"^tune at batch 32: winner cpu fp32 threads=[12]", printed, re.M), printed
    assert "cpu fp16" not in printed.split("tune at batch 32: winner")[1].split(";")[0]
    assert 'switch: `DEVSWITCH_FLAGS="device=cpu,precision=fp32,threads=' in printed
    doc = json.loads((out / "results.json").read_text())
    tune = doc["options"]["tune"]
    assert tune["budget_s"] == 60 and 1 <= len(tune["rounds"]) <= 6
    assert [r["round"] for r in tune["rounds"]] == list(range(1, len(tune["rounds"]) + 1))
    cells = doc["cells"]
    assert len(cells) == 4
    for cell in cells:
        if cell["precision"] == "fp16":
            assert re.fullmatch(r"dropped after round 1: max relative error .* over --max-error 0.0001", cell["status"])
        else:
            assert cell["status"] == "ok" or DROP.fullmatch(cell["status"]), cell["status"]
        assert cell["record"]["metrics"]["throughput"]["value"] > 0  # a dropped row keeps what it measured
    report = _report(out)
    assert report.returncode == 0, report.stderr
    assert "cpu fp32 threads=1" in report.stdout and "cpu fp16 threads=2" in report.stdout
    assert "max relative error" in report.stdout  # the dropped rows' reason, read back


SCRIPT = """
import sys
import numpy as np
import keras

x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
model.fit(x, y, epochs=int(sys.argv[1]), batch_size=32, verbose=0)
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_real_tune_of_a_script_races_whole_runs_and_report_reads_it(tmp_path, capsys):
    """A tiny training script, fp32 with 1 and 2 threads, its own argument after --: each round is one run per
    configuration; the rows are the script's (runs/s) and report reads the file."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "tune"
    code = main(
        [
            "tune",
            "--script",
            str(script),
            "--backends",
            "tensorflow",
            "--devices",
            "cpu",
            "--precisions",
            "fp32",
            "--vary",
            "threads=1,2",
            "--rounds",
            "3",
            "--budget",
            "120s",
            "--max-loss-change",
            "0.5",
            "--out",
            str(out),
            "--",
            "2",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert re.search(r"^tune: winner cpu fp32 threads=[12]", printed, re.M), printed
    doc = json.loads((out / "results.json").read_text())
    assert doc["options"]["kind"] == "script" and doc["options"]["args"] == ["2"]
    assert 1 <= len(doc["options"]["tune"]["rounds"]) <= 3
    for cell in doc["cells"]:
        assert cell["status"] == "ok" or cell["status"].startswith("dropped after round"), cell["status"]
    report = _report(out)
    assert report.returncode == 0, report.stderr
    assert "runs/s" in report.stdout


def test_a_found_batch_cell_pairs_its_rounds_at_the_batch_it_ran_at():
    """--batch-sizes max: the cell is keyed by its kind (batch 0) and its record ran at the batch found; its
    rates by round are samples/s at that batch (they were 0/s: the kind's number taken for the batch)."""
    from _devswitch.compare.options import MAX_BATCH

    cell = _measured("fp32", {0: 100.0, 1: 120.0})
    record = {**cell.record.to_dict(), "batch": 10}
    found = Cell("tensorflow", "cpu", "fp32", MAX_BATCH, "ok", "fp32", record)
    assert found.round_rates == pytest.approx({0: 100.0, 1: 120.0})


def _measured(precision: str, rates: dict[int, float]) -> Cell:
    """A measured cell (batch 10) with 3 samples per round at the given rates."""
    rounds = [r for r in rates for _ in range(3)]
    everything = [rates[r] for r in rounds]
    low, high, coverage = median_ci(everything)
    record = {
        "metrics": {
            "throughput": {
                "value": sorted(everything)[len(everything) // 2],
                "ci": [low, high],
                "ci_coverage": coverage,
            }
        },
        "samples": {
            "round": rounds,
            "start_s": list(range(len(rounds))),
            "seconds_per_step": [10 / rate for rate in everything],
        },
    }
    return Cell("tensorflow", "cpu", precision, 10, "ok", precision, record)


def test_save_profile_after_a_tune_decides_among_survivors_and_a_dropped_row_is_not_missing(tmp_path, capsys):
    """A tune's result set: fp16 dropped after round 2 (its row marked, its record kept), bf16 2x fp32 over 6
    rounds. compare's writer saves bf16 (a dropped row does not make the run 'incomplete'), and the winner line
    names bf16 with its interval against the runner-up and its switch."""
    from _devswitch.cli.compare import save_winner
    from _devswitch.compare.resultset import Model

    fp32 = _measured("fp32", {r: 100.0 + r for r in range(1, 7)})
    bf16 = _measured("bf16", {r: 200.0 + 3 * r for r in range(1, 7)})
    fp16 = _measured("fp16", {1: 10.0, 2: 11.0})
    results = ResultSet(
        options={"batch_sizes": [10], "backends": ["tensorflow"], "target": "mlp", "baseline": "tensorflow cpu fp32"},
        model=Model("mlp", "m", unit="samples"),
        cells=(fp32, bf16, fp16),
    )
    log = RaceLog(TuneOptions(budget_s=60.0, max_rounds=6), fp32.config)
    log.rates = {c.config: upto(dict(c.round_rates), 2) for c in (fp32, bf16, fp16)}
    log.after_round(2, 1.0, [fp32.config, bf16.config, fp16.config], lambda c: c.precision)
    assert list(log.dropped) == [fp16.config]
    tuned = marked(results, log, lambda c: c.precision)
    assert [c.status for c in tuned.cells][:2] == ["ok", "ok"]
    assert tuned.cells[2].status.startswith("dropped after round 2: 0.") and tuned.cells[2].record is not None
    assert tuned.options["tune"]["dropped"] == {"fp16": tuned.cells[2].status}
    assert save_winner(tuned, "fast", tmp_path / ".devswitchrc")
    assert "saved profile 'fast' (device=cpu, precision=bf16" in capsys.readouterr().err
    comments = [s.strip() for s in (tmp_path / ".devswitchrc").read_text().splitlines() if s.strip().startswith("#")]
    assert any(line.startswith("# devswitch tune mlp: cpu bf16, recommended") for line in comments), comments
    (line, switch) = winner_lines(tuned)
    assert line.startswith("tune at batch 10: winner cpu bf16, 2.0") and "against the runner-up, cpu fp32" in line
    assert 'precision=bf16" python train.py' in switch


def test_the_next_round_is_predicted_from_the_survivors_turns_not_the_whole_last_round():
    """Round 2 took 20 s, 18 of them SLOW's turn; SLOW is dropped, so the next round (FAST and TWIN, 1 s each)
    fits in the 10 s left of the budget and the race goes on; noted as the round's next_s."""
    log = RaceLog(TuneOptions(budget_s=60.0, max_rounds=6))
    log.started -= 50.0  # 50 s spent
    log.rates = {k: upto(v, 2) for k, v in {"fast": FAST, "slow": SLOW, "twin": TWIN}.items()}  # type: ignore[misc]
    turns = {"fast": 1.0, "slow": 18.0, "twin": 1.0}
    log.after_round(2, 20.0, ["fast", "slow", "twin"], str, turns)  # type: ignore[arg-type]
    assert "slow" in log.dropped and log.stop is race.Stop.GO_ON
    assert log.rounds[-1]["seconds"] == 20.0 and log.rounds[-1]["next_s"] == 2.0
