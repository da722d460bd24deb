"""The IPython extension: ``%load_ext devswitch``, then ``%devswitch precision=bf16 device=cpu``.

The magic parses its line with the parser of ``DEVSWITCH_FLAGS`` (``key=value`` separated by commas or
spaces, shell quoting) and applies the settings like ``configure()`` (same validation and messages,
printed without a traceback). After each cell that ran ``fit`` / ``evaluate`` / ``predict`` the new
timed calls are shown as a table (HTML in Jupyter); the cursor of what was shown lives on the session,
so ``devswitch.reset()`` starts it over.
"""

from __future__ import annotations

import shlex

from . import session, state
from .errors import DevswitchError, UsageError
from .sources import parse_flags

WHERE = "%devswitch"


def parse(line: str) -> dict[str, str]:
    """``key=value key=value`` (or comma-separated, as in DEVSWITCH_FLAGS) -> settings for configure()."""
    try:
        tokens = shlex.split(line)
    except ValueError as error:  # an unbalanced quote
        raise UsageError(f"{WHERE}: cannot read {line.strip()!r}: {error}",
                         hint=f"close the quote, e.g. {WHERE} report=\"my runs.json\"") from None
    return {entry.key: entry.raw for entry in parse_flags(",".join(tokens), where=WHERE)}


def devswitch_magic(line: str):
    """%devswitch [key=value ...]: apply settings (no argument: show what is in effect)."""
    try:
        if line.strip():
            session.configure(**parse(line))
        plan = session.plan()
        print(f"devswitch: {plan.summary()}" if plan else "devswitch: not applied (DEVSWITCH_DISABLE?)")
    except DevswitchError as error:
        print(f"devswitch: error: {error}")


def new_calls() -> list:
    """The timed calls the notebook has not shown yet; from now on they count as shown."""
    current = state.current()
    new = current.runs[current.notebook_seen:]
    current.notebook_seen = len(current.runs)
    return new


def _show_new_calls(result=None) -> None:
    new = new_calls()
    if new:
        from IPython.display import display

        from .render.calls import Calls

        display(Calls(new))


def load(ipython) -> None:
    new_calls()  # what ran before the extension was loaded is not this cell's
    ipython.register_magic_function(devswitch_magic, magic_kind="line", magic_name="devswitch")
    ipython.events.register("post_run_cell", _show_new_calls)
