"""Statistics against hand-computed values, records, atomic and concurrent writes, append-only reports."""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import subprocess
import sys

import pytest

from conftest import SCRIPTS, clean_environ
from _devswitch import results
from _devswitch.render import calls as rendered
from _devswitch.results import CallRecord, ReportError, append_records, read_report, save_report
from _devswitch.statistics import Summary, jitter, median, percentile, std_error


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
    doc = results.records_document([record], environment={"python": "3"})
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


def test_append_adds_runs_each_with_its_own_context(tmp_path):
    target = tmp_path / "out" / "r.json"
    append_records(target, [_record(1)], environment={"a": 1})
    append_records(target, [_record(2), _record(3)], environment={"a": 2})
    runs = read_report(target)
    assert [[r.model for r in run.records] for run in runs] == [["m1"], ["m2", "m3"]]
    assert [run.environment for run in runs] == [{"a": 1}, {"a": 2}]
    assert all(run.schema_version == 2 for run in runs)
    lines = target.read_text().splitlines()
    assert len(lines) == 2 and [json.loads(line)["environment"] for line in lines] == [{"a": 1}, {"a": 2}]


def test_append_refuses_another_schema_version(tmp_path):
    target = tmp_path / "r.json"
    target.write_text(json.dumps({"schema_version": 999, "records": []}))
    with pytest.raises(ReportError) as info:
        append_records(target, [_record(1)])
    assert str(target) in str(info.value) and "schema_version" in str(info.value) and "999" in str(info.value)
    assert json.loads(target.read_text()) == {"schema_version": 999, "records": []}  # left untouched


APPENDER = """
import sys
from _devswitch.results import CallRecord, append_records
path, who = sys.argv[1], sys.argv[2]
for i in range(15):
    append_records(path, [CallRecord("predict", f"{who}-{i}", "ok", 0.1, False, None, 0.1, 1, 8, 80.0, 10.0)],
                   plan={"who": who, "i": i})
"""


