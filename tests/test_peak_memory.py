"""The peak memory of each batch size (issue 21 item 1): on a CPU the process's resident memory above its level
before the batch, sampled for real; on a GPU the allocator's peak, through injected fakes of each framework."""

from __future__ import annotations

import csv
import dataclasses
import io
from types import SimpleNamespace

import pytest

import devswitch
from _devswitch import backends, batchmemory, benchmarking
from _devswitch.backends import jax as jax_backend
from _devswitch.backends import tensorflow as tf_backend
from _devswitch.backends import _tfpool as tfpool
from _devswitch.backends import torch as torch_backend
from _devswitch.memory import format_size


@pytest.mark.usefixtures("on_cpu")
def test_on_the_cpu_each_batch_size_has_its_own_peak_far_below_the_process_life():
    """mlp at batch 4096 needs tens of MiB more than at batch 1 (a 12.8 MB input, 8 MB activations); both
    figures are the batch's own, far below ru_maxrss (TensorFlow and Keras alone hold hundreds of MiB)."""
    small, large = devswitch.benchmark("mlp", batch_sizes=(1, 4096), warmup=2, iterations=3, min_sample_s=0,
                                       predict_baseline=False, peak_probe=False)
    assert small.status == large.status == "ok"
    if small.peak_memory_bytes is None:
        pytest.skip("no /proc/self/statm on this system: the resident peak is not measured there")
    assert large.peak_memory_bytes > small.peak_memory_bytes + 10 * 2**20, (small.peak_memory_bytes,
                                                                             large.peak_memory_bytes)
    for record in (small, large):
        assert record.peak_memory_bytes < record.host_rss_peak_bytes / 4, record
        assert record.peak_memory_source.startswith("resident memory of the process above its level before")
        assert "measured after" not in record.peak_memory_source  # smallest first: nothing hides it
        assert record.to_dict()["metrics"]["peak_memory"]["value"] == record.peak_memory_bytes
    assert large.gpu_memory_peak_bytes is None


@pytest.mark.usefixtures("on_cpu")
def test_on_the_cpu_a_batch_size_after_a_larger_one_says_it_can_read_low():
    large, small = devswitch.benchmark("mlp", batch_sizes=(64, 2), warmup=1, iterations=2, min_sample_s=0,
                                       predict_baseline=False, peak_probe=False, rounds=2)
    assert "measured after" not in large.peak_memory_source
    assert "measured after batch size 64" in small.peak_memory_source and "smallest first" in small.peak_memory_source


class PooledRunner:
    """The real CPU runner, with a framework pool that reports a peak of ``pool`` bytes above its start."""

    def __init__(self, runner, pool: int):
        self.runner, self.pool, self.calls = runner, pool, []

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def host_pool_start(self) -> None:
        self.calls.append("start")

    def host_pool_peak(self) -> int:
        self.calls.append("peak")
        return self.pool


@pytest.mark.parametrize("pool", [0, 2**40])
@pytest.mark.usefixtures("on_cpu")
def test_on_the_cpu_a_frameworks_pool_peak_counts_where_it_is_above_the_resident_growth(monkeypatch, pool):
    """A pool (TensorFlow's oneDNN allocator) reuses memory it kept without the resident memory growing: where
    its own peak above its start is the larger, the record takes it and says so."""
    build = benchmarking._build
    runners: list[PooledRunner] = []

    def pooled(model, opts):
        subject = build(model, opts)
        runners.append(PooledRunner(subject.runner, pool))
        return dataclasses.replace(subject, runner=runners[0])

    monkeypatch.setattr(benchmarking, "_build", pooled)
    (record,) = devswitch.benchmark("mlp", batch_sizes=(8,), warmup=1, iterations=2, min_sample_s=0,
                                    predict_baseline=False, peak_probe=False, energy=False)
    if record.peak_memory_bytes is None:
        pytest.skip("no /proc/self/statm on this system: the resident peak is not measured there")
    assert runners[0].calls == ["start", "peak"]
    assert (record.peak_memory_bytes == 2**40) == bool(pool)
    assert (f"memory pool's peak above its use before, {format_size(2**40)}" in record.peak_memory_source) == bool(pool)


