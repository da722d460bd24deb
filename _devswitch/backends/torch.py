"""The PyTorch backend: Keras' KERAS_TORCH_DEVICE for the device, torch's own thread settings, eager
calls under ``torch.no_grad`` (``torch.compile`` when ``xla`` is true) for the benchmark.

Keras 3.15 has no data-parallel distribution on PyTorch, so ``strategy`` is refused here rather
than home-made. PyTorch is imported by the functions here, never when this module is imported.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping

from .. import determinism, memorylimit, state
from ..config import Config
from ..devices import Gpu, Plan
from ..errors import ConfigError, TooLateError
from ..plans import StrategyPlan
from . import common

cpu_pool = common.no_pool  # its CPU memory comes from C's allocator: no pool of its own
LIBRARY = "torch"
EXTRA = "devswitch[torch]"
DEVICE_VARIABLE = "KERAS_TORCH_DEVICE"  # read by keras/src/backend/torch/core.py when Keras is imported
DISPLAY = "PyTorch"
SEES_GPUS_WHEN_ON_CPU = True  # torch.cuda.device_count() whatever KERAS_TORCH_DEVICE says
log = logging.getLogger("devswitch")


def environment(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """cuBLAS's workspace for deterministic matmuls (read when CUDA starts; a user's own value is kept); the
    device goes to Keras once it is chosen (apply)."""
    if determinism.wanted(config) and determinism.CUBLAS_WORKSPACE not in environ:
        return {determinism.CUBLAS_WORKSPACE: determinism.CUBLAS_DETERMINISTIC[0]}
    return {}


def refuse(config: Config) -> None:
    """What Keras on PyTorch cannot do at all, refused before anything changes."""
    if config.strategy != "none":
        raise ConfigError(
            f"strategy={config.strategy} is not available on the torch backend: Keras "
            f"{_keras_version()} has no data-parallel distribution for PyTorch",
            where=config["strategy"].location,
            hint="use backend: jax (keras.distribution.DataParallel) or backend: tensorflow "
            "(tf.distribute) for several devices, or strategy: none on torch",
        )
    if config.device.startswith("gpu:") and "," in config.device:
        raise ConfigError(
            f"device={config.device}: Keras on PyTorch runs a model on one device",
            where=config["device"].location,
            hint="choose one GPU (gpu:N), or use backend: jax / tensorflow with strategy: mirrored",
        )


def _keras_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras")
    except PackageNotFoundError:
        return "3"


def detect_gpus() -> tuple[Gpu, ...]:
    """CUDA GPUs as PyTorch numbers them (respects CUDA_VISIBLE_DEVICES)."""
    import torch

    if not torch.cuda.is_available():
        return ()
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(Gpu(index, props.name, (props.major, props.minor), int(props.total_memory)))
    return tuple(gpus)


# Measured as in tensorflow.py (README "Three Keras backends"): PyTorch 2.14 eager + oneDNN, bf16 / fp32 =
# 1.47x at batch 128 and 0.59x at batch 1; fp16 0.24x and 0.17x (no fast fp16 CPU kernels).
CPU_BF16 = (
    "CPU has {feature}: PyTorch (oneDNN) runs bf16 natively, measured 1.5x fp32 on AlexNet at batch 128 "
    "(0.6x at batch 1)"
)
CPU_HALF = ("bf16", CPU_BF16)
CPU_FP16 = "measured with PyTorch on AlexNet, a convnet: 0.24x of fp32 at batch 128, 0.17x at batch 1"
UNSEEN_STEPS = None  # a custom loop's steps: torch.optim's and a Keras optimizer's (halfnotes sees them)


# float32 math (maths.py). PyTorch 2.9+ has per-backend fp32_precision attributes beside the older
# set_float32_matmul_precision / allow_tf32; reading the old ones after setting a new one raises, so each mode
# uses the old API where it suffices and the new one only for oneDNN's bf16. Measured here (torch 2.14,
# AVX512-BF16 CPU without AMX): with mkldnn.matmul.fp32_precision = "bf16" oneDNN still ran its f32 kernel
# (brg_matmul:avx512_core, attr-fpmath:bf16; relative error to ieee 4e-7), and convolutions likewise; on an
# AMX CPU the issue measured 1.9-2.3x on a 2048x2048 matmul, relative error 2.5e-3. On CUDA, "medium"
# precision maps to TF32 (torch.backends.cuda.matmul.fp32_precision reads "tf32"): there is no bf16 mode.
ONEDNN_NO_AMX = (
    "oneDNN applies bf16 math to float32 matmuls and convolutions only with AMX; on AVX512-BF16 "
    "alone it keeps its float32 kernels (measured: the same result as ieee)"
)


def math_effect(mode: str, kind: str, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """What ``math: mode`` puts in force on ``kind`` of device (maths.KINDS); None = no effect."""
    from ..maths import NO_BF16_GPU, NO_TF32_CPU, NO_TF32_GPU

    gpu = kind.startswith("gpu")
    if mode == "auto":
        if kind == "gpu-tf32":
            cublas = environ.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE") == "1"
            return ("tf32" if cublas else "ieee matmul, tf32 conv"), (
                "PyTorch's defaults: float32 matmul precision 'highest'"
                + (", but TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 allows TF32" if cublas else "")
                + "; cuDNN convolutions allow TF32 (torch.backends.cudnn.allow_tf32 is True)"
            )
        return "ieee", "PyTorch's default float32 matmul precision 'highest'" + (
            f"; {NO_TF32_GPU}" if gpu else "; oneDNN's fp32_precision 'none'"
        )
    if mode == "ieee":
        return "ieee", (
            "torch.set_float32_matmul_precision('highest'), torch.backends.cudnn.allow_tf32 = False, "
            "oneDNN convolutions fp32_precision 'ieee'"
        )
    if mode == "tf32":
        return (
            ("tf32", "torch.set_float32_matmul_precision('high'), torch.backends.cudnn.allow_tf32 = True")
            if kind == "gpu-tf32"
            else (None, NO_TF32_GPU if gpu else NO_TF32_CPU)
        )
    if kind == "cpu-amx":
        return "bf16", "torch.backends.mkldnn.matmul / .conv fp32_precision = 'bf16' (oneDNN on AMX)"
    if kind == "gpu-tf32":
        return "tf32", (
            "PyTorch's CUDA float32 matmul has no bf16 mode: torch.set_float32_matmul_precision('medium') runs TF32"
        )
    return None, NO_BF16_GPU if gpu else ONEDNN_NO_AMX if kind == "cpu-bf16" else (
        "this CPU has no native bf16 (AVX512-BF16 or AMX)"
    )


_NEW = ("mkldnn.matmul", "mkldnn.conv", "cuda.matmul", "cudnn.conv")  # PyTorch 2.9+: .fp32_precision


def _attr(torch, path: str):
    owner = torch.backends
    for part in path.split("."):
        owner = getattr(owner, part, None)
    return owner


def math_state() -> dict:
    """What PyTorch itself says about float32 math (None where a reading raises or does not exist)."""
    import torch

    def read(get):
        try:
            return get()
        except (RuntimeError, AttributeError):  # the old API refuses to answer once the new one was used
            return None

    out = {
        "float32_matmul_precision": read(torch.get_float32_matmul_precision),
        "cuda.matmul.allow_tf32": read(lambda: torch.backends.cuda.matmul.allow_tf32),
        "cudnn.allow_tf32": read(lambda: torch.backends.cudnn.allow_tf32),
    }
    for path in _NEW:
        out[f"{path}.fp32_precision"] = getattr(_attr(torch, path), "fp32_precision", None)
    return out


def apply_math(plan: Plan) -> None:
    """Set PyTorch's float32 math for ``plan.maths``; auto restores what was there."""
    import torch

    state.undo("torch-math")  # back to what PyTorch had before devswitch, then the mode asked for
    mode = plan.maths.apply if plan.maths is not None else None
    if mode is None:
        return
    new = {path: _attr(torch, path) for path in _NEW[:3] if hasattr(_attr(torch, path), "fp32_precision")}
    if not plan.gpus and mode == "bf16" and "mkldnn.matmul" not in new:
        log.warning(
            f"math=bf16: PyTorch {torch.__version__} has no torch.backends.mkldnn.matmul.fp32_precision "
            "(PyTorch 2.9+); float32 math stays as it was"
        )
        return
    try:
        old = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # the process set them through the new API: only that is put back
        old = None
    before = {path: owner.fp32_precision for path, owner in new.items()}

    def undo() -> None:
        if old is not None:
            torch.set_float32_matmul_precision(old[0])
            torch.backends.cudnn.allow_tf32 = old[1]
        for path, value in before.items():  # after the old API, which writes them too
            new[path].fp32_precision = value

    state.on_reset("torch-math", undo)
    if mode == "bf16" and not plan.gpus:
        new["mkldnn.matmul"].fp32_precision = "bf16"
        if "mkldnn.conv" in new:
            new["mkldnn.conv"].fp32_precision = "bf16"
        return
    torch.set_float32_matmul_precision({"ieee": "highest", "tf32": "high", "bf16": "medium"}[mode])
    torch.backends.cudnn.allow_tf32 = mode != "ieee"
    if mode == "ieee" and "mkldnn.conv" in new:
        new["mkldnn.conv"].fp32_precision = "ieee"


