"""The batch finder against an exhaustive sweep of powers of two, under the same memory budget, on this CPU.

Target (issue 21 item 6): for mlp and small_cnn, the finder's batch runs at least 0.95x the throughput of the
sweep's best batch, and the finder takes at most 40% of the sweep's time.

Per model, three fresh processes (TensorFlow, the CPU, float32):
  sweep    what a user does without the finder: ``devswitch.benchmark`` (warm-up 5, 20 timed iterations) at
           batch 1, 2, 4, ... , each under the sampled resident peak; the first batch whose peak (+10%, the
           finder's margin) is above the budget ends it. Its best batch is the fastest it measured.
  finder   ``devswitch.find_batch_size(model, memory_budget=BUDGET)``: its largest batch that fits and its knee
           (the smallest batch within 5% of the best throughput its trials saw).
  measure  the finder's batch, its knee and the sweep's best, side by side: interleaved rounds through the
           benchmark's compiled call path, each batch timed for 0.25 s a round (the order rotates), median.
Both timings start after the model is built and called once at batch 1 (same start for both). The largest
batch that fits and the fastest batch differ (past some size a CPU's caches stop helping): the throughput ratio
is printed for both the largest batch and the knee. The issue's target is on "the finder's batch", the batch
``find_batch_size`` returns (the largest that fits): the throughput target is checked on it. The knee (the
smallest batch within 5% of the best throughput the finder saw) is by its definition allowed to be up to 5%
slower than the best, so its ratio is printed beside it, for information.

    python benchmarks/bench_batch_finder.py                        # mlp and small_cnn under 256 MiB
    python benchmarks/bench_batch_finder.py --models mlp --budget 64MiB   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
TIME_TARGET = 0.40
THROUGHPUT_TARGET = 0.95
MARGIN = 0.10  # the finder's (batchfinder.MARGIN): the sweep judges a peak the same way


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSWITCH")}
    env.update(KERAS_BACKEND="tensorflow", DEVSWITCH_REPORT="off", DEVSWITCH_DEVICE="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    return env


# --- in the children ------------------------------------------------------------------------------------------


def _model(name: str):
    import devswitch  # noqa: F401  (the switch: the CPU, float32)
    from _devswitch.models import BUNDLED

    return BUNDLED[name]()


def sweep(name: str, budget: int, max_batch: int) -> dict:
    import devswitch
    from _devswitch.memory import RssSampler, release_free_memory, resident_bytes

    model = _model(name)
    quiet = {"predict_baseline": False, "peak_probe": False, "energy": False}
    devswitch.benchmark(model, batch_sizes=[1], warmup=0, iterations=1, **quiet)  # the same start as the finder
    release_free_memory()
    base = resident_bytes() or 0
    start = time.perf_counter()
    rates, batch, stop = {}, 1, f"max_batch {max_batch}"
    while batch <= max_batch:
        release_free_memory()
        with RssSampler() as rss:
            record = devswitch.benchmark(model, batch_sizes=[batch], warmup=5, iterations=20, **quiet)[0]
        peak = (rss.peak_bytes or 0) - base
        if peak * (1 + MARGIN) > budget or record.status != "ok":
            stop = f"batch {batch}: peak {peak >> 20} MiB" if record.status == "ok" else record.status
            break
        rates[batch] = record.samples_per_s
        batch *= 2
    return {"seconds": time.perf_counter() - start, "rates": rates, "stop": stop}


def finder(name: str, budget: int, max_batch: int) -> dict:
    import devswitch
    from _devswitch import backends
    from _devswitch.batchfinder import _step, resolve_jit

    model = _model(name)
    runner = backends.get("tensorflow").Runner(model, resolve_jit(model), ())
    _step(runner, model, "inference", 1)()  # the same start as the sweep (the finder makes one more such call)
    start = time.perf_counter()
    result = devswitch.find_batch_size(model, memory_budget=budget, max_batch=max_batch)
    return {
        "seconds": time.perf_counter() - start,
        "batch": result.batch_size,
        "knee": result.knee,
        "reason": result.reason,
        "trials": [t.describe() for t in result.trials],
    }


def measure(name: str, batches: list[int], rounds: int) -> dict:
    from _devswitch import backends
    from _devswitch.batchfinder import _step, resolve_jit

    model = _model(name)
    runner = backends.get("tensorflow").Runner(model, resolve_jit(model), ())
    steps = {b: _step(runner, model, "inference", b) for b in batches}
    for step in steps.values():
        for _ in range(3):
            step()
    rates: dict[int, list[float]] = {b: [] for b in batches}
    for r in range(rounds):
        for b in batches[r % len(batches) :] + batches[: r % len(batches)]:
            calls, t0 = 0, time.perf_counter()
            while calls < 2 or time.perf_counter() - t0 < 0.25:
                steps[b]()
                calls += 1
            rates[b].append(calls * b / (time.perf_counter() - t0))
    return {str(b): statistics.median(v) for b, v in rates.items()}


# --- the parent -----------------------------------------------------------------------------------------------


def run_child(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, HERE, "--child", *args], capture_output=True, text=True, env=child_env(), timeout=3600
    )
    if proc.returncode != 0:
        sys.exit(f"child {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def one_model(name: str, budget: str, max_batch: int, rounds: int) -> tuple[float, float, float]:
    from _devswitch.memory import parse_size

    size = str(parse_size(budget))
    swept = run_child("sweep", name, size, str(max_batch))
    found = run_child("finder", name, size, str(max_batch))
    rates = {int(b): r for b, r in swept["rates"].items()}
    best = max(rates, key=lambda b: rates[b])
    batches = sorted({best, found["batch"], found["knee"] or found["batch"]})
    side = {int(b): r for b, r in run_child("measure", name, json.dumps(batches), str(rounds)).items()}
    print(f"\n## {name} (budget {budget})")
    print(f"sweep: {len(rates)} batch sizes in {swept['seconds']:.1f} s, stopped at {swept['stop']}")
    print("  " + ", ".join(f"{b}: {r:,.0f}/s" for b, r in rates.items()))
    print(f"finder: {found['seconds']:.1f} s, batch {found['batch']}, knee {found['knee']} ({found['reason']})")
    for line in found["trials"]:
        print("  " + line)
    print(
        "side by side (median of interleaved rounds): " + ", ".join(f"batch {b}: {r:,.0f}/s" for b, r in side.items())
    )
    time_ratio = found["seconds"] / swept["seconds"]
    largest = side[found["batch"]] / side[best]
    knee = side[found["knee"] or found["batch"]] / side[best]
    print(f"throughput, finder's largest batch {found['batch']} / sweep's best {best}: {largest:.2f}x")
    print(f"throughput, finder's knee {found['knee']} / sweep's best {best}: {knee:.2f}x")
    print(f"time, finder / sweep: {time_ratio:.2f}x")
    return largest, knee, time_ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mlp,small_cnn")
    parser.add_argument("--budget", default="256MiB", help="the memory budget of both (default 256MiB)")
    parser.add_argument("--max-batch", type=int, default=1 << 16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, name, *rest = args.child
        if kind == "measure":
            out = measure(name, json.loads(rest[0]), int(rest[1]))
        else:
            out = (sweep if kind == "sweep" else finder)(name, int(rest[0]), int(rest[1]))
        print(json.dumps(out))
        return 0
    print(f"# bench_batch_finder: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    failed = 0
    for name in args.models.split(","):
        largest, knee, time_ratio = one_model(name, args.budget, args.max_batch, args.rounds)
        ok_speed, ok_time = largest >= THROUGHPUT_TARGET, time_ratio <= TIME_TARGET
        print(
            f"{'PASS' if ok_speed else 'FAIL'} {name}: throughput at the finder's batch (the largest that fits) "
            f"{largest:.2f}x >= {THROUGHPUT_TARGET}"
        )
        print(f"(the knee: {knee:.2f}x the sweep's best, for information: within 5% of the best by definition)")
        print(f"{'PASS' if ok_time else 'FAIL'} {name}: time {time_ratio:.2f}x <= {TIME_TARGET}")
        failed += (not ok_speed) + (not ok_time)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
