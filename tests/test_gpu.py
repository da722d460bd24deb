"""The GPU lane (``pytest -m gpu``): the switch on a real GPU, on JAX and PyTorch, and on TensorFlow where it is
installed. Every test skips with the reason on a machine without one; there, each runs for real in its own
process (one framework per process). benchmarks/gpu_check.sh runs this lane on a GPU machine."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import shutil
import subprocess
import sys

import pytest

from conftest import SCRIPTS, clean_environ

pytestmark = [pytest.mark.gpu, pytest.mark.subprocess]

BACKENDS = ("jax", "torch", "tensorflow")


@functools.cache
def no_gpu() -> str | None:
    """Why this machine has no GPU to test on, asked of the driver (nvidia-smi), not of devswitch; None if it has."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no NVIDIA GPU here: nvidia-smi is not on PATH"
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"nvidia-smi -L did not answer: {error}"
    if listed.returncode != 0 or "GPU 0" not in listed.stdout:
        return f"nvidia-smi lists no GPU (exit {listed.returncode}): {(listed.stdout + listed.stderr).strip()[:200]}"
    return None


def _needs(backend: str) -> None:
    """Skip, with the reason, unless there is a GPU and ``backend`` with Keras is installed."""
    if no_gpu():
        pytest.skip(no_gpu())
    for module in ("keras", backend):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


