"""The device and precision choice for every hardware branch, through an injected inventory."""

from __future__ import annotations

import pytest
from errorparts import parts

from _devswitch.config import resolve
from _devswitch.decide import choose
from _devswitch.devices import Cpu, Gpu, Inventory, detect_cpu
from _devswitch.errors import DeviceError

PLAIN_CPU = Cpu("Intel Xeon (no bf16)", 8, frozenset({"AVX2", "AVX-512"}))
BF16_CPU = Cpu("AMD EPYC", 2, frozenset({"AVX2", "AVX-512", "AVX512-BF16"}))
AMX_CPU = Cpu("Intel Sapphire Rapids", 32, frozenset({"AVX-512", "AMX", "AMX-BF16"}))


def gpus(*ccs: tuple[int, int]) -> tuple[Gpu, ...]:
    return tuple(Gpu(i, f"GPU{i} cc{cc[0]}{cc[1]}", cc, 16 * 2**30) for i, cc in enumerate(ccs))


def plan_for(env: dict, inventory: Inventory, home, project):
    return choose(resolve(env, home, project), inventory)


@pytest.mark.parametrize("env, inventory, device, visible, precision, warns", [
    pytest.param({}, Inventory(PLAIN_CPU), "cpu", (), "fp32", None, id="no GPU: auto is the CPU"),
    pytest.param({}, Inventory(PLAIN_CPU, gpus((7, 5))), "gpu:0", (0,), "fp32", None, id="one GPU: auto uses it"),
    pytest.param({}, Inventory(PLAIN_CPU, gpus((8, 0), (8, 0))), "gpu:0,1", (0, 1), "fp32", None,
                 id="two GPUs: auto uses both"),
    pytest.param({"DEVSWITCH_DEVICE": "gpu:1"}, Inventory(PLAIN_CPU, gpus((8, 0), (8, 0))), "gpu:1", (1,),
                 "fp32", None, id="gpu:1 picks the second GPU"),
    pytest.param({"DEVSWITCH_DEVICE": "cpu"}, Inventory(PLAIN_CPU, gpus((8, 0))), "cpu", (), "fp32", None,
                 id="cpu hides the GPUs"),
    pytest.param({"DEVSWITCH_PRECISION": "half"}, Inventory(PLAIN_CPU, gpus((8, 0))), "gpu:0", (0,), "bf16",
                 None, id="half on cc 8.0 is bf16"),
    pytest.param({"DEVSWITCH_PRECISION": "half"}, Inventory(PLAIN_CPU, gpus((7, 5))), "gpu:0", (0,), "fp16",
                 None, id="half on cc 7.5 is fp16"),
    pytest.param({"DEVSWITCH_PRECISION": "half"}, Inventory(PLAIN_CPU, gpus((6, 1))), "gpu:0", (0,), "fp32",
                 "no tensor cores", id="half on cc 6.1 stays fp32 with a warning"),
    pytest.param({"DEVSWITCH_PRECISION": "half"}, Inventory(PLAIN_CPU, gpus((8, 0), (7, 5))), "gpu:0,1", (0, 1),
                 "fp16", None, id="mixed GPUs: the slowest decides"),
    pytest.param({"DEVSWITCH_PRECISION": "half", "DEVSWITCH_DEVICE": "gpu:0"},
                 Inventory(PLAIN_CPU, gpus((8, 0), (7, 5))), "gpu:0", (0,), "bf16", None,
                 id="only the selected GPUs count"),
    pytest.param({"DEVSWITCH_PRECISION": "half"}, Inventory(BF16_CPU), "cpu", (), "bf16", None,
                 id="half on an AVX512-BF16 CPU is bf16"),
    pytest.param({"DEVSWITCH_PRECISION": "half"}, Inventory(AMX_CPU), "cpu", (), "bf16", None,
                 id="half on an AMX CPU is bf16"),
    pytest.param({"DEVSWITCH_PRECISION": "half"}, Inventory(PLAIN_CPU), "cpu", (), "fp32", None,
                 id="half on a CPU without bf16 is fp32"),
    pytest.param({"DEVSWITCH_PRECISION": "fp16"}, Inventory(BF16_CPU), "cpu", (), "fp16", "0.83x of fp32 at batch 128",
                 id="fp16 on a CPU is honoured but warned"),
    pytest.param({"DEVSWITCH_PRECISION": "fp16"}, Inventory(PLAIN_CPU, gpus((6, 1))), "gpu:0", (0,), "fp16",
                 "no tensor cores", id="fp16 on cc 6.1 warns"),
    pytest.param({"DEVSWITCH_PRECISION": "bf16"}, Inventory(PLAIN_CPU, gpus((7, 5))), "gpu:0", (0,), "bf16",
                 "needs 8.0", id="bf16 on cc 7.5 warns"),
    pytest.param({"DEVSWITCH_PRECISION": "bf16"}, Inventory(PLAIN_CPU), "cpu", (), "bf16", "emulated",
                 id="bf16 on a CPU without bf16 warns"),
    pytest.param({"DEVSWITCH_DEVICE": "gpu"}, Inventory(BF16_CPU), "cpu", (), "fp32", "falling back to the CPU",
                 id="gpu asked, none there: fallback to the CPU with a warning"),
    pytest.param({"DEVSWITCH_DEVICE": "gpu:0", "DEVSWITCH_PRECISION": "half"}, Inventory(BF16_CPU), "cpu", (),
                 "bf16", "falling back", id="after a fallback, half is decided for the CPU"),
])
def test_choice(home, project, env, inventory, device, visible, precision, warns):
    plan = plan_for(env, inventory, home, project)
    assert (plan.device, plan.gpus, plan.precision) == (device, visible, precision)
    if warns:
        assert any(warns in w for w in plan.warnings), plan.warnings
    else:
        assert plan.warnings == ()


