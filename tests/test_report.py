"""devswitch report: a result set shown again from its JSON alone, and two compared cell by cell."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from errorparts import printed

from _devswitch.cli import main


def _copy(shared_compare, tmp_path, name, change=None) -> Path:
    """A copy of the shared run's results folder, its results.json passed through ``change(doc)``."""
    folder = tmp_path / name
    shutil.copytree(shared_compare.out, folder)
    if change is not None:
        doc = json.loads((folder / "results.json").read_text())
        change(doc)
        (folder / "results.json").write_text(json.dumps(doc))
    return folder


def _scaled(factor):
    def change(doc):
        for cell in doc["cells"]:
            if cell["record"]:
                t = cell["record"]["metrics"]["throughput"]
                t["value"] *= factor
                t["ci"] = [v * factor for v in t["ci"]]
    return change


def _measured(doc) -> list[dict]:
    return [c for c in doc["cells"] if c["status"] == "ok"]


@pytest.mark.subprocess
def test_report_shows_a_result_set_again_from_its_json_alone(shared_compare, capsys):
    assert main(["report", str(shared_compare.out)]) == 0
    assert capsys.readouterr().out == (shared_compare.out / "results.md").read_text()


@pytest.mark.subprocess
def test_report_pairs_cells_by_key_not_by_position(shared_compare, tmp_path, capsys):
    a = _copy(shared_compare, tmp_path, "a")
    b = _copy(shared_compare, tmp_path, "b", lambda doc: doc["cells"].reverse())  # the same cells, other order
    assert main(["report", str(a), str(b), "--fail-above", "0"]) == 0
    table = capsys.readouterr().out
    measured = _measured(json.loads((a / "results.json").read_text()))
    assert table.count("| 1.00x | +0.0% |") == len(measured) >= 2
    assert "FAIL" not in table