def meanings(config: Config, plan: Plan) -> dict[str, str]:
    return {
        "device": f"{DEVICE_VARIABLE}={keras_device(plan)} (read by Keras when it is imported)",
        "memory_growth": "not applicable on torch: PyTorch's caching allocator always allocates on demand",
        "memory_limit": memorylimit.meaning(
            config,
            plan,
            "torch.cuda.set_per_process_memory_fraction on the selected GPU (a size as a fraction of its memory); "
            "past it the caching allocator raises OutOfMemoryError",
        ),
        "threads": "torch.set_num_threads (intra-op) / torch.set_num_interop_threads (inter-op)",
        "xla": (
            "Keras' jit_compile='auto': off (PyTorch runs eagerly)"
            if config.xla == "auto"
            else f"jit_compile={config.xla}" + (": torch.compile" if config.xla is True else "")
        ),
        "strategy": "not available on torch (Keras has no PyTorch data-parallel distribution)",
        "cpu_replicas": "not applicable on torch (no distribution)",
        "math": "ieee = set_float32_matmul_precision('highest') + cudnn.allow_tf32 False; tf32 = 'high' + True "
        "(GPUs >= 8.0); bf16 = oneDNN fp32_precision 'bf16' (AMX CPUs), 'medium' = TF32 on CUDA",
        **determinism.meanings(config, DETERMINISM, "Python's random, NumPy, torch.manual_seed, Keras' SeedGenerator"),
    }


