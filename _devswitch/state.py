"""Everything devswitch keeps and changes in this process: one ``Session`` object, and the undo journal.

The session holds every piece of process state devswitch keeps (the configuration, the plan, what
was applied, the timed runs, the notebook's cursor, each backend's own state); modules receive it
from ``current()`` instead of importing each other back.

apply.py never assigns to ``os.environ`` or to a framework's attribute directly:
it calls ``setenv`` / ``patch`` / ``on_reset`` here, which remember what was there
before (the first time only), so ``reset()`` can put it back in reverse order.
What a framework fixes when its runtime starts (TensorFlow's visible devices,
thread pools, logical CPUs) cannot be undone inside a process; ``reset`` says so
in its docstring rather than pretending.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for the annotations only: these modules import this one
    from .caps import Caps
    from .config import Config
    from .devices import Inventory, Plan
    from .hook import KerasFinder
    from .results import CallRecord
    from .sources import Layer

_MISSING = object()
_ORIGINAL = "__devswitch_original__"  # the attribute a devswitch wrapper keeps the wrapped function in
_lock = threading.RLock()
_undo: dict[tuple, Callable[[], object]] = {}  # insertion-ordered: undone last-in, first-out


@dataclasses.dataclass
class Pending:
    """``import devswitch``'s activation while it waits for the first import of Keras (session.begin)."""

    explicit: Mapping[str, Any] | Layer | None  # the explicit values to resolve with (devswitch run's options)
    environ: dict[str, str]  # os.environ before devswitch set anything
    variables: dict[str, str]  # what devswitch set then (KERAS_BACKEND and the backend's variables)
    finder: KerasFinder
    ready: tuple[Config, Plan] | None = None  # resolved and prepared, once Keras has begun to import


@dataclasses.dataclass(eq=False)
class Session:
    """Every piece of process state devswitch keeps; ``reset()`` puts each field back to its default.

    ``process`` is the exception: facts a process fixes once (JAX joined its cluster, PyTorch sized its
    inter-op pool) that no reset can undo, so forgetting them would only turn a clear refusal into a
    framework's own error.
    """

    config: Config | None = None  # in effect
    plan: Plan | None = None  # applied (with its StrategyPlan)
    explicit: dict[str, Any] = dataclasses.field(default_factory=dict)  # configure()'s accumulated values
    configured_at: dict[str, str] = dataclasses.field(default_factory=dict)  # setting -> "file:line" of configure()
    inventory: Inventory | None = None  # the inventory the plan was chosen for
    warnings: tuple[str, ...] = ()  # the warnings of the decision in effect (each logged once)
    backend: str | None = None  # the backend devswitch applied
    xla: str | bool = "auto"  # the xla setting Model.compile applies
    policy: str | None = None  # the Keras dtype policy devswitch applied
    policy_object: Any = None  # ... as the DTypePolicy object Keras is given (a framework object)
    compiled: weakref.WeakSet = dataclasses.field(default_factory=weakref.WeakSet)  # models compiled under it
    batch_timing: bool = False  # per-batch timing in the installed wrappers
    pending: Pending | None = None  # import devswitch's activation, waiting for the first import of Keras
    backend_words: str = ""  # "backend=jax (KERAS_BACKEND set by train.py:3)": the summary's backend part
    caps: Caps | None = None  # on every fit (devswitch compare --script)
    runs: list[CallRecord] = dataclasses.field(default_factory=list)  # every timed call
    notebook_seen: int = 0  # how many of ``runs`` the notebook has shown
    warned_outputs: set[tuple[str, tuple[str, ...]]] = dataclasses.field(default_factory=set)  # float16 outputs
    traced_models: weakref.WeakSet = dataclasses.field(default_factory=weakref.WeakSet)  # subclassed, traced for it
    backend_state: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # backend -> its dict
    process: dict[str, Any] = dataclasses.field(default_factory=dict, metadata={"process": True})

    def backend_of(self, name: str) -> dict[str, Any]:
        """The state dict backend ``name`` keeps on this session."""
        return self.backend_state.setdefault(name, {})

    def clear(self) -> None:
        """Every field back to its default (in place, so holders of this session see it), but ``process``."""
        fresh = Session()
        for field in dataclasses.fields(self):
            if not field.metadata.get("process"):
                setattr(self, field.name, getattr(fresh, field.name))