def _child(args: list[str], backend: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    environ = clean_environ(HOME=str(tmp_path), KERAS_BACKEND=backend, PYTHONUNBUFFERED="1", **env)
    return subprocess.run([sys.executable, *args], env=environ, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)


_PROBED: dict[str, subprocess.CompletedProcess] = {}  # one gpu_probe.py process per backend, for the session


@pytest.fixture(params=BACKENDS)
def probe(request, tmp_path_factory) -> dict:
    """gpu_probe.py's result on one backend (one process per backend, shared by the tests below)."""
    backend = request.param
    _needs(backend)
    if backend not in _PROBED:
        _PROBED[backend] = _child([str(SCRIPTS / "gpu_probe.py")], backend, tmp_path_factory.mktemp(f"gpu-{backend}"),
                                  DEVSWITCH_DEVICE="gpu:0", DEVSWITCH_PRECISION="half", DEVSWITCH_MATH="ieee",
                                  DEVSWITCH_FALLBACK="error")
    proc = _PROBED[backend]
    for line in proc.stdout.splitlines():
        if line.startswith("NOGPU "):
            pytest.skip(line[len("NOGPU "):])
    assert proc.returncode == 0, proc.stderr[-4000:]
    (result,) = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return result


def test_device_gpu0_is_applied_and_read_back_from_the_framework(probe):
    assert probe["plan"]["device"] == "gpu:0" and probe["plan"]["gpus"] == [0], probe["plan"]
    where = probe["placed"].lower()
    assert ("gpu" in where or "cuda" in where) and "cpu" not in where, f"{probe['backend']} put a tensor on {where}"


def test_half_is_bf16_from_compute_capability_8_and_a_real_fit_learns(probe):
    cc = tuple(probe["cc"])
    expected = "bf16" if cc >= (8, 0) else "fp16" if cc >= (7, 0) else "fp32"
    assert probe["plan"]["precision"] == expected, probe["plan"]["summary"]
    dtype = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[expected]
    assert probe["half"]["compute_dtype"] == dtype
    losses = probe["half"]["losses"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses


def test_math_ieee_against_tf32_is_applied_read_back_and_its_error_measured(probe):
    ieee, tf32 = probe["math"]["ieee"], probe["math"]["tf32"]
    assert ieee["plan"] == "ieee" and tf32["plan"].startswith("tf32"), (ieee["plan"], tf32["plan"])
    assert ieee["state"] != tf32["state"], "the framework's own setting did not change"
    assert ieee["rel_error"] < 1e-5  # float32: ~1e-7 on a 2048-long dot product
    if tuple(probe["cc"]) >= (8, 0):  # TF32 keeps 10 bits of mantissa: ~1e-4..1e-3
        assert tf32["rel_error"] > 10 * ieee["rel_error"], (ieee, tf32)


def test_the_benchmark_record_carries_the_gpu_peak_memory(probe):
    bench = probe["benchmark"]
    assert bench["status"] == "ok" and bench["device"].startswith("gpu")
    assert bench["gpu_memory_peak_bytes"] and bench["gpu_memory_peak_bytes"] > 256 * 32 * 4, bench
    assert bench["samples_per_s"] and bench["samples_per_s"] > 0


def test_each_batch_size_has_its_own_allocator_peak_on_the_gpu(probe):
    """mlp at batch 16384 holds a 51 MB input and 34 MB activations more than at batch 256: the larger batch's
    allocator peak is larger by at least the input, each figure says which allocator measured it, and none is
    hidden by the matmul probe (which runs after them)."""
    small, large = probe["peak_memory"]
    assert small["status"] == large["status"] == "ok", (small, large)
    assert large["peak"] and large["peak"] > 16384 * 784 * 4, large
    assert "allocator" in large["source"] and "unknown" not in large["source"], large
    if small["peak"] is None:  # JAX's peak has no reset: the probe script's own matmuls had set it higher
        assert probe["backend"] == "jax" and "unknown here" in small["source"], small
    else:
        assert large["peak"] - small["peak"] > (16384 - 256) * 784 * 4, (small, large)
        assert small["peak"] == small["gpu_peak"] and "allocator" in small["source"], small


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_alexnet_gpu_columns_run_and_nvml_power_is_measured_or_says_why(backend, tmp_path):
    _needs(backend)
    proc = _child(["-m", "devswitch", "compare", "alexnet", "--backends", backend, "--devices", "gpu",
                   "--precisions", "fp32,half", "--batch-sizes", "1,128", "--iterations", "5", "--warmup", "2", "--min-time", "1",
                   "--rounds", "1", "--out", "out"], backend, tmp_path, DEVSWITCH_MEMORY_GROWTH="true")
    assert proc.returncode == 0, proc.stderr[-4000:]
    cells = json.loads((tmp_path / "out" / "results.json").read_text())["cells"]
    assert len(cells) == 4 and all(c["status"] == "ok" for c in cells), [c["status"] for c in cells]
    assert all(c["record"]["device"].startswith("gpu") for c in cells)
    nvml = importlib.util.find_spec("pynvml") is not None
    for cell in cells:
        energy = cell["record"]["energy"]
        if nvml:
            assert energy["available"] and energy["source"].lower().startswith("nvml"), energy
            assert 10 < energy["mean_watts"] < 2000, energy  # an H200 draws 100-700 W
        else:
            assert not energy["available"] and "nvml" in (energy["reason"] or "").lower(), energy


FIND_BATCH = """
import json
import devswitch
r = devswitch.find_batch_size("small_cnn", max_batch=1 << 22, min_time=0.0)
print("RESULT " + json.dumps({"batch": r.batch_size, "reason": r.reason, "peaks": r.peak_source,
                              "trials": [[t.batch, t.fits, t.peak_bytes, t.note] for t in r.trials]}))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_find_batch_size_meets_the_frameworks_own_out_of_memory(backend, tmp_path):
    """On a real GPU the search grows until the framework's own out-of-memory error, which it recognises (never
    raises), then searches between; every batch that fit has the allocator's peak (JAX: where it rose)."""
    _needs(backend)
    proc = _child(["-c", FIND_BATCH], backend, tmp_path, DEVSWITCH_DEVICE="gpu:0", DEVSWITCH_FALLBACK="error")
    assert proc.returncode == 0, proc.stderr[-4000:]
    (result,) = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert result["batch"] and "does not fit (out of memory" in result["reason"], result
    fitted, failed = [t for t in result["trials"] if t[1]], [t for t in result["trials"] if not t[1]]
    assert max(t[0] for t in fitted) == result["batch"] < min(t[0] for t in failed)
    assert all(t[3].startswith("out of memory") for t in failed)
    assert all(t[2] for t in fitted) if backend != "jax" else any(t[2] for t in fitted), result


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_limit_is_applied_read_back_and_met_on_a_real_gpu(backend, tmp_path):
    """memory_limit=0.25 on gpu:0: the framework itself reports a cap of a quarter of the GPU (TensorFlow's
    logical device, JAX's bytes_limit, PyTorch's per-process fraction), refuses a buffer of 0.4 of the GPU with
    its own out-of-memory error, and still takes one of 0.05."""
    _needs(backend)
    proc = _child([str(SCRIPTS / "gpu_memory_limit.py")], backend, tmp_path, DEVSWITCH_DEVICE="gpu:0",
                  DEVSWITCH_MEMORY_LIMIT="0.25", DEVSWITCH_FALLBACK="error")
    if proc.stdout.startswith("NOGPU "):
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, proc.stderr[-4000:]
    (result,) = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert result["total_bytes"], result
    assert result["limit_bytes"] == pytest.approx(0.25 * result["total_bytes"], rel=0.05), result
    assert result["above_the_cap"] == "oom" and result["below_the_cap"] == "ok", result
