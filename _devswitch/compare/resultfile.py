"""Reading a results.json back into a ``ResultSet``: bounded, validated input handling.

Only a regular file of a sane size, JSON nested no deeper than the schema needs, every field the code
uses checked for its type; a malformed file is a ``ResultFileError`` (exit code 2) naming the file and
the field path, never a traceback. A throughput that is NaN, infinite or written as the string "nan"
makes its cell failed, never a number; control characters in strings are written out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..settings import Invalid
from .axes import MAX_VALUES, MAX_VARIED, VARIABLE, canonical
from .options import FOUND_NAMES
from .resultset import (
    MAX_BYTES,
    MAX_CELLS,
    MAX_DEPTH,
    SCHEMA_VERSION,
    Cell,
    Configuration,
    Model,
    Record,
    ResultFileError,
    ResultSet,
    read_record,
)
from .scriptrecord import ScriptRecord

MAX_WHOLE = 2**53  # a whole number beyond this is no count, size or index devswitch writes


def _digits(value: int) -> str:
    """A huge integer named by its size, never printed (repr refuses past 4,300 digits)."""
    from ..errors import quote

    return quote(value) if abs(value) < 10**40 else f"an integer of about {int(value.bit_length() * 0.30103)} digits"


class _Reader:
    """Checks one document field by field; every complaint names the file and the field path."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, where: str, what: str) -> ResultFileError:
        from ..errors import clip

        return ResultFileError(
            f"{self.file}: {where}: {clip(what, 200)}",
            hint="give a results folder or results.json written by devswitch compare "
            "(or rerun the compare to write it again)",
        )

    def get(self, obj: Mapping, key: str, where: str, kind, required: bool = True, default=None):
        if key not in obj or obj[key] is None:
            if required:
                raise self.fail(f"{where}.{key}" if where else key, "missing")
            return default
        value = obj[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, int) and not isinstance(value, bool) and int in kinds and abs(value) > MAX_WHOLE:
            raise self.fail(f"{where}.{key}" if where else key, f"{_digits(value)}: beyond what devswitch writes")
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(
                k.__name__.replace("str", "string")
                .replace("dict", "object")
                .replace("list", "array")
                .replace("int", "integer")
                for k in kinds
            )
            raise self.fail(f"{where}.{key}" if where else key, f"expected {names}, found {type(value).__name__}")
        return value

    def number(self, value: Any, where: str) -> float | None:
        """A metric value: a finite number, or None (null, NaN, inf or the strings devswitch once wrote). A
        boolean, and an integer beyond float's range (JSON has no limit: a 401-digit throughput), are errors."""
        if value is None or isinstance(value, bool):
            return None if value is None else self._bad(where, value)
        if isinstance(value, int):
            try:
                return float(value)
            except OverflowError:
                raise self.fail(where, f"{_digits(value)}: beyond the range of a number (float)") from None
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
            return None
        return self._bad(where, value)

    def _bad(self, where: str, value: Any):
        from ..errors import quote

        raise self.fail(where, f"expected a number or null, found {quote(value)}")


_FIGURES = (
    "throughput",
    "throughput_overall",
    "predict_throughput",
    "latency_p50",
    "latency_p90",
    "latency_p99",
    "first_call",
    "achieved",
    "fraction_of_peak",
    "matmul_probe",
    "energy",
    "power",
    "samples_per_watt",
)


Units = tuple[tuple[str, str], ...]  # (metric, unit) as a file gave them


