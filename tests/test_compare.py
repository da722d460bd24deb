"""devswitch compare end to end, with tiny iteration counts."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SCRIPTS, clean_environ, started_together
from errorparts import printed
from _devswitch.cli import main
from _devswitch.backends import detect_gpus

TINY = ["--batch-sizes", "1,8", "--iterations", "3", "--warmup", "1", "--no-peak-probe", "--accuracy-samples", "0"]


def compare(*args: str, cwd, timeout=300, umask=None):
    environ = clean_environ(HOME=str(cwd), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "devswitch", "compare", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=None if umask is None else (lambda: os.umask(umask)))


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def cells_of(doc: dict) -> list[dict]:
    return doc["cells"]


def records_of(doc: dict) -> list[dict]:
    return [c["record"] for c in doc["cells"] if c.get("record")]


@pytest.mark.subprocess
def test_mlp_across_precisions_writes_consistent_outputs(shared_compare):
    """The shared run: cpu,gpu x fp32,fp16 x batch 1,8 -> five files that agree with each other."""
    proc, out = shared_compare.proc, shared_compare.out
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "results.md", "results.png",
                                               "results.html"}
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema_version"] == 2
    rows = list(csv.DictReader((out / "results.csv").open()))
    markdown = (out / "results.md").read_text()
    assert markdown in proc.stdout  # the printed table is the written one
    assert len(doc["cells"]) == len(rows) == 8  # 2 devices x 2 precisions x 2 batch sizes
    by_key = {(r["device"], r["precision"], int(r["batch"])): r for r in rows}
    for cell in doc["cells"]:
        record = cell["record"]
        if cell["status"] != "ok":
            assert record is None
            continue
        assert record["batch"] == cell["batch"]  # each cell carries its own record: nothing paired by position
        assert record["policy"] == {"fp32": "float32", "fp16": "mixed_float16"}[cell["precision"]]
        row = by_key[(cell["device"], cell["precision"], cell["batch"])]
        assert float(row["throughput"]) == pytest.approx(record["metrics"]["throughput"]["value"])
        assert f"{record['metrics']['throughput']['value']:,.1f}" in markdown
    gpu = [c for c in doc["cells"] if c["device"] == "gpu"]
    assert len(gpu) == 4
    if detect_gpus():  # a GPU machine: its columns are measured too
        assert len(records_of(doc)) == 8 and all(c["status"] == "ok" for c in gpu)
    else:  # no GPU: the GPU columns are there, unavailable with the reason, not silently dropped
        assert len(records_of(doc)) == 4 and all(c["status"].startswith("unavailable: TensorFlow sees no GPU")
                                                 for c in gpu)
        mark = re.search(r"unavailable \[(\d+)\]", markdown)  # its footnote's number: after the peaks' notes
        assert mark and f"[{mark.group(1)}] TensorFlow sees no GPU" in markdown
        # learnt once: the GPU configurations started no process
        assert [c["device"] for c in doc["timing"]["configurations"]] == ["cpu", "cpu"]
    assert all(r["status"] == "ok" for r in records_of(doc)) and "| samples/s |" in markdown
    assert {r["speedup_vs_baseline"] for r in rows if r["device"] == "cpu" and r["precision"] == "fp32"} == {"1.0"}
    timing = doc["timing"]
    assert timing["total_s"] > 0 and timing["sum_startup_s"] > 0 and timing["sum_measured_s"] > 0
    assert len(timing["configurations"]) == (4 if detect_gpus() else 2)
    # the progress display: 3 iterations, so 3 rounds taken in turn; the GPU columns waited for the CPU ones
    assert "[round 3] cpu fp32 -> cpu fp16" in proc.stderr and "gpu fp16: unavailable" in proc.stderr
    assert doc["complete"] is True and "Incomplete" not in markdown
    # 3 timed samples: each interval is the whole range, and every word about it says 75%, never 95%
    assert "(75%)" in markdown and "95% intervals" not in markdown
    assert "Recommendation, batch 8:" in markdown and "paired by round over 3 rounds, its 75% interval" in markdown
    assert "| speed-up vs cpu fp32 | 1.00x (baseline) |" in markdown and "(75%) |" in markdown
    for name in ("results.json", "results.csv", "results.md", "results.png"):  # all as the umask says
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~current_umask(), name


@pytest.fixture(scope="module")
def failing_factory_run(tmp_path_factory):
    """compare of a factory that refuses fp16, into a folder of earlier results with --force under umask 077;
    started with the module so that it runs while the interrupt tests wait on their workers."""
    def earlier_results(folder):
        (folder / "out").mkdir()
        for name in ("results.json", "results.csv", "results.md", "results.png"):
            (folder / "out" / name).write_text("earlier")

    jobs = {"failing": (["-m", "devswitch", "compare", f"{SCRIPTS / 'factories.py'}:fp32_only", "--devices", "cpu",
                         "--precisions", "fp32,fp16", *TINY, "--no-predict-baseline", "--out", "out", "--force"],
                        {}, 0o077)}
    with started_together(tmp_path_factory.mktemp("failing"), jobs, {"failing": earlier_results}) as wait:
        yield lambda: wait("failing")


@pytest.fixture(autouse=True, scope="module")
def _start_the_failing_factory_run_first(request):
    """Start it before this module's first test when its test was selected (it then runs beside the others)."""
    if any(item.module is request.module and "failing_factory" in item.name for item in request.session.items):
        request.getfixturevalue("failing_factory_run")


