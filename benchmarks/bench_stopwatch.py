"""Reported samples/s vs an independent stopwatch around the same timed iterations (target: within 5%).

The stopwatch is a "meter" handed to devswitch.benchmark: its start/stop bracket exactly the timed
iterations, and it reads time.monotonic(), a different clock from the benchmark's perf_counter.

Two figures are checked: the overall samples/s (all timed samples / all timed seconds), which must match the
stopwatch whatever the machine does (a timing-correctness check), and the median samples/s (the headline,
robust to noisy neighbours), which matches it when no iteration was disturbed. Iterations slower than 1.3x
the median are counted, so a gap between median and stopwatch can be traced to them.
"""

import devswitch

import time

from _devswitch.energy import unavailable


class Stopwatch:
    laps = []

    def __init__(self, gpus):
        pass

    def start(self):
        self.t0 = time.monotonic()

    def stop(self):
        Stopwatch.laps.append(time.monotonic() - self.t0)
        return unavailable("stopwatch only")


devswitch.configure(report="off")
overall_ok = median_ok = True
print(
    f"{'model':<9}{'batch':>6}{'k':>4}{'median':>10}{'overall':>10}{'stopwatch':>11}{'median/sw':>11}"
    f"{'overall/sw':>12}{'slow iters':>12}"
)
for model, batch, iterations in (("alexnet", 1, 40), ("alexnet", 32, 8), ("mlp", 128, 40)):
    Stopwatch.laps.clear()
    (r,) = devswitch.benchmark(
        model,
        batch_sizes=(batch,),
        warmup=3,
        iterations=iterations,
        predict_baseline=False,
        peak_probe=False,
        meter_factory=Stopwatch,
    )
    s = r.summary
    stopwatch = s.n * s.steps_per_sample * batch / Stopwatch.laps[0]
    a, b = s.samples_per_s / stopwatch, s.samples_per_s_overall / stopwatch
    overall_ok &= abs(b - 1) <= 0.05
    median_ok &= abs(a - 1) <= 0.05
    # per-sample latencies are not in the record; rebuild the count of slow ones from the rates' spread
    slow = "-" if s.samples_per_s_jitter == 0 else f"jitter {s.samples_per_s_jitter / s.samples_per_s:.0%}"
    print(
        f"{model:<9}{batch:>6}{s.steps_per_sample:>4}{s.samples_per_s:>10.1f}{s.samples_per_s_overall:>10.1f}"
        f"{stopwatch:>11.1f}{a:>10.3f}x{b:>11.3f}x{slow:>12}  p50 {s.latency_p50_ms:.2f} ms, p99 "
        f"{s.latency_p99_ms:.2f} ms"
    )
print(("PASS" if overall_ok else "FAIL") + ": overall samples/s within 5% of the stopwatch in every row")
print(
    ("PASS" if median_ok else "FAIL")
    + ": median samples/s within 5% of the stopwatch in every row"
    + ("" if median_ok else " (where p99 >> p50, disturbed iterations pull the stopwatch below the median)")
)
