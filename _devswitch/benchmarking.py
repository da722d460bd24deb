"""``devswitch.benchmark``: measure a model the way tf_cnn_benchmarks and MLPerf do.

Per batch size: synthetic input made once on the device, the first (tracing and
compiling) call timed apart, untimed warm-up iterations, then timed iterations
(a count, and optionally a minimum duration) through the backend's compiled
call path (``tf.function``; a jitted stateless call on JAX; eager or ``torch.compile`` on
PyTorch) — so batch-1 numbers measure the model, not Keras' per-call overhead.
The plain ``model.predict`` figure is measured beside it, for honesty.

Each step is timed on its own (latency percentiles) — or, for steps shorter
than 10 ms, groups of k steps calibrated on the warm-up — and throughput is
reported as the median with its standard error and a robust jitter, beside the
overall figure (all samples / all timed seconds). FLOPs are
counted analytically for Conv2D and Dense layers and compared with the device's
theoretical peak in the dtype in use (peaks.py: from the CPU's instruction set and
clock, or a GPU's spec sheet; none where it cannot be known). A matmul probe in the
same precision on the same device is measured beside it: a rate, not a peak.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from . import accuracy, benchmodel
from .batchmemory import BatchMemory
from .benchrecord import BenchmarkRecord
from .energy import Meter, combined, meter_for, unavailable
from .errors import describe
from .measure import MIN_SAMPLE_S, FinishEarly, Measure, shares
from .peaks import Peak
from .plans import Gpu, Inventory, Plan
from .statistics import Summary

PROBE_SIZE = 2048


# --- the measured loops -----------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkOptions:
    """The arguments of ``benchmark()``, as one value (see its docstring for what each does)."""

    batch_sizes: tuple[int, ...] = (1, 128)
    mode: str = "inference"
    warmup: int = 5
    iterations: int = 20
    min_time: float = 0.0
    predict_baseline: bool = True
    peak_probe: bool = True
    energy: bool = True
    jit_compile: bool | None = None
    name: str | None = None
    clock: Callable[[], float] = time.perf_counter
    on_record: Callable[[BenchmarkRecord], None] | None = None
    on_round: Callable[[BenchmarkRecord], None] | None = None  # each batch size's record so far, after each round
    meter_factory: Callable[[Sequence[int]], Meter] | None = None
    min_sample_s: float = MIN_SAMPLE_S
    rounds: int = 1
    turn: Callable[[str], None] | None = None
    origin: float | None = None
    reference: accuracy.Reference | str | Path | None = None


@dataclass(frozen=True)
class _Subject:
    """What is measured and where: the built model and the facts every record of this call repeats."""

    model: Any
    label: str
    mode: str
    policy: str
    compute: str
    device: str
    backend: str
    math: str
    gpus: Sequence[int]
    flops: float | None
    flops_note: str
    peak: Peak  # the device's theoretical peak in the dtype in use (gflops None where it cannot be known)
    training: dict
    runner: Any  # the backend's Runner: its compiled call path and synchronisation
    versions: dict
    origin: float
    make_meter: Callable[[Sequence[int]], Meter] | None


@dataclass
class _State:
    """What the phases of one ``benchmark()`` call have measured so far, per batch size."""

    reference: accuracy.Reference | str | Path | None
    memory: BatchMemory  # each batch size's peak memory
    measures: dict[int, Measure] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    inputs: dict[int, Any] = field(default_factory=dict)
    records: list[BenchmarkRecord] = field(default_factory=list)
    deviations: dict[int | str, dict] = field(default_factory=dict)
    phases: dict[int, dict[str, float]] = field(default_factory=dict)  # the work done beside the timed phases
    probe: float | None = None  # the matmul probe's GFLOP/s: a measured rate, not a peak
    probe_s: float | None = None
    probe_source: str = "not measured"


def benchmark(
    model,
    batch_sizes: Sequence[int] = (1, 128),
    mode: str = "inference",
    warmup: int = 5,
    iterations: int = 20,
    min_time: float = 0.0,
    predict_baseline: bool = True,
    peak_probe: bool = True,
    energy: bool = True,
    jit_compile: bool | None = None,
    name: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
    on_record: Callable[[BenchmarkRecord], None] | None = None,
    on_round: Callable[[BenchmarkRecord], None] | None = None,
    meter_factory: Callable[[Sequence[int]], Meter] | None = None,
    min_sample_s: float = MIN_SAMPLE_S,
    rounds: int = 1,
    turn: Callable[[str], None] | None = None,
    origin: float | None = None,
    reference: accuracy.Reference | str | Path | None = None,
) -> list[BenchmarkRecord]:
    """Benchmark ``model`` (a Keras model, a factory, or a bundled name) at each batch size.

    Returns one immutable BenchmarkRecord per batch size. Build happens under the dtype policy in effect, so apply
    devswitch (import / ``configure``) first. ``meter_factory(gpus)`` replaces the energy meter (its start/stop
    bracket the timed iterations exactly); ``on_record`` sees each record at once, ``on_round`` each after a round.

    ``rounds`` > 1 splits the ``iterations`` timed samples of every batch size over that many rounds
    (each after one untimed step). ``turn(phase)`` is called before each phase ("warm", "round 1", ...,
    "finish") and returns when this process may go on: ``devswitch compare`` uses it to let its workers
    take turns. Each sample's start is recorded in seconds since ``origin`` (``time.time()``; default
    the start of this call). Interrupted between rounds, the rounds already measured become records.

    ``reference`` (``devswitch.accuracy.reference(model)`` of the same model, computed in strict float32):
    the model first gets the reference's weights, and each record says how far this configuration's
    outputs at that batch size land from the reference's (training: the loss after a few SGD steps).
    """
    opts = BenchmarkOptions(
        batch_sizes=tuple(batch_sizes),
        mode=mode,
        warmup=warmup,
        iterations=iterations,
        min_time=min_time,
        predict_baseline=predict_baseline,
        peak_probe=peak_probe,
        energy=energy,
        jit_compile=jit_compile,
        name=name,
        clock=clock,
        on_record=on_record,
        on_round=on_round,
        meter_factory=meter_factory,
        min_sample_s=min_sample_s,
        rounds=rounds,
        turn=turn,
        origin=origin,
        reference=reference,
    )
    return run_benchmark(model, opts)


def run_benchmark(model, opts: BenchmarkOptions) -> list[BenchmarkRecord]:
    """``benchmark()`` with its arguments as one BenchmarkOptions: build, then time in one go or in rounds."""
    from . import timing

    subject = _build(model, opts)
    state = _State(reference=opts.reference, memory=BatchMemory(bool(subject.gpus), subject.runner))
    with timing.suppressed():
        if opts.rounds == 1 and opts.turn is None:
            _run_at_once(opts, subject, state)
        else:
            _run_in_rounds(opts, subject, state)
    return state.records


# --- phase: build ---------------------------------------------------------------------------


def _build(model, opts: BenchmarkOptions) -> _Subject:
    """Resolve and check the model, compile it for training, and gather what every record repeats."""
    import keras

    from . import apply, backends, session, timing
    from .environment import versions as library_versions

    if opts.mode not in ("inference", "training"):
        from .errors import UsageError

        raise UsageError(f"unknown mode '{opts.mode}'", hint="use mode='inference' or mode='training'")
    model, label = benchmodel.resolve_model(model, opts.name)
    benchmodel.check_input_shape(model, label)
    policy = timing.policy_name(model)
    compute = (
        keras.config.dtype_policy().compute_dtype
        if policy == "unknown"
        else getattr(model.dtype_policy, "compute_dtype", "float32")
    )
    backend_name = keras.backend.backend()
    plan = session.plan()
    own_plan = plan if plan and plan.backend == backend_name else None
    inventory = apply.inventory() if own_plan else None
    found = inventory.gpus if inventory else backends.get(backend_name).detect_gpus()
    gpus = own_plan.gpus if own_plan else tuple(g.index for g in found)
    jit_compile = opts.jit_compile
    if jit_compile is None:
        from .apply import resolve_xla

        jit_compile = resolve_xla(model)
    flops, flops_note = benchmodel.mode_flops(model, opts.mode)
    training = benchmodel.compile_for_training(model, jit_compile) if opts.mode == "training" else {}
    return _Subject(
        model=model,
        label=label,
        mode=opts.mode,
        policy=policy,
        compute=compute,
        device=timing.model_device(model),
        backend=backend_name,
        math=own_plan.math if own_plan else "",
        gpus=gpus,
        flops=flops,
        flops_note=flops_note,
        peak=_peak(inventory, tuple(g for g in found if g.index in gpus), compute, own_plan),
        training=training,
        runner=backends.get(backend_name).Runner(model, jit_compile, gpus),
        versions=library_versions(backend_name),
        origin=time.time() if opts.origin is None else opts.origin,
        make_meter=(opts.meter_factory or meter_for) if opts.energy else None,
    )


def _peak(inventory: Inventory | None, gpus: tuple[Gpu, ...], compute: str, plan: Plan | None) -> Peak:
    """The theoretical peak of the device the model runs on, in the dtype its matmuls use (the math in force
    for float32), over the cores devswitch lets it use (the threads setting, when devswitch applied one)."""
    from . import session
    from .devices import detect_cpu
    from .peaks import device_peak, peak_dtype, read_cpu_facts

    cpu = inventory.cpu if inventory else detect_cpu()
    threads = session.config().threads.intra if plan else 0
    return device_peak(cpu, gpus, peak_dtype(compute, plan.math if plan else ""), read_cpu_facts(), threads)


# --- the order of the phases ----------------------------------------------------------------


def _run_at_once(opts: BenchmarkOptions, subject: _Subject, state: _State) -> None:
    """One go per batch size, then the matmul probe (after them, so that the memory it leaves with the
    allocator hides no batch size's peak), then the records. Interrupted, the batch sizes timed become records."""
    _use_reference_weights(subject, state)
    try:
        for batch in opts.batch_sizes:
            _guarded(state, batch, partial(_warm, opts, subject, state, batch))
            _guarded(
                state, batch, partial(_take, subject, state, batch, max(1, opts.iterations), opts.min_time, 0, False)
            )
    except KeyboardInterrupt:
        _keep_measured(opts, subject, state)
        raise
    _probe(opts, subject, state)
    for batch in opts.batch_sizes:
        _finish(opts, subject, state, batch)


def _run_in_rounds(opts: BenchmarkOptions, subject: _Subject, state: _State) -> None:
    """Warm every batch size, then time them round by round, each phase after ``turn`` lets this process go on."""
    turn = opts.turn or (lambda phase: None)
    counts = shares(max(opts.rounds, opts.iterations), opts.rounds)
    try:
        turn("warm")
        _use_reference_weights(subject, state)
        for batch in opts.batch_sizes:
            _guarded(state, batch, partial(_warm, opts, subject, state, batch))
        _probe(opts, subject, state)  # after the warm-ups, where each batch size's peak memory is read
        early = opts.on_round is not None  # devswitch tune: the accuracy first, for its guard from round 1 on
        for batch in opts.batch_sizes if early else ():
            _measure_accuracy(opts, subject, state, batch)
        try:
            for number, count in enumerate(counts):
                turn(f"round {number + 1}")
                for batch in opts.batch_sizes:
                    _guarded(state, batch, partial(_take_round, opts, subject, state, batch, count, number))
                if opts.on_round is not None:  # devswitch tune races on the rounds so far
                    for batch in opts.batch_sizes:  # each is measured, or failed
                        opts.on_round(_record(subject, state, batch))
            turn("finish")
        except FinishEarly:  # told "finish" where a round was due: the rounds taken are the record's
            pass
        for batch in () if early else opts.batch_sizes:  # before any predict baseline (JAX's replaces the weights)
            _measure_accuracy(opts, subject, state, batch)
        for batch in opts.batch_sizes:
            _finish(opts, subject, state, batch)
    except KeyboardInterrupt:  # keep every round already measured (without the predict baseline)
        _keep_measured(opts, subject, state)
        raise


def _keep_measured(opts: BenchmarkOptions, subject: _Subject, state: _State) -> None:
    done = {r.batch for r in state.records}
    for batch in opts.batch_sizes:
        if batch not in done and (batch in state.failed or (batch in state.measures and state.measures[batch].seconds)):
            _publish(opts, state, _record(subject, state, batch))


def _guarded(state: _State, batch: int, work: Callable[[], object]) -> None:
    """Run one phase of ``batch``; a failure marks that batch size failed and the others go on."""
    if batch in state.failed:
        return
    try:
        work()
    except KeyboardInterrupt:
        raise
    except Exception as error:  # out of memory, a model that cannot run this batch size, ...
        state.failed[batch] = describe(error)


# --- phases: warm-up and timed rounds ---------------------------------------------------------


def _warm(opts: BenchmarkOptions, subject: _Subject, state: _State, batch: int) -> None:
    """Make the input on the device, time the first call and the warm-up, and read the memory peak."""
    runner, model = subject.runner, subject.model
    with state.memory.first_steps(batch):  # the input is the batch size's memory too
        x = runner.input((batch, *benchmodel.input_shape(model)))
        if opts.mode == "inference":

            def step():
                runner.sync(runner.forward(x))
        else:
            y, _ = benchmodel.labels(model, batch)

            def step():
                return model.train_on_batch(x, y)  # returns host numbers: waits for the step

        measure = Measure(batch, step, opts.clock, subject.origin, opts.min_sample_s)
        state.inputs[batch] = x
        measure.warm(opts.warmup)
    state.measures[batch] = measure


def _take(
    subject: _Subject, state: _State, batch: int, samples: int, seconds: float, number: int, rewarm: bool
) -> None:
    meter = subject.make_meter(subject.gpus) if subject.make_meter else None
    with state.memory.timed_steps(batch):
        state.measures[batch].take(samples, seconds, number, meter, rewarm)


def _take_round(opts: BenchmarkOptions, subject: _Subject, state: _State, batch: int, count: int, number: int) -> None:
    rewarm = state.measures[batch].rewarm_needed()
    _take(subject, state, batch, count, opts.min_time / opts.rounds, number, rewarm)


# --- phase: matmul probe ----------------------------------------------------------------------


def _probe(opts: BenchmarkOptions, subject: _Subject, state: _State) -> None:
    """Measure a matmul's rate in this precision on this device, when there are FLOPs to set beside it
    (a measured rate that a model may exceed: the peak is ``subject.peak``)."""
    if opts.peak_probe and subject.flops:
        state.probe, state.probe_s = subject.runner.matmul_peak(subject.compute, PROBE_SIZE, clock=opts.clock)
        state.probe_source = (
            f"matmul probe: {PROBE_SIZE}x{PROBE_SIZE} {subject.compute} matmul on {subject.device}, best of 5"
        )


# --- phase: accuracy --------------------------------------------------------------------------


def _use_reference_weights(subject: _Subject, state: _State) -> None:
    """Load the reference (from its file if compare's reference run wrote one) and give the model its weights."""
    if isinstance(state.reference, (str, Path)):  # compare's reference run wrote it while this one waited
        try:
            state.reference = accuracy.Reference.load(state.reference)
        except (OSError, ValueError, KeyError) as error:
            state.reference = None
            state.deviations["weights"] = accuracy.unavailable(f"no strict float32 reference ({describe(error)})")
    if state.reference is None:
        return
    try:
        accuracy.load_weights(subject.model, state.reference)
    except Exception as error:  # the timing goes on with the model's own weights; the records say why
        state.deviations["weights"] = accuracy.unavailable(describe(error))


def _measure_accuracy(opts: BenchmarkOptions, subject: _Subject, state: _State, batch: int) -> None:
    if batch in state.failed or (state.reference is None and "weights" not in state.deviations):
        return
    t0 = opts.clock()
    try:
        deviation = _deviation(opts, subject, state, batch)
        if deviation is not None:
            state.deviations[batch] = deviation
    finally:
        state.phases.setdefault(batch, {})["accuracy"] = opts.clock() - t0


def _deviation(opts: BenchmarkOptions, subject: _Subject, state: _State, batch: int) -> dict | None:
    """How far this configuration's outputs (training: loss) at ``batch`` land from the reference's."""
    deviations = state.deviations
    if "weights" in deviations:  # the weights did not fit: nothing to compare
        return deviations["weights"]
    ref = state.reference
    if not isinstance(ref, accuracy.Reference):  # _use_reference_weights has loaded it, or said why not
        return None
    try:
        if opts.mode == "training":  # once, on a clone: the same SGD steps as the reference's
            if "training" not in deviations:
                model = subject.model
                value = accuracy.train_loss(
                    model, ref.weights, ref.x, ref.labels, getattr(model, "loss", None), clone=True
                )
                deviations["training"] = accuracy.loss_deviation(ref, value)
            return deviations["training"]
        outputs = accuracy.outputs_at(subject.runner.forward, ref.x, batch)  # the timed call path, at this batch size
        return accuracy.deviation(ref, outputs)
    except KeyboardInterrupt:
        raise
    except Exception as error:
        return accuracy.unavailable(describe(error))


# --- phases: predict baseline and record ------------------------------------------------------


def _finish(opts: BenchmarkOptions, subject: _Subject, state: _State, batch: int) -> None:
    """Measure what is left for ``batch`` (accuracy, the predict baseline), then make and publish its record."""
    if batch not in state.deviations:
        _measure_accuracy(opts, subject, state, batch)
    predict: tuple[float | None, float | None] = (None, None)
    if batch not in state.failed and opts.predict_baseline and opts.mode == "inference":
        baseline: list[tuple[float | None, float | None]] = []
        _guarded(state, batch, lambda: baseline.append(_predict_baseline(opts, subject, state, batch)))
        predict = baseline[0] if baseline else predict
    _publish(opts, state, _record(subject, state, batch, predict))


def _predict_baseline(opts: BenchmarkOptions, subject: _Subject, state: _State, batch: int) -> tuple[float, float]:
    """Plain ``model.predict`` on the same input: (samples/s, seconds) of three calls after its own first call."""
    model, clock = subject.model, opts.clock
    x_host = subject.runner.to_host(state.inputs[batch])
    t0 = clock()
    model.predict(x_host, batch_size=batch, verbose=0)  # its own tracing, apart from its figure
    state.phases.setdefault(batch, {})["predict_first_call"] = clock() - t0
    calls = 3
    t0 = clock()
    for _ in range(calls):
        model.predict(x_host, batch_size=batch, verbose=0)
    return calls * batch / (clock() - t0), clock() - t0


def _publish(opts: BenchmarkOptions, state: _State, record: BenchmarkRecord) -> None:
    state.records.append(record)
    if opts.on_record:
        opts.on_record(record)


def _record(
    subject: _Subject, state: _State, batch: int, predict: tuple[float | None, float | None] = (None, None)
) -> BenchmarkRecord:
    """The record of ``batch``: what failed, or everything its phases measured."""
    base = BenchmarkRecord(
        model=subject.label,
        mode=subject.mode,
        batch=batch,
        device=subject.device,
        policy=subject.policy,
        compute_dtype=subject.compute,
        status=f"failed: {state.failed[batch]}" if batch in state.failed else "ok",
        versions=subject.versions,
        backend=subject.backend,
        math=subject.math,
    )
    if batch in state.failed:
        return base
    m = state.measures[batch]
    return replace(
        base,
        first_call_s=m.first_s,
        warmup_iterations=m.warmup,
        warmup_s=m.warm_s,
        summary=Summary.of(m.seconds, batch, m.k),
        predict_samples_per_s=predict[0],
        predict_s=predict[1],
        flops_per_sample=subject.flops,
        flops_note=subject.flops_note,
        peak_gflops=subject.peak.gflops if subject.flops else None,
        peak_source=subject.peak.how if subject.flops else "",
        probe_gflops=state.probe,
        probe_source=state.probe_source if state.probe else "",
        probe_s=state.probe_s,
        energy=combined(m.readings) if subject.make_meter else unavailable("energy measurement turned off"),
        host_rss_peak_bytes=benchmodel.host_rss_peak(),
        gpu_memory_peak_bytes=state.memory.gpu_peaks.get(batch),
        peak_memory_bytes=state.memory.peaks.get(batch),
        peak_memory_source=state.memory.sources.get(batch, ""),
        training=subject.training,
        rounds=len(set(m.rounds)),
        samples=m.samples(),
        accuracy=state.deviations.get(batch),
        more_phases_s={k: v for k, v in state.phases.get(batch, {}).items() if v},
    )