class ScriptedSampler:
    """RssSampler's stand-in: each block's resident growth comes from ``growths`` in turn."""

    growths: list[int] = []

    def __init__(self, interval_s: float):
        self.peak = SimpleNamespace(above_before_bytes=ScriptedSampler.growths.pop(0))

    def __enter__(self):
        return self.peak

    def __exit__(self, *exc) -> None:
        pass


def test_on_the_cpu_what_a_pool_took_for_an_earlier_batch_size_and_still_holds_is_added_as_an_upper_bound(
    monkeypatch,
):
    """TensorFlow's pool keeps what it took for batch 32 and reuses it for batch 256 without resident growth, so
    the resident growth of 256 reads low against a fresh process: what the pool took for an earlier batch size,
    as far as the process still holds it, is added (at most this batch size's own pool peak), and said."""
    mib = 2**20
    levels = iter([100 * mib, 114 * mib, 190 * mib, 190 * mib])  # the level before each block (after a trim)
    pools = iter([0, 9 * mib, 67 * mib, 67 * mib])  # each block's pool peak above its use before
    runner = SimpleNamespace(host_pool_start=lambda: None, host_pool_peak=lambda: next(pools))
    monkeypatch.setattr(batchmemory, "resident_bytes", lambda: next(levels))
    monkeypatch.setattr(batchmemory, "release_free_memory", lambda: True)
    monkeypatch.setattr(batchmemory, "RssSampler", ScriptedSampler)
    # first steps and timed steps per batch size; then 256's first steps again, as the finder's re-timing does
    ScriptedSampler.growths = [15 * mib, 0, 14 * mib, 0, 68 * mib, 0, 68 * mib]
    memory = batchmemory.BatchMemory(on_gpu=False, runner=runner)
    for batch in (1, 32, 256):
        with memory.first_steps(batch):
            pass
        with memory.timed_steps(batch):
            pass
    # batch 32: batch 1's pool took nothing; batch 256: batch 32's pool took 9 MiB, and 14 MiB stayed resident
    assert memory.peaks == {1: 15 * mib, 32: 14 * mib, 256: 77 * mib}
    assert "plus" not in memory.sources[32]
    assert f"plus {format_size(9 * mib)}: the framework's own memory pool took" in memory.sources[256]
    assert "upper bound" in memory.sources[256]
    with memory.first_steps(256):  # measured again: its highest figure, not a sum of the additions
        pass
    assert memory.peaks[256] == 77 * mib


def test_tensorflow_cpu_pool_peak_is_its_peak_above_its_use_before_the_batch():
    infos = iter([{"current": 10 << 20, "peak": 90 << 20}, {"current": 12 << 20, "peak": 40 << 20}])
    resets = []
    experimental = SimpleNamespace(get_memory_info=lambda d: next(infos), reset_memory_stats=resets.append)
    pool = tfpool.CpuPool(SimpleNamespace(config=SimpleNamespace(experimental=experimental)))
    pool.start()
    assert resets == ["CPU:0"] and pool.peak() == 30 << 20


class GpuRunner:
    """The real CPU runner, reporting an allocator's peak as a GPU runner does: what reset and read it saw."""

    def __init__(self, runner, peaks: dict[int, int]):
        self.runner, self.peaks, self.calls, self.batch = runner, peaks, [], 0

    def input(self, shape):
        self.batch = shape[0]
        return self.runner.input(shape)

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def reset_peak_memory(self) -> None:
        self.calls.append("reset")

    def peak_memory(self) -> int | None:
        self.calls.append(f"read {self.batch}")
        return self.peaks.get(self.batch)

    def peak_memory_source(self) -> str:
        return f"fake allocator at batch {self.batch}"

    def matmul_peak(self, *args, **kwargs):
        self.calls.append("probe")
        return self.runner.matmul_peak(*args, **kwargs)


