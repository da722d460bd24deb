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
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from . import backends, hook, state
from .apply import _check_backend, apply, apply_to_keras, log, prepare, setup_logging, variables
from .config import Config, is_disabled, resolve
from .devices import Inventory, Plan
from .errors import DevswitchError
from .sources import Layer

# One configure() at a time: config(), plan() and Keras' policy always describe the same call.
_lock = threading.RLock()


def resolve_here(explicit: Mapping[str, Any] | Layer | None = None) -> Config:
    """Resolve against this process's environment, home directory and working directory."""
    return resolve(os.environ, Path.home(), Path.cwd(), explicit)


Explicit = Mapping[str, Any] | Layer | None


def _kept(explicit: Explicit) -> dict[str, Any]:
    return {e.key: e.raw for e in explicit.entries} if isinstance(explicit, Layer) else dict(explicit or {})


def begin(explicit: Explicit = None) -> None:
    """What ``import devswitch`` and ``devswitch run`` do: resolve and validate now, set the variables a
    framework reads when it starts, and apply the rest when the process first imports Keras (an import
    hook), so what the script puts in ``os.environ`` before ``import keras`` is seen. With Keras already
    imported, everything is applied at once. Imports no framework itself."""
    with _lock:
        if "keras" in sys.modules:
            activate(explicit)
            return
        _settle_pending()  # an earlier begin() that is still waiting is replaced
        cfg = resolve_here(explicit)
        if _backend_given(cfg):
            _refuse_now(cfg)
        environ = dict(os.environ)
        wanted = _given_variables(cfg)
        for name, value in wanted.items():
            state.setenv(name, value)
        library = backends.get(cfg.backend).LIBRARY
        finder = hook.KerasFinder(_keras_starting, _keras_started, library, lambda: _framework_started(library))
        session = state.current()
        session.pending = state.Pending(explicit, environ, wanted, finder)
        session.explicit = _kept(explicit)
        hook.install(finder)
        state.on_reset("keras-hook", lambda: hook.remove(finder))


def _refuse_now(cfg: Config) -> None:
    """What can be refused for a backend given to devswitch before any framework starts: not installed, a
    setting it cannot honour at all, a multi_worker strategy without its cluster."""
    _check_backend(cfg)
    backend = backends.get(cfg.backend)
    backend.refuse(cfg)
    cluster = getattr(backend, "cluster", None)  # a backend that joins its cluster itself checks it first
    if cfg.strategy == "multi_worker" and cluster is not None:
        cluster(cfg, os.environ)


def _keras_starting() -> None:
    """The hook, just before Keras' package executes: resolve with the script's variables seen, then
    everything ``apply`` does before importing Keras."""
    with _lock:
        pending = state.current().pending
        if pending is None:
            return
        try:
            cfg = _resolve_for_keras(pending.explicit)  # the pending activation is settled here
            pending.ready = (cfg, prepare(cfg))
        except DevswitchError as error:
            fail(error)
        state.current().pending = pending  # for _keras_started, once Keras' package has executed


def _framework_started(library: str) -> bool:
    """The hook, once the script imported the backend's framework before Keras (``import torch`` first):
    everything is applied now, as when Keras is already imported, if ``library`` is still the backend's
    (the script may have chosen another since); else the switch keeps waiting for Keras."""
    with _lock:
        pending = state.current().pending
        if pending is None or pending.ready is not None:
            return True
        try:
            if backends.get(resolve_here(pending.explicit).backend).LIBRARY != library:
                return False
            activate(pending.explicit)
        except DevswitchError as error:
            fail(error)
        return True


def _keras_started() -> None:
    """The hook, right after Keras' package executed: the policy, the patches and the summary."""
    with _lock:
        session = state.current()
        pending = session.pending
        if pending is None or pending.ready is None:
            return
        session.pending = None
        cfg, plan = pending.ready
        try:
            apply_to_keras(cfg, plan)
        except DevswitchError as error:
            fail(error)
        _record(cfg, plan, pending.explicit)


def _settle_pending() -> tuple[set[str], Callable[[str], str]]:
    """End a waiting activation: the hook removed, and each variable devswitch set at ``import devswitch``
    put back to what it was before, unless the script has since set it itself (then the script's value
    stands). Returns the variables the script changed since, and where it changed one ("train.py:3")."""
    session = state.current()
    pending = session.pending
    if pending is None:
        return set(), lambda name: "the script"
    session.pending = None
    if pending.ready is not None:  # settled already, Keras is being imported right now
        return set(), lambda name: "the script"
    hook.remove(pending.finder)
    state.undo("keras-hook")
    expected = {**pending.environ, **pending.variables}
    changed = {name for name in {*expected, *os.environ} if os.environ.get(name) != expected.get(name)}
    for name in pending.variables:
        if name in changed:
            state.forget_env(name)
        else:
            state.restore_env(name)
    frame = hook.importer()
    return changed, lambda name: hook.describe_setter(name, frame)


def _backend_given(cfg: Config) -> bool:
    """Whether the backend was given to devswitch (an option, DEVSWITCH_BACKEND, a file, a compare column),
    not left to Keras' own choice (KERAS_BACKEND, keras.json, its default)."""
    source = cfg["backend"].source
    return not source.startswith("Keras") and "-> Keras" not in source


