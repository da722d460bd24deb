"""devswitch.find_batch_size: the GPU search against fakes that raise each backend's own out-of-memory error,
the CPU search for real on a tiny model under a small memory budget."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from errorparts import parts

from _devswitch import backends
from _devswitch.batchfinder import CPU_RESOLUTION, MARGIN, RunnerProbe, Trial, knee, predict_peak, retime, search

MiB = 1 << 20


def tensorflow_oom() -> BaseException:
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[4096,512]")


def torch_oom() -> BaseException:
    import torch

    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def jax_oom() -> BaseException:
    import jax

    return jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB")


OOMS = {"tensorflow": tensorflow_oom, "torch": torch_oom, "jax": jax_oom}


class FakeGpuRunner:
    """A backend Runner on a GPU of fake memory: ``forward`` above ``fits`` samples raises ``oom()``; the
    allocator's peak is 1 MiB per sample."""

    def __init__(self, fits: int, oom):
        self.fits, self.oom, self.peak, self.calls = fits, oom, 0, []

    def input(self, shape):
        return shape

    def forward(self, x):
        self.calls.append(x[0])
        if x[0] > self.fits:
            raise self.oom()
        self.peak = max(self.peak, x[0] * MiB)
        return x

    def sync(self, y) -> None:
        pass

    def reset_peak_memory(self) -> None:
        self.peak = 0

    def peak_memory(self) -> int | None:
        return self.peak


FAKE_MODEL = SimpleNamespace(inputs=[SimpleNamespace(shape=(None, 8))])


@pytest.mark.parametrize("backend", sorted(OOMS))
def test_the_gpu_search_finds_the_largest_batch_below_each_backends_out_of_memory(backend):
    """Power-of-two growth until the backend's own OOM, then a binary search to the exact largest batch."""
    runner = FakeGpuRunner(fits=300, oom=OOMS[backend])
    probe = RunnerProbe(runner, FAKE_MODEL, "inference", gpu=True, min_time=0.0)
    released = []
    batch, trials, reason = search(probe, out_of_memory=backends.get(backend).out_of_memory, release=released.append)
    assert batch == 300
    assert [t.batch for t in trials[:10]] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert [t.fits for t in trials[:10]] == [True] * 9 + [False]
    assert {t.batch for t in trials if not t.fits} >= {512, 301}
    assert "out of memory" in trials[9].note and "batch 301 does not fit" in reason
    assert trials[8].peak_bytes == 256 * MiB and trials[8].samples_per_s
    assert released == [not t.fits for t in trials]  # cleaned after every trial: fully after a failed one
    assert released[:10] == [False] * 9 + [True]


@pytest.mark.parametrize(
    "backend, error",
    [
        ("tensorflow", lambda: ValueError("Input 0 of layer dense is incompatible")),
        ("torch", lambda: RuntimeError("mat1 and mat2 shapes cannot be multiplied")),
        ("jax", lambda: __import__("jax").errors.JaxRuntimeError("INVALID_ARGUMENT: bad shape")),
        ("jax", torch_oom),  # another framework's OOM is not this backend's
    ],
)
def test_an_error_that_is_not_out_of_memory_propagates_as_it_is(backend, error):
    """The user's error is not a batch that does not fit: it propagates, the search does not go on."""
    runner = FakeGpuRunner(fits=64, oom=error)
    probe = RunnerProbe(runner, FAKE_MODEL, "inference", gpu=True, min_time=0.0)
    expected = type(error())
    with pytest.raises(expected):
        search(probe, out_of_memory=backends.get(backend).out_of_memory)
    assert max(runner.calls) == 128  # stopped at the first error


def test_max_batch_bounds_the_search():
    runner = FakeGpuRunner(fits=10_000, oom=torch_oom)
    probe = RunnerProbe(runner, FAKE_MODEL, "inference", gpu=True, min_time=0.0)
    batch, trials, reason = search(probe, out_of_memory=backends.get("torch").out_of_memory, max_batch=100)
    assert batch == 100 and [t.batch for t in trials][-2:] == [64, 100]
    assert reason == "max_batch 100 reached (it fits)"


def test_a_gpu_budget_caps_the_allocator_peak_too():
    """With a budget on a GPU, a batch whose allocator peak (plus the margin) is above it does not fit."""
    runner = FakeGpuRunner(fits=10_000, oom=torch_oom)
    probe = RunnerProbe(runner, FAKE_MODEL, "inference", gpu=True, min_time=0.0)
    batch, trials, _ = search(probe, out_of_memory=backends.get("torch").out_of_memory, budget=111 * MiB)
    assert batch == 100  # 100 MiB + 10% = 110 MiB, 101 MiB + 10% = 111.1 MiB
    assert all(t.peak_bytes * (1 + MARGIN) <= 111 * MiB for t in trials if t.fits)


def test_nothing_fits():
    runner = FakeGpuRunner(fits=0, oom=tensorflow_oom)
    probe = RunnerProbe(runner, FAKE_MODEL, "inference", gpu=True, min_time=0.0)
    batch, trials, reason = search(probe, out_of_memory=backends.get("tensorflow").out_of_memory)
    assert batch is None and len(trials) == 1 and reason.startswith("batch 1 does not fit (out of memory")


