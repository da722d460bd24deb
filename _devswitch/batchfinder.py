"""``devswitch.find_batch_size``: the largest batch that fits, with the evidence (each trial, its peak, its
throughput) and the reason the search stopped.

On a GPU, out-of-memory raises, so the search is Lightning's binsearch: double the batch until a trial fails
with the backend's out-of-memory error (``backends.<name>.out_of_memory``), then halve the interval between
the last success and the first failure. Any other error is the user's and propagates as it is.

On a CPU, out-of-memory kills the process instead of raising, so the limit is a memory budget for each trial's
own peak, measured as ``benchmark()`` measures a batch size's (sampled while it runs), checked with a margin,
since sampling can miss a short spike. Peaks grow about linearly with the batch, so the next trial's
peak is predicted from the trials before it, and a trial predicted above the budget is not run.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .memory import available_memory, format_size, parse_size, release_free_memory, resident_bytes

DEFAULT_MAX_BATCH = 1 << 16
MARGIN = 0.10  # a measured or predicted peak counts this much above itself: the sampler can miss a spike
KNEE = 0.05  # the knee: the smallest batch within 5% of the best throughput seen
CPU_RESOLUTION = 1 / 16  # the CPU's binary search stops within 1/16 of the batch (the budget is soft anyway)
TRIAL_TIME_S = 0.1  # each trial times its calls for at least this long (after one untimed call), for its throughput
KNEE_ROUNDS = 3  # the knee's candidates are timed again in this many interleaved rounds (a trial's rate is noisy)
KNEE_CANDIDATES = 6  # at most this many: the fastest trials, each at least half the best rate seen
KNEE_CONTENDERS = 0.85  # after the first round, only those within 15% of its best go on (a knee is within 5%)


@dataclass(frozen=True)
class Trial:
    """One batch size tried: whether it fits, its peak, and its throughput where it ran and fit."""

    batch: int
    fits: bool
    peak_bytes: int | None = None  # the GPU allocator's peak, or (CPU) the trial's own peak (batchmemory's)
    samples_per_s: float | None = None
    ran: bool = True  # False: predicted above the budget, so not run
    note: str = ""  # why it does not fit: "out of memory: ...", "peak 70 MiB above the budget", "predicted ..."

    def describe(self) -> str:
        """ "batch 512: fits, peak 12 MiB, 9,310/s" or "batch 4096: does not fit (out of memory: ...)"."""
        if not self.fits:
            return f"batch {self.batch}: does not fit ({self.note})"
        rate = f", {self.samples_per_s:,.0f}/s" if self.samples_per_s else ""
        return f"batch {self.batch}: fits, peak {format_size(self.peak_bytes)}{rate}"


@dataclass(frozen=True)
class BatchSearch:
    """What ``find_batch_size`` found: the batch (None when not even batch 1 fits), the knee, and the evidence."""

    batch_size: int | None
    knee: int | None  # the smallest batch within 5% of the best throughput seen (None where none was measured)
    trials: tuple[Trial, ...]
    reason: str  # why the search stopped
    limit: str  # what "fits" meant: out-of-memory errors on the device, or a memory budget
    budget_bytes: int | None
    peak_source: str  # how a trial's peak was read
    device: str = ""
    backend: str = ""
    mode: str = "inference"
    seconds: float = 0.0
    retimed: tuple[tuple[int, float], ...] = ()  # the knee's candidates timed again: (batch, median samples/s)

    def describe(self) -> str:
        """The result and its evidence, one trial a line."""
        head = f"largest batch that fits: {self.batch_size} ({self.reason})"
        knee = (
            [f"knee (smallest batch within {KNEE:.0%} of the best throughput seen): {self.knee}"] if self.knee else []
        )
        retimed = ["knee's candidates timed again: " + ", ".join(f"{b}: {r:,.0f}/s" for b, r in self.retimed)]
        lines = [head, *knee, *(retimed if self.retimed else []), f"limit: {self.limit}", f"peaks: {self.peak_source}"]
        return "\n".join(lines + ["  " + trial.describe() for trial in self.trials])


class Probe(Protocol):
    """Runs one trial at a batch size: its peak in bytes (None: unknown) and samples per second (None: not
    timed). Raises the framework's out-of-memory error when it does not fit on the device."""

    def __call__(self, batch: int) -> tuple[int | None, float | None]: ...


