"""Shared fixtures. Nothing here reads or writes the real home directory or DEVSWITCH_* variables."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("childqueue")
from childqueue import Child, Children, children, started_together  # noqa: E402, F401 (re-exported for the tests)

# Importing devswitch (the public face the tests call) must not switch the test process itself: its import
# would set KERAS_BACKEND and the like and apply the real home's configuration at the first import of Keras.
os.environ["DEVSWITCH_DISABLE"] = "1"

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "scripts"


# The hidden-feature lane (pytest --cpu-features=...) edits what devswitch sees of the CPU through this variable,
# a machine fact rather than a setting: the helpers below that clear DEVSWITCH_* variables keep it.
CPU_FEATURES = "DEVSWITCH_CPU_FEATURES"
HIDE_BF16 = "-AVX512-BF16,-AMX-BF16"


def _cleared(var: str) -> bool:
    return var.startswith("DEVSWITCH") and var != CPU_FEATURES


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment minus every DEVSWITCH* variable (the lane's CPU features kept), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not _cleared(k)}
    env.update(extra)
    return env


def native_bf16() -> bool:
    """Whether devswitch sees native bf16 on this CPU (after the lane's edits): the branch a bf16 test takes."""
    from _devswitch.devices import detect_cpu

    return detect_cpu().native_bf16


def pytest_addoption(parser):
    parser.addoption(
        "--cpu-features",
        default=None,
        metavar="EDITS|other",
        help="edit the CPU features devswitch detects, for this run and every child process "
        f"({CPU_FEATURES}): e.g. {HIDE_BF16} hides native bf16; 'other' runs the other bf16 branch of this "
        "machine (hides bf16 where the CPU has it, claims AVX512-BF16 where it does not)",
    )


def pytest_configure(config):
    edits = config.getoption("--cpu-features")
    if edits == "other":
        os.environ.pop(CPU_FEATURES, None)
        edits = HIDE_BF16 if native_bf16() else "+AVX512-BF16"
    if edits:
        os.environ[CPU_FEATURES] = edits


def pytest_report_header(config):
    from _devswitch.devices import detect_cpu

    cpu = detect_cpu()
    bf16 = "native bf16" if cpu.native_bf16 else "no native bf16"
    return f"devswitch sees: {cpu.model}, {' '.join(sorted(cpu.features)) or 'no features read'} ({bf16}){cpu.edited_note}"


@pytest.fixture(autouse=True)
def reset_devswitch():
    """Every test starts and ends with a process devswitch has not touched (devswitch.reset(), from the rooms)."""
    from _devswitch.session import reset

    reset()
    yield
    reset()


def _in_folder(monkeypatch, folder: Path, home: Path) -> None:
    """This process in ``folder`` with HOME at ``home`` and no DEVSWITCH_* variable (DEVSWITCH_DISABLE kept)."""
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(folder)
    for var in [v for v in os.environ if _cleared(v) and v != "DEVSWITCH_DISABLE"]:
        monkeypatch.delenv(var)


@pytest.fixture
def here(monkeypatch, tmp_path):
    """Run devswitch in this process against a fake home and an empty project, no DEVSWITCH_* variables."""
    _in_folder(monkeypatch, tmp_path, tmp_path)
    return tmp_path


@pytest.fixture
def on_cpu(monkeypatch, tmp_path):
    """devswitch applied in this process: the CPU, no timing report, HOME and the working folder in tmp_path;
    reset after the test (the policy, the patches and the configuration, all through the public reset)."""
    import devswitch

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    devswitch.reset()
    devswitch.configure(device="cpu", report="off")
    yield
    devswitch.reset()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def project(home: Path) -> Path:
    """A project directory (with a sub-directory as the cwd) under the fake home."""
    path = home / "proj"
    (path / "src").mkdir(parents=True)
    return path


@pytest.fixture
def run_python(tmp_path: Path):
    """Run a Python script in a subprocess with a clean DEVSWITCH environment and a fake HOME."""

    def run(script: str | Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
        home = tmp_path / "subhome"
        home.mkdir(exist_ok=True)
        environ = clean_environ(HOME=str(home), PYTHONUNBUFFERED="1")
        environ.update(env or {})
        return subprocess.run([sys.executable, str(script), *args], env=environ, cwd=str(cwd or tmp_path),
                              capture_output=True, text=True, timeout=timeout)

    return run


def result_line(stdout: str) -> dict:
    import json

    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the script printed no RESULT line; stdout was:\n{stdout}"
    return json.loads(lines[-1][len("RESULT "):])


# --- child processes: the childqueue plugin (tests/childqueue.py) ------------------------------------------
#
# Subprocess tests declare their children with ``children(build)`` and read what they did; the plugin runs them
# beside this process. The names stay importable from here for the test modules that import them from conftest.

pytest_plugins = ["childqueue", "pytester"]


def pytest_childqueue_environ(home: Path) -> dict[str, str]:
    """Children start from this process's environment without DEVSWITCH_* variables, unbuffered."""
    return clean_environ(HOME=str(home), PYTHONUNBUFFERED="1")


def pytest_childqueue_start_early(item) -> bool:
    """A test of an opt-in marker that -m does not name is deselected later: its children wait."""
    return not _left_out(item)


# Markers whose tests run only when -m names them (``pytest -m corpus_full``, ``pytest -m slow``): lanes too
# heavy for every run, which CI runs after the README's ``pytest -q``.
OPT_IN = ("corpus_full", "slow")


def _left_out(item) -> bool:
    asked = item.config.option.markexpr or ""
    return any(item.get_closest_marker(marker) and marker not in asked for marker in OPT_IN)


def pytest_collection_modifyitems(config, items):
    """Deselect the tests of an opt-in marker that -m does not name."""
    left_out = [item for item in items if _left_out(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not _left_out(item)]


# --- one real devswitch compare for the whole session -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CompareRun:
    proc: subprocess.CompletedProcess
    out: Path       # the --out folder
    project: Path   # the working directory (where --save-profile wrote .devswitchrc)
    home: Path


SHARED_ARGS = ["mlp", "--devices", "cpu,gpu", "--precisions", "fp32,fp16", "--batch-sizes", "1,8",
               "--iterations", "3", "--warmup", "1", "--no-peak-probe", "--save-profile", "fastest",
               "--accuracy-samples", "0"]  # accuracy end to end: test_accuracy, test_backends


def _shared_compare_run(root: Path) -> dict[str, Child]:
    def folders(_):
        (root / "home").mkdir(exist_ok=True)
        (root / "project").mkdir(exist_ok=True)

    return {"compare": Child(["-m", "devswitch", "compare", *SHARED_ARGS, "--out", root / "out"],
                             {"HOME": str(root / "home")}, prepare=folders, cwd=root / "project", timeout=600)}


shared_compare_run = children(_shared_compare_run, scope="session")


@pytest.fixture(scope="session")
def shared_compare(shared_compare_run) -> CompareRun:
    """``compare mlp`` over cpu,gpu x fp32,fp16 x batch 1,8 with --save-profile, run once. Read it; never write
    into it (copy it to tmp_path first)."""
    proc, _ = shared_compare_run("compare")
    assert proc.returncode == 0, proc.stderr
    root = shared_compare_run.root
    return CompareRun(proc, root / "out", root / "project", root / "home")


# --- timed_script.py under the switch, for test_run.py, test_trust.py and test_timing.py ------------------

TIMED = SCRIPTS / "timed_script.py"  # four timed Keras calls, then --raise / --exit N as asked


def _timed_script_runs(base: Path) -> dict[str, Child]:
    """Three runs of TIMED in ``base`` (their cwd and HOME), made once per session.

    ``imported``: ``python timed_script.py`` with DEVSWITCH_PRECISION=fp32, DEVSWITCH_DEVICE=cpu and
    DEVSWITCH_REPORT=out/runs.json (its report, as it wrote it);
    ``script``: ``devswitch run --device cpu --precision bf16 --report report.json timed_script.py --device x
    --raise``, after ``imported``, into report.json: a copy of out/runs.json (the second run in that report;
    the script's own --device, and its own error);
    ``module``: ``devswitch run --device cpu --report wrong.json -m mymod a --b --exit 7`` beside mymod.py (a copy
    of TIMED) and a wrong.json that is not a report (``[]``): it shares no file with the others.
    """
    import shutil

    report, wrong = base / "report.json", base / "wrong.json"

    def module_files(_):
        wrong.write_text("[]\n")
        shutil.copy(TIMED, base / "mymod.py")

    def the_first_run(_):
        if (base / "out" / "runs.json").exists():
            shutil.copy(base / "out" / "runs.json", report)

    home = {"HOME": str(base)}
    return {
        "imported": Child([TIMED], {**home, "DEVSWITCH_REPORT": "out/runs.json", "DEVSWITCH_PRECISION": "fp32",
                                    "DEVSWITCH_DEVICE": "cpu"}, cwd=base, timeout=240),
        "module": Child(["-m", "devswitch", "run", "--device", "cpu", "--report", wrong, "-m", "mymod", "a", "--b",
                         "--exit", "7"], home, prepare=module_files, cwd=base, timeout=240),
        "script": Child(["-m", "devswitch", "run", "--device", "cpu", "--precision", "bf16", "--report", report, TIMED,
                         "--device", "x", "--raise"], home, prepare=the_first_run, after="imported", cwd=base,
                        timeout=240),
    }


timed_script_runs = children(_timed_script_runs, scope="session")


@pytest.fixture
def switched_runs(timed_script_runs):
    """The three runs of ``_timed_script_runs``: ``imported``, ``script``, ``module`` (CompletedProcess each),
    ``base`` (their folder), ``report`` (imported's and script's runs), ``wrong``."""
    from types import SimpleNamespace

    base = timed_script_runs.root
    return SimpleNamespace(base=base, report=base / "report.json", wrong=base / "wrong.json",
                           imported=timed_script_runs("imported")[0], script=timed_script_runs("script")[0],
                           module=timed_script_runs("module")[0])


# --- two compares side by side in one project, for test_profiles.py and test_cli.py ------------------------


def _profile_compares(root: Path) -> dict[str, Child]:
    """``compare mlp --save-profile first`` in ROOT/a (``--out run``: a folder named like a command) and
    ``... second`` in ROOT/b (``--out out``), started at the same moment, in a project whose .devswitchrc (with a
    comment, a setting and CRLF line ends) is in ROOT."""
    (root / ".devswitchrc").write_text("# the project's settings\r\nthreads: 1\r\n")
    options = ["mlp", "--devices", "cpu", "--precisions", "fp32", "--batch-sizes", "2,4", "--iterations", "2",
               "--warmup", "0", "--no-peak-probe", "--no-predict-baseline", "--accuracy-samples", "0",
               "--save-profile-anyway", "--save-profile"]
    return {"a": Child(["-m", "devswitch", "compare", "--out", "run", *options, "first"]),
            "b": Child(["-m", "devswitch", "compare", *options, "second", "--out", "out"], beside="a")}


profile_compares = children(_profile_compares, scope="session")


def info_json(folder: Path, profile: str, monkeypatch, capsys) -> dict:
    """``devswitch info --json`` run in this process (it has TensorFlow already: no new process to pay for),
    in ``folder`` with HOME in it, DEVSWITCH_PROFILE=``profile`` and no other DEVSWITCH_* variable."""
    from _devswitch.cli import main

    _in_folder(monkeypatch, folder, folder / "home")
    monkeypatch.setenv("DEVSWITCH_PROFILE", profile)
    capsys.readouterr()
    code = main(["info", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    return json.loads(out.out)
