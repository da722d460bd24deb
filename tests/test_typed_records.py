"""A record read back from results.json is the dataclass that was written (a factory's BenchmarkRecord, a
script's ScriptRecord), files of devswitch 0.2.0 are still read, a malformed record is a clean error naming the
file and the field, and a script's cells speak of runs/s and seconds per run, never of a batch."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from _devswitch.compare.resultfile import parse, read
from _devswitch.compare.resultset import Cell, Model, ResultFileError, ResultSet
from _devswitch.compare.scriptrecord import SCHEMA_VERSION, ScriptRecord, ScriptRun, build
from _devswitch.render.compare import render_csv, render_markdown
from _devswitch.results import CallRecord, EpochTime, call_from_dict

DATA = Path(__file__).parent / "data"
OLD_FACTORY = DATA / "results-0.2.0-factory.json"  # written by devswitch 0.2.0 (its ResultSet.dumps)
OLD_SCRIPT = DATA / "results-0.2.0-script.json"  # 0.2.0: script records without schema_version, "throughput"


def _factory_set(*records) -> ResultSet:
    pairs = zip(("fp32", "bf16"), records, strict=True)
    cells = tuple(Cell.of(("tensorflow", "cpu", p), r.batch, "ok", p, r) for p, r in pairs)
    return ResultSet(
        options={"batch_sizes": [records[0].batch], "mode": "inference", "baseline": "tensorflow cpu fp32",
                 "backends": ["tensorflow"], "target": "mlp"},
        model=Model("mlp", "mlp"), cells=cells)


def _run(number: int, wall: float) -> dict:
    fit = {"kind": "fit", "status": "ok", "model": "sequential", "epochs": [{"epoch": 0}, {"epoch": 1}],
           "metrics": {"steady_throughput": {"value": 640 / wall, "unit": "samples/s"}, "steps": {"value": 20}}}
    return {"round": number, "start_s": 10.0 * number, "wall_s": wall, "startup_s": 4.0, "process_s": wall + 4.5,
            "exit_code": 0, "given_up": None, "removed": None, "overridden": None, "calls": [fit]}


def _script_set() -> ResultSet:
    env = {"keras": "3.15.1", "tensorflow": "2.20.0"}
    cells = (
        Cell.of(("tensorflow", "cpu", "fp32"), 1, "ok", "fp32",
                build([_run(1, 2.0), _run(2, 2.2), _run(3, 2.1)], {"policy": "float32"}, env, None)),
        Cell.of(("tensorflow", "cpu", "bf16"), 1, "ok", "bf16",
                build([_run(1, 1.0), _run(2, 1.1), _run(3, 1.05)], {"policy": "mixed_bfloat16"}, env, None)),
    )
    return ResultSet(
        options={"batch_sizes": [1], "mode": "script", "kind": "script", "baseline": "tensorflow cpu fp32",
                 "backends": ["tensorflow"], "target": "train.py", "rounds": 3, "args": [], "caps": {}},
        model=Model("train.py", "train.py", unit="runs"), cells=cells)


def _back(results: ResultSet, tmp_path: Path) -> ResultSet:
    (tmp_path / "results.json").write_text(results.dumps())
    return read(tmp_path)


# --- a record read back is the dataclass that was written ---------------------------------------------------


def test_a_benchmark_record_measured_for_real_reads_back_from_results_json_as_the_same_dataclass(on_cpu, tmp_path):
    import devswitch
    from _devswitch.models import mlp

    records = devswitch.benchmark(mlp(), batch_sizes=(4,), warmup=1, iterations=3, peak_probe=False,
                                  predict_baseline=False, min_sample_s=0)
    back = _back(_factory_set(records[0], records[0]), tmp_path)
    assert back.cells[0].record == records[0]  # the same dataclass, every field, not a dict
    assert back.cells[0].benchmark is back.cells[0].record and back.cells[0].script is None
    assert back.cells[0].rate() == records[0].samples_per_s and back.cells[0].rate_unit == "samples/s"


def test_a_script_record_reads_back_from_results_json_as_the_same_dataclass(tmp_path):
    written = _script_set()
    back = _back(written, tmp_path)
    assert [c.record for c in back.cells] == [c.record for c in written.cells]
    record = back.cells[1].script
    assert isinstance(record, ScriptRecord) and isinstance(record.runs[0], ScriptRun)
    assert isinstance(record.runs[0].calls[0], CallRecord) and record.runs[0].calls[0].steps == 20
    assert record.seconds_per_run == 1.05 and record.runs_per_s == pytest.approx(1 / 1.05)
    assert back.cells[1].rate() == record.runs_per_s and back.cells[1].rate_unit == "runs/s"


def test_what_a_script_record_writes_has_its_own_names_and_a_schema_version():
    data = json.loads(_script_set().dumps())["cells"][0]["record"]
    assert data["schema_version"] == SCHEMA_VERSION == 2 and data["type"] == "script"
    assert data["metrics"]["runs_per_s"]["unit"] == "runs/s" and data["metrics"]["seconds_per_run"]["value"] == 2.1
    assert "throughput" not in data["metrics"] and "wall" not in data["metrics"]  # 0.2.0's names
    assert ScriptRecord.from_dict(data) == _script_set().cells[0].record


def test_a_timed_call_reads_back_as_the_call_record_that_was_written():
    call = CallRecord("fit", "m", "ok", 1.5, True, 1.0, 0.5, 20, 640, 1280.0, 40.0,
                      epochs=(EpochTime(0, 1.0, 0.9, 0.1, 2.0), EpochTime(1, 0.5, 0.5, 0.0, None)), device="CPU:0",
                      policy="mixed_bfloat16", compute_dtypes=("bfloat16",), nonfinite_loss_epochs=(1,),
                      batch_times_s=(0.1, 0.2), replicas=2, applied_policy="mixed_bfloat16", backend="jax",
                      math="ieee", history={"loss": 1.9}, cap={"max_epochs": 1}, started_at=5.5)
    assert call_from_dict(json.loads(json.dumps(call.to_dict()))) == call
    with pytest.raises(ValueError, match=r"r\.jsonl:3: records\[0\] lacks its field 'status'"):
        call_from_dict({"kind": "fit"}, "r.jsonl:3: records[0]")


# --- files written by devswitch 0.2.0 ------------------------------------------------------------------------


def test_a_factory_results_file_of_devswitch_0_2_0_is_read_into_benchmark_records():
    results = read(OLD_FACTORY)
    fp32 = results.cell(("tensorflow", "cpu", "fp32"), 8)
    assert fp32 is not None and fp32.ok and fp32.benchmark is not None
    assert fp32.benchmark.policy == "float32" and fp32.benchmark.samples_per_s == pytest.approx(4000.0)
    doc = json.loads(OLD_FACTORY.read_text())
    assert fp32.benchmark.to_dict()["metrics"]["throughput"] == doc["cells"][0]["record"]["metrics"]["throughput"]
    assert "| samples/s | 4,000.0 [3,636.4, 4,444.4] | 2,666.7 [2,500.0, 2,857.1] |" in render_markdown(results)


def test_a_script_results_file_of_devswitch_0_2_0_is_read_and_shown_in_runs_per_second():
    doc = json.loads(OLD_SCRIPT.read_text())
    assert "schema_version" not in doc["cells"][0]["record"] and "throughput" in doc["cells"][0]["record"]["metrics"]
    results = read(OLD_SCRIPT)
    fp32, bf16 = (results.cell(("tensorflow", "cpu", p), 1) for p in ("fp32", "bf16"))
    assert fp32 is not None and bf16 is not None and fp32.script is not None and bf16.script is not None
    assert fp32.script.runs_per_s == pytest.approx(doc["cells"][0]["record"]["metrics"]["throughput"]["value"])
    assert fp32.script.seconds_per_run == pytest.approx(1.45) and len(fp32.script.runs) == 2
    assert results.speedup(bf16) == pytest.approx(1.1634615384615385)  # paired by round, as 0.2.0 showed it
    table = render_markdown(results)
    assert "| s per run | 1.45 s [1.40, 1.50] | 1.25 s [1.20, 1.30] |" in table
    assert "| runs/s | 0.690 | 0.800 |" in table


# --- a malformed record --------------------------------------------------------------------------------------


@pytest.mark.parametrize("source, change, field", [
    pytest.param(OLD_FACTORY, lambda c: c["record"].pop("model"), "cells[0].record", id="a factory's without model"),
    pytest.param(OLD_FACTORY, lambda c: c["record"]["phases_s"].update(warmup="slow"),
                 "cells[0].record.phases_s.warmup", id="seconds that are a string"),
    pytest.param(OLD_FACTORY, lambda c: c["record"].update(energy={"joules": 3}), "cells[0].record.energy",
                 id="an energy without its source"),
    pytest.param(OLD_SCRIPT, lambda c: c["record"].update(schema_version=9), "cells[0].record.schema_version",
                 id="a script record of a later version"),
    pytest.param(OLD_SCRIPT, lambda c: c["record"]["runs"][1].update(round="two"), "cells[0].record.runs[1].round",
                 id="a run whose round is a string"),
    pytest.param(OLD_SCRIPT, lambda c: c["record"]["runs"][0].update(overridden=3),
                 "cells[0].record.runs[0].overridden", id="a run's override that is a number"),
    pytest.param(OLD_SCRIPT, lambda c: c["record"]["runs"][0]["calls"][0].update(epochs=[3]),
                 "cells[0].record.runs[0].calls[0].epochs[0]", id="a timed call's epoch that is a number"),
])
def test_a_malformed_record_is_an_error_naming_the_file_and_the_field(tmp_path, source, change, field):
    doc = json.loads(source.read_text())
    change(doc["cells"][0])
    with pytest.raises(ResultFileError) as raised:
        parse(json.dumps(doc).encode(), str(tmp_path / "bad.json"))
    message = raised.value.message
    assert message.startswith(f"{tmp_path / 'bad.json'}: {field}") and raised.value.exit_code == 2


def test_report_of_a_malformed_record_exits_2_without_a_traceback(tmp_path, capsys):
    from _devswitch.cli import main

    doc = json.loads(OLD_FACTORY.read_text())
    doc["cells"][1]["record"]["compute_dtype"] = 16
    (tmp_path / "results.json").write_text(json.dumps(doc))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cells[1].record.compute_dtype" in err and "Traceback" not in err


# --- a script's cells use their own names -------------------------------------------------------------------


def test_the_script_table_says_seconds_per_run_and_runs_per_second_not_batch_or_samples():
    table = render_markdown(_script_set())
    assert "| s per run | 2.10 s [2.00, 2.20] | 1.05 s [1.00, 1.10] |" in table
    assert "| runs/s | 0.476 | 0.952 |" in table
    assert "batch" not in table.lower() and "script wall" not in table


def test_the_script_csv_and_json_use_runs_per_second():
    rows = list(csv.DictReader(io.StringIO(render_csv(_script_set()))))
    assert float(rows[1]["runs/s"]) == pytest.approx(1 / 1.05) and float(rows[1]["s per run"]) == 1.05
    assert "batch" not in rows[0] and "throughput" not in rows[0]
    metrics = json.loads(_script_set().dumps())["cells"][1]["record"]["metrics"]
    assert metrics["runs_per_s"]["value"] == pytest.approx(1 / 1.05) and metrics["runs_per_s"]["unit"] == "runs/s"


def test_report_a_b_of_two_script_sets_pairs_them_by_runs_per_second(tmp_path, capsys):
    from _devswitch.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    shutil.copy(OLD_SCRIPT, a / "results.json")  # 0.2.0's file against one written now
    b.mkdir()
    (b / "results.json").write_text(_script_set().dumps())
    assert main(["report", str(a), str(b)]) == 0
    assert "B / A" in capsys.readouterr().out
