"""The heart of a neural network, a = Wx: GFLOP/s of square matrix products against size, for each device
and precision TensorFlow can use here. Shows where the parallel device overtakes — or, on a CPU-only machine
with AVX512-BF16, where bf16 overtakes fp32 (and that fp16 does not).

    python examples/matmul_scaling.py                     # sizes 64..2048, table (+ matmul_scaling.png)
    python examples/matmul_scaling.py --max-size 4096 --repeats 5
"""

import devswitch  # noqa: F401  (applies the device selection; this script picks dtypes itself)

import argparse
import time

import tensorflow as tf


def gflops(n: int, dtype: str, device: str, repeats: int) -> float:
    with tf.device(device):
        a = tf.cast(tf.random.uniform((n, n)), dtype)
        matmul = tf.function(lambda m: tf.matmul(m, m))
        matmul(a).numpy()  # trace and warm up
        inner = max(1, int(2e8 // (2 * n**3)))  # ~0.2 GFLOP per timed sample, so small sizes are timeable
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                out = matmul(a)
            out.numpy()
            best = min(best, (time.perf_counter() - t0) / inner)
    return 2 * n**3 / best / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-size", type=int, default=64)
    parser.add_argument("--max-size", type=int, default=2048)
    parser.add_argument("--dtypes", default="float32,bfloat16,float16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plot", default="matmul_scaling.png")
    args = parser.parse_args()

    devices = ["/CPU:0"] + [f"/GPU:{i}" for i in range(len(tf.config.get_visible_devices("GPU")))]
    sizes = []
    n = args.min_size
    while n <= args.max_size:
        sizes.append(n)
        n *= 2
    columns = [(d, t) for d in devices for t in args.dtypes.split(",")]
    results = {c: [gflops(n, c[1], c[0], args.repeats) for n in sizes] for c in columns}

    header = f"{'size':>6}" + "".join(f"{d.strip('/').lower() + ' ' + t:>18}" for d, t in columns)
    print("GFLOP/s of an n x n matmul (best of %d)\n" % args.repeats + header)
    for i, n in enumerate(sizes):
        print(f"{n:>6}" + "".join(f"{results[c][i]:>18.1f}" for c in columns))
    base = columns[0]
    for column in columns[1:]:
        # the crossover: the smallest n from which this column stays more than 5% ahead at every larger size
        ahead = [results[column][i] > 1.05 * results[base][i] for i in range(len(sizes))]
        start = next((i for i in range(len(sizes)) if all(ahead[i:])), None)
        where = f"from n = {sizes[start]} on" if start is not None else "not consistently at the sizes tried"
        ratio = results[column][-1] / results[base][-1]
        print(
            f"{column[0].strip('/').lower()} {column[1]} vs {base[0].strip('/').lower()} {base[1]}: more than 5% "
            f"faster {where}; {ratio:.2f}x at n = {sizes[-1]}"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: matplotlib is not installed)")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for column in columns:
        ax.plot(sizes, results[column], marker="o", label=f"{column[0].strip('/').lower()} {column[1]}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("n (n x n matmul)")
    ax.set_ylabel("GFLOP/s")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
