"""The contract between ``devswitch compare`` and its workers: the spec it writes, the events they append.

Both sides use these definitions, so a field renamed on one side cannot go unnoticed on the other.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

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
EVENTS = (SPAWNED, READY, UNAVAILABLE, BUILT, RECORD, FAILED, DONE, INTERRUPTED, CRASHED, REFERENCE, GIVEN_UP)
# Every event a worker writes carries its "pid": compare takes only the worker's own (not a forked child's).


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


def read_events(path: Path, start: int = 0) -> tuple[list[dict], int]:
    """The complete events from line ``start`` on, and the line to read from next time (a line still being
    written is left for then)."""
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
        if not isinstance(event, dict) or event.get("event") not in EVENTS:
            raise ValueError(f"{path}: not a worker event: {line[:120]!r}")
        out.append(event)
        start += 1
    return out, start
