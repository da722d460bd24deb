"""The process-wide switch: resolve from the real environment, apply, remember; the public API over
the one session object.

This is the glue between the pure parts (config, decide) and apply. Every piece of process state
devswitch keeps lives on ``state.current()`` (a ``state.Session``): the configuration, the plan, the
explicit values, what was applied, the timed runs, the notebook's cursor, each backend's state;
``reset()`` undoes what devswitch changed and clears it all.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from types import FrameType
from typing import Any

from . import state
from .apply import apply
from .config import Config, is_disabled, resolve
from .devices import Inventory, Plan
from .errors import DevswitchError
from .sources import Layer

# One configure() at a time: config(), plan() and Keras' policy always describe the same call.
_lock = threading.RLock()


def resolve_here(explicit: Mapping[str, Any] | Layer | None = None) -> Config:
    """Resolve against this process's environment, home directory and working directory."""
    return resolve(os.environ, Path.home(), Path.cwd(), explicit)


def activate(
    explicit: Mapping[str, Any] | Layer | None = None, inventory: Inventory | None = None, announce: bool = True
) -> Plan:
    """Resolve (with ``explicit`` values on top) and apply; remembers the result for config()/plan().
    ``announce``: log the applied plan's summary (the notebook's magic prints it itself)."""
    with _lock:
        cfg = resolve_here(explicit)
        plan = apply(cfg, inventory, announce)
        kept = {e.key: e.raw for e in explicit.entries} if isinstance(explicit, Layer) else dict(explicit or {})
        session = state.current()
        session.config, session.plan, session.explicit = cfg, plan, kept
        if cfg.report != "off" and not session.process.get("atexit"):
            atexit.register(report_at_exit)  # once per process: a reset does not unregister it
            session.process["atexit"] = True
        return plan


def scope():
    """The applied strategy's scope (``with devswitch.scope(): model = ...``), or a no-op context."""
    import contextlib

    from .apply import strategy

    current = strategy()
    return current.scope() if current is not None else contextlib.nullcontext()


def runs():
    """The timed Keras calls of this process so far: a list of immutable records that prints (and renders
    in Jupyter) as the summary table."""
    from .render.calls import Calls

    return Calls(state.current().runs)


def summary():
    """The timing summary of this process as an object: a table in a terminal, an HTML table in Jupyter."""
    return runs()


def context() -> dict:
    """What every results file records beside the measurements: environment, configuration, decision."""
    from .devices import detect_cpu
    from .environment import versions

    cfg, plan = config(), state.current().plan
    cpu = detect_cpu()
    data = {
        "environment": {
            **versions(plan.backend if plan else None),
            "cpu": cpu.model,
            "cpu_cores": cpu.cores,
            "cpu_features": sorted(cpu.features),
            "cpu_feature_edits": list(cpu.edits),  # DEVSWITCH_CPU_FEATURES: features hidden or claimed
        },
        "config": cfg.to_dict(),
    }
    if plan is not None:
        data["plan"] = {
            "backend": plan.backend,
            "device": plan.device,
            "precision": plan.precision,
            "policy": plan.policy,
            "math": plan.math,
            "device_reason": plan.device_reason,
            "precision_reason": plan.precision_reason,
        }
        if plan.strategy is not None:
            data["plan"].update(
                strategy=plan.strategy.name,
                replicas=plan.strategy.replicas,
                workers=plan.strategy.workers,
                role=plan.strategy.role,
            )
    return data


def report_at_exit() -> None:
    """Print the summary of timed calls (report: summary / PATH.json) and append this run to the report.

    The report is JSON Lines, one line per run with that run's own context; when it cannot be
    written, the run goes to a file beside it and the message says where (nothing measured is lost).
    """
    cfg = state.current().config
    records = runs()
    if cfg is None or cfg.report == "off" or not records:
        return
    from .render.calls import print_calls
    from .results import save_report

    print_calls(records)
    if cfg.report not in ("off", "summary"):
        try:
            data = context()
        except Exception as error:  # noqa: BLE001 - the records matter more than their context
            data = {"context_error": f"{type(error).__name__}: {error}"}
        written, note = save_report(cfg.report, records, data)
        if note is None:
            print(f"devswitch: wrote {len(records)} record(s) to {written}", file=sys.stderr)
        else:
            print(f"devswitch: error: {note}", file=sys.stderr)