DETERMINISM = (
    "torch.use_deterministic_algorithms(True) (an op without a deterministic implementation raises an error "
    "when it runs), cudnn.benchmark off and cudnn.deterministic on, and CUBLAS_WORKSPACE_CONFIG=:4096:8 set "
    "before CUDA starts (a value of yours is kept)"
)


def _determinism_notices(config: Config, plan: Plan) -> list[str]:
    """A workspace of the user's that cuBLAS does not document as deterministic: torch would raise on it."""
    import os

    theirs = os.environ.get(determinism.CUBLAS_WORKSPACE)
    if not (determinism.wanted(config) and plan.gpus and theirs) or theirs in determinism.CUBLAS_DETERMINISTIC:
        return []
    return [
        f"deterministic=true on torch with {determinism.CUBLAS_WORKSPACE}={theirs} (yours, kept): cuBLAS is "
        f"deterministic only with {' or '.join(determinism.CUBLAS_DETERMINISTIC)}, and PyTorch raises an error at "
        f"the first cuBLAS matmul; unset it or set {determinism.CUBLAS_DETERMINISTIC[0]}"
    ]


def _apply_determinism(torch, config: Config) -> None:
    """Deterministic algorithms and cuDNN settings as ``deterministic`` asks, undone by reset()."""
    want = determinism.wanted(config)
    if not want and config.deterministic == "auto":
        return  # the framework's default, and whatever the script sets itself
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), cudnn.benchmark, cudnn.deterministic)

    def undo() -> None:
        torch.use_deterministic_algorithms(before[0])
        cudnn.benchmark, cudnn.deterministic = before[1], before[2]

    state.on_reset("torch-determinism", undo)
    torch.use_deterministic_algorithms(want)
    cudnn.benchmark, cudnn.deterministic = (False, True) if want else (before[1], False)
    if want and not torch.cuda.is_initialized():  # cuBLAS will start with the workspace set
        state.current().process["torch-cublas-before-cuda"] = True


