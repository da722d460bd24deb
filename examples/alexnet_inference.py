"""The whitepaper comparison on your machine: AlexNet inference at batch 1 and 128, FP32 vs half precision,
CPU vs GPU where there is one — img/s, W and img/s per W where power can be measured.

    python examples/alexnet_inference.py                     # the full comparison
    python examples/alexnet_inference.py --iterations 5      # quicker; any `devswitch compare` option works
    devswitch compare examples/alexnet_inference.py          # the same, through the command (uses build_model)

Columns that cannot run here (no GPU) appear as "unavailable" with the reason; nothing is estimated.
"""

import sys


def build_model():
    """AlexNet (50.8 M parameters, about 2.0 GFLOP per image), built under the policy devswitch applied."""
    from devswitch.models import alexnet

    return alexnet()


if __name__ == "__main__":
    from _devswitch.cli import main

    defaults = [
        "--devices",
        "cpu,gpu",
        "--precisions",
        "fp32,half",
        "--batch-sizes",
        "1,128",
        "--iterations",
        "10",
        "--warmup",
        "3",
    ]
    raise SystemExit(main(["compare", f"{__file__}:build_model", *defaults, *sys.argv[1:]]))
