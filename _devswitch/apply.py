"""The only module that changes framework state: the backend-agnostic half, and the order.

Order matters and is enforced here: the backend and the variables its framework
reads at start-up are set before the framework (and Keras) is imported; devices,
memory and thread pools before the runtime starts; the dtype policy before the
model is built; XLA and loss scaling are read at ``compile``. So: resolve ->
apply -> build -> compile -> fit. What one backend does is in ``backends/``.

Everything that can refuse is decided (``decide.decide``) before anything is changed, and a
runtime that already runs with another set-up is a TooLateError, never a silent mismatch. What
was applied is kept on the process's session (``state.current()``), which ``reset()`` clears.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

from . import backends, determinism, halfnotes, sources, state
from .backends import detect
from .backends.common import TOO_LATE_HINT
from .config import Config
from .decide import decide
from .devices import Inventory, Plan
from .errors import ConfigError, TooLateError
from .nativelog import native_log_filter

log = logging.getLogger("devswitch")

_TIMED = ("fit", "evaluate", "predict")


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


def _install_compile_default(keras) -> None:
    """compile: ``xla`` true/false as the default of ``jit_compile`` (a script's own argument wins;
    ``auto`` passes nothing, so Keras decides), and a warning when the model was built under another policy.

    The wrapper replaces the base ``Trainer.compile``, never an attribute of ``keras.Model``: Keras'
    ``compile_from_config`` (called by ``load_model``) compares ``type(model).compile`` with
    ``Trainer.compile`` and skips compiling a model whose compile differs, so a wrapper on ``keras.Model``
    would load every saved model without its loss and optimizer. Replaced where Keras compares, both sides
    of that comparison are the wrapper and a subclass's own ``compile`` is still told apart."""
    from keras.src.trainers.trainer import Trainer

    if state.patched(Trainer, "compile"):
        return
    original = Trainer.compile
    session = state.current()

    @functools.wraps(original)
    def compile(self, *args, **kwargs):  # noqa: A001 - mirrors Keras' name
        if session.xla != "auto" and "jit_compile" not in kwargs and len(args) < 8:
            kwargs["jit_compile"] = session.xla
        _warn_stale_policy([self], "is being compiled")
        session.compiled.add(self)
        return original(self, *args, **kwargs)

    state.remember_original(compile, original)
    state.patch(Trainer, "compile", compile)


def _model_policy(model) -> str | None:
    return getattr(getattr(model, "dtype_policy", None), "name", None)


def _warn_stale_policy(models, doing: str) -> None:
    """Say so when a model keeps a policy other than the one devswitch applied (it was built before)."""
    applied = state.current().policy
    if applied is None:
        return
    for model in models:
        policy = _model_policy(model)
        if policy is not None and policy != applied and _policy_is_ours():
            log.warning(
                f"model '{getattr(model, 'name', '?')}' {doing} with dtype policy {policy}, but devswitch "
                f"now applies {applied}: Keras fixes a layer's policy when it is built. Build the model "
                f"after configure(precision=...) (or set the precision before the script starts) to use "
                f"{applied}"
            )


def applied_policy() -> str | None:
    """The Keras dtype policy devswitch applied in this process, or None."""
    return state.current().policy


def _users_own(value) -> bool:
    """Whether ``value`` (a policy in Keras' global state) is one the user set after devswitch's choice."""
    ours = state.current().policy_object
    return value is not None and value is not ours and getattr(value, "_devswitch_set_under", None) is ours


def _policy_is_ours() -> bool:
    """Whether Keras' current global policy is still the one devswitch set (the user did not set their own)."""
    from keras.src.backend.common import global_state

    return not _users_own(state.original(global_state, "get_global_attribute")("dtype_policy", None))


