"""The float32 math mode: the setting, the pure decision on every backend and device, and the real thing on
this CPU (applied, read back from the framework, carried by the records)."""

from __future__ import annotations

import re

import pytest

import devswitch
from conftest import SCRIPTS, Child, children, result_line
from errorparts import parts
from _devswitch import backends
from _devswitch.cli.info import collect_info, render_info
from _devswitch.config import resolve
from _devswitch.decide import decide
from _devswitch.devices import Cpu, Gpu, Inventory
from _devswitch.errors import ConfigError

PLAIN_CPU = Cpu("Intel Xeon (no bf16)", 8, frozenset({"AVX2", "AVX-512"}))
BF16_CPU = Cpu("AMD EPYC", 2, frozenset({"AVX2", "AVX-512", "AVX512-BF16"}))
AMX_CPU = Cpu("Intel Sapphire Rapids", 32, frozenset({"AVX-512", "AVX512-BF16", "AMX", "AMX-BF16"}))


def gpus(*ccs: tuple[int, int]) -> tuple[Gpu, ...]:
    return tuple(Gpu(i, f"GPU{i} cc{cc[0]}{cc[1]}", cc, 16 * 2**30) for i, cc in enumerate(ccs))


INVENTORIES = {
    "no GPU": Inventory(PLAIN_CPU), "AVX512-BF16 CPU": Inventory(BF16_CPU), "AMX CPU": Inventory(AMX_CPU),
    "cc 6.1": Inventory(PLAIN_CPU, gpus((6, 1))), "cc 7.5": Inventory(PLAIN_CPU, gpus((7, 5))),
    "cc 8.0": Inventory(PLAIN_CPU, gpus((8, 0))), "cc 9.0": Inventory(PLAIN_CPU, gpus((9, 0))),
    "two GPUs 9.0 + 7.5": Inventory(PLAIN_CPU, gpus((9, 0), (7, 5))),  # the slowest selected GPU decides
    "two GPUs 8.0": Inventory(PLAIN_CPU, gpus((8, 0), (8, 0))),
}
# The kind of device each inventory is, for math: Ampere+ GPUs have TF32 and bf16 tensor cores.
AMPERE = {"cc 8.0", "cc 9.0", "two GPUs 8.0"}
OLD_GPU = {"cc 6.1", "cc 7.5", "two GPUs 9.0 + 7.5"}


def expected(backend: str, where: str, mode: str) -> tuple[str, str | None, bool]:
    """(label in the plan and the records, the mode the backend sets or None, warned) -- written out per
    backend from what each framework does, not computed by the code under test."""
    ampere = where in AMPERE
    if mode == "auto":
        if backend == "torch" and ampere:
            return "auto (ieee matmul, tf32 conv)", None, False  # PyTorch: full matmuls, TF32 cuDNN convolutions
        return ("auto (tf32)" if ampere else "auto (ieee)"), None, False
    if mode == "ieee":
        return "ieee", "ieee", False
    if mode == "tf32":
        return ("tf32", "tf32", False) if ampere else ("ieee", None, True)
    # bf16
    if backend == "tensorflow":  # no switch at all: TensorFlow's default stays, with a warning
        return ("tf32" if ampere else "ieee"), None, True
    if backend == "jax":
        return ("bf16", "bf16", False) if ampere else ("ieee", None, True)
    if where == "AMX CPU":
        return "bf16", "bf16", False
    if ampere:  # PyTorch's "medium" runs TF32 on CUDA: applied, and said
        return "tf32", "bf16", True
    return "ieee", None, True


CASES = [pytest.param(b, w, m, id=f"{b}, {w}, {m}") for b in backends.NAMES for w in INVENTORIES
         for m in ("auto", "ieee", "tf32", "bf16")]


@pytest.mark.parametrize("backend, where, mode", CASES)
def test_the_mode_in_force_per_backend_device_and_mode(backend, where, mode, home, project):
    config = resolve({"DEVSWITCH_BACKEND": backend, "DEVSWITCH_MATH": mode}, home, project)
    decision = decide(config, INVENTORIES[where], {})
    label, applied, warned = expected(backend, where, mode)
    plan = decision.plan
    assert (plan.math, plan.maths.apply) == (label, applied)
    math_warnings = [w for w in decision.warnings if w.startswith(f"math={mode}")]
    assert bool(math_warnings) is warned, decision.warnings
    if warned and applied is None:  # the setting, its source, and the mode in force instead
        assert math_warnings[0].startswith(f"math={mode} (DEVSWITCH_MATH)") and plan.maths.in_force in math_warnings[0]
    # the one line at start-up shows the mode when it is not plain ieee
    assert (f"math={label}" in plan.summary()) is (plan.maths.in_force != "ieee")


