"""One worker lifecycle for every compare: the user's script run as a hostile or careless one would be (a fork
that exits, a chdir, a grandchild, input(), an endless loop, a SIGSTOP, 400 MiB of output, the work folder
removed, its own devswitch.configure), each on real processes, each bounded in time."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from conftest import Child, children
from errorparts import parts, printed

from _devswitch.errors import UsageError

# --- memory up front: pure ---------------------------------------------------------------------------------


def test_rounds_that_would_not_fit_in_memory_are_refused_with_the_figures_and_the_way_out():
    """64 AlexNet workers side by side on 23 GiB: refused at the measured figure, naming --rounds 1 and how many fit."""
    from _devswitch.compare.process import check_memory

    with pytest.raises(UsageError) as e:
        check_memory(["tensorflow"] * 64, "alexnet", 6, available=23 * 1024)
    # the figures: workers, rounds, each one's measured size and the libraries', the sum, what is available
    parts(e, UsageError, named=["64 workers", "--rounds 6", "1,500 MiB", "alexnet", "docs/trust.md", "620 MiB",
                                "94.4 GiB", "23.0 GiB"], fix="--rounds 1")
    assert "15" in e.value.hint  # how many configurations fit
    check_memory(["tensorflow"] * 4, "alexnet", 6, available=23 * 1024)  # fits: nothing said
    check_memory(["tensorflow"], "alexnet", 6, available=10)  # one worker: nothing to refuse
    check_memory(["tensorflow"] * 64, "my_model.py", 6, available=10)  # a user's factory: measured when it runs
    with pytest.raises(UsageError) as e:  # PyTorch takes more than TensorFlow
        check_memory(["torch"] * 4, "mlp", 2, available=3 * 1024)
    parts(e, UsageError, named=["720 MiB", "mlp"])


def test_gpu_columns_that_wait_for_a_gpu_are_not_counted_up_front():
    """cpu and gpu columns of one backend: only the cpu ones (and the reference) start at once; a gpu column of
    a backend without a cpu one starts at once too."""
    from _devswitch.compare.options import Options
    from _devswitch.compare.process import first_workers

    options = Options(target="mlp", devices=("cpu", "gpu"), precisions=("fp32", "bf16"), rounds=3)
    assert first_workers(options) == ["tensorflow"] * 3  # the reference and cpu fp32, cpu bf16
    options = Options(target="mlp", devices=("gpu",), precisions=("fp32",), rounds=3, accuracy_samples=0)
    assert first_workers(options) == ["tensorflow"]


def test_compare_refuses_rounds_that_will_not_fit_before_any_worker_starts(tmp_path, monkeypatch, capsys):
    from _devswitch.cli import main
    from _devswitch.compare import process

    def no_worker(*args, **kwargs):
        pytest.fail("a worker was started")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(process.subprocess, "Popen", no_worker)
    monkeypatch.setattr(process, "available_mib", lambda: 2048.0)
    argv = ["compare", "alexnet", "--devices", "cpu", "--precisions", "fp32", "--vary", "threads=1,2,3,4"]
    assert main([*argv, "--out", "out"]) == 2
    printed(capsys.readouterr().err, named=["5 workers", "2.0 GiB", "1,500 MiB", "alexnet"], fix="--rounds 1")
    assert not (tmp_path / "out").exists()


def test_a_timeout_below_one_second_is_refused(tmp_path, monkeypatch, capsys):
    from _devswitch.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["compare", "mlp", "--timeout", "0", "--out", "out"]) == 2
    printed(capsys.readouterr().err, where="--timeout", named=["'0'", ">= 1"])


# --- the user's script, hostile or careless: real compares ---------------------------------------------------

SCRIPTS = {
    # a forked child that calls sys.exit() at once; the parent goes on for 2 s
    "fork.py": "import os, sys, time\nif os.fork() == 0:\n    sys.exit(0)\ntime.sleep(2)\nos.wait()\n",
    # a grandchild that would run for 1000 s
    "grandchild.py": "import subprocess\np = subprocess.Popen(['sleep', '1000'])\n"
    "open('grandchild.pid', 'w').write(str(p.pid))\n",
    "ask.py": "name = input('your name? ')\nprint('hello', name)\n",
    "endless.py": "print('working', flush=True)\nwhile True:\n    pass\n",
    "stop.py": "import os, signal\nprint('stopping myself', flush=True)\nos.kill(os.getpid(), signal.SIGSTOP)\n",
    "loud.py": "import sys\nline = b'x' * ((1 << 20) - 1) + b'\\n'\nfor _ in range(400):\n"
    "    sys.stdout.buffer.write(line)\nsys.stdout.flush()\nprint('done')\n",
    "configure.py": "import devswitch\ndevswitch.configure(precision='fp16')\n",
}

FIT = (
    "import numpy as np, keras\n"
    "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])\n"
    "model.compile('sgd', 'mse')\n"
    "model.fit(np.zeros((8, 4)), np.zeros((8, 1)), epochs=1, batch_size=8, verbose=0)\n"
)
# a script that chdirs, then fits: its fit must be found, and nothing of compare's left where it went
CHDIR = "import os\nos.makedirs('elsewhere', exist_ok=True)\nos.chdir('elsewhere')\n" + FIT
# --out . and a script that clears ./logs (a TensorBoard habit) and, under fp16, puts a file where compare's
# work folder was, then fits
CLEAR = (
    "import glob, shutil, keras\n"
    "shutil.rmtree('logs')\n"
    "if keras.config.dtype_policy().name == 'mixed_float16':\n"
    "    for folder in glob.glob('.devswitch-work-*'):\n"
    "        shutil.rmtree(folder)\n"
    "        open(folder, 'w').close()\n" + FIT
)

# compare in a process of its own that says its own peak memory: VmHWM of this image (ru_maxrss would carry the
# peak of the process that forked it, across the exec: the test process, with TensorFlow in it)
MEASURED = (
    "import re, sys\nfrom _devswitch.cli import main\ncode = main(sys.argv[1:])\n"
    "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
    "print('MAXRSS_KIB', hwm, file=sys.stderr)\nsys.exit(code)\n"
)
# compare with a stdin that stays open and says nothing, as a terminal would
OPEN_STDIN = (
    "import subprocess, sys, time\nstarted = time.time()\n"
    "p = subprocess.Popen([sys.executable, '-m', 'devswitch', *sys.argv[1:]], stdin=subprocess.PIPE)\n"
    "code = p.wait()\nprint('SECONDS', time.time() - started, file=sys.stderr)\nsys.exit(code)\n"
)

ONE = ["--devices", "cpu", "--precisions", "fp32"]


def _write_scripts(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {**SCRIPTS, "chdir.py": CHDIR, "clear.py": CLEAR}.items():
        (folder / name).write_text(text)


def _compare(script: str, *more: str, timeout: float = 120) -> Child:
    return Child(
        ["-m", "devswitch", "compare", "--script", script, *ONE, "--out", "out", *more],
        prepare=_write_scripts,
        timeout=timeout,
    )


def _hostile(root: Path) -> dict[str, Child]:
    return {
        "fork": _compare("fork.py"),
        "grandchild": _compare("grandchild.py"),
        "ask": Child(
            # a generous limit: EOFError, not the limit, must end it (the 20 s case is bench_hostile_config's)
            ["-c", OPEN_STDIN, "compare", "--script", "ask.py", *ONE, "--out", "out", "--timeout", "120"],
            prepare=_write_scripts,
            timeout=240,
        ),
        "endless": _compare("endless.py", "--timeout", "5", timeout=60),
        "stop": _compare("stop.py", timeout=90),  # the default limit is an hour: the stop must be seen
        "loud": Child(
            ["-c", MEASURED, "compare", "--script", "loud.py", *ONE, "--out", "out"],
            {"DEVSWITCH_DISABLE": "1"},
            prepare=_write_scripts,
            timeout=120,
        ),
        "chdir": _compare("chdir.py"),
        "clear": Child(
            [
                "-m",
                "devswitch",
                "compare",
                "--script",
                "clear.py",
                "--devices",
                "cpu",
                "--precisions",
                "fp32,fp16",
                "--out",
                ".",
            ],
            prepare=_write_scripts,
            timeout=120,
        ),
        "configure": _compare("configure.py", "--save-profile", "mine", "--save-profile-anyway"),
    }


hostile = children(_hostile)

HANGING = "import time\n\n\ndef build_model():\n    time.sleep(1000)\n"  # a factory that never returns


def _write_factory(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hang.py").write_text(HANGING)


def _hanging(root: Path) -> dict[str, Child]:
    argv = ["-m", "devswitch", "compare", "hang.py", "--devices", "cpu", "--precisions", "fp32", "--batch-sizes", "1"]
    argv += ["--iterations", "2", "--accuracy-samples", "0", "--timeout", "5", "--out", "out"]
    return {
        "sequential": Child([*argv, "--rounds", "1"], prepare=_write_factory, timeout=90),
        "rounds": Child([*argv, "--rounds", "2"], prepare=_write_factory, timeout=90),
    }


hanging = children(_hanging)


@pytest.mark.subprocess
@pytest.mark.parametrize("mode", ["sequential", "rounds"])
def test_a_factory_that_hangs_in_build_is_stopped_at_its_time_limit(hanging, mode):
    """One configuration after another, or workers taking turns: --timeout 5 ends the worker, its column says why."""
    proc, folder = hanging(mode)
    assert proc.returncode == 5, proc.stderr[-3000:]
    (cell,) = _cells(folder)
    assert cell["status"] == "failed: stopped after the time limit of 5 s (--timeout 5)"
    assert "(--timeout 5) per " + ("configuration" if mode == "sequential" else "turn") in proc.stderr


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie (read from /proc, so that a reaped pid is not taken for it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


def _cells(folder: Path, out: str = "out") -> list[dict]:
    return json.loads((folder / out / "results.json").read_text())["cells"]


@pytest.mark.subprocess
def test_a_forked_child_that_exits_does_not_end_the_run(hostile):
    """The child's sys.exit() comes back through devswitch's runner too: its 'done' is not the run's."""
    proc, folder = hostile("fork")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (cell,) = _cells(folder)
    assert cell["status"] == "ok" and cell["record"]["metrics"]["seconds_per_run"]["value"] >= 1.9


