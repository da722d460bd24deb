"""Statistics against hand-computed values, records, atomic and concurrent writes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from devswitch import results
from devswitch.results import CallRecord, Summary, append_records, jitter, median, percentile, std_error


def test_median_and_percentiles_by_hand():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    values = [10, 20, 30, 40, 50]
    assert percentile(values, 50) == 30
    assert percentile(values, 90) == pytest.approx(46.0)   # rank 3.6: 40 + 0.6 * 10
    assert percentile(values, 99) == pytest.approx(49.6)   # rank 3.96
    assert percentile([7], 99) == 7


def test_standard_error_and_jitter_by_hand():
    values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    # mean 5, sum of squares 32, sample variance 32/7, std error sqrt(32/7)/sqrt(8)
    assert std_error(values) == pytest.approx(math.sqrt(32 / 7) / math.sqrt(8))
    # median 4.5; absolute deviations 2.5,0.5,0.5,0.5,0.5,0.5,2.5,4.5 -> median 0.5
    assert jitter(values) == pytest.approx(1.4826 * 0.5)
    assert std_error([3.0]) == 0.0


def test_summary_from_durations():
    s = Summary.of([0.5, 0.25, 0.25, 1.0], batch=10)
    # per-iteration rates 20, 40, 40, 10 samples/s
    assert s.samples_per_s == 30.0
    assert s.samples_per_s_overall == pytest.approx(40 / 2.0)
    assert s.latency_p50_ms == pytest.approx(375.0)
    assert s.n == 4 and s.total_s == 2.0
    with pytest.raises(ValueError):
        Summary.of([], batch=1)


def _record(i: int, loss: float = 1.0) -> CallRecord:
    return CallRecord("fit", f"m{i}", "ok", 1.0, True, 0.5, 0.5, 10, 320, 640.0, 20.0,
                      epochs=(results.EpochTime(0, 0.5, 0.4, 0.1, loss),))


def test_records_are_frozen_and_serialise_with_units():
    record = _record(1, loss=float("nan"))
    with pytest.raises(Exception):
        record.wall_s = 2.0  # type: ignore[misc]
    doc = results.document([record], environment={"python": "3"})
    assert doc["schema_version"] == results.SCHEMA_VERSION
    metrics = doc["records"][0]["metrics"]
    assert metrics["steady_throughput"] == {"value": 640.0, "unit": "samples/s"}
    assert metrics["wall"]["unit"] == "s"
    assert doc["records"][0]["epochs"][0]["loss"] == "nan"  # JSON has no NaN: written as a string
    json.dumps(doc, allow_nan=False)


def test_write_atomic_never_leaves_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    results.write_atomic(target, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", broken_replace)
    with pytest.raises(OSError):
        results.write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # the temporary file was removed


def test_append_adds_to_an_existing_file(tmp_path):
    target = tmp_path / "out" / "r.json"
    append_records(target, [_record(1)], environment={"a": 1})
    append_records(target, [_record(2), _record(3)], environment={"a": 2})
    doc = json.loads(target.read_text())
    assert [r["model"] for r in doc["records"]] == ["m1", "m2", "m3"]
    assert doc["environment"] == {"a": 1}


def test_append_refuses_another_schema_version(tmp_path):
    target = tmp_path / "r.json"
    target.write_text(json.dumps({"schema_version": 999, "records": []}))
    with pytest.raises(ValueError, match="schema_version 999"):
        append_records(target, [_record(1)])


APPENDER = """
import sys
from devswitch.results import CallRecord, append_records
path, who = sys.argv[1], sys.argv[2]
for i in range(15):
    append_records(path, [CallRecord("predict", f"{who}-{i}", "ok", 0.1, False, None, 0.1, 1, 8, 80.0, 10.0)])
"""


def test_concurrent_appends_do_not_corrupt_the_file(tmp_path):
    target = tmp_path / "shared.json"
    script = tmp_path / "append.py"
    script.write_text(APPENDER)
    env = {**os.environ, "DEVSWITCH_DISABLE": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(target), f"p{n}"], env=env) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    doc = json.loads(target.read_text())
    names = sorted(r["model"] for r in doc["records"])
    assert names == sorted(f"p{n}-{i}" for n in range(4) for i in range(15))


def test_render_calls_shows_status_and_nan():
    failed = CallRecord("fit", "m", "failed: ValueError: boom", 1.0, True, 1.0, None, 4, None, None, None,
                        nonfinite_loss_epochs=(1,))
    text = results.render_calls([_record(1), failed])
    assert "failed: ValueError: boom" in text and "loss NaN/inf at epoch 2" in text
    assert "640 samples/s" in text


def test_call_records_give_global_and_per_replica_throughput():
    record = CallRecord("fit", "m", "ok", 1.0, True, 0.5, 0.5, 10, 320, 640.0, 20.0, replicas=2, workers=2)
    metrics = record.to_dict()["metrics"]
    assert metrics["steady_throughput"]["value"] == 640.0
    assert metrics["steady_throughput_per_replica"] == {"value": 320.0, "unit": "samples/s"}
    assert "2 replicas, 2 worker(s)" in results.render_calls([record])