def test_a_mode_with_no_effect_says_why_in_the_words_of_the_backend(home, project):
    def warning(backend, mode, inventory):
        config = resolve({"DEVSWITCH_BACKEND": backend, "DEVSWITCH_MATH": mode}, home, project)
        return next(w for w in decide(config, inventory, {}).warnings if w.startswith("math="))

    # each names the backend's own mechanism (a variable, a library, an API) or the hardware it lacks
    for backend, mode, inventory, named in [
        ("tensorflow", "bf16", Inventory(AMX_CPU), ["ONEDNN_DEFAULT_FPMATH_MODE=BF16"]),
        ("jax", "bf16", Inventory(AMX_CPU), ["XLA:CPU", "jax_default_matmul_precision"]),
        ("torch", "bf16", Inventory(BF16_CPU), ["oneDNN", "AMX"]),
        ("torch", "bf16", Inventory(PLAIN_CPU), ["AVX512-BF16", "AMX"]),
        ("tensorflow", "tf32", INVENTORIES["cc 7.5"], ["TF32", "7.5", "8.0+"]),
        ("jax", "tf32", Inventory(PLAIN_CPU), ["TF32", "CPU"]),
        ("torch", "bf16", INVENTORIES["cc 8.0"], ["torch.set_float32_matmul_precision"]),
    ]:
        said = warning(backend, mode, inventory)
        assert said.startswith(f"math={mode} (DEVSWITCH_MATH)") and all(token in said for token in named), said


@pytest.mark.parametrize("backend, environ, mode, label, warned", [
    pytest.param("tensorflow", {"NVIDIA_TF32_OVERRIDE": "0"}, "auto", "auto (ieee)", False,
                 id="NVIDIA_TF32_OVERRIDE=0 turns TensorFlow's default TF32 off"),
    pytest.param("jax", {"NVIDIA_TF32_OVERRIDE": "0"}, "tf32", "ieee", True,
                 id="NVIDIA_TF32_OVERRIDE=0: tf32 has no effect, warned"),
    pytest.param("jax", {"JAX_DEFAULT_MATMUL_PRECISION": "bfloat16"}, "auto", "auto (bf16)", False,
                 id="JAX's own variable is what auto records"),
    pytest.param("jax", {"JAX_DEFAULT_MATMUL_PRECISION": "highest"}, "auto", "auto (ieee)", False,
                 id="JAX's own variable: highest"),
    pytest.param("torch", {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"}, "auto", "auto (tf32)", False,
                 id="PyTorch's cuBLAS TF32 override"),
], )
def test_auto_records_what_the_environment_puts_in_force(backend, environ, mode, label, warned, home, project):
    config = resolve({"DEVSWITCH_BACKEND": backend, "DEVSWITCH_MATH": mode}, home, project)
    decision = decide(config, INVENTORIES["cc 8.0"], environ)
    assert decision.plan.math == label
    assert any(w.startswith("math=") for w in decision.warnings) is warned


# --- the setting -----------------------------------------------------------------------------------------

def test_the_setting_from_a_file_a_variable_and_configure(home, project):
    (project / ".devswitchrc").write_text("math: tf32\n")
    cwd = project / "src"
    from_file = resolve({}, home, cwd)
    assert from_file.math == "tf32" and from_file["math"].source == "project file"
    from_env = resolve({"DEVSWITCH_MATH": " BF16 "}, home, cwd)
    assert from_env.math == "bf16" and from_env["math"].location == "DEVSWITCH_MATH"
    from_flags = resolve({"DEVSWITCH_FLAGS": "math=ieee"}, home, cwd)
    assert from_flags.math == "ieee"
    explicit = resolve({"DEVSWITCH_MATH": "bf16"}, home, cwd, {"math": "ieee"})
    assert explicit.math == "ieee" and explicit["math"].source == "explicit"
    assert resolve({}, home, home).math == "auto"


@pytest.mark.parametrize("value", ["tf16", "fp32", "", 32, True])
def test_a_bad_value_is_refused_with_the_allowed_ones(value, home, project):
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project, {"math": value})
    parts(info, ConfigError, where="devswitch.configure(math=...)", named=["'math'", "auto, ieee, tf32, bf16"])
    if value != "":  # an empty variable is an unset one
        with pytest.raises(ConfigError) as info:
            resolve({"DEVSWITCH_MATH": str(value)}, home, project)
        parts(info, ConfigError, where="DEVSWITCH_MATH", named=["'math'", "auto, ieee, tf32, bf16"])


def test_a_near_miss_is_named():
    with pytest.raises(ConfigError) as info:
        devswitch.configure(math="tf33")
    parts(info, ConfigError, where="devswitch.configure(math=...)", named=["'tf33'"], fix="'tf32'")


