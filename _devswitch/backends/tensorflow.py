"""The TensorFlow backend: tf.config for devices, memory and threads, tf.distribute for strategies,
``tf.function`` for the benchmark's compiled path.

TensorFlow is imported by the functions here, never when this module is imported.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping

from .. import determinism, memorylimit, state
from ..config import Config
from ..devices import Gpu, Plan
from ..errors import TooLateError
from ..settings import LOG_LEVELS
from . import common
from ._tfpool import CpuPool, cpu_pool  # noqa: F401 - cpu_pool: Backend.cpu_pool

LIBRARY = "tensorflow"
EXTRA = "devswitch"
DISPLAY = "TensorFlow"
SEES_GPUS_WHEN_ON_CPU = True  # physical devices are listed even when none is made visible
log = logging.getLogger("devswitch")


def _state() -> dict:
    """What this backend keeps (the strategy it made), on the process's session: reset() clears it."""
    return state.current().backend_of(LIBRARY)


def environment(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """TF_CPP_MIN_LOG_LEVEL is read when TensorFlow's C++ library loads: it must be set before the import."""
    if config["log_level"].source != "default" or "TF_CPP_MIN_LOG_LEVEL" not in environ:
        return {"TF_CPP_MIN_LOG_LEVEL": LOG_LEVELS[config.log_level]}
    return {}


def refuse(config: Config) -> None:
    """Every setting has a TensorFlow meaning: nothing to refuse."""


def detect_gpus() -> tuple[Gpu, ...]:
    """GPUs as TensorFlow sees them (respects CUDA_VISIBLE_DEVICES); does not start TF's runtime."""
    import tensorflow as tf

    physical = tf.config.list_physical_devices("GPU")
    memory = common.nvml_memory() if physical else {}
    gpus = []
    for index, device in enumerate(physical):
        details = tf.config.experimental.get_device_details(device)
        cc = details.get("compute_capability")
        gpus.append(Gpu(index, details.get("device_name", device.name), tuple(cc) if cc else None, memory.get(index)))
    return tuple(gpus)


# Measured with `devswitch compare alexnet --backends tensorflow,jax,torch --devices cpu --precisions
# fp32,bf16,fp16` on a 2-core AVX512-BF16 CPU (README "Three Keras backends"): TensorFlow 2.21 + oneDNN,
# bf16 / fp32 = 1.93x at batch 128 and 0.93x at batch 1; fp16 0.83x and 0.44x.
CPU_BF16 = (
    "CPU has {feature}: TensorFlow (oneDNN) runs bf16 natively, measured 1.9x fp32 on AlexNet at batch "
    "128 (0.9x at batch 1)"
)
CPU_HALF = ("bf16", CPU_BF16)
CPU_FP16 = "measured with TensorFlow on AlexNet, a convnet: 0.83x of fp32 at batch 128, 0.44x at batch 1"
UNSEEN_STEPS = None  # a custom loop's steps: a Keras optimizer's (halfnotes sees them)


# float32 math (maths.py): TF32 is TensorFlow's one switch. Measured on an AMX CPU (issue 15):
# ONEDNN_DEFAULT_FPMATH_MODE=BF16 left TensorFlow's float32 matmul unchanged, so bf16 math is not offered.
NO_BF16_MATH = (
    "TensorFlow has no switch for bf16 math inside float32 ops (ONEDNN_DEFAULT_FPMATH_MODE=BF16 left "
    "its CPU matmul unchanged, measured); precision: bf16 (the Keras policy) is TensorFlow's bf16"
)
TF32_CALL = "tf.config.experimental.enable_tensor_float_32_execution"


def math_effect(mode: str, kind: str, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """What ``math: mode`` puts in force on ``kind`` of device (maths.KINDS); None = no effect."""
    from ..maths import NO_TF32_CPU, NO_TF32_GPU

    if mode == "auto":
        if kind == "gpu-tf32":
            return "tf32", (
                "TensorFlow runs float32 matmuls and convolutions in TF32 by default "
                "(tensor_float_32_execution_enabled() is True) on TF32 tensor cores"
            )
        return "ieee", "TensorFlow enables TF32 by default, but " + (NO_TF32_GPU if kind == "gpu" else NO_TF32_CPU)
    if mode == "ieee":
        return "ieee", f"{TF32_CALL}(False)"
    if mode == "tf32":
        return (
            ("tf32", f"{TF32_CALL}(True)")
            if kind == "gpu-tf32"
            else (None, NO_TF32_GPU if kind == "gpu" else NO_TF32_CPU)
        )
    return None, NO_BF16_MATH


def apply_math(plan: Plan) -> None:
    """Set TF32 execution for ``plan.maths`` (works while the runtime runs); auto restores what was there."""
    import tensorflow as tf

    state.undo("tf-math")  # back to what TensorFlow had before devswitch, then the mode asked for
    mode = plan.maths.apply if plan.maths is not None else None
    if mode is None:
        return
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    state.on_reset("tf-math", lambda: tf.config.experimental.enable_tensor_float_32_execution(before))
    tf.config.experimental.enable_tensor_float_32_execution(mode == "tf32")


def math_state() -> dict:
    """What TensorFlow itself says about float32 math, for tests and records."""
    import tensorflow as tf

    return {"tensor_float_32_execution": tf.config.experimental.tensor_float_32_execution_enabled()}


def meanings(config: Config, plan: Plan) -> dict[str, str]:
    return {
        "device": "tf.config.set_visible_devices (the selected GPUs, renumbered from 0)",
        "memory_growth": "tf.config.experimental.set_memory_growth on each selected GPU",
        "memory_limit": memorylimit.meaning(config, plan, MEMORY_LIMIT),
        "threads": "tf.config.threading intra-op / inter-op pool sizes",
        "xla": describe_xla(config.xla, len(plan.gpus)),
        "strategy": "tf.distribute: MirroredStrategy / MultiWorkerMirroredStrategy (TF_CONFIG)",
        "cpu_replicas": "logical CPU devices (tf.config.set_logical_device_configuration)",
        "math": f"{TF32_CALL}: ieee = False, tf32 = True (GPUs >= 8.0); bf16: not available on TensorFlow",
        **determinism.meanings(config, DETERMINISM, "Python's random, NumPy, tf.random.set_seed, Keras' SeedGenerator"),
    }


DETERMINISM = (
    "tf.config.experimental.enable_op_determinism(): every op runs a deterministic kernel (tf.data too), and an "
    "op that has none raises an error when it runs, never a silent difference"
)


def _apply_determinism(config: Config) -> None:
    """Op determinism on or off as ``deterministic`` asks (off: only where devswitch turned it on before)."""
    from tensorflow.python.framework import config as tf_config

    want = determinism.wanted(config)
    before = tf_config.is_op_determinism_enabled()
    if want == before or (not want and config.deterministic == "auto"):
        return
    state.on_reset(
        "tf-op-determinism", lambda: tf_config.enable_op_determinism() if before else tf_config.disable_op_determinism()
    )
    if want:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def describe_xla(xla, gpus: int) -> str:
    """What ``xla`` does here, in Keras' words (keras/src/trainers/trainer.py, _resolve_auto_jit_compile)."""
    if xla != "auto":
        return f"jit_compile={xla} for every compile() that does not pass jit_compile itself"
    if not gpus:
        return "Keras' jit_compile='auto': off (TensorFlow on a CPU-only machine)"
    return (
        "Keras' jit_compile='auto': on for a model whose layers all support XLA (GPU present), "
        "off under a tf.distribute strategy"
    )


def notices(config: Config, plan: Plan) -> list[str]:
    """Every setting has a TensorFlow mechanism: nothing to flag."""
    return []


def plan_distribution(config: Config, plan: Plan, environ: Mapping[str, str]):
    from ..distribute import plan_strategy

    return plan_strategy(config, plan, environ)


def _too_late(what: str, asked, current) -> TooLateError:
    return TooLateError(
        f"{what} cannot be changed to {asked}: TensorFlow's runtime is already initialised with {current}",
        hint=common.TOO_LATE_HINT,
    )


def start(config: Config, environ: Mapping[str, str]) -> None:
    """Nothing to start before the devices are detected."""


def preflight(config: Config, plan: Plan) -> None:
    """Refuse, before changing anything, what TensorFlow's already-running runtime can no longer take."""
    import tensorflow as tf

    try:
        from tensorflow.python.eager import context

        running = bool(context.context()._initialized)
    except (ImportError, AttributeError):
        return  # unknown: the setters below still refuse, one by one
    if not running:
        return
    physical = tf.config.list_physical_devices("GPU")
    wanted = [physical[i].name for i in plan.gpus if i < len(physical)]
    current = [d.name for d in tf.config.get_visible_devices("GPU")]
    if current != wanted:
        raise _too_late("the visible GPUs", wanted or "none (CPU)", current or "none")
    threading = tf.config.threading
    for label, value, now in (
        ("intra-op threads", config.threads.intra, threading.get_intra_op_parallelism_threads()),
        ("inter-op threads", config.threads.inter, threading.get_inter_op_parallelism_threads()),
    ):
        if value != now:
            raise _too_late(label, value, now)
    if config.cpu_replicas > 1:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != config.cpu_replicas:
            raise _too_late("cpu_replicas", config.cpu_replicas, f"{have} logical CPU device(s)")
    applied = _state().get("strategy_plan")
    if config.strategy == "multi_worker" and applied is not None and applied.name != "multi_worker":
        raise _too_late(
            "the strategy", "multi_worker (which TensorFlow creates only before its runtime starts)", applied.name
        )


MEMORY_LIMIT = (
    "tf.config.set_logical_device_configuration: one logical device of memory_limit MiB on each selected "
    "GPU, taken at start (with a logical device memory_growth does not apply)"
)


def memory_limits(config: Config, plan: Plan) -> dict[int, int]:
    """The MiB of the logical device for each selected GPU (a fraction of its memory in the inventory, which
    apply() has just stored); {} without a limit; a ConfigError for a fraction of a GPU of unknown memory."""
    inventory, hint = state.current().inventory, "give a size instead, e.g. memory_limit: 8GiB"
    limits = memorylimit.per_gpu(config, plan, inventory, "TensorFlow", memorylimit.bytes_of, hint)
    return {index: max(1, limit // 2**20) for index, limit in limits.items()}


def _apply_memory_limit(tf, devices: list, limits: dict[int, int]) -> None:
    """One logical device of the limit on each selected GPU, read back where the runtime already runs."""
    for device, mib in zip(devices, limits.values(), strict=True):
        try:
            tf.config.set_logical_device_configuration(device, [tf.config.LogicalDeviceConfiguration(memory_limit=mib)])
        except RuntimeError:
            have = tf.config.get_logical_device_configuration(device) or []
            if [c.memory_limit for c in have] != [mib]:
                current = f"{have[0].memory_limit} MiB" if have else "no limit"
                raise _too_late(f"memory_limit of {device.name}", f"{mib} MiB", current) from None


def _apply_devices(tf, plan: Plan, config: Config) -> None:
    physical = tf.config.list_physical_devices("GPU")
    wanted = [physical[i] for i in plan.gpus]
    limits = memory_limits(config, plan)  # refused (a fraction of unknown memory) before anything changes
    try:
        tf.config.set_visible_devices(wanted, "GPU")
    except RuntimeError:
        current = tf.config.get_visible_devices("GPU")
        if [d.name for d in current] != [d.name for d in wanted]:
            raise _too_late(
                "the visible GPUs", [d.name for d in wanted] or "none (CPU)", [d.name for d in current] or "none"
            ) from None
    if limits:  # a logical device of that size; set_memory_growth would refuse a GPU that has one
        _apply_memory_limit(tf, wanted, limits)
        return
    for device in wanted:
        try:
            tf.config.experimental.set_memory_growth(device, config.memory_growth)
        except RuntimeError:
            current = tf.config.experimental.get_memory_growth(device)
            if current != config.memory_growth:
                raise _too_late(f"memory_growth of {device.name}", config.memory_growth, current) from None


def _apply_cpu_replicas(tf, config: Config) -> None:
    """Split the CPU into N logical devices (the way to run N replicas on a CPU-only machine)."""
    if config.cpu_replicas <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * config.cpu_replicas)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != config.cpu_replicas:
            raise _too_late("cpu_replicas", config.cpu_replicas, f"{have} logical CPU device(s)") from None


def _apply_strategy(tf, strategy_plan) -> None:
    """Create TensorFlow's own strategy and make it the default, so unmodified scripts build and fit under it.

    A later configure() that leaves the strategy as it was keeps the same strategy object: models
    already built stay under it, and a MultiWorkerMirroredStrategy cannot be created twice anyway.
    """
    if strategy_plan == _state().get("strategy_plan"):
        return
    state.on_reset("strategy", lambda: tf.distribute.experimental_set_strategy(None))
    # the new strategy is made before the old one is let go: a refusal leaves the old one in place
    if strategy_plan.name == "none":
        strategy = None
    elif strategy_plan.name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=list(strategy_plan.devices))
    else:
        if strategy_plan.tf_config is not None:
            state.setenv("TF_CONFIG", strategy_plan.tf_config)  # read by TFConfigClusterResolver
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            raise TooLateError(
                f"strategy=multi_worker must be created before TensorFlow's runtime starts: {error}",
                hint=common.TOO_LATE_HINT,
            ) from None
        _install_multi_worker_shims(tf)
    tf.distribute.experimental_set_strategy(strategy)
    _state().update(strategy=strategy, strategy_plan=strategy_plan)  # remembered only once it exists


def _install_multi_worker_shims(tf) -> None:
    """Make Keras 3's fit() work under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Two steps of Keras' TensorFlow trainer fail when there is more than one worker:
    1. ``_maybe_symbolic_build`` collective-reduces the first *data* batch ("MEAN")
       only to learn its shapes; the first local replica's batch has the same
       shapes and needs no collective op.
    2. ``reduce_per_replica`` reduces the step's scalar logs with ``axis=0``,
       which a scalar does not have; a scalar is reduced with ``axis=None``.
    Both shims act only under MultiWorkerMirroredStrategy and defer to Keras
    otherwise; if Keras' internals differ, nothing is patched (and a warning says so).
    """
    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer

        symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
        reduce_per_replica = tf_trainer.reduce_per_replica
    except (ImportError, AttributeError):
        log.warning(
            "multi_worker: this Keras version's trainer is not the one devswitch knows; fit() may hit "
            "keras-team/keras#20585"
        )
        return
    if state.patched(tf_trainer, "reduce_per_replica"):
        return
    multi_worker = tf.distribute.MultiWorkerMirroredStrategy
    distributed = tf.distribute.DistributedValues

    @functools.wraps(symbolic_build)
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and isinstance(strategy, multi_worker):
            for _, _, batches in iterator:
                first = next(batches)
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0] if isinstance(v, distributed) else v, first
                )
                break
            return symbolic_build(self, None, data_batch)
        return symbolic_build(self, iterator, data_batch)

    @functools.wraps(reduce_per_replica)
    def _reduce_per_replica(values, strategy, reduction="auto"):
        if not (isinstance(strategy, multi_worker) and reduction in ("auto", "mean")):
            return reduce_per_replica(values, strategy, reduction)

        def reduce_one(value):
            local = strategy.experimental_local_results(value)[0] if isinstance(value, distributed) else value
            if tf.is_tensor(local) and local.shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return reduce_per_replica(value, strategy, reduction)

        return tf.nest.map_structure(reduce_one, values)

    state.patch(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build", _maybe_symbolic_build)
    state.patch(tf_trainer, "reduce_per_replica", _reduce_per_replica)


def strategy():
    """The tf.distribute strategy devswitch applied, or None."""
    return _state().get("strategy")


def _apply_threads(tf, config: Config) -> None:
    threading = tf.config.threading
    for label, value, setter, getter in (
        (
            "intra-op threads",
            config.threads.intra,
            threading.set_intra_op_parallelism_threads,
            threading.get_intra_op_parallelism_threads,
        ),
        (
            "inter-op threads",
            config.threads.inter,
            threading.set_inter_op_parallelism_threads,
            threading.get_inter_op_parallelism_threads,
        ),
    ):
        if value == getter():
            continue
        try:
            setter(value)
        except RuntimeError:
            raise _too_late(label, value, getter()) from None


def apply(config: Config, plan: Plan, strategy_plan) -> None:
    """Set TensorFlow up for ``plan``: visible GPUs, memory growth, logical CPUs, threads, strategy, math."""
    import tensorflow as tf

    if config.log_level in ("quiet", "error"):
        tf_log = tf.get_logger()
        level = tf_log.level
        state.on_reset("tf-logger", lambda: tf_log.setLevel(level))
        tf_log.setLevel(logging.ERROR)
    _apply_devices(tf, plan, config)
    _apply_cpu_replicas(tf, config)
    _apply_threads(tf, config)
    _apply_strategy(tf, strategy_plan)
    apply_math(plan)
    _apply_determinism(config)


def versions() -> dict:
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    return {
        "tensorflow": tf.__version__,
        "cuda_build": bool(build.get("is_cuda_build", False)),
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
    }


def out_of_memory(error: BaseException) -> bool:
    """TensorFlow's out-of-memory is ``ResourceExhaustedError`` (an error of TensorFlow's cannot exist
    before TensorFlow is imported, so this never imports it)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.ResourceExhaustedError)


def release_memory() -> None:
    """Clear the eager kernel cache (what ``keras.backend.clear_session`` does on TensorFlow besides collecting
    garbage, without resetting Keras' global state, which holds devswitch's dtype policy)."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and tf.executing_eagerly():
        from tensorflow.python.eager import context

        context.context().clear_kernel_cache()


def model_device(model) -> str:
    """Where the model's variables live, e.g. 'CPU:0', read from the first variable."""
    for weight in getattr(model, "weights", [])[:1]:
        device = str(getattr(getattr(weight, "value", weight), "device", "") or "")
        if "device:" in device:
            return device.rsplit("device:", 1)[1]
        return device or "unknown"
    return "unknown"


class Runner:
    """The benchmark's compiled call path: ``tf.function`` of ``model(x)``, synchronised by ``.numpy()``."""

    def __init__(self, model, jit_compile: bool, gpus: tuple[int, ...]):
        import tensorflow as tf

        self.tf, self.model, self.gpus = tf, model, gpus
        self.gpu_device = "GPU:0" if gpus else None
        self._forward = tf.function(lambda t: model(t, training=False), jit_compile=jit_compile)
        self._pool = CpuPool(tf)  # the CPU allocator's use before the batch size, and its peak above it

    def input(self, shape: tuple[int, ...]):
        return self.tf.random.uniform(shape, dtype=self.tf.float32)

    def to_host(self, x):
        return x.numpy()

    def forward(self, x):
        return self._forward(x)

    def sync(self, y) -> None:
        if self.gpu_device:
            self.tf.test.experimental.sync_devices()  # waits for the GPU, no copy of the result to the host
        else:
            y.numpy()  # on the CPU: waits for the result, a view, no copy

    def reset_peak_memory(self) -> None:
        if self.gpu_device:
            self.tf.config.experimental.reset_memory_stats(self.gpu_device)

    def peak_memory(self) -> int | None:
        return self.tf.config.experimental.get_memory_info(self.gpu_device)["peak"] if self.gpu_device else None

    def peak_memory_source(self) -> str:
        return (
            f"TensorFlow allocator's peak on {self.gpu_device} (get_memory_info()['peak'] after reset_memory_stats) "
            "over the first call and warm-up, with what was already in use (the weights)"
        )

    def host_pool_start(self) -> None:
        self._pool.start()

    def host_pool_peak(self) -> int:
        return self._pool.peak()

    def matmul_peak(
        self, dtype: str, size: int, iterations: int = 5, clock: Callable[[], float] = time.perf_counter
    ) -> tuple[float, float]:
        """Measured GFLOP/s of a size x size matmul in ``dtype`` on the default device; (GFLOP/s, seconds)."""
        tf = self.tf
        t0 = clock()
        a = tf.cast(tf.random.uniform((size, size), dtype=tf.float32), dtype)
        matmul = tf.function(lambda m: tf.matmul(m, m))
        self.sync(matmul(a))
        best = math.inf
        for _ in range(iterations):
            t = clock()
            self.sync(matmul(a))
            best = min(best, clock() - t)
        return 2 * size**3 / best / 1e9, clock() - t0
