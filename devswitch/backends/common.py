"""What the backends share: the GPU half-precision rule, NVML memory, the too-late hint."""

from __future__ import annotations

from ..devices import Inventory

TOO_LATE_HINT = ("make 'import devswitch' the first import of the script, run it unmodified with "
                 "'devswitch run script.py', or set DEVSWITCH_* variables before Python starts")


def gpu_half(inventory: Inventory, gpus: tuple[int, ...]) -> tuple[str, str, list[str]]:
    """``half`` on GPUs, for every backend: tensor cores decide (the slowest selected GPU decides)."""
    known = [inventory.gpus[i].compute_capability for i in gpus if inventory.gpus[i].compute_capability]
    cc = min(known) if known else None
    if cc is None:
        return "fp32", "half: GPU compute capability unknown", ["half: the GPU's compute capability is unknown; "
                                                                "staying at fp32"]
    label = "%d.%d" % cc
    if cc >= (8, 0):
        return "bf16", f"half: GPU compute capability {label} >= 8.0 has bf16 tensor cores", []
    if cc >= (7, 0):
        return "fp16", f"half: GPU compute capability {label} has fp16 tensor cores, no bf16", []
    return "fp32", f"half: compute capability {label} has no fast half precision", [
        f"half: GPU compute capability {label} < 7.0 has no tensor cores; no speed-up from half precision is "
        "available, staying at fp32"]


def half_rule(inventory: Inventory, gpus: tuple[int, ...], cpu_bf16_reason: str | None,
              cpu_no_bf16_reason: str) -> tuple[str, str, list[str]]:
    """GPUs by compute capability; on the CPU bf16 where the chip has it natively and the backend
    measured faster with it (``cpu_bf16_reason`` is None for a backend where it measured slower)."""
    if gpus:
        return gpu_half(inventory, gpus)
    cpu = inventory.cpu
    if not cpu.native_bf16:
        return "fp32", "half: CPU has no native bf16 (AVX512-BF16/AMX), fp32 is fastest", []
    if cpu_bf16_reason is None:
        return "fp32", "half: " + cpu_no_bf16_reason, []
    feature = "AMX-BF16" if "AMX-BF16" in cpu.features else "AVX512-BF16"
    return "bf16", "half: " + cpu_bf16_reason.format(feature=feature), []


def nvml_memory() -> dict[int, int]:
    """GPU memory per NVML index when nvidia-ml-py is installed; {} otherwise."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:  # no package, no driver: memory is simply not shown
        return {}
    try:
        return {i: int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).total)
                for i in range(pynvml.nvmlDeviceGetCount())}
    except Exception:
        return {}
    finally:
        pynvml.nvmlShutdown()