def test_the_cli_takes_the_option(home, project):
    from _devswitch.cli import build_parser
    from _devswitch.cli.common import explicit_from_args

    args = build_parser().parse_args(["info", "--math", "ieee"])
    assert resolve({}, home, project, explicit_from_args(args))["math"].location == "--math"


def test_info_shows_the_mode_in_force_and_what_each_mode_does_here(home, project):
    config = resolve({"DEVSWITCH_BACKEND": "torch", "DEVSWITCH_MATH": "bf16"}, home, project)
    data, code = collect_info(config, Inventory(BF16_CPU), {}, environ={})
    resolved = data["resolved"]
    assert code == 0 and resolved["math"] == "ieee" and resolved["math_in_force"] == "ieee"
    assert resolved["math_modes"]["bf16"].startswith("no effect here, float32 math stays ieee: oneDNN")
    assert resolved["math_modes"]["ieee"].startswith("ieee: torch.set_float32_matmul_precision('highest')")
    assert "tf32" in resolved["meanings"]["math"]
    text = render_info(data, width=200)
    machine = text[text.index("on this machine, with "):].splitlines()  # info's decision, its rows first
    rows: dict[str, list[str]] = {}
    for cells in (re.split(r"\s{2,}", line.strip()) for line in machine):
        rows.setdefault(cells[0], cells[1:])
    assert rows["math"][0] == "ieee" and rows["math"][1].startswith("(bf16") and "PyTorch" in rows["math"][1]
    assert rows["math=tf32"] == [resolved["math_modes"]["tf32"]]  # the text shows what the data says
    assert any(w.startswith("math=bf16 (DEVSWITCH_MATH) has no effect") for w in data["warnings"])
    ampere = collect_info(resolve({"DEVSWITCH_BACKEND": "tensorflow"}, home, project),
                          INVENTORIES["cc 9.0"], {}, environ={})[0]["resolved"]
    assert ampere["math"] == "auto (tf32)" and "tensor_float_32_execution_enabled() is True" in ampere["math_reason"]


# --- applied in this process (TensorFlow, the test process's backend) ----------------------------------------

def test_configure_applies_tf32_execution_and_reset_undoes_it(monkeypatch, tmp_path):
    import tensorflow as tf

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    default = tf.config.experimental.tensor_float_32_execution_enabled()
    try:
        plan = devswitch.configure(math="ieee", device="cpu")
        assert plan.math == "ieee" and tf.config.experimental.tensor_float_32_execution_enabled() is False
        plan = devswitch.configure(math="auto")  # back to TensorFlow's own default, recorded
        assert plan.math == "auto (ieee)" and tf.config.experimental.tensor_float_32_execution_enabled() is default
        devswitch.configure(math="ieee")
    finally:
        devswitch.reset()
    assert tf.config.experimental.tensor_float_32_execution_enabled() is default


# --- for real, one process per backend ----------------------------------------------------------------------

def _math_runs(root):
    return {backend: Child([SCRIPTS / "math_modes.py"], {"KERAS_BACKEND": backend, "DEVSWITCH_MATH": "ieee",
                                                          "DEVSWITCH_DEVICE": "cpu"})
            for backend in backends.NAMES if backends.installed(backend)}


started = children(_math_runs, name="started")


READ_BACK = {"tensorflow": False, "jax": "highest", "torch": ["highest", "ieee"]}
DEFAULT = {"tensorflow": True, "jax": None, "torch": ["highest", "none"]}


@pytest.mark.subprocess
@pytest.mark.parametrize("backend", [b for b in backends.NAMES if backends.installed(b)])
def test_each_backend_applies_the_mode_reads_it_back_and_records_it(backend, started):
    done, _ = started(backend)
    assert done.returncode == 0, done.stderr
    result = result_line(done.stdout)
    ieee = result["ieee"]
    assert ieee["framework"] == READ_BACK[backend], ieee   # the framework's own API says full float32
    assert ieee["plan"] == ieee["record"] == ieee["call"] == "ieee"  # the plan, a benchmark and a fit record it
    assert ieee["error_same_configuration"] <= 1e-6  # against a reference of the same configuration, this backend
    assert result["auto"] == {"framework": DEFAULT[backend], "plan": "auto (ieee)"}
    assert result["after_reset"] == DEFAULT[backend]
    bf16 = result["bf16"]
    if backend == "torch" and "AMX-BF16" in result["cpu_flags"]:
        assert bf16["plan"] == "bf16" and bf16["rel_error"] > 1e-4  # bf16 internal math really happened
    else:
        assert bf16["plan"] == "ieee" and bf16["rel_error"] < 1e-6, bf16
        assert "math=bf16 (devswitch.configure(math=...))" in done.stderr  # the warning: the setting, its source
        # what the warning claims, measured: forcing it by hand changes nothing on this CPU
        assert bf16.get("forced_rel_error", 0.0) < 1e-6, bf16
