"""A BenchmarkRecord read back from its JSON form is the same dataclass that was written, and a malformed
record is a ValueError naming the field (reading is input handling)."""

from __future__ import annotations

import json

import pytest

from _devswitch.benchrecord import BenchmarkRecord
from _devswitch.energy import Energy
from _devswitch.statistics import Summary


def _record(**more) -> BenchmarkRecord:
    return BenchmarkRecord(
        model="alexnet", mode="inference", batch=8, device="CPU:0", policy="mixed_bfloat16",
        compute_dtype="bfloat16", first_call_s=1.5, warmup_iterations=3, warmup_s=0.25,
        summary=Summary.of([0.010, 0.012, 0.011, 0.013, 0.009, 0.0105], batch=8, steps_per_sample=2),
        predict_samples_per_s=500.0, predict_s=0.5, flops_per_sample=1.4e9, flops_note="Conv2D and Dense",
        peak_gflops=300.0, peak_source="measured matmul", probe_s=0.75,
        energy=Energy(True, "RAPL", "package", joules=12.0, seconds=1.0, mean_watts=12.0, samples=4),
        host_rss_peak_bytes=1 << 30, gpu_memory_peak_bytes=None, versions={"keras": "3.11"}, backend="jax",
        training={}, started_at=1700000000.5, rounds=3, accuracy={"max_abs": 0.01},
        more_phases_s={"predict_first_call": 0.2, "accuracy": 0.1}, samples={"round": [1, 2]}, math="ieee",
        **more,
    )


@pytest.mark.parametrize("record", [
    pytest.param(_record(), id="measured"),
    pytest.param(_record(peak_memory_bytes=5 << 20, peak_memory_source="allocator"), id="with its peak memory"),
    pytest.param(_record(settings={"xla": {"value": "true", "source": "compare"}}), id="with varied settings"),
    pytest.param(BenchmarkRecord("m", "training", 1, "cpu", "float32", "float32", status="failed: OOM",
                                 started_at=1.0), id="failed, nothing measured"),
])
def test_a_record_read_back_from_json_is_the_record_that_was_written(record):
    data = json.loads(json.dumps(record.to_dict()))
    back = BenchmarkRecord.from_dict(data)
    assert back.to_dict() == data
    assert back == record


@pytest.mark.parametrize("change, field", [
    pytest.param(lambda d: d.pop("model"), "'model'", id="a missing field"),
    pytest.param(lambda d: d.update(batch="8"), "record.batch", id="a string batch"),
    pytest.param(lambda d: d["metrics"]["throughput"].update(value="fast"), "record.metrics.throughput.value",
                 id="a string throughput"),
    pytest.param(lambda d: d.update(metrics=[]), "record.metrics", id="metrics not an object"),
    pytest.param(lambda d: d["phases_s"].update(warmup={}), "record.phases_s.warmup", id="an object as seconds"),
])
def test_a_malformed_record_names_its_field(change, field):
    data = json.loads(json.dumps(_record().to_dict()))
    change(data)
    with pytest.raises(ValueError) as raised:
        BenchmarkRecord.from_dict(data, "record")
    assert field in str(raised.value) and not isinstance(raised.value, KeyError)


def test_the_per_batch_peak_memory_is_a_metric_in_bytes_and_older_files_without_it_read_as_none():
    record = _record(peak_memory_bytes=300 * 2**20, peak_memory_source="resident memory above its level before")
    data = json.loads(json.dumps(record.to_dict()))
    assert data["metrics"]["peak_memory"] == {
        "value": 300 * 2**20, "unit": "bytes", "note": "resident memory above its level before"}
    assert BenchmarkRecord.from_dict(data).peak_memory_bytes == 300 * 2**20
    del data["metrics"]["peak_memory"]  # a file written before the per-batch peak existed
    old = BenchmarkRecord.from_dict(data)
    assert old.peak_memory_bytes is None and old.peak_memory_source == ""


def test_a_record_of_another_version_with_more_keys_is_read():
    data = {**_record().to_dict(), "a_later_field": 1}
    assert BenchmarkRecord.from_dict(data).batch == 8
