"""The IPython extension: ``%load_ext devswitch``, then ``%devswitch precision=bf16 device=cpu``.

The magic applies settings like ``configure()`` (same validation and messages, printed without a
traceback), and after each cell that ran ``fit`` / ``evaluate`` / ``predict`` the new timed calls are
shown as a table (HTML in Jupyter).
"""

from __future__ import annotations

import shlex

from . import session
from .errors import DevswitchError, UsageError

_seen = {"count": 0}


def parse(line: str) -> dict[str, str]:
    """``key=value key=value`` (or comma-separated, as in DEVSWITCH_FLAGS) -> settings for configure()."""
    settings: dict[str, str] = {}
    for token in shlex.split(line.replace(",", " ") if "=" in line else line):
        key, sep, value = token.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"%devswitch: '{token}' is not key=value", hint="e.g. %devswitch precision=bf16 device=cpu")
        settings[key.strip().replace("-", "_")] = value.strip()
    return settings


def devswitch_magic(line: str):
    """%devswitch [key=value ...]: apply settings (no argument: show what is in effect)."""
    try:
        if line.strip():
            session.configure(**parse(line))
        plan = session.plan()
        print(f"devswitch: {plan.summary()}" if plan else "devswitch: not applied (DEVSWITCH_DISABLE?)")
    except DevswitchError as error:
        print(f"devswitch: error: {error}")


def _show_new_calls(result=None) -> None:
    from .timing import RUNS

    new = RUNS[_seen["count"]:]
    _seen["count"] = len(RUNS)
    if new:
        from IPython.display import display

        from .results import Calls

        display(Calls(new))


def load(ipython) -> None:
    from .timing import RUNS

    _seen["count"] = len(RUNS)
    ipython.register_magic_function(devswitch_magic, magic_kind="line", magic_name="devswitch")
    ipython.events.register("post_run_cell", _show_new_calls)
