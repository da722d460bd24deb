"""The contract between ``devswitch compare`` and its workers: the spec it writes, the events they append.

Both sides use these definitions, so a field renamed on one side cannot go unnoticed on the other.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..benchrecord import BenchmarkRecord
from ..errors import quote

# What a worker appends to its events file, one JSON object per line, each with "event" and "t":
SPAWNED = "spawned"  # the process runs
READY = "ready"  # devswitch applied: plan, environment, config, gpus
UNAVAILABLE = "unavailable"  # this configuration cannot run here: reason (and gpus when they were looked for)
BUILT = "built"  # the model exists: model, unit, parameters
RECORD = "record"  # one batch size measured: record
FAILED = "failed"  # the user's factory or a measurement raised: error
DONE = "done"
INTERRUPTED = "interrupted"
CRASHED = "crashed"  # added by compare when the worker died without a word: returncode
REFERENCE = "reference"  # the reference run saved its file: reference (how it was computed), loss
GIVEN_UP = "given_up"  # added by compare when it gave the worker up (its time limit, stopped): reason
FOUND = "found"  # --batch-sizes max: the batch finder's result (batch, knee, reason, limit, trials)
EVENTS = (SPAWNED, READY, UNAVAILABLE, BUILT, RECORD, FAILED, DONE, INTERRUPTED, CRASHED, REFERENCE, GIVEN_UP, FOUND)
# Every event a worker writes carries its "pid": compare takes only the worker's own (not a forked child's).


class EventError(ValueError):
    """A worker event that is not what this version of compare and its workers write; the message names the
    event and the field."""


@dataclass(frozen=True, kw_only=True)
class Event:
    """One line of a worker's events file. Each kind is a subclass with its wire name in ``NAME``; ``t`` is
    time.time() when it was written, ``pid`` the writer's (None for the events compare adds itself)."""

    NAME: ClassVar[str] = ""
    t: float = 0.0
    pid: int | None = None

    def to_json(self) -> str:
        """One line of the events file: ``{"event": NAME, "t": ..., "pid": ..., ...fields}``."""
        return json.dumps({"event": self.NAME, **asdict(self)}, default=str)


@dataclass(frozen=True, kw_only=True)
class Spawned(Event):
    NAME = SPAWNED


@dataclass(frozen=True, kw_only=True)
class Ready(Event):
    """devswitch applied: the plan, the environment and configuration it recorded, and the GPUs it saw."""

    NAME = READY
    plan: dict | None = None
    environment: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    gpus: int | None = None  # None: this backend, set up for the CPU, cannot tell
    settings: dict | None = None  # a script worker: the varied settings as its configuration holds them


@dataclass(frozen=True, kw_only=True)
class Unavailable(Event):
    NAME = UNAVAILABLE
    reason: str
    gpus: int | None = None  # set when the GPUs were looked for


@dataclass(frozen=True, kw_only=True)
class Built(Event):
    NAME = BUILT
    model: str
    unit: str  # "img" or "samples"
    parameters: int
    read_back: dict = field(default_factory=dict)  # the settings once the factory ran (compare/honest.py)


@dataclass(frozen=True, kw_only=True)
class Record(Event):
    """One batch size measured: a BenchmarkRecord's dict, with the varied settings it ran under."""

    NAME = RECORD
    record: dict

    @functools.cached_property
    def benchmark(self) -> BenchmarkRecord:
        """The record as the dataclass the worker wrote (validated when the event was read)."""
        return BenchmarkRecord.from_dict(self.record, "record")


@dataclass(frozen=True, kw_only=True)
class Failed(Event):
    NAME = FAILED
    error: str
    note: str | None = None  # a script: devswitch's note on the exception (a half-precision mismatch)


@dataclass(frozen=True, kw_only=True)
class Done(Event):
    """The worker finished; a script worker adds how its script ended."""

    NAME = DONE
    exit_code: int | None = None
    wall_s: float | None = None
    calls: int | None = None  # timed calls the script made (its timing report holds them)
    log_end: int | None = None  # where the script's output ends in the log
    read_back: dict | None = None


@dataclass(frozen=True, kw_only=True)
class Interrupted(Event):
    NAME = INTERRUPTED


@dataclass(frozen=True, kw_only=True)
class Crashed(Event):
    NAME = CRASHED
    returncode: int | None = None


@dataclass(frozen=True, kw_only=True)
class Reference(Event):
    NAME = REFERENCE
    reference: dict  # how the reference was computed
    loss: float | None = None
    seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class GivenUp(Event):
    NAME = GIVEN_UP
    reason: str


@dataclass(frozen=True, kw_only=True)
class Found(Event):
    """The batch finder's result in this column's worker (``batchfinder.BatchSearch``): the largest batch that
    fits (None: not even batch 1), the knee, why the search stopped, what "fits" meant, each trial in words."""

    NAME = FOUND
    batch: int | None
    knee: int | None = None
    reason: str = ""
    limit: str = ""
    trials: list = field(default_factory=list)
    seconds: float | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.NAME: cls
    for cls in (
        Spawned,
        Ready,
        Unavailable,
        Built,
        Record,
        Failed,
        Done,
        Interrupted,
        Crashed,
        Reference,
        GivenUp,
        Found,
    )
}
assert tuple(EVENT_TYPES) == EVENTS


E = TypeVar("E", bound=Event)


def first(events: Iterable[Event], *kinds: type[E]) -> E | None:
    """The first event of one of ``kinds`` (e.g. ``first(run.events, Ready)``), or None."""
    return next((e for e in events if isinstance(e, kinds)), None)