def _record(r: _Reader, raw: Any, where: str) -> tuple[Record | None, str, Units]:
    """A cell's record, checked and read into its dataclass (``read_record``); "" or why its cell cannot
    count as measured; and the unit the file gave each metric (``report A B`` pairs only like units)."""
    if not isinstance(raw, Mapping):
        raise r.fail(where, f"expected an object, found {type(raw).__name__}")
    record = dict(raw)
    metrics = r.get(record, "metrics", where, dict)
    checked = {}
    for name, m in metrics.items():
        if not isinstance(m, Mapping):
            raise r.fail(f"{where}.metrics.{name}", f"expected an object, found {type(m).__name__}")
        m = dict(m)
        if "value" in m:
            m["value"] = r.number(m["value"], f"{where}.metrics.{name}.value")
        if name == "throughput":
            ci = m.get("ci")
            if ci is not None:
                if not isinstance(ci, list) or len(ci) != 2:
                    raise r.fail(f"{where}.metrics.throughput.ci", "expected [low, high]")
                ci = [r.number(v, f"{where}.metrics.throughput.ci[{i}]") for i, v in enumerate(ci)]
                m["ci"] = ci if None not in ci and ci[0] <= ci[1] else None
            coverage = m.get("ci_coverage")
            coverage = r.number(coverage, f"{where}.metrics.throughput.ci_coverage") if coverage is not None else None
            m["ci_coverage"] = coverage if coverage is not None and 0 < coverage <= 1 else None
            if m.get("jitter") is not None:
                m["jitter"] = r.number(m["jitter"], f"{where}.metrics.throughput.jitter")
        checked[name] = m
    units = tuple((name, m["unit"]) for name, m in checked.items() if isinstance(m.get("unit"), str))
    for name in _FIGURES:
        if name not in checked:
            checked[name] = {"value": None}
    record["metrics"] = checked
    for key, kind in (
        ("policy", str),
        ("energy", dict),
        ("training", dict),
        ("versions", dict),
        ("phases_s", dict),
        ("math", str),
    ):
        r.get(record, key, where, kind, required=False)
    record["samples"] = _samples(r, record.get("samples"), f"{where}.samples")
    record["accuracy"] = _accuracy(r, record.get("accuracy"), f"{where}.accuracy")
    if record.get("type") == "script":  # compare --script: its runs and their timed calls
        from .scriptrecord import check

        check(r, record, where)
    try:
        typed = read_record(record, where)
    except ValueError as error:  # what the checks above leave to the dataclass: a field missing or mistyped
        field, _, what = str(error).partition(" ")  # its message starts with the field's path
        raise r.fail(field, what.removeprefix("is ")) from None
    script = isinstance(typed, ScriptRecord)
    rate = typed.runs_per_s if isinstance(typed, ScriptRecord) else typed.samples_per_s
    what = "runs/s" if script else "throughput"
    why = "" if rate is not None and rate > 0 else f"failed: no finite {what} in the record"
    return typed, why, units


_ACCURACY_FIGURES = ("max_rel_error", "median_rel_error", "top1_agreement", "loss", "reference_loss", "loss_rel_diff")


def _accuracy(r: _Reader, raw: Any, where: str) -> dict | None:
    """The deviation from the reference: a status and finite figures (null where none)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise r.fail(where, f"expected an object, found {type(raw).__name__}")
    out = dict(raw)
    r.get(out, "status", where, str)
    for key in _ACCURACY_FIGURES:
        if key in out:  # only what the file holds: the record read back is the one written
            out[key] = r.number(out[key], f"{where}.{key}")
    for key in ("samples", "nonfinite_samples"):
        r.get(out, key, where, int, required=False)
    r.get(out, "reference", where, dict, required=False)
    return out


def _samples(r: _Reader, raw: Any, where: str) -> dict | None:
    """The timed samples (round, start, seconds per step): three arrays of one length, or null."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise r.fail(where, f"expected an object, found {type(raw).__name__}")
    columns = {}
    for key in ("round", "start_s", "seconds_per_step"):
        values = r.get(raw, key, where, list)
        if key == "round" and not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_WHOLE for v in values
        ):
            raise r.fail(f"{where}.round", "expected whole numbers >= 0")
        columns[key] = [r.number(v, f"{where}.{key}[{i}]") for i, v in enumerate(values)] if key != "round" else values
    if len({len(v) for v in columns.values()}) != 1:
        raise r.fail(where, "round, start_s and seconds_per_step differ in length")
    if any(v is None or v <= 0 for v in columns["seconds_per_step"]):
        raise r.fail(f"{where}.seconds_per_step", "expected positive numbers")
    return columns


_TIMING_FIGURES = ("total_s", "sum_measured_s", "sum_startup_s", "overhead_ratio")


def _timing(r: _Reader, timing: Mapping) -> dict:
    """Where the wall time went: the figures shown are finite numbers, or the breakdown is not shown at all."""
    out = dict(timing)
    figures = {k: r.number(timing.get(k), f"timing.{k}") for k in _TIMING_FIGURES}
    if any(v is None for v in figures.values()):
        out["overhead_ratio"] = None  # an incomplete breakdown: the line that explains it is left out
    else:
        out.update(figures)
    return out


def _value(r: _Reader, name: str, value: Any, where: str) -> str:
    """One varied setting's value: a setting compare varies, a string its own parser takes, as devswitch
    writes it."""
    from ..errors import quote

    if name not in VARIABLE:
        raise r.fail(where, f"{quote(name)} is not a setting compare varies (" + ", ".join(VARIABLE) + ")")
    if not isinstance(value, str):
        raise r.fail(where, f"expected string, found {type(value).__name__}")
    try:
        text = canonical(name, value)
    except Invalid as error:
        raise r.fail(where, f"{quote(value)}: expected {error.expected}") from None
    if text != value:
        raise r.fail(where, f"{quote(value)}: devswitch writes it {text!r}")
    return text