def predict_peak(trials: list[Trial], batch: int) -> float | None:
    """The peak ``batch`` should reach, from the trials that ran: linear between the neighbours around it,
    else extended from the two largest below it, else proportional to the one below (an over-estimate: a
    peak has a part that does not grow with the batch). None when no trial below it ran."""
    known = sorted({t.batch: t.peak_bytes for t in trials if t.ran and t.peak_bytes is not None}.items())
    below = [(b, p) for b, p in known if b <= batch]
    above = [(b, p) for b, p in known if b > batch]
    if not below:
        return None
    if above:
        (b1, p1), (b2, p2) = below[-1], above[0]
    elif len(below) >= 2:
        (b1, p1), (b2, p2) = below[-2], below[-1]
    else:
        b1, p1 = below[-1]
        return p1 * batch / b1
    slope = max(0.0, (p2 - p1) / (b2 - b1))
    return p1 + slope * (batch - b1)


@dataclass
class _Search:
    """The state of one search: the trials so far and how a trial is judged."""

    probe: Probe
    out_of_memory: Callable[[BaseException], bool]
    release: Callable[[bool], None]  # release(failed): between trials
    budget: int | None
    margin: float = MARGIN

    def __post_init__(self) -> None:
        self.trials: list[Trial] = []

    def attempt(self, batch: int) -> bool:
        """Try ``batch`` (or not, when predicted above the budget); record the trial; whether it fits."""
        if self.budget is not None:
            predicted = predict_peak(self.trials, batch)
            if predicted is not None and predicted * (1 + self.margin) > self.budget:
                note = f"not run: predicted peak {format_size(predicted)} + {self.margin:.0%} is above the budget"
                self.trials.append(Trial(batch, False, ran=False, note=note))
                return False
        try:
            peak, rate = self.probe(batch)
        except Exception as error:
            if not self.out_of_memory(error):
                raise  # the user's error, not a batch that does not fit
            from .errors import describe

            self.release(True)
            self.trials.append(Trial(batch, False, note=f"out of memory: {describe(error, 120)}"))
            return False
        over = self.budget is not None and peak is not None and peak * (1 + self.margin) > self.budget
        note = f"peak {format_size(peak)} + {self.margin:.0%} is above the budget" if over else ""
        self.trials.append(Trial(batch, not over, peak, None if over else rate, note=note))
        self.release(over)
        return not over


def search(
    probe: Probe,
    *,
    out_of_memory: Callable[[BaseException], bool],
    budget: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    resolution: float = 0.0,
    release: Callable[[bool], None] = lambda failed: None,
) -> tuple[int | None, list[Trial], str]:
    """Power-of-two growth from batch 1 up to ``max_batch``, then a binary search between the last batch
    that fit and the first that did not, until they are ``max(1, resolution x batch)`` apart.
    Returns (the largest batch that fit or None, the trials in order, why the search stopped)."""
    state = _Search(probe, out_of_memory, release, budget)
    low, high, batch = 0, 0, 1
    while True:
        batch = min(batch, max_batch)
        if not state.attempt(batch):
            high = batch
            break
        low = batch
        if batch >= max_batch:
            return low, state.trials, f"max_batch {max_batch} reached (it fits)"
        batch *= 2
    if low == 0:
        return None, state.trials, f"batch 1 does not fit ({state.trials[-1].note})"
    while high - low > max(1, int(low * resolution)):
        middle = (low + high) // 2
        if state.attempt(middle):
            low = middle
        else:
            high = middle
    why = next(t.note for t in reversed(state.trials) if t.batch == high)
    within = "" if high - low == 1 else f", searched to within {high - low}"
    return low, state.trials, f"batch {high} does not fit ({why}){within}"


def knee(trials: list[Trial] | tuple[Trial, ...], within: float = KNEE) -> int | None:
    """The smallest batch that fit whose throughput is within ``within`` of the best throughput seen."""
    rates = [(t.batch, t.samples_per_s) for t in trials if t.fits and t.samples_per_s]
    if not rates:
        return None
    best = max(rate for _, rate in rates)
    return min(batch for batch, rate in rates if rate >= (1 - within) * best)