@pytest.mark.subprocess
def test_the_gate_is_time_per_sample_and_says_so(shared_compare, tmp_path, capsys):
    a = _copy(shared_compare, tmp_path, "a")
    slow = _copy(shared_compare, tmp_path, "slow", _scaled(0.7))  # 1/0.7: 42.9% more time per sample
    n = len(_measured(json.loads((a / "results.json").read_text())))
    assert main(["report", str(a / "results.json"), str(slow), "--fail-above", "40"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("FAIL: more than 40% more time per sample") == n
    assert f"the gate fails ({n})" in captured.err and "42.9% more time per sample" in captured.err
    assert "Gate: a cell fails when B takes more than 40% longer per sample than A" in captured.out
    assert main(["report", str(a), str(slow), "--fail-above", "43"]) == 0  # 42.9% is within a 43% gate
    assert "| 0.70x | +42.9% |" in capsys.readouterr().out
    # 10.5% more time per sample (throughput x 1/1.105 = 9.5% lower) fails a 10% gate
    b = _copy(shared_compare, tmp_path, "b", _scaled(1 / 1.105))
    assert main(["report", str(a), str(b), "--fail-above", "10"]) == 1
    capsys.readouterr()


@pytest.mark.subprocess
def test_an_incomplete_or_failed_b_never_passes_the_gate(shared_compare, tmp_path, capsys):
    a = _copy(shared_compare, tmp_path, "a")

    def drop_one(doc):
        doc["cells"] = [c for c in doc["cells"] if not (c["precision"] == "fp16" and c["batch"] == 8
                                                         and c["device"] == "cpu")]
        doc["complete"] = False

    def nan_one(doc):
        next(c for c in doc["cells"] if c["status"] == "ok")["record"]["metrics"]["throughput"]["value"] = "nan"

    for name, change, why in (("missing", drop_one, "not measured in B: no such cell"),
                              ("nan", nan_one, "not measured in B: failed: no finite throughput")):
        b = _copy(shared_compare, tmp_path, name, change)
        assert main(["report", str(a), str(b)]) == 0, name  # without a gate: listed, not compared
        out = capsys.readouterr().out
        assert why in out and "nanx" not in out and "| nan" not in out, out
        assert main(["report", str(a), str(b), "--fail-above", "50"]) == 1, name
        captured = capsys.readouterr()
        assert "FAIL: measured in A, not in B" in captured.out and "the gate fails" in captured.err
    b = _copy(shared_compare, tmp_path, "incomplete", drop_one)
    assert main(["report", str(a), str(b), "--fail-above", "50"]) == 1
    captured = capsys.readouterr()
    assert "B is incomplete (written while running)" in captured.out + captured.err


@pytest.mark.subprocess
def test_result_sets_of_different_things_are_refused(shared_compare, tmp_path, capsys):
    a = _copy(shared_compare, tmp_path, "a")
    for key, value, named in (("target", "alexnet", ["factory", "'mlp'", "'alexnet'"]),
                              ("unit", "img", ["unit", "'samples'", "'img'"])):  # what differs, A's, B's
        b = _copy(shared_compare, tmp_path, f"b-{key}", lambda doc: doc["model"].update({key: value}))
        assert main(["report", str(a), str(b), "--fail-above", "10"]) == 2
        printed(capsys.readouterr().err, named=named)
    b = _copy(shared_compare, tmp_path, "b-mode", lambda doc: doc["options"].update(mode="training"))
    assert main(["report", str(a), str(b)]) == 2
    printed(capsys.readouterr().err, named=["mode", "'inference'", "'training'"])


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1001", "ten", "", "1e400"])
def test_fail_above_takes_only_a_sane_percentage(value, tmp_path, capsys):
    assert main(["report", str(tmp_path), str(tmp_path), "--fail-above", value]) == 2
    printed(capsys.readouterr().err, where=f"--fail-above '{value}'", named=["0", "1000"])  # the range allowed


def _hostile_documents(good: dict) -> dict[str, object]:
    """Malformed result documents, each a mutation of a real one (the key says what is wrong)."""
    import copy

    def mutate(fn):
        doc = copy.deepcopy(good)
        fn(doc)
        return doc

    cell = next(i for i, c in enumerate(good["cells"]) if c["status"] == "ok")
    return {
        "a list": [], "a string": "x", "null": None, "a number": 3, "no cells": {"options": {}},
        "cells not a list": mutate(lambda d: d.update(cells={"a": 1})),
        "options not an object": mutate(lambda d: d.update(options=[1])),
        "no batch sizes": mutate(lambda d: d["options"].pop("batch_sizes")),
        "batch sizes of strings": mutate(lambda d: d["options"].update(batch_sizes=["1"])),
        "a negative batch size": mutate(lambda d: d["options"].update(batch_sizes=[-2])),
        "backends not a list": mutate(lambda d: d["options"].update(backends="tensorflow")),
        "baseline of one word": mutate(lambda d: d["options"].update(baseline="cpu")),
        "baseline a number": mutate(lambda d: d["options"].update(baseline=7)),
        "a cell that is a list": mutate(lambda d: d["cells"].append([1])),
        "a cell without status": mutate(lambda d: d["cells"][0].pop("status")),
        "a cell whose batch is a string": mutate(lambda d: d["cells"][0].update(batch="1")),
        "a cell whose batch is true": mutate(lambda d: d["cells"][0].update(batch=True)),
        "a cell without device": mutate(lambda d: d["cells"][0].pop("device")),
        "two cells with one key": mutate(lambda d: d["cells"].append(dict(d["cells"][0]))),
        "a record that is a string": mutate(lambda d: d["cells"][cell].update(record="x")),
        "a record without metrics": mutate(lambda d: d["cells"][cell]["record"].pop("metrics")),
        "metrics a list": mutate(lambda d: d["cells"][cell]["record"].update(metrics=[])),
        "a metric that is a number": mutate(lambda d: d["cells"][cell]["record"]["metrics"].update(throughput=3)),
        "a throughput that is a word": mutate(
            lambda d: d["cells"][cell]["record"]["metrics"]["throughput"].update(value="fast")),
        "a throughput that is a list": mutate(
            lambda d: d["cells"][cell]["record"]["metrics"]["throughput"].update(value=[1])),
        "an interval of three": mutate(
            lambda d: d["cells"][cell]["record"]["metrics"]["throughput"].update(ci=[1, 2, 3])),
        "an interval of words": mutate(
            lambda d: d["cells"][cell]["record"]["metrics"]["throughput"].update(ci=["a", "b"])),
        "a coverage that is a word": mutate(
            lambda d: d["cells"][cell]["record"]["metrics"]["throughput"].update(ci_coverage="high")),
        "a policy that is a number": mutate(lambda d: d["cells"][cell]["record"].update(policy=3)),
        "energy a string": mutate(lambda d: d["cells"][cell]["record"].update(energy="none")),
        "model a list": mutate(lambda d: d.update(model=[])),
        "unit a number": mutate(lambda d: d["model"].update(unit=3)),
        "a future schema": mutate(lambda d: d.update(schema_version=99)),
        "schema a string": mutate(lambda d: d.update(schema_version="2")),
        "interrupted a string": mutate(lambda d: d.update(interrupted="no")),
        "command a string": mutate(lambda d: d.update(command="devswitch")),
        "timing a list": mutate(lambda d: d.update(timing=[])),
        "environment a string": mutate(lambda d: d.update(environment="x")),
        "a word for the overhead ratio": mutate(lambda d: d["timing"].update(overhead_ratio="x")),
        "a list for the total time": mutate(lambda d: d["timing"].update(total_s=[1])),
        "schema 1 with records a number": mutate(lambda d: d.update(schema_version=1, records=5)),
    }


@pytest.mark.subprocess
def test_a_corpus_of_malformed_and_hostile_result_files_is_a_clean_error_each(shared_compare, tmp_path, capsys):
    """Each is exit 2 with a message naming the file (and the field), never a traceback; reading is
    bounded: special files are refused by type, huge files by size, deep nesting before parsing."""
    import os
    import tracemalloc

    good = json.loads((shared_compare.out / "results.json").read_text())
    cases: dict[str, Path] = {}
    for i, (what, doc) in enumerate(_hostile_documents(good).items()):
        cases[what] = tmp_path / f"doc{i}.json"
        cases[what].write_text(json.dumps(doc))
    raw = {"not JSON": b"{results", "empty": b"", "binary": bytes(range(256)), "not UTF-8": b'{"cells": "\xff\xfe"}',
           "nested 100,000 deep": b"[" * 100_000, "nested objects": b'{"a":' * 5_000,
           "NaN tokens everywhere": b'{"options": NaN, "cells": Infinity}'}
    for i, (what, data) in enumerate(raw.items()):
        cases[what] = tmp_path / f"raw{i}.json"
        cases[what].write_bytes(data)
    big = tmp_path / "big.json"
    with big.open("wb") as handle:  # sparse: 40 MB claimed, nothing written
        handle.truncate(40 << 20)
    cases["larger than the limit"] = big
    cases["a link to /dev/zero"] = tmp_path / "zero.json"
    cases["a link to /dev/zero"].symlink_to("/dev/zero")
    cases["a FIFO"] = tmp_path / "fifo.json"
    os.mkfifo(cases["a FIFO"])
    cases["a dangling link"] = tmp_path / "dangling.json"
    cases["a dangling link"].symlink_to(tmp_path / "nowhere")
    cases["a folder without results.json"] = tmp_path / "empty-folder"
    cases["a folder without results.json"].mkdir()
    tracemalloc.start()
    try:
        for what, path in cases.items():
            assert main(["report", str(path)]) == 2, what
            err = capsys.readouterr().err
            assert "Traceback" not in err and str(path) in err and "hint:" in err, (what, err)
            assert main(["report", str(shared_compare.out), str(path), "--fail-above", "10"]) == 2, what
            capsys.readouterr()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20, f"{peak / 2**20:.0f} MiB to refuse the corpus"


@pytest.mark.subprocess
def test_escape_sequences_inside_a_result_file_never_reach_the_terminal(shared_compare, tmp_path, capsys):
    def poison(doc):
        doc["environment"]["cpu"] = "\x1b]0;pwned\x07\x1b[2J"
        doc["cells"][-1]["status"] = "failed: \x1b[31mred\u2028hidden"

    folder = _copy(shared_compare, tmp_path, "poisoned", poison)
    assert main(["report", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u2028" not in out
    assert "pwned" in out and "red" in out  # shown, with the control characters written out


# --- the recommendation and --save-profile ------------------------------------------------------------------

def _doc(rates, cis, coverage=0.95):
    from _devswitch.compare import Cell, ResultSet
    from _devswitch.compare.resultset import Model

    cells = []
    for (precision, rate), ci in zip(rates.items(), cis):
        record = {"metrics": {"throughput": {"value": rate, "ci": list(ci), "ci_coverage": coverage}}}
        cells.append(Cell("tensorflow", "cpu", precision, 128, "ok", precision, record))
    return ResultSet(options={"batch_sizes": [128], "backends": ["tensorflow"], "target": "alexnet",
                              "baseline": "tensorflow cpu fp32"}, model=Model("alexnet", "m", unit="img"),
                     cells=tuple(cells))


def test_the_recommendation_is_honest_about_overlapping_intervals():
    from _devswitch.compare import recommendation_lines

    (clear,) = recommendation_lines(_doc({"fp32": 100.0, "half": 190.0}, [(95, 105), (180, 200)]))
    assert "cpu half (190.0 img/s), faster than the baseline, cpu fp32 (100.0 img/s): 1.90x, their 95% " \
           "intervals do not overlap" in clear
    assert 'DEVSWITCH_FLAGS="device=cpu,precision=half" python train.py' in clear
    assert "devswitch run --device cpu --precision half train.py" in clear
    (tie,) = recommendation_lines(_doc({"fp32": 100.0, "half": 104.0}, [(95, 106), (98, 110)]))
    assert "keep the baseline: no significant difference between the fastest measured, cpu half (104.0 img/s), " \
           "and the baseline, cpu fp32" in tie
    assert "their 95% intervals overlap" in tie and 'DEVSWITCH_FLAGS="device=cpu,precision=fp32"' in tie
    (few,) = recommendation_lines(_doc({"fp32": 100.0, "half": 190.0}, [(95, 105), (180, 200)], coverage=0.75))
    assert "their 75% intervals do not overlap, but it covers less than the 94% a decision needs" in few
    assert "95%" not in few and "keep the baseline" in few


def test_report_shows_a_timing_report_file_of_both_formats(tmp_path, capsys):
    from _devswitch.results import CallRecord, append_records

    record = CallRecord("predict", "tiny", "ok", 0.25, False, None, 0.25, 2, 64, 256.0, 8.0, device="CPU:0",
                        policy="mixed_bfloat16")
    report = tmp_path / "timing.jsonl"
    append_records(report, [record], plan={"backend": "jax", "device": "cpu", "precision": "bf16"},
                   environment={"keras": "3.15.1", "backend": "jax", "jax": "0.10.2"})
    old = tmp_path / "old.json"  # a devswitch 0.1 report: one JSON document
    old.write_text(json.dumps({"schema_version": 1, "plan": {"device": "cpu", "precision": "fp32"},
                               "records": [record.to_dict()]}))
    assert main(["report", str(report)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run 1: backend=jax, device=cpu, precision=bf16; keras 3.15.1, jax 0.10.2")
    assert "predict" in out and "256 samples/s" in out
    assert main(["report", str(old)]) == 0
    assert "run 1: device=cpu, precision=fp32" in capsys.readouterr().out


def test_results_json_records_the_command_given_not_this_processs_argv(tmp_path):
    from _devswitch import compare

    options = compare.Options("mlp", ("tensorflow",), ("cpu",), ("fp32",), (1,), command=("devswitch", "compare", "mlp"))
    doc = json.loads(compare.runs.factory_results(options, [], [], 1.0, False).dumps())  # plain data only
    assert doc["command"] == ["devswitch", "compare", "mlp"] and "command" not in doc["options"]


def test_a_timing_report_with_escape_sequences_shows_them_written_out(tmp_path, capsys):
    from _devswitch.results import CallRecord, append_records

    record = CallRecord("predict", "\x1b]0;pwned\x07model", "ok", 0.25, False, None, 0.25, 2, 64, 256.0, 8.0,
                        device="CPU:0\x1b[2J", policy="float32")
    report = tmp_path / "timing.jsonl"
    append_records(report, [record], plan={"backend": "tensorflow\x1b[31m", "device": "cpu"})
    assert main(["report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;pwned\\x07model" in out  # shown, with the control characters written out


@pytest.mark.subprocess
def test_a_result_set_under_another_name_or_without_a_time_breakdown_is_still_shown(shared_compare, tmp_path,
                                                                                      capsys):
    doc = json.loads((shared_compare.out / "results.json").read_text())
    renamed = tmp_path / "main-results.json"  # not results.json: still a result set, not a timing report
    renamed.write_text(json.dumps(doc))
    assert main(["report", str(renamed)]) == 0
    assert capsys.readouterr().out == (shared_compare.out / "results.md").read_text()
    del doc["timing"]["total_s"]  # a breakdown with a figure missing: its line is left out, nothing else
    renamed.write_text(json.dumps(doc))
    assert main(["report", str(renamed)]) == 0
    out = capsys.readouterr().out
    assert "Wall time" not in out and "Recommendation, batch 8:" in out


@pytest.mark.parametrize("run", [
    {"plan": [1], "records": []}, {"environment": {"backend": [1]}, "records": [{"kind": "fit", "status": "ok"}]},
], ids=["a plan that is a list", "a backend that is a list"])
def test_a_timing_report_with_a_malformed_context_shows_what_it_can_without_a_traceback(run, tmp_path, capsys):
    report = tmp_path / "timing.jsonl"
    report.write_text(json.dumps({"schema_version": 2, "type": "run", **run}) + "\n")
    assert main(["report", str(report)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("run 1:") and "Traceback" not in err


@pytest.mark.parametrize(("record", "field"), [
    (1, "record 1"), ({"kind": "fit", "status": "ok", "metrics": [1]}, "record 1.metrics"),
    ({"kind": "fit", "status": "ok", "metrics": {"wall": {"value": "3"}}}, "record 1.metrics.wall.value"),
    ({"kind": "fit", "status": "ok", "metrics": {"steady_throughput": {"value": "fast"}}},
     "record 1.metrics.steady_throughput.value"),
    ({"kind": "fit"}, "record 1"),
], ids=["a record that is a number", "metrics a list", "a wall time that is a word", "a rate that is a word",
        "a record without its status"])
def test_a_malformed_record_in_a_timing_report_is_an_error_naming_the_record_and_field(record, field, tmp_path,
                                                                                      capsys):
    report = tmp_path / "timing.jsonl"
    report.write_text(json.dumps({"schema_version": 2, "type": "run", "records": [record]}) + "\n")
    assert main(["report", str(report)]) == 2
    printed(capsys.readouterr().err, where=str(report), named=[f"{report}: run 1 {field}"])


def test_a_timing_report_cut_short_names_its_line(tmp_path, capsys):
    report = tmp_path / "timing.jsonl"
    report.write_text(json.dumps({"schema_version": 2, "type": "run", "records": []}) + "\n{\"schema_vers\n")
    assert main(["report", str(report)]) == 2
    printed(capsys.readouterr().err, where=str(report), named=[f"{report}:2: "])  # the file, and the line in it
