"""The JAX backend: JAX's own variables for platforms and memory (read when JAX starts), its default
device for the selected GPU, Keras' distribution API (DataParallel, initialize) for strategies, and a
jitted stateless call for the benchmark.

JAX is imported by the functions here, never when this module is imported.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from collections.abc import Callable, Mapping

from .. import determinism, memorylimit, state
from ..config import Config
from ..devices import Gpu, Plan
from ..errors import ConfigError, TooLateError, quote
from ..plans import StrategyPlan
from ..settings import LOG_LEVELS, MAX_WORKER_INDEX, MAX_WORKERS, Invalid, count
from . import common

_processes = count(MAX_WORKERS)
_process_id = count(MAX_WORKER_INDEX)

cpu_pool = common.no_pool  # its CPU memory comes from C's allocator: no pool of its own
LIBRARY = "jax"
EXTRA = "devswitch[jax]"
DISPLAY = "JAX"
# A device=cpu process sets JAX_PLATFORMS=cpu before JAX starts: it cannot see the GPUs, so it cannot tell
# whether the machine has any.
SEES_GPUS_WHEN_ON_CPU = False
log = logging.getLogger("devswitch")


def _state() -> dict:
    """What this backend keeps (the distribution it set), on the process's session: reset() clears it."""
    return state.current().backend_of(LIBRARY)


HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"
# Keras' own variables for jax.distributed (keras.distribution.initialize reads them).
CLUSTER_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def _host_flags(existing: str, count: int) -> str:
    flags = re.sub(rf"\s*{HOST_DEVICES_FLAG}=\S*", "", existing).strip()
    return f"{flags} {HOST_DEVICES_FLAG}={count}".strip()


