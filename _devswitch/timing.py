"""Timing of Keras ``fit`` / ``evaluate`` / ``predict`` without changing what is measured.

``TimingCallback`` overrides only the begin/end hooks of calls, epochs and
validation — never the batch hooks: Keras turns off asynchronous callback
dispatch for any callback that overrides them
(``CallbackList._configure_async_dispatch``, used on thread-safe backends) and
calls them once per batch (once per ``steps_per_execution`` group). Per-batch
timing is opt-in (``BatchTimingCallback`` / ``batch_timing: true``) and labelled
in every record.

The wrappers that make ``import devswitch`` time every call are built here and
installed by ``apply.py`` (the only module that changes Keras state), which hands them the
session they record into; nothing here imports ``apply``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import state
from .caps import batches_per_epoch
from .errors import describe, error_line, framework_message  # noqa: F401 - framework_message: moved
from .halfnotes import explain_dtype_error
from .memory import RssSampler, release_free_memory
from .outputguard import policy_name, warn_float16_output
from .results import CallRecord, EpochTime
from .statistics import median

log = logging.getLogger("devswitch")

SESSION = object()  # TimingCallback's default sink: the runs of the process's session (devswitch.runs())
_local = threading.local()

_FUNCTION_ATTR = {"fit": "train_function", "evaluate": "test_function", "predict": "predict_function"}


def _host_pool() -> Any:
    """The backend's own CPU memory pool's statistics (one that reads 0 for a backend without a pool)."""
    import keras

    from . import backends

    return backends.get(keras.backend.backend()).cpu_pool()


def _call_peak(call: dict) -> int | None:
    """A call's peak memory on a CPU: its resident growth, or its framework pool's peak where that is larger."""
    rss = call["rss"]
    if rss is None or rss.peak.above_before_bytes is None:
        return None
    return max(rss.peak.above_before_bytes, call["pool"].peak())


def model_device(model) -> str:
    """Where the model's variables actually live ('CPU:0', 'cpu:0', 'cuda:0'), as the backend names it."""
    import keras

    from . import backends

    return backends.get(keras.backend.backend()).model_device(model)


def compute_dtypes(model) -> tuple[str, ...]:
    layers = model._flatten_layers(include_self=False) if hasattr(model, "_flatten_layers") else model.layers
    return tuple(
        sorted(
            {layer.compute_dtype for layer in layers if getattr(layer, "weights", None)}
            or {getattr(model, "compute_dtype", "unknown")}
        )
    )


def failure(error: BaseException) -> str:
    """A failed call's status: the exception's type and its most telling line (for a TensorFlow graph
    error, the framework's own message such as "Matrix size-incompatible: ...", not its header)."""
    return "failed: " + error_line(error)


# --- counting samples without touching the batches --------------------------------------


def _first_leaf(x):
    if isinstance(x, dict):
        x = next(iter(x.values()), None)
    while isinstance(x, (list, tuple)) and x:
        x = x[0]
    return x


def samples_hint(x, batch_size, steps, validation_split: float = 0.0) -> tuple[str, int] | None:
    """("samples", n) for arrays, ("batch", b) for a tf.data.Dataset with a static batch size, else None."""
    tf = sys.modules.get("tensorflow")  # a tf.data.Dataset exists only where TensorFlow is imported already
    if tf is not None and isinstance(x, tf.data.Dataset):
        spec = _first_leaf(x.element_spec)
        shape = getattr(spec, "shape", None)
        if shape is not None and shape.rank and shape[0] is not None:
            return ("batch", int(shape[0]))
        return None
    leaf = _first_leaf(x)
    shape = getattr(leaf, "shape", None)
    if shape is None or not len(shape) or shape[0] is None:
        return None
    n = int(shape[0])
    if validation_split:
        n = int(math.ceil(n * (1.0 - validation_split)))
    if steps:
        n = min(n, int(steps) * int(batch_size or 32))
    return ("samples", n)


_said: set[str] = set()  # the parts of devswitch's bookkeeping whose failure was said (once each)


def quietly(what: str, action: Callable[[], Any]) -> Any:
    """Run ``action``, a piece of devswitch's own bookkeeping around a user's call; its failure is a warning
    (once per ``what``) and None, never an exception in place of the user's call or its error."""
    try:
        return action()
    except Exception as error:  # noqa: BLE001 - whatever it is, it is devswitch's, not the user's
        if what not in _said:
            _said.add(what)
            log.warning(f"devswitch's timing could not do {what} ({describe(error)}); the call itself is unaffected")
        return None


def _guarded(hook: Callable[..., None]) -> Callable[..., None]:
    """A callback hook that Keras calls inside the user's fit/evaluate/predict: its failure is a warning."""

    @functools.wraps(hook)
    def guarded(self, *args, **kwargs) -> None:
        quietly(f"the {hook.__name__} hook", lambda: hook(self, *args, **kwargs))

    return guarded


