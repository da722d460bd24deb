"""A device's theoretical peak (issue 21 item 5): the arithmetic of every instruction-set branch on injected
features and clocks, the GPU table, no peak (and no fraction) where none can be known, and the fraction and its
footnote as the compare table renders them."""

from __future__ import annotations

import json

import pytest

from _devswitch.benchrecord import BenchmarkRecord
from _devswitch.peaks import CpuFacts, Peak, cpu_peak, device_peak, gpu_peak, peak_dtype, read_cpu_facts
from _devswitch.plans import Cpu, Gpu
from _devswitch.statistics import Summary

AT_2_45 = CpuFacts(2.45, "cpuinfo_max_freq")


def cpu(*features: str, cores: int = 2, edits: tuple[str, ...] = ()) -> Cpu:
    return Cpu("test CPU", cores, frozenset(features), edits)


@pytest.mark.parametrize("features, dtype, facts, gflops, words", [
    pytest.param(("AVX2", "FMA"), "fp32", AT_2_45, 2 * 2 * 8 * 2 * 2.45,
                 "2 cores x 2 FMA x 8 lanes (AVX2) x 2 x 2.45 GHz (cpuinfo_max_freq) = 157 GFLOP/s fp32",
                 id="AVX2: 8 fp32 lanes (BASELINES.md's Zen 3: 157 GFLOP/s)"),
    pytest.param(("AVX2", "FMA", "AVX-512"), "fp32", CpuFacts(2.6, "cpu MHz"), 2 * 2 * 16 * 2 * 2.6,
                 "2 FMA x 16 lanes (AVX-512) x 2 x 2.60 GHz", id="AVX-512: 16 fp32 lanes"),
    pytest.param(("AVX2", "FMA", "AVX-512"), "fp32", CpuFacts(2.45, "cpuinfo_max_freq", avx512_halves=True),
                 2 * 2 * 8 * 2 * 2.45, "8 lanes (AVX-512) (AVX-512 on 256-bit halves: AMD family 25)",
                 id="AMD Zen 4: AVX-512 on 256-bit halves"),
    pytest.param(("AVX2", "FMA", "AVX-512"), "tf32", AT_2_45, 2 * 2 * 16 * 2 * 2.45, "= 314 GFLOP/s fp32",
                 id="tf32 is fp32 on a CPU"),
    pytest.param(("AVX-512", "AVX512-BF16"), "bf16", AT_2_45, 2 * 2 * 32 * 2 * 2.45,
                 "2 FMA x 32 bf16 lanes (AVX512-BF16) x 2", id="AVX512-BF16: 2 bf16 products per fp32 lane"),
    pytest.param(("AVX-512", "AVX512-BF16", "AMX-BF16", "AMX"), "bf16", CpuFacts(2.6, "cpu MHz"), 2 * 1024 * 2.6,
                 "2 cores x 1024 bf16 FLOP/cycle (AMX-BF16, Intel's figure per core) x 2.60 GHz",
                 id="AMX-BF16: 1024 bf16 FLOP per cycle per core"),
    pytest.param(("AVX-512", "AVX512-FP16"), "fp16", AT_2_45, 2 * 2 * 32 * 2 * 2.45,
                 "32 fp16 lanes (AVX512-FP16)", id="AVX512-FP16: native fp16"),
    pytest.param(("AVX-512", "AVX512-FP16", "AMX-FP16"), "fp16", AT_2_45, 2 * 1024 * 2.45, "(AMX-FP16",
                 id="AMX-FP16"),
])
def test_the_cpu_peak_is_cores_fma_units_lanes_two_and_the_clock(features, dtype, facts, gflops, words):
    peak = cpu_peak(cpu(*features), dtype, facts)
    assert peak.gflops == pytest.approx(gflops)
    assert peak.how.startswith("peak: 2 cores x ") and words in peak.how, peak.how
    assert ("2 FMA units per core assumed" in peak.how) == ("AMX" not in words)