def _apply_policy(keras, name: str) -> None:
    """Set Keras' global dtype policy, and keep it through keras.backend.clear_session() and new threads.

    Keras keeps the policy in thread-local "global state" that ``clear_session()`` throws away, after
    which every new layer silently falls back to floatx. Keras reads and writes the policy through two
    functions of ``global_state``; devswitch answers the read with the policy it applied unless the user
    set one of their own (keras.config.set_dtype_policy) after this choice, which is theirs and is left
    alone. What a thread held before the choice (nothing, Keras' floatx default it cached, an earlier
    choice) gives way to it, as it does in the thread that chose.
    """
    from keras.src.backend.common import global_state

    policy = keras.DTypePolicy(name)
    session = state.current()
    session.policy, session.policy_object = name, policy
    if not state.patched(global_state, "get_global_attribute"):
        before = global_state.get_global_attribute("dtype_policy", None)
        get, put = global_state.get_global_attribute, global_state.set_global_attribute

        @functools.wraps(get)
        def get_global_attribute(attribute, default=None, set_to_default=False):
            # Keras reads its global state on every layer call: only "dtype_policy" takes the slow path
            ours = session.policy_object
            if attribute != "dtype_policy" or ours is None:
                return get(attribute, default, set_to_default)
            value = get(attribute, None)
            if value is not ours and not _users_own(value):
                value = ours
                put(attribute, value)
            return value

        @functools.wraps(put)
        def set_global_attribute(attribute, value):
            ours = session.policy_object
            if attribute == "dtype_policy" and ours is not None and value is not None and value is not ours:
                try:
                    value._devswitch_set_under = ours  # set by the user after the choice: theirs
                except AttributeError:
                    pass
            return put(attribute, value)

        state.remember_original(get_global_attribute, get)
        state.remember_original(set_global_attribute, put)
        state.patch(global_state, "get_global_attribute", get_global_attribute)
        state.patch(global_state, "set_global_attribute", set_global_attribute)

        def undo() -> None:
            # put back what Keras had, unless the user has since set a policy of their own
            if not _users_own(get("dtype_policy", None)):
                put("dtype_policy", before)

        state.on_reset("policy", undo)
    stale = [m for m in list(session.compiled) if _model_policy(m) not in (None, name)]
    keras.config.set_dtype_policy(policy)
    _warn_stale_policy(stale, "was built")


def chooses_policy(config: Config, plan: Plan) -> bool:
    """Whether devswitch sets a dtype policy for ``plan``: someone chose the precision, or the built-in
    default itself leads away from float32. Otherwise Keras keeps its own mechanism untouched
    (``set_floatx``, ``set_dtype_policy`` and ``clear_session`` behave exactly as without devswitch)."""
    return config["precision"].source != sources.DEFAULT or plan.policy != "float32"


def _release_policy() -> None:
    """Hand the dtype policy back to Keras: undo the global_state patch and the policy devswitch set
    (an earlier call chose a precision; this one does not)."""
    from keras.src.backend.common import global_state

    session = state.current()
    if session.policy is None:
        return
    state.undo("policy")
    state.unpatch(global_state, "get_global_attribute")
    state.unpatch(global_state, "set_global_attribute")
    session.policy, session.policy_object = None, None


def _install_timing(keras, config: Config) -> None:
    """Time every Model.fit/evaluate/predict (report != off), or restore Keras' own methods (off)."""
    from . import timing

    session = state.current()
    session.batch_timing = config.batch_timing
    for name in _TIMED:
        if config.report == "off":
            state.unpatch(keras.Model, name)
        elif not state.patched(keras.Model, name):
            state.patch(keras.Model, name, timing.wrap(name, getattr(keras.Model, name), session))


def inventory() -> Inventory | None:
    """The hardware the applied plan was chosen for."""
    return state.current().inventory


def strategy():
    """The distribution devswitch applied (a tf.distribute strategy, a Keras Distribution), or None."""
    name = state.current().backend
    return backends.get(name).strategy() if name else None


def resolve_xla(model=None) -> bool:
    """What ``xla`` means for ``model`` here: true/false as set; auto = Keras' own jit_compile="auto" rule."""
    xla = state.current().xla
    if xla != "auto":
        return bool(xla)
    resolve = getattr(model, "_resolve_auto_jit_compile", None)
    return bool(resolve()) if resolve is not None else False


