"""The only module that changes TensorFlow / Keras global state.

Order matters and is enforced here: the TF log level must be set before
TensorFlow is imported; visible GPUs, memory growth and thread pools before its
runtime starts (the first tensor or op); the dtype policy before the model is
built; XLA and loss scaling are read at ``compile``. So: resolve -> apply ->
build -> compile -> fit.

When TensorFlow's runtime is already running with a different set-up, we raise
TooLateError instead of silently ignoring the setting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import re
import sys
import tempfile

from .config import Config
from .devices import Inventory, Plan, choose, detect
from .errors import TooLateError
from .settings import LOG_LEVELS

log = logging.getLogger("devswitch")

_TOO_LATE_HINT = ("make 'import devswitch' the first import of the script, run it unmodified with "
                  "'devswitch run script.py', or set DEVSWITCH_* variables before Python starts")

_state = {"xla": False, "compile_patched": False, "timing_installed": False}
_TIMED = ("fit", "evaluate", "predict")


def setup_logging(config: Config) -> None:
    """devswitch's own one-line messages go to stderr unless the user configured the logger."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("devswitch: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.WARNING if config.log_level == "quiet" else logging.INFO)


def set_tf_log_level(config: Config) -> None:
    """TF_CPP_MIN_LOG_LEVEL is read when TensorFlow's C++ library loads: set it before the import."""
    explicit = config["log_level"].source != "default"
    if explicit or "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = LOG_LEVELS[config.log_level]


_ABSL_LINE = re.compile(r"^([IWEF])\d{4} ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_DROP = {"quiet": "IWE", "error": "IW", "warning": "I", "info": "", "debug": ""}


def filter_native_log(text: str, log_level: str) -> str:
    """Drop absl-formatted TensorFlow lines below ``log_level`` (and their continuation lines)."""
    drop = _DROP[log_level]
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _ABSL_LINE.match(line)
        if match:
            dropping = match.group(1) in drop
        elif line.rstrip("\n") == _ABSL_PREAMBLE:
            dropping = bool(drop)
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def native_log_filter(config: Config):
    """Filter what TensorFlow's C++ code writes to fd 2 while the block runs.

    TensorFlow 2.20+ logs its start-up lines through absl before it reads
    TF_CPP_MIN_LOG_LEVEL, so the variable alone cannot honour ``log_level``;
    we capture fd 2 for the import and device probe and replay what passes.
    """
    if not _DROP[config.log_level] or "tensorflow" in sys.modules:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = filter_native_log(capture.read().decode("utf-8", "replace"), config.log_level)
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()


def _too_late(what: str, asked, current) -> TooLateError:
    return TooLateError(f"{what} cannot be changed to {asked}: TensorFlow's runtime is already initialised "
                        f"with {current}", hint=_TOO_LATE_HINT)


def _apply_devices(tf, plan: Plan, config: Config) -> None:
    physical = tf.config.list_physical_devices("GPU")
    wanted = [physical[i] for i in plan.gpus]
    try:
        tf.config.set_visible_devices(wanted, "GPU")
    except RuntimeError:
        current = tf.config.get_visible_devices("GPU")
        if [d.name for d in current] != [d.name for d in wanted]:
            raise _too_late("the visible GPUs", [d.name for d in wanted] or "none (CPU)",
                            [d.name for d in current] or "none") from None
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
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] *
                                                   config.cpu_replicas)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != config.cpu_replicas:
            raise _too_late("cpu_replicas", config.cpu_replicas, f"{have} logical CPU device(s)") from None


