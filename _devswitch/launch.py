"""``devswitch run``: run an unmodified script (or module) under the switch, like ``python script.py``.

The script runs in this process after devswitch has been applied, with its own
``sys.argv``, ``__name__ == "__main__"`` and ``sys.path[0]``. Its exit code is
passed through and its exceptions print as Python prints them (devswitch's own
frames left out); the timing summary follows at exit.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from collections.abc import Callable
from types import TracebackType


def _user_traceback(tb: TracebackType | None, target: str) -> TracebackType | None:
    """Skip the frames of devswitch and runpy that lead to the user's code."""
    here = os.path.dirname(os.path.abspath(__file__))
    while tb is not None:
        filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not filename.startswith(here + os.sep) and "runpy" not in os.path.basename(filename):
            return tb
        tb = tb.tb_next
    return None


def exit_code(error: SystemExit) -> int:
    """The status Python itself would exit with for ``raise SystemExit(code)``."""
    code = error.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _told(error: BaseException, failed: Callable[[BaseException], object] | None) -> None:
    """The note on ``error`` added and ``failed`` told; neither may replace the script's own error."""
    from .halfnotes import explain_dtype_error

    for action in (explain_dtype_error, failed):
        try:
            if action is not None:
                action(error)
        except Exception:  # noqa: BLE001 - the script's error is printed whatever happens here
            pass


def run_target(
    target: str, args: list[str], module: bool = False, failed: Callable[[BaseException], object] | None = None
) -> int:
    """Run ``target`` (a path, or a module name with ``module=True``) as ``__main__``; return its exit code.

    An exception that ends the script is printed as Python prints it, after devswitch's note on a
    half-precision dtype mismatch (halfnotes) is added to it and ``failed`` is told of it."""
    from . import state

    state.current().process["launched"] = target  # the summary at exit then names --report, not summary()
    if module:
        sys.argv = [target, *args]
        sys.path.insert(0, os.getcwd())
    else:
        sys.argv = [target, *args]
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
    try:
        if module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as error:
        return exit_code(error)
    except KeyboardInterrupt as error:
        traceback.print_exception(type(error), error, _user_traceback(error.__traceback__, target))
        return 130
    except BaseException as error:  # noqa: BLE001 - shown exactly as Python would show it
        _told(error, failed)
        sys.stderr.flush()
        traceback.print_exception(type(error), error, _user_traceback(error.__traceback__, target))
        return 1
    finally:
        sys.stdout.flush()
    return 0
