"""Every example runs on its own, with tiny settings, and prints what it promises.

Each example is its own process that starts TensorFlow (several seconds); they are queued with the session's
children (conftest.children), and each test waits for its own and checks what it promises.
"""

from __future__ import annotations

import pytest

from conftest import ROOT, Child, children

pytestmark = pytest.mark.subprocess
EXAMPLES = ROOT / "examples"


def _commands() -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each example's command line (after the Python interpreter) and its extra environment."""
    return {
        "existing_script by a variable": ([str(EXAMPLES / "existing_script.py"), "--epochs", "1"],
                                          {"DEVSWITCH_PRECISION": "bf16"}),
        "existing_script by devswitch run": (["-m", "devswitch", "run", "--precision", "bf16", "--report", "off",
                                              str(EXAMPLES / "existing_script.py"), "--epochs", "1"], {}),
        "train_classifier": ([str(EXAMPLES / "train_classifier.py"), "--epochs", "2", "--precisions", "fp32,bf16"],
                             {}),
        "matmul_scaling": ([str(EXAMPLES / "matmul_scaling.py"), "--max-size", "128", "--repeats", "1", "--plot",
                            "mm.png"], {}),
        "alexnet_inference": ([str(EXAMPLES / "alexnet_inference.py"), "--devices", "cpu", "--precisions", "fp32",
                               "--batch-sizes", "1", "--iterations", "2", "--warmup", "1", "--no-peak-probe",
                               "--no-predict-baseline", "--accuracy-samples", "0", "--out", "out"], {}),
    }


def _examples(root):
    return {name: Child(args, env, timeout=240) for name, (args, env) in _commands().items()}


# ``ran(name)``: that example's completed process and the folder it ran in (and wrote into)
ran = children(_examples, name="ran")


def test_existing_script_switched_by_a_variable(ran):
    proc, _ = ran("existing_script by a variable")
    assert proc.returncode == 0, proc.stderr
    assert "(policy mixed_bfloat16)" in proc.stdout and "test accuracy" in proc.stdout
    assert "devswitch: timed Keras calls" in proc.stderr


def test_existing_script_switched_by_devswitch_run(ran):
    proc, _ = ran("existing_script by devswitch run")
    assert proc.returncode == 0, proc.stderr
    assert "(policy mixed_bfloat16)" in proc.stdout and "timed Keras calls" not in proc.stderr


def test_train_classifier_compares_precisions_with_accuracy(ran):
    proc, _ = ran("train_classifier")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines()
             if line.startswith(("fp32", "bf16")) and "steady training" not in line}
    assert set(lines) == {"fp32", "bf16"}
    assert float(lines["fp32"][-1]) > 0.5 and float(lines["bf16"][-1]) > 0.5  # 2 epochs already learn digits
    assert "x the steady training throughput of fp32" in proc.stdout


def test_matmul_scaling_prints_the_table_and_plots(ran):
    proc, out = ran("matmul_scaling")
    assert proc.returncode == 0, proc.stderr
    assert "cpu:0 float32" in proc.stdout and "cpu:0 bfloat16 vs cpu:0 float32" in proc.stdout
    assert [line.split()[0] for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()] == ["64", "128"]
    assert (out / "mm.png").stat().st_size > 1000


def test_alexnet_example_runs_the_comparison(ran):
    proc, out = ran("alexnet_inference")
    assert proc.returncode == 0, proc.stderr
    assert "# devswitch compare: alexnet (inference)" in proc.stdout and "| img/s |" in proc.stdout
    assert (out / "out" / "results.json").exists()
