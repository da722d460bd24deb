"""Every example runs on its own, with tiny settings, and prints what it promises."""

from __future__ import annotations

import pytest

from conftest import ROOT

pytestmark = pytest.mark.subprocess
EXAMPLES = ROOT / "examples"


def test_existing_script_switched_by_a_variable(run_python):
    proc = run_python(EXAMPLES / "existing_script.py", "--epochs", "1", env={"DEVSWITCH_PRECISION": "bf16"})
    assert proc.returncode == 0, proc.stderr
    assert "(policy mixed_bfloat16)" in proc.stdout and "test accuracy" in proc.stdout
    assert "devswitch: timed Keras calls" in proc.stderr


def test_existing_script_switched_by_devswitch_run(tmp_path):
    import sys

    import subprocess

    from conftest import clean_environ

    proc = subprocess.run([sys.executable, "-m", "devswitch", "run", "--precision", "bf16", "--report", "off",
                           str(EXAMPLES / "existing_script.py"), "--epochs", "1"], cwd=tmp_path,
                          env=clean_environ(HOME=str(tmp_path)), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "(policy mixed_bfloat16)" in proc.stdout and "timed Keras calls" not in proc.stderr


def test_train_classifier_compares_precisions_with_accuracy(run_python):
    proc = run_python(EXAMPLES / "train_classifier.py", "--epochs", "2", "--precisions", "fp32,bf16")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines()
             if line.startswith(("fp32", "bf16")) and "steady training" not in line}
    assert set(lines) == {"fp32", "bf16"}
    assert float(lines["fp32"][-1]) > 0.5 and float(lines["bf16"][-1]) > 0.5  # 2 epochs already learn digits
    assert "x the steady training throughput of fp32" in proc.stdout


def test_matmul_scaling_prints_the_table_and_plots(run_python, tmp_path):
    plot = tmp_path / "mm.png"
    proc = run_python(EXAMPLES / "matmul_scaling.py", "--max-size", "128", "--repeats", "1", "--plot", str(plot))
    assert proc.returncode == 0, proc.stderr
    assert "cpu:0 float32" in proc.stdout and "cpu:0 bfloat16 vs cpu:0 float32" in proc.stdout
    assert [line.split()[0] for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()] == ["64", "128"]
    assert plot.stat().st_size > 1000


def test_alexnet_example_runs_the_comparison(run_python, tmp_path):
    out = tmp_path / "out"
    proc = run_python(EXAMPLES / "alexnet_inference.py", "--devices", "cpu", "--precisions", "fp32",
                      "--batch-sizes", "1", "--iterations", "2", "--warmup", "1", "--no-peak-probe",
                      "--no-predict-baseline", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "# devswitch compare: alexnet (inference)" in proc.stdout and "| img/s |" in proc.stdout
    assert (out / "results.json").exists()
