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
counted analytically for Conv2D and Dense layers; the peak they are compared
with is measured by a matmul probe in the same precision on the same device.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from . import accuracy
from .energy import Energy, Meter, combined, meter_for, unavailable
from .errors import describe
from .measure import MIN_SAMPLE_S, Measure, shares
from .results import metric
from .statistics import Summary

PROBE_SIZE = 2048


@dataclass(frozen=True)
class BenchmarkRecord:
    model: str
    mode: str  # inference | training
    batch: int
    device: str
    policy: str
    compute_dtype: str
    status: str = "ok"
    first_call_s: float | None = None
    warmup_iterations: int = 0
    warmup_s: float | None = None
    summary: Summary | None = None
    predict_samples_per_s: float | None = None  # plain model.predict, for comparison
    predict_s: float | None = None
    flops_per_sample: float | None = None
    flops_note: str = ""
    peak_gflops: float | None = None
    peak_source: str = ""
    probe_s: float | None = None
    energy: Energy | None = None
    host_rss_peak_bytes: int | None = None
    gpu_memory_peak_bytes: int | None = None
    versions: dict = field(default_factory=dict)  # devswitch, python, keras, the backend's framework, ...
    backend: str = ""
    training: dict = field(default_factory=dict)  # training mode: the loss and optimizer that were timed
    started_at: float = field(default_factory=time.time)
    rounds: int = 1  # the timed samples were taken in this many rounds
    accuracy: dict | None = None  # outputs against a strict float32 reference (accuracy.py)
    more_phases_s: dict = field(default_factory=dict)  # predict_first_call, accuracy: work beside the timing
    samples: dict = field(default_factory=dict)  # round, start_s and seconds_per_step of every timed sample
    math: str = ""  # float32 math in force (plan.math), e.g. "ieee"; "" = no plan

    @property
    def samples_per_s(self) -> float | None:
        return self.summary.samples_per_s if self.summary else None

    @property
    def achieved_gflops(self) -> float | None:
        if self.flops_per_sample and self.summary:
            return self.flops_per_sample * self.summary.samples_per_s / 1e9
        return None

    @property
    def samples_per_watt(self) -> float | None:
        return self.energy.per_watt(self.samples_per_s) if self.energy else None

    def to_dict(self) -> dict:
        s = self.summary
        achieved = self.achieved_gflops
        latency_note = (
            "per batch"
            if not s or s.steps_per_sample == 1
            else f"per batch, mean over groups of {s.steps_per_sample} steps"
        )
        return {
            "type": "benchmark",
            "backend": self.backend,
            "model": self.model,
            "mode": self.mode,
            "batch": self.batch,
            "device": self.device,
            "policy": self.policy,
            "compute_dtype": self.compute_dtype,
            "math": self.math or None,
            "status": self.status,
            "started_at": self.started_at,
            "versions": dict(self.versions),
            "training": dict(self.training) or None,
            "metrics": {
                "throughput": metric(
                    s.samples_per_s if s else None,
                    "samples/s",
                    stat="median",
                    ci=list(s.samples_per_s_ci) if s else None,
                    ci_coverage=s.ci_coverage if s else None,
                    ci_method="order statistics (distribution-free) of the per-sample throughputs",
                    sem_of_mean=s.samples_per_s_err if s else None,
                    jitter=s.samples_per_s_jitter if s else None,
                ),
                "throughput_overall": metric(
                    s.samples_per_s_overall if s else None, "samples/s", note="all timed samples / all timed seconds"
                ),
                "latency_p50": metric(s.latency_p50_ms if s else None, "ms", note=latency_note),
                "latency_p90": metric(s.latency_p90_ms if s else None, "ms", note=latency_note),
                "latency_p99": metric(s.latency_p99_ms if s else None, "ms", note=latency_note),
                "timed_samples": metric(
                    s.n if s else None, "samples of timing", note="each the mean of steps_per_sample back-to-back steps"
                ),
                "steps_per_sample": metric(s.steps_per_sample if s else None, "steps"),
                "predict_throughput": metric(
                    self.predict_samples_per_s, "samples/s", note="plain model.predict, for comparison"
                ),
                "first_call": metric(self.first_call_s, "s", note="tracing and compilation"),
                "flops_per_sample": metric(self.flops_per_sample, "FLOP", note=self.flops_note),
                "achieved": metric(achieved, "GFLOP/s"),
                "peak": metric(self.peak_gflops, "GFLOP/s", note=self.peak_source),
                "fraction_of_peak": metric(achieved / self.peak_gflops if achieved and self.peak_gflops else None, "1"),
                "energy": metric(self.energy.joules if self.energy else None, "J"),
                "power": metric(self.energy.mean_watts if self.energy else None, "W"),
                "samples_per_watt": metric(self.samples_per_watt, "samples/s/W"),
                "host_rss_peak": metric(self.host_rss_peak_bytes, "bytes", note="peak of the whole process"),
                "gpu_memory_peak": metric(self.gpu_memory_peak_bytes, "bytes"),
            },
            "phases_s": {
                "first_call": self.first_call_s,
                "warmup": self.warmup_s,
                "timed": s.total_s if s else None,
                "predict_baseline": self.predict_s,
                **self.more_phases_s,
                "peak_probe": self.probe_s,
            },
            "energy": self.energy.to_dict() if self.energy else None,
            "rounds": self.rounds,
            "accuracy": dict(self.accuracy) if self.accuracy else None,
            "samples": dict(self.samples) or None,
        }