@pytest.mark.subprocess
def test_no_process_of_a_script_outlives_its_column(hostile):
    """A `sleep 1000` the script started (and left running) is ended with the script's process group."""
    proc, folder = hostile("grandchild")
    pid = int((folder / "grandchild.pid").read_text())
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert not alive(pid)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.subprocess
def test_a_script_that_reads_stdin_gets_end_of_file_at_once(hostile):
    """input() in the script: EOF (stdin is /dev/null), not a compare that waits on the user's terminal."""
    proc, folder = hostile("ask")
    assert proc.returncode == 5, proc.stderr[-3000:]
    (cell,) = _cells(folder)
    assert cell["status"] == "failed: EOFError: EOF when reading a line"
    assert "time limit 120 s (--timeout 120) per run" in proc.stderr


@pytest.mark.subprocess
def test_a_never_ending_script_is_stopped_at_its_time_limit_with_the_reason(hostile):
    proc, folder = hostile("endless")
    assert proc.returncode == 5, proc.stderr[-3000:]
    (cell,) = _cells(folder)
    assert cell["status"].startswith("failed: stopped after the time limit of 5 s (--timeout 5): ")
    assert "time limit 5 s (--timeout 5) per run" in proc.stderr


@pytest.mark.subprocess
def test_a_stopped_worker_is_given_up_rather_than_waited_on(hostile):
    """A script that SIGSTOPs itself would hold compare for its hour: it is seen as stopped within seconds."""
    proc, folder = hostile("stop")
    assert proc.returncode == 5, proc.stderr[-3000:]
    (cell,) = _cells(folder)
    assert cell["status"].startswith("failed: the worker was stopped by a signal (SIGSTOP?) and made no progress")


