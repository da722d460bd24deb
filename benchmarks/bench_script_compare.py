"""``devswitch compare --script`` wall time vs the same script's runs under ``devswitch run``, side by side.

For a small training script and two configurations (cpu fp32, cpu bf16), one process run takes turns:
compare --script (both configurations), then the two ``devswitch run`` commands with the same settings
(``--device cpu --precision P --fallback error --report PATH.jsonl``), then compare again, ... Each side is
timed from outside (the command's whole wall time, Python start-up included).

Target: compare wall <= (sum of the runs) x 1.1 + 2.0 s. The fixed 2.0 s is compare's own process: Python
and devswitch's CLI started once, the options and output folder checked, results.json/.csv/.md/.html
written (and rewritten after each run), the timing reports read back. Everything else a run costs (Python,
the framework imported, devswitch applied, the script, the timing summary and report at exit) is the same
machinery as devswitch run, so it should scale at 1.0x.

    python benchmarks/bench_script_compare.py                 # 3 pairs, 3 epochs of 2,048 samples
    python benchmarks/bench_script_compare.py --pairs 1 --samples 256 --epochs 1   # a smoke run
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = """
import argparse
import keras
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--samples", type=int, default=2048)
args = parser.parse_args()
rng = np.random.default_rng(0)
x, y = rng.normal(size=(args.samples, 32)).astype("float32"), rng.integers(0, 10, size=(args.samples,))
model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(256, activation="relu"),
                          keras.layers.Dense(10, activation="softmax", dtype="float32")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=args.epochs, batch_size=64, validation_split=0.1, verbose=0)
model.evaluate(x, y, verbose=0)
print("done")
"""

PRECISIONS = ("fp32", "bf16")
TARGET_RATIO, FIXED_S = 1.1, 2.0


def timed(argv, cwd) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "devswitch", *argv], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"devswitch {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2048)
    args = parser.parse_args()
    own = ["--", "--epochs", str(args.epochs), "--samples", str(args.samples)]
    compares, sums = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = folder / "train.py"
        script.write_text(SCRIPT)
        for pair in range(args.pairs):
            out = folder / f"compare-{pair}"
            compares.append(
                timed(
                    [
                        "compare",
                        "--script",
                        str(script),
                        "--devices",
                        "cpu",
                        "--precisions",
                        ",".join(PRECISIONS),
                        "--out",
                        str(out),
                        *own,
                    ],
                    folder,
                )
            )
            runs = [
                timed(
                    [
                        "run",
                        "--device",
                        "cpu",
                        "--precision",
                        p,
                        "--fallback",
                        "error",
                        "--report",
                        str(folder / f"run-{pair}-{p}.jsonl"),
                        str(script),
                        *own[1:],
                    ],
                    folder,
                )
                for p in PRECISIONS
            ]
            sums.append(sum(runs))
            print(
                f"pair {pair + 1}: compare {compares[-1]:.2f} s; runs {' + '.join(f'{r:.2f}' for r in runs)} = "
                f"{sums[-1]:.2f} s; compare - runs = {compares[-1] - sums[-1]:+.2f} s"
            )
    compare, runs = statistics.median(compares), statistics.median(sums)
    fixed = compare - runs
    print(
        f"median: compare {compare:.2f} s, sum of runs {runs:.2f} s: ratio {compare / runs:.3f}, fixed overhead "
        f"{fixed:+.2f} s"
    )
    limit = runs * TARGET_RATIO + FIXED_S
    print(
        ("PASS" if compare <= limit else "FAIL") + f": compare {compare:.2f} s <= sum of runs x {TARGET_RATIO} + "
        f"{FIXED_S:.1f} s = {limit:.2f} s"
    )


if __name__ == "__main__":
    main()