@pytest.mark.parametrize("features, dtype, why", [
    pytest.param(("AVX2", "FMA", "AVX-512", "AVX512-BF16", "AMX-BF16"), "fp16", "fp16 is emulated on this CPU",
                 id="fp16 without AVX512-FP16 or AMX-FP16 (the AMX-BF16 machine)"),
    pytest.param(("AVX2", "FMA"), "bf16", "bf16 is emulated on this CPU", id="bf16 without AVX512-BF16 or AMX"),
    pytest.param(("AVX",), "fp32", "no vector FMA", id="no AVX2 with FMA"),
])
def test_no_peak_where_the_cpu_only_emulates_the_dtype(features, dtype, why):
    peak = cpu_peak(cpu(*features), dtype, AT_2_45)
    assert peak.gflops is None and peak.how.startswith("no peak: ") and why in peak.how
    assert peak.fraction(100.0) is None


def test_no_peak_without_a_clock_and_edited_features_are_named():
    assert cpu_peak(cpu("AVX2", "FMA"), "fp32", CpuFacts(None, "no clock readable")).gflops is None
    edited = cpu_peak(cpu("AVX2", "FMA", edits=("-AVX512-BF16",)), "bf16", AT_2_45)
    assert edited.gflops is None and "DEVSWITCH_CPU_FEATURES=-AVX512-BF16 applied" in edited.how


def test_the_cores_are_those_devswitch_uses_counted_as_physical_cores():
    """The threads setting caps the cores; logical CPUs sharing a core (SMT) count as one core."""
    assert cpu_peak(cpu("AVX2", "FMA", cores=8), "fp32", AT_2_45, threads=1).gflops == pytest.approx(32 * 2.45)
    smt = cpu_peak(cpu("AVX2", "FMA", cores=4), "fp32", CpuFacts(2.0, "cpuinfo_max_freq", threads_per_core=2))
    assert smt.gflops == pytest.approx(2 * 32 * 2.0) and "(4 logical CPUs, 2 per core)" in smt.how