def test_concurrent_appends_do_not_corrupt_the_file(tmp_path):
    target = tmp_path / "shared.json"
    script = tmp_path / "append.py"
    script.write_text(APPENDER)
    env = {**os.environ, "DEVSWITCH_DISABLE": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(target), f"p{n}"], env=env) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    runs = read_report(target)
    assert sorted(r.model for run in runs for r in run.records) == sorted(
        f"p{n}-{i}" for n in range(4) for i in range(15))
    # every run keeps its own context, not the first writer's
    assert all(run.records[0].model == f"{run.plan['who']}-{run.plan['i']}" for run in runs)


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_processes_runs_in_one_report_keep_their_own_plan(tmp_path):
    """Two `devswitch run`s at once, fp32 and fp16, into one report: each run keeps its own plan and config."""
    report = tmp_path / "runs.json"
    env = clean_environ(HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen([sys.executable, "-m", "devswitch", "run", "--device", "cpu", "--precision", precision,
                               "--report", str(report), str(SCRIPTS / "timed_script.py")], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for precision in ("fp32", "fp16")]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    runs = read_report(report)
    assert sorted(run.plan["precision"] for run in runs) == ["fp16", "fp32"]
    for run in runs:
        assert run.config["precision"]["value"] == run.plan["precision"]
        policy = {"fp32": "float32", "fp16": "mixed_float16"}[run.plan["precision"]]
        assert [r.policy for r in run.records] == [policy] * 4
    assert len(report.read_text().splitlines()) == 2


def test_appending_reads_a_few_bytes_and_never_rewrites_what_is_there(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    save_report(target, [_record(0)], {"plan": {"n": 0}})
    first = target.read_bytes()
    inode = target.stat().st_ino
    read = []
    real_pread = os.pread
    monkeypatch.setattr(results.os, "pread", lambda fd, n, offset: read.append(n) or real_pread(fd, n, offset))
    monkeypatch.setattr(results.Path, "read_text", lambda *a, **k: pytest.fail("the report was read whole"))
    for n in range(1, 30):
        assert save_report(target, [_record(n)] * 5, {"plan": {"n": n}}) == (target, None)
    assert sum(read) <= 29 * 65  # the first 64 bytes and the last one, per run: O(1), whatever the size
    data = target.read_bytes()
    assert target.stat().st_ino == inode and data.startswith(first)  # appended to, never replaced or rewritten
    monkeypatch.undo()
    assert [run.plan["n"] for run in read_report(target)] == list(range(30))


@pytest.mark.parametrize("content, shape", [
    pytest.param("[]", "a JSON array", id="a list"),
    pytest.param('{"schema_version": 1}', "a JSON object (schema_version) that is not a devswitch run",
                 id="schema 1 without records"),
    pytest.param("not json\n", "line 1: not JSON", id="text"),
])
def test_a_file_of_another_shape_keeps_the_run_beside_it(tmp_path, monkeypatch, content, shape):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "r.json"
    target.write_text(content)
    written, note = save_report(target, [_record(1), _record(2)], {"plan": {"device": "cpu"}})
    assert target.read_text() == content  # what was there is left alone
    assert written.parent == tmp_path and written.name.startswith(f"r.json.devswitch-{os.getpid()}-")
    assert written.suffix == ".jsonl"
    assert note.startswith(f"could not write the report to {target}: {shape}")
    assert note.endswith(f"; kept the 2 record(s) of this run in {written}")
    (run,) = read_report(written)
    assert run.plan == {"device": "cpu"} and [r.model for r in run.records] == ["m1", "m2"]


def test_the_run_goes_to_the_current_folder_when_the_reports_folder_cannot_be_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "a-file" / "r.json"
    (tmp_path / "a-file").write_text("")  # a file where the report's folder should be
    written, note = save_report(target, [_record(1)], {})
    assert written.parent == tmp_path and note.startswith(f"could not write the report to {target}: FileExistsError")
    assert len(read_report(written)[0].records) == 1


def test_a_directory_in_the_way_keeps_the_run_beside_it(tmp_path):
    target = tmp_path / "r.json"
    target.mkdir()
    written, note = save_report(target, [_record(1)], {})
    assert written.parent == tmp_path and "IsADirectoryError" in note
    assert len(read_report(written)[0].records) == 1


def test_with_nowhere_to_write_the_run_is_in_the_note(tmp_path, monkeypatch):
    def refuse(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(results, "_create_new", refuse)
    monkeypatch.setattr(results, "_open_for_append", refuse)
    written, note = save_report(tmp_path / "r.json", [_record(7)], {"plan": {"device": "cpu"}})
    assert written is None and "Permission denied" in note
    (run,) = results.parse_report(note.splitlines()[-1])
    assert run.records[0].model == "m7" and run.plan == {"device": "cpu"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_report_keeps_the_run_beside_it(tmp_path):
    target = tmp_path / "r.json"
    save_report(target, [_record(1)], {})
    target.chmod(0o444)
    written, note = save_report(target, [_record(2)], {})
    assert written != target and "PermissionError" in note


def test_old_single_document_reports_are_still_read_and_appended_to(tmp_path):
    target = tmp_path / "old.json"
    records = [_record(1), _record(2)]
    old = results.records_document(records, environment={"a": 1}, plan={"device": "cpu"})
    target.write_text(json.dumps(old, indent=2) + "\n")  # what devswitch wrote before: schema 1, pretty-printed
    (run,) = read_report(target)
    assert run.schema_version == 1 and run.plan == {"device": "cpu"} and len(run.records) == 2
    assert save_report(target, [_record(3)], {"plan": {"device": "gpu"}}) == (target, None)
    runs = read_report(target)
    assert [(r.schema_version, r.plan["device"], len(r.records)) for r in runs] == [(1, "cpu", 2), (2, "gpu", 1)]
    assert runs[0].records == tuple(records)  # the old content, kept, now on one line
    assert runs[0].environment == {"a": 1}
    save_report(target, [_record(4)], {"plan": {"device": "cpu"}})
    assert len(target.read_text().splitlines()) == 3


def test_a_malformed_record_is_an_error_naming_the_file_the_run_the_record_and_the_field(tmp_path):
    target = tmp_path / "r.jsonl"
    save_report(target, [_record(1)], {})
    save_report(target, [_record(2), _record(3)], {})
    first, second = target.read_text().splitlines()
    run = json.loads(second)
    run["records"][1]["metrics"]["wall"]["value"] = "fast"  # a hand edit
    target.write_text(first + "\n" + json.dumps(run) + "\n")
    with pytest.raises(ReportError) as info:
        read_report(target)
    assert f"{target}: run 2 record 2.metrics.wall.value" in str(info.value) and "str" in str(info.value)
    save_report(target, [_record(4)], {})  # appending still works: it never reads the records
    assert len(target.read_text().splitlines()) == 3


def test_a_record_with_a_nan_loss_reads_back_with_the_nan(tmp_path):
    save_report(tmp_path / "r.jsonl", [_record(1, loss=float("nan"))], {})  # written as the string "nan"
    (run,) = read_report(tmp_path / "r.jsonl")
    (record,) = run.records
    assert math.isnan(record.epochs[0].loss) and record.model == "m1"


def test_a_run_cut_short_is_not_glued_to_the_next(tmp_path):
    target = tmp_path / "r.json"
    save_report(target, [_record(1)], {})
    with target.open("a") as handle:
        handle.write('{"schema_version":2,"type":"run","rec')  # a writer killed mid-line
    save_report(target, [_record(2)], {})
    lines = target.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["records"][0]["model"] == "m2"
    with pytest.raises(ReportError) as info:
        read_report(target)
    assert f"{target.name}:2: " in str(info.value)  # the file and the line cut short


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)], ids=["umask 022", "umask 077"])
def test_files_follow_the_umask(tmp_path, monkeypatch, mask, mode):
    monkeypatch.chdir(tmp_path)
    with umask(mask):
        results.write_atomic(tmp_path / "atomic.txt", "x")
        results.write_atomic(tmp_path / "atomic.txt", "replaced")
        save_report(tmp_path / "report.json", [_record(1)], {})
        (tmp_path / "other.json").write_text("[]")
        beside, _ = save_report(tmp_path / "other.json", [_record(1)], {})
    for path in (tmp_path / "atomic.txt", tmp_path / "report.json", beside):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_render_calls_shows_status_and_nan():
    failed = CallRecord("fit", "m", "failed: ValueError: boom", 1.0, True, 1.0, None, 4, None, None, None,
                        nonfinite_loss_epochs=(1,))
    text = rendered.render_calls([_record(1), failed])
    assert "failed: ValueError: boom" in text and "loss NaN/inf at epoch 2" in text
    assert "640 samples/s" in text


def test_call_records_give_global_and_per_replica_throughput():
    record = CallRecord("fit", "m", "ok", 1.0, True, 0.5, 0.5, 10, 320, 640.0, 20.0, replicas=2, workers=2)
    metrics = record.to_dict()["metrics"]
    assert metrics["steady_throughput"]["value"] == 640.0
    assert metrics["steady_throughput_per_replica"] == {"value": 320.0, "unit": "samples/s"}
    assert "2 replicas, 2 worker(s)" in rendered.render_calls([record])


# --- rendering: one table model (render/calls.py), text, rich, HTML and markdown ---------------

def _realistic_calls(n: int = 6) -> list[CallRecord]:
    """Calls as a real script makes them: fit, predict and evaluate, mixed precision, one failure."""
    kinds = [
        CallRecord("fit", "sequential_1", "ok", 12.5, True, 3.2, 9.3, 100, 3200, 12345.6, 100.0,
                   epochs=tuple(results.EpochTime(e, 3.1, 3.0, 0.1, 0.5) for e in range(4)), device="CPU:0",
                   policy="mixed_bfloat16", applied_policy="mixed_bfloat16"),
        CallRecord("predict", "sequential_1", "ok", 0.8, True, 0.8, None, 4, 128, None, None, device="CPU:0",
                   policy="float32", applied_policy="mixed_bfloat16"),
        CallRecord("evaluate", "functional_2", "failed: ValueError: Input 0 of layer dense is incompatible with "
                   "the layer: expected axis -1 of input shape to have value 4", 0.02, False, None, 0.02, 1, 32,
                   1600.0, 50.0, device="GPU:0", policy="float32"),
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


def _words_of_shown_cells(table, width: int, gap: int) -> set[str]:
    fitted = table.fit(width, gap=gap)
    return {word for cell in (*fitted.headers, *(c for row in fitted.rows for c in row)) for word in cell.split()}


def test_the_summary_at_80_columns_breaks_no_word_in_text_or_rich():
    """At 80 columns every word of every shown cell appears whole, and the dropped columns are named."""
    import io

    from rich.console import Console

    from _devswitch.render import calls, terminal, text

    table = calls.summary_table(_realistic_calls())
    plain = text.render(table, 80)
    console = Console(file=io.StringIO(), width=80, record=True, color_system=None)
    terminal.print_table(table, console)
    rich_out = console.export_text()
    for out, gap in ((plain, 2), (rich_out, terminal.GAP)):
        assert max(len(line.rstrip()) for line in out.splitlines()) <= 80
        words = _words_of_shown_cells(table, 80, gap)
        assert {"predict", "evaluate", "samples/s"} <= words
        tokens = set(out.split())
        assert words <= tokens, sorted(words - tokens)
        assert "not shown at this width: notes, policy" in out
        assert "predic" not in tokens and "float3" not in tokens and "(traci" not in tokens


def test_an_empty_column_is_dropped_without_being_named():
    from _devswitch.render.table import Column, Table
    from _devswitch.render.text import render

    table = Table.of(["call", Column("notes", optional=True), "rate"], [["fit", "", "1.0"], ["predict", "-", "2"]])
    out = render(table, 80)
    assert "notes" not in out and out.splitlines()[0].split() == ["call", "rate"]
    assert "not shown" not in out


def test_a_long_summary_prints_a_bounded_number_of_lines():
    """200 calls (192 were seen under a test runner): the first and last ten, the rest counted, cells clipped."""
    import io

    from _devswitch.render.calls import SUMMARY_CELL, summary_table

    records = _realistic_calls(200)
    plain = io.StringIO()
    rendered.print_calls(records, plain)
    lines = plain.getvalue().splitlines()
    assert "... rows 11-190 of 200 (60 predict, 60 evaluate, 60 fit) not shown: devswitch.summary()" in lines
    assert len(lines) <= 80
    assert max(len(line) for line in lines) <= 120
    notes = [row[-1] for row in summary_table(records).rows if row[-1]]
    assert notes and all(len(n) <= SUMMARY_CELL for n in notes)
    assert all(n.startswith("failed: ValueError: Input 0") and n.endswith("...") for n in notes if "failed" in n)

    class Tty(io.StringIO):
        def isatty(self):
            return True

    terminal = Tty()
    rendered.print_calls(records, terminal)
    lines = terminal.getvalue().splitlines()
    said = " ".join(line.strip() for line in lines)  # the terminal wraps the line at its width
    assert "... rows 11-190 of 200 (60 predict, 60 evaluate, 60 fit) not shown: devswitch.summary()" in said
    assert len(lines) <= 80
    assert len(str(rendered.Calls(records)).splitlines()) >= 200  # devswitch.summary() shows them all


def test_html_and_markdown_escape_cell_values():
    from _devswitch.render import html, markdown
    from _devswitch.render.table import Table

    table = Table.of(["model", "notes"], [["<script>alert(1)</script>", "a | b"]], title="t <b>")
    page = html.render(table)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "t &lt;b&gt;" in page
    md = markdown.render(table)
    assert "| a \\| b |" in md and md.count("\n| ") == 3  # header, rule, one row of two cells


def test_a_timing_report_renders_each_run_as_a_table():
    out = rendered.render_report_runs([results.ReportRun(2, (_record(1),), plan={"device": "cpu", "precision": "fp32"}),
                                       results.ReportRun(2, ())])
    assert out.startswith("run 1: device=cpu, precision=fp32; keras ?, tensorflow\n#  call")
    assert "640 samples/s" in out and "run 2: no plan recorded" in out and "(no timed calls)" in out


def test_a_title_with_brackets_is_printed_as_it_is_not_read_as_rich_markup():
    import io

    from rich.console import Console

    from _devswitch.render import terminal
    from _devswitch.render.table import Table

    title = "configuration (files read: /home/u/[proj]/.devswitchrc [/x])"
    out = io.StringIO()
    terminal.print_table(Table.of(["key", "value"], [["device", "cpu"]], title=title), Console(file=out, width=80))
    assert title in out.getvalue() and "device" in out.getvalue()
