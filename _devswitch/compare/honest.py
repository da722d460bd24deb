"""Honest columns: what a worker measured ran in its column's configuration, or the column says what changed it.

Every worker says what devswitch applied for its column when it became READY (the plan), and reads the
settings back after the user's code had its turn (a factory: once the model is built; a script: when it
ends), with where a ``devswitch.configure`` of that code set each one (``state.configured_at``, file:line).
Every record of a factory also carries what it really ran under: the model's precision policy, the device
its variables live on, the float32 math, the backend and the varied settings. When any of these is not the
column's, the column is "overridden by the factory: precision fp16 (devswitch.configure at model.py:5)" (or
"by the script"): what was measured is kept beside the mark, but it is no result for the column, so it is
left out of the recommendation and of ``--save-profile``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .protocol import Built, Ready
from .resultset import Configuration

OVERRIDDEN = "overridden by"  # the start of such a column's status
PLAN_KEYS = ("precision", "device", "backend", "math", "policy")
NOT_DEVSWITCH = "not set through devswitch"  # a change no devswitch.configure explains


def status(who: str, changes: str) -> str:
    """ "overridden by the factory: precision fp16 (devswitch.configure at model.py:5)"."""
    return f"{OVERRIDDEN} {who}: {changes}"


def _changes(ready: Mapping | None, read_back: Mapping | None) -> list[tuple[str, str]]:
    """(key, words) for each setting the user's code changed: the plan devswitch applied at READY against
    the plan read back afterwards, and the varied settings likewise."""
    before, after = (ready or {}), (read_back or {})
    if not before or not after:
        return []
    if "error" in after:
        return [("read back", f"the settings could not be read back ({after['error']})")]
    was, now = before.get("plan") or {}, after.get("plan") or {}
    where = after.get("where") or {}
    changed = [
        key
        for key in PLAN_KEYS
        if key in now and now.get(key) != was.get(key) and not (key == "policy" and "precision" in where)
    ]
    varied_was, varied_now = before.get("settings") or {}, after.get("settings") or {}
    changed += [name for name, value in varied_now.items() if _value(value) != _value(varied_was.get(name))]
    if "policy" in changed and "precision" in changed:
        changed.remove("policy")  # the precision's policy: said once
    words = []
    for key in changed:
        value = now.get(key) if key in now else (varied_now.get(key) or {}).get("value")
        words.append((key, f"{key} {value}" + (f" ({where[key]})" if key in where else "")))
    return words


def _value(setting: object) -> object:
    """A varied setting's value ({"value": text, "source": ...} as workers say it)."""
    return setting.get("value") if isinstance(setting, Mapping) else setting


def overridden(ready: Mapping | None, read_back: Mapping | None) -> str | None:
    """What the user's code changed of its column's settings (the plan devswitch applied when the worker
    became READY against what was read back after the code ran), with where it changed it: "precision fp16
    (devswitch.configure at train.py:2)"; None when nothing."""
    return ", ".join(words for _, words in _changes(ready, read_back)) or None


def device_kind(device: str | None) -> str | None:
    """ "cpu" or "gpu" for a device as devswitch or a framework names it ('cpu', 'CPU:0', 'gpu:0', 'cuda:0',
    'TFRT_CPU_0'); None when it cannot tell."""
    text = (device or "").lower()
    if "cpu" in text:
        return "cpu"
    if any(word in text for word in ("gpu", "cuda", "rocm")):
        return "gpu"
    return None


def record_changes(column: Configuration, plan: Mapping, record: Mapping) -> list[tuple[str, str]]:
    """(key, what it was) for each read-back setting of ``record`` that is not its column's: the precision
    policy and the math against the ``plan`` devswitch applied for the column, the device and the backend
    against the column itself, and every varied value."""
    found: list[tuple[str, str]] = []
    policy = record.get("policy")
    if isinstance(policy, str) and plan.get("policy") and policy not in (plan["policy"], "unknown"):
        found.append(("policy", policy))
    math = record.get("math")
    if isinstance(math, str) and math and plan.get("math") and math != plan["math"]:
        found.append(("math", math))
    device = record.get("device")
    if isinstance(device, str) and device_kind(device) not in (None, device_kind(column.device)):
        found.append(("device", device))
    backend = record.get("backend")
    if isinstance(backend, str) and backend and backend != column.backend:
        found.append(("backend", backend))
    applied: Mapping[str, Any] = record.get("settings") or {}
    for name, value in column.settings:
        now = (applied.get(name) or {}).get("value") if isinstance(applied.get(name), Mapping) else None
        if now is not None and now != value:
            found.append((name, str(now)))
    return found


def factory_override(column: Configuration, ready: Ready | None, built: Built | None, record: Mapping) -> str | None:
    """Why ``record`` is not a result of its column: the settings the factory changed through devswitch
    (read back once the model was built, with where), and whatever else the record ran under that is not the
    column's (a policy set through Keras itself, say); None when it is the column's."""
    asked = {name: {"value": value} for name, value in column.settings}  # what the column asked for
    changes = _changes({"plan": ready.plan, "settings": asked} if ready else None, built.read_back if built else None)
    said = {key for key, _ in changes}
    if "precision" in said:
        said.add("policy")
    words = [text for _, text in changes]
    for key, value in record_changes(column, (ready.plan if ready else None) or {}, record):
        if key not in said:
            words.append(f"{key} {value} ({NOT_DEVSWITCH})")
    return ", ".join(words) or None