@pytest.mark.subprocess
def test_a_script_that_prints_400_mib_leaves_compare_under_300_mib(hostile):
    """The output goes to the log file; compare reads its tail only."""
    proc, folder = hostile("loud")
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak_mib = int(proc.stderr.split("MAXRSS_KIB ")[1].split()[0]) / 1024
    assert peak_mib < 300, peak_mib
    assert (folder / "out" / "logs" / "tensorflow-cpu-fp32.log").stat().st_size > 400 * 1000 * 1000
    assert _cells(folder)[0]["status"] == "ok"


@pytest.mark.subprocess
def test_a_script_that_changes_its_working_directory_keeps_its_fits(hostile):
    proc, folder = hostile("chdir")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (cell,) = _cells(folder)
    assert [c["kind"] for c in cell["record"]["runs"][0]["calls"]] == ["fit"]
    assert not list((folder / "elsewhere").iterdir())  # no stray .devswitch-work-* (or anything else) there


@pytest.mark.subprocess
def test_a_script_that_removes_the_work_folder_fails_its_column_and_the_results_are_written(hostile):
    """--out . and a script that clears ./logs, and under fp16 replaces compare's work folder by a file: that
    column fails with the reason (its timing report is lost), the fp32 one is measured, and every results
    file is written."""
    proc, folder = hostile("clear")
    assert proc.returncode == 5, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    ok, removed = _cells(folder, ".")
    assert ok["status"] == "ok" and ok["record"]["runs"][0]["calls"]
    assert removed["status"].startswith("failed: its timing report ") and "is missing" in removed["status"]
    assert all((folder / name).is_file() for name in ("results.json", "results.csv", "results.md", "results.html"))
    assert not list(folder.glob(".devswitch-work-*"))  # nor the file the script put in its place


