"""The one import, for real: an ordinary Keras script in a subprocess under each switch.

What the machine has (GPUs and their compute capability, the CPU's bf16 instructions) is read here from
the hardware, and each test says what that machine must get: every test asserts something everywhere.
"""

from __future__ import annotations

import functools

import pytest
from conftest import SCRIPTS, Child, children, result_line
from errorparts import printed

pytestmark = pytest.mark.subprocess
SCRIPT = SCRIPTS / "ordinary_keras.py"


@functools.cache
def machine():
    """(GPU compute capabilities as TensorFlow sees them, whether the CPU has AVX512-BF16 or AMX-BF16)."""
    import tensorflow as tf

    from _devswitch.devices import detect_cpu

    ccs = tuple(tuple(tf.config.experimental.get_device_details(d).get("compute_capability") or (0, 0))
                for d in tf.config.list_physical_devices("GPU"))
    return ccs, bool({"AVX512-BF16", "AMX-BF16"} & detect_cpu().features)


def expected_half() -> str:
    """precision: half on TensorFlow: by the slowest GPU's tensor cores, else bf16 where the CPU has it."""
    ccs, cpu_bf16 = machine()
    if ccs:
        return "bf16" if min(ccs) >= (8, 0) else "fp16" if min(ccs) >= (7, 0) else "fp32"
    return "bf16" if cpu_bf16 else "fp32"


def summary(stderr: str) -> dict[str, tuple[str, str]]:
    """The one line the switch prints at start-up (``devswitch: device=VALUE (WHY) precision=VALUE (WHY) ...``),
    read into {setting: (value, why)}."""
    line = next(line for line in stderr.splitlines() if line.startswith("devswitch: device=") and " precision=" in line)
    said, rest = {}, line[len("devswitch: ") :]
    while rest:
        key, _, rest = rest.partition("=")
        value, _, rest = rest.partition(" (")
        depth, end = 1, 0
        while depth:  # the reason runs to its closing parenthesis (it may hold parentheses of its own)
            depth += {"(": 1, ")": -1}.get(rest[end], 0)
            end += 1
        said[key], rest = (value, rest[: end - 1]), rest[end:].lstrip()
    return said


def _switched(root):
    """Every switch of this module, each an ordinary Keras script in its own process."""
    project_file = lambda folder: (folder / ".devswitchrc").write_text("xla: true\nprecision: half\n")  # noqa: E731
    return {
        "bf16": Child([SCRIPT], {"DEVSWITCH_PRECISION": "bf16"}),
        "cpu": Child([SCRIPT], {"DEVSWITCH_DEVICE": "cpu"}),
        "gpu half": Child([SCRIPT], {"DEVSWITCH_DEVICE": "gpu", "DEVSWITCH_PRECISION": "half"}),
        "gpu or error": Child([SCRIPT], {"DEVSWITCH_FLAGS": "device=gpu,fallback=error"}),
        "fp8": Child([SCRIPT], {"DEVSWITCH_PRECISION": "fp8"}),
        "project file": Child([SCRIPT], {"DEVSWITCH_FLAGS": "threads=2:1"}, prepare=project_file),
        "disabled": Child([SCRIPT], {"DEVSWITCH_PRECISION": "bf16", "DEVSWITCH_DISABLE": "1"}),
        "too late": Child([SCRIPTS / "too_late.py"], {"DEVSWITCH_THREADS": "1"}),
        "late but same": Child([SCRIPTS / "too_late.py"], {"DEVSWITCH_DEVICE": "cpu"}),
    }


switched = children(_switched)


@pytest.fixture
def ran(switched):
    """``ran(name)`` waits for that switch's process (all started with the session's children)."""
    return lambda name: switched(name)[0]