def test_a_trial_predicted_above_the_budget_is_not_run():
    """Peaks grow linearly with the batch: the next trial's is predicted, and one above the budget never runs
    (on a CPU, running it could get the process killed)."""
    ran = []

    def probe(batch):
        ran.append(batch)
        return 10 * MiB + batch * MiB // 4, 1000.0

    batch, trials, reason = search(probe, out_of_memory=lambda e: False, budget=100 * MiB, resolution=CPU_RESOLUTION)
    # 256 would peak at 74 MiB (fits); 512 is predicted at 138 MiB: not run
    assert 512 not in ran and trials[9] == Trial(512, False, ran=False, note=trials[9].note)
    assert "predicted peak 138 MiB" in trials[9].note
    assert all(t.peak_bytes * (1 + MARGIN) <= 100 * MiB for t in trials if t.fits)
    assert 256 < batch < 512 and (10 * MiB + batch * MiB // 4) * (1 + MARGIN) <= 100 * MiB
    assert "searched to within" in reason or "does not fit" in reason


def test_predicted_peaks():
    trials = [Trial(4, True, 14 * MiB), Trial(8, True, 18 * MiB)]
    assert predict_peak(trials, 16) == 26 * MiB  # extended from the two largest
    assert predict_peak(trials + [Trial(32, False, 42 * MiB)], 16) == 26 * MiB  # between neighbours
    assert predict_peak(trials[:1], 8) == 28 * MiB  # proportional: an over-estimate
    assert predict_peak([], 8) is None


def test_the_knee_is_the_smallest_batch_within_five_percent_of_the_best():
    rates = {1: 100.0, 2: 190.0, 4: 960.0, 8: 1000.0, 16: 980.0, 32: 400.0}
    trials = [Trial(b, True, 0, r) for b, r in rates.items()] + [Trial(64, False, note="x")]
    assert knee(trials) == 4
    assert knee([Trial(1, False, note="x")]) is None


def test_the_knee_comes_from_the_fastest_trials_timed_again():
    """A trial's short timing can be off by 2x: the knee's candidates are timed again in interleaved rounds,
    and a batch that only looked fast in its trial is not the knee; one clearly slower in the first of those
    rounds is not timed again."""
    true = {1: 100.0, 2: 200.0, 4: 390.0, 8: 400.0, 16: 400.0}
    seen = {1: 100.0, 2: 390.0, 4: 150.0, 8: 400.0, 16: 380.0}  # 2 looked fast, 4 looked slow
    trials = [Trial(b, True, 0, r) for b, r in seen.items()] + [Trial(32, False, note="x")]
    timed = []

    def probe(batch):
        timed.append(batch)
        return 0, true[batch]

    assert knee(trials) == 2  # from the trials alone
    rates = retime(probe, trials, rounds=3)
    assert rates == {2: 200.0, 8: 400.0, 16: 400.0}  # 1 and 4 were below half the best seen: not candidates
    # interleaved, the order rotating; after round 1, 2 (200/s, under 85% of 400/s) is not timed again
    assert timed == [2, 8, 16, 16, 8, 8, 16]
    assert knee([Trial(b, True, samples_per_s=r) for b, r in rates.items()]) == 8


@pytest.mark.usefixtures("on_cpu")
def test_on_the_cpu_the_search_runs_for_real_under_a_small_budget():
    """mlp on this CPU under 64 MiB above the search's start: every batch that fits measured under the budget,
    the first that does not is larger, and the search stops without running what is predicted above it."""
    import devswitch

    result = devswitch.find_batch_size("mlp", memory_budget="64MiB", min_time=0.0)
    assert result.budget_bytes == 64 * MiB and "64 MiB" in result.limit
    assert result.batch_size is not None and result.batch_size >= 256
    fitted = [t for t in result.trials if t.fits]
    assert fitted and all(t.peak_bytes is not None and t.peak_bytes * (1 + MARGIN) <= 64 * MiB for t in fitted)
    assert max(t.batch for t in fitted) == result.batch_size
    assert min(t.batch for t in result.trials if not t.fits) > result.batch_size
    assert [t.batch for t in result.trials[:4]] == [1, 2, 4, 8]
    assert result.knee is not None and result.knee <= result.batch_size
    assert result.retimed and result.knee in dict(result.retimed)
    assert "does not fit" in result.reason and "resident memory" in result.peak_source
    assert result.device and result.backend == "tensorflow"


@pytest.mark.usefixtures("on_cpu")
def test_max_batch_and_training_mode_on_the_cpu():
    import devswitch

    result = devswitch.find_batch_size("mlp", mode="training", memory_budget=1 << 30, max_batch=24, min_time=0.0)
    assert result.batch_size == 24 and result.mode == "training"
    assert [t.batch for t in result.trials] == [1, 2, 4, 8, 16, 24]
    assert result.reason == "max_batch 24 reached (it fits)"


@pytest.mark.parametrize(
    "kwargs, named, fix",
    [
        ({"memory_budget": "8 parsecs"}, ["memory_budget", "'8 parsecs'"], "512MiB"),
        ({"memory_budget": 0}, ["memory_budget", "0 bytes"], "512MiB"),
        ({"max_batch": 0}, ["max_batch", "0"], "at least 1"),
        ({"mode": "serving"}, ["mode", "'serving'"], "mode='inference'"),
    ],
)
@pytest.mark.usefixtures("on_cpu")
def test_bad_arguments_are_clear_errors(kwargs, named, fix):
    import devswitch

    with pytest.raises(devswitch.UsageError) as caught:
        devswitch.find_batch_size("mlp", **kwargs)
    parts(caught, devswitch.UsageError, named=named, fix=fix)
