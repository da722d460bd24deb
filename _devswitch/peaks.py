"""The theoretical peak of a device for the dtype in use: what "fraction of peak" is a fraction of.

A CPU's peak is cores x FMA units x vector lanes x 2 (a multiply-add is 2 FLOP) x clock, from its
instruction set (AVX2, AVX-512, AVX512-BF16, AVX512-FP16, AMX) and the highest clock devswitch can read
(``cpuinfo_max_freq``, else ``cpu MHz`` of /proc/cpuinfo, which turbo can exceed). A GPU's peak comes from
a table of public spec sheets, matched by the device's name (dense figures, no sparsity). Where no peak
can be known (fp16 emulated on a CPU, a GPU not in the table, no clock), there is none, and no fraction.

Every peak carries ``how``: the arithmetic and where each factor came from, which the tables print as a
footnote. Pure: the facts of the machine are read by ``read_cpu_facts`` (injectable paths) and passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from .plans import Cpu, Gpu

# Assumed for every x86 server core of the last decade (Haswell on, Zen on): two vector FMA pipes per core.
FMA_UNITS = 2
# Intel's figure for one AMX unit (Sapphire Rapids on): 1024 bf16 (or fp16 with AMX-FP16) FLOP per cycle
# per core (512 multiply-adds, TDPBF16PS on 16x32 tiles); Intel Architecture Instruction Set Extensions
# Programming Reference and "Accelerate AI workloads with Intel AMX" (2023).
AMX_FLOP_PER_CYCLE = 1024

MAX_FREQ = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
CPUINFO = "/proc/cpuinfo"

DTYPES = ("fp32", "tf32", "bf16", "fp16")


@dataclass(frozen=True)
class CpuFacts:
    """What the peak needs beyond the features: the clock (GHz, None when unknown) and where it was read,
    how many logical CPUs share one core (SMT), and whether AVX-512 runs on 256-bit halves (AMD Zen 4)."""

    ghz: float | None
    clock_source: str
    threads_per_core: int = 1
    avx512_halves: bool = False


@dataclass(frozen=True)
class Peak:
    """A device's peak in one dtype: GFLOP/s, or None with ``how`` saying why none is known."""

    gflops: float | None
    dtype: str
    how: str

    def fraction(self, achieved_gflops: float | None) -> float | None:
        """``achieved`` as a fraction of this peak, unclamped (above 1 means the peak is wrong: ``how``
        names the clock it assumed); None where either is unknown."""
        if not self.gflops or not achieved_gflops:
            return None
        return achieved_gflops / self.gflops


def peak_dtype(compute_dtype: str, math: str = "") -> str:
    """The datatype the matmuls run in: the compute dtype, or for float32 the math in force (plan.math:
    ``tf32``, ``auto (tf32)``, ``ieee matmul, tf32 conv``): where a mix is in force, the faster one, so the
    fraction is never overstated."""
    if compute_dtype in ("bfloat16", "bf16"):
        return "bf16"
    if compute_dtype in ("float16", "fp16"):
        return "fp16"
    if "bf16" in math:
        return "bf16"
    if "tf32" in math:
        return "tf32"
    return "fp32"


# --- the CPU -----------------------------------------------------------------------------------------


