"""Can a noisy neighbour fake a speed-up? Two identical configurations, a CPU hog for half the run.

The two columns are the same configuration (TensorFlow, CPU, float32; the second is named by its alias
``float32``), so the true speed-up of one over the other is 1. A hog (busy processes, one per core)
starts when the second half of the measuring begins and runs to the end:

- with rounds (the columns take turns, A B A B ...), the hog slows both columns alike from round
  ``rounds // 2 + 1`` on, and the speed-up paired by round stays near 1 (target: within 1 +/- 0.10);
- with ``--rounds 1`` (one column after the other), it starts with the second column and lands on it
  alone: the speed-up drifts as far as the hog pushes it.

Each mode runs ``--repeats`` times, interleaved (rounds, one-by-one, rounds, ...), and every speed-up is
printed with its interval (rounds) so the spread between repeats is visible too.

    python benchmarks/bench_noise.py [--model small_cnn] [--batch 32] [--iterations 24] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def run(model: str, batch: int, iterations: int, rounds: int, hog_cores: int) -> dict:
    from _devswitch.compare import Options, run_matrix

    stop = multiprocessing.Event()
    hogs: list[multiprocessing.Process] = []
    hog_at: list[float] = []

    def progress(line: str) -> None:
        second_half = line.startswith(f"[round {rounds // 2 + 1}]") if rounds > 1 else line.startswith("[2/2]")
        if second_half and not hogs:
            hog_at.append(time.time())
            for _ in range(hog_cores):
                hog = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
                hog.start()
                hogs.append(hog)

    options = Options(
        target=model,
        backends=("tensorflow",),
        devices=("cpu",),
        precisions=("fp32", "float32"),
        batch_sizes=(batch,),
        warmup=3,
        iterations=iterations,
        peak_probe=False,
        predict_baseline=False,
        baseline=("tensorflow", "cpu", "fp32"),
        rounds=rounds,
        accuracy_samples=0,
    )
    with tempfile.TemporaryDirectory() as work:
        try:
            results = run_matrix(options, progress, Path(work))
        finally:
            stop.set()
            for hog in hogs:
                hog.join(timeout=5)
    a, b = results.cells
    ratio = results.speedup_interval(b)
    return {
        "rounds": rounds,
        "a": a.metric("throughput"),
        "b": b.metric("throughput"),
        "speedup": results.speedup(b),
        "interval": None if ratio is None else [ratio.low, ratio.high],
        "coverage": None if ratio is None else ratio.coverage,
        "hog": bool(hog_at),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hog-cores", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    os.environ.pop("DEVSWITCH_DISABLE", None)
    rows = []
    for repeat in range(args.repeats):
        for rounds in (args.rounds, 1):
            row = run(args.model, args.batch, args.iterations, rounds, args.hog_cores)
            rows.append(row)
            shown = (
                f"[{row['interval'][0]:.3f}, {row['interval'][1]:.3f}] ({row['coverage']:.0%})"
                if row["interval"]
                else "no interval (one round)"
            )
            print(
                f"repeat {repeat + 1}, rounds {rounds}: A {row['a']:,.1f}/s, B {row['b']:,.1f}/s, "
                f"B/A {row['speedup']:.3f} {shown}{'' if row['hog'] else ' (the hog never started)'}",
                flush=True,
            )
    paired = [r["speedup"] for r in rows if r["rounds"] > 1]
    alone = [r["speedup"] for r in rows if r["rounds"] == 1]
    worst_paired = max(abs(s - 1) for s in paired)
    worst_alone = max(abs(s - 1) for s in alone)
    print(json.dumps({"paired_speedups": paired, "one_by_one_speedups": alone}))
    print(
        f"with rounds: the speed-up of identical columns is off by at most {worst_paired:.3f} "
        f"({'PASS' if worst_paired <= 0.10 else 'FAIL'}: within 1 +/- 0.10)"
    )
    print(f"with --rounds 1: off by up to {worst_alone:.3f} (how far the hog fakes a difference without rounds)")
    return 0 if worst_paired <= 0.10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
