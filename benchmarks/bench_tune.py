"""``devswitch tune`` vs the exhaustive ``devswitch compare`` of the same space, side by side in one run.

The space (issue 27 item 3): 3 backends (TensorFlow, JAX, PyTorch) x fp32/fp16 x threads=1,2 on the CPU, 12
configurations, on mlp and on small_cnn. For each model, one process run takes turns: the exhaustive compare
(every configuration, every round), then tune with a budget. Each side is timed from outside (the command's
whole wall time, Python start-up included), and each reads its own results.json.

Targets:
- tune's winner, at the exhaustive compare's own figure for that configuration, against the compare's best
  configuration: at least 0.95x (the race drops nothing that the full measurement would have made the best);
- tune's wall time against the compare's: at most 0.40x;
- the budget respected: tune's wall time at most budget x 1.1 + its last round's duration.

Both sides measure to the same depth (``--rounds 20 --iterations 300``: 15 timed samples of at least 50 ms each
per configuration and round; no predict baseline, no matmul probe): the exhaustive compare takes every round
that tune may take. Racing saves rounds, not start-ups: both sides start and warm the same 12 workers (about a
minute on 2 cores, printed for each side), so the wall ratio can only reach 0.40 where measuring is the larger
part of the compare, as it is at the depth a close decision needs. At a shallow depth (``--rounds 10
--iterations 30``: about 0.15 s per configuration and round) the start-ups are most of both walls and the ratio
is 0.6-0.7 whatever the race does; the ratio of the parts after start-up is printed beside the target's.
With ``--budget auto`` (the default) the budget is 35% of the compare's wall time just measured, so that the
second target is met exactly when the budget is; give a fixed ``--budget 120s`` to see how a user's guess fares.

    python benchmarks/bench_tune.py                               # mlp and small_cnn, 12 configurations each
    python benchmarks/bench_tune.py --models mlp --backends tensorflow   # a smoke run: 4 configurations
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_WINNER, TARGET_WALL, BUDGET_SLACK = 0.95, 0.40, 0.10
AUTO_SHARE = 0.35


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "devswitch", *argv], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 5):  # 5: a column failed (an fp16 op a backend lacks): the others stand
        sys.exit(f"devswitch {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def key(c: dict) -> str:
    """A cell's configuration in words: 'jax cpu fp32 threads=2'."""
    settings = ",".join(f"{k}={v}" for k, v in sorted((c.get("settings") or {}).items()))
    return f"{c['backend']} {c['device']} {c['precision']} {settings}"


def rates(results: dict) -> dict[str, float]:
    """Configuration words -> the throughput of every measured cell at the largest batch size."""
    cells = results["cells"]
    largest = max(c["batch"] for c in cells)
    out = {}
    for c in cells:
        record = c.get("record") or {}
        value = ((record.get("metrics") or {}).get("throughput") or {}).get("value")
        if c["batch"] == largest and c["status"] == "ok" and isinstance(value, (int, float)) and value > 0:
            out[key(c)] = value
    return out


def tune_winner(out: Path) -> str | None:
    """The configuration tune chose (compare's own decision on tune's result set)."""
    from _devswitch.compare import recommend
    from _devswitch.compare.resultfile import read

    results = read(out / "results.json")
    largest = max(results.batch_sizes)
    pick = next((p for p in recommend(results) if p.batch == largest), None)
    if pick is None or pick.best is None:
        return None
    c = pick.best
    settings = ",".join(f"{k}={v}" for k, v in sorted(dict(c.settings).items()))
    return f"{c.backend} {c.device} {c.precision} {settings}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,small_cnn")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--batch-size", default="32")
    parser.add_argument("--budget", default="auto", help="auto: 35%% of the compare's wall time, or e.g. 120s")
    parser.add_argument("--rounds", default="20", help="both sides: compare's rounds, tune's most rounds")
    parser.add_argument("--iterations", default="300", help="both sides: timed samples over all the rounds")
    args = parser.parse_args()
    # the same measurement on both sides: the exhaustive compare takes every round that tune may take
    depth = ["--rounds", args.rounds, "--iterations", args.iterations, "--no-predict-baseline", "--no-peak-probe"]
    space = [
        "--backends",
        args.backends,
        "--devices",
        "cpu",
        "--precisions",
        "fp32,fp16",
        "--vary",
        "threads=1,2",
        "--batch-sizes",
        args.batch_size,
    ]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for model in args.models.split(","):
            c_out, t_out = folder / f"compare-{model}", folder / f"tune-{model}"
            compare_s = timed(["compare", model, *space, *depth, "--yes", "--out", str(c_out)], folder)
            budget = f"{AUTO_SHARE * compare_s:.0f}s" if args.budget == "auto" else args.budget
            tune_s = timed(["tune", model, *space, *depth, "--yes", "--budget", budget, "--out", str(t_out)], folder)
            compared = json.loads((c_out / "results.json").read_text())
            measured = rates(compared)
            best = max(measured, key=measured.__getitem__)
            winner = tune_winner(t_out)
            race = json.loads((t_out / "results.json").read_text())["options"]["tune"]
            last_round = race["rounds"][-1]["seconds"] if race["rounds"] else 0.0
            budget_s = race["budget_s"]
            winner_ratio = measured.get(winner, 0.0) / measured[best] if winner else 0.0
            wall_ratio = tune_s / compare_s
            compare_start = compared["timing"]["sum_startup_s"]
            tune_start = json.loads((t_out / "results.json").read_text())["timing"]["sum_startup_s"]
            after_ratio = (tune_s - tune_start) / (compare_s - compare_start)
            limit = budget_s * (1 + BUDGET_SLACK) + last_round
            print(f"{model}: {len(measured)} configurations measured by compare")
            chosen = tune_winner(c_out)  # the compare's own decision, by the same rules
            print(
                f"  compare: {compare_s:.1f} s, best {best} ({measured[best]:,.1f}/s); its decision: {chosen} "
                f"({measured.get(chosen, float('nan')):,.1f}/s)"
            )
            print(
                f"  tune:    {tune_s:.1f} s (budget {budget_s:.0f} s, {len(race['rounds'])} rounds, stop: "
                f"{race['stop']}, {len(race['dropped'])} dropped), winner {winner} "
                f"({measured.get(winner, float('nan')):,.1f}/s in the compare)"
            )
            print(
                f"  start-ups (side by side, then the reference run): compare {compare_start:.1f} s "
                f"({compare_start / compare_s:.0%} of its wall), tune {tune_start:.1f} s; after them, tune / "
                f"compare = {after_ratio:.3f} (for information: what racing itself saves)"
            )
            print(
                f"  winner ratio {winner_ratio:.3f} (target >= {TARGET_WINNER}); wall ratio {wall_ratio:.3f} "
                f"(target <= {TARGET_WALL}); budget: {tune_s:.1f} s <= {limit:.1f} s "
                f"(budget x {1 + BUDGET_SLACK:.1f} + last round {last_round:.1f} s)"
            )
            checks = {
                "winner": winner_ratio >= TARGET_WINNER,
                "wall": wall_ratio <= TARGET_WALL,
                "budget": tune_s <= limit,
            }
            for name, ok in checks.items():
                print(f"  {'PASS' if ok else 'FAIL'}: {model} {name}")
                if not ok:
                    failures.append(f"{model} {name}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
