"""devswitch on each Keras backend: import time, fit, and devswitch.benchmark vs hand-written loops.

Targets (the backends issue), each measured side by side in one run, per backend:
  import   `import devswitch; import keras` at most 1.10x `import keras` (fresh processes, alternating,
           median); `import devswitch` alone imports no framework, the switch is applied at `import keras`
  fit      fit through the one import at least 0.98x plain fit (samples/s; same process, alternating:
           a model compiled and fitted by devswitch's patched Keras vs one compiled and fitted by Keras'
           own methods, same weights and data)
  loop     devswitch.benchmark at least 0.95x a hand-written compiled loop in the same backend (AlexNet,
           batch 1 and 128, fp32 and bf16; TensorFlow: tf.function; JAX: jax.jit of stateless_call with
           block_until_ready; PyTorch: model(x) under torch.no_grad)

Every backend runs in its own processes (TensorFlow and PyTorch must not share one).
    python benchmarks/bench_backends.py [--backends tensorflow,jax,torch] [--only import,fit,loop]
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


def child_env(backend: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSWITCH")}
    env.update(KERAS_BACKEND=backend, DEVSWITCH_REPORT="off", TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


# --- import ------------------------------------------------------------------------------------------------


def import_seconds(backend: str, statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=child_env(backend), capture_output=True, text=True, timeout=300
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return float(done.stdout.strip().splitlines()[-1])


def bench_import(backend: str, rounds: int) -> dict:
    keras_s, devswitch_s = [], []
    import_seconds(backend, "import keras")  # warm the file cache once
    for _ in range(rounds):
        keras_s.append(import_seconds(backend, "import keras"))
        devswitch_s.append(import_seconds(backend, "import devswitch; import keras"))
    ratio = statistics.median(devswitch_s) / statistics.median(keras_s)
    return {
        "keras_s": statistics.median(keras_s),
        "devswitch_s": statistics.median(devswitch_s),
        "ratio": ratio,
        "ok": ratio <= 1.10,
    }


# --- fit and loops: run inside a child process of the backend ----------------------------------------------


def child_fit(pairs: int) -> dict:
    import devswitch  # noqa: F401 - applied from the environment: the backend of this child

    import keras
    import numpy as np

    from _devswitch import state
    from _devswitch.models import small_cnn

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=2048)
    ours = small_cnn()
    plain = small_cnn()
    plain.set_weights(ours.get_weights())
    original = {name: state.original(keras.Model, name) for name in ("compile", "fit")}
    ours.compile("adam", "sparse_categorical_crossentropy")  # through devswitch's patch
    original["compile"](plain, "adam", "sparse_categorical_crossentropy")  # Keras' own compile
    devswitch.configure(report="summary")  # the timed wrappers on: what the one import gives a script

    def fit_ours():
        ours.fit(x, y, epochs=1, batch_size=128, verbose=0)

    def fit_plain():
        original["fit"](plain, x, y, epochs=1, batch_size=128, verbose=0)

    fit_ours(), fit_plain()  # trace and compile both, untimed
    ratios = []
    for i in range(pairs):
        order = (fit_ours, fit_plain) if i % 2 == 0 else (fit_plain, fit_ours)
        seconds = {}
        for fit in order:
            t0 = time.perf_counter()
            fit()
            seconds[fit.__name__] = time.perf_counter() - t0
        ratios.append(seconds["fit_plain"] / seconds["fit_ours"])  # throughput ours / plain
    return {
        "ratio": statistics.median(ratios),
        "q1": statistics.quantiles(ratios, n=4)[0],
        "q3": statistics.quantiles(ratios, n=4)[2],
        "jit_ours": bool(ours.jit_compile),
        "jit_plain": bool(plain.jit_compile),
        "ok": statistics.median(ratios) >= 0.98,
    }


def hand_loop(model, batch: int, iterations: int, warmup: int = 3) -> float:
    """What a performance engineer writes by hand in this backend: compiled call, warm-up, stopwatch."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        f = tf.function(lambda t: model(t, training=False))
        x = tf.random.uniform((batch, 224, 224, 3))
        call, done = (lambda: f(x)), (lambda y: y.numpy())
    elif backend == "jax":
        import jax

        f = jax.jit(lambda tv, ntv, t: model.stateless_call(tv, ntv, t, training=False)[0])
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        x = jax.random.uniform(jax.random.PRNGKey(1), (batch, 224, 224, 3))
        call, done = (lambda: f(tv, ntv, x)), (lambda y: y.block_until_ready())
    else:
        import torch

        x = torch.rand((batch, 224, 224, 3))

        def call():
            with torch.no_grad():
                return model(x, training=False)

        done = lambda y: None  # noqa: E731 - CPU kernels have finished when the call returns
    for _ in range(warmup + 1):
        done(call())
    t0 = time.perf_counter()
    for _ in range(iterations):
        y = call()
    done(y)
    return batch * iterations / (time.perf_counter() - t0)