class TimingLogic:
    """``TimingCallback``'s behaviour, mixed into keras.callbacks.Callback at first use (``callback_classes``), so
    that importing this module imports no Keras.

    Times fit / evaluate / predict calls: whole calls and epochs, first (tracing) apart from steady state.

    Records are kept in ``self.records`` and added to ``sink``: by default ``devswitch.runs()``, None for
    nowhere else. The clock is injectable for tests. ``memory=True``: on a CPU, each call's peak resident
    memory above its start too (a thread samples it every 10 ms), in the record and the summary's notes.
    """

    per_batch = False
    # keras.callbacks.Callback's, once mixed in (callback_classes): set by Keras before the first hook
    model: Any
    params: dict
    set_model: Callable[[Any], None]

    def __init__(self, clock: Callable[[], float] = time.perf_counter, sink: Any = SESSION, memory: bool = False):
        super().__init__()
        self.clock = clock
        self.sink = sink
        self.memory = memory  # opt-in: on a CPU, sample the resident memory during each call (a 10 ms thread)
        self.records: list[CallRecord] = []
        self._call: dict | None = None
        self._hint: tuple[str, int] | None = None
        self._traced: bool | None = None
        self._cap: dict | None = None  # the label of a fit clipped by the session's caps

    # the wrapper tells us what the call cannot: sample counts and whether it traces
    def expect(self, hint: tuple[str, int] | None, traced: bool | None) -> None:
        self._hint, self._traced = hint, traced

    def _start(self, kind: str) -> dict:
        """Open the record of a call of ``kind``; returns it (also ``self._call``)."""
        model = self.model
        traced = self._traced
        if traced is None and model is not None:
            traced = getattr(model, _FUNCTION_ATTR[kind], None) is None
        call: dict = {
            "kind": kind,
            "t0": self.clock(),
            "epochs": [],
            "batches": [] if self.per_batch else None,
            "traced": bool(traced),
            "steps": self.params.get("steps") if self.params else None,
            "nonfinite": [],
            "validation": None,
            "logs": None,
            "rss": None,
            "pool": None,
        }
        if self.memory and "cpu" in str(_fact(model_device, model, "")).lower():  # a GPU's allocator: benchmark()
            release_free_memory()  # what earlier work freed is not this call's start (opt-in: a few ms)
            call["pool"] = _host_pool()  # a framework's own pool reuses what it kept, unseen by the resident memory
            call["pool"].start()
            call["rss"] = RssSampler(interval_s=0.01)
            call["rss"].__enter__()
        self._call = call
        return call

    def _samples_per_step_call(self, steps: int | None) -> int | None:
        if self._hint is None:
            return None
        what, n = self._hint
        if what == "samples":
            return n
        return n * steps if steps else None

    def finish(self, status: str = "ok") -> CallRecord | None:
        """Build the record from what was measured so far (also after a crash or an interrupt)."""
        call, self._call = self._call, None
        if call is None:
            return None
        wall = self.clock() - call["t0"]
        if call["rss"] is not None:
            call["rss"].__exit__(None, None, None)
        steps = call["steps"]
        samples = self._samples_per_step_call(steps)
        model = self.model
        epochs = tuple(call["epochs"])
        first, steady, rate, step_rate = _phase_rates(call["kind"], call["traced"], epochs, wall, steps, samples)
        replicas = getattr(getattr(model, "distribute_strategy", None), "num_replicas_in_sync", 1) or 1
        session = state.current()
        record = CallRecord(
            kind=call["kind"],
            model=getattr(model, "name", "?"),
            status=status,
            wall_s=wall,
            traced=call["traced"],
            first_s=first,
            steady_s=steady,
            steps=steps,
            samples=samples,
            steady_samples_per_s=rate,
            steady_steps_per_s=step_rate,
            epochs=epochs,
            device=_fact(model_device, model, "unknown"),
            policy=_fact(policy_name, model, "unknown"),
            compute_dtypes=_fact(compute_dtypes, model, ()),
            nonfinite_loss_epochs=tuple(call["nonfinite"]),
            batch_times_s=tuple(call["batches"]) if call["batches"] is not None else None,
            replicas=int(replicas),
            workers=_workers(model),
            applied_policy=session.policy or "",
            backend=_backend_name(),
            math=getattr(session.plan, "math", ""),  # the float32 math mode in force
            history=call["logs"],
            cap=self._cap if call["kind"] == "fit" else None,
            peak_memory_bytes=_call_peak(call),
        )
        self._publish(record, session)
        self._hint = self._traced = self._cap = None
        return record

    def _publish(self, record: CallRecord, session: state.Session) -> None:
        """Keep the record, hand it to the sink (the session's runs by default), and warn of a NaN/inf loss."""
        self.records.append(record)
        if self.sink is SESSION:
            session.runs.append(record)
        elif self.sink is not None:
            self.sink.append(record)
        if record.nonfinite_loss_epochs:
            log.warning(
                f"{record.kind} of model '{record.model}': loss became NaN/inf at epoch(s) "
                + ", ".join(str(e + 1) for e in record.nonfinite_loss_epochs)
            )

    # fit
    @_guarded
    def on_train_begin(self, logs=None):
        self._start("fit")

    @_guarded
    def on_epoch_begin(self, epoch, logs=None):
        if self._call is not None:
            self._call.update(e0=self.clock(), v0=None, v_s=0.0)

    @_guarded
    def on_epoch_end(self, epoch, logs=None):
        call = self._call
        if call is None or "e0" not in call:
            return
        now = self.clock()
        train_end = call["v0"] if call["v0"] is not None else now
        loss = (logs or {}).get("loss")
        loss = float(loss) if loss is not None else None
        if loss is not None and not math.isfinite(loss):
            call["nonfinite"].append(epoch)
        call["logs"] = _final_logs(logs)
        call["epochs"].append(EpochTime(epoch, now - call["e0"], train_end - call["e0"], call["v_s"], loss))

    @_guarded
    def on_train_end(self, logs=None):
        self.finish()

    # evaluate, or validation inside fit
    @_guarded
    def on_test_begin(self, logs=None):
        if self._call is not None and self._call["kind"] == "fit":
            if self._call["v0"] is None:
                self._call["v0"] = self.clock()
            self._call["vt"] = self.clock()
        else:
            self._start("evaluate")

    @_guarded
    def on_test_end(self, logs=None):
        if self._call is not None and self._call["kind"] == "fit":
            self._call["v_s"] += self.clock() - self._call.pop("vt", self.clock())
        else:
            self.finish()

    # predict
    @_guarded
    def on_predict_begin(self, logs=None):
        self._start("predict")

    @_guarded
    def on_predict_end(self, logs=None):
        self.finish()