def every(events: Iterable[Event], kind: type[E]) -> list[E]:
    """The events of ``kind``, in order."""
    return [e for e in events if isinstance(e, kind)]


def _fits(value: object, hint: Any) -> bool:
    """Whether a JSON value fits the annotation ``hint`` (str, int, float, bool, dict, list, X | None)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(hint) or hint
    return isinstance(value, origin)


def _expected(hint: Any) -> str:
    return " | ".join(
        "null" if h is type(None) else getattr(h, "__name__", str(h))
        for h in (typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,))
    )


def decode_event(data: object, where: str = "event") -> Event:
    """The typed event of one decoded JSON line, validated: an EventError names the event and the field that
    is missing, unknown or of the wrong type (never a KeyError later)."""
    if not isinstance(data, dict):
        raise EventError(f"{where}: not a worker event (a JSON {type(data).__name__}, not an object)")
    name = data.get("event")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise EventError(f"{where}: field 'event' is {quote(name)}, not one of {', '.join(EVENTS)}")
    hints = typing.get_type_hints(cls)
    given = {key: value for key, value in data.items() if key != "event"}
    unknown = sorted(set(given) - {f.name for f in fields(cls)})
    if unknown:
        raise EventError(
            f"{where}: {name} event has unknown field(s) {unknown} (compare and worker of different versions?)"
        )
    for f in fields(cls):
        if f.name not in given:
            if f.default is f.default_factory is MISSING:
                raise EventError(f"{where}: {name} event lacks its field {f.name!r}")
            continue
        if not _fits(given[f.name], hints[f.name]):
            raise EventError(
                f"{where}: {name} event's field {f.name!r} is {quote(given[f.name])}, not {_expected(hints[f.name])}"
            )
    event = cls(**given)
    if isinstance(event, Record):
        try:
            event.benchmark  # noqa: B018 - validated (and kept) now, not where a reader uses it
        except ValueError as error:
            raise EventError(f"{where}: record event's {error}") from None
    return event


def _write(path: Path, text: str) -> None:
    """Write a worker's spec; an OSError (a full disk: ENOSPC, EDQUOT, EFBIG) names the file."""
    try:
        path.write_text(text)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error


@dataclass(frozen=True)
class Spec:
    """One configuration for one worker."""

    backend: str
    device: str
    precision: str
    target: str
    batch_sizes: tuple[int, ...]
    mode: str
    warmup: int
    iterations: int
    min_time: float
    predict_baseline: bool
    peak_probe: bool
    events: str  # the events file to append to
    parent_pid: int | None = None
    rounds: int = 1  # > 1: take turns with the other workers (see phases below)
    origin: float | None = None  # time.time() at the start of the run: samples' start times count from it
    turn_fd: int | None = None  # rounds > 1: the pipe on which the worker says "done" at the end of each turn
    phase_fd: int | None = None  # rounds > 1: the pipe on which compare names the next phase (stdin is /dev/null)
    role: str = "measure"  # or "reference": compute the strict float32 reference, save it, end
    reference: str | None = None  # the reference's .npz: written by the reference run, read by the others
    accuracy_samples: int = 32  # the reference's seeded input
    settings: dict = field(default_factory=dict)  # the varied settings to apply: {name: value text} (--vary)
    memory_budget: int | None = None  # batch_sizes with MAX_BATCH: the batch finder's budget (None: its default)
    round_records: bool = False  # devswitch tune: a record of each batch size so far after every round

    def write(self, path: Path) -> None:
        _write(path, json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: str | Path) -> Spec:
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown spec fields {unknown} (compare and worker of different versions?)")
        data["batch_sizes"] = tuple(data["batch_sizes"])
        return cls(**data)


@dataclass(frozen=True)
class ScriptSpec:
    """One run of the user's script (``compare --script``) in one configuration, for devswitch.scriptworker.

    Its events: SPAWNED, then READY (devswitch applied) or UNAVAILABLE, then DONE with the script's
    ``exit_code`` and ``wall_s`` (from just before the script starts to its end)."""

    target: str  # the script's path, or a module name with ``module``
    args: tuple[str, ...]  # the script's own arguments
    settings: dict  # the explicit settings: backend, device, precision, fallback, report, --vary
    events: str
    module: bool = False
    caps: dict = field(default_factory=dict)  # {"max_epochs": N | None, "max_steps": N | None}
    parent_pid: int | None = None
    where: dict = field(default_factory=dict)  # setting -> where compare took it from (for messages)

    def write(self, path: Path) -> None:
        _write(path, json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: str | Path) -> ScriptSpec:
        data = json.loads(Path(path).read_text())
        data["args"] = tuple(data["args"])
        return cls(**data)


# Rounds > 1: the worker writes DONE_WORD on ``turn_fd`` when it is ready (model built) and at the end of
# each phase, then waits for compare to write the next phase's name on ``phase_fd``; phases in order:
def phases(rounds: int) -> list[str]:
    return ["warm", *(f"round {r + 1}" for r in range(rounds)), "finish"]


DONE_WORD = "done"


def read_events(path: Path, start: int = 0) -> tuple[list[Event], int]:
    """The complete events from line ``start`` on, and the line to read from next time (a line still being
    written is left for then); an EventError for a complete line that is JSON but not a valid event."""
    if not path.exists():
        return [], start
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    out = []
    for number, line in enumerate(lines[start:], start):
        if not line.strip():
            start += 1
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) - 1 and not text.endswith("\n"):
                break  # the last line, still being written: read it next time
            start += 1  # a complete line that is not JSON (a worker killed mid-write): skip it, read on
            continue
        out.append(decode_event(event, f"{path}:{number + 1}"))
        start += 1
    return out, start
