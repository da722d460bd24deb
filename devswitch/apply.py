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
import weakref

from . import state
from .config import Config
from .devices import Inventory, Plan, choose, detect
from .errors import TooLateError
from .settings import LOG_LEVELS

log = logging.getLogger("devswitch")

_TOO_LATE_HINT = ("make 'import devswitch' the first import of the script, run it unmodified with "
                  "'devswitch run script.py', or set DEVSWITCH_* variables before Python starts")

_DEFAULT_STATE = {"xla": "auto", "policy": None}
_state: dict = dict(_DEFAULT_STATE)
_TIMED = ("fit", "evaluate", "predict")
_compiled: "weakref.WeakSet" = weakref.WeakSet()  # models compiled under devswitch (for the policy warning)


def _forget() -> None:
    _state.clear()
    _state.update(_DEFAULT_STATE)
    _compiled.clear()


def setup_logging(config: Config) -> None:
    """devswitch's own one-line messages go to stderr unless the user configured the logger."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("devswitch: %(message)s"))
        before = (log.propagate, log.level)
        log.addHandler(handler)
        log.propagate = False

        def undo() -> None:
            log.removeHandler(handler)
            log.propagate, level = before
            log.setLevel(level)

        state.on_reset("logger", undo)
    elif not state.registered("logger"):
        level = log.level
        state.on_reset("logger", lambda: log.setLevel(level))
    log.setLevel(logging.WARNING if config.log_level == "quiet" else logging.INFO)


def set_tf_log_level(config: Config) -> None:
    """TF_CPP_MIN_LOG_LEVEL is read when TensorFlow's C++ library loads: set it before the import."""
    explicit = config["log_level"].source != "default"
    if explicit or "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        state.setenv("TF_CPP_MIN_LOG_LEVEL", LOG_LEVELS[config.log_level])


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
    state.on_reset("strategy", lambda: tf.distribute.experimental_set_strategy(None))
    tf.distribute.experimental_set_strategy(None)
    _state.update(strategy=None, strategy_plan=None)
    if strategy_plan.name == "none":
        _state["strategy_plan"] = strategy_plan
        return
    if strategy_plan.name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=list(strategy_plan.devices))
    else:
        if strategy_plan.tf_config is not None:
            state.setenv("TF_CONFIG", strategy_plan.tf_config)  # read by TFConfigClusterResolver
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
    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer
        symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
        reduce_per_replica = tf_trainer.reduce_per_replica
    except (ImportError, AttributeError):
        log.warning("multi_worker: this Keras version's trainer is not the one devswitch knows; fit() may hit "
                    "keras-team/keras#20585")
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

    state.patch(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build", _maybe_symbolic_build)
    state.patch(tf_trainer, "reduce_per_replica", _reduce_per_replica)


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


def _install_compile_default(keras) -> None:
    """Model.compile: ``xla`` true/false as the default of ``jit_compile`` (a script's own argument wins;
    ``auto`` passes nothing, so Keras decides), and a warning when the model was built under another policy."""
    if state.patched(keras.Model, "compile"):
        return
    original = keras.Model.compile

    @functools.wraps(original)
    def compile(self, *args, **kwargs):  # noqa: A001 - mirrors Keras' name
        if _state["xla"] != "auto" and "jit_compile" not in kwargs and len(args) < 8:
            kwargs["jit_compile"] = _state["xla"]
        _warn_stale_policy([self], "is being compiled")
        _compiled.add(self)
        return original(self, *args, **kwargs)

    compile.__devswitch_original__ = original
    state.patch(keras.Model, "compile", compile)


def _model_policy(model) -> str | None:
    return getattr(getattr(model, "dtype_policy", None), "name", None)


def _warn_stale_policy(models, doing: str) -> None:
    """Say so when a model keeps a policy other than the one devswitch applied (it was built before)."""
    applied = _state.get("policy")
    if applied is None:
        return
    for model in models:
        policy = _model_policy(model)
        if policy is not None and policy != applied and _policy_is_ours():
            log.warning(f"model '{getattr(model, 'name', '?')}' {doing} with dtype policy {policy}, but devswitch "
                        f"now applies {applied}: Keras fixes a layer's policy when it is built. Build the model "
                        f"after configure(precision=...) (or set the precision before the script starts) to use "
                        f"{applied}")


def applied_policy() -> str | None:
    """The Keras dtype policy devswitch applied in this process, or None."""
    return _state.get("policy")


def _policy_is_ours() -> bool:
    """Whether Keras' current global policy is still the one devswitch set (the user did not set their own)."""
    from keras.src.backend.common import global_state

    current = state.original(global_state, "get_global_attribute")("dtype_policy", None)
    return current is None or getattr(current, "_devswitch_policy", False)


def _apply_policy(keras, name: str) -> None:
    """Set Keras' global dtype policy, and keep it through keras.backend.clear_session() and new threads.

    Keras keeps the policy in thread-local "global state" that ``clear_session()`` throws away, after
    which every new layer silently falls back to float32. Keras reads the policy through one function,
    ``global_state.get_global_attribute("dtype_policy")``; when that finds nothing (after a reset, or in
    a thread that never set one) devswitch answers with the policy it applied. A policy the user sets
    with keras.config.set_dtype_policy() is theirs and is left alone.
    """
    from keras.src.backend.common import global_state

    policy = keras.DTypePolicy(name)
    policy._devswitch_policy = True
    _state["policy"] = name
    _state["policy_object"] = policy
    if not state.patched(global_state, "get_global_attribute"):
        before = global_state.get_global_attribute("dtype_policy", None)
        original = global_state.get_global_attribute

        @functools.wraps(original)
        def get_global_attribute(attribute, default=None, set_to_default=False):
            value = original(attribute, None)
            if attribute == "dtype_policy" and _state.get("policy_object") is not None and (
                    value is None or (getattr(value, "_devswitch_policy", False)
                                      and value is not _state["policy_object"])):
                value = _state["policy_object"]
                global_state.set_global_attribute(attribute, value)
            return original(attribute, default, set_to_default) if value is None else value

        get_global_attribute.__devswitch_original__ = original
        state.patch(global_state, "get_global_attribute", get_global_attribute)
        state.on_reset("policy", lambda: global_state.set_global_attribute("dtype_policy", before))
    stale = [m for m in list(_compiled) if _model_policy(m) not in (None, name)]
    keras.config.set_dtype_policy(policy)
    _warn_stale_policy(stale, "was built")


def _install_timing(keras, config: Config) -> None:
    """Time every Model.fit/evaluate/predict (report != off), or restore Keras' own methods (off)."""
    from . import timing

    timing._options["batch_timing"] = config.batch_timing
    for name in _TIMED:
        if config.report == "off":
            state.unpatch(keras.Model, name)
        elif not state.patched(keras.Model, name):
            state.patch(keras.Model, name, timing.wrap(name, getattr(keras.Model, name)))


def resolve_xla(model=None) -> bool:
    """What ``xla`` means for ``model`` here: true/false as set; auto = Keras' own jit_compile="auto" rule."""
    if _state["xla"] != "auto":
        return bool(_state["xla"])
    resolve = getattr(model, "_resolve_auto_jit_compile", None)
    return bool(resolve()) if resolve is not None else False


def describe_xla_auto(gpus: int) -> str:
    """What ``xla: auto`` does on this machine with TensorFlow, in Keras' words (keras/src/trainers/trainer.py)."""
    if not gpus:
        return "Keras' jit_compile='auto': off (TensorFlow on a CPU-only machine)"
    return ("Keras' jit_compile='auto': on for a model whose layers all support XLA (GPU present), "
            "off under a tf.distribute strategy")


def _preflight(tf, plan: Plan, config: Config) -> None:
    """Refuse, before changing anything, what TensorFlow's already-running runtime can no longer take."""
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
    for label, value, now in (("intra-op threads", config.threads.intra, threading.get_intra_op_parallelism_threads()),
                              ("inter-op threads", config.threads.inter, threading.get_inter_op_parallelism_threads())):
        if value != now:
            raise _too_late(label, value, now)
    if config.cpu_replicas > 1:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != config.cpu_replicas:
            raise _too_late("cpu_replicas", config.cpu_replicas, f"{have} logical CPU device(s)")


def apply(config: Config, inventory: Inventory | None = None) -> Plan:
    """Choose the device and precision for ``config`` and set TensorFlow / Keras up for them.

    Everything that can refuse (the device choice, the cluster, a runtime that is already running)
    is decided before anything is changed, so a refused configuration leaves the process as it was.
    """
    state.on_reset("apply-state", _forget)
    set_tf_log_level(config)  # read when TensorFlow's C++ library loads: before the import below
    with native_log_filter(config):
        import tensorflow as tf

        inventory = inventory or detect()
    plan = choose(config, inventory)
    from .distribute import plan_strategy

    strategy_plan = plan_strategy(config, plan, os.environ)
    _preflight(tf, plan, config)

    setup_logging(config)
    for warning in plan.warnings + strategy_plan.warnings:
        log.warning(warning)
    if config.log_level in ("quiet", "error"):
        tf_log = tf.get_logger()
        level = tf_log.level
        state.on_reset("tf-logger", lambda: tf_log.setLevel(level))
        tf_log.setLevel(logging.ERROR)
    _apply_devices(tf, plan, config)
    _apply_cpu_replicas(tf, config)
    _apply_threads(tf, config)
    _apply_strategy(tf, strategy_plan)
    plan = dataclasses.replace(plan, strategy=strategy_plan)

    import keras

    _state["xla"] = config.xla
    _apply_policy(keras, plan.policy)
    _install_compile_default(keras)
    _install_timing(keras, config)
    log.info(plan.summary() + ("" if strategy_plan.name == "none" else " " + strategy_plan.summary()))
    return plan