@pytest.mark.usefixtures("on_cpu")
def test_on_a_gpu_the_record_carries_the_allocators_peak_read_per_batch_size(monkeypatch):
    """The allocator is reset before each batch size's input and first call and read after its warm-up; no
    resident memory is sampled for it."""
    build = benchmarking._build
    runners: list[GpuRunner] = []

    def on_gpu(model, opts):
        subject = build(model, opts)
        runners.append(GpuRunner(subject.runner, {2: 300 * 2**20, 8: 900 * 2**20}))
        return dataclasses.replace(subject, gpus=(0,), runner=runners[0], make_meter=None)

    monkeypatch.setattr(benchmarking, "_build", on_gpu)
    monkeypatch.setattr(batchmemory, "RssSampler", None)  # calling it would fail: a GPU is not sampled
    two, eight, three = devswitch.benchmark("mlp", batch_sizes=(2, 8, 3), warmup=1, iterations=2, min_sample_s=0,
                                            predict_baseline=False, peak_probe=False, energy=False)
    assert runners[0].calls == ["reset", "read 2", "reset", "read 8", "reset", "read 3"]
    assert (two.peak_memory_bytes, eight.peak_memory_bytes, three.peak_memory_bytes) == (300 * 2**20, 900 * 2**20,
                                                                                          None)
    assert two.gpu_memory_peak_bytes == two.peak_memory_bytes
    assert [r.peak_memory_source for r in (two, eight)] == ["fake allocator at batch 2", "fake allocator at batch 8"]


@pytest.mark.parametrize("rounds", [1, 2])
@pytest.mark.usefixtures("on_cpu")
def test_the_matmul_probe_runs_after_every_batch_size_has_read_its_peak(monkeypatch, rounds):
    """The probe's buffers (which an allocator keeps, and which set JAX's unresettable peak) come after the
    batch sizes' warm-ups, in one go and in rounds."""
    build = benchmarking._build
    runners: list[GpuRunner] = []

    def on_gpu(model, opts):
        subject = build(model, opts)
        runners.append(GpuRunner(subject.runner, {}))
        return dataclasses.replace(subject, gpus=(0,), runner=runners[0], make_meter=None)

    monkeypatch.setattr(benchmarking, "_build", on_gpu)
    records = devswitch.benchmark("mlp", batch_sizes=(2, 4), warmup=1, iterations=2, min_sample_s=0, rounds=rounds,
                                  predict_baseline=False, energy=False)
    assert runners[0].calls == ["reset", "read 2", "reset", "read 4", "probe"]
    assert all(r.probe_gflops for r in records)


def test_tensorflow_reads_the_peak_since_its_reset_on_the_gpu():
    calls = []
    experimental = SimpleNamespace(reset_memory_stats=lambda d: calls.append(("reset", d)),
                                   get_memory_info=lambda d: calls.append(("read", d)) or {"current": 5, "peak": 77})
    runner = object.__new__(tf_backend.Runner)
    runner.tf, runner.gpu_device = SimpleNamespace(config=SimpleNamespace(experimental=experimental)), "GPU:0"
    runner.reset_peak_memory()
    assert runner.peak_memory() == 77 and calls == [("reset", "GPU:0"), ("read", "GPU:0")]
    assert "reset_memory_stats" in runner.peak_memory_source()
    runner.gpu_device = None  # on the CPU: nothing to read
    assert runner.peak_memory() is None


def test_torch_reads_max_memory_allocated_since_its_reset_on_cuda():
    calls = []
    cuda = SimpleNamespace(reset_peak_memory_stats=lambda d: calls.append(("reset", d)),
                           max_memory_allocated=lambda d: calls.append(("read", d)) or 4096)
    runner = object.__new__(torch_backend.Runner)
    runner.torch, runner.cuda, runner.device = SimpleNamespace(cuda=cuda), True, "cuda:0"
    runner.reset_peak_memory()
    assert runner.peak_memory() == 4096 and calls == [("reset", "cuda:0"), ("read", "cuda:0")]
    assert "max_memory_allocated after reset_peak_memory_stats" in runner.peak_memory_source()