@pytest.mark.cpu_features
def test_bf16_makes_the_layers_compute_in_bfloat16(ran):
    proc = ran("bf16")
    assert proc.returncode == 0, proc.stderr
    result = result_line(proc.stdout)
    assert result["hidden_compute_dtype"] == "bfloat16"
    assert result["hidden_variable_dtype"] == "float32"
    assert result["global_policy"] == "mixed_bfloat16"
    assert result["loss_finite"]
    ccs, cpu_bf16 = machine()
    if ccs:
        device = "gpu:" + ",".join(str(i) for i in range(len(ccs)))
        said = summary(proc.stderr)
        assert said["device"][0] == device and said["device"][1].startswith(f"auto: {len(ccs)} ")
        assert said["precision"] == ("bf16", "DEVSWITCH_PRECISION")
        assert ("precision=bf16 on compute capability" in proc.stderr) == (min(ccs) < (8, 0))  # the warning
    else:
        said = summary(proc.stderr)
        assert said["device"][0] == "cpu" and said["device"][1].startswith("auto")
        assert said["precision"] == ("bf16", "DEVSWITCH_PRECISION")
        assert ("precision=bf16 (DEVSWITCH_PRECISION) on a CPU" in proc.stderr) == (not cpu_bf16)  # the warning


def test_device_cpu_leaves_no_visible_gpu_and_fp32_by_default(ran):
    proc = ran("cpu")
    assert proc.returncode == 0, proc.stderr
    result = result_line(proc.stdout)
    assert result["visible_gpus"] == 0
    assert result["hidden_compute_dtype"] == "float32"
    assert summary(proc.stderr)["device"] == ("cpu", "DEVSWITCH_DEVICE")


@pytest.mark.cpu_features
def test_gpu_runs_on_the_gpus_or_falls_back_with_a_warning(ran):
    proc = ran("gpu half")
    assert proc.returncode == 0, proc.stderr
    ccs, _ = machine()
    said = summary(proc.stderr)
    assert said["precision"][0] == expected_half() and said["precision"][1].startswith("half")
    warned = "devswitch: device=gpu (DEVSWITCH_DEVICE)" in proc.stderr  # the warning: the setting, its source
    if ccs:
        assert said["device"][0].startswith("gpu:") and not warned
        assert result_line(proc.stdout)["visible_gpus"] == len(ccs)
    else:
        assert said["device"][0] == "cpu" and warned and "fallback=cpu" in proc.stderr and "TensorFlow" in proc.stderr
        assert result_line(proc.stdout)["visible_gpus"] == 0


def test_gpu_with_fallback_error_runs_there_or_stops_with_a_clear_message(ran):
    proc = ran("gpu or error")
    ccs, _ = machine()
    if ccs:
        assert proc.returncode == 0, proc.stderr
        assert result_line(proc.stdout)["visible_gpus"] == len(ccs)
        return
    assert proc.returncode == 3  # a DeviceError
    printed(proc.stderr, where="DEVSWITCH_FLAGS (device)", named=["device=gpu", "TensorFlow"], fix="fallback: cpu")
    assert "RESULT" not in proc.stdout


def test_bad_value_at_import_is_a_message_not_a_traceback(ran):
    proc = ran("fp8")
    assert proc.returncode == 2
    printed(proc.stderr, where="DEVSWITCH_PRECISION", named=["'fp8'", "'precision'"])


def test_project_file_sets_xla_and_flags_set_threads(ran):
    proc = ran("project file")
    assert proc.returncode == 0, proc.stderr
    result = result_line(proc.stdout)
    assert result["jit_compile"] is True
    assert result["intra_threads"] == 2


def test_disable_turns_the_import_into_a_no_op(ran):
    proc = ran("disabled")
    assert proc.returncode == 0, proc.stderr
    assert result_line(proc.stdout)["global_policy"] == "float32"
    assert "devswitch:" not in proc.stderr


def test_importing_after_tensorflow_started_is_too_late_for_threads(ran):
    proc = ran("too late")
    assert proc.returncode == 4  # a TooLateError
    printed(proc.stderr, named=["threads", "1", "TensorFlow"], fix="'import devswitch'")


def test_importing_late_is_fine_when_nothing_differs(ran):
    proc = ran("late but same")
    assert proc.returncode == 0, proc.stderr