@pytest.mark.subprocess
def test_a_script_that_configures_another_precision_gets_an_overridden_column(hostile):
    """devswitch.configure(precision='fp16') in an fp32 column: marked where it happened, not recommended, and
    not saved as a profile."""
    proc, folder = hostile("configure")
    (cell,) = _cells(folder)
    assert cell["status"] == "overridden by the script: precision fp16 (devswitch.configure at configure.py:2)"
    assert cell["record"] is not None  # what it measured is kept beside the mark
    assert "profile 'mine' not saved" in proc.stderr
    assert not (folder / ".devswitchrc").exists()


# --- honest columns: a factory that changes its column's settings itself --------------------------------------

# the fp32 column's factory switches to float16 itself; the fp16 column's is left as it is
CONFIGURING = (
    "import devswitch\nimport keras\n\n\ndef build_model():\n"
    "    if devswitch.plan().precision == 'fp32':\n"
    "        devswitch.configure(precision='fp16')\n"
    "    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])\n"
)
KERAS_POLICY = (
    "import keras\n\n\ndef build_model():\n"
    "    if keras.config.dtype_policy().name == 'float32':\n"
    "        keras.mixed_precision.set_global_policy('mixed_float16')\n"
    "    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])\n"
)


def _write_factories(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "configuring.py").write_text(CONFIGURING)
    (folder / "keras_policy.py").write_text(KERAS_POLICY)


def _overriding(root: Path) -> dict[str, Child]:
    def compare(model: str, *more: str) -> Child:
        argv = ["-m", "devswitch", "compare", model, "--devices", "cpu", "--precisions", "fp32,fp16"]
        argv += ["--batch-sizes", "1", "--warmup", "1", "--iterations", "3", "--accuracy-samples", "0"]
        argv += ["--no-predict-baseline", "--no-peak-probe", "--out", "out", *more]
        return Child(argv, prepare=_write_factories, timeout=240)

    return {
        "configure": compare("configuring.py", "--save-profile", "mine", "--save-profile-anyway"),
        "keras": compare("keras_policy.py", "--rounds", "2"),
    }


overriding = children(_overriding)