def environment(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """JAX reads these when it starts: platforms, GPU memory preallocation, host device count, log level."""
    env = {}
    if config["memory_growth"].source != "default" or "XLA_PYTHON_CLIENT_PREALLOCATE" not in environ:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false" if config.memory_growth else "true"
    if config["log_level"].source != "default" or "TF_CPP_MIN_LOG_LEVEL" not in environ:
        env["TF_CPP_MIN_LOG_LEVEL"] = LOG_LEVELS[config.log_level]  # XLA's C++ logging reads it too
    if config.device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"  # the GPU backend is never started, and no GPU memory is taken
    if config.cpu_replicas > 1:
        env["XLA_FLAGS"] = _host_flags(environ.get("XLA_FLAGS", ""), config.cpu_replicas)
    if determinism.wanted(config):  # appended to the user's flags, never replacing them
        env["XLA_FLAGS"] = determinism.xla_flags(env.get("XLA_FLAGS", environ.get("XLA_FLAGS", "")))
    return {**env, **memorylimit.jax_variables(config, environ, common.nvml_memory)}


def refuse(config: Config) -> None:
    """What the JAX path cannot do: multi_worker builds one mesh of every process's GPUs, not a subset."""
    if config.strategy == "multi_worker" and config.device.startswith("gpu:"):
        raise ConfigError(
            f"device={config.device} with strategy=multi_worker on jax: the cluster's mesh takes "
            "every GPU of every process",
            where=config["device"].location,
            hint="use device: gpu (all), or set CUDA_VISIBLE_DEVICES for each process",
        )


def started() -> bool:
    """Whether JAX's backends are initialised (after which its variables are no longer read)."""
    import sys

    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(bridge is not None and bridge.backends_are_initialized())


def _cc(device) -> tuple[int, int] | None:
    text = str(getattr(device, "compute_capability", "") or "")
    match = re.match(r"^(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def detect_gpus() -> tuple[Gpu, ...]:
    """GPUs as JAX sees them (starts JAX's backends: environment() must have been applied first)."""
    import jax

    try:
        devices = jax.devices("gpu")
    except RuntimeError:  # no GPU platform (CPU-only jaxlib, JAX_PLATFORMS=cpu, or no device)
        return ()
    gpus = []
    for index, device in enumerate(devices):
        try:
            memory = int((device.memory_stats() or {}).get("bytes_limit") or 0) or None
        except Exception:  # noqa: BLE001 - memory is only shown when the platform reports it
            memory = None
        gpus.append(Gpu(index, getattr(device, "device_kind", "GPU"), _cc(device), memory))
    return tuple(gpus)


# Measured as in tensorflow.py (README "Three Keras backends"): JAX 0.10 / XLA:CPU, bf16 / fp32 = 0.92x at
# batch 128 and 0.22x at batch 1 (fp16 0.95x, 0.24x): XLA:CPU does not turn the CPU's bf16 instructions
# into a speed-up for these convolutions, so half stays fp32 on a CPU with JAX.
CPU_NO_BF16 = (
    "JAX (XLA:CPU) measured bf16 slower than fp32 on this kind of CPU (0.9x on AlexNet at batch 128, "
    "0.2x at batch 1), so fp32 is fastest"
)
CPU_HALF = ("fp32", CPU_NO_BF16)
CPU_FP16 = "measured with JAX on AlexNet, a convnet: 0.95x of fp32 at batch 128, 0.24x at batch 1"
# a JAX custom loop usually updates with optax or by hand: steps halfnotes cannot see (it sees Keras optimizers)
UNSEEN_STEPS = "optax or jax.grad updates"


# float32 math (maths.py): jax_default_matmul_precision, which jax.config.update changes at run time (jit
# retraces). XLA:CPU ignores it: a 1024x1024 float32 matmul had the same 4.1e-7 relative error under
# "highest", "tensorfloat32" and "bfloat16" (measured, AVX512-BF16 CPU; issue 15 on an AMX CPU too).
PRECISION = "jax_default_matmul_precision"
PRECISIONS = {"ieee": "highest", "tf32": "tensorfloat32", "bf16": "bfloat16"}
_ON_GPU = {
    "highest": "ieee",
    "float32": "ieee",
    "high": "tf32",
    "tensorfloat32": "tf32",
    "bfloat16_3x": "tf32",
    "default": "tf32",
    "bfloat16": "bf16",
    "fastest": "bf16",
}  # on TF32/bf16 tensor cores
XLA_CPU = "XLA:CPU ignores jax_default_matmul_precision (measured: the same float32 result under every value)"


def math_effect(mode: str, kind: str, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """What ``math: mode`` puts in force on ``kind`` of device (maths.KINDS); None = no effect."""
    from ..maths import NO_BF16_GPU, NO_TF32_CPU, NO_TF32_GPU

    if mode == "auto":
        asked = environ.get("JAX_DEFAULT_MATMUL_PRECISION", "").strip().lower()
        if not kind.startswith("gpu"):
            return "ieee", "XLA:CPU computes float32 matmuls in full precision" + (
                f" ({XLA_CPU}: JAX_DEFAULT_MATMUL_PRECISION={asked} changes nothing)" if asked else ""
            )
        if kind == "gpu":
            return "ieee", "JAX's default precision, and " + NO_TF32_GPU
        if asked:
            return _ON_GPU.get(asked, f"jax {asked}"), f"JAX_DEFAULT_MATMUL_PRECISION={asked}"
        return "tf32", (
            f"XLA:GPU runs float32 dots at JAX's DEFAULT precision on TF32 tensor cores ({PRECISION} is None)"
        )
    if mode == "ieee":
        return "ieee", f'jax.config.update("{PRECISION}", "highest")'
    if not kind.startswith("gpu"):
        return None, NO_TF32_CPU if mode == "tf32" else XLA_CPU
    if kind == "gpu":
        return None, NO_TF32_GPU if mode == "tf32" else NO_BF16_GPU
    return mode, f'jax.config.update("{PRECISION}", "{PRECISIONS[mode]}")'


def apply_math(plan: Plan) -> None:
    """Set JAX's default matmul precision for ``plan.maths``; auto restores what was there."""
    import jax

    state.undo("jax-math")  # back to what JAX had before devswitch, then the mode asked for
    mode = plan.maths.apply if plan.maths is not None else None
    if mode is None:
        return
    before = getattr(jax.config, PRECISION)
    state.on_reset("jax-math", lambda: jax.config.update(PRECISION, before))
    jax.config.update(PRECISION, PRECISIONS[mode])


def math_state() -> dict:
    """What JAX itself says about float32 math, for tests and records."""
    import jax

    return {PRECISION: getattr(jax.config, PRECISION)}


def meanings(config: Config, plan: Plan) -> dict[str, str]:
    threads = (
        "not applicable on jax: XLA:CPU has no public thread-pool setting (it uses every core "
        "the process may run on; limit it with taskset or cgroups)"
    )
    return {
        "device": (
            "JAX_PLATFORMS=cpu before JAX starts (its GPU backend never starts)"
            if config.device == "cpu"
            else "JAX's default device (jax_default_device) = the first selected GPU"
            if plan.gpus
            else "JAX's own choice: no GPU found, so the CPU"
        ),
        "memory_growth": (
            "XLA_PYTHON_CLIENT_PREALLOCATE="
            + ("false: allocate as needed" if config.memory_growth else "true: JAX takes 75% of GPU memory at start")
        ),
        "memory_limit": memorylimit.meaning(config, plan, memorylimit.jax_mechanism()),
        "threads": threads,
        "xla": (
            "Keras' jit_compile='auto': on (JAX compiles every model whose layers support XLA)"
            if config.xla == "auto"
            else f"jit_compile={config.xla} for every compile() that does not pass it"
        ),
        "strategy": "keras.distribution: mirrored = DataParallel over the selected devices; multi_worker = "
        "keras.distribution.initialize (jax.distributed) then DataParallel",
        "cpu_replicas": f"{HOST_DEVICES_FLAG}=N in XLA_FLAGS: N host devices",
        "math": f"{PRECISION}: ieee = highest, tf32 = tensorfloat32, bf16 = bfloat16 (XLA:GPU >= 8.0; XLA:CPU "
        "ignores it)",
        **determinism.meanings(
            config,
            f"{determinism.XLA_GPU_FLAG}=true appended to XLA_FLAGS before JAX starts: XLA's GPU reductions and "
            "scatters run deterministically (XLA:CPU already does)",
            "Python's random, NumPy, Keras' SeedGenerator (the source of its layers' JAX keys)",
        ),
    }


DETERMINISM_GAP = (
    f"{determinism.XLA_GPU_FLAG} covers XLA's own GPU kernels only; custom calls outside XLA (cuDNN fused attention, "
    "Pallas or Triton kernels, a library's own CUDA ops) are not covered, and devswitch cannot vouch for them"
)


def notices(config: Config, plan: Plan) -> list[str]:
    """Settings the user set that JAX has no (full) mechanism for: flagged, never silently dropped."""
    out = []
    if config["threads"].source != "default" and config.threads != (0, 0):
        out.append(
            f"threads={config.threads} ({config['threads'].location}) is not applicable on jax: XLA:CPU "
            "has no public thread-pool setting; limit the cores with taskset or cgroups"
        )
    if plan.gpus and config.device.startswith("gpu:") and not config.memory_growth:
        out.append(
            f"device={config.device} with memory_growth=false on jax: JAX preallocates 75% of every GPU "
            "it can see, not only the selected one; set CUDA_VISIBLE_DEVICES before starting Python to "
            "hide the others"
        )
    out += memorylimit.jax_notices(config, plan, state.env_before, common.nvml_memory)
    return out + determinism.on_gpu(config, plan.gpus, DETERMINISM_GAP)


def plan_distribution(config: Config, plan: Plan, environ: Mapping[str, str]) -> StrategyPlan:
    """Keras' distribution API over the selected devices; multi_worker from workers/worker_index or Keras'
    own KERAS_DISTRIBUTION_* variables."""
    local = (
        tuple(f"gpu:{i}" for i in plan.gpus)
        if plan.gpus
        else tuple(f"cpu:{i}" for i in range(max(1, config.cpu_replicas)))
    )
    warnings = []
    if config.strategy == "none":
        if config.cpu_replicas > 1 and not plan.gpus:
            warnings.append(
                f"cpu_replicas={config.cpu_replicas} makes that many host devices, but strategy=none "
                "uses one; set strategy: mirrored to run that many replicas"
            )
        return StrategyPlan("none", local[:1], warnings=tuple(warnings))
    if config.strategy == "mirrored":
        return StrategyPlan("mirrored", local, reason=config["strategy"].location, warnings=tuple(warnings))
    count, index, source = cluster(config, environ)
    return StrategyPlan(
        "multi_worker",
        local,
        count,
        "worker",
        index,
        reason=f"{config['strategy'].location}, cluster from {source}",
        warnings=tuple(warnings),
    )


def cluster(config: Config, environ: Mapping[str, str]) -> tuple[int, int, str]:
    """(processes, this process's index, where the cluster came from) for multi_worker; ConfigError if none."""
    where = config["strategy"].location
    if config.workers:
        if config.worker_index >= len(config.workers):
            raise ConfigError(
                f"worker_index={config.worker_index} is out of range: workers lists {len(config.workers)} address(es)",
                where=config["worker_index"].location,
                hint=f"use an index from 0 to {len(config.workers) - 1}",
            )
        return len(config.workers), config.worker_index, config["workers"].location
    if all(environ.get(v) for v in CLUSTER_VARIABLES):
        numbers = []
        for variable, parse in ((CLUSTER_VARIABLES[1], _processes), (CLUSTER_VARIABLES[2], _process_id)):
            try:
                numbers.append(parse(environ[variable]))
            except Invalid as error:
                raise ConfigError(
                    f"invalid value {quote(environ[variable])}: expected {error.expected}",
                    where=variable,
                    hint="Keras reads it for keras.distribution.initialize",
                ) from None
        count, index = numbers
        if count < 1 or index >= count:
            raise ConfigError(
                f"KERAS_DISTRIBUTION_PROCESS_ID={index} is out of range for {count} processes",
                where=CLUSTER_VARIABLES[2],
                hint=f"use 0 to {max(count, 1) - 1}",
            )
        return count, index, "KERAS_DISTRIBUTION_*"
    raise ConfigError(
        "strategy=multi_worker needs a cluster, and none is set",
        where=where,
        hint="set workers: [host1:port, host2:port] and worker_index: N (the same list on every "
        "machine; the first is the coordinator), or Keras' KERAS_DISTRIBUTION_JOB_ADDRESSES, "
        "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID",
    )


def start(config: Config, environ: Mapping[str, str]) -> None:
    """multi_worker: join the cluster (jax.distributed, through keras.distribution.initialize) before
    anything starts JAX's backends -- detecting the devices would."""
    if not started():  # the flags JAX will read when it starts (devswitch's variables are set by now)
        state.current().process["jax-xla-flags"] = environ.get("XLA_FLAGS", "")
    # joining a cluster is once per process: no reset() can undo it, so the session keeps it through one
    if config.strategy != "multi_worker" or state.current().process.get("jax-initialized"):
        return
    count, index, _ = cluster(config, environ)  # validated before anything is started
    if started():
        raise TooLateError(
            "strategy=multi_worker must join its cluster before JAX's backends start, and they already have",
            hint=common.TOO_LATE_HINT,
        )
    # Keras' own module: this runs before Keras' package has executed (the import hook, see hook.py)
    from keras.src.distribution import distribution_lib

    if config.workers:
        distribution_lib.initialize(",".join(config.workers), count, index)
    else:
        distribution_lib.initialize()  # Keras reads its KERAS_DISTRIBUTION_* variables
    state.current().process["jax-initialized"] = True


def preflight(config: Config, plan: Plan) -> None:
    """JAX reads its variables once, when it starts: refuse a change it would no longer see."""
    if not started():
        return
    import os

    import jax

    wanted = environment(config, os.environ)
    if config.device == "cpu" and any(d.platform != "cpu" for d in jax.devices()):
        raise TooLateError(
            f"device=cpu cannot be applied: JAX has already started with {jax.devices()[0].platform} devices",
            hint=common.TOO_LATE_HINT,
        )
    if config.cpu_replicas > 1 and not plan.gpus and jax.local_device_count("cpu") != config.cpu_replicas:
        raise TooLateError(
            f"cpu_replicas={config.cpu_replicas} cannot be applied: JAX has already started with "
            f"{jax.local_device_count('cpu')} host device(s)",
            hint=common.TOO_LATE_HINT,
        )
    started_with = state.current().process.get("jax-xla-flags") or ""  # "": JAX started before devswitch saw it
    if plan.gpus and determinism.wanted(config) and determinism.XLA_GPU_FLAG not in started_with:
        flag = determinism.XLA_GPU_FLAG
        raise TooLateError(f"deterministic=true: JAX has already started without {flag}", hint=common.TOO_LATE_HINT)
    preallocate = wanted.get("XLA_PYTHON_CLIENT_PREALLOCATE")
    if preallocate is not None and os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE") != preallocate and plan.gpus:
        raise TooLateError(
            f"memory_growth={config.memory_growth} cannot be applied: JAX has already started",
            hint=common.TOO_LATE_HINT,
        )
    memorylimit.jax_refuse_late(config, plan, wanted, os.environ)


def apply(config: Config, plan: Plan, strategy_plan: StrategyPlan) -> None:
    """The default device, the float32 math mode, and Keras' distribution for mirrored / multi_worker."""
    import jax

    # keras.distribution's own module: apply runs before Keras' package has executed (the hook, hook.py)
    from keras.src.distribution import distribution_lib

    apply_math(plan)
    if plan.gpus:
        device = jax.devices("gpu")[plan.gpus[0]]
        before = jax.config.jax_default_device
        state.on_reset("jax-default-device", lambda: jax.config.update("jax_default_device", before))
        jax.config.update("jax_default_device", device)
    if strategy_plan == _state().get("strategy_plan"):
        return
    state.on_reset("jax-distribution", lambda: distribution_lib.set_distribution(None))
    if strategy_plan.name == "none":
        distribution_lib.set_distribution(None)
        _state().update(strategy=None, strategy_plan=strategy_plan)
        return
    if strategy_plan.name == "mirrored":
        devices = (
            [jax.devices("gpu")[i] for i in plan.gpus]
            if plan.gpus
            else jax.local_devices(backend="cpu")[: len(strategy_plan.devices)]
        )
    else:
        devices = jax.devices()  # every process's devices, in one global mesh (each process: all its GPUs)
    distribution = distribution_lib.DataParallel(devices=devices)
    distribution_lib.set_distribution(distribution)
    _state().update(strategy=distribution, strategy_plan=strategy_plan)


def strategy():
    """The Keras distribution devswitch applied, or None."""
    return _state().get("strategy")


def versions() -> dict:
    import jax
    import jaxlib

    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "jax_platforms": sorted({d.platform for d in jax.devices()}),
    }


def out_of_memory(error: BaseException) -> bool:
    """JAX's out-of-memory is an ``XlaRuntimeError`` (``jax.errors.JaxRuntimeError``) whose message says
    ``RESOURCE_EXHAUSTED``; any other runtime error is not (never imports JAX to say so)."""
    jax = sys.modules.get("jax")
    runtime_error = getattr(getattr(jax, "errors", None), "JaxRuntimeError", None)
    return isinstance(runtime_error, type) and isinstance(error, runtime_error) and "RESOURCE_EXHAUSTED" in str(error)


def release_memory() -> None:
    """Drop JAX's compilation caches: each trial compiles its own batch shape, and the executables of the
    earlier ones would add up in the next trial's peak. Freed buffers go back to JAX's own pool (with
    preallocation, JAX's default on a GPU), not to the device: the pool is the limit a trial meets."""
    jax = sys.modules.get("jax")
    if jax is not None:
        jax.clear_caches()


def model_device(model) -> str:
    """Where the model's variables live, e.g. 'cpu:0' or 'cuda:0', read from the first variable."""
    for weight in getattr(model, "weights", [])[:1]:
        # a Keras variable's value as it is held: reading ``.value`` of one that a failed fit left without a
        # value (Keras' JAX trainer takes them out during its steps) would run its initializer
        held = getattr(weight, "__dict__", {})
        value = held["_value"] if "_value" in held else getattr(weight, "value", weight)
        if value is None:
            return "unknown"
        devices = value.devices() if callable(getattr(value, "devices", None)) else set()
        if len(devices) > 1:
            return f"{len(devices)} devices ({sorted(str(d) for d in devices)[0]}, ...)"
        for device in devices:
            return f"{device.platform}:{device.id}"
        return str(getattr(value, "device", "unknown"))
    return "unknown"


class Runner(common.NoHostPool):
    """The benchmark's compiled call path: ``jax.jit`` of ``model.stateless_call``, ``block_until_ready``."""

    def __init__(self, model, jit_compile: bool, gpus: tuple[int, ...]):
        import jax

        self.jax, self.model = jax, model
        self._read_variables()

        def forward(trainable, non_trainable, x):
            return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        self._forward = jax.jit(forward) if jit_compile else forward
        self.device = jax.devices("gpu")[gpus[0]] if gpus else None
        self._base: int | None = None
        self._raised = True  # whether the last batch size raised the process's peak (its figure is its own)
        self._key = jax.random.PRNGKey(0)

    def _read_variables(self) -> None:
        # Keras' own JAX loops (fit, predict) hand back new buffers and free the old ones: read them afresh
        self.trainable = [v.value for v in self.model.trainable_variables]
        self.non_trainable = [v.value for v in self.model.non_trainable_variables]

    def input(self, shape: tuple[int, ...]):
        self._read_variables()  # once per batch size, before its timed steps
        return self.jax.random.uniform(self._key, shape, dtype="float32")

    def to_host(self, x):
        import numpy as np

        return np.asarray(x)

    def forward(self, x):
        return self._forward(self.trainable, self.non_trainable, x)

    def sync(self, y) -> None:
        self.jax.block_until_ready(y)  # waits on the device; no copy to the host

    def _peak(self) -> int | None:
        if self.device is None:
            return None
        stats = self.device.memory_stats() or {}
        return int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None

    def reset_peak_memory(self) -> None:
        self._base = self._peak()  # JAX keeps one peak per process and cannot reset it

    def peak_memory(self) -> int | None:
        """The peak if this batch size raised it; None when an earlier one (or the probe) set it: unknown."""
        peak = self._peak()
        self._raised = peak is not None and (self._base is None or peak > self._base)
        return peak if self._raised else None

    def peak_memory_source(self) -> str:
        from ..memory import format_size

        how = f"JAX allocator's peak_bytes_in_use on {self.device} over the first call and warm-up, with what was "
        how += "already in use (the weights); JAX cannot reset it: the batch size's own where the batch raised it"
        unknown = f"; unknown here: an earlier, larger batch size had set it at {format_size(self._base)}"
        return how if self._raised else how + unknown + " (give batch sizes smallest first)"

    def matmul_peak(
        self, dtype: str, size: int, iterations: int = 5, clock: Callable[[], float] = time.perf_counter
    ) -> tuple[float, float]:
        jax = self.jax
        t0 = clock()
        a = jax.random.uniform(self._key, (size, size), dtype="float32").astype(dtype)
        matmul = jax.jit(lambda m: m @ m)
        matmul(a).block_until_ready()
        best = math.inf
        for _ in range(iterations):
            t = clock()
            matmul(a).block_until_ready()
            best = min(best, clock() - t)
        return 2 * size**3 / best / 1e9, clock() - t0