def test_reasons_name_where_the_value_came_from(home, project):
    (project / ".devswitchrc").write_text("precision: half\n")
    plan = plan_for({"DEVSWITCH_DEVICE": "cpu"}, Inventory(BF16_CPU), home, project)
    assert plan.summary().startswith("device=cpu (DEVSWITCH_DEVICE) precision=bf16 (half: CPU has AVX512-BF16")
    assert plan.policy == "mixed_bfloat16"


def test_gpu_index_out_of_range_lists_the_gpus(home, project):
    inventory = Inventory(PLAIN_CPU, gpus((7, 5)))
    with pytest.raises(DeviceError) as info:
        plan_for({"DEVSWITCH_DEVICE": "gpu:3"}, inventory, home, project)
    parts(info, DeviceError, where="DEVSWITCH_DEVICE", named=["device=gpu:3", inventory.gpus[0].describe()],
          fix="0 to 0")  # the index asked for, each GPU there is, the indices allowed


def test_fallback_error_raises_naming_the_setting(home, project):
    (project / ".devswitchrc").write_text("device: gpu\nfallback: error\n")
    with pytest.raises(DeviceError) as info:
        plan_for({}, Inventory(PLAIN_CPU), home, project)
    parts(info, DeviceError, where=f"{project / '.devswitchrc'}:1:9", named=["device=gpu", "TensorFlow"],
          fix="fallback: cpu", exit_code=3)


def test_detect_cpu_reads_model_and_features(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\n"
                       "flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 amx_tile amx_bf16\n\n")
    cpu = detect_cpu(str(cpuinfo))
    assert cpu.model == "Test CPU 9000"
    assert cpu.features == {"AVX2", "FMA", "AVX-512", "AVX512-BF16", "AMX", "AMX-BF16"}
    assert cpu.native_bf16 and cpu.cores >= 1


def test_detect_cpu_without_cpuinfo_still_answers(tmp_path):
    cpu = detect_cpu(str(tmp_path / "missing"))
    assert cpu.features == frozenset() and not cpu.native_bf16 and cpu.cores >= 1


@pytest.mark.parametrize("edits, native", [
    pytest.param("-AVX512-BF16,-AMX-BF16", False, id="bf16 hidden on a bf16 CPU"),
    pytest.param("-avx512_bf16", True, id="one of two hidden, /proc spelling: AMX still native"),
    pytest.param("+AVX512-BF16", True, id="claimed on a CPU without it"),
    pytest.param("", True, id="no edits: as reported"),
])
def test_cpu_feature_edits_change_what_devswitch_decides_and_say_so(tmp_path, edits, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: avx2 fma avx512f avx512_bf16 amx_bf16\n\n")
    cpu = detect_cpu(str(cpuinfo), {"DEVSWITCH_CPU_FEATURES": edits})
    assert cpu.native_bf16 == native
    if edits:
        assert cpu.edits and cpu.edited_note == f" (DEVSWITCH_CPU_FEATURES={','.join(cpu.edits)} applied)"
    else:
        assert cpu.edits == () and cpu.edited_note == ""
    if edits.startswith("+"):  # the reverse lane: on a CPU without bf16, claiming it turns bf16 on
        plain = tmp_path / "plain"
        plain.write_text("flags\t\t: avx2 fma\n")
        assert not detect_cpu(str(plain), {}).native_bf16 and detect_cpu(str(plain), {"DEVSWITCH_CPU_FEATURES": edits}).native_bf16


def test_hidden_bf16_reaches_the_decision_and_its_reason():
    from _devswitch.devices import bf16_missing, half

    cpu = Cpu("Test CPU", 2, frozenset({"AVX2"}), ("-AVX512-BF16", "-AMX-BF16"))
    why = bf16_missing(Inventory(cpu), ())
    assert why == ("this CPU has no native bf16 (AVX512-BF16 or AMX) (DEVSWITCH_CPU_FEATURES=-AVX512-BF16,-AMX-BF16 "
                   "applied); it would be emulated")
    precision, reason, _ = half(Inventory(cpu), (), ("bf16", "measured faster"))
    assert precision == "fp32" and "DEVSWITCH_CPU_FEATURES=-AVX512-BF16,-AMX-BF16 applied" in reason


@pytest.mark.parametrize("edits", ["AVX512-BF16", "-NOPE", "+", "-avx512 bf16", "~AMX"])
def test_a_bad_cpu_feature_edit_is_a_config_error_naming_the_variable(tmp_path, edits):
    from _devswitch.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        detect_cpu(str(tmp_path / "missing"), {"DEVSWITCH_CPU_FEATURES": edits})
    error = parts(info, ConfigError, where="DEVSWITCH_CPU_FEATURES")
    assert "+NAME" in str(error) and "-NAME" in str(error)  # the form expected