def test_the_clock_is_the_highest_readable(tmp_path):
    """cpufreq's maximum (turbo included) first, else /proc/cpuinfo's cpu MHz, said to be the clock now."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\ncpu MHz\t\t: 2600.000\n"
                    "siblings\t: 4\ncpu cores\t: 2\nflags\t\t: fpu avx2\n\nprocessor\t: 1\ncpu MHz\t\t: 1.0\n")
    top = tmp_path / "cpuinfo_max_freq"
    top.write_text("3500000\n")
    facts = read_cpu_facts(str(top), str(info))
    assert (facts.ghz, facts.clock_source) == (3.5, "cpuinfo_max_freq")
    assert facts.threads_per_core == 2 and facts.avx512_halves
    facts = read_cpu_facts(str(tmp_path / "absent"), str(info))
    assert facts.ghz == 2.6 and "cpu MHz" in facts.clock_source and "turbo" in facts.clock_source
    none = read_cpu_facts(str(tmp_path / "absent"), str(tmp_path / "absent"))
    assert none.ghz is None and not none.avx512_halves and none.threads_per_core == 1


@pytest.mark.parametrize("name, dtype, tflops", [
    pytest.param("NVIDIA H200", "fp32", 67, id="H200 fp32"),
    pytest.param("NVIDIA H200", "tf32", 495, id="H200 tf32"),
    pytest.param("NVIDIA H100 80GB HBM3", "bf16", 989, id="H100 SXM bf16"),
    pytest.param("NVIDIA H100 PCIe", "bf16", 756, id="H100 PCIe is not the SXM"),
    pytest.param("NVIDIA A100-SXM4-80GB", "tf32", 156, id="A100 tf32"),
    pytest.param("NVIDIA A100-PCIE-40GB", "fp16", 312, id="A100 fp16"),
    pytest.param("Tesla V100-SXM2-16GB", "fp16", 125, id="V100 fp16 tensor cores"),
    pytest.param("Tesla V100-SXM2-16GB", "tf32", 15.7, id="V100 has no tf32: float32 at the fp32 rate"),
    pytest.param("Tesla T4", "fp16", 65, id="T4"),
    pytest.param("NVIDIA L4", "bf16", 121, id="L4 is not L40S"),
    pytest.param("NVIDIA L40S", "bf16", 362, id="L40S"),
    pytest.param("NVIDIA GeForce RTX 4090", "fp32", 82.6, id="RTX 4090"),
])
def test_the_gpu_peak_comes_from_the_table_matched_by_name(name, dtype, tflops):
    peak = gpu_peak(Gpu(0, name, (9, 0)), dtype)
    assert peak.gflops == pytest.approx(tflops * 1000)
    assert peak.how.startswith("peak: ") and "spec sheet" in peak.how and name in peak.how


@pytest.mark.parametrize("name, dtype", [
    pytest.param("NVIDIA A10G", "fp32", id="a GPU not in the table (A10G is not A10)"),
    pytest.param("AMD Instinct MI300X", "bf16", id="another maker"),
    pytest.param("Tesla V100-PCIE-32GB", "bf16", id="no bf16 tensor cores"),
])
def test_no_gpu_peak_where_the_table_does_not_know(name, dtype):
    peak = gpu_peak(Gpu(0, name, (8, 6)), dtype)
    assert peak.gflops is None and peak.how.startswith("no peak: ") and peak.fraction(1000.0) is None


def test_the_device_is_the_first_selected_gpu_else_the_cpu():
    gpus = (Gpu(0, "NVIDIA A100-SXM4-40GB", (8, 0)), Gpu(1, "Tesla T4", (7, 5)))
    assert device_peak(cpu("AVX2", "FMA"), gpus, "bf16", AT_2_45).gflops == 312_000
    assert device_peak(cpu("AVX2", "FMA"), (), "fp32", AT_2_45).gflops == pytest.approx(156.8)


@pytest.mark.parametrize("compute, math, dtype", [
    ("float32", "ieee", "fp32"), ("float32", "auto (tf32)", "tf32"), ("float32", "ieee matmul, tf32 conv", "tf32"),
    ("float32", "bf16", "bf16"), ("bfloat16", "auto (tf32)", "bf16"), ("float16", "", "fp16"),
])
def test_the_dtype_of_the_peak_is_what_the_matmuls_compute_in(compute, math, dtype):
    assert peak_dtype(compute, math) == dtype


def test_a_fraction_above_the_peak_is_not_clamped():
    assert Peak(100.0, "fp32", "peak: ...").fraction(105.0) == pytest.approx(1.05)


# --- the record and the rendered table ------------------------------------------------------------------


def _record(peak: Peak, achieved_gflops: float, probe: float | None = 120.0) -> BenchmarkRecord:
    rate = 100.0  # samples/s: flops per sample chosen to give achieved_gflops
    return BenchmarkRecord(
        model="alexnet", mode="inference", batch=128, device="CPU:0", policy="float32", compute_dtype="float32",
        summary=Summary.of([128 / rate] * 6, batch=128), flops_per_sample=achieved_gflops * 1e9 / rate,
        peak_gflops=peak.gflops, peak_source=peak.how, probe_gflops=probe, probe_source="matmul probe: 2048x2048",
    )


def test_the_fraction_is_of_the_theoretical_peak_and_the_probe_is_named_a_probe():
    peak = cpu_peak(cpu("AVX2", "FMA"), "fp32", AT_2_45)
    data = json.loads(json.dumps(_record(peak, 125.0, probe=120.0).to_dict()))
    metrics = data["metrics"]
    assert metrics["fraction_of_peak"]["value"] == pytest.approx(125.0 / 156.8)  # not 125 / 120 = 104%
    assert metrics["peak"]["note"] == peak.how and metrics["matmul_probe"]["value"] == 120.0
    back = BenchmarkRecord.from_dict(data)
    assert (back.peak_gflops, back.probe_gflops) == (peak.gflops, 120.0) and back.to_dict() == data


def test_an_older_file_whose_peak_was_the_probe_reads_back_as_a_probe():
    data = _record(Peak(None, "fp32", ""), 125.0, probe=None).to_dict()
    data["metrics"]["peak"] = {"value": 120.0, "unit": "GFLOP/s", "note": "measured: 2048x2048 float32 matmul"}
    del data["metrics"]["matmul_probe"]
    back = BenchmarkRecord.from_dict(data)
    assert back.peak_gflops is None and back.probe_gflops == 120.0 and "matmul probe" in back.probe_source


def _table(*records: dict) -> str:
    from _devswitch import compare
    from _devswitch.compare.resultset import Model
    from _devswitch.render.compare import render_markdown

    cells = tuple(compare.Cell("tensorflow", "cpu", precision, 128, "ok", precision, record)
                  for precision, record in zip(("fp32", "bf16", "fp16"), records, strict=False))
    return render_markdown(compare.ResultSet(
        options={"batch_sizes": [128], "mode": "inference", "baseline": "tensorflow cpu fp32",
                 "backends": ["tensorflow"], "target": "alexnet"},
        model=Model("alexnet", "alexnet", unit="img"), cells=cells))


def test_the_table_shows_the_fraction_of_the_peak_with_how_it_was_found_in_a_footnote():
    peak = cpu_peak(cpu("AVX2", "FMA"), "fp32", AT_2_45)
    table = _table(_record(peak, 125.0).to_dict())
    assert "matmul peak" not in table and "GFLOP/s (of peak)" in table
    assert "| 125.0 (80%) \\[1\\] |" in table or "| 125.0 (80%) [1] |" in table, table
    assert ("[1] peak: 2 cores x 2 FMA x 8 lanes (AVX2) x 2 x 2.45 GHz (cpuinfo_max_freq) = 157 GFLOP/s fp32"
            in table.replace("\\", ""))
    assert "| matmul probe GFLOP/s | 120.0 |" in table


def test_the_table_gives_no_fraction_where_no_peak_is_known_and_says_why():
    emulated = cpu_peak(cpu("AVX2", "FMA", "AVX-512"), "fp16", AT_2_45)
    table = _table(_record(emulated, 40.0).to_dict()).replace("\\", "")
    assert "| 40.0 [1] |" in table and "%" not in table.split("GFLOP/s (of peak)")[1].split("\n")[0]
    [note] = [line for line in table.splitlines() if line.startswith("[1] ")]
    assert all(part in note for part in ("no peak", "fp16", "AVX512-FP16", "AMX-FP16")), note  # the units missing


def test_a_figure_above_the_peak_shows_no_fraction_and_the_footnote_says_the_peak_is_wrong():
    """No figure above 100% of a peak anywhere (issue 21): not in the table, not in the CSV."""
    low = cpu_peak(cpu("AVX2", "FMA"), "fp32", CpuFacts(2.0, "cpu MHz of /proc/cpuinfo: the clock now"))
    written = _record(low, 140.0).to_dict()
    assert written["metrics"]["fraction_of_peak"]["value"] is None
    assert "1.09x this peak" in written["metrics"]["fraction_of_peak"]["note"]
    table = _table(written).replace("\\", "")
    assert "| 140.0 [1] |" in table and "109%" not in table
    [note] = [line for line in table.splitlines() if line.startswith("[1] ")]
    assert all(part in note for part in ("no fraction", "1.09x", "cpu MHz", "turbo")), note  # by how much, and why


def test_a_table_of_an_older_file_calls_its_probe_no_peak():
    old = _record(Peak(None, "fp32", ""), 125.0, probe=None).to_dict()
    old["metrics"]["peak"] = {"value": 120.0, "unit": "GFLOP/s", "note": "measured: 2048x2048 float32 matmul"}
    old["metrics"]["fraction_of_peak"] = {"value": 125.0 / 120.0, "unit": "1"}
    table = _table(old).replace("\\", "")
    assert "104%" not in table and "| 125.0 [1] |" in table and "is a matmul probe, not a peak" in table