def config() -> Config:
    """The resolved, immutable configuration in effect (resolved now if nothing was applied yet)."""
    with _lock:
        session = state.current()
        return session.config or resolve_here(session.explicit)


def plan() -> Plan | None:
    """The device/precision decision applied in this process, or None if devswitch is disabled."""
    with _lock:
        return state.current().plan


def configure(**settings: Any) -> Plan:
    """Apply explicit settings (highest precedence); earlier ``configure`` values are kept unless overridden.

    Every value is validated before anything is applied: a refused call leaves the configuration, the plan,
    Keras and the variables devswitch sets as they were (a framework imported to look at the devices stays
    imported).
    """
    plan = reconfigure(settings)
    called = caller()
    if called is not None:  # where each value came from, for compare --script's check of its columns
        state.current().configured_at.update(dict.fromkeys(settings, f"devswitch.configure at {called}"))
    return plan


def caller() -> str | None:
    """ "train.py:2": the first frame outside devswitch that led here (None if there is none)."""
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame = frame.f_back
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}" if frame is not None else None


def reconfigure(settings: Mapping[str, Any], announce: bool = True) -> Plan:
    """configure(**settings), with the summary logged only when ``announce``."""
    with _lock:
        return activate({**state.current().explicit, **settings}, announce=announce)


def reset() -> None:
    """Undo everything devswitch changed in this process: Keras patches, the dtype policy, the strategy,
    environment variables, loggers; forget the configuration, the plan, the timed records, the notebook's
    cursor and each backend's state (everything on the session).

    What TensorFlow fixes when its runtime starts (visible devices, thread pools, logical CPUs) stays
    as it is: no library can change it again inside the same process.
    """
    with _lock:
        problems = state.reset()
    if problems:
        raise RuntimeError("devswitch.reset() could not undo: " + "; ".join(problems))


def invoked_as_cli() -> bool:
    """True when this process is the ``devswitch`` command itself, which must not switch itself."""
    if os.path.basename(sys.argv[0] if sys.argv else "") in ("devswitch", "devswitch.exe"):
        return True
    argv = getattr(sys, "orig_argv", [])
    return any(
        a == "-m" and (b in ("devswitch", "_devswitch") or b.startswith(("devswitch.", "_devswitch.")))
        for a, b in pairwise(argv)
    )


def _interactive() -> bool:
    """A person at a prompt (python -i, a REPL, IPython or Jupyter), not merely IPython importable.

    TensorFlow imports IPython wherever it is installed, so "IPython in sys.modules" would take every
    script for a notebook; a running IPython shell is what get_ipython() returns.
    """
    if getattr(sys, "ps1", None) or sys.flags.interactive:
        return True
    ipython = sys.modules.get("IPython")
    try:
        return ipython is not None and ipython.get_ipython() is not None
    except Exception:  # noqa: BLE001 - a broken IPython is not a shell
        return False


def activate_on_import() -> None:
    """What ``import devswitch`` does: resolve and apply, unless DEVSWITCH_DISABLE is set.

    In a script, a configuration error ends the program with the message and no
    traceback (exit code of the error); in a notebook it is raised normally.
    """
    try:
        if is_disabled(os.environ):
            return  # nothing read, nothing validated, nothing changed
        # the values configure() gave stay (a re-import: %reload_ext devswitch); empty at the first import
        activate(state.current().explicit)
    except DevswitchError as error:
        if _interactive():
            raise
        print(f"devswitch: error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
