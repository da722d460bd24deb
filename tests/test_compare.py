"""devswitch compare end to end, with tiny iteration counts."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import SCRIPTS, clean_environ
from devswitch.cli import main

TINY = ["--batch-sizes", "1,8", "--iterations", "3", "--warmup", "1", "--no-peak-probe"]


def compare(*args: str, cwd, timeout=300):
    environ = clean_environ(HOME=str(cwd), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "devswitch", "compare", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.subprocess
def test_mlp_across_precisions_writes_consistent_outputs(tmp_path):
    out = tmp_path / "out"
    proc = compare("mlp", "--devices", "cpu,gpu", "--precisions", "fp32,bf16", *TINY, "--out", str(out),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "results.md", "results.png"}
    doc = json.loads((out / "results.json").read_text())
    rows = list(csv.DictReader((out / "results.csv").open()))
    markdown = (out / "results.md").read_text()
    assert markdown in proc.stdout  # the printed table is the written one
    assert len(doc["cells"]) == len(rows) == 8  # 2 devices x 2 precisions x 2 batch sizes
    by_key = {(r["device"], r["precision"], int(r["batch"])): r for r in rows}
    for record in doc["records"]:
        precision = "fp32" if record["policy"] == "float32" else "bf16"
        row = by_key[("cpu", precision, record["batch"])]
        assert float(row["throughput"]) == pytest.approx(record["metrics"]["throughput"]["value"])
        assert f"{record['metrics']['throughput']['value']:,.1f}" in markdown
    assert len(doc["records"]) == 4 and all(r["status"] == "ok" for r in doc["records"])
    # no GPU here: the GPU columns are there, unavailable with the reason, not silently dropped
    gpu = [c for c in doc["cells"] if c["device"] == "gpu"]
    assert len(gpu) == 4 and all(c["status"].startswith("unavailable: device=gpu was asked for") for c in gpu)
    assert "| samples/s |" in markdown and "unavailable [1]" in markdown and "[1] device=gpu was asked" in markdown
    assert {r["speedup_vs_baseline"] for r in rows if r["device"] == "cpu" and r["precision"] == "fp32"} == {"1.0"}
    timing = doc["timing"]
    assert timing["total_s"] > 0 and timing["sum_startup_s"] > 0 and timing["sum_measured_s"] > 0
    assert len(timing["configurations"]) == 4
    assert "[4/4] gpu bf16" in proc.stderr  # the progress display


@pytest.mark.subprocess
def test_a_factory_that_raises_gives_a_failed_row_and_keeps_the_others(tmp_path):
    out = tmp_path / "out"
    target = f"{SCRIPTS / 'factories.py'}:fp32_only"
    proc = compare(target, "--devices", "cpu", "--precisions", "fp32,bf16", *TINY, "--no-predict-baseline",
                   "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 5, proc.stderr
    cells = {(c["precision"], c["batch"]): c["status"] for c in json.loads((out / "results.json").read_text())["cells"]}
    assert cells[("fp32", 1)] == "ok" and cells[("fp32", 8)] == "ok"
    assert cells[("bf16", 1)] == "failed: RuntimeError: this factory refuses mixed precision"


def _as_from_a_terminal():
    # A shell starts background jobs with SIGINT ignored, and children inherit that; a user at a
    # terminal has it at its default. Restore the default so the test presses a real Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.subprocess
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_interrupt_stops_cleanly_and_keeps_finished_rows(tmp_path, signum):
    out = tmp_path / "out"
    environ = clean_environ(HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "devswitch", "compare", "mlp", "--devices", "cpu",
                             "--precisions", "fp32,bf16,fp16", "--batch-sizes", "4", "--iterations", "3",
                             "--min-time", "60", "--no-peak-probe", "--no-predict-baseline", "--out", str(out)],
                            cwd=tmp_path, env=environ, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=_as_from_a_terminal)
    # wait until the first configuration is running its timed phase, then press Ctrl-C
    deadline = time.time() + 120
    lines = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if line.startswith("[1/3] cpu fp32"):
            break
    time.sleep(12)  # start-up, build and warm-up done: the 60 s timed phase is under way
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, "".join(lines) + stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["interrupted"] is True
    statuses = [c["status"] for c in doc["cells"]]
    assert statuses[0] in ("interrupted", "ok")
    assert statuses[1:] == ["not run (interrupted)", "not run (interrupted)"]
    assert (out / "results.md").exists() and (out / "results.csv").exists()
    assert "keeping every finished row" in stderr


@pytest.mark.parametrize("args, message", [
    pytest.param(["--devices", "tpu"], "--devices: 'tpu' is not valid", id="unknown device"),
    pytest.param(["--precisions", "fp8"], "--precisions: 'fp8' is not valid", id="unknown precision"),
    pytest.param(["--batch-sizes", "0"], "--batch-sizes: '0' is not a whole number >= 1", id="zero batch"),
    pytest.param(["--batch-sizes", "1,x"], "--batch-sizes: 'x' is not a whole number", id="batch not a number"),
    pytest.param(["--iterations", "-1"], "--iterations: '-1' is not a whole number >= 1", id="bad iterations"),
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
    from devswitch import compare as cmp

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    doc = cmp.document(cmp.Options(devices=("cpu",), precisions=("fp32",), batch_sizes=(1,)), [],
                       [cmp.Cell("cpu", "fp32", 1, "interrupted")], 1.0, True)
    notes = cmp.write_outputs(doc, tmp_path)
    assert notes == ["results.png not written: matplotlib is not installed (pip install 'devswitch[plot]')"]
    assert {p.name for p in tmp_path.iterdir()} == {"results.json", "results.csv", "results.md"}


@pytest.mark.parametrize("gpus, cpu_bf16, ccs, expected", [
    pytest.param((), False, (), "this CPU has no native bf16", id="CPU without bf16: unavailable"),
    pytest.param((), True, (), None, id="CPU with AVX512-BF16: runs"),
    pytest.param((0,), False, ((7, 5),), "compute capability 7.5) has no bf16 tensor cores", id="GPU cc 7.5"),
    pytest.param((0,), False, ((8, 0),), None, id="GPU cc 8.0: runs"),
])
def test_bf16_without_hardware_support_is_unavailable_in_compare(monkeypatch, gpus, cpu_bf16, ccs, expected):
    from devswitch import devices, worker

    features = frozenset({"AVX512-BF16"}) if cpu_bf16 else frozenset()
    monkeypatch.setattr(devices, "detect_cpu", lambda: devices.Cpu("cpu", 2, features))
    monkeypatch.setattr(devices, "detect_gpus", lambda: tuple(devices.Gpu(i, "gpu", cc) for i, cc in enumerate(ccs)))
    plan = devices.Plan("gpu:0" if gpus else "cpu", gpus, "bf16", "test", "test")
    reason = worker.unsupported_reason(plan)
    assert (reason is None) if expected is None else (expected in reason)
    assert worker.unsupported_reason(devices.Plan("cpu", (), "fp16", "t", "t")) is None  # fp16 runs (slowly)


@pytest.mark.parametrize("target, expected", [
    pytest.param("mlp", ("mlp", "", False), id="bundled"),
    pytest.param(str(SCRIPTS / "factories.py"), (str(SCRIPTS / "factories.py"), "build_model", True),
                 id="file: default function"),
    pytest.param(f"{SCRIPTS / 'factories.py'}:tiny", (str(SCRIPTS / "factories.py"), "tiny", True), id="file:function"),
    pytest.param("pkg.models:resnet", ("pkg.models", "resnet", False), id="module:function"),
])
def test_model_targets_are_parsed_once_for_parent_and_worker(target, expected):
    from devswitch.worker import load_factory, parse_target

    assert parse_target(target) == expected
    if expected[2]:
        assert load_factory(target)().name == "tiny"  # really loads the file's factory
