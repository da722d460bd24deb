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

import errno
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError, summarize
from . import protocol as p
from .protocol import Event

if TYPE_CHECKING:
    from .options import Options

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
UNTIL = "until"  # what it was waited for happened (``until``)


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


FULL_WORDS = "; the disk takes no more: the columns after it are not started"


def full_disk(error: OSError) -> bool:
    """The file system (or a quota, or a file-size limit) takes no more: later writes will fail alike."""
    return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def unwritable(error: OSError, where: Path | str) -> str:
    """Why a column did not start: its work files (spec, events, log) could not be written."""
    text = f"its work files could not be written ({error.strerror or error}: {error.filename or where})"
    return text + (FULL_WORDS if full_disk(error) else "")


def full_disk_reason(run: object) -> str | None:
    """The reason of a run (anything with ``unwritable``) that found the disk full, else None."""
    reason = getattr(run, "unwritable", None)
    return reason if isinstance(reason, str) and FULL_WORDS in reason else None


def not_started(reason: str) -> str:
    """The status of a column not started because an earlier one found the disk full."""
    said = reason.split(FULL_WORDS)[0].replace("its work files", "an earlier column's work files", 1)
    return f"failed: not started: {said}"


_RAISED = re.compile(r"([A-Za-z_][\w.]*)(?::\s(.*))?$")  # "Type: message" at the start of a line


