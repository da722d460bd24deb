"""Shared fixtures. Nothing here reads or writes the real home directory or DEVSWITCH_* variables."""

from __future__ import annotations

import contextlib
import json
import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import pytest

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


# --- child processes: one queue for the whole session --------------------------------------------------------
#
# Most subprocess tests start a framework in a child (seconds of one busy core) and wait for it. So the children
# are declared up front (``children(build)`` below makes a fixture of them), and as soon as the tests are
# collected every child the selected tests will read is queued, in the order the tests will read them. The
# queue runs one child beside this process while it runs tests of its own (this process then has the other
# core), and two while it waits for a child's result. A test then only reads what its children did.


@dataclasses.dataclass
class Child:
    """``python ARGS`` in its own folder (``cwd``, else ROOT/NAME) with ``env`` added to a clean environment
    (HOME is FOLDER/home unless ``env`` sets it); ``prepare(folder)`` runs first; ``after`` names a child of
    the same group that must have ended before this one starts; ``beside`` names one it starts with."""

    args: list
    env: dict = dataclasses.field(default_factory=dict)
    umask: int | None = None
    prepare: Callable[[Path], object] | None = None
    after: str | None = None
    beside: str | None = None  # another child of the group: this one starts the moment that one starts
    cwd: Path | None = None
    timeout: float = 300


