"""devswitch compare's wall time vs the work it measures (target, issue 4: at most 1.5x).

"Measured work" = every configuration's measured phases (first call + warm-up + timed + predict baseline +
peak probe) plus one TensorFlow start-up per configuration (spawn to devswitch applied), as recorded in
results.json by compare itself. The rest — model builds, process exits, orchestration — is the overhead.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

args = sys.argv[1:] or ["alexnet", "--iterations", "5", "--warmup", "2"]
with tempfile.TemporaryDirectory() as out:
    subprocess.run([sys.executable, "-m", "devswitch", "compare", *args, "--out", out], check=False,
                   stdout=subprocess.DEVNULL)
    timing = json.loads((Path(out) / "results.json").read_text())["timing"]
print(f"{'configuration':<16}{'wall':>8}{'start-up':>10}{'measured':>10}")
for c in timing["configurations"]:
    print(f"{c['device'] + ' ' + c['precision']:<16}{c['wall_s']:>7.1f}s{c['startup_s'] or 0:>9.1f}s"
          f"{c['measured_s']:>9.1f}s")
ratio = timing["overhead_ratio"]
print(f"total {timing['total_s']:.1f} s = {ratio:.2f}x (measured {timing['sum_measured_s']:.1f} s + start-ups "
      f"{timing['sum_startup_s']:.1f} s)")
print(("PASS" if ratio <= 1.5 else "FAIL") + ": devswitch compare wall time <= 1.5x measured phases + start-ups")
