"""The float32 math modes on this CPU: ``math: bf16`` vs ``math: ieee`` on a Dense-heavy model, per backend.

Target (issue 15): PyTorch on a CPU with AVX512-BF16 or AMX, bf16 math at least 1.5x ieee at batch 256, with
its error; the same table for TensorFlow and JAX, honestly ("no effect" where there is none).

Each backend runs in its own process (never TensorFlow with PyTorch). In it, one Keras model (DEPTH Dense
layers of WIDTH units, float32 policy) is called through devswitch's own compiled call path (tf.function,
jax.jit, eager torch) at BATCH, in interleaved rounds: each round times every variant in turn (the order
rotates from round to round), so drift and bursts spread over all of them. Variants:
  ieee            devswitch.configure(math="ieee")
  bf16            devswitch.configure(math="bf16") -- what devswitch puts in force here (it warns where
                  the mode has no effect, and then leaves the framework's default)
  forced          the framework's own bf16 switch set by hand, to show whether it does anything here:
                  PyTorch torch.backends.mkldnn.matmul.fp32_precision = "bf16"; JAX
                  jax.default_matmul_precision("bfloat16"); TensorFlow ONEDNN_DEFAULT_FPMATH_MODE=BF16, which
                  oneDNN reads at start-up, so a second TensorFlow process (not interleaved: say so)
Speed is ieee seconds per call / the variant's, per round; the table shows the median and the range over the
rounds. The error is the relative (Frobenius) error of the variant's outputs against ieee's, same weights,
same input.

    python benchmarks/bench_math.py                       # full: batch 256, 4 x Dense 2048, 7 rounds
    python benchmarks/bench_math.py --batch 16 --width 256 --rounds 2 --calls 2   # smoke run
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
BACKENDS = ("torch", "tensorflow", "jax")


def child_env(backend: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSWITCH")}
    env.update(
        KERAS_BACKEND=backend,
        DEVSWITCH_REPORT="off",
        DEVSWITCH_DEVICE="cpu",
        DEVSWITCH_MATH="ieee",
        TF_CPP_MIN_LOG_LEVEL="3",
        **extra,
    )
    return env


# --- in the child -------------------------------------------------------------------------------------------


def child(args) -> dict:
    import devswitch
    import keras
    import numpy as np

    from _devswitch import backends

    backend = keras.backend.backend()
    keras.utils.set_random_seed(0)
    layers = [keras.Input((args.width,))]
    layers += [keras.layers.Dense(args.width, activation="relu") for _ in range(args.depth)]
    model = keras.Sequential(layers)
    runner = backends.get(backend).Runner(model, backend == "jax", ())
    x = runner.input((args.batch, args.width))

    def call():
        y = runner.forward(x)
        runner.sync(y)
        return y

    variants = {
        "ieee": (lambda: devswitch.configure(math="ieee"), lambda: None),
        "bf16": (lambda: devswitch.configure(math="bf16"), lambda: None),
    }
    forced_note = None
    if backend == "torch":
        import torch

        def force():
            devswitch.configure(math="ieee")
            torch.backends.mkldnn.matmul.fp32_precision = "bf16"

        variants["forced"] = (force, lambda: setattr(torch.backends.mkldnn.matmul, "fp32_precision", "ieee"))
        forced_note = 'torch.backends.mkldnn.matmul.fp32_precision = "bf16"'
    elif backend == "jax":
        import jax

        context = {}

        def force():
            devswitch.configure(math="ieee")
            context["cm"] = jax.default_matmul_precision("bfloat16")
            context["cm"].__enter__()

        variants["forced"] = (force, lambda: context.pop("cm").__exit__(None, None, None))
        forced_note = 'jax.default_matmul_precision("bfloat16")'

    labels, outputs, times = {}, {}, {name: [] for name in variants}
    for name, (enter, leave) in variants.items():  # outputs and the mode in force, outside the timing
        enter()
        labels[name] = devswitch.plan().math if name != "forced" else "by hand"
        outputs[name] = np.asarray(runner.to_host(call()), dtype=np.float64)
        leave()
    names = list(variants)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            enter, leave = variants[name]
            enter()
            call()  # after a switch: JAX retraces, oneDNN picks its kernel
            t = time.perf_counter()
            for _ in range(args.calls):
                call()
            times[name].append((time.perf_counter() - t) / args.calls)
            leave()
    ref = outputs["ieee"]
    return {
        "backend": backend,
        "labels": labels,
        "times": times,
        "forced_note": forced_note,
        "errors": {n: float(np.linalg.norm(o - ref) / np.linalg.norm(ref)) for n, o in outputs.items()},
        "outputs_file": _save(ref, args),
    }


def _save(ref, args) -> str | None:
    if not args.save:
        return None
    import numpy as np

    np.save(args.save, ref)
    return args.save


def tf_forced(args) -> dict:
    """TensorFlow with ONEDNN_DEFAULT_FPMATH_MODE=BF16 (read by oneDNN at start-up): outputs and time."""
    import numpy as np

    result = child(args)
    ref = np.load(args.compare_to)
    out = np.load(args.save)
    result["errors"]["forced"] = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
    return result


# --- in the parent ------------------------------------------------------------------------------------------


def run_child(backend: str, args, *extra: str, **env: str) -> dict:
    command = [
        sys.executable,
        HERE,
        "--child",
        "--batch",
        str(args.batch),
        "--width",
        str(args.width),
        "--depth",
        str(args.depth),
        "--rounds",
        str(args.rounds),
        "--calls",
        str(args.calls),
        *extra,
    ]
    done = subprocess.run(command, env=child_env(backend, **env), capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"{backend}: {done.stderr[-3000:]}")
    warnings = [line for line in done.stderr.splitlines() if "math=bf16" in line and "no effect" in line]
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT ") :]), warnings=warnings)


def speed(times: dict, name: str) -> tuple[float, float, float]:
    ratios = [i / v for i, v in zip(times["ieee"], times[name])]
    return statistics.median(ratios), min(ratios), max(ratios)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5, help="timed calls per variant per round")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--compare-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(tf_forced(args) if args.compare_to else child(args)))
        return 0

    import tempfile

    from _devswitch.devices import detect_cpu

    cpu = detect_cpu()
    print(f"CPU: {cpu.model} ({cpu.cores} cores; {' '.join(sorted(cpu.features))})")
    print(
        f"model: {args.depth} x Dense {args.width} (relu), float32 policy, batch {args.batch}; {args.rounds} "
        f"interleaved rounds of {args.calls} calls per variant\n"
    )
    rows, verdicts = [], []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            save = os.path.join(folder, f"{backend}.npy")
            result = run_child(backend, args, "--save", save)
            t = result["times"]
            for name in [n for n in ("bf16", "forced") if n in t]:
                median, low, high = speed(t, name)
                rows.append(
                    (
                        backend,
                        name if name == "bf16" else f"forced: {result['forced_note']}",
                        result["labels"][name],
                        1e3 * statistics.median(t["ieee"]),
                        1e3 * statistics.median(t[name]),
                        f"{median:.2f}x [{low:.2f}, {high:.2f}]",
                        result["errors"][name],
                    )
                )
            if result["warnings"]:
                rows.append(
                    (backend, "  devswitch said", result["warnings"][0].split(": ", 1)[-1][:150], None, None, "", None)
                )
            if backend == "tensorflow":
                forced = run_child(
                    backend,
                    args,
                    "--save",
                    os.path.join(folder, "tf-forced.npy"),
                    "--compare-to",
                    save,
                    ONEDNN_DEFAULT_FPMATH_MODE="BF16",
                )
                ieee, other = statistics.median(t["ieee"]), statistics.median(forced["times"]["ieee"])
                rows.append(
                    (
                        backend,
                        "forced: ONEDNN_DEFAULT_FPMATH_MODE=BF16 (another process)",
                        "-",
                        1e3 * ieee,
                        1e3 * other,
                        f"{ieee / other:.2f}x (not interleaved)",
                        forced["errors"]["forced"],
                    )
                )
            if backend == "torch":
                # the target holds where bf16 math is in force; where devswitch measured it has no effect
                # (oneDNN without AMX), the forced row shows why
                bf16, in_force = speed(t, "bf16")[0], result["labels"]["bf16"]
                verdict = "N/A " if in_force != "bf16" else "PASS" if bf16 >= 1.5 else "FAIL"
                verdicts.append(
                    f"{verdict} PyTorch bf16 math {bf16:.2f}x ieee (target >= 1.5x where bf16 math is "
                    f"in force; here: {in_force}, forced by hand {speed(t, 'forced')[0]:.2f}x, "
                    f"error {result['errors']['forced']:.1e})"
                )
    header = (
        "backend",
        "variant",
        "in force",
        "ieee ms",
        "variant ms",
        "speed vs ieee (median [range])",
        "rel. error vs ieee",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for backend, variant, label, ieee_ms, ms, ratio, error in rows:
        print(
            " | ".join(
                (
                    backend,
                    variant,
                    label,
                    "" if ieee_ms is None else f"{ieee_ms:.1f}",
                    "" if ms is None else f"{ms:.1f}",
                    ratio,
                    "" if error is None else f"{error:.1e}",
                )
            )
        )
    print()
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