def notices(config: Config, plan: Plan) -> list[str]:
    """Settings the user set that PyTorch has no mechanism for: flagged, never silently dropped."""
    out = []
    if config["memory_growth"].source != "default" and not config.memory_growth:
        out.append(
            f"memory_growth=false ({config['memory_growth'].location}) is not applicable on torch: "
            "PyTorch's caching allocator always allocates on demand"
        )
    if config["cpu_replicas"].source != "default" and config.cpu_replicas:
        out.append(
            f"cpu_replicas={config.cpu_replicas} ({config['cpu_replicas'].location}) is not applicable on "
            "torch: Keras has no PyTorch distribution"
        )
    return out + _determinism_notices(config, plan)


def plan_distribution(config: Config, plan: Plan, environ: Mapping[str, str]) -> StrategyPlan:
    refuse(config)
    return StrategyPlan("none", (keras_device(plan),))


def keras_device(plan: Plan) -> str:
    return f"cuda:{plan.gpus[0]}" if plan.gpus else "cpu"


def start(config: Config, environ: Mapping[str, str]) -> None:
    """Nothing to start before the devices are detected."""


def preflight(config: Config, plan: Plan) -> None:
    core = sys.modules.get("keras.src.backend.torch.core")
    if (
        core is not None
        and core.DEFAULT_DEVICE != keras_device(plan)
        and not (core.DEFAULT_DEVICE == "cuda" and keras_device(plan) == "cuda:0")
    ):
        raise TooLateError(
            f"device cannot be changed to {keras_device(plan)}: Keras was imported with {core.DEFAULT_DEVICE}",
            hint=common.TOO_LATE_HINT,
        )
    import torch

    if (
        determinism.wanted(config)
        and plan.gpus
        and torch.cuda.is_initialized()
        and not state.current().process.get("torch-cublas-before-cuda")
    ):
        raise TooLateError(
            f"deterministic=true cannot be applied on torch: CUDA has already started in this process, and cuBLAS "
            f"reads {determinism.CUBLAS_WORKSPACE} when it starts",
            hint=common.TOO_LATE_HINT,
        )
    if (
        config.threads.inter
        and config.threads.inter != torch.get_num_interop_threads()
        and state.current().process.get("torch-interop")
    ):
        raise TooLateError(
            f"inter-op threads cannot be changed to {config.threads.inter}: PyTorch takes its "
            f"inter-op pool size once per process, and it is {torch.get_num_interop_threads()}",
            hint=common.TOO_LATE_HINT,
        )


def apply(config: Config, plan: Plan, strategy_plan: StrategyPlan) -> None:
    """The device for Keras, PyTorch's thread pools (the inter-op one first: it can still refuse), float32 math."""
    import torch

    if config.threads.inter and config.threads.inter != torch.get_num_interop_threads():
        try:
            torch.set_num_interop_threads(config.threads.inter)  # once per process: reset cannot undo it
        except RuntimeError as error:
            raise TooLateError(
                f"inter-op threads cannot be changed to {config.threads.inter}: {error}", hint=common.TOO_LATE_HINT
            ) from None
        # sized once per process: reset() cannot undo it, so the session keeps the fact through one
        state.current().process["torch-interop"] = True
    if "keras.src.backend.torch.core" not in sys.modules:
        state.setenv(DEVICE_VARIABLE, keras_device(plan))
    apply_math(plan)
    _apply_memory_limit(torch, config, plan)
    _apply_determinism(torch, config)
    if config.threads.intra and config.threads.intra != torch.get_num_threads():
        before = torch.get_num_threads()
        state.on_reset("torch-threads", lambda: torch.set_num_threads(before))
        torch.set_num_threads(config.threads.intra)


