"""One configuration of ``devswitch compare``, in its own process: ``python -m _devswitch.worker SPEC.json``.

Device visibility is fixed once per process, so each device x precision pair
runs here, in a fresh interpreter. Everything it learns is appended as one JSON
line per event to the events file named in the spec, flushed at once, so the
parent keeps every finished row even if this process crashes or is interrupted.
It ends itself when its parent (``devswitch compare``) ends, even by SIGKILL, so
that no worker goes on computing for nobody.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_GONE = 137  # the status of a process ended by SIGKILL, as the kernel's own route gives


class Events:
    def __init__(self, path: str):
        self.handle = open(path, "a", encoding="utf-8")

    def __call__(self, event: str, **data) -> None:
        # the pid: compare takes only this process's events, not those of a child the user's script forked
        line = {"event": event, "t": time.time(), "pid": os.getpid(), **data}
        self.handle.write(json.dumps(line, default=str) + "\n")
        self.handle.flush()


def parse_target(target: str) -> tuple[str, str, bool]:
    """Split MODEL into where its factory lives and the function to call.

    Returns ``(location, function, is_file)``: a bundled name gives ``(name, "", False)``;
    ``path.py[:function]`` gives the path and the function (default ``build_model``);
    ``module:function`` the module and the function. Raises UsageError for anything else.
    """
    from .errors import UsageError
    from .models import BUNDLED

    if target in BUNDLED:
        return target, "", False
    location, _, function = target.rpartition(":") if not target.endswith(".py") else (target, "", "")
    if location.endswith(".py"):
        if not Path(location).is_file():
            raise UsageError(f"no such file: {location}", hint="check the path of the model file")
        _check_defined(Path(location), function or "build_model", target)
        return location, function or "build_model", True
    if not location or not function:
        raise UsageError(
            f"unknown model '{target}'",
            hint="give a bundled model (" + ", ".join(BUNDLED) + "), path.py[:function] or module:function",
        )
    import importlib.util

    try:
        spec = importlib.util.find_spec(location)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise UsageError(f"no module named '{location}'", hint="check the module name, or give path.py:function")
    if spec.origin and spec.origin.endswith(".py"):
        _check_defined(Path(spec.origin), function, target)
    return location, function, False


def _check_defined(path: Path, function: str, target: str) -> None:
    """The factory is defined in the file: read, not imported (this process never imports a framework)."""
    import ast

    from .errors import UsageError
    from .settings import closest

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as error:
        raise UsageError(f"{target}: cannot read {path}: {error}", hint="fix the model file") from None
    names = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    names += [
        t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
    ]
    names += [
        a.asname or a.name.split(".")[-1] for node in tree.body if isinstance(node, ast.ImportFrom) for a in node.names
    ]
    if function not in names:
        guess = closest(function, names)
        raise UsageError(
            f"{path} defines no function '{function}'",
            hint=(f"did you mean '{guess}'? " if guess else "")
            + "defined: "
            + (", ".join(n for n in names if not n.startswith("_")) or "nothing"),
        )


def load_factory(target: str):
    """A bundled model name, ``path.py[:function]`` or ``module:function`` -> a callable returning a model."""
    import importlib
    import importlib.util

    from .errors import UsageError
    from .models import BUNDLED

    location, function, is_file = parse_target(target)
    if location in BUNDLED and not function:
        return BUNDLED[location]
    if is_file:
        file = Path(location)
        spec = importlib.util.spec_from_file_location(f"devswitch_user_{file.stem}", file)
        if spec is None or spec.loader is None:  # not for a .py file, which parse_target requires
            raise UsageError(f"cannot load {location} as a Python module", hint="give a .py file")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(file.parent.resolve()))
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(location)
    factory = getattr(module, function, None)
    if not callable(factory):
        raise UsageError(
            f"{location} has no function '{function}'",
            hint="define it to return a Keras model, or name another with path.py:function",
        )
    return factory


def unsupported_reason(plan, inventory) -> str | None:
    """Why this precision cannot really run on the chosen device (it would be emulated), or None."""
    from .devices import bf16_missing

    return bf16_missing(inventory, plan.gpus) if plan.precision == "bf16" else None


def gpus_seen(plan, count: int) -> int | None:
    """How many GPUs this configuration tells compare the machine has: None where its backend, set up for the
    CPU, cannot see them (compare must then not conclude that there are none)."""
    from . import backends

    return count if plan.gpus or backends.get(plan.backend).SEES_GPUS_WHEN_ON_CPU else None


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


def taking_turns(fd: int, phase_fd: int):
    """``turn(phase)`` for benchmark(): say the last phase is done on ``fd``, then wait on ``phase_fd`` until
    compare names ``phase`` (None: the last word, nothing more to wait for). Compare gone: end at once."""
    from .compare.protocol import DONE_WORD

    out = os.fdopen(fd, "w", buffering=1)
    phases = os.fdopen(phase_fd, "r")

    def turn(phase: str | None) -> None:
        out.write(DONE_WORD + "\n")
        out.flush()
        if phase is None:
            return
        line = phases.readline()
        if not line:
            os._exit(PARENT_GONE)
        if line.strip() != phase:
            raise RuntimeError(f"compare asked for {line.strip()!r} where this worker expected {phase!r}")

    return turn


def applied_settings(asked: dict, config) -> dict:
    """The varied settings as this worker's resolved configuration holds them ({name: {"value", "source"}}),
    for its records: what was applied, not only what compare asked for."""
    from .compare.axes import value_text

    return {name: {"value": value_text(name, config[name].value), "source": config[name].source} for name in asked}


def make_reference(spec, model, plan: dict, emit) -> int:
    """The reference run: this model's weights, the seeded input and its strict float32 outputs (or loss),
    saved where the spec says for every other configuration to load."""
    from . import accuracy
    from .compare import protocol as p
    from .errors import describe

    about = {
        "backend": spec.backend,
        "device": spec.device,
        "precision": spec.precision,
        "math": plan.get("math"),
        "policy": plan.get("policy"),
    }
    started = time.perf_counter()
    try:
        ref = accuracy.reference(model, spec.mode, spec.accuracy_samples, about)
        ref.save(spec.reference)
    except Exception as error:
        emit(p.FAILED, error=describe(error))
        return 0
    emit(p.REFERENCE, reference=ref.about, loss=ref.loss, seconds=time.perf_counter() - started)
    return 0


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
    emit(p.SPAWNED)
    return spec, emit


def main(spec_path: str) -> int:
    from .compare import protocol as p

    spec, emit = start(p.Spec.read, spec_path)
    try:
        from . import session
        from .errors import DevswitchError, describe

        # the varied settings (--vary) first: the ones compare fixes for every worker always win
        explicit = {
            **spec.settings,
            "device": spec.device,
            "precision": spec.precision,
            "fallback": "error",
            "report": "off",
            "backend": spec.backend,
        }
        if spec.role == "reference":  # the strict float32 reference: full float32 math, whatever the files say
            explicit["math"] = "ieee"
        from .config import explicit_layer

        where = {
            key: f"devswitch compare ({'--vary ' + key if key in spec.settings else 'its column'})" for key in explicit
        }
        if spec.role == "reference":
            where["math"] = "devswitch compare (the strict float32 reference)"
        try:
            plan = session.activate(explicit_layer(explicit, where))
        except DevswitchError as error:
            from .devices import DeviceError

            gpus = None
            if isinstance(error, DeviceError):  # the GPUs were looked for: tell the parent how many there are
                from .devices import detect_gpus

                gpus = len(detect_gpus(explicit["backend"]))
            emit(p.UNAVAILABLE, reason=error.message, gpus=gpus)
            return 0
        from .apply import inventory

        machine = inventory()
        assert machine is not None  # activate() recorded it
        reason = unsupported_reason(plan, machine)
        context = session.context()
        emit(
            p.READY,
            plan=context.get("plan"),
            environment=context["environment"],
            config=context["config"],
            gpus=gpus_seen(plan, len(machine.gpus)),
        )
        if reason:
            emit(p.UNAVAILABLE, reason=reason)
            return 0
        try:
            import keras

            keras.utils.set_random_seed(0)  # the reference's weights are drawn from this seed
            model = load_factory(spec.target)()
        except Exception as error:  # the user's factory raised: a failed row, the rest goes on
            emit(p.FAILED, error=describe(error))
            return 0
        shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else ()
        name = model.name
        if re.fullmatch(r"(functional|sequential|model)(_\d+)?", name):  # Keras' automatic name says nothing
            name = parse_target(spec.target)[1] or spec.target
        from .scriptworker import read_back

        emit(
            p.BUILT,
            model=name,
            unit="img" if len(shape) == 3 else "samples",
            parameters=int(model.count_params()),
            # the settings once the factory has run, and where a devswitch.configure of it set each (compare
            # checks them against the column, see compare/honest.py)
            read_back=read_back(spec.settings),
        )

        if spec.role == "reference":
            return make_reference(spec, model, context.get("plan") or {}, emit)
        from .benchmarking import benchmark

        applied = applied_settings(spec.settings, session.config())
        turn = (
            taking_turns(spec.turn_fd, spec.phase_fd)
            if spec.rounds > 1 and spec.turn_fd is not None and spec.phase_fd is not None
            else None
        )
        benchmark(
            model,
            batch_sizes=spec.batch_sizes,
            mode=spec.mode,
            warmup=spec.warmup,
            iterations=spec.iterations,
            min_time=spec.min_time,
            predict_baseline=spec.predict_baseline,
            peak_probe=spec.peak_probe,
            on_record=lambda record: emit(
                p.RECORD, record={**record.to_dict(), **({"settings": applied} if applied else {})}
            ),
            rounds=spec.rounds,
            turn=turn,
            origin=spec.origin,
            reference=spec.reference,
        )
        emit(p.DONE)
        if turn is not None:
            turn(None)
        return 0
    except KeyboardInterrupt:
        emit(p.INTERRUPTED)
        return 130


if __name__ == "__main__":
    status = main(sys.argv[1])
    # Everything this process owes compare is in its events file, flushed line by line: end here rather
    # than spend a second or more tearing the framework down while compare waits to start the next one.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
