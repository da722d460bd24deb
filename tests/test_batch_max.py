"""devswitch compare --batch-sizes max[,knee] --memory-budget SIZE: each column's own batch, found in its worker,
then measured there; its header, a row and the footnote say so; bad values are usage errors."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest
from errorparts import printed

from _devswitch.cli import main
from _devswitch.compare import protocol as p
from _devswitch.compare.options import KNEE_BATCH, MAX_BATCH, batch_label
from _devswitch.compare.runs import found_batch


@pytest.mark.parametrize(
    "args, where, named, fix",
    [
        pytest.param(["--batch-sizes", "max,7x"], "--batch-sizes", ["'max,7x'"], "--batch-sizes max,knee", id="max,7x"),
        pytest.param(["--batch-sizes", "1,max"], "--batch-sizes", ["'1,max'"], "--batch-sizes max,knee",
                     id="a number with max"),
        pytest.param(["--batch-sizes", "knee"], "--batch-sizes", ["'knee'"], "--batch-sizes max,knee", id="knee alone"),
        pytest.param(["--batch-sizes", "max,max"], "--batch-sizes", ["'max,max'"], "--batch-sizes max,knee",
                     id="max twice"),
        pytest.param(
            ["--batch-sizes", "max", "--memory-budget", "8 parsecs"],
            "--memory-budget",
            ["'8 parsecs'"],
            "--memory-budget 4GiB",
            id="8 parsecs",
        ),
        pytest.param(["--batch-sizes", "max", "--memory-budget", "0"], "--memory-budget", ["'0'"],
                     "--memory-budget 4GiB", id="zero"),
        pytest.param(["--memory-budget", "4GiB"], "--memory-budget 4GiB", ["batch finder"], "--batch-sizes max",
                     id="budget without max"),
    ],
)
def test_bad_batch_finder_options_are_usage_errors(args, where, named, fix, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "mlp", "--devices", "cpu", "--precisions", "fp32", *args]) == 2
    printed(capsys.readouterr().err, where=where, named=named, fix=fix)  # (and no traceback)
    assert not (tmp_path / "devswitch-results").exists()


def test_a_cell_of_a_found_batch_reads_the_record_at_the_batch_its_worker_found():
    found = p.Found(batch=4096, knee=512, reason="batch 4352 does not fit", limit="64 MiB", trials=["batch 1: fits"])
    assert found_batch(MAX_BATCH, found) == 4096
    assert found_batch(KNEE_BATCH, found) == 512
    assert found_batch(KNEE_BATCH, p.Found(batch=64, knee=None)) == 64  # no throughput seen: the largest
    assert found_batch(MAX_BATCH, None) is None  # not found (yet): no record is its
    assert found_batch(MAX_BATCH, p.Found(batch=None, reason="batch 1 does not fit")) is None
    assert found_batch(128, found) == 128
    assert (batch_label(MAX_BATCH), batch_label(KNEE_BATCH), batch_label(48)) == ("max batch", "knee batch", "batch 48")


@pytest.mark.slow
@pytest.mark.subprocess
def test_compare_batch_sizes_max_knee_measures_each_column_at_its_own_batch(tmp_path):
    """Real workers on this CPU under a 64 MiB budget: each finds its batch, the cells hold the records at
    those batches, and the table, the CSV and results.json say which batch each column ran at."""
    out = tmp_path / "out"
    args = ["mlp", "--devices", "cpu", "--precisions", "fp32,half", "--batch-sizes", "max,knee"]
    args += ["--memory-budget", "64MiB", "--iterations", "2", "--warmup", "1", "--rounds", "2", "--out", str(out)]
    args += ["--accuracy-samples", "0", "--no-peak-probe", "--no-predict-baseline"]
    proc = subprocess.run(
        [sys.executable, "-m", "devswitch", "compare", *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "largest batch that fits:" in proc.stdout + proc.stderr  # the finder's progress line, per column
    doc = json.loads((out / "results.json").read_text())
    assert doc["options"]["batch_sizes"] == [MAX_BATCH, KNEE_BATCH]
    assert doc["options"]["memory_budget"] == 64 << 20
    ran = {}
    for cell in doc["cells"]:
        assert cell["status"] == "ok", cell["status"]
        ran[(cell["precision"], cell["batch"])] = cell["record"]["batch"]
    for precision in ("fp32", "half"):
        largest, knee = ran[(precision, MAX_BATCH)], ran[(precision, KNEE_BATCH)]
        assert 64 <= knee <= largest  # mlp's peak at batch 64 is a few MiB
    table = (out / "results.md").read_text()
    assert "| max batch | cpu fp32 (batch " in table and "| knee batch |" in table
    assert f"cpu fp32 (batch {ran[('fp32', MAX_BATCH)]})" in table
    assert "| batch | " in table
    assert "The speed-up compares each column at its own batch" in table and "64 MiB" in table
    assert "Recommendation, max batch" in table
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(int(r["batch"]) for r in rows) == sorted(ran.values())
    from _devswitch.compare import resultfile

    assert resultfile.read(out / "results.json").batch_sizes == (MAX_BATCH, KNEE_BATCH)  # read back


def test_in_rounds_the_default_budget_is_half_the_available_memory_shared_among_the_columns_alive_at_once():
    """With rounds every column's worker is alive at once: each finder gets its share of the half, not the
    half each; given budgets and one-after-another runs keep the finder's own rule."""
    from _devswitch.compare.options import Options
    from _devswitch.compare.runs import _memory_budget
    from _devswitch.memory import available_memory

    def options(**kw):
        return Options(target="mlp", backends=("tensorflow",), devices=("cpu",), precisions=("fp32", "fp16"),
                       batch_sizes=(MAX_BATCH,), **kw)

    available = available_memory()
    shared = _memory_budget(options(rounds=3))
    if available is None:
        assert shared is None
    else:
        assert shared is not None and abs(shared - available // 2 // 2) <= 0.1 * available / 4
    assert _memory_budget(options(rounds=3, memory_budget=2**30)) == 2**30
    assert _memory_budget(options(rounds=1)) is None  # the finder's default, one worker at a time


@pytest.mark.slow
@pytest.mark.subprocess
def test_tune_batch_sizes_max_races_each_column_at_its_own_batch(tmp_path):
    """tune takes compare's axes, ``--batch-sizes max`` included: each worker finds its batch under the budget
    first, the race is run on the records at those batches, and the winner line names the max batch."""
    out = tmp_path / "out"
    args = ["mlp", "--backends", "tensorflow", "--devices", "cpu", "--precisions", "fp32", "--vary", "threads=1,2"]
    args += ["--batch-sizes", "max", "--memory-budget", "64MiB", "--iterations", "6", "--warmup", "1"]
    args += ["--rounds", "3", "--budget", "120s", "--accuracy-samples", "0", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "devswitch", "tune", *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "largest batch that fits:" in proc.stdout + proc.stderr  # each worker's finder
    assert re.search(r"^tune at max batch: winner cpu fp32 threads=[12] \(batch \d+\)", proc.stdout, re.M), proc.stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["options"]["batch_sizes"] == [MAX_BATCH] and doc["options"]["memory_budget"] == 64 << 20
    rounds = doc["options"]["tune"]["rounds"]
    assert rounds and all(r["rates"] for r in rounds)  # the race had each round's rates at the found batch
    for cell in doc["cells"]:
        assert cell["batch"] == MAX_BATCH and cell["record"]["batch"] >= 64, cell  # the batch it ran at
        assert cell["status"] == "ok" or cell["status"].startswith("dropped after round"), cell["status"]
