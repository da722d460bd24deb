"""devswitch.benchmark's per-batch peak memory on the CPU against an independent reader (issue 21 item 6).

* devswitch: one process per backend runs ``devswitch.benchmark(model, batch_sizes=...)`` (smallest first, the
  matmul probe on, as ``devswitch compare`` does) and prints each record's ``peak_memory_bytes``: the process's
  resident memory above its level before that batch size, sampled while it ran (or TensorFlow's CPU pool's
  peak above its start, where larger).
* the reader: a fresh process per backend and batch size builds the same model, runs the same work by hand
  (the backend's compiled call: ``tf.function``, ``jax.jit`` of ``stateless_call``, ``torch.no_grad``; the
  first call, the warm-up and the timed steps) and reads its own ``VmHWM`` from /proc/self/status minus its
  ``VmRSS`` before the work (what C's allocator kept handed back with ``malloc_trim``, as devswitch does, and
  the high-water mark reset through /proc/self/clear_refs where the kernel allows). It imports nothing of
  devswitch's measuring (only the bundled model's definition).
* Both sides call the model once at batch 1 before the batch sizes compared: the framework's one-time costs
  (the first trace of the model, thread pools, primitive caches: some 20 MiB on TensorFlow) belong to no batch
  size, and devswitch, like any process, charges them to the first batch size of its run.

Each side runs ``--repeats`` times (default 3), taking turns, and its median is compared: a figure of some tens
of MiB moves by a few MiB from one process to the next (the first compile's scratch memory above all).

Both sides run with glibc's mmap threshold fixed at its initial 128 KiB (``MALLOC_MMAP_THRESHOLD_``, which
turns off its dynamic raising): with it dynamic, the same PyTorch work's footprint moves from process to
process by whichever large blocks happened to be freed first (small_cnn at batch 32: 22-36 MiB in five fresh
readers; fixed: 16.3-16.5 MiB), so a ratio of two processes measured malloc's luck, not the measurement.
``--malloc dynamic`` runs both sides as they come, for comparison.

Printed per backend and batch size: both medians, each side's range over its runs, and the ratio of the medians
(target: within 10%, 0.90x-1.10x). Run by hand on a quiet machine, not in the test suite (Linux only):

    python benchmarks/bench_memory.py [--model small_cnn] [--batch-sizes 32,256,2048] [--backends tensorflow,jax,torch]
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys

DEVSWITCH = """
import json, sys
import devswitch
devswitch.configure(device="cpu", report="off")
batches = [int(b) for b in sys.argv[2].split(",")]
records = devswitch.benchmark(sys.argv[1], batch_sizes=batches, warmup=int(sys.argv[3]), iterations=int(sys.argv[4]),
                              predict_baseline=False, energy=False)
print("RESULT " + json.dumps({r.batch: [r.status, r.peak_memory_bytes] for r in records}))
"""

READER = """
import json, sys
import keras
from _devswitch.models import BUNDLED  # the model only: the same layers devswitch measures

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

model_name, batch, warmup, iterations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model = BUNDLED[model_name]()
shape = (batch, *(int(d) for d in model.inputs[0].shape[1:]))
backend = keras.backend.backend()
if backend == "tensorflow":
    import tensorflow as tf
    forward = tf.function(lambda t: model(t, training=False))
    make = lambda: tf.random.uniform(shape)
    wait = lambda y: y.numpy()
elif backend == "jax":
    import jax
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    call = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
    forward = lambda x: call(trainable, non_trainable, x)
    make = lambda: jax.random.uniform(jax.random.PRNGKey(0), shape)
    wait = jax.block_until_ready
else:
    import torch
    def forward(x):
        with torch.no_grad():
            return model(x, training=False)
    make = lambda: torch.rand(shape)
    wait = lambda y: None
shape, batch_shape = (1, *shape[1:]), shape  # first, as devswitch's run did: the framework's one-time costs
wait(forward(make()))  # (the first trace of the model, thread pools, primitive caches) are nobody's batch
shape = batch_shape
import ctypes, ctypes.util
ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)  # the level before is what is in use, not what was freed
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS now
    reset = True
except OSError:
    reset = False
before = status("VmRSS")
x = make()
for _ in range(1 + warmup + iterations):
    wait(forward(x))
print("RESULT " + json.dumps({"peak": status("VmHWM") - before, "hwm_reset": reset}))
"""


MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # glibc's initial threshold, fixed (not raised as blocks are freed)


def child(code: str, backend: str, *args: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if args_malloc == "fixed":
        env.update(MALLOC)
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{backend} child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="small_cnn")
parser.add_argument("--batch-sizes", default="32,256,2048")
parser.add_argument("--backends", default="tensorflow,jax,torch")
parser.add_argument("--warmup", type=int, default=3)
parser.add_argument("--iterations", type=int, default=5)
parser.add_argument("--repeats", type=int, default=3, help="runs of each side, taking turns (default 3)")
parser.add_argument("--malloc", choices=("fixed", "dynamic"), default="fixed", help="glibc's mmap threshold")
args = parser.parse_args()
args_malloc = args.malloc

library = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
batches = sorted(int(b) for b in args.batch_sizes.split(","))
work = (str(args.warmup), str(args.iterations))
ok = True


def mib(values: list[int]) -> str:
    """'76.3 MiB [75.9, 77.0]': the median and the range."""
    return f"{statistics.median(values) / 2**20:.1f} MiB [{min(values) / 2**20:.1f}, {max(values) / 2**20:.1f}]"


print(f"{'backend':<12}{'batch':>6}  {'devswitch (median [range])':<30}{'VmHWM reader':<30}{'ratio':>7}")
for backend in args.backends.split(","):
    if importlib.util.find_spec(library[backend]) is None:
        print(f"{backend:<12}  not installed: skipped")
        continue
    ours: dict[int, list[int]] = {b: [] for b in batches}
    theirs: dict[int, list[int]] = {b: [] for b in batches}
    failed: dict[int, str] = {}
    reset = True
    for _ in range(args.repeats):  # the two sides take turns
        # batch 1 first, as the reader's untimed first call: the one-time costs of a run go to neither side
        run = child(DEVSWITCH, backend, args.model, ",".join(map(str, [1, *batches])), *work)
        for batch in batches:
            status, peak = run[str(batch)]
            reader = child(READER, backend, args.model, str(batch), *work)
            reset &= reader["hwm_reset"]
            if status != "ok" or not peak or not reader["peak"]:
                failed[batch] = f"{status}: devswitch {peak}, reader {reader['peak']}"
                continue
            ours[batch].append(peak)
            theirs[batch].append(reader["peak"])
    for batch in batches:
        if batch in failed:
            ok = False
            print(f"{backend:<12}{batch:>6}  {failed[batch]}")
            continue
        ratio = statistics.median(ours[batch]) / statistics.median(theirs[batch])
        ok &= 0.9 <= ratio <= 1.1
        note = "" if reset else "  (VmHWM not reset: reader is an upper bound)"
        print(f"{backend:<12}{batch:>6}  {mib(ours[batch]):<30}{mib(theirs[batch]):<30}{ratio:>6.2f}x{note}")
print(
    ("PASS" if ok else "FAIL")
    + f": devswitch's per-batch peak within 10% of a fresh process's VmHWM ({args.model}, medians of {args.repeats}, "
    f"glibc's mmap threshold {args.malloc})"
)