@pytest.mark.subprocess
def test_a_failing_factory_fails_its_row_only_and_force_overwrites_as_the_umask_says(failing_factory_run):
    """One run for three behaviours: a factory that raises is a failed row (exit 5) while the others are
    measured; --force replaces earlier results; the files get the permissions the umask gives."""
    proc, folder = failing_factory_run()
    out = folder / "out"
    assert proc.returncode == 5, proc.stderr
    doc = json.loads((out / "results.json").read_text())
    cells = {(c["precision"], c["batch"]): c["status"] for c in doc["cells"]}
    assert cells[("fp32", 1)] == "ok" and cells[("fp32", 8)] == "ok"
    assert cells[("fp16", 1)] == "failed: RuntimeError: this factory refuses mixed precision"
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "results.md", "results.png",
                                               "results.html"}
    for path in out.iterdir():
        assert path.read_bytes() != b"earlier" and stat.S_IMODE(path.stat().st_mode) == 0o600, path


def _as_from_a_terminal():
    # A shell starts background jobs with SIGINT ignored, and children inherit that; a user at a
    # terminal has it at its default. Restore the default so the test presses a real Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.subprocess
@pytest.mark.parametrize("signum, rounds", [(signal.SIGINT, "3"), (signal.SIGTERM, "1")],
                         ids=["Ctrl-C in round 2", "SIGTERM, one after another"])