def _cpuinfo_fields(path: str) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where it cannot be read)."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, sep, value = line.partition(":")
                if not line.strip() and fields:
                    break  # the first processor's block ends
                if sep and key.strip() not in fields:
                    fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def read_cpu_facts(max_freq_path: str = MAX_FREQ, cpuinfo_path: str = CPUINFO) -> CpuFacts:
    """The clock (the highest one readable: cpufreq's maximum, which includes turbo, else /proc/cpuinfo's
    ``cpu MHz``) and the core facts of /proc/cpuinfo."""
    fields = _cpuinfo_fields(cpuinfo_path)
    ghz, source = None, "no clock readable (no cpuinfo_max_freq, no cpu MHz in /proc/cpuinfo)"
    try:
        with open(max_freq_path, encoding="ascii") as handle:
            khz = int(handle.read().strip())
        if khz > 0:
            ghz, source = khz / 1e6, "cpuinfo_max_freq"
    except (OSError, ValueError):
        try:
            mhz = float(fields.get("cpu MHz", ""))
            if mhz > 0:
                ghz, source = mhz / 1e3, "cpu MHz of /proc/cpuinfo: the clock now; turbo may run above it"
        except ValueError:
            pass
    try:
        per_core = max(1, int(fields.get("siblings", "1")) // max(1, int(fields.get("cpu cores", "1"))))
    except ValueError:
        per_core = 1
    zen4 = fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25"
    return CpuFacts(ghz, source, per_core, zen4)


def _per_cycle(features: frozenset[str], dtype: str, halves: bool) -> tuple[float | None, str]:
    """FLOP per cycle per core in ``dtype`` from the instruction set, and the arithmetic in words."""
    lanes_512 = 8 if halves else 16  # fp32 lanes per FMA unit and cycle
    halved = " (AVX-512 on 256-bit halves: AMD family 25)" if halves else ""
    if dtype == "bf16":
        if "AMX-BF16" in features:
            return AMX_FLOP_PER_CYCLE, f"{AMX_FLOP_PER_CYCLE} bf16 FLOP/cycle (AMX-BF16, Intel's figure per core)"
        if "AVX512-BF16" in features:
            lanes = 2 * lanes_512
            return FMA_UNITS * lanes * 2, f"{FMA_UNITS} FMA x {lanes} bf16 lanes (AVX512-BF16){halved} x 2"
        return None, "no peak: bf16 is emulated on this CPU (no AVX512-BF16 or AMX-BF16)"
    if dtype == "fp16":
        if "AMX-FP16" in features:
            return AMX_FLOP_PER_CYCLE, f"{AMX_FLOP_PER_CYCLE} fp16 FLOP/cycle (AMX-FP16, Intel's figure per core)"
        if "AVX512-FP16" in features:
            lanes = 2 * lanes_512
            return FMA_UNITS * lanes * 2, f"{FMA_UNITS} FMA x {lanes} fp16 lanes (AVX512-FP16){halved} x 2"
        return None, "no peak: fp16 is emulated on this CPU (no AVX512-FP16 or AMX-FP16)"
    if "AVX-512" in features:
        return FMA_UNITS * lanes_512 * 2, f"{FMA_UNITS} FMA x {lanes_512} lanes (AVX-512){halved} x 2"
    if "AVX2" in features and "FMA" in features:
        return FMA_UNITS * 8 * 2, f"{FMA_UNITS} FMA x 8 lanes (AVX2) x 2"
    return None, "no peak: no vector FMA devswitch knows (AVX2 with FMA, or AVX-512)"


def cpu_peak(cpu: Cpu, dtype: str, facts: CpuFacts, threads: int = 0) -> Peak:
    """The CPU's peak in ``dtype`` (tf32 is fp32 on a CPU) over the cores devswitch uses: the logical CPUs
    this process may run on (``cpu.cores``), at most ``threads`` (intra-op; 0 = all), counted as physical
    cores where /proc/cpuinfo says that several logical CPUs share one."""
    dtype = "fp32" if dtype == "tf32" else dtype
    per_cycle, words = _per_cycle(cpu.features, dtype, facts.avx512_halves)
    if per_cycle is None:
        return Peak(None, dtype, words + cpu.edited_note)
    if facts.ghz is None:
        return Peak(None, dtype, f"no peak: {facts.clock_source}")
    logical = min(cpu.cores, threads) if threads > 0 else cpu.cores
    cores = max(1, -(-logical // facts.threads_per_core))
    gflops = cores * per_cycle * facts.ghz
    smt = f" ({logical} logical CPUs, {facts.threads_per_core} per core)" if facts.threads_per_core > 1 else ""
    assumed = f"; {FMA_UNITS} FMA units per core assumed" if " FMA x " in words else ""
    return Peak(
        gflops,
        dtype,
        f"peak: {cores} cores{smt} x {words} x {facts.ghz:.2f} GHz ({facts.clock_source}) = {gflops:,.0f} GFLOP/s "
        f"{dtype}{assumed}{cpu.edited_note}",
    )


# --- GPUs --------------------------------------------------------------------------------------------

# Dense TFLOP/s (no sparsity) from NVIDIA's spec sheets: fp32, tf32 (tensor cores), bf16, fp16 (tensor cores,
# float32 accumulation as Keras' mixed precision uses). None: the GPU has no such tensor-core path (tf32 is
# then fp32). Matched by the first name fragment found in the device's name: more specific fragments first.
GPU_PEAKS: tuple[tuple[str, str, dict[str, float | None]], ...] = (
    ("H200 NVL", "H200 NVL", {"fp32": 60, "tf32": 418, "bf16": 835, "fp16": 835}),
    ("H200", "H200 SXM", {"fp32": 67, "tf32": 495, "bf16": 989, "fp16": 989}),
    ("H100 PCIe", "H100 PCIe", {"fp32": 51, "tf32": 378, "bf16": 756, "fp16": 756}),
    ("H100 NVL", "H100 NVL", {"fp32": 60, "tf32": 418, "bf16": 835, "fp16": 835}),
    ("H100", "H100 SXM", {"fp32": 67, "tf32": 495, "bf16": 989, "fp16": 989}),
    ("A100", "A100", {"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312}),
    ("L40S", "L40S", {"fp32": 91.6, "tf32": 183, "bf16": 362, "fp16": 362}),
    ("L4", "L4", {"fp32": 30.3, "tf32": 60, "bf16": 121, "fp16": 121}),
    ("A10", "A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125, "fp16": 125}),
    ("RTX 4090", "GeForce RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}),
    ("V100-PCIE", "V100 PCIe", {"fp32": 14, "tf32": None, "bf16": None, "fp16": 112}),
    ("V100", "V100 SXM2", {"fp32": 15.7, "tf32": None, "bf16": None, "fp16": 125}),
    ("T4", "T4", {"fp32": 8.1, "tf32": None, "bf16": None, "fp16": 65}),
)


def _gpu_row(name: str) -> tuple[str, dict[str, float | None]] | None:
    upper = name.upper()
    for fragment, model, peaks in GPU_PEAKS:
        # "A10" must not match "A100", nor "L4" match "L40S", nor "T4" match "RTX 4090": whole words only
        at = upper.find(fragment.upper())
        while at >= 0:
            end = at + len(fragment)
            if (at == 0 or not upper[at - 1].isalnum()) and (end == len(upper) or not upper[end].isalnum()):
                return model, peaks
            at = upper.find(fragment.upper(), at + 1)
    return None


def gpu_peak(gpu: Gpu, dtype: str) -> Peak:
    """The GPU's peak in ``dtype`` from GPU_PEAKS, matched by its name; None where it is not in the table."""
    row = _gpu_row(gpu.name)
    if row is None:
        return Peak(None, dtype, f"no peak: {gpu.name!r} is not in devswitch's table of GPU spec sheets")
    model, peaks = row
    tflops, used = peaks.get(dtype), dtype
    if tflops is None and dtype == "tf32":
        tflops, used = peaks["fp32"], "fp32"  # no TF32 tensor cores: float32 runs at the fp32 rate
    if tflops is None:
        return Peak(None, dtype, f"no peak: the {model} has no {dtype} tensor cores (its spec sheet gives none)")
    via = "" if used == dtype else f" (no {dtype} tensor cores: fp32)"
    return Peak(
        tflops * 1000,
        dtype,
        f"peak: {model} spec sheet, {tflops:g} TFLOP/s {used} dense{via} (gpu:{gpu.index} {gpu.name})",
    )


def device_peak(cpu: Cpu, gpus: tuple[Gpu, ...], dtype: str, facts: CpuFacts, threads: int = 0) -> Peak:
    """The peak of what the model runs on: the first of ``gpus`` (the selected ones), else the CPU."""
    return gpu_peak(gpus[0], dtype) if gpus else cpu_peak(cpu, dtype, facts, threads)


def above_peak_note(fraction: float | None) -> str:
    """Why a fraction above 1 is not shown (never clamped, never shown): the peak is too low, not the
    measurement too high."""
    if fraction is None or fraction <= 1:
        return ""
    return (
        f"no fraction: the measured figure is {fraction:.2f}x this peak, so the peak is too low (a bug in it): "
        "most likely the clock runs above the one read (turbo), or the chip has more units than assumed"
    )
