"""What hardware exists, and the pure choice of device and precision.

``Inventory`` is plain data (plans.py). ``detect_cpu()`` reads the CPU (``/proc/cpuinfo``); the GPUs are the
backend's to list (``backends.detect``). ``choose_device`` and ``choose_precision`` are pure and get what they
need of the backend passed in (``decide.choose`` looks it up), so every GPU branch — none, one, two, compute
capability 6.1 / 7.5 / 8.0 — is tested on a CPU-only machine by passing a hand-built inventory.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Protocol

from .config import Config
from .errors import ConfigError, DeviceError
from .plans import BF16_FEATURES, Cpu, Gpu, Inventory, Plan, cc_label  # noqa: F401 - Gpu, Plan handed on
from .settings import ENV_CPU_FEATURES

# CPU instruction sets that matter for deep-learning kernels, by /proc/cpuinfo flag.
CPU_FEATURES = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "avx512_fp16": "AVX512-FP16",
    "amx_bf16": "AMX-BF16",
    "amx_tile": "AMX",
    "amx_fp16": "AMX-FP16",
}
BF16_CC = (8, 0)  # GPUs from this compute capability have bf16 tensor cores
FP16_CC = (7, 0)  # ... and from this one fp16 tensor cores


# --- detection (reads the machine) ------------------------------------------------


def feature_edits(text: str) -> tuple[tuple[str, bool], ...]:
    """``"-AVX512-BF16,+AMX-BF16"`` -> ``(("AVX512-BF16", False), ("AMX-BF16", True))``: names as devswitch shows
    them or as /proc/cpuinfo spells them (``avx512_bf16``), each with a sign; anything else is a ConfigError."""
    by_name = {name.lower(): name for name in CPU_FEATURES.values()} | dict(CPU_FEATURES)
    edits = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        sign, name = item[:1], by_name.get(item[1:].strip().lower())
        if sign not in "+-" or not sign or name is None:
            raise ConfigError(
                f"invalid entry {item[:40]!r}: expected +NAME or -NAME, NAME one of {', '.join(CPU_FEATURES.values())}",
                where=ENV_CPU_FEATURES,
                hint=f"e.g. {ENV_CPU_FEATURES}=-AVX512-BF16,-AMX-BF16 hides native bf16; unset it to use what "
                "the CPU reports",
            )
        edits.append((name, sign == "+"))
    return tuple(edits)


def detect_cpu(cpuinfo_path: str = "/proc/cpuinfo", environ: Mapping[str, str] | None = None) -> Cpu:
    """The CPU as /proc/cpuinfo describes it, with DEVSWITCH_CPU_FEATURES' edits applied (``environ``, default
    ``os.environ``): the edits are how a test lane runs the other branch of every bf16 decision on any machine."""
    cpu = _read_cpu(cpuinfo_path)
    edits = feature_edits((os.environ if environ is None else environ).get(ENV_CPU_FEATURES, ""))
    if not edits:
        return cpu
    features = set(cpu.features)
    for name, present in edits:
        (features.add if present else features.discard)(name)
    applied = tuple(("+" if present else "-") + name for name, present in edits)
    return Cpu(cpu.model, cpu.cores, frozenset(features), applied)


def _read_cpu(cpuinfo_path: str) -> Cpu:
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


# --- the choice (pure) ----------------------------------------------------------------


class BackendFacts(Protocol):
    """What the choice reads of the backend (every module of backends/ has these; the caller passes it in)."""

    @property
    def DISPLAY(self) -> str: ...
    @property
    def CPU_HALF(self) -> tuple[str, str]: ...
    @property
    def CPU_FP16(self) -> str: ...
    @property
    def UNSEEN_STEPS(self) -> str | None: ...


def where_from(config: Config, key: str) -> str:
    value = config[key]
    return "default" if value.source == "default" else value.location


def choose_device(config: Config, inventory: Inventory, display: str) -> tuple[str, tuple[int, ...], str, list[str]]:
    """(device, GPU indices, why, warnings) for ``config`` on ``inventory``; ``display`` is the backend's name as
    shown (the one that sees no GPU)."""
    asked, why = config.device, where_from(config, "device")
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
        reason = (
            f"{display} sees no GPU on this machine (no CUDA device, or a CPU-only {display} build; "
            "see 'devswitch info')"
        )
        if config.fallback == "error":
            raise DeviceError(
                f"device={asked} was asked for, but {reason}",
                where=config["device"].location,
                hint="set device: cpu, or fallback: cpu to run on the CPU with a warning",
            )
        warnings.append(f"device={asked} ({why}) but {reason}; falling back to the CPU (fallback=cpu)")
        return "cpu", (), f"fallback from {asked}: no GPU", warnings
    if asked == "gpu":
        indices = tuple(g.index for g in inventory.gpus)
    else:
        indices = tuple(int(i) for i in asked.split(":")[1].split(","))
        missing = [i for i in indices if i >= len(inventory.gpus)]
        if missing:
            have = "; ".join(g.describe() for g in inventory.gpus)
            raise DeviceError(
                f"device={asked} asks for gpu:{missing[0]}, but this machine has {len(inventory.gpus)} GPU(s): {have}",
                where=config["device"].location,
                hint=f"use an index from 0 to {len(inventory.gpus) - 1}, or device: gpu for all",
            )
    return "gpu:" + ",".join(map(str, indices)), indices, why, warnings


def slowest_cc(inventory: Inventory, gpus: tuple[int, ...]) -> tuple[int, int] | None:
    """The lowest known compute capability among the selected GPUs (the slowest one decides)."""
    known = [cc for i in gpus if (cc := inventory.gpus[i].compute_capability)]
    return min(known) if known else None


def bf16_missing(inventory: Inventory, gpus: tuple[int, ...]) -> str | None:
    """Why bf16 is not native on the selected device (it would be emulated or slow), or None when it is.

    The one bf16 rule: a CPU needs AVX512-BF16 or AMX; a GPU needs compute capability 8.0+.
    """
    if not gpus:
        return (
            None
            if inventory.cpu.native_bf16
            else f"this CPU has no native bf16 (AVX512-BF16 or AMX){inventory.cpu.edited_note}; it would be emulated"
        )
    old = [inventory.gpus[i] for i in gpus if (cc := inventory.gpus[i].compute_capability) and cc < BF16_CC]
    if old:
        return f"gpu:{old[0].index} (compute capability {old[0].cc}) has no bf16 tensor cores (needs 8.0+)"
    return None


def half(inventory: Inventory, gpus: tuple[int, ...], cpu_half: tuple[str, str]) -> tuple[str, str, list[str]]:
    """What ``precision: half`` means here: (precision, reason, warnings).

    On GPUs tensor cores decide (the slowest selected GPU decides): bf16 from 8.0, fp16 from 7.0. On a
    CPU, bf16 only where the chip has it natively, and then ``cpu_half``, the backend's measured answer
    (``("bf16", reason)`` where bf16 measured faster, ``("fp32", reason)`` where it did not; the reason
    may name ``{feature}``).
    """
    if gpus:
        cc = slowest_cc(inventory, gpus)
        if cc is None:
            return (
                "fp32",
                "half: GPU compute capability unknown",
                ["half: the GPU's compute capability is unknown; staying at fp32"],
            )
        label = cc_label(cc)
        if cc >= BF16_CC:
            return "bf16", f"half: GPU compute capability {label} >= 8.0 has bf16 tensor cores", []
        if cc >= FP16_CC:
            return "fp16", f"half: GPU compute capability {label} has fp16 tensor cores, no bf16", []
        return (
            "fp32",
            f"half: compute capability {label} has no fast half precision",
            [
                f"half: GPU compute capability {label} < 7.0 has no tensor cores; no speed-up from half precision "
                "is available, staying at fp32"
            ],
        )
    if bf16_missing(inventory, gpus):
        return "fp32", f"half: CPU has no native bf16 (AVX512-BF16/AMX){inventory.cpu.edited_note}, fp32 is fastest", []
    precision, reason = cpu_half
    feature = next(f for f in BF16_FEATURES if f in inventory.cpu.features)
    return precision, "half: " + reason.format(feature=feature), []


def choose_precision(
    config: Config, inventory: Inventory, gpus: tuple[int, ...], backend: BackendFacts
) -> tuple[str, str, list[str]]:
    """(precision, why, warnings) on the device ``gpus``; ``backend`` answers with its own measurements."""
    asked, why = config.precision, where_from(config, "precision")
    warnings: list[str] = []
    cc = slowest_cc(inventory, gpus)
    if asked == "half":  # which half type is fast depends on the backend too: each module has its measurement
        precision, reason, notes = half(inventory, gpus, backend.CPU_HALF)
        return precision, f"{reason} [{config.backend}]", notes
    if asked == "fp16":  # the backend's own measurement: a figure of another backend is not quoted
        if not gpus:
            warnings.append(
                f"precision=fp16 ({why}) on a CPU: float16 kernels fall back to slow paths ({backend.CPU_FP16}; "
                "other models differ); use precision: half or bf16 for a CPU speed-up"
            )
        elif cc and cc < FP16_CC:
            warnings.append(
                f"precision=fp16 on compute capability {cc_label(cc)}: no tensor cores, expect little or no speed-up"
            )
        if backend.UNSEEN_STEPS:
            warnings.append(
                "precision=fp16: Keras scales the loss only in fit(); a custom training loop needs "
                "keras.optimizers.LossScaleOptimizer, and devswitch cannot see the steps of one "
                f"({backend.UNSEEN_STEPS}) to say so later"
            )
    if asked == "bf16" and bf16_missing(inventory, gpus):
        if not gpus:
            warnings.append(
                f"precision=bf16 ({why}) on a CPU without AVX512-BF16/AMX: bf16 is emulated and likely slower than fp32"
            )
        else:
            warnings.append(
                f"precision=bf16 on compute capability {cc_label(cc)}: no bf16 tensor cores "
                "(needs 8.0+), expect it to be slower than fp16"
            )
    return asked, why, warnings
