"""`devswitch info` on hostile .devswitchrc files vs an empty one (issues 8 and 14).

A ``.devswitchrc`` is picked up automatically from the current directory upward, so a file in a cloned
repository is untrusted input. For each hostile case this script builds a fresh temporary project
directory (the child's cwd, holding the hostile ``.devswitchrc`` unless the case says otherwise) and a
fake, empty HOME, and runs ``python -m devswitch info`` there as a subprocess, with the parent's
environment minus every DEVSWITCH* variable. It measures, per case:

* wall time of the child, and its difference from the empty file's (seconds);
* peak RSS of that one child (``ru_maxrss`` from ``os.wait4`` on its pid, not the cumulative
  RUSAGE_CHILDREN), and the ratio peak-RSS(hostile) / peak-RSS(empty);
* exit code, the length of stderr in bytes and its first line.

The empty-file baseline is run ``--baseline-runs`` times (default 3) and its median taken, since the host
is noisy; each hostile case runs once (``--repeat N`` for more: medians, and a case fails if any run does).

Targets, per hostile case (all must hold for PASS):

* peak memory  <= 1.2 x the empty file's;
* wall time    <= 1.2 x the empty file's, and <= the empty file's + 2 s;
* a clear error: exit code 2, a ``devswitch: error: <where>: <message>`` line on stderr, stderr under
  4 KiB, and no "Traceback" -- except for a case marked "accepted" (``DEVSWITCHRC=/dev/null``), which must
  exit 0 like the empty file, with no error line and no Traceback.

The script is safe on code that blows up: every child runs in its own process group under RLIMIT_AS
(default 4 GiB), RLIMIT_FSIZE (256 MiB, so a runaway error message cannot fill the disk) and no core
files, and is killed (the whole group) after a wall-clock limit (default 60 s). A child that hits a limit
is reported as "exceeded ... limit" and FAILs. ``threads-4:2`` is informational only (no target).
``--source DIR`` measures another copy of the package (e.g. ``git archive HEAD devswitch | tar -x -C DIR``).
Exit status: 0 all targets met, 1 some case failed, 2 the harness could not build a case or the
baseline did not run cleanly.

Note: a forked child's peak RSS includes the harness's own pages until it execs (the harness RSS is
printed); it is far below the baseline, so it only sets a floor for cases that stop early.

``--scripts`` runs the other hostile input instead, the user's script under ``devswitch compare --script``
(issue 20): a fork whose child exits, a chdir, 400 MiB of output, ``input()``, an endless loop; each bounded
in time (its whole process group killed after ``--script-wall``, 120 s) and judged on compare's own peak
memory (<= 300 MiB), its exit code, the column's status and no process left (see SCRIPT_CASES).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
RC_NAME = ".devswitchrc"
MB = 1_000_000
MiB = 1024 * 1024
STDERR_LIMIT = 4096
MEM_FACTOR = 1.2
WALL_SLACK_S = 2.0
WALL_FACTOR = 1.2
CHUNK = 1 << 20
FSIZE_LIMIT = 256 * MiB


# --- building the cases ------------------------------------------------------------------------------


def write_rc(proj: Path, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    (proj / RC_NAME).write_bytes(data)


def write_big(path: Path, head: bytes, unit: bytes, size: int, tail: bytes) -> None:
    """head + unit repeated up to ``size`` bytes + tail, streamed so the harness stays small."""
    block = unit * max(1, CHUNK // len(unit))
    with open(path, "wb") as f:
        f.write(head)
        left = size
        while left > 0:
            piece = block[: left - left % len(unit)] if left < len(block) else block
            if not piece:
                break
            f.write(piece)
            left -= len(piece)
        f.write(tail)


def billion_laughs() -> str:
    """10 levels of anchors, each a list of 10 aliases of the level below: 10^10 leaves in ~400 bytes."""
    names = "abcdefghij"
    levels = ["&a [" + ",".join(["lol"] * 10) + "]"]
    for below, name in zip(names, names[1:]):
        levels.append(f"&{name} [" + ",".join([f"*{below}"] * 10) + "]")
    return "device: [" + ", ".join(levels) + "]\n"


@dataclass
class Case:
    name: str
    about: str
    build: Callable[[Path, Path], dict]  # (project dir, fake home) -> extra environment variables
    target: bool = True  # False: informational only
    skip: Callable[[], str | None] = lambda: None
    accepted: bool = False  # True: valid input, judged like the empty file (exit 0, no error line)
    cleanup: Callable[[Path, Path], None] = lambda proj, home: None


def _file(text: str | bytes) -> Callable[[Path, Path], dict]:
    def build(proj: Path, home: Path) -> dict:
        write_rc(proj, text)
        return {}

    return build


def _symlink(target: str) -> Callable[[Path, Path], dict]:
    def build(proj: Path, home: Path) -> dict:
        os.symlink(target, proj / RC_NAME)
        return {}

    return build


def _fifo(proj: Path, home: Path) -> dict:
    os.mkfifo(proj / RC_NAME)
    return {}


def _big_list(proj: Path, home: Path) -> dict:
    write_big(proj / RC_NAME, b"device:\n", b"  - cpu\n", 50 * MB, b"")
    return {}


def _big_comment(proj: Path, home: Path) -> dict:
    write_big(proj / RC_NAME, b"# ", b"x", 50 * MB, b"\ndevice: cpu\n")
    return {}


def _big_value(proj: Path, home: Path) -> dict:
    write_big(proj / RC_NAME, b'device: "', b"x", 50 * MB, b'"\n')
    return {}


def _no_such_user() -> str:
    name = "nosuchuser"
    while True:
        try:
            pwd.getpwnam(name)
        except KeyError:
            return name
        name += "x"


def _env_only(value: Callable[[Path], str]) -> Callable[[Path, Path], dict]:
    def build(proj: Path, home: Path) -> dict:
        return {"DEVSWITCHRC": value(proj)}

    return build


def _env(**variables: str) -> Callable[[Path, Path], dict]:
    def build(proj: Path, home: Path) -> dict:
        write_rc(proj, "")
        return dict(variables)

    return build


def _many_rc_paths(count: int) -> Callable[[Path, Path], dict]:
    """DEVSWITCHRC naming one ~1 MB file ``count`` times (short relative paths: one variable is at most
    128 KiB on Linux); unbounded, 5,000 of them took minutes."""

    def build(proj: Path, home: Path) -> dict:
        write_big(proj / "a", b"", b"# " + b"x" * 98 + b"\n", 1000 * 1000, b"device: cpu\n")
        return {"DEVSWITCHRC": os.pathsep.join(["a"] * count)}

    return build


def _home_000(proj: Path, home: Path) -> dict:
    write_rc(proj, "")
    home.chmod(0)
    return {}


CASES = [
    Case(
        "billion-laughs",
        "~400 bytes of nested YAML aliases under device: (10 levels x 10 wide)",
        _file(billion_laughs()),
    ),
    Case("deep-nesting-1k", "device: [[[... 1,000 levels", _file("device: " + "[" * 1000 + "]" * 1000 + "\n")),
    Case(
        "deep-nesting-100k", "device: [[[... 100,000 levels", _file("device: " + "[" * 100_000 + "]" * 100_000 + "\n")
    ),
    Case("fifo", ".devswitchrc is a FIFO nobody writes to", _fifo),
    Case("dev-zero", ".devswitchrc is a symlink to /dev/zero", _symlink("/dev/zero")),
    Case("dev-urandom", ".devswitchrc is a symlink to /dev/urandom", _symlink("/dev/urandom")),
    Case("env-dev-zero", "DEVSWITCHRC=/dev/zero, no file", _env_only(lambda proj: "/dev/zero")),
    Case("control-char-nul", "a NUL byte in a value", _file(b"device: cp\x00u\n")),
    Case("control-char-bel", "a BEL byte in a value", _file(b"device: cp\x07u\n")),
    Case("big-file", "50 MB file: ~6.5 million list entries under device:", _big_list),
    Case("big-comment", "50 MB comment line, then device: cpu", _big_comment),
    Case("big-value", 'device: "<50 MB of x>"', _big_value),
    Case(
        "bad-path-nosuchuser",
        "DEVSWITCHRC=~nosuchuser/x (unknown user)",
        _env_only(lambda proj: f"~{_no_such_user()}/x"),
    ),
    Case("bad-path-long-name", "DEVSWITCHRC=<a 300-character file name>", _env_only(lambda proj: "r" * 300)),
    Case(
        "bad-home-000",
        "HOME is a directory with mode 000 (empty project file)",
        _home_000,
        skip=lambda: "running as root: permissions do not apply" if os.geteuid() == 0 else None,
        cleanup=lambda proj, home: home.chmod(0o700) if home.exists() else None,
    ),
    # issue 14: values after YAML unescaping, hidden line breaks, where a project file may write, list bounds
    Case(
        "value-esc-title",
        r'report: "\e]0;pwned\a\e[2J.json" (terminal title, then clear screen)',
        _file('report: "\\e]0;pwned\\a\\e[2J.json"\n'),
    ),
    Case("value-esc-nul", r'report: "out\0.json" (a NUL after unescaping)', _file('report: "out\\0.json"\n')),
    Case("value-esc-nel", r'report: "out\x85.json" (NEL after unescaping)', _file('report: "out\\x85.json"\n')),
    Case(
        "value-esc-u2028", r'device: "cpu\u2028" (a line separator after unescaping)', _file('device: "cpu\\u2028"\n')
    ),
    Case(
        "comment-u2028",
        "# a harmless comment<U+2028>precision: fp16 (a hidden line)",
        _file("# a harmless comment\u2028precision: fp16\n"),
    ),
    Case("comment-bidi", "device: cpu # <U+202E RIGHT-TO-LEFT OVERRIDE>...", _file("device: cpu # \u202e61pf\n")),
    Case("env-value-esc", "DEVSWITCH_REPORT=x<ESC>[2J.json", _env(DEVSWITCH_REPORT="x\x1b[2J.json")),
    Case(
        "project-report-abs",
        "report: /tmp/devswitch-bench-outside/x.json in the project file",
        _file("report: /tmp/devswitch-bench-outside/x.json\n"),
    ),
    Case("project-report-up", "report: ../outside.json in the project file", _file("report: ../outside.json\n")),
    Case("env-rc-17", "DEVSWITCHRC naming a 1 MB file 17 times (one over the bound)", _many_rc_paths(17)),
    Case("env-rc-5000", "DEVSWITCHRC naming a 1 MB file 5,000 times", _many_rc_paths(5000)),
    Case(
        "flags-long-gpu-list",
        "DEVSWITCH_FLAGS=device=gpu:0,1,1,... (40,000 items)",
        _env(DEVSWITCH_FLAGS="device=gpu:0" + ",1" * 40_000),
    ),
    Case(
        "env-dev-null",
        "DEVSWITCHRC=/dev/null: no configuration file (accepted: exit 0 like the empty file)",
        _env(DEVSWITCHRC=os.devnull),
        accepted=True,
    ),
    Case(
        "threads-4:2",
        "threads: 4:2 (plain YAML 1.1 reads 4:2 as base-60 242) - informational, no target",
        _file("threads: 4:2\n"),
        target=False,
    ),
]
BY_NAME = {case.name: case for case in CASES}


# --- the user's script under compare --script (issue 20) ------------------------------------------------------
#
# ``--scripts`` runs these instead of the .devswitchrc cases: each is ``devswitch compare --script`` on a small
# hostile script (one configuration, the CPU in fp32), in its own process group, with stdin a pipe that stays
# open and says nothing (as a terminal would), killed as a whole after SCRIPT_WALL_S. Compare runs in a wrapper
# that prints its own peak memory (VmHWM of its image: not its workers', which are TensorFlow's). Targets per
# case: compare ends within its wall limit, its own peak memory stays under SCRIPT_MEM_MIB, its exit code and
# the column's status are what the case expects, no Traceback, and no process of the case is left.

SCRIPT_MEM_MIB = 300
SCRIPT_WALL_S = 120.0
SCRIPT_FSIZE = 1024 * MiB  # 400 MiB of output must fit in the log
COMPARE_MEASURED = (
    "import re, sys\nfrom _devswitch.cli import main\ncode = main(sys.argv[1:])\n"
    "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
    "print('COMPARE_PEAK_KIB', hwm, file=sys.stderr)\nsys.exit(code)\n"
)
TINY_FIT = (
    "import numpy as np, keras\n"
    "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])\n"
    "model.compile('sgd', 'mse')\n"
    "model.fit(np.zeros((8, 4)), np.zeros((8, 1)), epochs=1, batch_size=8, verbose=0)\n"
)


@dataclass
class ScriptCase:
    name: str
    about: str
    script: str
    status: str  # the column's status starts with this
    extra: tuple[str, ...] = ()
    code: int = 0  # compare's exit code
    wall_s: float = 60.0  # compare must end within this (the case's own bound, under SCRIPT_WALL_S)
    check: Callable[[dict, Path], str | None] | None = None  # more: the cell and the folder -> a problem or None


def _wall_at_least(seconds: float) -> Callable[[dict, Path], str | None]:
    def check(cell: dict, folder: Path) -> str | None:
        wall = (((cell.get("record") or {}).get("metrics") or {}).get("wall") or {}).get("value") or 0.0
        return None if wall >= seconds else f"script wall {wall:.2f} s < {seconds:g} s (a child's exit ended it)"

    return check


def _fit_kept_and_nothing_left(cell: dict, folder: Path) -> str | None:
    calls = [c.get("kind") for r in (cell.get("record") or {}).get("runs") or [] for c in r.get("calls") or []]
    if "fit" not in calls:
        return "the fit the script called was lost"
    left = list((folder / "elsewhere").iterdir()) if (folder / "elsewhere").is_dir() else []
    return f"left in the script's new directory: {[p.name for p in left]}" if left else None


SCRIPT_CASES = [
    ScriptCase(
        "script-fork",
        "a forked child calls sys.exit() at once; the parent runs 2 s more",
        "import os, sys, time\nif os.fork() == 0:\n    sys.exit(0)\ntime.sleep(2)\nos.wait()\n",
        "ok",
        check=_wall_at_least(1.9),
    ),
    ScriptCase(
        "script-chdir",
        "os.chdir() into a new folder, then a tiny fit",
        "import os\nos.makedirs('elsewhere', exist_ok=True)\nos.chdir('elsewhere')\n" + TINY_FIT,
        "ok",
        check=_fit_kept_and_nothing_left,
    ),
    ScriptCase(
        "script-output-400mib",
        "prints 400 MiB (400 lines of 1 MiB) to stdout",
        "import sys\nline = b'x' * ((1 << 20) - 1) + b'\\n'\nfor _ in range(400):\n    sys.stdout.buffer.write(line)\n",
        "ok",
    ),
    ScriptCase(
        "script-stdin",
        "input() with compare's stdin open and silent, --timeout 20",
        "print('hello', input('your name? '))\n",
        "failed: EOFError",
        extra=("--timeout", "20"),
        code=5,
        wall_s=40.0,
    ),
    ScriptCase(
        "script-endless",
        "while True: pass, --timeout 20",
        "while True:\n    pass\n",
        "failed: stopped after the time limit of 20 s (--timeout 20)",
        extra=("--timeout", "20"),
        code=5,
        wall_s=40.0,
    ),
]
SCRIPTS_BY_NAME = {case.name: case for case in SCRIPT_CASES}


def _group_left(pgid: int) -> bool:
    """Some process of the group ``pgid`` is still there (and not a zombie)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
    return False