class BatchTimingLogic(TimingLogic):
    """``BatchTimingCallback``'s behaviour: TimingCallback plus the duration of every training/predict batch.

    Opt-in and labelled: overriding batch hooks adds a Python call per batch and
    turns off Keras' asynchronous callback dispatch where the backend has it, so
    this can slow down what it measures; with ``steps_per_execution=N`` one
    "batch" is N steps.
    """

    per_batch = True

    def _batch_begin(self, batch, logs=None):
        self._b0 = self.clock()

    def _batch_end(self, batch, logs=None):
        if self._call is not None and self._call["batches"] is not None:
            self._call["batches"].append(self.clock() - self._b0)

    on_train_batch_begin = on_predict_batch_begin = _batch_begin
    on_train_batch_end = on_predict_batch_end = _batch_end


def _phase_rates(
    kind: str, traced: bool | None, epochs: tuple, wall: float, steps: int | None, samples: int | None
) -> tuple[float | None, float | None, float | None, float | None]:
    """(first, steady seconds, samples/s, steps/s) of a call: a fit's first epoch apart, its later epochs
    steady; another call is all first (it traced) or all steady."""
    first = steady = rate = step_rate = None
    if kind == "fit":
        if epochs:
            first = epochs[0].seconds
        if len(epochs) > 1:
            later = epochs[1:]
            steady = sum(e.seconds for e in later)
            train = median([e.train_seconds for e in later])
            rate = samples / train if samples and train > 0 else None
            step_rate = steps / train if steps and train > 0 else None
    elif traced:
        first = wall
    else:
        steady = wall
        rate = samples / wall if samples and wall > 0 else None
        step_rate = steps / wall if steps and wall > 0 else None
    return first, steady, rate, step_rate


def _fact(read: Callable[[Any], Any], model, unknown: Any) -> Any:
    """What ``read`` says of ``model``, or ``unknown``: after a failed call a model may be half there (a JAX
    fit that failed mid-step leaves its variables without values), and its record is kept all the same."""
    if model is None:
        return unknown
    try:
        return read(model)
    except Exception:  # noqa: BLE001 - a fact of the record, not worth the user's error
        return unknown


def _workers(model) -> int:
    strategy = getattr(model, "distribute_strategy", None)
    resolver = getattr(getattr(strategy, "extended", None), "_cluster_resolver", None)
    if resolver is not None:
        try:
            return max(1, len(resolver.cluster_spec().as_dict().get("worker", [])))
        except Exception:
            return 1
    return 1


def _final_logs(logs) -> dict | None:
    """An epoch's logs as plain numbers (loss, metrics, val_*): what the script's History ends with."""
    out = {}
    for key, value in (logs or {}).items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out or None


def _backend_name() -> str:
    import keras

    return keras.backend.backend()


