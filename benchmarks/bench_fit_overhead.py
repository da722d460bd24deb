"""A script's fit through the one import vs the same fit without devswitch (target: at most 1.02x).

Each run is a fresh process running the same script; only DEVSWITCH_DISABLE differs. The script times its
own fit() call (the import is not included). Runs alternate plain/devswitch; the ratio is the median of the
per-pair ratios.
"""

import os
import statistics
import subprocess
import sys
import tempfile

SCRIPT = r'''
import devswitch
import time, keras, numpy as np
rng = np.random.default_rng(0)
x = rng.normal(size=(4096, 32, 32, 3)).astype("float32"); y = rng.integers(0, 10, size=4096)
from devswitch.models import small_cnn
model = small_cnn(); model.compile("adam", "sparse_categorical_crossentropy")
t0 = time.perf_counter()
model.fit(x, y, epochs=3, batch_size=128, verbose=0)
print("FIT", time.perf_counter() - t0)
'''

pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 6
with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
    handle.write(SCRIPT)


def run(disabled: bool) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSWITCH")}
    env["DEVSWITCH_REPORT"] = "summary"
    if disabled:
        env["DEVSWITCH_DISABLE"] = "1"
    out = subprocess.run([sys.executable, handle.name], env=env, capture_output=True, text=True, check=True).stdout
    return float(next(line for line in out.splitlines() if line.startswith("FIT")).split()[1])


ratios = []
for i in range(pairs):
    if i % 2:  # alternate which goes first
        ours, plain = run(False), run(True)
    else:
        plain, ours = run(True), run(False)
    ratios.append(ours / plain)
    print(f"pair {i + 1}: plain {plain:.2f} s, devswitch {ours:.2f} s, ratio {ours / plain:.3f}")
median = statistics.median(ratios)
print(f"median ratio devswitch/plain over {pairs} pairs: {median:.3f}x (min {min(ratios):.3f}, max {max(ratios):.3f})")
print(("PASS" if median <= 1.02 else "FAIL") + ": fit through the one import <= 1.02x plain fit")
os.unlink(handle.name)