# --- FLOPs -------------------------------------------------------------------------------


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def count_flops(model) -> tuple[float | None, str]:
    """Forward FLOPs per sample of Conv2D and Dense layers (2 per multiply-add), from symbolic shapes."""
    import keras

    total, counted, skipped = 0, 0, []
    for layer in model._flatten_layers(include_self=False):
        try:
            if isinstance(layer, keras.layers.Dense):
                in_shape, out_shape = layer.input.shape, layer.output.shape
                total += 2 * _prod(in_shape[1:]) * int(out_shape[-1])
                counted += 1
            elif isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
                kh, kw = layer.kernel_size
                out_shape = layer.output.shape
                cin = int(layer.input.shape[-1 if layer.data_format == "channels_last" else 1])
                spatial = out_shape[1:3] if layer.data_format == "channels_last" else out_shape[2:4]
                total += 2 * kh * kw * (cin // layer.groups) * layer.filters * _prod(spatial)
                counted += 1
            elif layer.weights and not isinstance(
                layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization)
            ):
                skipped.append(layer.name)
        except (AttributeError, ValueError, TypeError):  # subclassed models have no symbolic shapes
            return None, "not counted: the model has no symbolic layer shapes (subclassed model)"
    if not counted:
        return None, "not counted: no Conv2D or Dense layer"
    note = "Conv2D and Dense layers, 2 FLOP per multiply-add, forward pass"
    if skipped:
        note += "; not counted: " + ", ".join(skipped)
    return float(total), note


# --- the measured loops -----------------------------------------------------------------


def _host_rss_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _input_shape(model) -> tuple[int, ...]:
    shape = model.inputs[0].shape
    return tuple(int(d) for d in shape[1:])


def _labels(model, batch: int):
    import numpy as np

    classes = int(model.outputs[0].shape[-1])
    rng = np.random.default_rng(0)
    if classes > 1:
        return rng.integers(0, classes, size=(batch,)), "sparse_categorical_crossentropy"
    return rng.normal(size=(batch, 1)).astype("float32"), "mse"