def _given_variables(cfg: Config) -> dict[str, str]:
    """What ``import devswitch`` sets: KERAS_BACKEND when the backend was given to devswitch, and the
    backend's variables that come from a setting given to it (those its ``environment()`` sets even where
    the variable is set already). devswitch's own defaults wait for ``import keras``, where a variable the
    script has set by then is left as the script set it."""
    wanted = variables(cfg)
    wanted.pop("KERAS_BACKEND")
    present = {**os.environ, **{name: os.environ.get(name, "") for name in wanted}}
    forced = backends.get(cfg.backend).environment(cfg, present)
    given = {name: value for name, value in wanted.items() if name in forced}
    return {"KERAS_BACKEND": cfg.backend, **given} if _backend_given(cfg) else given


def _backend_words(cfg: Config, changed: set[str], where: Callable[[str], str]) -> str:
    """ "backend=torch (DEVSWITCH_BACKEND) over KERAS_BACKEND=jax set by train.py:3", or, with the backend
    left to Keras, "backend=jax (KERAS_BACKEND set by train.py:3)"."""
    value, keras_backend = cfg["backend"], os.environ.get("KERAS_BACKEND")
    by_script = f" set by {where('KERAS_BACKEND')}" if "KERAS_BACKEND" in changed else ""
    if not _backend_given(cfg):
        origin = "Keras' default" if value.location.startswith("Keras' default") else value.location
        return f"backend={cfg.backend} ({origin}{by_script if value.location == 'KERAS_BACKEND' else ''})"
    words = f"backend={cfg.backend} ({value.location})"
    if keras_backend and keras_backend != cfg.backend:
        words += f" over KERAS_BACKEND={keras_backend}{by_script}"
    return words


def _resolve_for_keras(explicit: Explicit) -> Config:
    """Resolve for applying now: a waiting activation settled first, so the variables the script set are
    seen; the backend's words for the summary; a warning for each variable of the script that a setting
    given to devswitch replaces."""
    changed, where = _settle_pending()
    cfg = resolve_here(explicit)
    session = state.current()
    session.backend_words = _backend_words(cfg, changed, where)
    wanted = variables(cfg)
    replaced = [n for n in changed if n != "KERAS_BACKEND" and n in wanted and wanted[n] != os.environ.get(n)]
    if replaced:
        setup_logging(cfg)
        for name in sorted(replaced):
            log.warning(
                f"{name}={wanted[name]} (from devswitch's settings) over {name}={os.environ.get(name, '')} set by "
                f"{where(name)}: a setting given to devswitch wins"
            )
    if cfg.log_level == "quiet" and " over " in session.backend_words:
        setup_logging(cfg)
        log.warning(session.backend_words)  # the summary that says so is not shown when quiet
    return cfg


def _record(cfg: Config, plan: Plan, explicit: Explicit) -> None:
    """Remember what was applied, for config()/plan(), and the report at exit."""
    session = state.current()
    session.config, session.plan, session.explicit = cfg, plan, _kept(explicit)
    if cfg.report != "off" and not session.process.get("atexit"):
        atexit.register(report_at_exit)  # once per process: a reset does not unregister it
        session.process["atexit"] = True


def activate(explicit: Explicit = None, inventory: Inventory | None = None, announce: bool = True) -> Plan:
    """Resolve (with ``explicit`` values on top) and apply now; remembers the result for config()/plan().
    ``announce``: log the applied plan's summary (the notebook's magic prints it itself)."""
    with _lock:
        cfg = _resolve_for_keras(explicit)
        plan = apply(cfg, inventory, announce)
        _record(cfg, plan, explicit)
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
            "backend": backends.keras_running() or plan.backend,  # the backend in force, read from Keras
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


def fail(error: DevswitchError) -> None:
    """A configuration error of the switch: in a script, the message and the error's exit code, no
    traceback; at a prompt or in a notebook, raised."""
    if _interactive():
        raise error
    print(f"devswitch: error: {error}", file=sys.stderr)
    raise SystemExit(error.exit_code) from None


def locating_the_command(argv: list[str], orig_argv: list[str]) -> bool:
    """Whether Python is importing devswitch to locate the module of ``python -m devswitch``: while it locates
    it, ``sys.argv[0]`` is ``"-m"`` (documented for ``-m``), and ``sys.orig_argv`` names the module."""
    if argv[:1] != ["-m"]:
        return False
    options = orig_argv[1:]
    for i, arg in enumerate(options):
        if arg.startswith("-m"):  # the first -m names the module: "-m devswitch" or "-mdevswitch"
            module = arg[2:] or (options[i + 1] if i + 1 < len(options) else "")
            return module in ("devswitch", "devswitch.__main__")
    return False


def activate_on_import() -> None:
    """What ``import devswitch`` does: ``begin()`` (the rest at ``import keras``), unless DEVSWITCH_DISABLE is
    set, the switch is already active in this process (``devswitch run``, a compare worker, a second
    import: the script is switched once, by whoever came first), or the import is Python locating the
    ``python -m devswitch`` command, which does not switch itself (so a bad ``.devswitchrc`` does not stop
    the command that reports it; ``devswitch init`` fixes it)."""
    try:
        if is_disabled(os.environ) or locating_the_command(sys.argv, getattr(sys, "orig_argv", [])):
            return  # nothing read, nothing validated, nothing changed
        session = state.current()
        if session.config is not None or session.pending is not None:
            return
        begin()
    except DevswitchError as error:
        fail(error)


def deactivate() -> None:
    """Undo what ``import devswitch`` began (``python -m devswitch``: the command does not switch itself)."""
    reset()
