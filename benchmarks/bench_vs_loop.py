"""devswitch.benchmark vs a hand-written tf.function loop over the same model, same process.

Target (issue 3): at batch 1 and 128, float32 and mixed_bfloat16, devswitch's figure is at least 0.95x the
hand-written loop's. The plain model.predict figure is printed beside them.
Rounds alternate devswitch / loop to spread drift evenly; the median over rounds is compared.
"""

import devswitch

import argparse
import statistics
import time

import keras
import tensorflow as tf

from _devswitch.models import alexnet

parser = argparse.ArgumentParser()
parser.add_argument("--batch-sizes", default="1,128")
parser.add_argument("--precisions", default="fp32,bf16")
parser.add_argument("--iterations", type=int, default=None, help="timed iterations per round")
parser.add_argument("--rounds", type=int, default=3)
args = parser.parse_args()


def hand_loop(model, batch, iterations, warmup=3):
    """What a performance engineer writes by hand: tf.function, warm-up, a stopwatch around N calls."""
    f = tf.function(lambda t: model(t, training=False))
    x = tf.random.uniform((batch, 224, 224, 3))
    for _ in range(warmup + 1):
        f(x).numpy()
    t0 = time.perf_counter()
    for _ in range(iterations):
        y = f(x)
    y.numpy()
    return batch * iterations / (time.perf_counter() - t0)


rows = []
for precision in args.precisions.split(","):
    devswitch.configure(precision=precision, report="off")
    model = alexnet()
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        iterations = args.iterations or (30 if batch == 1 else 6)
        ours, loop, predict = [], [], []
        for _ in range(args.rounds):
            (record,) = devswitch.benchmark(
                model,
                batch_sizes=(batch,),
                warmup=3,
                iterations=iterations,
                peak_probe=False,
                energy=False,
                predict_baseline=not predict,
            )
            ours.append(record.samples_per_s)
            if record.predict_samples_per_s:
                predict.append(record.predict_samples_per_s)
            loop.append(hand_loop(model, batch, iterations))
        rows.append(
            (keras.config.dtype_policy().name, batch, statistics.median(ours), statistics.median(loop), predict[0])
        )

print(
    f"\n{'policy':<16}{'batch':>6}{'devswitch':>12}{'hand loop':>12}{'predict':>10}{'ours/loop':>11}"
    f"{'ours/predict':>14}"
)
ok = True
for policy, batch, ours, loop, predict in rows:
    ratio = ours / loop
    ok &= ratio >= 0.95
    print(f"{policy:<16}{batch:>6}{ours:>12.1f}{loop:>12.1f}{predict:>10.1f}{ratio:>10.2f}x{ours / predict:>13.2f}x")
print(
    ("PASS" if ok else "FAIL") + ": devswitch.benchmark >= 0.95x the hand-written loop in every row (img/s, "
    f"median of {args.rounds} alternating rounds)"
)
