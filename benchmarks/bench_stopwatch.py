"""Reported samples/s vs an independent stopwatch around the same timed iterations (target: within 5%).

The stopwatch is a "meter" handed to devswitch.benchmark: its start/stop bracket exactly the timed
iterations, and it reads time.monotonic(), a different clock from the benchmark's perf_counter.
"""

import devswitch

import time

from devswitch.energy import unavailable


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
ok = True
print(f"{'model':<10}{'batch':>6}{'median':>10}{'overall':>10}{'stopwatch':>11}{'median/sw':>11}{'overall/sw':>12}")
for model, batch, iterations in (("alexnet", 1, 40), ("alexnet", 32, 8), ("mlp", 128, 200)):
    Stopwatch.laps.clear()
    (r,) = devswitch.benchmark(model, batch_sizes=(batch,), warmup=3, iterations=iterations,
                               predict_baseline=False, peak_probe=False, meter_factory=Stopwatch)
    stopwatch = r.summary.n * batch / Stopwatch.laps[0]
    a, b = r.samples_per_s / stopwatch, r.summary.samples_per_s_overall / stopwatch
    ok &= abs(a - 1) <= 0.05
    print(f"{model:<10}{batch:>6}{r.samples_per_s:>10.1f}{r.summary.samples_per_s_overall:>10.1f}{stopwatch:>11.1f}"
          f"{a:>10.3f}x{b:>11.3f}x")
print(("PASS" if ok else "FAIL") + ": reported median samples/s within 5% of the stopwatch in every row")
