"""What devswitch tells about half precision around the user's own code, without changing it.

Two notes, each said once:

* **A dtype mismatch explained.** A layer written for float32 (a positional encoding adding a float32
  constant, a loss subtracting float32 labels) fails under a half policy with the framework's own error
  ("Input 'y' of 'AddV2' Op has type float32 that does not match type float16"). devswitch adds one line to
  that exception (``add_note``: the exception, its type, message and traceback stay the user's): the layer,
  the policy in force and where it came from, and the two ways out. Nothing is added under float32.
* **Loss scaling in a custom loop.** Keras scales the loss under float16 only in ``fit`` (and
  ``train_on_batch``). The first optimizer step taken outside them, by a Keras optimizer or a
  ``torch.optim`` one, gets one warning saying that a custom loop needs
  ``keras.optimizers.LossScaleOptimizer``. The watch is taken away at that first step (or when a ``fit``
  takes it), so Keras' optimizer classes are as Keras made them from then on. A loop that updates weights
  some other way (optax, hand-written updates) cannot be seen: the fp16 start-up warning says so, and a
  process that imported optax and ran no ``fit`` gets the note at exit.
"""

from __future__ import annotations

import atexit
import logging
import re
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from . import state

log = logging.getLogger("devswitch")

HALF_POLICIES = frozenset({"mixed_float16", "float16", "mixed_bfloat16", "bfloat16"})
FLOAT16_POLICIES = frozenset({"mixed_float16", "float16"})

# the frameworks' own words for "these two operands have different dtypes"
_MISMATCH = (
    re.compile(r"has type (\w+) that does not match type (\w+)"),  # TensorFlow (graph)
    re.compile(r"expected to be an? (\w+) tensor but is an? (\w+) tensor"),  # TensorFlow (eager)
    re.compile(r"requires arguments to have the same dtypes, got (\w+), (\w+)"),  # JAX (lax)
    re.compile(r"to have the same dtype, but got: ([\w:]+) != ([\w:]+)"),  # PyTorch (matmul)
    re.compile(r"expected scalar type (\w+) but found (\w+)"),  # PyTorch
    re.compile(r"must have the same dtype, but got (\w+) and (\w+)"),  # PyTorch (addmm: Linear's bias)
    re.compile(r"Input type \(([\w.]+)\) and (?:weight|bias) type \(([\w.]+)\) should be the same"),  # PyTorch
)
_HALF_WORD = re.compile(r"half|float16|bfloat16|bf16|f16", re.IGNORECASE)
_LAYER_CLASS = re.compile(r"(?:Arguments received by|Exception encountered when calling) (\w+)\.call\(\)")
_LAYER_NAME = re.compile(r"'([^'\s]+)' \(of type (\w+)\)")
NOTE_START = "devswitch: "


def _message(error: BaseException) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", str(error))


def is_dtype_mismatch(text: str) -> bool:
    """Whether ``text`` is a framework's error about a half and a full-precision operand meeting."""
    for pattern in _MISMATCH:
        for match in pattern.finditer(text):
            a, b = match.groups()
            if bool(_HALF_WORD.search(a)) != bool(_HALF_WORD.search(b)):
                return True
    return False


def _layer(text: str) -> str | None:
    """ "layer 'positional_encoding' (PositionalEncoding)" from Keras' words around the error, else None."""
    named = _LAYER_NAME.search(text)
    if named:
        return f"layer '{named.group(1)}' ({named.group(2)})"
    cls = _LAYER_CLASS.search(text)
    return f"layer {cls.group(1)}" if cls else None


