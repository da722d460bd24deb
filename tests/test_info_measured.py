"""`devswitch info` shows what the last compare here measured: each choice's speed-up and error, or that none did."""

from __future__ import annotations

import json

from _devswitch.cli.info import _measured_lines, last_compare
from _devswitch.compare import Cell, ResultSet
from _devswitch.compare.resultset import Model


def _results(tmp_path, name: str, cells) -> None:
    folder = tmp_path / "devswitch-results" / name
    folder.mkdir(parents=True)
    results = ResultSet(options={"batch_sizes": [1, 8], "backends": ["tensorflow"],
                                 "baseline": "tensorflow cpu fp32"}, model=Model("mlp", "mlp"), cells=tuple(cells))
    (folder / "results.json").write_text(results.dumps())


def _cell(precision: str, batch: int, rate: float, error: float | None) -> Cell:
    record = {"batch": batch, "status": "ok", "metrics": {"throughput": {"value": rate}},
              "accuracy": None if error is None else {"status": "ok", "max_rel_error": error, "samples": 8}}
    return Cell("tensorflow", "cpu", precision, batch, "ok", precision, record)


def test_info_shows_the_last_compares_speedups_and_errors_at_its_largest_batch(tmp_path):
    assert last_compare(tmp_path) is None
    [_, line] = _measured_lines(None)
    assert line.startswith("measured ") and "`devswitch compare`" in line  # nothing measured: the command that does
    _results(tmp_path, "a-older", [_cell("fp32", 8, 100.0, 1e-7), _cell("fp16", 8, 50.0, 3e-4)])
    _results(tmp_path, "b-newer", [_cell("fp32", 1, 9.0, 1e-7), _cell("fp32", 8, 100.0, 1e-7),
                                   _cell("bf16", 8, 180.0, 2.5e-3), _cell("fp16", 8, 120.0, None)])
    import os

    os.utime(tmp_path / "devswitch-results" / "a-older" / "results.json", (1, 1))  # older, whatever the names
    measured = last_compare(tmp_path)
    assert measured["path"] == "devswitch-results/b-newer/results.json" and measured["batch"] == 8
    assert [(c["column"], c["speedup"], c["max_rel_error"]) for c in measured["columns"]] == [
        ("cpu fp32", 1.0, 1e-7), ("cpu bf16", 1.8, 2.5e-3), ("cpu fp16", 1.2, None)]
    text = "\n".join(_measured_lines(measured))
    assert "cpu bf16" in text and "1.80x  max rel. error 2.5e-03" in text and "not measured" in text
    json.dumps(measured)  # part of info --json


def test_a_damaged_results_file_is_named_not_a_traceback(tmp_path):
    folder = tmp_path / "devswitch-results" / "x"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text("{not json")
    measured = last_compare(tmp_path)
    assert measured["path"].endswith("results.json") and measured["error"]
    [_, line] = _measured_lines(measured)  # one line naming the file and what is wrong with it
    assert line.startswith("measured ") and measured["path"] in line and measured["error"] in line
