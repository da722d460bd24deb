"""What every compare worker (a configuration's, ``worker.py``; a script's, ``scriptworker.py``) does in its
own process: end with its parent, read its spec, append its events, and say what it applied and what it
read back. The parent's side of the same lifecycle is compare/process.py; the two workers import this
module and nothing from each other."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .compare.protocol import Event

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_GONE = 137  # the status of a process ended by SIGKILL, as the kernel's own route gives


class Events:
    def __init__(self, path: str):
        self.handle = open(path, "a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        """Append ``event`` (a compare/protocol.py dataclass), stamped with the time and this process's pid."""
        # the pid: compare takes only this process's events, not those of a child the user's script forked
        stamped = dataclasses.replace(event, t=time.time(), pid=os.getpid())
        self.handle.write(stamped.to_json() + "\n")
        self.handle.flush()


def start(read_spec, spec_path: str):
    """The first steps of every compare worker (a configuration's or a script's): end with the parent, take
    Ctrl-C as "stop", read the spec, say it runs. Returns (spec, emit)."""
    set_parent_death_signal()  # first of all, so that the window without it is as short as can be
    # The parent forwards Ctrl-C as SIGINT: make it mean "stop" even if this process was started with
    # SIGINT ignored (as a shell does for background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from .compare import protocol as p

    spec = read_spec(spec_path)
    die_with_parent(spec.parent_pid)
    emit = Events(spec.events)
    emit(p.Spawned())
    return spec, emit


def unsupported_reason(plan, inventory) -> str | None:
    """Why this precision cannot really run on the chosen device (it would be emulated), or None."""
    from .devices import bf16_missing

    return bf16_missing(inventory, plan.gpus) if plan.precision == "bf16" else None


def gpus_seen(plan, count: int) -> int | None:
    """How many GPUs this configuration tells compare the machine has: None where its backend, set up for the
    CPU, cannot see them (compare must then not conclude that there are none)."""
    from . import backends

    return count if plan.gpus or backends.get(plan.backend).SEES_GPUS_WHEN_ON_CPU else None


def say_ready(plan, emit, settings: dict | None = None) -> dict | None:
    """Say Ready with the environment and configuration (and ``settings``, the varied ones as applied); None
    when the plan cannot run on this machine (then said as Unavailable), else the session's context."""
    from . import session
    from .apply import inventory
    from .compare import protocol as p

    machine = inventory()
    assert machine is not None  # activate() recorded it
    reason = unsupported_reason(plan, machine)
    context = session.context()
    emit(
        p.Ready(
            plan=context.get("plan"),
            environment=context["environment"],
            config=context["config"],
            gpus=gpus_seen(plan, len(machine.gpus)),
            settings=settings,
        )
    )
    if reason:
        emit(p.Unavailable(reason=reason))
        return None
    return context


def set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Linux: ask the kernel to send ``signum`` to this process when its parent ends; False elsewhere.

    prctl(PR_SET_PDEATHSIG) is a property of the child, so it is set here, in the worker; it fires when
    the parent *thread* that started us ends (compare starts workers from its main thread).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(parent_pid: int, interval: float = 0.5) -> threading.Thread:
    """The portable fallback: a daemon thread that ends this process once its parent is no longer ``parent_pid``.

    An orphan is re-parented (to init or a sub-reaper), so a changed ``getppid()`` means the parent is gone.
    """

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(PARENT_GONE)
            time.sleep(interval)

    thread = threading.Thread(target=watch, name="devswitch-parent-watch", daemon=True)
    thread.start()
    return thread


def die_with_parent(parent_pid: int | None, interval: float = 0.5) -> None:
    """End this process when ``parent_pid`` (default: the current parent) ends, however it ends."""
    set_parent_death_signal()
    expected = parent_pid if parent_pid is not None else os.getppid()
    # the parent may have died before the death signal was set: then nothing would ever send it
    if os.getppid() != expected:
        os._exit(PARENT_GONE)
    watch_parent(expected, interval)


def applied_settings(asked: dict, config) -> dict:
    """The varied settings as this worker's resolved configuration holds them ({name: {"value", "source"}}),
    for its records: what was applied, not only what compare asked for."""
    from .compare.axes import value_text

    return {name: {"value": value_text(name, config[name].value), "source": config[name].source} for name in asked}


def read_back(varied: dict) -> dict:
    """The settings in force when the script ended, as compare checks them against its column: the plan,
    the varied settings, and where a ``devswitch.configure`` of the script set each (file:line)."""
    from . import session, state

    try:
        plan = session.context().get("plan")
        settings = applied_settings(varied, session.config())
    except Exception as error:  # noqa: BLE001 - the script may have left devswitch in any state
        return {"error": f"{type(error).__name__}: {error}"}
    return {"plan": plan, "settings": settings, "where": dict(state.current().configured_at)}
