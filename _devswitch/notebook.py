"""The IPython extension: ``%load_ext devswitch``, then ``%devswitch precision=bf16 device=cpu``.

The magic parses its line with the parser of ``DEVSWITCH_FLAGS`` (``key=value`` separated by commas or
spaces, shell quoting) and applies the settings like ``configure()`` (same validation and messages,
printed without a traceback, whatever the line holds) and prints the one summary of what is in effect;
a warning is shown when it is new, not again at every call. After each cell that ran ``fit`` /
``evaluate`` / ``predict`` the new timed calls are shown as one table (HTML in Jupyter), unless the
cell's own result is that table; the cursor of what was shown lives on the session, so
``devswitch.reset()`` starts it over. ``%reload_ext devswitch`` keeps what ``configure()`` set.
"""

from __future__ import annotations

import shlex

from . import session, state
from .apply import describe_plan
from .errors import DevswitchError, UsageError, clip, describe
from .sources import parse_flags

WHERE = "%devswitch"


def parse(line: str) -> dict[str, str]:
    """``key=value key=value`` (or comma-separated, as in DEVSWITCH_FLAGS) -> settings for configure()."""
    try:
        tokens = shlex.split(line)
    except ValueError as error:  # an unbalanced quote
        raise UsageError(
            f"{WHERE}: cannot read {line.strip()!r}: {error}",
            hint=f'close the quote, e.g. {WHERE} report="my runs.json"',
        ) from None
    return {entry.key: entry.raw for entry in parse_flags(",".join(tokens), where=WHERE)}


def devswitch_magic(line: str) -> None:
    """%devswitch [key=value ...]: apply settings (no argument: show what is in effect). Prints one summary,
    or one message; whatever the line holds, never a traceback."""
    try:
        plan = session.reconfigure(parse(line), announce=False) if line.strip() else session.plan()
        print(f"devswitch: {describe_plan(plan)}" if plan else "devswitch: not applied (DEVSWITCH_DISABLE?)")
    except DevswitchError as error:
        print(f"devswitch: error: {error}")
    except Exception as error:  # noqa: BLE001 - a notebook line gets a message, not a traceback
        print(
            f"devswitch: error: {WHERE} {clip(line.strip(), 60)!r} failed: {describe(error)} "
            "(a devswitch bug: please report it)"
        )


def new_calls() -> list:
    """The timed calls the notebook has not shown yet; from now on they count as shown."""
    current = state.current()
    new = current.runs[current.notebook_seen :]
    current.notebook_seen = len(current.runs)
    return new


def _show_new_calls(result=None) -> None:
    """After a cell: its new timed calls as one table, unless the cell's own result is already that table."""
    from .render.calls import Calls

    new = new_calls()
    if new and not isinstance(getattr(result, "result", None), Calls):
        from IPython.display import display

        display(Calls(new))


def load(ipython) -> None:
    """%load_ext devswitch (and %reload_ext): the magic and the after-cell table, registered once."""
    new_calls()  # what ran before the extension was loaded is not this cell's
    ipython.register_magic_function(devswitch_magic, magic_kind="line", magic_name="devswitch")
    ipython.events.register("post_run_cell", _show_new_calls)


def unload(ipython) -> None:
    """%unload_ext devswitch: no more after-cell tables (the configuration in effect stays)."""
    try:
        ipython.events.unregister("post_run_cell", _show_new_calls)
    except ValueError:  # not registered
        pass