def memory_fractions(config: Config, plan: Plan) -> dict[int, float]:
    """The fraction of each selected GPU's memory that memory_limit allows ({} without a limit or on a CPU);
    a size needs the GPU's memory, which PyTorch reports (the inventory holds it)."""
    inventory, hint = state.current().inventory, "give a fraction instead, e.g. memory_limit: 0.5"
    return memorylimit.per_gpu(config, plan, inventory, "PyTorch", memorylimit.fraction_of, hint)


def _apply_memory_limit(torch, config: Config, plan: Plan) -> None:
    """torch.cuda.set_per_process_memory_fraction on each selected GPU, read back; reset() puts 1.0 back
    (PyTorch's own default: no cap)."""
    state.undo("torch-memory-limit")
    fractions = memory_fractions(config, plan)
    if not fractions:
        return

    def undo() -> None:
        for index in fractions:
            torch.cuda.set_per_process_memory_fraction(1.0, index)

    state.on_reset("torch-memory-limit", undo)
    read_back = getattr(torch.cuda, "get_per_process_memory_fraction", None)  # PyTorch 2.8+
    for index, fraction in fractions.items():
        torch.cuda.set_per_process_memory_fraction(fraction, index)
        read = read_back(index) if read_back else fraction
        if not math.isclose(read, fraction, rel_tol=1e-6):
            raise TooLateError(
                f"memory_limit={config.memory_limit} was set as {fraction} of cuda:{index}, but PyTorch reads back "
                f"{read}",
                hint="report it: devswitch sets the fraction with torch.cuda.set_per_process_memory_fraction",
            )


def strategy():
    return None


def versions() -> dict:
    import torch

    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }


def out_of_memory(error: BaseException) -> bool:
    """PyTorch's out-of-memory is ``torch.cuda.OutOfMemoryError`` (never imports torch to say so)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


def release_memory() -> None:
    """Hand the CUDA caching allocator's free blocks back to the device."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def model_device(model) -> str:
    for weight in getattr(model, "weights", [])[:1]:
        return str(getattr(getattr(weight, "value", weight), "device", "unknown"))
    return "unknown"


class Runner(common.NoHostPool):
    """The benchmark's call path: eager ``model(x)`` under ``torch.no_grad`` (``torch.compile`` with xla)."""

    def __init__(self, model, jit_compile: bool, gpus: tuple[int, ...]):
        import torch
        from keras.src.backend.torch.core import get_device

        self.torch, self.model = torch, model
        self.device = get_device()
        self.cuda = str(self.device).startswith("cuda")
        self._call = torch.compile(model) if jit_compile else model

    def input(self, shape: tuple[int, ...]):
        return self.torch.rand(shape, dtype=self.torch.float32, device=self.device)

    def to_host(self, x):
        return x.detach().cpu().numpy()

    def forward(self, x):
        with self.torch.no_grad():
            return self._call(x, training=False)

    def sync(self, y) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)  # CPU kernels return when done; CUDA ones are queued

    def reset_peak_memory(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> int | None:
        return int(self.torch.cuda.max_memory_allocated(self.device)) if self.cuda else None

    def peak_memory_source(self) -> str:
        return (
            f"PyTorch allocator's peak on {self.device} (max_memory_allocated after reset_peak_memory_stats) "
            "over the first call and warm-up, with what was already in use (the weights)"
        )

    def matmul_peak(
        self, dtype: str, size: int, iterations: int = 5, clock: Callable[[], float] = time.perf_counter
    ) -> tuple[float, float]:
        torch = self.torch
        t0 = clock()
        a = torch.rand((size, size), device=self.device).to(getattr(torch, dtype))
        with torch.no_grad():
            torch.matmul(a, a)
            self.sync(None)
            best = math.inf
            for _ in range(iterations):
                t = clock()
                torch.matmul(a, a)
                self.sync(None)
                best = min(best, clock() - t)
        return 2 * size**3 / best / 1e9, clock() - t0