def retime(probe: Probe, trials: list[Trial], rounds: int = KNEE_ROUNDS) -> dict[int, float]:
    """The knee's candidates (the fastest trials that fit, each at least half the best rate seen) timed again
    in ``rounds`` interleaved rounds, the order rotating: each batch's median samples/s. One trial's short
    timing can be off by 2x on a busy machine; a knee picked from it would be too. After the first round, a
    candidate under 85% of that round's best (its only figure is that round's) is not timed again: a knee is
    within 5% of the best."""
    rated = sorted((t for t in trials if t.fits and t.samples_per_s), key=lambda t: -(t.samples_per_s or 0))
    if not rated:
        return {}
    best = rated[0].samples_per_s or 0
    batches = sorted(t.batch for t in rated[:KNEE_CANDIDATES] if (t.samples_per_s or 0) >= best / 2)
    rates: dict[int, list[float]] = {b: [] for b in batches}
    for number in range(rounds):
        if number == 1:
            top = max((r[0] for r in rates.values() if r), default=0.0)
            batches = [b for b in batches if rates[b] and rates[b][0] >= KNEE_CONTENDERS * top]
        for batch in batches[number % len(batches) :] + batches[: number % len(batches)]:
            _, rate = probe(batch)
            if rate:
                rates[batch].append(rate)
    return {b: statistics.median(r) for b, r in rates.items() if r}


def _step(runner: Any, model: Any, mode: str, batch: int) -> Callable[[], object]:
    """One call of the benchmark's compiled path at ``batch`` (a training step in training mode)."""
    from .benchmodel import input_shape, labels

    x = runner.input((batch, *input_shape(model)))
    if mode == "training":
        y, _ = labels(model, batch)
        return lambda: model.train_on_batch(x, y)
    return lambda: runner.sync(runner.forward(x))


@dataclass
class RunnerProbe:
    """A trial through a backend's Runner: one untimed call, then calls timed for ``min_time``; its peak is
    the GPU allocator's for the trial, or (CPU, ``gpu`` False) the trial's own peak as ``benchmark()`` measures
    a batch size's (``batchmemory``): the resident memory above its level before the trial, sampled while it
    ran, with what the framework's own pool took for an earlier trial and still holds (a pool reuses it unseen:
    after a trial too large, every smaller one would otherwise read as the memory it kept)."""

    runner: Any
    model: Any
    mode: str
    gpu: bool
    min_time: float = TRIAL_TIME_S
    clock: Callable[[], float] = time.perf_counter

    def __post_init__(self) -> None:
        from .batchmemory import BatchMemory

        self.memory = BatchMemory(False, self.runner)
        self.traced: set[int] = set()  # the batch sizes already called once (traced and compiled)

    def __call__(self, batch: int) -> tuple[int | None, float | None]:
        if self.gpu:
            self.runner.reset_peak_memory()
            rate = self._timed(batch)
            return self.runner.peak_memory(), rate
        with self.memory.first_steps(batch):
            rate = self._timed(batch)
        return self.memory.peaks.get(batch), rate

    def _timed(self, batch: int) -> float:
        """Samples per second at ``batch``: one untimed call the first time (it traces and compiles), then
        calls for ``min_time`` seconds."""
        step = _step(self.runner, self.model, self.mode, batch)
        if batch not in self.traced:
            step()
            self.traced.add(batch)
        calls, start = 0, self.clock()
        while calls < 1 or self.clock() - start < self.min_time:
            step()
            calls += 1
        return calls * batch / (self.clock() - start)


def _budget(memory_budget: int | str | None, gpu: bool) -> int | None:
    """The budget in bytes: as given, or on a CPU half of the memory available now (None on a GPU: the
    device's out-of-memory is the limit)."""
    from .errors import UsageError

    if isinstance(memory_budget, str):
        try:
            return parse_size(memory_budget)
        except ValueError as error:
            raise UsageError(f"memory_budget: {error}", hint="give bytes, or a size such as 512MiB or 4GiB") from None
    if memory_budget is not None:
        if memory_budget < 1:
            raise UsageError(f"memory_budget: {memory_budget} bytes", hint="give a positive size such as 512MiB")
        return int(memory_budget)
    if gpu:
        return None
    available = available_memory()
    if available is None:
        raise UsageError(
            "find_batch_size on a CPU needs a memory budget, and this system does not say how much memory is available",
            hint="pass memory_budget='4GiB' (the resident memory the search may use above its start)",
        )
    return available // 2


