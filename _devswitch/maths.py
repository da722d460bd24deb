"""The float32 math mode (``math: auto | ieee | tf32 | bf16``), decided purely.

``float32`` in a Keras policy says what the tensors hold, not how a matmul or a convolution computes
inside: on GPUs from compute capability 8.0 TensorFlow and JAX use TF32 by default, PyTorch keeps its
matmuls in full float32 but lets cuDNN convolutions use TF32, and on AMX CPUs PyTorch's oneDNN kernels
can compute in bf16. Each backend module knows what each mode does on each kind of device
(``math_effect``) and how to set and read it (``apply_math``, ``math_state``); this module turns that
knowledge into the mode in force, its label for records (``"ieee"``, ``"tf32"``, ``"auto (tf32)"``) and
the warning when a mode has no effect here.

A mode with no effect on this backend and device is a warning, not an error: a project's
``.devswitchrc`` or profile is shared between a GPU server and a laptop, and ``compare`` runs one
configuration on several devices, so an error would make ``math: tf32`` unusable where it cannot apply;
the warning says what is in force instead, and every record carries that, never the mode asked for.
"""

from __future__ import annotations

from collections.abc import Mapping

from .devices import Inventory, slowest_cc
from .plans import MathPlan

TF32_CC = (8, 0)  # TF32 (and bf16) tensor cores from Ampere on
OVERRIDE = "NVIDIA_TF32_OVERRIDE"  # read by cuBLAS and cuDNN: 0 turns TF32 off for every framework

# The kinds of device a math mode can differ on.
KINDS = ("cpu", "cpu-bf16", "cpu-amx", "gpu", "gpu-tf32")

# Shared reasons (the backends add their own).
NO_TF32_CPU = "TF32 is a GPU tensor-core format (compute capability 8.0+); a CPU computes float32 in full precision"
NO_TF32_GPU = "this GPU has no TF32 tensor cores (needs compute capability 8.0+)"
NO_BF16_GPU = "this GPU has no bf16 tensor cores (needs compute capability 8.0+)"


def kind(inventory: Inventory, gpus: tuple[int, ...]) -> str:
    """The kind of device a math mode depends on: the slowest selected GPU, or the CPU's bf16 units."""
    if gpus:
        cc = slowest_cc(inventory, gpus)
        return "gpu-tf32" if cc is not None and cc >= TF32_CC else "gpu"
    if "AMX-BF16" in inventory.cpu.features:
        return "cpu-amx"
    return "cpu-bf16" if inventory.cpu.native_bf16 else "cpu"


def describe_kind(inventory: Inventory, gpus: tuple[int, ...]) -> str:
    where = kind(inventory, gpus)
    if where.startswith("gpu"):
        cc = slowest_cc(inventory, gpus)
        return f"a GPU of compute capability {f'{cc[0]}.{cc[1]}' if cc else 'unknown'}"
    return {
        "cpu": "a CPU without native bf16",
        "cpu-bf16": "a CPU with AVX512-BF16 but no AMX",
        "cpu-amx": "a CPU with AMX",
    }[where]


def decide_math(
    mode: str, backend, inventory: Inventory, gpus: tuple[int, ...], environ: Mapping[str, str], where: str = "default"
) -> MathPlan:
    """What ``math: mode`` puts in force with ``backend`` (a backends/ module) on the selected device.

    ``backend.math_effect(mode, kind, environ)`` answers ``(in_force, why)``, ``in_force`` None when the
    mode has no effect there; under ``auto`` it is the framework's default. ``where`` names the setting's
    source for the warning. Pure: nothing is imported or changed.
    """
    device = kind(inventory, gpus)
    default, default_why = _effect(backend, "auto", device, environ)
    assert default is not None, f"{backend.DISPLAY}'s math_effect('auto') names no mode"  # auto is always some mode
    if mode == "auto":
        return MathPlan("auto", default, default_why)
    effect, why = _effect(backend, mode, device, environ)
    if effect is None:
        here = describe_kind(inventory, gpus)
        return MathPlan(
            mode,
            default,
            f"{mode} has no effect on {backend.DISPLAY} on {here}: {why}; "
            f"float32 math stays {default} ({backend.DISPLAY}'s default)",
            None,
            (
                f"math={mode} ({where}) has no effect on {backend.DISPLAY} on {here}: {why}. Float32 math "
                f"stays {default}, and records say so",
            ),
        )
    warnings = () if effect == mode else (f"math={mode} ({where}) on {backend.DISPLAY}: {why}",)
    return MathPlan(mode, effect, why, mode, warnings)


def _effect(backend, mode: str, device: str, environ: Mapping[str, str]) -> tuple[str | None, str]:
    in_force, why = backend.math_effect(mode, device, environ)
    if in_force is not None and "tf32" in in_force and environ.get(OVERRIDE) == "0":
        # NVIDIA's libraries read it themselves: TF32 is off whatever the framework asks for
        if mode != "auto":
            return None, f"{OVERRIDE}=0 is set, which turns TF32 off in cuBLAS and cuDNN"
        return in_force.replace("tf32", "ieee"), f"{why}; but {OVERRIDE}=0 turns TF32 off in cuBLAS and cuDNN"
    return in_force, why


def modes_here(backend, inventory: Inventory, gpus: tuple[int, ...], environ: Mapping[str, str]) -> dict[str, str]:
    """For ``info``: what each mode would put in force here, in words."""
    from .settings import MATH_MODES

    out = {}
    for mode in MATH_MODES:
        plan = decide_math(mode, backend, inventory, gpus, environ)
        if plan.apply is None and mode != "auto":
            why = _effect(backend, mode, kind(inventory, gpus), environ)[1]
            out[mode] = f"no effect here, float32 math stays {plan.in_force}: {why}"
        else:
            out[mode] = f"{plan.label}: {plan.reason}"
    return out