def _apply_strategy(tf, strategy_plan) -> None:
    """Create TensorFlow's own strategy and make it the default, so unmodified scripts build and fit under it.

    A later configure() that leaves the strategy as it was keeps the same strategy object: models
    already built stay under it, and a MultiWorkerMirroredStrategy cannot be created twice anyway.
    """
    if strategy_plan == _state.get("strategy_plan"):
        return
    tf.distribute.experimental_set_strategy(None)
    _state.update(strategy=None, strategy_plan=None)
    if strategy_plan.name == "none":
        _state["strategy_plan"] = strategy_plan
        return
    if strategy_plan.name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=list(strategy_plan.devices))
    else:
        if strategy_plan.tf_config is not None:
            os.environ["TF_CONFIG"] = strategy_plan.tf_config  # read by TFConfigClusterResolver
        _install_multi_worker_shims(tf)
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            raise TooLateError(f"strategy=multi_worker must be created before TensorFlow's runtime starts: "
                               f"{error}", hint=_TOO_LATE_HINT) from None
    tf.distribute.experimental_set_strategy(strategy)
    _state.update(strategy=strategy, strategy_plan=strategy_plan)  # remembered only once it exists


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
    if _state.get("multi_worker_shims"):
        return
    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer
        symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
        reduce_per_replica = tf_trainer.reduce_per_replica
    except (ImportError, AttributeError):
        log.warning("multi_worker: this Keras version's trainer is not the one devswitch knows; fit() may hit "
                    "keras-team/keras#20585")
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
                    lambda v: strategy.experimental_local_results(v)[0] if isinstance(v, distributed) else v, first)
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

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = _reduce_per_replica
    _state["multi_worker_shims"] = True


def strategy():
    """The tf.distribute strategy devswitch applied, or None."""
    return _state.get("strategy")


def _apply_threads(tf, config: Config) -> None:
    threading = tf.config.threading
    for label, value, setter, getter in (
        ("intra-op threads", config.threads.intra, threading.set_intra_op_parallelism_threads,
         threading.get_intra_op_parallelism_threads),
        ("inter-op threads", config.threads.inter, threading.set_inter_op_parallelism_threads,
         threading.get_inter_op_parallelism_threads),
    ):
        if value == getter():
            continue
        try:
            setter(value)
        except RuntimeError:
            raise _too_late(label, value, getter()) from None


def _install_xla_default(keras) -> None:
    """Make ``xla`` the default of ``Model.compile(jit_compile=...)``; a script's own argument wins."""
    if _state["compile_patched"]:
        return
    original = keras.Model.compile

    @functools.wraps(original)
    def compile(self, *args, **kwargs):  # noqa: A001 - mirrors Keras' name
        if "jit_compile" not in kwargs and len(args) < 8:
            kwargs["jit_compile"] = _state["xla"]
        return original(self, *args, **kwargs)

    compile.__devswitch_original__ = original
    keras.Model.compile = compile
    _state["compile_patched"] = True


def _install_timing(keras, config: Config) -> None:
    """Time every Model.fit/evaluate/predict (report != off), or restore Keras' own methods (off)."""
    from . import timing

    timing._options["batch_timing"] = config.batch_timing
    if config.report == "off":
        if _state["timing_installed"]:
            for name in _TIMED:
                setattr(keras.Model, name, getattr(keras.Model, name).__devswitch_original__)
            _state["timing_installed"] = False
        return
    if not _state["timing_installed"]:
        for name in _TIMED:
            setattr(keras.Model, name, timing.wrap(name, getattr(keras.Model, name)))
        _state["timing_installed"] = True


def apply(config: Config, inventory: Inventory | None = None) -> Plan:
    """Choose the device and precision for ``config`` and set TensorFlow / Keras up for them."""
    setup_logging(config)
    set_tf_log_level(config)
    with native_log_filter(config):
        import tensorflow as tf

        inventory = inventory or detect()
    plan = choose(config, inventory)
    for warning in plan.warnings:
        log.warning(warning)

    if config.log_level in ("quiet", "error"):
        tf.get_logger().setLevel(logging.ERROR)
    from .distribute import plan_strategy

    strategy_plan = plan_strategy(config, plan, os.environ)
    for warning in strategy_plan.warnings:
        log.warning(warning)
    _apply_devices(tf, plan, config)
    _apply_cpu_replicas(tf, config)
    _apply_threads(tf, config)
    _apply_strategy(tf, strategy_plan)
    plan = dataclasses.replace(plan, strategy=strategy_plan)

    import keras

    keras.config.set_dtype_policy(plan.policy)
    _state["xla"] = config.xla
    _install_xla_default(keras)
    _install_timing(keras, config)
    log.info(plan.summary() + ("" if strategy_plan.name == "none" else " " + strategy_plan.summary()))
    return plan