def test_interrupt_stops_cleanly_and_keeps_finished_rows(tmp_path, signum, rounds):
    import threading

    out = tmp_path / "out"
    environ = clean_environ(HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "devswitch", "compare", "mlp", "--devices", "cpu",
                             # fp16 runs on every CPU (emulated); bf16 only where it is native, so the
                             # one-after-another case, stopped in its first column, is the one that may name it
                             "--precisions", "fp32,fp16" if rounds != "1" else "fp32,bf16,fp16", "--batch-sizes",
                             "4", "--iterations", "3",
                             "--rounds", rounds, "--min-time", "3" if rounds != "1" else "60", "--no-peak-probe",
                             "--no-predict-baseline", "--accuracy-samples", "0", "--out", str(out)],
                            cwd=tmp_path, env=environ, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=_as_from_a_terminal)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        if rounds == "1":  # the first worker has built its model: its 60 s of measuring are under way
            built = (lambda: '"built"' in "".join(p.read_text() for p in
                                                  out.glob(".devswitch-work-*/tensorflow-*.events.jsonl")))
            _wait_for(built, 180, "the first configuration (after the reference run) to build its model")
        else:  # every configuration has taken its turn in round 1 (3 s each): round 2 is under way
            _wait_for(lambda: any(line.startswith("[round 2]") for line in lines), 180, "round 2")
        proc.send_signal(signum)
        proc.wait(timeout=90)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(lines)
    assert proc.returncode == 130, stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["interrupted"] is True
    statuses = [c["status"] for c in doc["cells"]]
    if rounds == "1":
        assert statuses[0] in ("interrupted", "ok")
        assert statuses[1:] == ["not run (interrupted)", "not run (interrupted)"]
        assert "keeping every finished row" in stderr
    else:  # round 1 was measured for every configuration: nothing of it is lost
        assert statuses == ["ok", "ok"], statuses
        for cell in doc["cells"]:
            samples = cell["record"]["samples"]
            assert 1 <= cell["record"]["rounds"] <= 2 and 0 in samples["round"] and 2 not in samples["round"]
        assert "keeping every round already measured" in stderr
    assert (out / "results.md").exists() and (out / "results.csv").exists()


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's zombie may wait for a reaper that never comes)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _workers_of(out: Path) -> list[int]:
    """The pids of devswitch.worker processes whose spec lies under ``out``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"_devswitch.worker" in argv and any(str(out).encode() in arg for arg in argv) and _alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _wait_for(condition, timeout: float, what: str, log: Path | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what}" + (f"; compare said:\n{log.read_text()}" if log else ""))


@pytest.mark.subprocess
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the worker through /proc")
def test_compare_killed_by_sigkill_keeps_finished_rows_and_leaves_no_worker_running(tmp_path):
    """SIGKILL of compare: the rows finished so far are on disk, and the running worker ends with it."""
    out = tmp_path / "out"
    log = tmp_path / "compare.log"
    environ = clean_environ(HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    with log.open("w") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "devswitch", "compare", str(SCRIPTS / "slow_factory.py"),
                                 "--devices", "cpu", "--precisions", "fp32,fp16", "--batch-sizes", "2",
                                 "--iterations", "3", "--warmup", "1", "--no-peak-probe", "--no-predict-baseline",
                                 "--rounds", "1", "--accuracy-samples", "0", "--out", str(out)],
                                cwd=tmp_path, env=environ, stdout=handle, stderr=handle)
    try:
        def first_row_on_disk():
            try:
                doc = json.loads((out / "results.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                return None
            return doc if any(c["precision"] == "fp32" and c["status"] == "ok" for c in doc["cells"]) else None

        _wait_for(first_row_on_disk, 180, "the fp32 row in results.json", log)
        (worker,) = _wait_for(lambda: _workers_of(out), 60, "the fp16 worker", log)
        # once it has said "spawned", it has set up its death signal and its parent watch
        _wait_for(lambda: "spawned" in "".join(p.read_text() for p in
                                               out.glob(".devswitch-work-*/tensorflow-cpu-fp16.events.jsonl")),
                  60, "the fp16 worker to start", log)
        proc.kill()
        proc.wait(timeout=10)
        _wait_for(lambda: not _alive(worker), 5, f"worker {worker} to end with its parent")
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _workers_of(out):
            os.kill(pid, signal.SIGKILL)
    doc = json.loads((out / "results.json").read_text())
    assert doc["complete"] is False
    assert [(c["precision"], c["status"]) for c in doc["cells"]] == [("fp32", "ok"), ("fp16", "not run (pending)")]
    assert len(records_of(doc)) == 1 and records_of(doc)[0]["metrics"]["throughput"]["value"] > 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "not run (pending)"]
    assert "Incomplete: written while compare was running" in (out / "results.md").read_text()
    # the scratch folder stays with the rows (its logs say what the killed run was doing) ...
    (leftover,) = out.glob(".devswitch-work-*")
    assert (leftover / "tensorflow-cpu-fp16.log").exists()
    # ... until the next compare into this folder clears it
    from _devswitch.compare import prepare_output

    prepare_output(str(out), force=True).close()
    assert not list(out.glob(".devswitch-work-*"))


CHILD = """
import os, signal, sys
from _devswitch import workerbase
if sys.argv[1] == "prctl":
    assert workerbase.set_parent_death_signal()