class _Job:
    def __init__(self, name: str, child: Child, folder: Path):
        self.name, self.child, self.folder = name, child, folder
        self.after: _Job | None = None
        self.beside: _Job | None = None
        self.done = threading.Event()
        self.result: subprocess.CompletedProcess | None = None
        self.error: BaseException | None = None
        self.proc: subprocess.Popen | None = None

    def run(self) -> None:
        child = self.child
        try:
            (self.folder / ("." if "HOME" in child.env else "home")).mkdir(parents=True, exist_ok=True)
            if child.prepare:
                child.prepare(self.folder)
            env = {**clean_environ(HOME=str(self.folder / "home"), PYTHONUNBUFFERED="1"), **child.env}
            args = [sys.executable, *map(str, child.args)]
            umask = child.umask
            self.proc = subprocess.Popen(args, cwd=self.folder, env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
            try:
                out, err = self.proc.communicate(timeout=child.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
                raise
            self.result = subprocess.CompletedProcess(args, self.proc.returncode, out, err)
        except BaseException as exc:  # handed to whoever waits for it
            self.error = exc
        finally:
            self.done.set()


class _Queue:
    """Children run in order, ``cores - 1`` at a time while the test process works, ``cores`` while it waits."""

    def __init__(self, cores: int = 2):
        self.cores = cores
        self.lock = threading.Condition()
        self.queue: list[_Job] = []
        self.running: set[_Job] = set()
        self.waiting = 0
        self.closed = False
        self.threads: list[threading.Thread] = []

    def submit(self, jobs: list[_Job], first: bool = False) -> None:
        with self.lock:
            if first:
                self.queue[0:0] = jobs
            else:
                self.queue.extend(jobs)
            while len(self.threads) < self.cores:
                self.threads.append(threading.Thread(target=self._work, daemon=True))
                self.threads[-1].start()
            self.lock.notify_all()

    def _next(self) -> _Job | None:
        if len(self.running) >= (self.cores if self.waiting else self.cores - 1):
            return None
        for job in self.queue:
            if job.beside is None and (job.after is None or job.after.done.is_set()):
                self.queue.remove(job)
                return job
        return None

    def _work(self) -> None:
        while True:
            with self.lock:
                while not self.closed and (job := self._next()) is None:
                    self.lock.wait()
                if self.closed:
                    return
                self.running.add(job)
                companions = [other for other in self.queue if other.beside is job]
                for other in companions:
                    self.queue.remove(other)
                    self.running.add(other)
            for other in companions:
                threading.Thread(target=self._run, args=(other,), daemon=True).start()
            self._run(job)

    def _run(self, job: _Job) -> None:
        try:
            job.run()
        finally:
            with self.lock:
                self.running.discard(job)
                self.lock.notify_all()

    def wait(self, job: _Job) -> tuple[subprocess.CompletedProcess, Path]:
        with self.lock:
            needed, chain = [], job
            while chain is not None and chain in self.queue:  # needed now: first in line, after what it waits for
                needed.insert(0, chain)
                chain = chain.after or chain.beside
            for each in needed:
                self.queue.remove(each)
            self.queue[0:0] = needed
            self.waiting += 1
            self.lock.notify_all()
        try:
            job.done.wait()
        finally:
            with self.lock:
                self.waiting -= 1
        if job.error is not None:
            raise job.error
        return job.result, job.folder

    def cancel(self, jobs) -> None:
        with self.lock:
            self.queue = [job for job in self.queue if job not in jobs]

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.queue.clear()
            running = list(self.running)
            self.lock.notify_all()
        for job in running:  # a session that ends early does not wait for children nobody will read
            if job.proc is not None and job.proc.poll() is None:
                job.proc.kill()


QUEUE = _Queue()


class Children:
    """A group of children started together: ``group(name) -> (CompletedProcess, folder)`` waits for one;
    ``group.root`` is the folder they run under."""

    def __init__(self, root: Path, children: dict[str, Child]):
        self.root = root
        self.jobs = {name: _Job(name, child, child.cwd or root / "".join(c if c.isalnum() else "-" for c in name))
                     for name, child in children.items()}
        for job in self.jobs.values():
            job.after = self.jobs[job.child.after] if job.child.after else None
            job.beside = self.jobs[job.child.beside] if job.child.beside else None
        self.submitted = False

    def submit(self, first: bool = False) -> "Children":
        if not self.submitted:
            self.submitted = True
            QUEUE.submit(list(self.jobs.values()), first)
        return self

    def __call__(self, name: str) -> tuple[subprocess.CompletedProcess, Path]:
        self.submit(first=True)
        return QUEUE.wait(self.jobs[name])

    def cancel(self) -> None:
        QUEUE.cancel(set(self.jobs.values()))


_BUILDS: dict[object, Callable[[Path], dict[str, Child]]] = {}  # fixture -> its build
_GROUPS: dict[Callable, Children] = {}


def _group(config, build: Callable[[Path], dict[str, Child]]) -> Children:
    if build not in _GROUPS:
        root = config._tmp_path_factory.mktemp(build.__name__.strip("_") or "children")
        _GROUPS[build] = Children(root, build(root))
    return _GROUPS[build]


def children(build: Callable[[Path], dict[str, Child]], scope: str = "module", name: str | None = None):
    """A fixture named ``name`` (else ``build``'s name without its underscores): the children ``build(root)``
    names, as a ``Children`` group, one per session. They are queued as soon as the tests are collected when a
    selected test uses the fixture (or a fixture that uses it)."""

    def fixture(request):
        return _group(request.config, build).submit(first=True)

    fixture.__name__ = name or build.__name__.strip("_")
    made = pytest.fixture(scope=scope)(fixture)
    _BUILDS[made] = build
    return made


def _queue_children_of(item) -> None:
    for name in getattr(item, "fixturenames", ()):
        made = getattr(getattr(item, "module", None), name, None) or globals().get(name)
        if made in _BUILDS:
            _group(item.config, _BUILDS[made]).submit()


# Markers whose tests run only when -m names them (``pytest -m corpus_full``): lanes too heavy for every run.
OPT_IN = ("corpus_full",)


def _left_out(item) -> bool:
    asked = item.config.option.markexpr or ""
    return any(item.get_closest_marker(marker) and marker not in asked for marker in OPT_IN)


def pytest_collection_modifyitems(config, items):
    """Deselect the tests of an opt-in marker that -m does not name."""
    left_out = [item for item in items if _left_out(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not _left_out(item)]


def pytest_itemcollected(item):
    """Where every collected test will run (no -m, -k, --deselect, --lf and the like), its children start while
    the rest is still being collected."""
    option = item.config.option
    if not any(getattr(option, name, None) for name in ("markexpr", "keyword", "deselect", "lf", "failedfirst",
                                                         "newfirst", "stepwise", "collectonly")) \
            and not _left_out(item):
        _queue_children_of(item)


def pytest_collection_finish(session):
    """Queue, in test order, the children of every fixture made by ``children`` that a selected test uses."""
    for item in session.items:
        _queue_children_of(item)


def pytest_sessionfinish(session):
    QUEUE.close()


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


# --- subprocesses started together ---------------------------------------------------------------------

@contextlib.contextmanager
def started_together(root: Path, jobs: dict, prepare: dict | None = None, workers: int = 2, timeout: float = 300):
    """Start ``python ARGS`` for every job ``name: (args, env[, umask])`` (on the session's queue, before what
    it had queued: ``workers`` is its number of cores), each in its own folder under ``root`` (its cwd, with
    HOME in it); ``prepare[name](folder)`` runs first. Yields ``wait(name) -> (CompletedProcess, folder)``."""
    group = Children(root, {name: Child(args, env, umask[0] if umask else None, (prepare or {}).get(name),
                                        timeout=timeout)
                            for name, (args, env, *umask) in jobs.items()})
    try:
        yield group.submit(first=True)
    finally:
        group.cancel()  # a failing test does not wait for processes nobody will read


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
