"""The childqueue plugin (tests/childqueue.py): its order, its selection, its core count, and a failing child's
output reaching the test. The queue's own tests run real (tiny) Python children; the plugin's run an inner
pytest session in a subprocess through ``pytester``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import childqueue
import pytest
from childqueue import Child, Children, _Queue, machine_cores

HERE = Path(__file__).resolve().parent

# A child that writes NAME.start, waits for the files named after it (up to a minute: a guard against a hang,
# not a measurement), prints which of them it saw, writes NAME.end and exits.
MEET = textwrap.dedent("""
    import pathlib, sys, time
    marks, name, *others = sys.argv[1:]
    marks = pathlib.Path(marks)
    (marks / (name + ".start")).touch()
    deadline = time.monotonic() + 60
    while others and not all((marks / o).exists() for o in others) and time.monotonic() < deadline:
        time.sleep(0.02)
    print(name, "saw", *[o for o in others if (marks / o).exists()])
    (marks / (name + ".end")).touch()
""")
# A child that prints which of the given marks existed when it started.
LOOK = "import pathlib, sys; m = pathlib.Path(sys.argv[1]); print(*[o for o in sys.argv[2:] if (m / o).exists()])"


@pytest.fixture
def queue(tmp_path):
    """A queue of its own (not the session's), closed after the test."""
    made = _Queue(1, tmp_path / "base", lambda home: {**os.environ, "HOME": str(home)})
    yield made
    made.close()


def test_a_failed_session_s_folder_is_removed_a_day_later_and_a_younger_one_kept(tmp_path, monkeypatch):
    """Folders kept for a look do not pile up, and a session running now keeps its folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old, young, other = tmp_path / "childqueue-old", tmp_path / "childqueue-young", tmp_path / "not-ours"
    for folder in (old, young, other):
        (folder / "child").mkdir(parents=True)
        if folder is not young:
            os.utime(folder, (time.time() - 2 * childqueue.KEEP_FAILED_S,) * 2)
    childqueue._remove_old_folders()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["childqueue-young", "not-ours"]


def test_the_core_count_is_read_from_the_machine():
    """The plugin plans for the cores this process may use (its CPU affinity), not a fixed number."""
    assert machine_cores() == len(os.sched_getaffinity(0))


@pytest.mark.subprocess
def test_after_starts_a_child_only_once_the_other_has_ended(tmp_path):
    """With cores to spare, ``after`` still holds a child back until the one it names has ended."""
    marks = tmp_path / "marks"
    marks.mkdir()
    queue = _Queue(4, tmp_path / "base", lambda home: {**os.environ, "HOME": str(home)})
    try:
        group = Children(
            tmp_path,
            {
                # "first" waits for a mark nobody writes until "release" runs: it ends only after "release" started.
                "first": Child(["-c", MEET, marks, "first", "release.start"]),
                "release": Child(["-c", MEET, marks, "release"]),
                "second": Child(["-c", LOOK, marks, "first.end"], after="first"),
            },
            queue,
        ).submit()
        second, _ = group("second")
        assert second.returncode == 0, second.stderr
        assert second.stdout.split() == ["first.end"]  # "first" had ended when "second" started
        assert queue.started.index("second") > queue.started.index("first")
    finally:
        queue.close()


@pytest.mark.subprocess
def test_beside_starts_both_children_even_on_one_core(tmp_path, queue):
    """On one core the queue runs one child at a time, but ``beside`` starts its child with the other: each sees
    the other start (run one after the other, the first would wait for the second in vain)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    group = Children(
        tmp_path,
        {"a": Child(["-c", MEET, marks, "a", "b.start"]), "b": Child(["-c", MEET, marks, "b", "a.start"], beside="a")},
        queue,
    )
    (a, _), (b, _) = group("a"), group("b")
    assert (a.stdout.split(), b.stdout.split()) == (["a", "saw", "b.start"], ["b", "saw", "a.start"])


@pytest.mark.subprocess
def test_a_child_waited_for_jumps_the_queue_with_what_it_needs(tmp_path, queue):
    """On one core nothing runs beside a working test; waiting for the last child of a queue starts it, after the
    child it needs, before anything queued ahead of them."""
    marks = tmp_path / "marks"
    marks.mkdir()
    group = Children(
        tmp_path,
        {
            **{f"early{i}": Child(["-c", MEET, marks, f"early{i}"]) for i in range(3)},
            "needed": Child(["-c", MEET, marks, "needed"]),
            "last": Child(["-c", LOOK, marks, "needed.end"], after="needed"),
        },
        queue,
    )
    group.submit()
    last, folder = group("last")
    assert last.stdout.split() == ["needed.end"] and folder == tmp_path / "last"
    assert queue.started[:2] == ["needed", "last"]  # (the next may start as the wait ends)


# --- the plugin, in an inner pytest session ------------------------------------------------------------------

INNER_CONFTEST = 'pytest_plugins = ["childqueue"]\n'

INNER_TESTS = textwrap.dedent("""
    import os, sys
    from pathlib import Path

    import pytest
    from childqueue import Child, children

    MARKS = os.environ["CQ_MARKS"]
    TOUCH = "import pathlib, sys; (pathlib.Path(sys.argv[1]) / sys.argv[2]).touch()"

    def _one(root):
        return {"c": Child(["-c", TOUCH, MARKS, "one"])}

    def _two(root):
        return {"c": Child(["-c", TOUCH, MARKS, "two"])}

    def _failing(root):
        return {"c": Child(["-c", "import sys; print('boom: the child says why', file=sys.stderr); sys.exit(3)"])}

    def _unprepared(root):
        def prepare(folder):
            raise ValueError("the folder could not be prepared")
        return {"c": Child(["-c", "pass"], prepare=prepare)}

    one, two, failing, unprepared = children(_one), children(_two), children(_failing), children(_unprepared)

    def test_one(one):
        assert one("c")[0].returncode == 0

    @pytest.mark.slow
    def test_two(two):
        assert two("c")[0].returncode == 0

    @pytest.mark.broken
    def test_failing(failing):
        proc, _ = failing("c")
        assert proc.returncode == 0, proc.stderr

    @pytest.mark.broken
    def test_unprepared(unprepared):
        unprepared("c")
""")


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch, tmp_path):
    """An inner session's folder with the plugin registered, and the folder its children mark (``marks``)."""
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TESTS)
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n    broken: broken\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("CQ_MARKS", str(marks))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))

    def run(*args: str) -> tuple[pytest.RunResult, list[str]]:
        for mark in marks.iterdir():
            mark.unlink()
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
        return result, sorted(mark.name for mark in marks.iterdir())

    return run


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("args", "started"),
    [
        pytest.param(["-m", "not broken"], ["one", "two"], id="every test selected"),
        pytest.param(["-k", "one"], ["one"], id="-k starts only the children of the tests it selects"),
        pytest.param(["-m", "slow"], ["two"], id="-m starts only the children of the tests it selects"),
        pytest.param(["--collect-only", "-m", "not broken"], [], id="--collect-only starts nothing"),
    ],
)
def test_a_selection_starts_only_the_children_its_tests_need(inner, args, started):
    """Children start for the selected tests only, and none for a run that only collects."""
    result, marks = inner(*args)
    assert result.ret == 0, result.stdout.str()
    assert marks == started