@functools.cache
def callback_classes() -> dict[str, type]:
    """TimingCallback and BatchTimingCallback, made at first use: importing this module starts no framework."""
    import keras

    timing = type("TimingCallback", (TimingLogic, keras.callbacks.Callback), {"__doc__": TimingLogic.__doc__})
    batch = type("BatchTimingCallback", (BatchTimingLogic, timing), {"__doc__": BatchTimingLogic.__doc__})
    return {"TimingCallback": timing, "BatchTimingCallback": batch}


def __getattr__(name: str) -> type:
    if name in ("TimingCallback", "BatchTimingCallback"):
        return callback_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- wrappers installed on keras.Model by apply.py ---------------------------------------


@contextlib.contextmanager
def suppressed():
    """Keras calls inside this block are not recorded (a benchmark's own predict baseline)."""
    previous = getattr(_local, "depth", 0)
    _local.depth = previous + 1
    try:
        yield
    finally:
        _local.depth = previous


def _record_failure(timer: TimingLogic, model, kind: str, t0: float, error: BaseException) -> None:
    """Close the record of a call that raised ``error`` (also when Keras failed before its callbacks began)."""
    if timer._call is None:
        timer.set_model(model)
        timer._start(kind)["t0"] = t0
    timer.finish("interrupted" if isinstance(error, KeyboardInterrupt) else failure(error))


def wrap(kind: str, original: Callable, session: state.Session) -> Callable:
    """``original`` (Model.fit / evaluate / predict) timed: each call is recorded in ``session.runs``."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def timed(self, *args, **kwargs):
        if getattr(_local, "depth", 0):  # validation inside fit, or a call from another timed call
            return original(self, *args, **kwargs)
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            return original(self, *args, **kwargs)  # let Keras report the bad call itself
        prepared = quietly(f"{kind}: the timer", lambda: _prepare(kind, session, bound))
        if prepared is None:  # devswitch's own set-up failed (said in a warning): the call runs untimed
            return original(self, *args, **kwargs)
        return _timed_call(kind, original, bound, prepared)

    state.remember_original(timed, original)
    return timed


def _prepare(kind: str, session: state.Session, bound: inspect.BoundArguments) -> TimingLogic:
    """The call's timer, added to its callbacks (and the session's caps applied to a fit)."""
    model, arguments = bound.arguments["self"], bound.arguments
    callbacks = list(arguments.get("callbacks") or [])
    timer = next((c for c in callbacks if isinstance(c, TimingLogic)), None)
    if timer is None:
        timer = callback_classes()["BatchTimingCallback" if session.batch_timing else "TimingCallback"](
            sink=session.runs
        )
        callbacks.append(timer)
    arguments["callbacks"] = callbacks
    if kind == "fit" and session.caps:  # devswitch compare --script --max-epochs/--max-steps
        try:
            batches = batches_per_epoch(
                arguments.get("x"), arguments.get("batch_size"), arguments.get("validation_split", 0.0)
            )
        except Exception:  # noqa: BLE001 - an input we cannot size: the step cap is set as it is
            batches = None
        clipped, timer._cap = session.caps.clip(arguments, batches)
        arguments.update(clipped)
    try:
        hint = samples_hint(
            arguments.get("x"),
            arguments.get("batch_size"),
            arguments.get("steps_per_epoch" if kind == "fit" else "steps"),
            arguments.get("validation_split", 0.0) if kind == "fit" else 0.0,
        )
    except Exception:  # an input we cannot size: steps/s only
        hint = None
    timer.expect(hint, getattr(model, _FUNCTION_ATTR[kind], None) is None)
    return timer


def _timed_call(kind: str, original: Callable, bound: inspect.BoundArguments, timer: TimingLogic):
    """Run the bound call with its timer; a failed call is recorded and its error raised as it is."""
    model, x = bound.arguments["self"], bound.arguments.get("x")
    quietly(f"{kind}: the float16 output check", lambda: warn_float16_output(model, x))
    _local.depth = 1
    t0 = timer.clock()
    try:
        result = original(*bound.args, **bound.kwargs)
    except BaseException as error:
        # the user's error is the error: what devswitch does here may add a note to it, never replace it
        record = functools.partial(_record_failure, timer, model, kind, t0, error)
        quietly(f"{kind}: the record of the failed call", record)
        if not isinstance(error, KeyboardInterrupt):
            quietly(f"{kind}: the half-precision note", functools.partial(explain_dtype_error, error))
        raise
    finally:
        _local.depth = 0
    if timer._call is not None:  # Keras ended without our end hook (e.g. zero steps)
        quietly(f"{kind}: the record of the call", timer.finish)
    # a subclassed model is built by its first call: its outputs can be traced now
    quietly(f"{kind}: the float16 output check", lambda: warn_float16_output(model, x))
    return result