def _settings(r: _Reader, raw: Mapping, where: str) -> tuple:
    """A cell's varied settings, ((name, value), ...) in the file's order: at most MAX_VARIED, each checked."""
    if len(raw) > MAX_VARIED:
        raise r.fail(where, f"{len(raw)} settings, more than {MAX_VARIED}")
    return tuple((name, _value(r, name, value, f"{where}.{name}")) for name, value in raw.items())


def _vary(r: _Reader, raw: Any) -> dict:
    """options.vary: {name: [value, ...]} (absent in files written before --vary: {})."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise r.fail("options.vary", f"expected an object, found {type(raw).__name__}")
    if len(raw) > MAX_VARIED:
        raise r.fail("options.vary", f"{len(raw)} settings, more than {MAX_VARIED}")
    out = {}
    for name, values in raw.items():
        if not isinstance(values, list) or not 0 < len(values) <= MAX_VALUES:
            raise r.fail(f"options.vary.{name}", f"expected an array of 1 to {MAX_VALUES} values")
        out[name] = [_value(r, name, v, f"options.vary.{name}[{i}]") for i, v in enumerate(values)]
    return out


def from_json(doc: Any, file: str = "results.json") -> ResultSet:
    """Validate a parsed results.json and build the result set (ResultFileError naming the field if not)."""
    r = _Reader(file)
    version = _schema_version(r, doc, file)
    options = _options(r, dict(doc["options"]))
    model = _model(r, doc, options)
    cells = _cells(r, doc, version)
    command = r.get(doc, "command", "", list, required=False, default=[])
    return ResultSet(
        options=options,
        model=model,
        cells=cells,
        environment=r.get(doc, "environment", "", dict, required=False),
        config=r.get(doc, "config", "", dict, required=False),
        timing=_timing(r, r.get(doc, "timing", "", dict, required=False, default={})),
        command=tuple(str(a) for a in command),
        interrupted=r.get(doc, "interrupted", "", bool, required=False, default=False),
        complete=r.get(doc, "complete", "", bool, required=False, default=True),
        path=file,
        reference=r.get(doc, "reference", "", dict, required=False),
    )


def _schema_version(r: _Reader, doc: Any, file: str) -> int:
    """The document's schema version, once it is known to be a compare result this devswitch reads."""
    if (
        not isinstance(doc, Mapping)
        or not isinstance(doc.get("cells"), list)
        or not isinstance(doc.get("options"), Mapping)
    ):
        raise ResultFileError(
            f"{file} is not a devswitch compare result (no 'cells' and 'options')",
            hint="for a timing report of a script (report: PATH.jsonl), see README 'Records'",
        )
    version = doc.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        raise r.fail(
            "schema_version",
            f"{version!r} is not one this devswitch reads (1 to {SCHEMA_VERSION}); a newer devswitch wrote it?",
        )
    return version


def _options(r: _Reader, options: dict) -> dict:
    """The checked ``options`` object: batch sizes, backends, baseline, what varies, rounds, ..."""
    batch_sizes = r.get(options, "batch_sizes", "options", list)
    if not all(isinstance(b, int) and not isinstance(b, bool) and (b > 0 or b in FOUND_NAMES) for b in batch_sizes):
        raise r.fail("options.batch_sizes", "expected positive whole numbers (or 0 and -1: max and knee)")
    backends = options.get("backends") or ["tensorflow"]
    if not isinstance(backends, list) or not all(isinstance(b, str) for b in backends):
        raise r.fail("options.backends", "expected an array of names")
    options["backends"] = backends
    baseline = r.get(options, "baseline", "options", str, required=False, default="tensorflow cpu fp32")
    try:  # devswitch 0.1 wrote "DEVICE PRECISION": tensorflow is its backend
        base = Configuration.from_words(baseline)
        _settings(r, dict(base.settings), "options.baseline")
    except ValueError as error:
        raise r.fail("options.baseline", str(error)) from None
    options["baseline"] = base.words()
    options["vary"] = _vary(r, options.get("vary"))
    r.get(options, "mode", "options", str, required=False)
    if options.get("kind") is not None:  # compare --script
        from .scriptrecord import check_options

        check_options(r, options)
    rounds = r.get(options, "rounds", "options", int, required=False, default=1)
    if rounds < 1:
        raise r.fail("options.rounds", f"expected a whole number >= 1, found {rounds}")
    if options.get("max_error") is not None:
        options["max_error"] = r.number(options["max_error"], "options.max_error")
    if options.get("min_speedup") is not None:  # absent in files from before it: the default rules
        options["min_speedup"] = r.number(options["min_speedup"], "options.min_speedup")
    r.get(options, "target", "options", str, required=False)
    return options