@pytest.mark.subprocess
def test_a_failing_child_s_output_reaches_the_test(inner):
    """A child's exit status and stderr reach the test that reads it; an error preparing it is raised there."""
    result, _ = inner("-m", "broken")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "boom: the child says why" in out and "assert 3 == 0" in out
    assert "ValueError: the folder could not be prepared" in out


@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"), reason="no taskset")
def test_the_session_plans_for_the_cores_it_may_use(inner, pytester: pytest.Pytester):
    """Narrowed to one core (``taskset``), the session says it plans for one; ``--child-cores`` overrides it."""
    one = pytester.run(
        "taskset",
        "-c",
        "0",
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--collect-only",
        "-m",
        "not broken",
    )
    assert one.ret == 0 and "childqueue: 1 cores" in one.stdout.str()
    result, _ = inner("--collect-only", "--child-cores", "3")
    assert "childqueue: 3 cores" in result.stdout.str()


def _gone(pid: int, within: float = 60) -> bool:
    """Whether process ``pid`` has ended (waited for up to ``within`` seconds: a guard, not a measurement)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.subprocess
def test_a_terminated_session_kills_the_children_it_started(pytester: pytest.Pytester, tmp_path):
    """SIGTERM to the test process (``timeout``, a CI runner) ends its children too, though they run in
    process groups of their own."""
    pytester.makeconftest(INNER_CONFTEST)
    pidfile = tmp_path / "child.pid"
    pytester.makepyfile(
        test_inner=textwrap.dedent(f"""
        from childqueue import Child, children

        SLEEP = "import os, pathlib, time; pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid())); time.sleep(600)"
        sleeper = children(lambda root: {{"c": Child(["-c", SLEEP])}}, name="sleeper")

        def test_waits(sleeper):
            sleeper("c")
        """)
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pidfile.read_text())
        inner.terminate()
        assert inner.wait(timeout=60) == -signal.SIGTERM  # it ended as SIGTERM ends a process
        assert _gone(child), "the child outlived the session"
    finally:
        inner.kill()
        inner.wait()
