"""One owner for every worker process of ``devswitch compare``: the configuration's, the reference's and the
script's (``matrix``, ``rounds`` and ``script`` all start, watch and end their workers here).

A worker gets absolute paths, ``/dev/null`` as stdin and a process group of its own, which is ended as a
whole (SIGTERM, then SIGKILL after a grace period) when its column ends: no process a script starts
outlives its column. Compare opens the events file and the log itself before the worker starts and reads
both through its own descriptors, so a script that removes them (or the whole work folder) cannot take
them away; the log is read from its tail, a bounded number of bytes, however much the script prints.
Only events written by the worker's own pid count: a forked child of the script that ends cannot end the
run. A worker past its time limit (``--timeout``), or stopped (SIGSTOP) so that it will never go on, is
given up with a reason that says so.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import UsageError

GRACE_S = 5.0  # SIGTERM to the group, then SIGKILL after this long
STOP_GRACE_S = 15.0  # a worker asked to stop as Ctrl-C does: time to write what it measured
STOPPED_S = 10.0  # a worker stopped (SIGSTOP, SIGTSTP) this long is given up: nothing would wake it
LOG_TAIL_BYTES = 64 * 1024  # what compare reads of a log: the end, never the whole
EVENTS_MAX_BYTES = 64 * 1024 * 1024  # an events file beyond this is not read further (devswitch writes KiB)

# How a wait ended.
ENDED = "ended"  # the worker's process ended
TURN = "turn"  # it said "done" on its turn pipe (rounds)
LATE = "late"  # past the time limit
STALLED = "stalled"  # stopped by a signal, making no progress


def worker_env() -> dict[str, str]:
    """The environment of every worker: this one, unbuffered, with devswitch enabled."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DEVSWITCH_DISABLE", None)
    return env


def absolute(path: Path | str) -> Path:
    """``path`` from the root: a worker (or the script it runs) may change its working directory."""
    return Path(os.path.abspath(path))


def timeout_words(seconds: float) -> str:
    """ "20 s (--timeout 20)": the limit as the output names it."""
    return f"{seconds:g} s (--timeout {seconds:g})"