def find_batch_size(
    model_or_factory: Any,
    *,
    mode: str = "inference",
    memory_budget: int | str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    min_time: float = TRIAL_TIME_S,
    retime_knee: bool = True,
) -> BatchSearch:
    """The largest batch of ``model_or_factory`` (a Keras model, a factory, or a bundled name) that fits,
    through the benchmark's compiled call path (a training step with ``mode="training"``), with every trial.

    On a GPU the limit is the device's memory (the backend's out-of-memory error), and ``memory_budget``, if
    given, caps the allocator's peak too; on a CPU it is ``memory_budget`` (bytes or "4GiB"; default half of
    the memory available now): each trial's own peak as benchmark() measures a batch size's, with a 10% margin.
    ``max_batch`` bounds the search. ``BatchSearch.knee`` is the smallest batch within 5% of the best
    throughput seen: the fastest trials are timed again in interleaved rounds for it (``retime_knee``).
    Each trial times its calls for ``min_time`` seconds.
    """
    from . import backends, timing
    from .errors import UsageError

    if mode not in ("inference", "training"):
        raise UsageError(f"unknown mode '{mode}'", hint="use mode='inference' or mode='training'")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise UsageError(f"max_batch: {max_batch!r}", hint="give a whole number of at least 1")
    started = time.perf_counter()
    model, name, gpus = _prepare(model_or_factory, mode)
    backend = backends.get(name)
    budget = _budget(memory_budget, bool(gpus))
    runner = backend.Runner(model, resolve_jit(model), tuple(gpus))
    probe = RunnerProbe(runner, model, mode, bool(gpus), min_time=min_time)
    with timing.suppressed():
        _step(runner, model, mode, 1)()  # the framework's own first-use memory is not the batch's
        release_free_memory()
        base = resident_bytes() or 0
        batch, trials, reason = search(
            probe,
            out_of_memory=backend.out_of_memory,
            budget=budget,
            max_batch=max_batch,
            resolution=0.0 if gpus else CPU_RESOLUTION,
            release=lambda failed: _release(backend.release_memory, failed),
        )
        rates = retime(probe, trials) if retime_knee else {}
    return BatchSearch(
        batch_size=batch,
        knee=knee([Trial(b, True, samples_per_s=r) for b, r in rates.items()]) if rates else knee(trials),
        trials=tuple(trials),
        reason=reason,
        limit=_limit(budget, bool(gpus), base),
        budget_bytes=budget,
        peak_source=_peak_source(runner, bool(gpus)),
        device=timing.model_device(model),
        backend=name,
        mode=mode,
        seconds=time.perf_counter() - started,
        retimed=tuple(rates.items()),
    )


def resolve_jit(model: Any) -> bool:
    from .apply import resolve_xla

    return resolve_xla(model)


def _prepare(model_or_factory: Any, mode: str) -> tuple[Any, str, tuple[int, ...]]:
    """The model (built, checked, compiled for training), its backend's name and the GPUs it runs on."""
    import keras

    from . import backends, session
    from .benchmodel import check_input_shape, compile_for_training, resolve_model

    model, label = resolve_model(model_or_factory, None)
    check_input_shape(model, label)
    name = keras.backend.backend()
    plan = session.plan()
    gpus = plan.gpus if plan and plan.backend == name else tuple(g.index for g in backends.get(name).detect_gpus())
    if mode == "training":
        compile_for_training(model, resolve_jit(model))
    return model, name, tuple(gpus)


def _release(release_memory: Callable[[], None], failed: bool) -> None:
    """Between trials: Python's garbage (all of it after a trial that did not fit, which the binary search
    follows: a full collection costs most of a second with a framework loaded; the young generations after one
    that fit), the framework's caches, then what C's allocator kept (so the next trial's resident peak is not
    the last one's leftovers)."""
    gc.collect(2 if failed else 1)
    release_memory()
    release_free_memory()


def _limit(budget: int | None, gpu: bool, base: int) -> str:
    if gpu:
        cap = f", and a budget of {format_size(budget)} of allocator peak" if budget else ""
        return "the device's memory (a trial fails with the framework's out-of-memory error)" + cap
    return (
        f"memory budget {format_size(budget)} for each trial's own peak (the process held {format_size(base)} at "
        f"the start of the search), with a {MARGIN:.0%} margin (on a CPU, out-of-memory kills the process)"
    )


def _peak_source(runner: Any, gpu: bool) -> str:
    if not gpu:
        return (
            "the trial's own peak, as benchmark() measures a batch size's: resident memory (/proc/self/statm) above "
            "its level before the trial, sampled every 2 ms while it ran, with what the framework's own memory "
            "pool took for an earlier trial and still holds (it may reuse that unseen)"
        )
    # the backend says how its allocator's peak is read (JAX: inside its preallocated pool, with no reset)
    own = getattr(runner, "peak_memory_source", None)
    return own() if callable(own) else "the framework allocator's peak for the trial, reset before it"