def _check_backend(config: Config) -> None:
    """The backend can run here and Keras is not already running another one (checked before any change)."""
    name = config.backend
    reason = backends.missing_reason(name)
    if reason:
        raise ConfigError(
            f"backend={name} is asked for, but {reason}",
            where=config["backend"].location,
            hint="install it, or choose an installed backend (devswitch info lists them)",
        )
    running = backends.keras_running()
    if running is not None and running != name:
        raise TooLateError(
            f"backend cannot be changed to {name}: Keras is already imported with the {running} backend",
            hint=TOO_LATE_HINT,
        )


def apply(config: Config, inventory: Inventory | None = None, announce: bool = True) -> Plan:
    """Choose the device and precision for ``config`` and set the backend and Keras up for them; with
    ``announce``, log the plan's summary (``%devswitch`` prints it itself).

    Everything that can refuse (the backend, the device choice, the cluster, a runtime that is already
    running) is decided before the framework's own state is changed; what must be set before the
    framework is imported (its environment variables) is recorded, so reset() restores it.
    """
    plan = prepare(config, inventory)
    apply_to_keras(config, plan, announce)
    return plan


def variables(config: Config) -> dict[str, str]:
    """The environment variables ``config`` sets before its framework starts (KERAS_BACKEND and the
    backend's own), given the environment as it is now."""
    return {"KERAS_BACKEND": config.backend, **backends.get(config.backend).environment(config, os.environ)}


def prepare(config: Config, inventory: Inventory | None = None) -> Plan:
    """apply's first half, everything before Keras is imported: the checks, the variables, the devices, the
    decision and the backend's own set-up (the import hook runs it just before Keras' package executes)."""
    backend = backends.get(config.backend)
    _check_backend(config)
    backend.refuse(config)  # before the framework is imported to look at the devices
    wanted = variables(config)
    before = {name: os.environ.get(name) for name in wanted}
    try:
        if backends.keras_running() is None:
            for name, value in wanted.items():
                state.setenv(name, value)
        with native_log_filter(config.log_level, backend.LIBRARY):
            backend.start(config, os.environ)  # e.g. JAX joins its cluster before anything starts its backends
            inventory = inventory or detect(config.backend)
        decision = decide(config, inventory, os.environ)
        plan = decision.plan
        backend.preflight(config, plan)
    except BaseException:
        # refused: the variables go back to what they were before this call (a framework that was
        # imported to look at the devices stays imported; nothing of its state was changed)
        for name, old in before.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
        raise
    session = state.current()
    session.inventory = inventory

    setup_logging(config)
    for warning in decision.warnings:
        if warning not in session.warnings:  # said already for the set-up in effect: not said again
            log.warning(warning)
    session.warnings = decision.warnings
    backend.apply(config, plan, decision.strategy)  # decide() filled in plan.strategy
    session.backend = config.backend
    return plan


def apply_to_keras(config: Config, plan: Plan, announce: bool = True) -> None:
    """apply's second half, with Keras imported: the dtype policy, the Model patches and the summary."""
    import keras

    session = state.current()
    session.xla = config.xla
    if chooses_policy(config, plan):
        _apply_policy(keras, plan.policy)
    else:
        _release_policy()
    _install_compile_default(keras)
    _install_timing(keras, config)
    determinism.seed(config)  # Python, NumPy and the backend: with Keras imported, before the script builds
    halfnotes.install_excepthook()  # a dtype mismatch under a half policy explained (a no-op under float32)
    if plan.policy in halfnotes.FLOAT16_POLICIES:
        halfnotes.watch_loss_scaling()
    if announce:
        log.info(describe_plan(plan))


def describe_plan(plan: Plan) -> str:
    """The one line that says what was applied: the plan's summary, its strategy's if any, and the backend
    in force with where it came from (``session.backend_words``)."""
    strategy_plan = plan.strategy
    words = state.current().backend_words or f"backend={plan.backend}"
    return (
        plan.summary()
        + ("" if strategy_plan is None or strategy_plan.name == "none" else " " + strategy_plan.summary())
        + " "
        + words
    )
