"""One run of the user's unmodified script for ``devswitch compare --script``, as ``devswitch run`` runs it.

``python -m _devswitch.scriptworker SPEC.json``: devswitch is applied with the configuration's settings as
explicit settings (``fallback: error``, ``report: PATH.jsonl`` in the work folder), the session's caps set
(every ``fit`` clipped and labelled, see caps.py), then the script runs through ``launch.run_target`` with
its own arguments. Events go to the spec's events file; the script's output goes where compare points
this process's stdout and stderr (a log per configuration). The timing report is written at exit, as
``devswitch run`` writes it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the worker imports its parts when it runs
    from .compare.protocol import ScriptSpec
    from .errors import DevswitchError


def main(spec_path: str) -> int:
    from .compare import protocol as p
    from .workerbase import start

    spec, emit = start(p.ScriptSpec.read, spec_path)
    from . import session, state
    from .caps import Caps
    from .config import explicit_layer
    from .errors import DevswitchError

    try:
        plan = session.activate(explicit_layer(spec.settings, spec.where))
    except DevswitchError as error:
        _unavailable(spec, emit, error)
        return 0
    from .workerbase import applied_settings, say_ready

    varied = {k: v for k, v in spec.settings.items() if spec.where.get(k, "").startswith("devswitch compare (--vary")}

    if say_ready(plan, emit, applied_settings(varied, session.config())) is None:
        return 0
    state.current().caps = Caps.from_dict(spec.caps) or None
    return _run(spec, emit, varied)


def _unavailable(spec: ScriptSpec, emit: Callable[..., object], error: DevswitchError) -> None:
    """The column cannot run here (devswitch refused its settings): say why, with the GPUs seen if it asked one."""
    from .backends import detect_gpus
    from .compare import protocol as p
    from .devices import DeviceError

    gpus = len(detect_gpus(spec.settings["backend"])) if isinstance(error, DeviceError) else None
    emit(p.Unavailable(reason=error.message, gpus=gpus))


def _run(spec: ScriptSpec, emit: Callable[..., object], varied: dict) -> int:
    """The user's script, unmodified, then DONE with its exit code, wall time and the settings read back."""
    from . import state
    from .compare import protocol as p
    from .launch import run_target
    from .workerbase import read_back

    me = os.getpid()
    started = time.perf_counter()
    code = run_target(spec.target, list(spec.args), module=spec.module, failed=lambda error: failed(emit, error))
    wall = time.perf_counter() - started
    if os.getpid() != me:  # a child the script forked came back here (sys.exit): the run is not its to end
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    try:  # where the script's output ends in the log: the timing summary printed at exit comes after it
        log_end = os.lseek(1, 0, os.SEEK_CUR)
    except OSError:
        log_end = None
    emit(
        p.Done(
            exit_code=code, wall_s=wall, calls=len(state.current().runs), log_end=log_end, read_back=read_back(varied)
        )
    )
    return code


def failed(emit: Callable[..., object], error: BaseException) -> None:
    """The exception that ended the script, in its own words ("Type: message", and devswitch's note on a
    half-precision dtype mismatch): compare states it as the column's reason, not the log's last line."""
    from .compare import protocol as p
    from .errors import error_line
    from .halfnotes import NOTE_START, note_of

    note = note_of(error)
    said = f"{type(error).__name__}: {note[len(NOTE_START) :]}" if note else None
    emit(p.Failed(error=error_line(error), note=said))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