def run_script_case(case: ScriptCase, root: Path, args) -> list[str]:
    """Run one script case; the targets it misses (empty: all met). Prints its figures."""
    folder = Path(tempfile.mkdtemp(prefix=f"{case.name}-", dir=root))
    home = folder / "home"
    home.mkdir()
    (folder / "script.py").write_text(case.script)
    argv = ["compare", "--script", "script.py", "--devices", "cpu", "--precisions", "fp32", "--out", "out"]
    env = child_env(home, {"DEVSWITCH_DISABLE": "1"}, args.source)  # compare's own process stays framework-free

    def limits():  # in the child between fork and exec: no core files, a bounded log
        resource.setrlimit(resource.RLIMIT_FSIZE, (SCRIPT_FSIZE, SCRIPT_FSIZE))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    problems: list[str] = []
    try:
        with tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-c", COMPARE_MEASURED, *argv, *case.extra],
                cwd=folder,
                env=env,
                stdin=subprocess.PIPE,  # open and silent, as a terminal nobody types into
                stdout=subprocess.DEVNULL,
                stderr=err,
                preexec_fn=limits,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=min(SCRIPT_WALL_S, args.script_wall))
            except subprocess.TimeoutExpired:
                problems.append(f"still running after {min(SCRIPT_WALL_S, args.script_wall):g} s: killed")
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            wall = time.perf_counter() - start
            time.sleep(0.5)  # the group's last members end
            if _group_left(proc.pid):
                problems.append("a process of the case outlived compare")
                os.killpg(proc.pid, signal.SIGKILL)
            err.seek(0)
            text = err.read(1 << 20).decode("utf-8", "replace")
        peak = next((int(w.split()[0]) for w in text.split("COMPARE_PEAK_KIB ")[1:]), None)
        try:
            cell = json.loads((folder / "out" / "results.json").read_text())["cells"][0]
        except (OSError, ValueError, KeyError, IndexError) as error:
            cell = {"status": f"(no results.json: {error})"}
        if wall > case.wall_s:
            problems.append(f"wall {wall:.1f} s > {case.wall_s:g} s")
        if peak is None:
            problems.append("compare did not say its peak memory")
        elif peak / 1024 > SCRIPT_MEM_MIB:
            problems.append(f"compare's peak memory {peak / 1024:.0f} MiB > {SCRIPT_MEM_MIB} MiB")
        if proc.returncode != case.code:
            problems.append(f"exit {proc.returncode} != {case.code}")
        if "Traceback" in text:
            problems.append("Traceback on stderr")
        if not str(cell.get("status", "")).startswith(case.status):
            problems.append(f"status {str(cell.get('status'))[:120]!r} does not start with {case.status!r}")
        more = case.check(cell, folder) if case.check and not problems else None
        if more:
            problems.append(more)
        shown = f"{peak / 1024:.0f} MiB" if peak is not None else "?"
        print(f"{case.name:<22}{wall:>8.1f}{shown:>12}{proc.returncode:>6}  {str(cell.get('status'))[:70]}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return problems


def run_scripts(args) -> int:
    cases = [SCRIPTS_BY_NAME[name] for name in args.script_case] if args.script_case else SCRIPT_CASES
    print(
        f"python {platform.python_version()} | {os.cpu_count()} CPUs | load {os.getloadavg()[0]:.2f} | "
        f"devswitch compare --script per case (PYTHONPATH={args.source}), compare's own peak <= {SCRIPT_MEM_MIB} MiB"
    )
    root = Path(tempfile.mkdtemp(prefix="bench-hostile-scripts-"))
    verdicts = []
    print(f"{'case':<22}{'wall s':>8}{'compare':>12}{'exit':>6}  status")
    try:
        for case in cases:
            verdicts.append((case, run_script_case(case, root, args)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    for case, problems in verdicts:
        print(f"{'FAIL' if problems else 'PASS'}: {case.name}: {'; '.join(problems) or 'meets every target'}")
    return 1 if any(problems for _, problems in verdicts) else 0


# --- running one child -----------------------------------------------------------------------------


@dataclass
class Run:
    wall_s: float
    maxrss_kib: int
    returncode: int | None  # negative: killed by that signal
    timed_out: bool
    stderr_bytes: int
    first_line: str
    last_line: str
    has_traceback: bool
    has_error_line: bool
    memory_error: bool


def _scan(fileobj, needles: tuple[bytes, ...]) -> set[bytes]:
    """Which needles occur in the file, read in chunks (stderr may be tens of MB)."""
    found, overlap, carry = set(), max(map(len, needles)) - 1, b""
    fileobj.seek(0)
    while chunk := fileobj.read(CHUNK):
        window = carry + chunk
        found.update(n for n in needles if n in window)
        carry = window[-overlap:] if overlap else b""
    return found


def _first_line(data: bytes) -> str:
    line = data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip()
    return line if len(line) <= 300 else line[:297] + "..."


def _wait_exit(pid: int, deadline: float) -> bool:
    """Wait until the child exits (True) or the deadline passes (False), without reaping it."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            left = deadline - time.perf_counter()
            if pidfd is not None:
                if select.select([pidfd], [], [], max(0.0, left))[0]:
                    return True
            elif os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            if left <= 0:
                return False
            if pidfd is None:
                time.sleep(min(0.005, left))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def run_child(cwd: Path, env: dict, timeout_s: float, mem_bytes: int, fsize_bytes: int) -> Run:
    """Run ``python -m devswitch info`` in ``cwd`` under the limits; its own wall time and rusage."""

    def limits():  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_bytes, fsize_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "devswitch", "info"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=limits,
            start_new_session=True,
        )
        try:
            timed_out = not _wait_exit(proc.pid, start + timeout_s)
        except BaseException:  # e.g. Ctrl-C: never leave the child behind
            os.killpg(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            raise
        if timed_out:
            # the leader is not reaped yet, so its pid (= the group id) is still ours
            os.killpg(proc.pid, signal.SIGKILL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)

        size = os.fstat(err.fileno()).st_size
        err.seek(0)
        head = err.read(STDERR_LIMIT)
        err.seek(max(0, size - STDERR_LIMIT))
        tail_lines = [ln for ln in err.read().split(b"\n") if ln.strip()]
        found = (
            _scan(err, (b"Traceback", b"MemoryError", b"bad_alloc", b"Cannot allocate memory", b"out of memory"))
            if size
            else set()
        )
        error_line = any(line.startswith(b"devswitch: error:") for line in head.split(b"\n"))
        return Run(
            wall,
            usage.ru_maxrss,
            proc.returncode,
            timed_out,
            size,
            _first_line(head),
            _first_line(tail_lines[-1]) if tail_lines else "",
            b"Traceback" in found,
            error_line,
            bool(found - {b"Traceback"}),
        )


def child_env(home: Path, extra: dict, source: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSWITCH")}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


@dataclass
class Result:
    case: Case
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None
    build_error: str | None = None

    @property
    def wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def maxrss_kib(self) -> float:
        return statistics.median(r.maxrss_kib for r in self.runs)


def run_case(case: Case | None, root: Path, runs: int, args) -> Result:
    """case None = the empty-file baseline."""
    result = Result(case or Case("empty", "empty .devswitchrc (baseline)", _file("")))
    if case and (reason := case.skip()):
        result.skipped = reason
        return result
    for _ in range(runs):
        where = Path(tempfile.mkdtemp(prefix=f"{result.case.name.replace(':', '_')}-", dir=root))
        proj, home = where / "project", where / "home"
        proj.mkdir()
        home.mkdir()
        try:
            try:
                extra = result.case.build(proj, home)
            except OSError as exc:
                result.build_error = f"{type(exc).__name__}: {exc}"
                return result
            run = run_child(
                proj, child_env(home, extra, args.source), args.timeout, int(args.mem_limit_gib * 1024**3), FSIZE_LIMIT
            )
            # show paths in the case's temporary directory as <tmp>/project/..., so messages fit
            run.first_line, run.last_line = (
                line.replace(str(where), "<tmp>") for line in (run.first_line, run.last_line)
            )
            result.runs.append(run)
        finally:
            result.case.cleanup(proj, home)
            shutil.rmtree(where, ignore_errors=True)
    return result


# --- judging and printing ----------------------------------------------------------------------------


def limit_note(run: Run, args) -> str | None:
    if run.timed_out:
        return f"exceeded wall limit (killed after {args.timeout:g} s)"
    if run.memory_error:
        return f"exceeded memory limit ({args.mem_limit_gib:g} GiB address space)"
    if run.returncode is not None and run.returncode < 0:
        sig = signal.Signals(-run.returncode).name
        if sig == "SIGXFSZ":
            return "exceeded output-size limit (256 MiB, SIGXFSZ)"
        return f"killed by {sig}"
    return None


def failures(result: Result, base: Result, args) -> list[str]:
    reasons: list[str] = []
    for run in result.runs:
        note = limit_note(run, args)
        problems = [note] if note else []
        if run.maxrss_kib > MEM_FACTOR * base.maxrss_kib:
            problems.append(f"peak RSS {run.maxrss_kib / base.maxrss_kib:.2f}x > {MEM_FACTOR}x")
        if run.wall_s > base.wall_s + WALL_SLACK_S:
            problems.append(f"wall +{run.wall_s - base.wall_s:.1f} s > +{WALL_SLACK_S:g} s")
        if run.wall_s > WALL_FACTOR * base.wall_s:
            problems.append(f"wall {run.wall_s / base.wall_s:.2f}x > {WALL_FACTOR}x")
        expected = 0 if result.case.accepted else 2
        if run.returncode != expected:
            problems.append(f"exit {run.returncode} != {expected}")
        if run.has_traceback:
            problems.append("Traceback on stderr")
        if run.stderr_bytes >= STDERR_LIMIT:
            problems.append(f"stderr {run.stderr_bytes} B >= {STDERR_LIMIT} B")
        if run.has_error_line != (not result.case.accepted):
            problems.append("a 'devswitch: error:' line" if result.case.accepted else "no 'devswitch: error:' line")
        reasons += [p for p in problems if p not in reasons]
    return reasons


def fmt_codes(result: Result) -> str:
    codes = []
    for run in result.runs:
        code = "kill" if run.timed_out else str(run.returncode)
        if code not in codes:
            codes.append(code)
    return "/".join(codes)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        metavar="NAME",
        action="append",
        choices=list(BY_NAME),
        help="run only this case (repeatable); the baseline always runs",
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--source",
        type=Path,
        default=REPO,
        metavar="DIR",
        help="directory holding the devswitch package to measure, put first on the child's "
        "PYTHONPATH (default: this checkout, %(default)s); e.g. a 'git archive HEAD' copy",
    )
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="runs per hostile case (default 1)")
    parser.add_argument(
        "--baseline-runs", type=int, default=3, metavar="N", help="runs of the empty file, median taken (default 3)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="wall-clock limit per child, seconds (default 60)"
    )
    parser.add_argument(
        "--mem-limit-gib", type=float, default=4.0, metavar="G", help="RLIMIT_AS per child, GiB (default 4)"
    )
    parser.add_argument(
        "--scripts",
        action="store_true",
        help="run the compare --script cases (a fork, a chdir, 400 MiB of output, stdin, an endless loop) instead",
    )
    parser.add_argument(
        "--script-case",
        metavar="NAME",
        action="append",
        choices=list(SCRIPTS_BY_NAME),
        help="with --scripts: only this case (repeatable)",
    )
    parser.add_argument(
        "--script-wall",
        type=float,
        default=SCRIPT_WALL_S,
        metavar="S",
        help=f"with --scripts: kill a case's whole process group after S seconds (default {SCRIPT_WALL_S:g})",
    )
    args = parser.parse_args()

    if args.scripts:
        return run_scripts(args)
    if args.list:
        for case in CASES:
            print(f"{case.name:<22}{case.about}")
        for script in SCRIPT_CASES:
            print(f"{script.name:<22}{script.about} (--scripts)")
        return 0
    cases = [BY_NAME[name] for name in args.only] if args.only else CASES

    print(
        f"python {platform.python_version()} | {os.cpu_count()} CPUs | load {os.getloadavg()[0]:.2f} | "
        f"limits per child: {args.mem_limit_gib:g} GiB address space, {args.timeout:g} s wall, "
        f"256 MiB per output file | harness RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    print(f"child: {sys.executable} -m devswitch info  (PYTHONPATH={args.source}, fake HOME, no DEVSWITCH* variables)")

    root = Path(tempfile.mkdtemp(prefix="bench-hostile-config-"))
    results: list[Result] = []
    t_all = time.perf_counter()
    try:
        print(f"empty .devswitchrc x{args.baseline_runs} ...", flush=True)
        base = run_case(None, root, args.baseline_runs, args)
        for run in base.runs:
            print(
                f"  empty: {run.wall_s:.2f} s, {run.maxrss_kib / 1024:.1f} MiB, exit {run.returncode}, "
                f"stderr[0] {run.first_line!r}"
            )
        for case in cases:
            print(f"{case.name} ...", end=" ", flush=True)
            result = run_case(case, root, args.repeat, args)
            results.append(result)
            if result.skipped or result.build_error:
                print("skipped" if result.skipped else "NOT BUILT", flush=True)
            else:
                print(f"{result.wall_s:.2f} s, exit {fmt_codes(result)}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - t_all

    base_ok = bool(base.runs) and all(r.returncode == 0 for r in base.runs)
    print()
    header = f"{'case':<22}{'wall s':>8}{'Δwall s':>9}{'peak MiB':>10}{'x empty':>9}{'exit':>6}{'stderr B':>10}  result"
    print(header)
    print("-" * len(header))
    if base.runs:
        print(
            f"{f'empty (median of {len(base.runs)})':<22}{base.wall_s:>8.2f}{'-':>9}{base.maxrss_kib / 1024:>10.1f}"
            f"{1:>9.2f}{fmt_codes(base):>6}{statistics.median(r.stderr_bytes for r in base.runs):>10.0f}  "
            f"{'baseline' if base_ok else 'BASELINE FAILED'}"
        )
    verdicts: list[tuple[str, str, str]] = []
    for result in results:
        name = result.case.name
        if result.skipped or result.build_error:
            status = "SKIP" if result.skipped else "NOT BUILT"
            print(
                f"{name:<22}{'':>8}{'':>9}{'':>10}{'':>9}{'':>6}{'':>10}  {status}: "
                f"{result.skipped or result.build_error}"
            )
            verdicts.append((status, name, result.skipped or result.build_error))
            continue
        reasons = failures(result, base, args) if base_ok else ["no baseline"]
        status = "INFO" if not result.case.target else "PASS" if not reasons else "FAIL"
        ratio = result.maxrss_kib / base.maxrss_kib if base.runs else float("nan")
        dwall = result.wall_s - base.wall_s if base.runs else float("nan")
        stderr_b = statistics.median(r.stderr_bytes for r in result.runs)
        print(
            f"{name:<22}{result.wall_s:>8.2f}{dwall:>+9.2f}{result.maxrss_kib / 1024:>10.1f}{ratio:>9.2f}"
            f"{fmt_codes(result):>6}{stderr_b:>10.0f}  {status}"
        )
        run = result.runs[0]
        print(f"{'':<4}stderr[0]: {run.first_line!r}")
        if run.last_line and run.last_line != run.first_line:
            print(f"{'':<4}stderr[-1]: {run.last_line!r}")
        verdicts.append((status, name, "; ".join(reasons) if reasons else "meets every target"))

    print()
    print(
        f"targets: peak RSS <= {MEM_FACTOR}x empty ({MEM_FACTOR * base.maxrss_kib / 1024:.0f} MiB), "
        f"wall <= {WALL_FACTOR}x empty and empty + {WALL_SLACK_S:g} s "
        f"({min(WALL_FACTOR * base.wall_s, base.wall_s + WALL_SLACK_S):.1f} s), exit 2 with a 'devswitch: "
        f"error:' line (accepted cases: exit 0, none), stderr < {STDERR_LIMIT} B, no Traceback"
        if base.runs
        else "targets: no baseline"
    )
    for status, name, why in verdicts:
        print(f"{status}: {name}: {why}")
    failed = [n for s, n, _ in verdicts if s == "FAIL"]
    not_built = [n for s, n, _ in verdicts if s == "NOT BUILT"]
    counted = [v for v in verdicts if v[0] in ("PASS", "FAIL")]
    print(f"{len(counted) - len(failed)} of {len(counted)} cases meet the targets; total {total:.0f} s")
    if not base_ok:
        print("ERROR: the empty-file baseline did not exit 0; ratios are meaningless")
        return 2
    if failed:
        return 1
    return 2 if not_built else 0


if __name__ == "__main__":
    sys.exit(main())