_session = Session()


def current() -> Session:
    """The one session of this process."""
    return _session


class _EnvUndo:
    """Puts a variable back to ``before`` (None: not set), which a notice may quote."""

    def __init__(self, name: str, before: str | None):
        self.name, self.before = name, before

    def __call__(self) -> None:
        if self.before is None:
            os.environ.pop(self.name, None)
        else:
            os.environ[self.name] = self.before


def setenv(name: str, value: str) -> None:
    """Set an environment variable, remembering its value before devswitch first touched it."""
    with _lock:
        if ("env", name) not in _undo:
            _undo[("env", name)] = _EnvUndo(name, os.environ.get(name))
        os.environ[name] = value


def env_before(name: str) -> str | None:
    """``name``'s value before devswitch set it (None: it was not set), or its value now if devswitch has not."""
    with _lock:
        undo = _undo.get(("env", name))
    return undo.before if isinstance(undo, _EnvUndo) else os.environ.get(name)


def restore_env(name: str) -> None:
    """Put ``name`` back to what it was before devswitch first set it, and forget it (nothing if devswitch
    did not set it)."""
    with _lock:
        undo = _undo.pop(("env", name), None)
    if undo is not None:
        undo()


def forget_env(name: str) -> None:
    """Forget that devswitch set ``name``: its value now is someone else's (the script's), which reset()
    leaves as it is."""
    with _lock:
        _undo.pop(("env", name), None)


def patch(owner: object, name: str, new: object) -> None:
    """Replace ``owner.name`` with ``new``; the original is restored by reset() (or ``unpatch``)."""
    with _lock:
        key = ("attr", id(owner), name)
        if key not in _undo:
            before = owner.__dict__.get(name, _MISSING) if hasattr(owner, "__dict__") else getattr(owner, name)

            def undo() -> None:
                if before is _MISSING:
                    delattr(owner, name)
                else:
                    setattr(owner, name, before)

            _undo[key] = undo
        setattr(owner, name, new)


def patched(owner: object, name: str) -> bool:
    return ("attr", id(owner), name) in _undo


def original(owner: Any, name: str) -> Any:
    """What ``owner.name`` was before devswitch patched it (the current value if it did not)."""
    return getattr(getattr(owner, name), _ORIGINAL, getattr(owner, name))


def remember_original(wrapper: Callable[..., Any], original: object) -> None:
    """Keep on ``wrapper`` what it wraps, for ``original()`` to find."""
    setattr(wrapper, _ORIGINAL, original)


def unpatch(owner: object, name: str) -> None:
    with _lock:
        undo = _undo.pop(("attr", id(owner), name), None)
        if undo is not None:
            undo()


def on_reset(key: str, undo: Callable[[], None]) -> None:
    """Register ``undo`` to run at reset(); a key registered before keeps its first undo."""
    with _lock:
        _undo.setdefault(("call", key), undo)


def undo(key: str) -> None:
    """Run now the undo registered under ``key`` (if any), and forget it."""
    with _lock:
        action = _undo.pop(("call", key), None)
    if action is not None:
        action()


def registered(key: str) -> bool:
    return ("call", key) in _undo


def reset() -> list[str]:
    """Undo every recorded change, newest first, then clear the session; returns the problems met (an undo
    never stops the rest)."""
    problems = []
    with _lock:
        items = list(_undo.items())
        _undo.clear()
        for key, undo in reversed(items):
            try:
                undo()
            except Exception as error:  # noqa: BLE001 - undo the rest whatever one of them does
                problems.append(f"{key}: {type(error).__name__}: {error}")
        _session.clear()
    return problems