def policy_in_force() -> tuple[str, str] | None:
    """(the global Keras dtype policy, where it came from), or None when Keras is not imported."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        name = keras.config.dtype_policy().name
    except Exception:  # noqa: BLE001 - Keras half imported, or not Keras 3
        return None
    session = state.current()
    config = session.config
    value = config.values.get("precision") if config is not None else None
    if session.policy == name and value is not None:
        return name, f"precision={value.value} from {value.location or value.source}"
    return name, "set by the script itself (keras.config.set_dtype_policy or keras.mixed_precision)"


def dtype_note(error: BaseException) -> str | None:
    """The line devswitch adds to ``error`` (a dtype mismatch under a half policy), or None."""
    policy = policy_in_force()
    if policy is None or policy[0] not in HALF_POLICIES:
        return None  # a run in float32 is never affected
    text = _message(error)
    if not is_dtype_mismatch(text):
        return None
    name, origin = policy
    where = _layer(text) or "a layer or loss of the script"
    return (
        f"{NOTE_START}{where} mixes float32 with the half precision of dtype policy {name} ({origin}): "
        "cast in that code with self.compute_dtype (x = keras.ops.cast(x, self.compute_dtype), or make its "
        "constants in that dtype), or run this script in fp32 (precision=fp32)"
    )


def note_of(error: BaseException) -> str | None:
    """The note devswitch added to ``error``, if any."""
    notes = getattr(error, "__notes__", None) or getattr(error, "_devswitch_notes", None) or ()
    return next((n for n in notes if isinstance(n, str) and n.startswith(NOTE_START)), None)


def explain_dtype_error(error: BaseException) -> str | None:
    """Add the dtype note to ``error`` (once); returns it. Python 3.10 has no ``add_note``: the note is kept
    on the exception for devswitch and logged as a warning instead."""
    if note_of(error) is not None:
        return None
    note = dtype_note(error)
    if note is None:
        return None
    add_note = getattr(error, "add_note", None)
    if add_note is not None:
        add_note(note)
    else:
        try:
            error._devswitch_notes = [note]  # type: ignore[attr-defined]
        except AttributeError:
            pass
        log.warning(note[len(NOTE_START) :])
    return note


def install_excepthook() -> None:
    """An uncaught exception of a script under ``import devswitch`` gets the dtype note before Python prints
    it (``devswitch run`` and compare's workers add it where they print the script's error)."""
    if state.patched(sys, "excepthook"):
        return
    previous = sys.excepthook

    def excepthook(kind, error, traceback):
        try:
            explain_dtype_error(error)
        except Exception:  # noqa: BLE001 - the user's error is printed whatever happens here
            pass
        previous(kind, error, traceback)

    state.remember_original(excepthook, previous)
    state.patch(sys, "excepthook", excepthook)


# --- loss scaling in a custom loop ---------------------------------------------------------------------

LOSS_SCALE_NOTE = (
    "precision fp16: Keras scales the loss only in fit() and train_on_batch(), and this process takes an "
    "optimizer step outside them (a custom training loop): wrap its optimizer in "
    "keras.optimizers.LossScaleOptimizer and scale the loss (optimizer.scale_loss), or its small float16 "
    "gradients underflow to zero"
)
LOSS_SCALE_AT_EXIT = (
    "precision fp16: no fit() ran in this process, and Keras scales the loss only in fit(): a custom training "
    "loop (optax, jax.grad, tf.GradientTape with its own updates) needs keras.optimizers.LossScaleOptimizer"
)
_STEPS = ("apply_gradients", "apply", "stateless_apply")  # a Keras optimizer's step, as fit and a loop take it
_IN_FIT = frozenset({"fit", "train_on_batch"})


def _inside_keras_training() -> tuple[bool, bool]:
    """(a Keras fit/train_on_batch is on the stack, a LossScaleOptimizer is)."""
    frame: FrameType | None = sys._getframe(2)
    fit = scaled = False
    while frame is not None:
        filename = frame.f_code.co_filename.replace("\\", "/")
        if "/keras/src/" in filename:
            fit = fit or (frame.f_code.co_name in _IN_FIT and "trainer" in filename)
            scaled = scaled or filename.endswith("loss_scale_optimizer.py")
        frame = frame.f_back
    return fit, scaled


def watch_loss_scaling() -> None:
    """Under float16: watch for the first optimizer step taken outside fit (see the module's docstring)."""
    session = state.current()
    watch = session.process.setdefault("loss_scaling", {"said": False, "fit": False})
    if watch["said"] or watch["fit"] or state.registered("loss scaling watch"):
        return
    from keras.src.optimizers.base_optimizer import BaseOptimizer
    from keras.src.optimizers.loss_scale_optimizer import LossScaleOptimizer

    removers: list[Callable[[], None]] = []

    def stop() -> None:
        for remove in removers:
            remove()
        removers.clear()

    def first_step(scaled_by_keras: bool, fit: bool) -> None:
        stop()
        if fit:
            watch["fit"] = True
        elif not scaled_by_keras and not watch["said"] and _float16_in_force():
            watch["said"] = True
            log.warning(LOSS_SCALE_NOTE)

    def watched(name: str) -> Callable[..., Any]:
        original = getattr(BaseOptimizer, name)

        def step(self, *args, **kwargs):
            if state.patched(BaseOptimizer, name):  # the first step only: then Keras' own method again
                try:
                    fit, scaled = _inside_keras_training()
                    first_step(scaled or isinstance(self, LossScaleOptimizer), fit)
                except Exception:  # noqa: BLE001 - a note is not worth the user's step
                    stop()
            return original(self, *args, **kwargs)

        state.remember_original(step, original)
        return step

    def unwatch(name: str) -> Callable[[], None]:
        return lambda: state.unpatch(BaseOptimizer, name)

    for name in _STEPS:
        state.patch(BaseOptimizer, name, watched(name))
        removers.append(unwatch(name))
    optim = sys.modules.get("torch.optim.optimizer")
    hook = getattr(optim, "register_optimizer_step_pre_hook", None)
    if hook is not None:  # every torch.optim optimizer; Keras' own fit never takes one
        handle = hook(lambda optimizer, args, kwargs: first_step(False, False))
        removers.append(handle.remove)
    state.on_reset("loss scaling watch", stop)
    state.on_reset("loss scaling said", lambda: watch.update(said=False, fit=False))  # reset: a fresh process
    if not session.process.get("loss_scaling_atexit"):
        session.process["loss_scaling_atexit"] = True
        atexit.register(_at_exit, watch)


def _float16_in_force() -> bool:
    policy = policy_in_force()
    return policy is not None and policy[0] in FLOAT16_POLICIES


def _at_exit(watch: dict) -> None:
    """The note at exit, for a custom loop devswitch could not see step (optax): once, only under float16."""
    if watch["said"] or watch["fit"] or "optax" not in sys.modules or not state.registered("loss scaling watch"):
        return
    if _float16_in_force():
        watch["said"] = True
        log.warning(LOSS_SCALE_AT_EXIT)
