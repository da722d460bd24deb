"""Numbers in, numbers out: what a result file holds is checked as a float in range (a clean exit 2 naming the file
and the field), non-finite outputs have no top-1 agreement, and report A B pairs only cells of the same units."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import pytest
from errorparts import printed

from _devswitch.cli import main

RATES = {"1": 100.0, "2": 150.0}


def _results(rates: dict[str, float] = RATES, unit: str = "samples/s", accuracy: dict | None = None):
    """A result set of MLP cells at batch 8 keyed by threads -> throughput (each metric with its unit)."""
    from _devswitch.compare import Cell, ResultSet
    from _devswitch.compare.resultset import Model

    cells = []
    for threads, rate in rates.items():
        record = {
            "metrics": {
                "throughput": {"value": rate, "unit": unit, "ci": [rate * 0.99, rate * 1.01], "ci_coverage": 0.95},
                "latency_p50": {"value": 1000 / rate, "unit": "ms"},
            },
            "accuracy": accuracy,
        }
        cells.append(Cell.of(("tensorflow", "cpu", "fp32", (("threads", threads),)), 8, "ok", "fp32", record))
    return ResultSet(
        options={
            "batch_sizes": [8],
            "backends": ["tensorflow"],
            "target": "mlp",
            "baseline": "tensorflow cpu fp32 threads=1",
            "vary": {"threads": list(rates)},
        },
        model=Model("mlp", "m", unit="samples"),
        cells=tuple(cells),
        reference={"status": "ok", "classifier": True, "samples": 32, "backend": "tensorflow", "math": "ieee"},
    )


def _doc() -> dict:
    return json.loads(_results().dumps())


HUGE = int("9" * 401)


def _set(path: str, value):
    def change(doc):
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


@pytest.mark.parametrize(
    "change, field",
    [
        pytest.param(
            _set("cells.0.record.metrics.throughput.value", HUGE),
            "cells[0].record.metrics.throughput.value",
            id="a 401-digit throughput",
        ),
        pytest.param(
            _set("cells.0.record.metrics.throughput.value", 2**1024),
            "cells[0].record.metrics.throughput.value",
            id="an int that overflows float",
        ),
        pytest.param(
            _set("cells.0.record.metrics.throughput.value", True),
            "cells[0].record.metrics.throughput.value",
            id="a bool throughput",
        ),
        pytest.param(
            _set("cells.1.record.metrics.throughput.ci", [1, HUGE]),
            "cells[1].record.metrics.throughput.ci[1]",
            id="a huge interval bound",
        ),
        pytest.param(_set("timing", {"total_s": HUGE}), "timing.total_s", id="a huge total time"),
        pytest.param(_set("model.parameters", HUGE), "model.parameters", id="a huge parameter count"),
        pytest.param(_set("cells.0.batch", HUGE), "cells[0].batch", id="a huge batch size"),
        pytest.param(
            _set("cells.0.record.accuracy", {"status": "ok", "samples": HUGE}),
            "cells[0].record.accuracy.samples",
            id="a huge sample count",
        ),
        pytest.param(
            _set("cells.0.record.accuracy", {"status": "ok", "max_rel_error": True}),
            "cells[0].record.accuracy.max_rel_error",
            id="a bool error",
        ),
        pytest.param(_set("options.rounds", HUGE), "options.rounds", id="huge rounds"),
    ],
)
def test_a_number_out_of_range_in_a_result_file_is_a_clean_exit_2_naming_file_and_field(
    tmp_path, capsys, change, field
):
    """Shown alone and as A or B of a comparison: exit 2 (never 1, the gate's "regression"), no traceback."""
    good = tmp_path / "good.json"
    good.write_text(_results().dumps())
    doc = _doc()
    change(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    for argv in (["report", str(bad)], ["report", str(good), str(bad)], ["report", str(bad), str(good)]):
        assert main(argv) == 2, argv
        printed(capsys.readouterr().err, where=str(bad), named=[f"{field}:"])  # the file, then the field


def test_a_timing_report_with_numbers_out_of_range_shows_a_dash(tmp_path, capsys):
    """A timing report (report: PATH.jsonl) is shown as it is: a number out of float's range reads "-" (a value
    that is no number at all is an error naming the field: test_report.py)."""
    line = {
        "schema_version": 2,
        "type": "run",
        "plan": {},
        "records": [
            {
                "kind": "fit",
                "model": "m",
                "status": "ok",
                "metrics": {"wall": {"value": HUGE}, "first": {"value": -HUGE}, "steady_throughput": {"value": 2**1024}},
            }
        ],
    }
    report = tmp_path / "runs.jsonl"
    report.write_text(json.dumps(line) + "\n")
    assert main(["report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "1  fit   m" in out and "999999" not in out and "inf" not in out  # no figure at all: columns dropped


# --- top-1 agreement of outputs that are not finite --------------------------------------------------------


def test_all_nan_outputs_have_no_top1_agreement():
    """argmax of a NaN row is 0: against a reference whose class 0 wins, NaN outputs read 100%."""
    import numpy as np

    from _devswitch.accuracy import Reference, deviation

    outputs = np.zeros((4, 3))
    outputs[:, 0] = 1.0
    ref = Reference(weights=(), x=None, outputs=outputs, about={"classifier": True})
    result = deviation(ref, np.full((4, 3), np.nan))
    assert result["nonfinite_samples"] == 4 and result["top1_agreement"] is None
    assert deviation(ref, outputs)["top1_agreement"] == 1.0


def test_the_tables_say_n_a_for_top1_agreement_of_outputs_not_finite_even_from_an_old_file(tmp_path):
    """A file written before the fix holds 100% beside "not finite in 32/32": every renderer says n/a."""
    from _devswitch.compare import read
    from _devswitch.render.compare import render_csv, render_html, render_markdown

    old = {"status": "ok", "samples": 32, "nonfinite_samples": 32, "top1_agreement": 1.0, "max_rel_error": "inf"}
    (tmp_path / "results.json").write_text(_results(accuracy=old).dumps())
    results = read(tmp_path)
    md = render_markdown(results)
    assert "| top-1 agreement vs fp32 | n/a (outputs not finite) | n/a (outputs not finite) |" in md
    assert "100%" not in md and "<td class=num>100%</td>" not in render_html(results, None)
    assert "top-1 agreement n/a: outputs not finite in 32/32" in render_csv(results)
    rows = list(csv.DictReader(io.StringIO(render_csv(results))))
    assert [r["top1_agreement"] for r in rows] == ["", ""]


# --- report A B: the unit of every metric is part of a cell's identity --------------------------------------


def test_report_does_not_pair_cells_whose_throughput_unit_differs_and_says_so(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(_results().dumps())
    doc = json.loads(_results({"1": 100.0, "2": 150.0}).dumps())
    for cell in doc["cells"]:  # a file that gives another unit than devswitch writes
        cell["record"]["metrics"]["throughput"]["unit"] = "ms"
    b.write_text(json.dumps(doc))
    assert main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.count("not paired: the units differ (throughput samples/s in A, ms in B)") == 2
    assert "1.00x" not in out
    assert main(["report", str(a), str(b), "--fail-above", "10"]) == 1
    captured = capsys.readouterr()
    assert "FAIL: not comparable" in captured.out and "the gate fails (2)" in captured.err


def test_report_pairs_cells_whose_units_agree(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(_results().dumps())
    b.write_text(_results({"1": 50.0, "2": 150.0}).dumps())
    assert main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "0.50x" in out and "not paired" not in out


def test_unlike_units_names_every_metric_that_differs():
    from _devswitch.compare.report import unlike_units

    x = _results().cells[0]
    written = {**x.units, "throughput": "ms", "latency_p50": "s"}  # as a file may give them
    y = dataclasses.replace(x, written_units=tuple(written.items()))
    assert unlike_units(x, y) == "throughput samples/s in A, ms in B; latency_p50 ms in A, s in B"
    assert unlike_units(x, x) == ""