else:
    workerbase.watch_parent(os.getppid(), interval=0.1)
print("ready", flush=True)
signal.pause()  # until a signal ends it (the test's point: its parent's death must)
"""

MIDDLE = """
import signal, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline() == "ready\\n"
print(child.pid, flush=True)
signal.pause()  # until the test kills it
"""


@pytest.mark.parametrize("how", [
    pytest.param("prctl", id="Linux death signal", marks=pytest.mark.skipif(not sys.platform.startswith("linux"),
                                                                          reason="prctl is Linux only")),
    pytest.param("watch", id="portable parent watch"),
])
def test_a_worker_ends_when_its_parent_is_killed(tmp_path, how):
    environ = clean_environ(DEVSWITCH_DISABLE="1")
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, CHILD, how], stdout=subprocess.PIPE, text=True,
                              env=environ)
    try:
        child = int(middle.stdout.readline())
        assert _alive(child)
        middle.kill()
        middle.wait(timeout=10)
        _wait_for(lambda: not _alive(child), 5, f"the child {child} to end with its parent")
    finally:
        middle.kill()
        with __import__("contextlib").suppress(NameError, ProcessLookupError):
            if _alive(child):
                os.kill(child, signal.SIGKILL)


def test_a_worker_whose_parent_died_before_it_set_its_death_signal_ends_at_once():
    proc = subprocess.run([sys.executable, "-c", "from _devswitch import workerbase\n"
                           "workerbase.die_with_parent(parent_pid=1)\nprint('still running')"],
                          env=clean_environ(DEVSWITCH_DISABLE="1"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 137 and "still running" not in proc.stdout


class NoWorker:
    def __init__(self, *args, **kwargs):
        pytest.fail("a worker was started")


@pytest.mark.parametrize("make_out, args, message", [
    pytest.param(lambda d: (d / "afile.txt").write_text("keep") and d / "afile.txt", [],
                 "afile.txt: exists and is not a folder; nothing was run", id="an existing file"),
    pytest.param(lambda d: (d / "afile.txt").write_text("keep") and d / "afile.txt" / "sub", [],
                 "cannot create this folder: Not a directory; nothing was run", id="under a file"),
    pytest.param(lambda d: Path("/proc/devswitch-no-such/out"), [], "cannot create this folder", id="not creatable"),
    pytest.param(lambda d: (d / "old").mkdir() or (d / "old" / "results.json").write_text("keep") and d / "old", [],
                 "the folder {out} already holds results (results.json); nothing was run", id="holds results"),
    pytest.param(lambda d: (d / "old").mkdir() or (d / "old" / "results.csv").write_text("keep") and d / "old", [],
                 "pass --force to overwrite them, or choose another --out", id="hint: --force"),
    pytest.param(lambda d: (d / "old" / "results.md").mkdir(parents=True) or d / "old", ["--force"],
                 "results.md is not a regular file", id="a folder named results.md, even with --force"),
])
def test_an_output_place_that_cannot_take_the_results_is_refused_before_anything_runs(
        tmp_path, monkeypatch, capsys, make_out, args, message):
    from _devswitch.compare import process

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(process.subprocess, "Popen", NoWorker)
    out = make_out(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main(["compare", "mlp", "--devices", "cpu", "--precisions", "fp32", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and message.format(out=out) in err and "Traceback" not in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written
    assert not list(tmp_path.rglob(".devswitch-work-*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_output_folder_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    from _devswitch.compare import process

    monkeypatch.setattr(process.subprocess, "Popen", NoWorker)
    out = tmp_path / "ro"
    out.mkdir(mode=0o555)
    assert main(["compare", "mlp", "--devices", "cpu", "--precisions", "fp32", "--out", str(out)]) == 2
    printed(capsys.readouterr().err, where=f"--out {out}", named=["Permission denied"])  # the folder, the reason


def test_the_default_output_folder_is_always_a_new_one(tmp_path, monkeypatch):
    from _devswitch.compare import prepare_output

    monkeypatch.chdir(tmp_path)
    now = time.mktime((2024, 1, 2, 3, 4, 5, 0, 0, -1))
    first, second = prepare_output("", now=now), prepare_output("", now=now)  # two runs in the same second
    assert first.path == Path("devswitch-results/20240102-030405")
    assert second.path == Path("devswitch-results/20240102-030405-2")
    assert first.work.parent == first.path and first.work.is_dir()
    first.close()
    assert not first.work.exists() and first.path.is_dir()


def test_scratch_folders_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    from _devswitch.compare import prepare_output

    dead = tmp_path / ".devswitch-work-999999999"  # above any pid_max: no such process
    alive = tmp_path / ".devswitch-work-1"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "x.log").write_text("x")
    prepare_output(str(tmp_path)).close()
    assert not dead.exists() and (alive / "x.log").exists()


@pytest.mark.parametrize("args, message", [
    pytest.param(["--devices", "tpu"], "--devices: 'tpu' is not valid", id="unknown device"),
    pytest.param(["--precisions", "fp8"], "--precisions: 'fp8' is not valid", id="unknown precision"),
    pytest.param(["--batch-sizes", "0"], "--batch-sizes: '0' is not a whole number >= 1", id="zero batch"),
    pytest.param(["--batch-sizes", "1,x"], "--batch-sizes: 'x' is not a whole number", id="batch not a number"),
    pytest.param(["--iterations", "-1"], "--iterations: '-1' is not a whole number >= 1", id="bad iterations"),
    pytest.param(["--min-time", "nan"], "--min-time: 'nan' is not a number >= 0", id="min-time nan"),
    pytest.param(["--min-time", "inf"], "--min-time: 'inf' is not a number >= 0", id="min-time inf"),
    pytest.param(["--baseline", "gpu/bf16", "--devices", "cpu"], "--baseline gpu/bf16: not one of the columns",
                 id="baseline not a column"),
    pytest.param(["vgg"], "unknown model 'vgg'", id="unknown model"),
    pytest.param(["missing.py:f"], "no such file: missing.py", id="missing model file"),
    pytest.param(["--devices", "cpu,cpu"], "names an item twice", id="repeated device"),
])
def test_bad_options_are_clear_errors_before_anything_runs(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "devswitch-results").exists()


def test_plot_without_matplotlib_is_a_one_line_note(monkeypatch, tmp_path):
    from _devswitch import compare as cmp

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    doc = cmp.runs.factory_results(cmp.Options(devices=("cpu",), precisions=("fp32",), batch_sizes=(1,)), [],
                              [cmp.Cell("tensorflow", "cpu", "fp32", 1, "interrupted")], 1.0, True)
    (tmp_path / "results.png").write_text("an earlier run's plot")
    from _devswitch.render.outputs import write_outputs

    notes = write_outputs(doc, tmp_path)
    assert notes == ["results.png not written: matplotlib is not installed (pip install 'devswitch[plot]')"]
    # no plot of other results is left beside these
    assert {p.name for p in tmp_path.iterdir()} == {"results.json", "results.csv", "results.md", "results.html"}


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)], ids=["umask 022", "umask 077"])
def test_result_files_follow_the_umask(tmp_path, mask, mode):
    from _devswitch import compare as cmp

    doc = cmp.runs.factory_results(cmp.Options(devices=("cpu",), precisions=("fp32",), batch_sizes=(1,)), [],
                              [cmp.Cell("tensorflow", "cpu", "fp32", 1, "interrupted")], 1.0, True)
    from _devswitch.render.outputs import write_outputs

    old = os.umask(mask)
    try:
        assert write_outputs(doc, tmp_path) == []
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["results.json", "results.csv", "results.md", "results.png", "results.html"], mode)


@pytest.mark.parametrize("gpus, cpu_bf16, ccs, expected", [
    pytest.param((), False, (), "this CPU has no native bf16", id="CPU without bf16: unavailable"),
    pytest.param((), True, (), None, id="CPU with AVX512-BF16: runs"),
    pytest.param((0,), False, ((7, 5),), "compute capability 7.5) has no bf16 tensor cores", id="GPU cc 7.5"),
    pytest.param((0,), False, ((8, 0),), None, id="GPU cc 8.0: runs"),
])
def test_bf16_without_hardware_support_is_unavailable_in_compare(monkeypatch, gpus, cpu_bf16, ccs, expected):
    from _devswitch import devices, workerbase

    features = frozenset({"AVX512-BF16"}) if cpu_bf16 else frozenset()
    inventory = devices.Inventory(devices.Cpu("cpu", 2, features),
                                  tuple(devices.Gpu(i, "gpu", cc) for i, cc in enumerate(ccs)))
    plan = devices.Plan("gpu:0" if gpus else "cpu", gpus, "bf16", "test", "test")
    reason = workerbase.unsupported_reason(plan, inventory)
    assert (reason is None) if expected is None else (expected in reason)
    assert workerbase.unsupported_reason(devices.Plan("cpu", (), "fp16", "t", "t"), inventory) is None  # fp16 runs


@pytest.mark.parametrize("target, expected", [
    pytest.param("mlp", ("mlp", "", False), id="bundled"),
    pytest.param(str(SCRIPTS / "factories.py"), (str(SCRIPTS / "factories.py"), "build_model", True),
                 id="file: default function"),
    pytest.param(f"{SCRIPTS / 'factories.py'}:tiny", (str(SCRIPTS / "factories.py"), "tiny", True), id="file:function"),
    pytest.param("devswitch.models:mlp", ("devswitch.models", "mlp", False), id="module:function"),
])
def test_model_targets_are_parsed_once_for_parent_and_worker(target, expected):
    from _devswitch.worker import load_factory, parse_target

    assert parse_target(target) == expected
    if expected[2]:
        assert load_factory(target)().name == "tiny"  # really loads the file's factory


def test_ctrl_c_while_the_finished_rows_are_written_still_keeps_them(monkeypatch, tmp_path):
    """A Ctrl-C that lands outside a worker (here: while the rows so far are being written) stops the matrix
    the same way: what was measured stays, the rest is 'not run (interrupted)'."""
    from _devswitch.compare import ConfigRun, Options, matrix
    from _devswitch.benchrecord import BenchmarkRecord
    from _devswitch.compare.protocol import Record
    from _devswitch.statistics import Summary

    def one_measured_batch(options, device, precision, workdir, progress, backend, role="measure", settings=()):
        summary = Summary.of([0.1], batch=1)  # 10 samples/s
        record = BenchmarkRecord("m", "inference", 1, device, "float32", "float32", summary=summary).to_dict()
        return ConfigRun(device, precision, backend, wall_s=1.0, events=[Record(record=record, t=0.0)]), False

    def interrupted_write(partial):
        raise KeyboardInterrupt

    monkeypatch.setattr(matrix, "run_configuration", one_measured_batch)
    options = Options("mlp", ("tensorflow",), ("cpu",), ("fp32", "fp16", "bf16"), (1,), accuracy_samples=0)
    results = matrix.run_sequential(options, lambda line: None, tmp_path, on_update=interrupted_write)
    assert results.interrupted
    assert [c.status for c in results.cells] == ["ok", "not run (interrupted)", "not run (interrupted)"]
    assert results.cells[0].metric("throughput") == 10.0


def test_events_are_read_past_a_damaged_line_and_a_line_being_written_waits(tmp_path):
    from _devswitch.compare.protocol import read_events

    events = tmp_path / "w.events.jsonl"
    events.write_text('{"event": "spawned", "t": 1}\n{"event": "rea\n{"event": "done", "t": 2}\n{"event": "do')
    found, upto = read_events(events)
    assert [e.NAME for e in found] == ["spawned", "done"] and upto == 3  # the last line is not complete yet
    with events.open("a") as handle:
        handle.write('ne", "t": 3}\n')
    more, upto = read_events(events, upto)
    assert [e.NAME for e in more] == ["done"] and upto == 4