def last_error_line(text: str) -> str:
    """The last line of a worker's output that is not a framework's native log line ("no output" if none)."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not re.match(r"[EIW]\d{4} ", line)]
    return lines[-1][:200] if lines else "no output"


def _state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (Linux; None where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    end = data.rfind(b")")
    return data[end + 2 : end + 3].decode() if end > 0 else None


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    state = _state(pid)
    if state is not None:
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Worker:
    """One worker process: ``python -m MODULE SPEC`` with its events file and its log, started at once.

    ``log_header`` is written to the log first; ``append`` keeps what the log already holds (a script's log
    takes every round). ``pass_fds`` are handed to the worker (the rounds' pipes).
    """

    def __init__(
        self,
        module: str,
        spec: Path,
        events: Path,
        log: Path,
        timeout: float,
        append: bool = False,
        log_header: str = "",
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.spec, self.events_path, self.log_path = absolute(spec), absolute(events), absolute(log)
        self.timeout = timeout
        self.failure: str | None = None  # why compare gave the worker up (time limit, stopped), else None
        self.events: list[dict] = []
        self._buffer = b""
        self._read = 0
        self._stopped_since: float | None = None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)  # a script may have removed it
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._log = os.open(self.log_path, flags | (0 if append else os.O_TRUNC), 0o644)
        self._events = os.open(self.events_path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        if log_header:
            os.write(self._log, log_header.encode())
        self.log_start = os.fstat(self._log).st_size
        self.started = time.time()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, str(self.spec)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=worker_env(),
                # its own session and process group: a Ctrl-C at the terminal reaches compare only, which
                # forwards it; the group is ended as a whole. The worker ends itself when compare ends,
                # however it ends (see worker.die_with_parent).
                start_new_session=True,
                pass_fds=pass_fds,
            )
        except BaseException:
            self.close()
            raise
        self.pid = self.proc.pid

    # --- reading back -------------------------------------------------------------------------------

    def poll_events(self) -> list[dict]:
        """The events the worker wrote since the last call (complete lines, its own pid's only)."""
        new: list[dict] = []
        while self._read < EVENTS_MAX_BYTES:
            chunk = os.pread(self._events, 1 << 16, self._read)
            if not chunk:
                break
            self._read += len(chunk)
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            event = self._parse(line)
            if event is not None:
                new.append(event)
        self.events += new
        return new

    def _parse(self, line: bytes) -> dict | None:
        from . import protocol as p

        if not line.strip():
            return None
        try:
            event = json.loads(line.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            return None  # a line cut short (a worker killed mid-write): skip it, read on
        if not isinstance(event, dict) or event.get("event") not in p.EVENTS:
            return None
        if event.get("pid", self.pid) != self.pid:
            return None  # a forked child of the script: its "done" does not end the run
        return event

    def log_text(self, end: int | None = None) -> str:
        """The log from where this worker's output starts to ``end`` (default: its end), at most its last
        LOG_TAIL_BYTES, read through compare's own descriptor (the file may have been removed)."""
        size = os.fstat(self._log).st_size
        stop = min(end, size) if isinstance(end, int) and end >= self.log_start else size
        begin = max(self.log_start, stop - LOG_TAIL_BYTES)
        return os.pread(self._log, stop - begin, begin).decode("utf-8", errors="replace")

    def missing(self) -> list[str]:
        """The work files (spec, events, log) that are no longer where compare put them."""
        return [str(path) for path in (self.spec, self.events_path, self.log_path) if not path.exists()]

    # --- waiting ------------------------------------------------------------------------------------

    def wait(
        self, on_tick: Callable[[], None] | None = None, turns: int | None = None, limit: float | None = None
    ) -> str:
        """Until the worker ends (ENDED), says "done" on the pipe ``turns`` (TURN), passes ``limit`` seconds
        (LATE; default its timeout) or stays stopped by a signal (STALLED); ``failure`` then says why.
        ``on_tick`` runs between looks (progress lines)."""
        from .protocol import DONE_WORD

        limit = self.timeout if limit is None else limit
        deadline = time.monotonic() + limit
        while True:
            if turns is not None:
                ready, _, _ = select.select([turns], [], [], 1.0)
                if ready:
                    word = os.read(turns, 64)
                    return TURN if word.decode(errors="replace").strip() == DONE_WORD else ENDED
            else:
                try:
                    self.proc.wait(timeout=0.2)
                    return ENDED
                except subprocess.TimeoutExpired:
                    pass
            if on_tick is not None:
                on_tick()
            if time.monotonic() > deadline:
                self.failure = f"stopped after the time limit of {timeout_words(limit)}"
                return LATE
            if self._stopped():
                self.failure = f"the worker was stopped by a signal (SIGSTOP?) and made no progress for {STOPPED_S:g} s"
                return STALLED

    def _stopped(self) -> bool:
        if _state(self.pid) in ("T", "t"):
            self._stopped_since = self._stopped_since or time.monotonic()
            return time.monotonic() - self._stopped_since > STOPPED_S
        self._stopped_since = None
        return False

    # --- ending -------------------------------------------------------------------------------------

    def signal_group(self, signum: int) -> bool:
        """Send ``signum`` to the worker's process group; False when no process of it is left."""
        try:
            os.killpg(self.pid, signum)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:  # a member changed its user: the worker itself at least
            return self.proc.poll() is None

    def interrupt(self) -> None:
        """Ask the worker (and what it started) to stop as Ctrl-C does: it keeps what it measured."""
        self.signal_group(signal.SIGINT)
        self.signal_group(signal.SIGCONT)  # a stopped worker cannot take it otherwise

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Interrupt, wait up to ``grace`` seconds for the worker to end, then end the group."""
        self.interrupt()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self.end()

    def end(self, grace: float = GRACE_S) -> None:
        """End the worker and every process of its group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.proc.poll() is None or self._group_left():
            self.signal_group(signal.SIGTERM)
            self.signal_group(signal.SIGCONT)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and (self.proc.poll() is None or self._group_left()):
                time.sleep(0.05)
            if self.proc.poll() is None or self._group_left():
                self.signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:  # not even SIGKILL: nothing more to do than say nothing
            pass

    def _group_left(self) -> bool:
        """Some process of the worker's group still runs (a zombie waiting for its parent does not count)."""
        if self.proc.poll() is None:
            return True
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        try:  # Linux: look for one that is not a zombie
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        if os.getpgid(int(entry)) == self.pid and alive(int(entry)):
                            return True
                    except OSError:
                        continue
            return False
        except OSError:
            return True

    def close(self) -> None:
        """Let go of the events file and the log (read what is needed first)."""
        for fd in ("_log", "_events"):
            number = getattr(self, fd, None)
            if number is not None:
                try:
                    os.close(number)
                except OSError:
                    pass
                setattr(self, fd, None)


# --- memory up front -------------------------------------------------------------------------------------

# The memory of compare workers side by side: the framework's libraries once (file-backed pages, shared by
# every worker), and each worker's own memory once its model is built and run; measured on a 2-core CPU with
# TensorFlow 2.21 (mlp: 330 MiB private + 600 MiB of libraries; JAX and PyTorch take less). A factory of the
# user's is counted at DEFAULT_WORKER_MIB.
SHARED_MIB = 600
WORKER_MIB = {"mlp": 350, "small_cnn": 400, "alexnet": 1000}
DEFAULT_WORKER_MIB = 1024


def available_mib() -> float | None:
    """MemAvailable from /proc/meminfo, in MiB (None where it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(workers: int, target: str, rounds: int, available: float | None = None) -> None:
    """Refuse (UsageError, exit 2, nothing run) when ``workers`` side by side would not fit in the memory
    available: the libraries once (SHARED_MIB), and each worker at its model's figure (WORKER_MIB) or
    DEFAULT_WORKER_MIB."""
    available = available_mib() if available is None else available
    if available is None or workers < 2:
        return
    each = WORKER_MIB.get(target, DEFAULT_WORKER_MIB)
    need = SHARED_MIB + each * workers
    if need <= available:
        return
    fits = max(1, int((available - SHARED_MIB) // each))
    raise UsageError(
        f"this compare keeps {workers} workers alive side by side (--rounds {rounds}), about {each:,} MiB each "
        f"for {target} plus {SHARED_MIB} MiB of libraries ({need / 1024:.1f} GiB in all), and "
        f"{available / 1024:.1f} GiB is available; "
        "nothing was run",
        hint=f"add --rounds 1 (one worker at a time), or compare at most {fits} configurations at once",
    )
