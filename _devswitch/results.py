"""Result records and their files (JSON, JSON Lines reports); statistics.py computes, render/calls.py draws.

Records are frozen; ``to_dict`` builds new dicts and never mutates a record.
Every metric is written with its unit. Files are written atomically (temporary
file + ``os.replace``) with the permissions the user's umask gives; reports are
append-only JSON Lines (one run per line, with that run's own context), appended
under an exclusive lock, so an interrupted or concurrent run never leaves a
half-written or corrupt results file, and a report that cannot be written keeps
its records in a file beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the records live in callrecord.py; handed on from here, where readers have always found them
from .callrecord import CALL_MEMORY as CALL_MEMORY
from .callrecord import CallRecord, call_from_dict
from .callrecord import EpochTime as EpochTime
from .callrecord import metric as metric

SCHEMA_VERSION = 1


# --- files ---------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # an instance, not the class
        return value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
    if hasattr(value, "_asdict"):
        return value._asdict()
    return str(value)


def _sanitise(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings ('nan', 'inf') rather than produce invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _sanitise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitise(v) for v in value]
    return value


def _create_new(path: Path) -> int:
    """Open ``path`` for writing, created here and now (never an existing file).

    Mode 0666 filtered by the kernel through the process umask (and the folder's default ACL), like any
    file ``open()`` creates: devswitch's files get the same permissions as the user's other files.
    ``tempfile.mkstemp`` would force 0600, and reading the umask ourselves (``os.umask`` set-and-restore)
    would briefly change it for every thread of the process.
    """
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = _create_new(tmp)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"could not create a temporary file beside {path}")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _locked(path: Path) -> contextlib.AbstractContextManager[None]:
    """The report's lock (``<name>.lock`` beside it, waited for as long as it takes), its folder made first."""
    from .files import hold_lock

    path.parent.mkdir(parents=True, exist_ok=True)
    return hold_lock(path.with_name(path.name + ".lock"))


def records_document(records: Iterable[Any], **context: Any) -> dict:
    data = {
        "schema_version": SCHEMA_VERSION,
        **context,
        "records": [r.to_dict() if hasattr(r, "to_dict") else r for r in records],
    }
    # round-trip through JSON so dataclasses and tuples become plain data; NaN/inf become strings
    return _sanitise(json.loads(json.dumps(data, default=_json_default)))


# --- report files: JSON Lines, one run per line, append-only --------------------------------
#
# A report (``report: PATH.json``) gets one line per run: {"schema_version": 2, "type": "run",
# <that run's environment, config, plan>, "records": [...]}. Appending is one write(2) with O_APPEND
# under an exclusive lock, after reading at most a few bytes of the file: no run ever rewrites (or
# can damage) what earlier runs wrote, and every run keeps its own context. Files of schema 1 (one
# JSON document holding every record, what devswitch wrote before) are still read, and are turned
# into one schema-1 line the first time a run is appended to them.

REPORT_SCHEMA_VERSION = 2
_RUN_PREFIX = re.compile(rb'\A\s*\{"schema_version":[12],"type":"run",')


class ReportError(ValueError):
    """A file that is not a devswitch report is in the way (its content is left untouched)."""


def report_line(records: Iterable[Any], context: Mapping[str, Any]) -> bytes:
    """One run as one JSON line (newline included): schema 2, its own context, its records."""
    context = {k: v for k, v in context.items() if k not in ("schema_version", "type", "records")}
    run = records_document(records, **context)
    run = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "type": "run",
        **{k: v for k, v in run.items() if k != "schema_version"},
    }
    return (json.dumps(run, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _describe_shape(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(sorted(map(str, value))[:5]) or "no keys"
        return f"a JSON object ({keys}) that is not a devswitch run"
    return f"a JSON {_JSON_TYPES.get(type(value), type(value).__name__)}"


def _run_of(value: Any, where: str) -> dict:
    """A run from one JSON value of a report, or ReportError saying what is there instead."""
    if isinstance(value, dict) and isinstance(value.get("records"), list):
        version = value.get("schema_version")
        if version == REPORT_SCHEMA_VERSION and value.get("type") == "run":
            return value
        if version == SCHEMA_VERSION:  # before reports were JSON Lines: one document, records of all runs
            return {
                "schema_version": SCHEMA_VERSION,
                "type": "run",
                **{k: v for k, v in value.items() if k not in ("schema_version", "type")},
            }
        raise ReportError(
            f"{where}: schema_version {version!r} is not one this devswitch reads "
            f"({SCHEMA_VERSION} or {REPORT_SCHEMA_VERSION})"
        )
    raise ReportError(f"{where}: {_describe_shape(value)}; a devswitch report holds runs with records")


@dataclass(frozen=True)
class ReportRun:
    """One run of a timing report, read back: its schema version, its context as that run wrote it (a value
    that should be an object and is not reads as empty), and its records, the CallRecords it wrote."""

    schema_version: int
    records: tuple[CallRecord, ...]
    environment: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    plan: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)  # any other key of the run (context_error, ...)


_RUN_KEYS = ("schema_version", "type", "records", "environment", "config", "plan")


def _typed_run(run: dict, name: str, number: int) -> ReportRun:
    """A run as ``_run_of`` returns it, typed; a record that is not a CallRecord is a ReportError naming the
    file, the run, the record and the field."""
    records = []
    for j, record in enumerate(run["records"], 1):
        try:
            records.append(call_from_dict(record, f"{name}: run {number} record {j}"))
        except ValueError as error:
            raise ReportError(f"{error}: not a record devswitch wrote (the file was edited, or cut)") from None

    def mapping(key: str) -> Mapping[str, Any]:
        value = run.get(key)
        return value if isinstance(value, dict) else {}

    return ReportRun(
        schema_version=run["schema_version"],
        records=tuple(records),
        environment=mapping("environment"),
        config=mapping("config"),
        plan=mapping("plan"),
        context={k: v for k, v in run.items() if k not in _RUN_KEYS},
    )


def parse_report(text: str, name: str = "report") -> list[ReportRun]:
    """The runs in a report's text (JSON Lines, schema 2, or one schema-1 document), each a ReportRun.
    ReportError for text that is not a report, or a record that does not read back as a CallRecord."""
    return [_typed_run(run, name, i) for i, run in enumerate(_parse_runs(text, name), 1)]


def _parse_runs(text: str, name: str) -> list[dict]:
    """The runs in a report's text as written: JSON Lines (schema 2), or one schema-1 document (pretty-printed)."""
    if not text.strip():
        return []
    try:
        whole = json.loads(text)  # a schema-1 document, or a report of one line
    except json.JSONDecodeError:
        pass
    else:
        return [_run_of(whole, name)]
    runs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise ReportError(
                f"{name}:{number}: not JSON ({error.msg}): not a devswitch report, or a line cut short"
            ) from None
        runs.append(_run_of(value, f"{name}:{number}"))
    return runs


def read_report(path: str | Path) -> list[ReportRun]:
    """Every run in the report at ``path``, oldest first, as ReportRuns (records: the CallRecords written).

    A schema-1 file (one JSON document) reads as one run with ``schema_version`` 1; its context is that of
    the first process that wrote it. Raises ReportError for a file that is not a report or a record that
    is not one devswitch wrote (naming the run, the record and the field), OSError when it cannot be read.
    """
    path = Path(path)
    return parse_report(path.read_text(encoding="utf-8"), str(path))


def read_report_as_written(path: str | Path) -> list[dict]:
    """Every run in the report at ``path`` as the JSON objects written (``schema_version``, ``type``, the
    context, ``records`` as dicts), for a reader that keeps what it can of records a script wrote itself."""
    path = Path(path)
    return _parse_runs(path.read_text(encoding="utf-8"), str(path))


def _open_for_append(path: Path) -> int:
    import stat

    # O_NONBLOCK: a FIFO in the way fails at once instead of waiting for a reader
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o666)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ReportError(f"{path} is not a regular file")
    return fd


def _append_line(path: Path, line: bytes) -> None:
    """Append one line to the report at ``path``, reading at most 65 bytes of it; the caller holds the lock."""
    fd = _open_for_append(path)
    try:
        size = os.fstat(fd).st_size
        if size and not _RUN_PREFIX.match(os.pread(fd, 64, 0)) and _convert_old(path, fd, size):
            os.close(fd)
            fd = _open_for_append(path)
            size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # the last line was cut short: do not glue this run to it
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:  # a full disk or a quota part-way: take back the part written (we hold the lock)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def _convert_old(path: Path, fd: int, size: int) -> bool:
    """Check a report that does not start like one of ours: the one path that reads the whole file.

    JSON Lines of runs (keys in another order): left as they are. One schema-1 document: rewritten as
    one schema-1 line with the same content, once; returns True. Anything else: ReportError, and the
    file is left untouched.
    """
    if size > 512 * 2**20:
        raise ReportError(f"{path} is {size / 2**20:.0f} MiB and does not start like a devswitch report")
    chunks, done = [], 0
    while done < size:
        chunk = os.pread(fd, size - done, done)
        if not chunk:
            break
        chunks.append(chunk)
        done += len(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise ReportError(f"{path} is not text: not a devswitch report") from None
    runs = _parse_runs(text, str(path))
    if len(runs) == 1 and runs[0]["schema_version"] == SCHEMA_VERSION:
        write_atomic(path, json.dumps(runs[0], allow_nan=False, separators=(",", ":")) + "\n")
        return True
    return False


def append_records(path: str | Path, records: Sequence[Any], **context: Any) -> None:
    """Append one run (``records`` with this run's ``context``) to the report at ``path``.

    Creates the file (and its folder) if missing. Raises ReportError when something that is not a
    devswitch report is in the way, OSError when the file cannot be written; see ``save_report`` for
    the variant that never loses the records.
    """
    path = Path(path)
    line = report_line(records, context)
    with _locked(path):
        _append_line(path, line)


def save_report(path: str | Path, records: Sequence[Any], context: Mapping[str, Any]) -> tuple[Path | None, str | None]:
    """Append one run to the report at ``path``; never raises, never loses the records.

    Returns ``(written, note)``: ``(Path(path), None)`` when the run was appended where asked. When it
    could not be (a file of another shape, no permission, a folder in the way, ...), the run is written
    to a new file ``<name>.devswitch-<pid>-<time>.jsonl`` beside ``path``, else in the current
    directory, else in the temporary directory, and ``written`` is that file; ``note`` says why and
    where, to be shown to the user. If nothing at all can be written, ``written`` is None and ``note``
    also carries the run itself as one JSON line.
    """
    path = Path(path)
    try:
        line = report_line(records, context)
    except Exception as error:  # noqa: BLE001 - a context that cannot be serialised: keep the records
        line = report_line(records, {"context_error": f"{type(error).__name__}: {error}"})
    try:
        with _locked(path):
            _append_line(path, line)
        return path, None
    except Exception as error:  # noqa: BLE001 - reported, and the records go elsewhere
        reason = _reason(error, path)
    count = len(records)
    stem = f"{path.name}.devswitch-{os.getpid()}-{time.strftime('%Y%m%d-%H%M%S')}"
    failures = []
    for folder in _unique([path.parent, Path.cwd(), Path(tempfile.gettempdir())]):
        try:
            target = _write_new(folder, stem, ".jsonl", line)
            return target, (
                f"could not write the report to {path}: {reason}; kept the {count} record(s) of this run in {target}"
            )
        except OSError as error:
            failures.append(f"{folder}: {error.strerror or error}")
    return None, (
        f"could not write the report to {path}: {reason}; nor a file beside it ("
        + "; ".join(failures)
        + f"). The {count} record(s) of this run, as one JSON line:\n"
        + line.decode("utf-8").rstrip("\n")
    )


def _reason(error: Exception, path: Path) -> str:
    if not isinstance(error, ReportError):
        return f"{type(error).__name__}: {error}"
    text = str(error)
    if text.startswith(str(path) + ":"):  # the note names the file already
        text = re.sub(r"\A(\d+):", r"line \1:", text[len(str(path)) + 1 :].lstrip())
    return text


def _write_new(folder: Path, stem: str, suffix: str, data: bytes) -> Path:
    """Write ``data`` to a new file ``stem[-N]suffix`` in ``folder``, never replacing one."""
    for n in range(1, 1000):
        target = folder / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
        try:
            fd = _create_new(target)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except OSError:  # a full disk or a quota: no half-written file left behind
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise
        return target
    raise FileExistsError(f"too many files named {stem}-N{suffix} in {folder}")


def _unique(folders: Iterable[Path]) -> list[Path]:
    seen, out = set(), []
    for folder in folders:
        key = os.path.abspath(folder)
        if key not in seen:
            seen.add(key)
            out.append(folder)
    return out