class JaxDevice:
    """A JAX device whose ``peak_bytes_in_use`` only ever rises, like the real one (there is no reset)."""

    def __init__(self):
        self.in_use = self.peak = 100 * 2**20

    def use(self, size: int) -> None:
        self.peak = max(self.peak, self.in_use + size)

    def memory_stats(self) -> dict:
        return {"bytes_in_use": self.in_use, "peak_bytes_in_use": self.peak}

    def __str__(self) -> str:
        return "cuda:0"


@pytest.mark.parametrize(("order", "known"), [
    pytest.param((1, 64, 512), {1: 101, 64: 164, 512: 612}, id="smallest first: every figure is the batch's own"),
    pytest.param((512, 64), {512: 612, 64: None}, id="a smaller batch after a larger one: unknown, and why"),
])
def test_jax_peak_is_the_batch_sizes_own_only_where_it_raised_the_process_peak(order, known):
    """JAX's peak_bytes_in_use has no reset: a figure is true only where this batch size raised it."""
    runner = jax_backend.Runner.__new__(jax_backend.Runner)
    runner.device, runner._base, runner._raised = JaxDevice(), None, True
    seen = {}
    for batch in order:
        runner.reset_peak_memory()
        runner.device.use(batch * 2**20)  # the batch's activations above the 100 MiB in use
        peak = runner.peak_memory()
        seen[batch] = None if peak is None else peak // 2**20
        source = runner.peak_memory_source()
        assert ("unknown here" in source) == (peak is None), source
        if peak is None:
            assert f"had set it at {format_size(612 * 2**20)}" in source and "smallest first" in source
    assert seen == known


def _results(peaks: dict[str, int | None]):
    """Two columns at batch 8 (fp32, the baseline, and bf16), each with its peak memory; real records' JSON."""
    from _devswitch.benchrecord import BenchmarkRecord
    from _devswitch.compare import Cell, ResultSet
    from _devswitch.compare.resultset import Model
    from _devswitch.statistics import Summary

    cells = []
    for precision, peak in peaks.items():
        record = BenchmarkRecord("mlp", "inference", 8, "CPU:0", "float32", "float32", backend="tensorflow",
                                 summary=Summary.of([0.01, 0.011, 0.012], batch=8), peak_memory_bytes=peak,
                                 peak_memory_source="resident memory above its level before" if peak else "")
        cells.append(Cell.of(("tensorflow", "cpu", precision), 8, "ok", precision, record.to_dict()))
    return ResultSet(options={"batch_sizes": [8], "backends": ["tensorflow"], "target": "mlp",
                              "baseline": "tensorflow cpu fp32"},
                     model=Model("mlp", "m", unit="samples"), cells=tuple(cells))


def test_the_table_csv_and_chart_show_each_cells_peak_memory_against_the_baseline_column():
    from _devswitch.render import chart
    from _devswitch.render.cells import Footnotes
    from _devswitch.render.compare import MEMORY_LINE, batch_table, render_csv, render_markdown

    results = _results({"fp32": 200 * 2**20, "bf16": 104 * 2**20})
    table = batch_table(results, 8, Footnotes())
    row = next(r for r in table.rows if r[0].startswith("peak memory"))
    assert row == ("peak memory (vs cpu fp32)", "200 MiB (baseline)", "104 MiB (0.52x)"), row
    assert MEMORY_LINE in render_markdown(results)
    rows = list(csv.DictReader(io.StringIO(render_csv(results))))
    assert [(r["peak_memory_bytes"], r["peak_memory_vs_baseline"]) for r in rows] == [
        (str(200 * 2**20), "1.0"), (str(104 * 2**20), "0.52")]
    bf16 = results.cell(("tensorflow", "cpu", "bf16"), 8)
    assert chart._memory_label(results, bf16) == "\n104 MiB (0.52x)"
    assert "peak memory" in chart._heading(results, 2, any_watts=False)