def child_loop(batch_sizes: list[int], precisions: list[str], rounds: int) -> list[dict]:
    import devswitch

    from _devswitch.models import alexnet

    rows = []
    for precision in precisions:
        devswitch.configure(precision=precision, report="off")
        model = alexnet()
        for batch in batch_sizes:
            iterations = 20 if batch == 1 else 4
            ours, loop = [], []
            for _ in range(rounds):
                (record,) = devswitch.benchmark(
                    model,
                    batch_sizes=(batch,),
                    warmup=2,
                    iterations=iterations,
                    peak_probe=False,
                    energy=False,
                    predict_baseline=False,
                )
                ours.append(record.samples_per_s)
                loop.append(hand_loop(model, batch, iterations))
            ratio = statistics.median(ours) / statistics.median(loop)
            rows.append(
                {
                    "precision": precision,
                    "batch": batch,
                    "devswitch": statistics.median(ours),
                    "loop": statistics.median(loop),
                    "ratio": ratio,
                    "ok": ratio >= 0.95,
                }
            )
    return rows


def in_child(backend: str, what: str, args) -> object:
    argv = [
        sys.executable,
        HERE,
        "--child",
        what,
        "--backends",
        backend,
        "--pairs",
        str(args.pairs),
        "--rounds",
        str(args.rounds),
        "--batch-sizes",
        args.batch_sizes,
        "--precisions",
        args.precisions,
    ]
    done = subprocess.run(
        argv, env=child_env(backend, DEVSWITCH_DEVICE="cpu"), capture_output=True, text=True, timeout=3600
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{backend} {what} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--only", default="import,fit,loop")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--batch-sizes", default="1,128")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--child", default="")
    args = parser.parse_args()
    if args.child == "fit":
        print("RESULT " + json.dumps(child_fit(args.pairs)))
        return 0
    if args.child == "loop":
        print(
            "RESULT "
            + json.dumps(
                child_loop([int(b) for b in args.batch_sizes.split(",")], args.precisions.split(","), args.rounds)
            )
        )
        return 0
    ok = True
    for backend in args.backends.split(","):
        print(f"\n== {backend}")
        if "import" in args.only:
            r = bench_import(backend, args.rounds + 2)
            ok &= r["ok"]
            print(
                f"import   keras {r['keras_s']:.2f} s, devswitch {r['devswitch_s']:.2f} s: {r['ratio']:.2f}x "
                f"(target <= 1.10x) {'PASS' if r['ok'] else 'FAIL'}"
            )
        if "fit" in args.only:
            r = in_child(backend, "fit", args)
            ok &= r["ok"]
            print(
                f"fit      devswitch / plain samples/s: {r['ratio']:.3f}x (quartiles {r['q1']:.3f} .. "
                f"{r['q3']:.3f}; jit_compile ours {r['jit_ours']}, plain {r['jit_plain']}) (target >= 0.98x) "
                f"{'PASS' if r['ok'] else 'FAIL'}"
            )
        if "loop" in args.only:
            for r in in_child(backend, "loop", args):
                ok &= r["ok"]
                print(
                    f"loop     {r['precision']} batch {r['batch']:>3}: devswitch {r['devswitch']:8.1f} img/s, "
                    f"hand loop {r['loop']:8.1f} img/s: {r['ratio']:.2f}x (target >= 0.95x) "
                    f"{'PASS' if r['ok'] else 'FAIL'}"
                )
    print("\n" + ("PASS" if ok else "FAIL") + ": every target met" if ok else "\nFAIL: see the rows above")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
