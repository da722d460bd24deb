"""devswitch.benchmark with real TensorFlow on the CPU, tiny iteration counts."""

from __future__ import annotations

import keras
import pytest
from errorparts import parts

import devswitch
from _devswitch.flops import count_flops
from _devswitch.models import alexnet, mlp, small_cnn


class Ticks:
    """A clock that moves ``step`` seconds each time it is read: what benchmark() measures is then exact."""

    def __init__(self, step: float):
        self.step, self.now = step, 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


pytestmark = pytest.mark.usefixtures("on_cpu")


def test_flops_are_counted_analytically():
    flops, note = count_flops(mlp())
    assert flops == 2 * (784 * 512 + 512 * 512 + 512 * 10)
    assert "Conv2D and Dense" in note
    alex_model = alexnet()  # 50.8 M parameters: built once
    alex, _ = count_flops(alex_model)
    assert alex == pytest.approx(2.02e9, rel=0.01)  # ../shared/BASELINES.md: about 2.0 GFLOP per image
    assert alex_model.count_params() == pytest.approx(50.8e6, rel=0.001)
    cnn, _ = count_flops(small_cnn())
    conv = 2 * 9 * (3 * 32 + 32 * 32) * 32 * 32 + 2 * 9 * 32 * 64 * 16 * 16
    dense = 2 * (8 * 8 * 64 * 128 + 128 * 10)
    assert cnn == conv + dense


def test_inference_benchmark_reports_everything_with_warmup_apart():
    (b1, b8) = devswitch.benchmark("mlp", batch_sizes=(1, 8), warmup=2, iterations=8, min_sample_s=0)
    for record in (b1, b8):
        assert record.status == "ok" and record.summary.n == 8 and record.summary.steps_per_sample == 1
        assert record.device == "CPU:0" and record.policy == "float32" and record.compute_dtype == "float32"
        # the first call (tracing) is timed apart; that it is far slower than a steady iteration is a speed
        # claim: benchmarks/bench_first_call.py prints the ratio
        assert record.first_call_s > 0 and record.to_dict()["phases_s"]["first_call"] == record.first_call_s
        assert record.summary.latency_p50_ms <= record.summary.latency_p90_ms <= record.summary.latency_p99_ms
        assert record.predict_samples_per_s > 0 and record.probe_gflops > 0  # the matmul probe: a rate
        assert record.peak_source.startswith(("peak: ", "no peak: "))  # the theoretical peak, or why none
        assert record.achieved_gflops == pytest.approx(record.flops_per_sample * record.samples_per_s / 1e9)
        assert record.host_rss_peak_bytes > 100 * 2**20
        assert not record.energy.available or record.energy.joules >= 0
    data = b8.to_dict()
    assert data["versions"]["tensorflow"] and data["versions"]["keras"].startswith("3.")
    assert data["metrics"]["throughput"]["unit"] == "samples/s"
    low, high = data["metrics"]["throughput"]["ci"]
    assert low <= data["metrics"]["throughput"]["value"] <= high and data["metrics"]["throughput"]["ci_coverage"] > 0
    assert set(data["phases_s"]) == {"first_call", "warmup", "timed", "predict_baseline", "predict_first_call",
                                     "peak_probe"}
    if not b8.energy.available:
        assert data["metrics"]["power"]["value"] is None and data["energy"]["reason"]


def test_training_benchmark_and_min_time():
    """min_time keeps sampling past ``iterations`` until that much (clock) time has passed."""
    (record,) = devswitch.benchmark("mlp", batch_sizes=(16,), mode="training", warmup=1, iterations=3,
                                    min_time=1.0, peak_probe=False, predict_baseline=False, clock=Ticks(2**-4))
    assert record.mode == "training" and record.status == "ok"
    # each sample reads the clock at least twice (1/8 s): 3 samples cannot cover 1 s, so more were taken
    assert record.summary.steps_per_sample == 1 and 3 < record.summary.n <= 8, record.summary.n
    assert record.flops_note.startswith("estimate: 3x the forward FLOPs")
    assert record.predict_samples_per_s is None and record.probe_gflops is None  # peak_probe=False


def test_short_steps_are_timed_in_groups_calibrated_on_the_warmup():
    """Steps under 10 ms are timed in groups of k = ceil(min_sample_s / warm-up step) steps; longer ones alone.

    The clock is a fake one, so that the warm-up's step time (and so k) is known here, on any machine; that the
    groups last min_sample_s by a real stopwatch is benchmarks/bench_first_call.py and bench_stopwatch.py.
    """
    # 4 warm-up steps in one tick of 2**-10 s: 2**-12 s a step; groups of 2**-6 s are 64 steps
    (record,) = devswitch.benchmark("mlp", batch_sizes=(1,), warmup=4, iterations=6, min_sample_s=2**-6,
                                    predict_baseline=False, peak_probe=False, clock=Ticks(2**-10))
    assert record.summary.steps_per_sample == 64 and record.summary.n == 6
    assert "mean over groups of 64 steps" in record.to_dict()["metrics"]["latency_p50"]["note"]
    # a warm-up step of 1/16 s is long enough to be timed alone
    (record,) = devswitch.benchmark("mlp", batch_sizes=(1,), warmup=1, iterations=2, min_sample_s=2**-6,
                                    predict_baseline=False, peak_probe=False, clock=Ticks(2**-4))
    assert record.summary.steps_per_sample == 1 and record.summary.n == 2


def test_benchmark_follows_the_policy_in_effect():
    devswitch.configure(precision="bf16")
    (record,) = devswitch.benchmark(mlp, batch_sizes=(4,), warmup=1, iterations=2, predict_baseline=False,
                                    peak_probe=False)
    assert record.policy == "mixed_bfloat16" and record.compute_dtype == "bfloat16"


def test_a_batch_size_that_fails_is_recorded_and_the_rest_continue():
    class Picky(keras.Model):
        def __init__(self):
            inputs = keras.Input((4,))
            super().__init__(inputs, keras.layers.Dense(2)(inputs), name="picky")

        def call(self, inputs, training=False):
            if inputs.shape[0] == 3:
                raise ValueError("batch 3 is not supported")
            return super().call(inputs, training=training)

    seen = []
    records = devswitch.benchmark(Picky(), batch_sizes=(3, 2), warmup=1, iterations=2, peak_probe=False,
                                  predict_baseline=False, on_record=seen.append)
    assert records[0].status.startswith("failed: ValueError: batch 3 is not supported")
    assert records[1].status == "ok" and seen == records


def test_unknown_bundled_model_is_a_clear_error():
    with pytest.raises(devswitch.UsageError) as info:
        devswitch.benchmark("vgg")
    error = parts(info, devswitch.UsageError, named=["'vgg'"])
    assert "alexnet, small_cnn, mlp" in str(error)  # the bundled models, wherever the error lists them


def test_a_model_without_input_shape_is_a_clear_error():
    class Bare(keras.Model):
        def call(self, inputs):
            return inputs

    with pytest.raises(devswitch.UsageError) as info:
        devswitch.benchmark(Bare(name="bare"), batch_sizes=(1,))
    parts(info, devswitch.UsageError, named=["bare"])  # the model named
