"""The process-wide switch: resolve from the real environment, apply, remember.

This is the glue between the pure parts (config, devices) and apply; it holds
the one piece of module state devswitch has — what was applied in this process.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from .apply import apply
from .config import Config, resolve
from .devices import Inventory, Plan
from .errors import DevswitchError
from .sources import Layer

_current: dict[str, Any] = {"config": None, "plan": None, "explicit": {}, "atexit": False}


def resolve_here(explicit: Mapping[str, Any] | Layer | None = None) -> Config:
    """Resolve against this process's environment, home directory and working directory."""
    return resolve(os.environ, Path.home(), Path.cwd(), explicit)


def activate(explicit: Mapping[str, Any] | Layer | None = None, inventory: Inventory | None = None) -> Plan:
    """Resolve (with ``explicit`` values on top) and apply; remembers the result for config()/plan()."""
    cfg = resolve_here(explicit)
    plan = apply(cfg, inventory)
    kept = {e.key: e.raw for e in explicit.entries} if isinstance(explicit, Layer) else dict(explicit or {})
    _current.update(config=cfg, plan=plan, explicit=kept)
    if cfg.report != "off" and not _current["atexit"]:
        atexit.register(report_at_exit)
        _current["atexit"] = True
    return plan


def scope():
    """The applied strategy's scope (``with devswitch.scope(): model = ...``), or a no-op context."""
    import contextlib

    from .apply import strategy

    current = strategy()
    return current.scope() if current is not None else contextlib.nullcontext()


def runs() -> list:
    """The timed Keras calls of this process so far (records are immutable)."""
    from .timing import RUNS

    return list(RUNS)


def context() -> dict:
    """What every results file records beside the measurements: environment, configuration, decision."""
    from .devices import detect_cpu
    from .environment import versions

    cfg, plan = config(), _current["plan"]
    cpu = detect_cpu()
    data = {"environment": {**versions(), "cpu": cpu.model, "cpu_cores": cpu.cores,
                            "cpu_features": sorted(cpu.features)},
            "config": cfg.to_dict()}
    if plan is not None:
        data["plan"] = {"device": plan.device, "precision": plan.precision, "policy": plan.policy,
                        "device_reason": plan.device_reason, "precision_reason": plan.precision_reason}
        if plan.strategy is not None:
            data["plan"].update(strategy=plan.strategy.name, replicas=plan.strategy.replicas,
                                workers=plan.strategy.workers, role=plan.strategy.role)
    return data


def write_report(path: str) -> None:
    from .results import append_records

    append_records(path, runs(), **context())


def report_at_exit() -> None:
    """Print the summary of timed calls (report: summary / PATH.json) and write the JSON records."""
    cfg = _current["config"]
    records = runs()
    if cfg is None or cfg.report == "off" or not records:
        return
    from .results import render_calls

    print(render_calls(records), file=sys.stderr)
    if cfg.report.endswith(".json"):
        try:
            write_report(cfg.report)
            print(f"devswitch: wrote {len(records)} record(s) to {cfg.report}", file=sys.stderr)
        except (OSError, ValueError) as error:
            print(f"devswitch: error: could not write the report to {cfg.report}: {error}", file=sys.stderr)


def config() -> Config:
    """The resolved, immutable configuration in effect (resolved now if nothing was applied yet)."""
    return _current["config"] or resolve_here(_current["explicit"])


def plan() -> Plan | None:
    """The device/precision decision applied in this process, or None if devswitch is disabled."""
    return _current["plan"]


def configure(**settings: Any) -> Plan:
    """Apply explicit settings (highest precedence); earlier ``configure`` values are kept unless overridden."""
    return activate({**_current["explicit"], **settings})


def invoked_as_cli() -> bool:
    """True when this process is the ``devswitch`` command itself, which must not switch itself."""
    if os.path.basename(sys.argv[0] if sys.argv else "") in ("devswitch", "devswitch.exe"):
        return True
    argv = getattr(sys, "orig_argv", [])
    return any(a == "-m" and (b == "devswitch" or b.startswith("devswitch.")) for a, b in zip(argv, argv[1:]))


def _interactive() -> bool:
    return bool(getattr(sys, "ps1", None) or sys.flags.interactive or "IPython" in sys.modules)


def activate_on_import() -> None:
    """What ``import devswitch`` does: resolve and apply, unless DEVSWITCH_DISABLE is set.

    In a script, a configuration error ends the program with the message and no
    traceback (exit code of the error); in a notebook it is raised normally.
    """
    try:
        cfg = resolve_here()
        if cfg.disabled:
            _current["config"] = cfg
            return
        activate()
    except DevswitchError as error:
        if _interactive():
            raise
        print(f"devswitch: error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