def _resolve_model(model, name: str | None):
    from .models import BUNDLED

    if isinstance(model, str):
        if model not in BUNDLED:
            from .errors import UsageError

            raise UsageError(f"unknown bundled model '{model}'", hint="choose one of " + ", ".join(BUNDLED))
        return BUNDLED[model](), name or model
    if callable(model) and not hasattr(model, "layers"):
        built = model()
        return built, name or getattr(built, "name", "model")
    return model, name or model.name


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
    meter_factory: Callable[[Sequence[int]], Meter] | None = None,
    min_sample_s: float = MIN_SAMPLE_S,
    rounds: int = 1,
    turn: Callable[[str], None] | None = None,
    origin: float | None = None,
    reference: accuracy.Reference | str | Path | None = None,
) -> list[BenchmarkRecord]:
    """Benchmark ``model`` (a Keras model, a factory, or a bundled name) at each batch size.

    Returns one immutable BenchmarkRecord per batch size. Build happens under the
    dtype policy in effect, so apply devswitch (import / ``configure``) first.
    ``meter_factory(gpus)`` replaces the energy meter (its start/stop bracket the
    timed iterations exactly); ``on_record`` sees each record as soon as it exists.

    ``rounds`` > 1 splits the ``iterations`` timed samples of every batch size over that many rounds
    (each after one untimed step). ``turn(phase)`` is called before each phase ("warm", "round 1", ...,
    "finish") and returns when this process may go on: ``devswitch compare`` uses it to let its workers
    take turns. Each sample's start is recorded in seconds since ``origin`` (``time.time()``; default
    the start of this call). Interrupted between rounds, the rounds already measured become records.

    ``reference`` (``devswitch.accuracy.reference(model)`` of the same model, computed in strict float32):
    the model first gets the reference's weights, and each record says how far this configuration's
    outputs at that batch size land from the reference's (training: the loss after a few SGD steps).
    """
    import keras

    from . import backends, session, timing

    if mode not in ("inference", "training"):
        from .errors import UsageError

        raise UsageError(f"unknown mode '{mode}'", hint="use mode='inference' or mode='training'")
    model, label = _resolve_model(model, name)
    if not getattr(model, "inputs", None):
        from .errors import UsageError

        raise UsageError(
            f"model '{label}' has no known input shape, so synthetic input cannot be made",
            hint="build it from keras.Input(...) (functional or Sequential), or wrap a subclassed "
            "model: keras.Sequential([keras.Input(shape), model])",
        )
    policy = timing.policy_name(model)
    compute = (
        keras.config.dtype_policy().compute_dtype
        if policy == "unknown"
        else getattr(model.dtype_policy, "compute_dtype", "float32")
    )
    device = timing.model_device(model)
    backend_name = keras.backend.backend()
    plan = session.plan()
    gpus = (
        plan.gpus
        if plan and plan.backend == backend_name
        else tuple(g.index for g in backends.get(backend_name).detect_gpus())
    )
    if jit_compile is None:
        from .apply import resolve_xla

        jit_compile = resolve_xla(model)
    flops, flops_note = count_flops(model)
    if mode == "training" and flops:
        flops, flops_note = 3 * flops, "estimate: 3x the forward FLOPs (forward + two backward matmuls); " + flops_note
    training = {}
    if mode == "training":
        if not model.compiled:
            _, loss = _labels(model, 1)
            model.compile(optimizer="sgd", loss=loss, jit_compile=jit_compile)
        loss = getattr(model, "loss", None)
        training = {
            "loss": getattr(loss, "name", None) or getattr(loss, "__name__", None) or str(loss),
            "optimizer": type(model.optimizer).__name__,
            "step": "model.train_on_batch",
        }
    # the backend's own compiled call path and synchronisation (backends/<name>.py Runner)
    runner = backends.get(backend_name).Runner(model, jit_compile, gpus)

    from .environment import versions as library_versions

    env_versions = library_versions(backend_name)
    origin = time.time() if origin is None else origin
    make_meter = (meter_factory or meter_for) if energy else None
    measures: dict[int, Measure] = {}
    failed: dict[int, str] = {}
    gpu_peaks: dict[int, int | None] = {}
    inputs: dict[int, Any] = {}
    records: list[BenchmarkRecord] = []

    deviations: dict[int | str, dict] = {}
    phases: dict[int, dict[str, float]] = {}  # per batch size: the work done beside the timed phases

    def record(batch: int, predict: tuple[float | None, float | None] = (None, None)) -> BenchmarkRecord:
        if batch in failed:
            return BenchmarkRecord(
                label,
                mode,
                batch,
                device,
                policy,
                compute,
                f"failed: {failed[batch]}",
                versions=env_versions,
                backend=backend_name,
                math=plan.math if plan and plan.backend == backend_name else "",
            )
        m = measures[batch]
        reading = combined(m.readings) if make_meter else unavailable("energy measurement turned off")
        return BenchmarkRecord(
            label,
            mode,
            batch,
            device,
            policy,
            compute,
            "ok",
            m.first_s,
            m.warmup,
            m.warm_s,
            Summary.of(m.seconds, batch, m.k),
            predict[0],
            predict[1],
            flops,
            flops_note,
            peak,
            peak_source,
            probe_s,
            reading,
            _host_rss_peak(),
            gpu_peaks.get(batch),
            env_versions,
            backend_name,
            training,
            rounds=len(set(m.rounds)),
            samples=m.samples(),
            accuracy=deviations.get(batch),
            more_phases_s={k: v for k, v in phases.get(batch, {}).items() if v},
            math=plan.math if plan and plan.backend == backend_name else "",
        )

    def guarded(batch: int, work: Callable[[], object]) -> None:
        if batch in failed:
            return
        try:
            work()
        except KeyboardInterrupt:
            raise
        except Exception as error:  # out of memory, a model that cannot run this batch size, ...
            failed[batch] = describe(error)

    def warm(batch: int) -> None:
        x = runner.input((batch, *_input_shape(model)))
        if mode == "inference":

            def step():
                runner.sync(runner.forward(x))
        else:
            y, _ = _labels(model, batch)

            def step():
                return model.train_on_batch(x, y)  # returns host numbers: waits for the step

        measure = Measure(batch, step, clock, origin, min_sample_s)
        inputs[batch] = x
        runner.reset_peak_memory()
        measure.warm(warmup)
        gpu_peaks[batch] = runner.peak_memory()  # a batch size reaches its peak in its first steps
        measures[batch] = measure

    def take(batch: int, samples: int, seconds: float, number: int, rewarm: bool) -> None:
        measures[batch].take(samples, seconds, number, make_meter(gpus) if make_meter else None, rewarm)

    def measure_accuracy(batch: int) -> None:
        if batch in failed or (reference is None and "weights" not in deviations):
            return
        t0 = clock()
        try:
            _measure_accuracy(batch)
        finally:
            phases.setdefault(batch, {})["accuracy"] = clock() - t0

    def _measure_accuracy(batch: int) -> None:
        if "weights" in deviations:  # the weights did not fit: nothing to compare
            deviations[batch] = deviations["weights"]
            return
        ref = reference
        if not isinstance(ref, accuracy.Reference):  # use_reference_weights() has loaded it, or said why not
            return
        try:
            if mode == "training":  # once, on a clone: the same SGD steps as the reference's
                if "training" not in deviations:
                    value = accuracy.train_loss(
                        model, ref.weights, ref.x, ref.labels, getattr(model, "loss", None), clone=True
                    )
                    deviations["training"] = accuracy.loss_deviation(ref, value)
                deviations[batch] = deviations["training"]
            else:  # the timed call path, at this batch size
                outputs = accuracy.outputs_at(runner.forward, ref.x, batch)
                deviations[batch] = accuracy.deviation(ref, outputs)
        except KeyboardInterrupt:
            raise
        except Exception as error:
            deviations[batch] = accuracy.unavailable(describe(error))

    def use_reference_weights() -> None:
        nonlocal reference
        if isinstance(reference, (str, Path)):  # compare's reference run wrote it while this one waited
            try:
                reference = accuracy.Reference.load(reference)
            except (OSError, ValueError, KeyError) as error:
                reference = None
                deviations["weights"] = accuracy.unavailable(f"no strict float32 reference ({describe(error)})")
        if reference is None:
            return
        try:
            accuracy.load_weights(model, reference)
        except Exception as error:  # the timing goes on with the model's own weights; the records say why
            deviations["weights"] = accuracy.unavailable(describe(error))

    def finish(batch: int) -> None:
        if batch not in deviations:
            measure_accuracy(batch)
        predict: tuple[float | None, float | None] = (None, None)
        if batch not in failed and predict_baseline and mode == "inference":

            def baseline() -> None:
                nonlocal predict
                x_host = runner.to_host(inputs[batch])
                t0 = clock()
                model.predict(x_host, batch_size=batch, verbose=0)  # its own tracing, apart from its figure
                phases.setdefault(batch, {})["predict_first_call"] = clock() - t0
                calls = 3
                t0 = clock()
                for _ in range(calls):
                    model.predict(x_host, batch_size=batch, verbose=0)
                predict = (calls * batch / (clock() - t0), clock() - t0)

            guarded(batch, baseline)
        records.append(record(batch, predict))
        if on_record:
            on_record(records[-1])

    peak: float | None = None
    probe_s: float | None = None
    peak_source = "not measured"

    def probe() -> None:
        nonlocal peak, probe_s, peak_source
        if peak_probe and flops:
            peak, probe_s = runner.matmul_peak(compute, PROBE_SIZE, clock=clock)
            peak_source = f"measured: {PROBE_SIZE}x{PROBE_SIZE} {compute} matmul on {device}, best of 5"

    def take_round(batch: int, count: int, number: int) -> None:
        take(batch, count, min_time / rounds, number, measures[batch].rewarm_needed())

    with timing.suppressed():
        if rounds == 1 and turn is None:  # one go per batch size: each record exists as soon as it is measured
            use_reference_weights()
            probe()
            for batch in batch_sizes:
                guarded(batch, partial(warm, batch))
                guarded(batch, partial(take, batch, max(1, iterations), min_time, 0, False))
                finish(batch)
            return records
        turn = turn or (lambda phase: None)
        counts = shares(max(rounds, iterations), rounds)
        try:
            turn("warm")
            use_reference_weights()
            probe()
            for batch in batch_sizes:
                guarded(batch, partial(warm, batch))
            for number, count in enumerate(counts):
                turn(f"round {number + 1}")
                for batch in batch_sizes:
                    guarded(batch, partial(take_round, batch, count, number))
            turn("finish")
            for batch in batch_sizes:  # before any predict baseline: Keras' JAX predict replaces the weights' buffers
                measure_accuracy(batch)
            for batch in batch_sizes:
                finish(batch)
        except KeyboardInterrupt:  # keep every round already measured (without the predict baseline)
            done = {r.batch for r in records}
            for batch in batch_sizes:
                if batch not in done and (batch in failed or (batch in measures and measures[batch].seconds)):
                    records.append(record(batch))
                    if on_record:
                        on_record(records[-1])
            raise
    return records
