"""The events between compare and its workers are dataclasses, written and read by compare/protocol.py and
validated when read: a malformed event is an EventError naming the event and the field."""

from __future__ import annotations

import json

import pytest

from _devswitch.benchrecord import BenchmarkRecord
from _devswitch.compare import protocol as p

EXAMPLES = [
    p.Spawned(t=1.0, pid=10),
    p.Ready(t=1.5, pid=10, plan={"device": "cpu"}, environment={"python": "3"}, config={"backend": "jax"}, gpus=None),
    p.Unavailable(t=2.0, pid=10, reason="no GPU", gpus=0),
    p.Built(t=2.0, pid=10, model="alexnet", unit="img", parameters=123, read_back={"plan": {}}),
    p.Record(t=3.0, pid=10, record=BenchmarkRecord("m", "inference", 1, "cpu", "float32", "float32").to_dict()),
    p.Failed(t=3.0, pid=10, error="ValueError: x", note=None),
    p.Done(t=4.0, pid=10, exit_code=0, wall_s=1.25, calls=2, log_end=99, read_back={}),
    p.Interrupted(t=4.0, pid=10),
    p.Crashed(t=5.0, returncode=-9),
    p.Reference(t=5.0, pid=10, reference={"samples": 32}, loss=0.5, seconds=1.0),
    p.GivenUp(t=6.0, reason="its time limit"),
    p.Found(t=2.5, pid=10, batch=4096, knee=512, reason="batch 4352 does not fit", limit="64 MiB", trials=["a"]),
]


def test_every_kind_of_event_has_an_example():
    assert sorted(type(e).NAME for e in EXAMPLES) == sorted(p.EVENTS)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.NAME)
def test_an_event_read_back_is_the_dataclass_that_was_written(event):
    line = event.to_json()
    assert json.loads(line)["event"] == event.NAME  # the wire format keeps the "event" key
    assert p.decode_event(json.loads(line)) == event


@pytest.mark.parametrize(
    "data, field",
    [
        pytest.param({"event": "record", "t": 1}, "'record'", id="a missing field"),
        pytest.param({"event": "built", "t": 1, "model": "m", "unit": "img", "parameters": "7"}, "'parameters'",
                     id="a string where an int belongs"),
        pytest.param({"event": "ready", "t": 1, "gpus": True}, "'gpus'", id="a bool is not an int"),
        pytest.param({"event": "done", "t": 1, "wall": 3}, "['wall']", id="an unknown field"),
        pytest.param({"event": "finished", "t": 1}, "'event'", id="an unknown event"),
        pytest.param({"t": 1}, "'event'", id="no event name"),
        pytest.param({"event": "failed", "t": "soon", "error": "x"}, "'t'", id="a time that is not a number"),
    ],
)
def test_a_malformed_event_is_an_error_naming_its_field(data, field):
    with pytest.raises(p.EventError) as raised:
        p.decode_event(data, "w.events.jsonl:2")
    assert "w.events.jsonl:2" in str(raised.value) and field in str(raised.value)
    assert not isinstance(raised.value, KeyError)


def test_read_events_names_the_line_of_a_malformed_event(tmp_path):
    events = tmp_path / "w.events.jsonl"
    events.write_text('{"event": "spawned", "t": 1}\n{"event": "unavailable", "t": 2}\n')
    with pytest.raises(p.EventError) as raised:
        p.read_events(events)
    assert str(raised.value).startswith(f"{events}:2: ") and "'reason'" in str(raised.value)  # the line, the field


def test_a_record_event_carries_the_benchmark_record_the_worker_wrote():
    record = BenchmarkRecord("m", "inference", 8, "cpu", "float32", "float32", started_at=5.0, settings={"xla": 1})
    event = p.decode_event(json.loads(p.Record(t=1.0, record=record.to_dict()).to_json()))
    assert isinstance(event, p.Record) and event.benchmark == record


def test_a_record_event_with_a_malformed_record_is_an_error_naming_the_field():
    record = BenchmarkRecord("m", "inference", 8, "cpu", "float32", "float32").to_dict()
    record["metrics"]["throughput"]["value"] = "fast"
    with pytest.raises(p.EventError) as raised:
        p.decode_event({"event": "record", "t": 1.0, "record": record}, "w.jsonl:4")
    said = str(raised.value)  # the line, the field, the value
    assert said.startswith("w.jsonl:4: ") and "record.metrics.throughput.value" in said and "'fast'" in said


def test_compare_fails_the_run_of_a_worker_whose_event_is_malformed_naming_the_field(tmp_path):
    """process.Worker reads each line through decode_event: a malformed event becomes the run's failure
    (naming the event and the field), a forked child's event (another pid) is left out."""
    from _devswitch.compare.process import Worker

    worker = Worker.__new__(Worker)  # its reading half only: no process is started
    worker.pid, worker.events_path = 4242, tmp_path / "w.events.jsonl"
    bad = b'{"event": "built", "t": 1, "pid": 4242, "model": "m", "unit": "img", "parameters": "many"}'
    failed = worker._parse(bad)
    assert isinstance(failed, p.Failed) and all(token in failed.error for token in ("built", "'parameters'", "'many'"))
    assert worker._parse(b'{"event": "done", "t": 1, "pid": 99}') is None
    assert worker._parse(b'{"event": "done", "t": 1, "pid": 4242}') == p.Done(t=1, pid=4242)