def raised_line(text: str) -> str | None:
    """ "Type: message" of the exception whose traceback a log ends with (the message's most telling line, as
    errors.describe picks it: not the argument list Keras appends), or None when the log has no traceback."""
    lines = text.splitlines()
    start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Traceback (most recent")), None)
    if start is None:
        return None
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if not line or line[0].isspace():
            continue  # a frame, its source line, a caret line
        match = _RAISED.match(line)
        if match is None:
            return None
        message = "\n".join([match.group(2) or "", *lines[i + 1 :]])
        return summarize(match.group(1).rsplit(".", 1)[-1], message)
    return None


def last_error_line(text: str) -> str:
    """The exception a worker's output ends with ("Type: message"), else its last line that is not a
    framework's native log line ("no output" if none)."""
    raised = raised_line(text)
    if raised is not None:
        return raised
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
        self.events: list[Event] = []
        self._buffer = b""
        self._read = 0
        self._stopped_since: float | None = None
        opened: list[int] = []
        try:  # a full disk (or a script that replaced the folder by a file): an OSError, nothing left open
            self.log_path.parent.mkdir(parents=True, exist_ok=True)  # a script may have removed it
            flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
            opened.append(os.open(self.log_path, flags | (0 if append else os.O_TRUNC), 0o644))
            opened.append(os.open(self.events_path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644))
            if log_header:
                os.write(opened[0], log_header.encode())
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise
        self._log, self._events = opened
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

    def poll_events(self) -> list[Event]:
        """The events the worker wrote since the last call (complete lines, its own pid's only)."""
        new: list[Event] = []
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

    def _parse(self, line: bytes) -> Event | None:
        if not line.strip():
            return None
        try:
            event = json.loads(line.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            return None  # a line cut short (a worker killed mid-write): skip it, read on
        if not isinstance(event, dict) or event.get("pid", self.pid) != self.pid:
            return None  # a forked child of the script: its "done" does not end the run
        try:
            return p.decode_event(event, str(self.events_path))
        except p.EventError as error:  # this run fails, naming the field; the others go on
            return p.Failed(t=time.time(), error=f"a malformed worker event: {error}")

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
        self,
        on_tick: Callable[[], None] | None = None,
        turns: int | None = None,
        limit: float | None = None,
        until: Callable[[], bool] | None = None,
    ) -> str:
        """Until the worker ends (ENDED), says "done" on the pipe ``turns`` (TURN), ``until()`` is true (UNTIL),
        passes ``limit`` seconds (LATE; default its timeout) or stays stopped by a signal (STALLED); ``failure``
        then says why. ``on_tick`` runs between looks (progress lines)."""
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
            if until is not None and until():
                return UNTIL
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

# The memory of compare workers side by side: each backend's libraries once (file-backed pages, shared by every
# worker: RssFile), and each worker's own memory (RssAnon) at its peak over a default compare (batch sizes 1 and
# 128, the model built, warmed up, timed, its predict baseline and its peak probe), which it keeps while the
# others take their turns. Measured on 2026-12-05 with `devswitch compare NAME --rounds 1` on a 2-core Intel Xeon
# (24 GiB, no GPU), Python 3.11, Keras 3.15.1, TensorFlow 2.21.0, JAX 0.10.2, PyTorch 2.14.1, reading
# /proc/PID/status of each worker (docs/trust.md has the table):
#   TensorFlow  mlp        330 MiB after build, 407 MiB at its peak; libraries 615 MiB
#   TensorFlow  small_cnn  316 MiB after build, 428 MiB at its peak
#   TensorFlow  alexnet    700 MiB after build, 1,491 MiB at its peak
#   JAX         mlp        374 MiB after build, 440 MiB at its peak; libraries 634 MiB
#   PyTorch     mlp        668 MiB after build, 720 MiB at its peak; libraries 934 MiB
# A bundled model is counted at its figure (rounded up), and never below what its backend takes for the mlp. A
# factory of the user's is counted at what the first worker holds once its model is built (measured then, before
# any other worker starts): a floor, since a worker grows while it measures (1.2x to 2.1x for the bundled ones).
WORKER_MIB = {"mlp": 410, "small_cnn": 430, "alexnet": 1500}
BACKEND_MIB = {"tensorflow": 410, "jax": 440, "torch": 720}  # the mlp on each backend: the least a worker takes
SHARED_MIB = {"tensorflow": 620, "jax": 640, "torch": 940}  # each backend's libraries, once
MEASURED_ON = "as measured, see docs/trust.md"


@dataclass(frozen=True)
class Estimate:
    """What one more worker takes (MiB, by backend), where the figure comes from, and the libraries of each
    backend counted once (MiB; zero for a backend whose libraries are already in memory)."""

    each: dict[str, float]
    source: str
    shared: dict[str, float]

    def worker(self, backend: str) -> float:
        return self.each.get(backend, max(self.each.values(), default=0.0))


def bundled_estimate(target: str) -> Estimate | None:
    """The documented figures of a bundled model; None for a factory of the user's (measured when it runs)."""
    if target not in WORKER_MIB:
        return None
    each = {backend: float(max(WORKER_MIB[target], mib)) for backend, mib in BACKEND_MIB.items()}
    return Estimate(each, MEASURED_ON, {k: float(v) for k, v in SHARED_MIB.items()})


def memory_of(pid: int) -> tuple[float, float] | None:
    """(private, file-backed) resident memory of ``pid`` in MiB (RssAnon, RssFile; Linux), or None."""
    found: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile"):
                    found[key] = int(value.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return (found["RssAnon"], found["RssFile"]) if len(found) == 2 else None


def measured_estimate(worker: Worker, backend: str, progress: Callable[[str], None] | None = None) -> Estimate | None:
    """The first worker of a factory of the user's, once it says BUILT (or ends, or passes its time limit):
    what it holds then, as the figure of every other worker (None when it could not be read)."""

    def built() -> bool:
        worker.poll_events()
        return p.first(worker.events, p.Built, p.Unavailable, p.Failed) is not None

    if worker.wait(until=built) != UNTIL or p.first(worker.events, p.Built) is None:
        return None
    memory = memory_of(worker.pid)
    if memory is None:
        return None
    private, _ = memory
    if progress is not None:
        progress(f"the first worker holds {private:,.0f} MiB of its own once the model is built")
    return Estimate(
        {backend: private},
        "what the first worker held once the model was built",
        {k: 0.0 if k == backend else float(v) for k, v in SHARED_MIB.items()},
    )


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


def first_workers(options: Options) -> list[str]:
    """The backend of every worker a compare with rounds starts at once: the reference (when accuracy is
    measured) and each configuration whose framework is installed, but not a GPU configuration that waits for
    a CPU one of its backend to say whether there is a GPU at all (counted when it starts, if it does)."""
    from .. import backends

    configs = options.configurations
    on_cpu = {c.backend for c in configs if c.device == "cpu"}
    found = [
        c.backend
        for c in configs
        if not backends.missing_reason(c.backend) and (c.device == "cpu" or c.backend not in on_cpu)
    ]
    if options.accuracy_samples and not backends.missing_reason(options.baseline.backend):
        found.insert(0, options.baseline.backend)
    return found


def check_memory(
    backends: list[str],
    target: str,
    rounds: int,
    available: float | None = None,
    estimate: Estimate | None = None,
    running: tuple[int, ...] = (),
    running_backends: tuple[str, ...] = (),
) -> None:
    """Refuse (UsageError, exit 2) when the workers of ``backends`` (one entry per worker) will not fit beside
    those already ``running`` (their pids, of ``running_backends``) in the memory available: each at the
    estimate's figure (default: the model's documented one), each backend's libraries once, and what the
    running workers will still grow to their figure. Nothing to say for a factory without an estimate."""
    estimate = estimate or bundled_estimate(target)
    total = len(backends) + len(running)
    if estimate is None or not backends or total < 2:
        return
    available = available_mib() if available is None else available
    if available is None:
        return
    loaded = set(running_backends)
    shared = sum(estimate.shared.get(b, 0.0) for b in set(backends) - loaded)
    grow = 0.0
    for pid, backend in zip(running, running_backends, strict=False):
        memory = memory_of(pid)
        grow += max(0.0, estimate.worker(backend) - (memory[0] if memory else 0.0))
    need = shared + grow + sum(estimate.worker(b) for b in backends)
    if need <= available:
        return
    each = max(estimate.worker(b) for b in backends)
    fits = max(1, int((available - shared) // each) + len(running)) if each else total
    started = "; the workers started so far were ended, nothing was measured" if running else "; nothing was run"
    raise UsageError(
        f"this compare keeps {total} workers alive side by side (--rounds {rounds}), about {each:,.0f} MiB each "
        f"for {target} ({estimate.source})"
        + (f" plus {shared:,.0f} MiB of libraries" if shared else "")
        + f": {need / 1024:.1f} GiB {'more ' if running else ''}in all, and {available / 1024:.1f} GiB is available"
        + started,
        hint=f"add --rounds 1 (one worker at a time), or compare at most {min(fits, total - 1)} configurations at once",
    )
