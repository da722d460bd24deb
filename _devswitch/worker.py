"""One configuration of ``devswitch compare``, in its own process: ``python -m _devswitch.worker SPEC.json``.

Device visibility is fixed once per process, so each device x precision pair
runs here, in a fresh interpreter. Everything it learns is appended as one JSON
line per event to the events file named in the spec, flushed at once, so the
parent keeps every finished row even if this process crashes or is interrupted.
It ends itself when its parent (``devswitch compare``) ends, even by SIGKILL, so
that no worker goes on computing for nobody.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .workerbase import PARENT_GONE, applied_settings, read_back, start

if TYPE_CHECKING:
    from .batchfinder import Trial
    from .benchrecord import BenchmarkRecord
    from .compare import protocol as p
    from .plans import Plan


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
        if line.strip() == "finish" and phase.startswith("round "):  # devswitch tune: the race ended early
            from .measure import FinishEarly

            raise FinishEarly
        if line.strip() != phase:
            raise RuntimeError(f"compare asked for {line.strip()!r} where this worker expected {phase!r}")

    return turn


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
        emit(p.Failed(error=describe(error)))
        return 0
    emit(p.Reference(reference=ref.about or {}, loss=ref.loss, seconds=time.perf_counter() - started))
    return 0


def main(spec_path: str) -> int:
    """A configuration's worker: apply its settings, say what it found, build the model, then measure it in
    turns (or compute the strict float32 reference)."""
    from .compare import protocol as p

    spec, emit = start(p.Spec.read, spec_path)
    try:
        plan = _activate(spec, emit)
        context = _ready(plan, emit) if plan is not None else None
        model = _build_model(spec, emit) if context is not None else None
        if context is None or model is None:
            return 0
        if spec.role == "reference":
            return make_reference(spec, model, context.get("plan") or {}, emit)
        _measure(spec, model, emit)
        return 0
    except KeyboardInterrupt:
        emit(p.Interrupted())
        return 130


def _activate(spec: p.Spec, emit: Callable[[p.Event], None]) -> Plan | None:
    """Apply the column's settings (and the varied ones) as devswitch compare's own; None when this machine
    cannot (said as Unavailable, with how many GPUs there are when it looked for them)."""
    from . import session
    from .compare import protocol as p
    from .errors import DevswitchError

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
            from .backends import detect_gpus

            gpus = len(detect_gpus(explicit["backend"]))
        emit(p.Unavailable(reason=error.message, gpus=gpus))
        return None
    return plan


def _ready(plan: Plan, emit: Callable[[p.Event], None]) -> dict | None:
    """Say Ready with the environment and configuration; None when the plan cannot run here (said as Unavailable)."""
    from .workerbase import say_ready

    return say_ready(plan, emit)


def _build_model(spec: p.Spec, emit: Callable[[p.Event], None]):
    """The factory's model, seeded, said as Built (its name, unit, parameters and the settings read back);
    None when the factory raised (said as Failed)."""
    from .compare import protocol as p
    from .errors import describe

    try:
        import keras

        keras.utils.set_random_seed(0)  # the reference's weights are drawn from this seed
        model = load_factory(spec.target)()
    except Exception as error:  # the user's factory raised: a failed row, the rest goes on
        emit(p.Failed(error=describe(error)))
        return None
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else ()
    name = model.name
    if re.fullmatch(r"(functional|sequential|model)(_\d+)?", name):  # Keras' automatic name says nothing
        name = parse_target(spec.target)[1] or spec.target
    emit(
        p.Built(
            model=name,
            unit="img" if len(shape) == 3 else "samples",
            parameters=int(model.count_params()),
            # the settings once the factory has run, and where a devswitch.configure of it set each
            # (compare checks them against the column, see compare/honest.py)
            read_back=read_back(spec.settings),
        )
    )
    return model


def _measure(spec: p.Spec, model, emit: Callable[[p.Event], None]) -> None:
    """``benchmark()`` under the spec, each record emitted with the applied settings, taking turns in rounds."""
    from . import session
    from .benchmarking import benchmark
    from .compare import protocol as p

    applied = applied_settings(spec.settings, session.config())
    turn = (
        taking_turns(spec.turn_fd, spec.phase_fd)
        if spec.rounds > 1 and spec.turn_fd is not None and spec.phase_fd is not None
        else None
    )
    from .compare.options import MAX_BATCH

    batches = spec.batch_sizes
    trials: tuple[Trial, ...] = ()  # the batch finder's, where it ran first
    if MAX_BATCH in batches:  # --batch-sizes max: this column's own batch, found here
        found = _find(spec, model, emit, turn)
        if found is None:
            return
        batches, turn, trials = found
    benchmark(
        model,
        batch_sizes=batches,
        mode=spec.mode,
        warmup=spec.warmup,
        iterations=spec.iterations,
        min_time=spec.min_time,
        predict_baseline=spec.predict_baseline,
        peak_probe=spec.peak_probe,
        on_record=lambda record: emit(
            p.Record(record=dataclasses.replace(after_trials(record, trials), settings=applied).to_dict())
        ),
        on_round=(lambda record: emit(p.Record(record=record.to_dict()))) if spec.round_records else None,
        rounds=spec.rounds,
        turn=turn,
        origin=spec.origin,
        reference=spec.reference,
    )
    emit(p.Done())
    if turn is not None:
        turn(None)


def after_trials(record: BenchmarkRecord, trials: tuple[Trial, ...]) -> BenchmarkRecord:
    """A record of a batch size measured after the batch finder's trials (``batchfinder.Trial``; none: as it
    is). On a CPU the larger trials' memory can stay in a framework's own pool and be reused unseen, so the
    record's peak can read low; the finder's own trial at that batch measured it before any of that: the
    larger of the two figures is kept, and the source says so. On a GPU the allocator's peak is reset first."""
    from .memory import format_size

    ran = [t for t in trials if t.ran and t.peak_bytes is not None]
    own = [t.peak_bytes for t in ran if t.fits and t.batch == record.batch and t.peak_bytes is not None]
    if not ran or record.gpu_memory_peak_bytes is not None or record.peak_memory_bytes is None:
        return record
    largest = max(t.batch for t in ran)
    peak = max([record.peak_memory_bytes, *own])
    how = (
        f"; measured after the batch finder's trials (the largest run: batch {largest}), whose memory a "
        "framework's own pool may keep"
    )
    if own:
        how += f"; the finder's own trial at this batch read {format_size(max(own))}, and the larger figure is kept"
    return dataclasses.replace(record, peak_memory_bytes=peak, peak_memory_source=record.peak_memory_source + how)