def _model(r: _Reader, doc: Any, options: dict) -> Model:
    m = r.get(doc, "model", "", dict, required=False, default={})
    return Model(
        target=r.get(m, "target", "model", str, required=False, default=options.get("target", "?")),
        name=r.get(m, "name", "model", str, required=False),
        parameters=r.get(m, "parameters", "model", int, required=False),
        unit=r.get(m, "unit", "model", str, required=False, default="samples"),
    )


def _cells(r: _Reader, doc: Any, version: int) -> tuple[Cell, ...]:
    """Every cell, each checked; all vary the same settings and no two share a key."""
    if len(doc["cells"]) > MAX_CELLS:
        raise r.fail("cells", f"{len(doc['cells'])} cells: more than {MAX_CELLS:,}")
    old_records = iter(r.get(doc, "records", "", list, required=False, default=[])) if version == 1 else iter(())
    cells: list[Cell] = []
    for i, c in enumerate(doc["cells"]):
        cells.append(_cell(r, c, f"cells[{i}]", version, old_records, i))
        _same_settings(r, cells[-1], cells[0], f"cells[{i}].settings")
    seen: set = set()
    for i, c in enumerate(cells):
        if c.key in seen:
            raise r.fail(f"cells[{i}]", f"a second cell for {c.key.label()}")
        seen.add(c.key)
    return tuple(cells)


def _cell(r: _Reader, c: Any, where: str, version: int, old_records: Iterator[Any], i: int) -> Cell:
    """One cell and its record (schema 1 kept the records apart, one per cell that ran)."""
    if not isinstance(c, Mapping):
        raise r.fail(where, f"expected an object, found {type(c).__name__}")
    status = r.get(c, "status", where, str)
    batch = r.get(c, "batch", where, int)
    raw = c.get("record") if version >= 2 else (next(old_records, None) if status == "ok" else None)
    record, why, units = (
        _record(r, raw, f"{where}.record" if version >= 2 else f"records[{i}]")
        if raw is not None
        else (None, "failed: no record" if status == "ok" else "", ())
    )
    settings = _settings(r, r.get(c, "settings", where, dict, required=False, default={}), f"{where}.settings")
    return Cell(
        backend=r.get(c, "backend", where, str, required=False, default="tensorflow"),
        device=r.get(c, "device", where, str),
        precision=r.get(c, "precision", where, str),
        batch=batch,
        status=why if why and status == "ok" else status,
        resolved=r.get(c, "resolved_precision", where, str, required=False, default=""),
        record=record,
        settings=settings,
        written_units=units,
    )


def _same_settings(r: _Reader, cell: Cell, first: Cell, where: str) -> None:
    if [k for k, _ in cell.settings] != [k for k, _ in first.settings]:
        raise r.fail(
            where,
            "varies "
            + (", ".join(k for k, _ in cell.settings) or "nothing")
            + " where cells[0] varies "
            + (", ".join(k for k, _ in first.settings) or "nothing"),
        )


def _depth_ok(data: bytes, limit: int) -> bool:
    """JSON nested at most ``limit`` deep (brackets outside strings), checked before parsing it."""
    depth, in_string, escaped = 0, False, False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def read_bytes(file: Path) -> bytes:
    """The bytes of a results file: a regular file of at most MAX_BYTES, JSON nested at most MAX_DEPTH deep."""
    import os
    import stat

    from ..errors import DevswitchError
    from ..files import read_bounded

    hint = "give a results folder or a results.json written by devswitch compare"
    try:
        info = os.stat(file)  # never blocks, even on a FIFO
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_BYTES:
            raise ResultFileError(
                f"{file}: {info.st_size:,} bytes, more than the {MAX_BYTES >> 20} MiB a result file can take", hint=hint
            )
        data = read_bounded(file, MAX_BYTES)
    except OSError as error:
        raise ResultFileError(f"cannot read {file}: {error.strerror or error}", hint=hint) from None
    except ResultFileError:
        raise
    except DevswitchError as error:
        raise ResultFileError(f"{file}: {error.message}", hint=hint) from None
    if not _depth_ok(data, MAX_DEPTH):
        raise ResultFileError(
            f"{file}: JSON nested deeper than {MAX_DEPTH} levels",
            hint="a results.json written by devswitch compare nests 6 levels",
        )
    return data


def parse(data: bytes, file: str) -> ResultSet:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        from ..errors import clip

        raise ResultFileError(
            f"{file} is not JSON: {clip(str(error), 200)}", hint="give a results.json written by devswitch compare"
        ) from None
    return from_json(_visible(doc), file)


def read(path: str | Path) -> ResultSet:
    """A results folder or results.json -> the result set, read bounded and validated."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    return parse(read_bytes(file), str(file))


def _visible(value: Any) -> Any:
    """Every string with its control characters written out (``errors.visible``)."""
    from ..errors import visible

    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {_visible(k): _visible(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_visible(v) for v in value]
    return value