def test_an_unknown_peak_memory_is_a_dash_and_gives_no_ratio():
    from _devswitch.render.cells import Footnotes
    from _devswitch.render.compare import MEMORY_LINE, batch_table, render_markdown

    results = _results({"fp32": None, "bf16": 104 * 2**20})  # e.g. a file from before the per-batch peak
    row = next(r for r in batch_table(results, 8, Footnotes()).rows if r[0].startswith("peak memory"))
    assert row[1:] == ("-", "104 MiB")
    assert MEMORY_LINE in render_markdown(results)
    assert MEMORY_LINE not in render_markdown(_results({"fp32": None, "bf16": None}))


@pytest.mark.usefixtures("on_cpu")
def test_the_fit_timing_can_show_its_peak_memory_on_request():
    """TimingCallback(memory=True) samples the resident memory during each call on a CPU: the fit's record
    carries its peak above the call's start (its data and activations: megabytes, not the process's life),
    its JSON the metric, and the summary's notes the figure; without it nothing is sampled."""
    import numpy as np

    from _devswitch.memory import resident_bytes
    from _devswitch.models import mlp
    from _devswitch.render.calls import call_row

    if resident_bytes() is None:
        pytest.skip("no /proc/self/statm on this system: the resident peak is not measured there")
    x = np.random.default_rng(0).random((4096, 784), dtype=np.float32)
    y = np.zeros(4096, dtype=np.int64)
    model = mlp()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    sampled, plain = devswitch.TimingCallback(sink=None, memory=True), devswitch.TimingCallback(sink=None)
    model.fit(x, y, batch_size=1024, epochs=1, verbose=0, callbacks=[sampled, plain])
    (record,), (unsampled,) = sampled.records, plain.records
    assert record.peak_memory_bytes is not None and unsampled.peak_memory_bytes is None
    assert 2**20 < record.peak_memory_bytes < 2**30, record.peak_memory_bytes
    assert record.to_dict()["metrics"]["peak_memory"]["value"] == record.peak_memory_bytes
    assert "peak_memory" not in unsampled.to_dict()["metrics"]
    assert f"peak memory {format_size(record.peak_memory_bytes)}" in call_row(1, record)[-1]
    assert "peak memory" not in call_row(1, unsampled)[-1]


@pytest.mark.usefixtures("on_cpu")
def test_a_batch_measured_after_the_finders_trials_keeps_the_larger_of_its_two_peaks_and_says_so():
    """compare --batch-sizes max measures the found batch after the finder's trials, whose memory a pool may
    keep (the record then reads low): the finder's own trial at that batch is the other figure, the larger is
    kept, and the source says both; without trials, or without the batch among them, the record is as it was."""
    from _devswitch.batchfinder import Trial
    from _devswitch.worker import after_trials

    (record,) = devswitch.benchmark("mlp", batch_sizes=(64,), warmup=1, iterations=2, min_sample_s=0,
                                    predict_baseline=False, peak_probe=False, energy=False)
    if record.peak_memory_bytes is None:
        pytest.skip("no /proc/self/statm on this system: the resident peak is not measured there")
    high = record.peak_memory_bytes + 2**30
    trials = (Trial(64, True, high, 1.0), Trial(128, False, high * 2, None, note="peak above the budget"))
    kept = after_trials(record, trials)
    assert kept.peak_memory_bytes == high
    assert kept.peak_memory_source.startswith(record.peak_memory_source)
    assert "after the batch finder's trials (the largest run: batch 128)" in kept.peak_memory_source
    assert f"the finder's own trial at this batch read {format_size(high)}" in kept.peak_memory_source
    low = after_trials(record, (Trial(64, True, 1, 1.0),))
    assert low.peak_memory_bytes == record.peak_memory_bytes and "the larger figure is kept" in low.peak_memory_source
    assert after_trials(record, ()) == record


def test_every_backend_offers_its_cpu_pool_and_those_without_one_read_zero():
    """The fit timing reads Backend.cpu_pool on whichever backend runs: JAX and PyTorch take their CPU memory
    from C's allocator (nothing to read, and nothing imported), TensorFlow reads its own pool's statistics."""
    for name in ("jax", "torch"):
        pool = backends.get(name).cpu_pool()
        pool.start()
        assert pool.peak() == 0
    assert isinstance(backends.get("tensorflow").cpu_pool(), tfpool.CpuPool)