def _find(
    spec: p.Spec, model, emit: Callable[[p.Event], None], turn: Callable[[str | None], None] | None
) -> tuple[tuple[int, ...], Callable[[str | None], None] | None, tuple[Trial, ...]] | None:
    """Find the column's largest batch that fits (and its knee) in this worker's first turn, alone, and say
    it as Found; the batches to measure and the turn for benchmark(), whose first phase this turn already is.
    None when nothing fits or the search raised (said as Failed)."""
    from .batchfinder import find_batch_size
    from .compare import protocol as p
    from .compare.options import KNEE_BATCH
    from .errors import describe

    if turn is not None:
        turn("warm")  # ready; the search runs in this worker's turn, alone
    try:
        result = find_batch_size(model, mode=spec.mode, memory_budget=spec.memory_budget)
    except Exception as error:  # the model cannot run at all: the column's failure
        emit(p.Failed(error=describe(error)))
        return None
    trials = [trial.describe() for trial in result.trials]
    emit(p.Found(batch=result.batch_size, knee=result.knee, reason=result.reason, limit=result.limit, trials=trials))
    if result.batch_size is None:
        emit(p.Failed(error=f"no batch fits: {result.reason}"))
        return None
    knee = result.knee if KNEE_BATCH in spec.batch_sizes and result.knee else result.batch_size
    batches = tuple(sorted({knee, result.batch_size}))
    if turn is None:
        return batches, None, result.trials
    inner = turn
    begun: list[str] = []

    def next_turn(phase: str | None) -> None:
        if phase == "warm" and not begun:  # this turn is the warm phase already
            begun.append(phase)
            return
        inner(phase)

    return batches, next_turn, result.trials


if __name__ == "__main__":
    status = main(sys.argv[1])
    # Everything this process owes compare is in its events file, flushed line by line: end here rather
    # than spend a second or more tearing the framework down while compare waits to start the next one.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
