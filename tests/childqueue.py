"""childqueue: a pytest plugin that runs the suite's slow child processes beside the test process.

Most subprocess tests start a framework in a child (seconds of one busy core) and then only wait for it. With
this plugin a test module declares its children up front and reads what they did::

    from childqueue import Child, children

    def _runs(root: Path) -> dict[str, Child]:
        return {"plain": Child(["script.py"]),
                "switched": Child(["-m", "devswitch", "run", "script.py"], after="plain")}

    runs = children(_runs)          # a module-scoped fixture named "runs"

    def test_it(runs):
        proc, folder = runs("switched")   # waits for that child; (CompletedProcess, its folder)

Scheduling:

- As soon as the tests are collected, the children of every selected test are queued, in the order the tests
  will read them. Where nothing narrows the selection (no -k, -m, --deselect, --lf, ...), they start while the
  rest is still being collected; otherwise only after the selection is known, so a selected subset starts only
  what it needs. ``--collect-only`` starts nothing.
- The number of cores is read from the machine (``os.sched_getaffinity``; ``--child-cores N`` overrides it).
  The queue runs ``cores - 1`` children while the test process runs tests of its own (it has the last core) and
  ``cores`` while a test waits for a child. A child a test waits for moves to the head of the queue, with the
  children it needs (``after``/``beside``) ahead of it.
- ``after="other"``: this child starts only once ``other`` has ended. ``beside="other"``: it starts the moment
  ``other`` starts (two processes that must overlap), whatever the core count.
- A child runs in its own session (process group): a session that ends early kills every group it started,
  the grandchildren included, and a timed-out child is killed the same way; its output reaches the test as the
  ``CompletedProcess`` (a failed child is not an error of the plugin: the test asserts its return code and
  shows its stderr), an error starting it (``prepare`` raising, the timeout) is raised in the test that waits.

The children's folders live under one temporary folder per session (``childqueue-*`` in the system's temporary
directory, named in the terminal summary), removed when the session passes and kept for a day when it fails.
It is not ``tmp_path_factory``'s: that is a fixture, which does not exist yet while the tests are being collected, and
pytest offers no public way to reach its factory before then.

Two hooks let a conftest adapt it (see ``Hooks``): ``pytest_childqueue_environ`` (the environment children
start from) and ``pytest_childqueue_start_early`` (whether an item's children may start during collection).
Register it with ``pytest_plugins = ["childqueue"]`` in the top-level conftest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

__all__ = ["Child", "Children", "children", "machine_cores", "started_together"]


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or ``taskset`` narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


@dataclasses.dataclass
class Child:
    """``python ARGS`` in its own folder (``cwd``, else ROOT/NAME) with ``env`` added to the base environment
    (HOME is FOLDER/home unless ``env`` sets it); ``prepare(folder)`` runs first; ``after`` names a child of
    the same group that must have ended before this one starts; ``beside`` names one it starts with."""

    args: list
    env: dict = dataclasses.field(default_factory=dict)
    umask: int | None = None
    prepare: Callable[[Path], object] | None = None
    after: str | None = None
    beside: str | None = None
    cwd: Path | None = None
    timeout: float = 300


class Hooks:
    """The hooks this plugin adds (implement them in a conftest)."""

    @pytest.hookspec(firstresult=True)
    def pytest_childqueue_environ(self, home: Path) -> dict[str, str] | None:
        """The environment a child starts from (its ``env`` is added to it), HOME set to ``home``; the default
        is this process's environment."""

    @pytest.hookspec(firstresult=True)
    def pytest_childqueue_start_early(self, item: pytest.Item) -> bool | None:
        """False where ``item``'s children must not start while the tests are still being collected (a test
        that the conftest deselects later, in ``pytest_collection_modifyitems``)."""


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class _Job:
    def __init__(self, name: str, child: Child, folder: Path, environ: Callable[[Path], dict[str, str]]):
        self.name, self.child, self.folder, self.environ = name, child, folder, environ
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
            env = {**self.environ(self.folder / "home"), **{k: str(v) for k, v in child.env.items()}}
            args = [sys.executable, *map(str, child.args)]
            umask = child.umask
            self.proc = subprocess.Popen(
                args,
                cwd=self.folder,
                env=env,
                text=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
            )
            try:
                out, err = self.proc.communicate(timeout=child.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
                self.proc.communicate()
                raise
            self.result = subprocess.CompletedProcess(args, self.proc.returncode, out, err)
        except BaseException as exc:  # handed to whoever waits for it
            self.error = exc
        finally:
            self.done.set()


class _Queue:
    """Children run in order, ``cores - 1`` at a time while the test process works, ``cores`` while it waits."""

    def __init__(self, cores: int, base: Path, environ: Callable[[Path], dict[str, str]]):
        self.cores, self.base, self.environ = max(1, cores), base, environ
        self.lock = threading.Condition()
        self.queue: list[_Job] = []
        self.running: set[_Job] = set()
        self.started: list[str] = []  # job names in the order they started (for the plugin's own tests)
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
                if self.closed or job is None:
                    return
                companions = [other for other in self.queue if other.beside is job]
                for each in [job, *companions]:
                    if each in self.queue:
                        self.queue.remove(each)
                    self.running.add(each)
                    self.started.append(each.name)
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
            needed: list[_Job] = []
            chain: _Job | None = job
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
        assert job.result is not None
        return job.result, job.folder

    def cancel(self, jobs: set[_Job]) -> None:
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
                _kill_group(job.proc)


_ACTIVE: list[_Queue] = []  # the queue of the session running now (a stack: pytester can nest sessions)


def _queue() -> _Queue:
    if not _ACTIVE:
        raise RuntimeError("childqueue is not registered: add pytest_plugins = ['childqueue'] to the conftest")
    return _ACTIVE[-1]


def _folder_name(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name) or "child"


class Children:
    """A group of children started together: ``group(name) -> (CompletedProcess, folder)`` waits for one;
    ``group.root`` is the folder they run under."""

    def __init__(self, root: Path, children: Mapping[str, Child], queue: _Queue | None = None):
        self.root = root
        self.queue = queue or _queue()
        self.jobs = {
            name: _Job(name, child, child.cwd or root / _folder_name(name), self.queue.environ)
            for name, child in children.items()
        }
        for job in self.jobs.values():
            job.after = self.jobs[job.child.after] if job.child.after else None
            job.beside = self.jobs[job.child.beside] if job.child.beside else None
        self.submitted = False

    def submit(self, first: bool = False) -> Children:
        if not self.submitted:
            self.submitted = True
            self.queue.submit(list(self.jobs.values()), first)
        return self

    def __call__(self, name: str) -> tuple[subprocess.CompletedProcess, Path]:
        self.submit(first=True)
        return self.queue.wait(self.jobs[name])

    def cancel(self) -> None:
        self.queue.cancel(set(self.jobs.values()))


Build = Callable[[Path], Mapping[str, Child]]
_BUILDS: dict[object, Build] = {}  # fixture function -> its build
_GROUPS = pytest.StashKey[dict[Build, Children]]()
_QUEUE = pytest.StashKey[_Queue]()
_ON_TERM = pytest.StashKey[Callable[[int, types.FrameType | None], object] | int | None]()  # the SIGTERM handler before


def _group(config: pytest.Config, build: Build) -> Children:
    groups = config.stash[_GROUPS]
    if build not in groups:
        queue = config.stash[_QUEUE]
        root = Path(tempfile.mkdtemp(prefix=_folder_name(build.__name__.strip("_")) + "-", dir=queue.base))
        groups[build] = Children(root, build(root), queue)
    return groups[build]


def children(build: Build, scope: str = "module", name: str | None = None) -> Callable:
    """A fixture named ``name`` (else ``build``'s name without its underscores): the children ``build(root)``
    names, as a ``Children`` group, one per session. They are queued as soon as the tests are collected when a
    selected test uses the fixture (or a fixture that uses it)."""

    def fixture(request: pytest.FixtureRequest) -> Children:
        return _group(request.config, build).submit(first=True)

    fixture.__name__ = name or build.__name__.strip("_")
    made = pytest.fixture(scope=scope)(fixture)  # type: ignore[call-overload]
    _BUILDS[made] = build
    return made


@contextlib.contextmanager
def started_together(
    root: Path, jobs: dict, prepare: dict | None = None, workers: int | None = None, timeout: float = 300
) -> Iterator[Children]:
    """Start ``python ARGS`` for every job ``name: (args, env[, umask])`` on the session's queue, before what
    it had queued, each in its own folder under ``root`` (its cwd, with HOME in it); ``prepare[name](folder)``
    runs first. Yields ``wait(name) -> (CompletedProcess, folder)``; on leaving, what has not started is
    dropped. (``workers`` is accepted for older callers; the queue's cores decide.)"""
    group = Children(
        root,
        {
            name: Child(args, env, umask[0] if umask else None, (prepare or {}).get(name), timeout=timeout)
            for name, (args, env, *umask) in jobs.items()
        },
    )
    try:
        yield group.submit(first=True)
    finally:
        group.cancel()  # a failing test does not wait for processes nobody will read


# --- the plugin's hooks ------------------------------------------------------------------------------------

# Options that narrow which collected tests run: with any of them set, children wait for the final selection.
_NARROWING = ("markexpr", "keyword", "deselect", "lf", "failedfirst", "newfirst", "stepwise", "collectonly")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(Hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--child-cores",
        type=int,
        default=None,
        metavar="N",
        help="cores the child-process queue plans for (default: this process's CPU affinity)",
    )


# A failed session keeps its children's folder for a look; one left longer than this is removed by a later session
# (never a younger one: another session may be running now).
KEEP_FAILED_S = 24 * 3600


def _remove_old_folders() -> None:
    now = time.time()
    for old in Path(tempfile.gettempdir()).glob("childqueue-*"):
        with contextlib.suppress(OSError):
            info = old.lstat()
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and now - info.st_mtime > KEEP_FAILED_S:
                shutil.rmtree(old, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    _remove_old_folders()
    cores = config.getoption("--child-cores") or machine_cores()

    def environ(home: Path) -> dict[str, str]:
        given = config.hook.pytest_childqueue_environ(home=home)
        return dict(given) if given is not None else {**os.environ, "HOME": str(home)}

    queue = _Queue(cores, Path(tempfile.mkdtemp(prefix="childqueue-")), environ)
    config.stash[_QUEUE] = queue
    config.stash[_GROUPS] = {}
    _ACTIVE.append(queue)
    if threading.current_thread() is threading.main_thread():
        config.stash[_ON_TERM] = signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: types.FrameType | None) -> None:
    """SIGTERM (``timeout``, a CI runner): the children run in sessions of their own, out of reach of a signal
    sent to this process's group, so their groups are killed here before this process ends as it would have."""
    for queue in list(_ACTIVE):
        queue.close()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def pytest_report_header(config: pytest.Config) -> str:
    return f"childqueue: {config.stash[_QUEUE].cores} cores, children under {config.stash[_QUEUE].base}"


def _queue_children_of(item: pytest.Item) -> None:
    module = getattr(item, "module", None)
    # The fixture functions that could be the ones a name refers to: the test module's, then the conftests'.
    places = [module, *(p for p in item.config.pluginmanager.get_plugins() if isinstance(p, types.ModuleType))]
    for name in getattr(item, "fixturenames", ()):
        for place in places:
            made = getattr(place, name, None)
            if made in _BUILDS:
                _group(item.config, _BUILDS[made]).submit()
                break


def pytest_itemcollected(item: pytest.Item) -> None:
    """Where every collected test will run, its children start while the rest is still being collected."""
    option = item.config.option
    if any(getattr(option, name, None) for name in _NARROWING):
        return
    if item.config.hook.pytest_childqueue_start_early(item=item) is False:
        return
    _queue_children_of(item)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Queue, in test order, the children of every fixture made by ``children`` that a selected test uses."""
    if session.config.option.collectonly:
        return
    for item in session.items:
        _queue_children_of(item)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    queue = session.config.stash[_QUEUE]
    queue.close()
    if exitstatus == 0:
        shutil.rmtree(queue.base, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    queue = config.stash[_QUEUE]
    if queue.base.exists() and queue.started:
        terminalreporter.write_line(f"childqueue: {len(queue.started)} children; their folders: {queue.base}")


def pytest_unconfigure(config: pytest.Config) -> None:
    queue = config.stash.get(_QUEUE, None)
    if queue is not None and queue in _ACTIVE:
        _ACTIVE.remove(queue)
    previous = config.stash.get(_ON_TERM, None)
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)
