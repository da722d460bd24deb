"""What hardware exists, and the pure choice of device and precision.

``Inventory`` is plain data. ``detect()`` fills it from the machine (``/proc/cpuinfo``
and TensorFlow's physical-device list, which does not start TensorFlow's runtime);
``choose(config, inventory)`` is pure, so every GPU branch — none, one, two,
compute capability 6.1 / 7.5 / 8.0 — is tested on a CPU-only machine by passing a
hand-built inventory.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .errors import DeviceError

POLICIES = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}

# CPU instruction sets that matter for deep-learning kernels, by /proc/cpuinfo flag.
CPU_FEATURES = {
    "avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI",
    "avx512_bf16": "AVX512-BF16", "avx512_fp16": "AVX512-FP16", "amx_bf16": "AMX-BF16",
    "amx_tile": "AMX", "amx_fp16": "AMX-FP16",
}


@dataclass(frozen=True)
class Cpu:
    model: str
    cores: int
    features: frozenset[str] = frozenset()  # names from CPU_FEATURES' values

    @property
    def native_bf16(self) -> bool:
        return bool({"AVX512-BF16", "AMX-BF16"} & self.features)


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    compute_capability: tuple[int, int] | None
    memory_bytes: int | None = None

    @property
    def cc(self) -> str:
        return "%d.%d" % self.compute_capability if self.compute_capability else "unknown"

    def describe(self) -> str:
        mem = f", {self.memory_bytes / 2**30:.0f} GiB" if self.memory_bytes else ""
        return f"gpu:{self.index} ({self.name}, compute capability {self.cc}{mem})"


@dataclass(frozen=True)
class Inventory:
    cpu: Cpu
    gpus: tuple[Gpu, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What will be used, and why, in words a user can check."""

    device: str                 # "cpu" or "gpu:0,1" — the effective device
    gpus: tuple[int, ...]       # indices of the GPUs made visible; () = CPU only
    precision: str              # fp32 / fp16 / bf16 — the effective precision
    device_reason: str
    precision_reason: str
    warnings: tuple[str, ...] = field(default=())
    strategy: Any = None         # distribute.StrategyPlan, filled in when applied
    backend: str = "tensorflow"

    @property
    def policy(self) -> str:
        return POLICIES[self.precision]

    def summary(self) -> str:
        return (f"device={self.device} ({self.device_reason}) "
                f"precision={self.precision} ({self.precision_reason})")


# --- detection (reads the machine) ------------------------------------------------

def detect_cpu(cpuinfo_path: str = "/proc/cpuinfo") -> Cpu:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass  # not Linux: model from platform, no feature list
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return Cpu(model, cores, frozenset(CPU_FEATURES[f] for f in flags if f in CPU_FEATURES))


def detect_gpus(backend: str = "tensorflow") -> tuple[Gpu, ...]:
    """The GPUs ``backend``'s framework sees, numbered as it numbers them (imports that framework)."""
    from . import backends

    return backends.get(backend).detect_gpus()


def detect(backend: str = "tensorflow") -> Inventory:
    return Inventory(detect_cpu(), detect_gpus(backend))


# --- the choice (pure) ----------------------------------------------------------------

def _where(config: Config, key: str) -> str:
    value = config[key]
    return "default" if value.source == "default" else value.location


def choose_device(config: Config, inventory: Inventory) -> tuple[str, tuple[int, ...], str, list[str]]:
    asked, why = config.device, _where(config, "device")
    warnings: list[str] = []
    if asked == "cpu":
        return "cpu", (), why, warnings
    if asked == "auto":
        if inventory.gpus:
            indices = tuple(g.index for g in inventory.gpus)
            return "gpu:" + ",".join(map(str, indices)), indices, f"auto: {len(indices)} GPU(s) found", warnings
        return "cpu", (), "auto: no GPU found", warnings
    # gpu or gpu:N,...
    if not inventory.gpus:
        from .backends import DISPLAY

        name = DISPLAY.get(config.backend, config.backend)
        reason = (f"{name} sees no GPU on this machine (no CUDA device, or a CPU-only {name} build; "
                  "see 'devswitch info')")
        if config.fallback == "error":
            raise DeviceError(f"device={asked} was asked for, but {reason}", where=config["device"].location,
                              hint="set device: cpu, or fallback: cpu to run on the CPU with a warning")
        warnings.append(f"device={asked} ({why}) but {reason}; falling back to the CPU (fallback=cpu)")
        return "cpu", (), f"fallback from {asked}: no GPU", warnings
    if asked == "gpu":
        indices = tuple(g.index for g in inventory.gpus)
    else:
        indices = tuple(int(i) for i in asked.split(":")[1].split(","))
        missing = [i for i in indices if i >= len(inventory.gpus)]
        if missing:
            have = "; ".join(g.describe() for g in inventory.gpus)
            raise DeviceError(f"device={asked} asks for gpu:{missing[0]}, but this machine has "
                              f"{len(inventory.gpus)} GPU(s): {have}", where=config["device"].location,
                              hint=f"use an index from 0 to {len(inventory.gpus) - 1}, or device: gpu for all")
    return "gpu:" + ",".join(map(str, indices)), indices, why, warnings


def choose_precision(config: Config, inventory: Inventory, gpus: tuple[int, ...]) -> tuple[str, str, list[str]]:
    asked, why = config.precision, _where(config, "precision")
    warnings: list[str] = []
    known = [inventory.gpus[i].compute_capability for i in gpus if inventory.gpus[i].compute_capability]
    cc = min(known) if known else None  # the slowest selected GPU decides
    cpu = inventory.cpu
    if asked == "half":  # which half type is fast depends on the backend too: each module has its rule
        from . import backends

        precision, reason, notes = backends.get(config.backend).half_rule(inventory, gpus)
        return precision, f"{reason} [{config.backend}]", notes
    if asked == "fp16":
        if not gpus:
            warnings.append(f"precision=fp16 ({why}) on a CPU: float16 kernels fall back to slow paths "
                            "(measured 0.82x of fp32 on an AVX-512 CPU); use precision: half or bf16 for a "
                            "CPU speed-up")
        elif cc and cc < (7, 0):
            warnings.append(f"precision=fp16 on compute capability {'%d.%d' % cc}: no tensor cores, expect "
                            "little or no speed-up")
    if asked == "bf16":
        if not gpus and not cpu.native_bf16:
            warnings.append(f"precision=bf16 ({why}) on a CPU without AVX512-BF16/AMX: bf16 is emulated and "
                            "likely slower than fp32")
        elif gpus and cc and cc < (8, 0):
            warnings.append(f"precision=bf16 on compute capability {'%d.%d' % cc}: no bf16 tensor cores "
                            "(needs 8.0+), expect it to be slower than fp16")
    return asked, why, warnings


def choose(config: Config, inventory: Inventory) -> Plan:
    """Decide the effective device and precision for ``config`` on ``inventory``; raises DeviceError."""
    device, gpus, device_reason, w1 = choose_device(config, inventory)
    precision, precision_reason, w2 = choose_precision(config, inventory, gpus)
    return Plan(device, gpus, precision, device_reason, precision_reason, tuple(w1 + w2), backend=config.backend)