# compare on a machine with 512 MiB available (MemAvailable as compare reads it; the workers are real)
SMALL_MACHINE = (
    "import sys\nfrom _devswitch.compare import process\nprocess.available_mib = lambda: 512.0\n"
    "from _devswitch.cli import main\nsys.exit(main(sys.argv[1:]))\n"
)


def _own_factory(root: Path) -> dict[str, Child]:
    def prepare(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tiny.py").write_text(KERAS_POLICY.replace("mixed_float16", "float32"))

    argv = ["-c", SMALL_MACHINE, "compare", "tiny.py", "--devices", "cpu", "--precisions", "fp32"]
    argv += ["--vary", "threads=1,2,3,4", "--rounds", "2", "--accuracy-samples", "0", "--out", "out"]
    return {"small machine": Child(argv, prepare=prepare, timeout=180)}


own_factory = children(_own_factory)


@pytest.mark.subprocess
def test_a_users_factory_is_measured_on_its_first_worker_before_the_others_start(own_factory):
    """No documented figure for a factory of the user's: the first worker starts, and once its model is built
    its memory is read from /proc; the three others would not fit in 512 MiB, so none is started (exit 2)."""
    proc, folder = own_factory("small machine")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "starting" not in proc.stderr.replace("starting 1", "")
    held = re.search(r"the first worker holds (\d+) MiB", proc.stderr)  # the note, then the refusal with its figure
    assert held and 100 < int(held.group(1)) < 4000, proc.stderr[-3000:]
    printed(proc.stderr, named=["4 workers", "--rounds 2", f"{held.group(1)} MiB", "tiny.py", "0.5 GiB"],
            fix="--rounds 1")
    assert not list((folder / "out").glob(".devswitch-work-*"))


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("name", "changed"),
    [
        pytest.param(
            "configure", "precision fp16 (devswitch.configure at configuring.py:7)", id="devswitch.configure, in turn"
        ),
        pytest.param("keras", "policy mixed_float16 (not set through devswitch)", id="Keras' own policy, rounds"),
    ],
)
def test_a_factory_that_changes_its_columns_settings_gets_an_overridden_column(overriding, name, changed):
    """The fp32 column's factory turns float16 on itself (through devswitch, or Keras' own global policy): the
    column says so and where, keeps what it measured, and is left out of the recommendation (and of
    --save-profile, which saves the honest fp16 column); the fp16 column is untouched."""
    from _devswitch.compare import recommend
    from _devswitch.compare.resultfile import read

    proc, folder = overriding(name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fp32, fp16 = _cells(folder)
    assert fp32["status"] == f"overridden by the factory: {changed}"
    assert fp32["record"]["policy"] == "mixed_float16"  # what it really ran under, kept beside the mark
    assert fp16["status"] == "ok"
    (pick,) = recommend(read(folder / "out" / "results.json"))
    assert pick.best is not None and pick.best.precision == "fp16" and pick.decision.against is None  # alone
    assert "overridden by the factory" in (folder / "out" / "results.md").read_text()
    if name == "configure":
        assert "saved profile 'mine' (device=cpu, precision=fp16" in proc.stderr, proc.stderr[-3000:]


def test_a_script_call_under_a_policy_devswitch_did_not_set_marks_its_column():
    """A script's timed call that ran under another policy than its column's (keras' own set_global_policy)
    overrides the column, said once, beside what devswitch.configure changed."""
    from _devswitch.compare import protocol as p
    from _devswitch.compare.resultset import Configuration
    from _devswitch.compare.script import _with_calls

    column = Configuration("tensorflow", "cpu", "fp32")
    ready = p.Ready(t=0.0, pid=1, plan={"policy": "float32", "math": "ieee"}, settings={})
    calls = [{"kind": "fit", "policy": "mixed_float16", "device": "CPU:0", "backend": "tensorflow", "math": "ieee"}] * 2
    assert _with_calls(None, column, ready, calls) == "policy mixed_float16 (not set through devswitch)"
    assert _with_calls(None, column, ready, [dict(calls[0], policy="float32")]) is None
    said = "precision fp16 (devswitch.configure at train.py:2)"
    assert _with_calls(said, column, ready, calls) == said
