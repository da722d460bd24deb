"""Training throughput of strategy=mirrored over 2 logical CPUs vs a single device, MLP and small CNN.

No target (issue 5): both "replicas" share the same 2 cores, so this measures what the mirrored machinery
costs or buys here, not scaling. Each configuration runs in a fresh process (cpu_replicas is fixed at
start-up) through the one import; samples/s is devswitch's steady-state figure for that fit. Rounds alternate.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

SCRIPT = r"""
import devswitch
import json, sys, keras, numpy as np
from _devswitch.models import mlp, small_cnn
name = sys.argv[1]
rng = np.random.default_rng(0)
shape = (784,) if name == "mlp" else (32, 32, 3)
x = rng.normal(size=(8192, *shape)).astype("float32"); y = rng.integers(0, 10, size=8192)
model = {"mlp": mlp, "small_cnn": small_cnn}[name]()
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
model.fit(x, y, epochs=4, batch_size=256, verbose=0)
r = devswitch.runs()[-1]
print("RESULT", json.dumps({"rate": r.steady_samples_per_s, "replicas": r.replicas}))
"""

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
    handle.write(SCRIPT)


def run(model: str, mirrored: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSWITCH")}
    env.update(DEVSWITCH_REPORT="summary", DEVSWITCH_LOG_LEVEL="error")
    if mirrored:
        env.update(DEVSWITCH_STRATEGY="mirrored", DEVSWITCH_CPU_REPLICAS="2")
    out = subprocess.run(
        [sys.executable, handle.name, model], env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT"))[7:])


print(f"{'model':<10}{'single samples/s':>18}{'mirrored x2 samples/s':>23}{'per replica':>13}{'ratio':>8}")
for model in ("mlp", "small_cnn"):
    single, mirrored = [], []
    for i in range(rounds):
        pair = [(False, single), (True, mirrored)]
        for is_mirrored, sink in pair if i % 2 == 0 else pair[::-1]:
            result = run(model, is_mirrored)
            assert result["replicas"] == (2 if is_mirrored else 1), result
            sink.append(result["rate"])
    s, m = statistics.median(single), statistics.median(mirrored)
    print(f"{model:<10}{s:>18,.0f}{m:>23,.0f}{m / 2:>13,.0f}{m / s:>7.2f}x")
print(f"(median of {rounds} alternating rounds; both configurations use the same 2 physical cores)")
os.unlink(handle.name)
