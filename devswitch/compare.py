"""``devswitch compare``: a matrix of device x precision configurations, one subprocess each.

Data flows one way: options -> output folder checked -> one worker process per
configuration (events file) -> cells -> results.json / .csv / .md / .png. This
process never imports TensorFlow; a configuration that cannot run here becomes
"unavailable: <reason>", one that crashes "failed: <error>", and Ctrl-C stops the
running worker and still writes every finished row.

Nothing measured is lost: the output folder is checked (and created) before any
worker starts, results.json/.csv/.md are rewritten atomically after every
configuration, and workers die with this process even when it is killed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .errors import UsageError
from .results import SCHEMA_VERSION, write_atomic

RESULT_FILES = ("results.json", "results.csv", "results.md", "results.png", "results.html")
WORK_PREFIX = ".devswitch-work-"  # + this process's pid: the workers' spec, events and log files
DEFAULT_ROOT = "devswitch-results"


@dataclass(frozen=True)
class Options:
    target: str = "alexnet"
    backends: tuple[str, ...] = ("tensorflow",)
    devices: tuple[str, ...] = ("cpu", "gpu")
    precisions: tuple[str, ...] = ("fp32", "half")
    batch_sizes: tuple[int, ...] = (1, 128)
    mode: str = "inference"
    warmup: int = 5
    iterations: int = 20
    min_time: float = 0.0
    predict_baseline: bool = True
    peak_probe: bool = True
    baseline: tuple[str, str, str] = ("tensorflow", "cpu", "fp32")  # backend, device, precision
    out: str = ""                     # "" = a new folder devswitch-results/<timestamp>
    timeout: float = 3600.0
    force: bool = False               # overwrite results already in --out
    command: tuple[str, ...] = ()     # the command line, recorded in results.json (plain data)


@dataclass(frozen=True)
class Cell:
    """One (backend, device, precision, batch) result: measured, or why not."""

    device: str
    precision: str
    batch: int
    status: str                       # ok | unavailable: ... | failed: ... | interrupted | not run
    resolved: str = ""                # the precision actually run (half -> bf16 ...)
    record: dict | None = None
    backend: str = "tensorflow"
    label_backend: bool = False       # several backends in the matrix: name it in the column

    @property
    def key(self) -> tuple[str, str, str]:
        return self.backend, self.device, self.precision

    @property
    def column(self) -> str:
        label = f"{self.backend} " if self.label_backend else ""
        label += f"{self.device} {self.precision}"
        if self.resolved and self.resolved != self.precision:
            label += f" ({self.resolved})"
        return label

    def metric(self, name: str):
        return ((self.record or {}).get("metrics", {}).get(name) or {}).get("value")


@dataclass
class ConfigRun:
    device: str
    precision: str
    backend: str = "tensorflow"
    wall_s: float = 0.0
    startup_s: float | None = None
    events: list = field(default_factory=list)
    log: str = ""


@dataclass(frozen=True)
class Output:
    """Where the results go, checked before anything runs, and the workers' scratch folder inside it."""

    path: Path
    work: Path

    def close(self) -> None:
        """Remove the scratch folder (a killed compare leaves it, with the workers' logs, beside its rows)."""
        shutil.rmtree(self.work, ignore_errors=True)


def prepare_output(out: str, force: bool = False, now: float | None = None) -> Output:
    """Check and create the output folder before any worker starts; UsageError when results could not go there.

    ``out`` = "" is the default, a new folder ``devswitch-results/<timestamp>`` (``-2``, ``-3``, ... when
    that name is taken): it never overwrites. An explicit folder that already holds results is refused
    unless ``force``: a script that reads OUT/results.json afterwards must not find older results there.
    """
    if not out:
        path = _new_default_folder(Path(DEFAULT_ROOT), time.localtime(now))
    else:
        path = Path(out)
        if (path.exists() or path.is_symlink()) and not path.is_dir():
            raise UsageError(f"--out {out}: exists and is not a folder; nothing was run",
                             hint="give a folder (new or existing) to hold results.json/.csv/.md/.png")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"--out {out}: cannot create this folder: {error.strerror or error}; nothing was run",
                             hint="choose another --out") from None
        present = [name for name in RESULT_FILES if (path / name).exists() or (path / name).is_symlink()]
        odd = [name for name in present if not (path / name).is_file() or (path / name).is_symlink()]
        if odd:
            raise UsageError(f"--out {out}: {path / odd[0]} is not a regular file; nothing was run",
                             hint="move it away, or choose another --out")
        if present and not force:
            raise UsageError(f"--out {out}: the folder {path} already holds results ({', '.join(present)}); "
                             "nothing was run", hint="pass --force to overwrite them, or choose another --out")
    _remove_stale_work(path)
    work = path / f"{WORK_PREFIX}{os.getpid()}"
    try:
        work.mkdir()
        probe = work / "probe"
        probe.write_bytes(b"")  # a folder we can create in, on a file system that takes writes
        probe.unlink()
    except OSError as error:
        with contextlib.suppress(OSError):
            work.rmdir()
        raise UsageError(f"--out {out or path}: cannot write in {path}: {error.strerror or error}; nothing was run",
                         hint="choose another --out") from None
    return Output(path, work)


def _new_default_folder(root: Path, stamp: time.struct_time) -> Path:
    name = time.strftime("%Y%m%d-%H%M%S", stamp)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = root / (name if n == 1 else f"{name}-{n}")
            try:
                path.mkdir()  # atomic: two runs started in the same second get two folders
                return path
            except FileExistsError:
                continue
    except OSError as error:
        raise UsageError(f"cannot create the output folder under {root}: {error.strerror or error}; nothing was run",
                         hint="choose a folder with --out") from None
    raise UsageError(f"{root}: too many result folders named {name}-N", hint="choose a folder with --out")


def _remove_stale_work(folder: Path) -> None:
    """Remove scratch folders left by a compare that was killed (its process no longer exists)."""
    for leftover in folder.glob(WORK_PREFIX + "*"):
        pid = leftover.name[len(WORK_PREFIX):]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass  # another user's process: still running


def _worker_env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DEVSWITCH_DISABLE", None)
    return env


def run_configuration(options: Options, device: str, precision: str, workdir: Path,
                      progress: Callable[[str], None], backend: str = "tensorflow") -> tuple[ConfigRun, bool]:
    """Run one worker; returns its run and whether the user interrupted."""
    name = f"{backend}-{device}-{precision}".replace(":", "_").replace(",", "_")
    events = workdir / f"{name}.events.jsonl"
    spec = workdir / f"{name}.spec.json"
    spec.write_text(json.dumps({"backend": backend, "device": device, "precision": precision,
                                "target": options.target,
                                "batch_sizes": list(options.batch_sizes), "mode": options.mode,
                                "warmup": options.warmup, "iterations": options.iterations,
                                "min_time": options.min_time, "predict_baseline": options.predict_baseline,
                                "peak_probe": options.peak_probe, "events": str(events),
                                "parent_pid": os.getpid()}))
    log = workdir / f"{name}.log"
    run = ConfigRun(device, precision, backend)
    started = time.time()
    interrupted = False
    seen = 0
    with open(log, "w") as log_handle:
        # Its own session: a Ctrl-C at the terminal reaches this process only, which forwards it (below).
        # The worker ends itself when this process ends, however it ends (see worker.die_with_parent).
        proc = subprocess.Popen([sys.executable, "-m", "devswitch.worker", str(spec)], stdout=log_handle,
                                stderr=subprocess.STDOUT, env=_worker_env(), start_new_session=True)
        try:
            while True:
                try:
                    proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                seen = _report_progress(events, seen, progress)
                if time.time() - started > options.timeout:
                    proc.kill()
                    proc.wait()
                    break
        except KeyboardInterrupt:
            interrupted = True
            progress("interrupted: stopping the running configuration, keeping every finished row")
            try:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                proc.kill()
                proc.wait()
    _report_progress(events, seen, progress)
    run.wall_s = time.time() - started
    run.events = [json.loads(line) for line in events.read_text().splitlines() if line.strip()] \
        if events.exists() else []
    ready = next((e for e in run.events if e["event"] in ("ready", "unavailable")), None)
    run.startup_s = ready["t"] - started if ready else None
    run.log = log.read_text(errors="replace")
    if proc.returncode not in (0, None) and not interrupted and not any(e["event"] == "done" for e in run.events):
        run.events.append({"event": "crashed", "returncode": proc.returncode, "t": time.time()})
    return run, interrupted


def _report_progress(events: Path, seen: int, progress: Callable[[str], None]) -> int:
    if not events.exists():
        return seen
    lines = events.read_text().splitlines()
    for line in lines[seen:]:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return seen  # a line being written: read it next time
        if event["event"] == "record":
            r = event["record"]
            rate = r["metrics"]["throughput"]["value"]
            text = f"{rate:,.1f}/s" if rate else r["status"]
            progress(f"    batch {r['batch']}: {text}")
        elif event["event"] == "unavailable":
            progress(f"    unavailable: {event['reason']}")
        elif event["event"] == "failed":
            progress(f"    failed: {event['error']}")
        seen += 1
    return seen


def _last_error_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip() and not line.startswith(("E0000", "I0000",
                                                                                               "W0000"))]
    return lines[-1][:200] if lines else "no output"


def cells_of(run: ConfigRun, batch_sizes, interrupted: bool) -> list[Cell]:
    plan = next((e.get("plan") for e in run.events if e["event"] == "ready"), None) or {}
    resolved = plan.get("precision", "")
    records = {e["record"]["batch"]: e["record"] for e in run.events if e["event"] == "record"}
    unavailable = next((e["reason"] for e in run.events if e["event"] == "unavailable"), None)
    failed = next((e["error"] for e in run.events if e["event"] == "failed"), None)
    crashed = next((e for e in run.events if e["event"] == "crashed"), None)
    cells = []
    for batch in batch_sizes:
        record = records.get(batch)
        if record is not None:
            status = record["status"]
        elif unavailable:
            status = f"unavailable: {unavailable}"
        elif failed:
            status = f"failed: {failed}"
        elif interrupted:
            status = "interrupted"
        elif crashed:
            status = f"failed: worker exited with code {crashed['returncode']}: {_last_error_line(run.log)}"
        else:
            status = "failed: no result (see the log)"
        cells.append(Cell(run.device, run.precision, batch, status, resolved, record, run.backend))
    return cells


def run_matrix(options: Options, progress: Callable[[str], None], workdir: Path,
               on_update: Callable[[dict], None] | None = None) -> dict:
    """Run every configuration and return the results document (written by ``write_outputs``).

    The workers' files go to ``workdir``. After each configuration but the last, ``on_update`` gets the
    document so far (finished rows, the others "not run (pending)", ``complete: false``).
    """
    from . import backends

    configs = [(b, d, p) for b in options.backends for d in options.devices for p in options.precisions]
    several = len(options.backends) > 1

    def cell(backend, device, precision, batch, status, *rest):
        return Cell(device, precision, batch, status, *rest, backend=backend, label_backend=several)

    def name(backend, device, precision):
        return f"{backend + ' ' if several else ''}{device} {precision}"

    started = time.time()
    runs: list[ConfigRun] = []
    cells: list[Cell] = []
    no_gpu: dict[str, str] = {}
    interrupted = False
    progress(f"devswitch compare: {options.target}, {options.mode}, {len(configs)} configuration(s) x batch sizes "
             + ",".join(map(str, options.batch_sizes)))
    for i, (backend, device, precision) in enumerate(configs):
        if interrupted:
            cells += [cell(backend, device, precision, b, "not run (interrupted)") for b in options.batch_sizes]
            continue
        left = ", ".join(name(*c) for c in configs[i + 1:]) or "none"
        progress(f"[{i + 1}/{len(configs)}] {name(backend, device, precision)} (then: {left})")
        missing = backends.missing_reason(backend)
        if not missing and device != "cpu" and no_gpu.get(backend):
            missing = no_gpu[backend]  # learnt once per backend, not paid again per configuration
        if missing:  # known without starting anything, like a GPU that is not there
            progress(f"    unavailable: {missing}")
            cells += [cell(backend, device, precision, b, f"unavailable: {missing}") for b in options.batch_sizes]
            continue
        run, interrupted = run_configuration(options, device, precision, workdir, progress, backend)
        runs.append(run)
        seen = next((e.get("gpus") for e in run.events if e["event"] in ("ready", "unavailable")
                     and e.get("gpus") is not None), None)
        if seen == 0:
            from .backends import DISPLAY

            no_gpu[backend] = (f"{DISPLAY[backend]} sees no GPU on this machine (found by the "
                               f"{device} {precision} configuration; see 'devswitch info')")
        cells += [dataclasses.replace(c, label_backend=several) for c in cells_of(run, options.batch_sizes,
                                                                                   interrupted)]
        progress(f"[{i + 1}/{len(configs)}] {name(backend, device, precision)}: {run.wall_s:.1f} s")
        if on_update and not interrupted and i + 1 < len(configs):
            pending = [cell(*c, b, "not run (pending)") for c in configs[i + 1:] for b in options.batch_sizes]
            on_update(document(options, runs, cells + pending, time.time() - started, False, complete=False))
    total = time.time() - started
    return document(options, runs, cells, total, interrupted)


def _measured(run: ConfigRun) -> float:
    """Seconds of measured phases in one worker; the matmul probe runs once per worker, though every
    record of that worker carries its duration."""
    total, probe = 0.0, 0.0
    for event in run.events:
        if event["event"] == "record":
            phases = event["record"]["phases_s"]
            total += sum(v for k, v in phases.items() if v and k != "peak_probe")
            probe = max(probe, phases.get("peak_probe") or 0.0)
    return total + probe


def document(options: Options, runs: list[ConfigRun], cells: list[Cell], total: float, interrupted: bool,
             complete: bool = True) -> dict:
    ready = next((e for r in runs for e in r.events if e["event"] == "ready"), {})
    built = next((e for r in runs for e in r.events if e["event"] == "built"), {})
    measured = sum(_measured(r) for r in runs)
    startup = sum(r.startup_s or 0.0 for r in runs)
    breakdown = {
        "total_s": total,
        "configurations": [{"backend": r.backend, "device": r.device, "precision": r.precision, "wall_s": r.wall_s,
                            "startup_s": r.startup_s, "measured_s": _measured(r)} for r in runs],
        "sum_measured_s": measured,
        "sum_startup_s": startup,
        "overhead_ratio": total / (measured + startup) if measured + startup else None,
        "note": "measured = first call + warm-up + timed + predict baseline + peak probe of every record; "
                "startup = spawn to the framework imported and devswitch applied, per configuration",
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "command": list(options.command) or ["devswitch", "compare", options.target],
        "options": {**{k: v for k, v in asdict(options).items() if k != "command"},
                    "baseline": " ".join(options.baseline)},
        "model": {"target": options.target, "name": built.get("model"), "parameters": built.get("parameters"),
                  "unit": built.get("unit", "samples")},
        "environment": ready.get("environment"),
        "config": ready.get("config"),
        "interrupted": interrupted,
        "complete": complete,
        "cells": [{"backend": c.backend, "device": c.device, "precision": c.precision,
                   "resolved_precision": c.resolved,
                   "batch": c.batch, "status": c.status} for c in cells],
        "records": [c.record for c in cells if c.record],
        "timing": breakdown,
        "_cells": cells,
    }


# --- outputs -------------------------------------------------------------------------------

def _num(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


@dataclass(frozen=True)
class Pick:
    """The fastest configuration at one batch size, and whether it is distinguishable from the next."""

    batch: int
    best: Cell
    runner_up: Cell | None
    significant: bool | None  # None: no runner-up, or no intervals to tell

    def switch(self, several_backends: bool) -> dict[str, str]:
        """The settings that select this configuration (half is kept as half: it means the same there)."""
        chosen = {"device": self.best.device, "precision": self.best.precision}
        return {"backend": self.best.backend, **chosen} if several_backends else chosen


def recommend(doc: dict) -> list[Pick]:
    """Per batch size: the measured configuration with the highest median throughput."""
    picks = []
    for batch in doc["options"]["batch_sizes"]:
        ranked = sorted((c for c in doc["_cells"] if c.batch == batch and c.record and c.metric("throughput")),
                        key=lambda c: c.metric("throughput"), reverse=True)
        if not ranked:
            continue
        best, runner_up = ranked[0], ranked[1] if len(ranked) > 1 else None
        significant = None
        if runner_up is not None and _ci(best) and _ci(runner_up):
            significant = _ci(best)[0] > _ci(runner_up)[1]  # the intervals do not overlap
        picks.append(Pick(batch, best, runner_up, significant))
    return picks


def switch_text(settings: dict[str, str]) -> str:
    flags = ",".join(f"{k}={v}" for k, v in settings.items())
    options = " ".join(f"--{k} {v}" for k, v in settings.items())
    return f"`DEVSWITCH_FLAGS=\"{flags}\" python train.py` or `devswitch run {options} train.py`"


def recommendation_lines(doc: dict) -> list[str]:
    several = len(doc["options"].get("backends") or []) > 1
    unit = doc["model"]["unit"]
    lines = []
    for pick in recommend(doc):
        rate = f"{_num(pick.best.metric('throughput'))} {unit}/s"
        if pick.runner_up is None:
            verdict = f"{pick.best.column} ({rate}), the only configuration measured"
        elif pick.significant:
            verdict = (f"fastest: {pick.best.column} ({rate}, {pick.best.metric('throughput') / pick.runner_up.metric('throughput'):.2f}x "
                       f"the next, {pick.runner_up.column}; the 95% intervals do not overlap)")
        elif pick.significant is None:
            verdict = (f"fastest measured: {pick.best.column} ({rate}, "
                       f"{pick.best.metric('throughput') / pick.runner_up.metric('throughput'):.2f}x the next, "
                       f"{pick.runner_up.column}; significance unknown: no intervals recorded)")
        else:
            verdict = (f"no significant difference between {pick.best.column} ({rate}) and "
                       f"{pick.runner_up.column} ({_num(pick.runner_up.metric('throughput'))} {unit}/s): "
                       "their 95% intervals overlap")
        lines.append(f"Recommendation, batch {pick.batch}: {verdict}; selected by {switch_text(pick.switch(several))}.")
    return lines


def _ci(cell: Cell) -> tuple[float, float, float] | None:
    """(low, high, coverage) of the median throughput, or None for records that carry no interval."""
    m = ((cell.record or {}).get("metrics") or {}).get("throughput") or {}
    if not m.get("ci"):
        return None
    return m["ci"][0], m["ci"][1], m.get("ci_coverage") or 0.0


def _interval(cell: Cell) -> str:
    ci = _ci(cell)
    if ci is None:
        return ""
    low, high, coverage = ci
    text = f"[{_num(low)}, {_num(high)}]"
    if coverage < 0.95 - 1e-9:  # too few samples for 95%: the whole range, with what it covers
        text += f" ({coverage:.0%})"
    return text


def render_markdown(doc: dict) -> str:
    cells: list[Cell] = doc["_cells"]
    options = doc["options"]
    unit = doc["model"]["unit"]
    env = doc.get("environment") or {}
    base_key = tuple(options["baseline"].split(" "))
    base_label = " ".join(base_key if len(options["backends"]) > 1 else base_key[1:])
    lines = [f"# devswitch compare: {doc['model']['name'] or options['target']} ({options['mode']})", ""]
    if env:
        frameworks = sorted({f"{c.backend} {((c.record or {}).get('versions') or {}).get(c.backend, '')}".strip()
                             for c in cells if c.record})
        lines.append(f"Machine: {env.get('cpu')} ({env.get('cpu_cores')} cores); Keras {env.get('keras')} on "
                     f"{', '.join(frameworks) or env.get('backend', '?')}. Throughput is the median over timed "
                     "samples, and in brackets its 95% confidence interval (order statistics: distribution-free, "
                     "assuming independent samples).")
        lines.append("")
    columns = list(dict.fromkeys(c.key for c in cells))
    footnotes: list[str] = []

    def mark(status: str) -> str:
        """Short cell text; the full reason goes to a numbered note under the tables."""
        kind, _, reason = status.partition(": ")
        if not reason:
            return status
        if reason not in footnotes:
            footnotes.append(reason)
        return f"{kind} [{footnotes.index(reason) + 1}]"

    for batch in options["batch_sizes"]:
        row_cells = {c.key: c for c in cells if c.batch == batch}
        header = [f"batch {batch}"] + [row_cells[k].column for k in columns]
        base = row_cells.get(base_key)
        base_rate = base.metric("throughput") if base and base.record else None
        predict_row = f"`model.predict` {unit}/s"
        rows = {f"{unit}/s": [], predict_row: [], "W": [], f"{unit}/s per W": [],
                f"speed-up vs {base_label}": [], "latency p50 / p99 (ms)": [],
                "GFLOP/s (of measured matmul peak)": []}
        for key in columns:
            c = row_cells[key]
            if c.status != "ok":
                for name in rows:
                    rows[name].append(mark(c.status) if name == f"{unit}/s" else "-")
                continue
            rate = c.metric("throughput")
            rows[f"{unit}/s"].append(f"{_num(rate)} {_interval(c)}")
            rows[predict_row].append(_num(c.metric("predict_throughput")))
            watts = c.metric("power")
            rows["W"].append(_num(watts) if watts else "unavailable")
            rows[f"{unit}/s per W"].append(_num(c.metric("samples_per_watt"), 2) if watts else "-")
            rows[f"speed-up vs {base_label}"].append(
                f"{rate / base_rate:.2f}x" if base_rate and rate else "-")
            rows["latency p50 / p99 (ms)"].append(f"{_num(c.metric('latency_p50'), 2)} / "
                                                  f"{_num(c.metric('latency_p99'), 2)}")
            fraction = c.metric("fraction_of_peak")
            rows["GFLOP/s (of measured matmul peak)"].append(
                _num(c.metric("achieved")) + (f" ({fraction:.0%})" if fraction else ""))
        if options["mode"] == "training":
            del rows[predict_row]  # a predict figure says nothing about training steps
        lines.append("| " + " | ".join(header) + " |")
        lines.append("| " + " | ".join("---" for _ in header) + " |")
        for name, values in rows.items():
            lines.append("| " + " | ".join([name, *values]) + " |")
        lines.append("")
    trained = next((c.record.get("training") for c in cells if c.record and c.record.get("training")), None)
    if options["mode"] == "training":
        what = (f"loss {trained['loss']}, optimizer {trained['optimizer']}" if trained else "the model's loss and "
                "optimizer")
        lines.append(f"Training: timed `model.train_on_batch` steps ({what}); {unit}/s counts training "
                     "samples. GFLOP/s is an estimate: 3x the forward FLOPs (forward + two backward matmuls).")
        lines.append("")
    for i, reason in enumerate(footnotes, 1):
        lines.append(f"[{i}] {reason}")
    if footnotes:
        lines.append("")
    reasons = sorted({(c.record.get("energy") or {}).get("reason") for c in cells if c.record} - {None})
    if reasons:
        lines.append("Power not measured: " + "; ".join(reasons) + ". No figure is estimated.")
        lines.append("")
    recommendations = recommendation_lines(doc)
    if recommendations:
        lines += [*recommendations, ""]
    t = doc["timing"]
    if t["overhead_ratio"]:
        lines.append(f"Wall time {t['total_s']:.1f} s = {t['overhead_ratio']:.2f}x the measured phases "
                     f"({t['sum_measured_s']:.1f} s) plus framework start-ups ({t['sum_startup_s']:.1f} s).")
    if doc["interrupted"]:
        lines.append("")
        lines.append("Interrupted: the rows marked 'interrupted' / 'not run' were not measured.")
    if not doc.get("complete", True):
        lines.append("")
        lines.append("Incomplete: written while compare was running; the rows marked 'not run (pending)' were "
                     "not measured yet (if compare is no longer running, it was stopped before them).")
    return "\n".join(lines).rstrip() + "\n"


CSV_FIELDS = ["backend", "device", "precision", "resolved_precision", "batch", "status", "policy", "throughput",
              "throughput_ci_low", "throughput_ci_high", "throughput_ci_coverage", "throughput_jitter", "throughput_overall", "predict_throughput", "latency_p50_ms",
              "latency_p90_ms", "latency_p99_ms", "first_call_s", "achieved_gflops", "fraction_of_peak",
              "power_w", "energy_j", "per_watt", "speedup_vs_baseline", "power_note"]


def render_csv(doc: dict) -> str:
    cells: list[Cell] = doc["_cells"]
    base_key = tuple(doc["options"]["baseline"].split(" "))
    base = {c.batch: c.metric("throughput") for c in cells if c.key == base_key and c.record}
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for c in cells:
        row = {"backend": c.backend, "device": c.device, "precision": c.precision, "resolved_precision": c.resolved,
               "batch": c.batch,
               "status": c.status}
        if c.record:
            m = c.record["metrics"]
            rate = c.metric("throughput")
            ci = _ci(c) or (None, None, None)
            row.update(policy=c.record["policy"], throughput=rate, throughput_ci_low=ci[0], throughput_ci_high=ci[1],
                       throughput_ci_coverage=ci[2],
                       throughput_jitter=m["throughput"]["jitter"], throughput_overall=c.metric("throughput_overall"),
                       predict_throughput=c.metric("predict_throughput"), latency_p50_ms=c.metric("latency_p50"),
                       latency_p90_ms=c.metric("latency_p90"), latency_p99_ms=c.metric("latency_p99"),
                       first_call_s=c.metric("first_call"), achieved_gflops=c.metric("achieved"),
                       fraction_of_peak=c.metric("fraction_of_peak"), power_w=c.metric("power"),
                       energy_j=c.metric("energy"), per_watt=c.metric("samples_per_watt"),
                       speedup_vs_baseline=rate / base[c.batch] if base.get(c.batch) and rate else None,
                       power_note=(c.record.get("energy") or {}).get("reason") or "")
        writer.writerow(row)
    return out.getvalue()


def render_plot(doc: dict, path: Path) -> str | None:
    """Write the bar chart; returns a one-line note instead when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "results.png not written: matplotlib is not installed (pip install 'devswitch[plot]')"
    fig = build_figure(doc)
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, image.getvalue())
    return None


def build_figure(doc: dict):
    """The bar chart as a matplotlib Figure: linear axis from zero (log only past a 100x span, and then
    labelled), whiskers = the confidence interval of the median, the speed-up written on each bar."""
    import matplotlib.pyplot as plt

    cells: list[Cell] = doc["_cells"]
    unit = doc["model"]["unit"]
    batches = doc["options"]["batch_sizes"]
    columns = list(dict.fromkeys(c.column for c in cells))
    any_watts = any(c.metric("power") for c in cells if c.record)
    base_key = tuple(doc["options"]["baseline"].split(" "))
    base = {c.batch: c.metric("throughput") for c in cells if c.key == base_key and c.record}
    fig, axes = plt.subplots(1, 2 if any_watts else 1, figsize=(5 + 2.2 * len(columns), 4.2), squeeze=False)
    width = 0.8 / max(1, len(columns))
    for panel, (metric_name, label) in enumerate([("throughput", f"{unit}/s"),
                                                  ("samples_per_watt", f"{unit}/s per W")][:axes.shape[1]]):
        ax = axes[0][panel]
        for j, column in enumerate(columns):
            xs, ys, errs, labels = [], [], [[], []], []
            for i, batch in enumerate(batches):
                cell = next(c for c in cells if c.column == column and c.batch == batch)
                value = cell.metric(metric_name) if cell.record else None
                if not value:  # say why there is no bar, at the foot of the axis
                    why = cell.status.split(":")[0] if cell.status != "ok" else "not measured"
                    ax.text(i + j * width, 0.02, why, transform=ax.get_xaxis_transform(), ha="center",
                            va="bottom", fontsize=7, rotation=90, color="0.4")
                    continue
                xs.append(i + j * width)
                ys.append(value)
                ci = _ci(cell) if metric_name == "throughput" else None
                errs[0].append(max(0.0, value - ci[0]) if ci else 0.0)  # the interval is asymmetric
                errs[1].append(max(0.0, ci[1] - value) if ci else 0.0)
                speedup = value / base[batch] if metric_name == "throughput" and base.get(batch) else None
                labels.append(f"{speedup:.2f}x" if speedup else "")
            if xs:
                bars = ax.bar(xs, ys, width, yerr=errs if metric_name == "throughput" else None, capsize=2,
                              color=f"C{j}")
                ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
        ax.set_xlim(-width, len(batches) - 1 + width * len(columns))
        ax.set_xticks([i + width * (len(columns) - 1) / 2 for i in range(len(batches))])
        ax.set_xticklabels([f"batch {b}" for b in batches])
        values = [c.metric(metric_name) for c in cells if c.record and c.metric(metric_name)]
        if values and max(values) / min(values) > 100:  # only then would a linear axis hide the small bars
            ax.set_yscale("log")
            label += " (log scale)"
        else:
            ax.set_ylim(bottom=0)  # a bar's height is its value: the axis starts at zero
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    base_label = " ".join(base_key[1:] if len(doc["options"]["backends"]) == 1 else base_key)
    coverages = [ci[2] for ci in (_ci(c) for c in cells) if ci]
    level = min([0.95, *coverages])  # under 6 samples an interval covers less: never claim more than it has
    title = (f"{doc['model']['name'] or doc['options']['target']}, {doc['options']['mode']}\n"
             f"bars: median {unit}/s; whiskers: {level:.0%} CI of the median; labels: speed-up vs {base_label}")
    if not any_watts:
        title += f"; {unit}/s per W: power not measurable here"
    fig.suptitle(title, fontsize=10)
    from matplotlib.patches import Patch

    axes[0][0].legend(handles=[Patch(color=f"C{j}", label=column) for j, column in enumerate(columns)], fontsize=8)
    fig.tight_layout()
    return fig


def write_outputs(doc: dict, out: Path, plot: bool = True) -> list[str]:
    """Write results.json/.csv/.md/.html and (with ``plot``) results.png, each atomically; returns notes.

    A results.png that would not match the new results.json (not plotted now, or left by an earlier
    run) is removed rather than left beside it.
    """
    out.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in doc.items() if not k.startswith("_")}
    write_atomic(out / "results.json", json.dumps(public, indent=2, default=str) + "\n")
    write_atomic(out / "results.csv", render_csv(doc))
    write_atomic(out / "results.md", render_markdown(doc))
    note = render_plot(doc, out / "results.png") if plot else "not plotted"
    if note:
        with contextlib.suppress(FileNotFoundError):
            (out / "results.png").unlink()
    png = (out / "results.png").read_bytes() if not note else None
    write_atomic(out / "results.html", render_html(doc, png))
    return [note] if note and plot else []


# --- reading results back: devswitch report ------------------------------------------------------------

def load_results(path: str | Path) -> dict:
    """A results folder or results.json -> the document with its cells, rebuilt from the JSON alone."""
    from .errors import UsageError

    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read {file}: {error.strerror or error}",
                         hint="give a results folder or a results.json written by devswitch compare") from None
    except ValueError as error:
        raise UsageError(f"{file} is not JSON: {error}", hint="give a results.json written by devswitch compare") \
            from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list) or "options" not in doc:
        raise UsageError(f"{file} is not a devswitch compare result (no 'cells' and 'options')",
                         hint="for a timing report of a script (report: PATH.jsonl), see README 'Records'")
    records = iter(doc.get("records") or [])
    cells = []
    for c in doc["cells"]:
        record = next(records, None) if c.get("status") == "ok" else None
        cells.append(Cell(c["device"], c["precision"], c["batch"], c["status"], c.get("resolved_precision", ""),
                          record, c.get("backend", "tensorflow"), len(doc["options"].get("backends") or [1]) > 1))
    doc["options"].setdefault("backends", ["tensorflow"])
    if len(doc["options"]["baseline"].split(" ")) == 2:  # results of devswitch 0.1: no backend in the key
        doc["options"]["baseline"] = "tensorflow " + doc["options"]["baseline"]
    doc.setdefault("timing", {"overhead_ratio": None})
    doc.setdefault("interrupted", False)
    doc["_cells"] = cells
    doc["_path"] = str(file)
    return doc


@dataclass(frozen=True)
class Change:
    """One cell of ``report A B``: B's median throughput over A's, and whether that is outside the noise."""

    key: tuple
    before: float
    after: float
    ratio: float
    significant: bool | None  # the two 95% intervals of the median do not overlap (None: no interval recorded)

    @property
    def label(self) -> str:
        backend, device, precision, batch = self.key
        return f"{backend} {device} {precision} batch {batch}"


def compare_results(a: dict, b: dict) -> tuple[list[Change], list[str]]:
    """Cell by cell, B against A; the second list names the cells only one side measured."""
    def cells(doc):
        return {(c.backend, c.device, c.precision, c.batch): c for c in doc["_cells"]}

    left, right = cells(a), cells(b)
    changes, alone = [], []
    for key in list(dict.fromkeys([*left, *right])):
        x, y = left.get(key), right.get(key)
        if not (x and y and x.record and y.record and x.metric("throughput") and y.metric("throughput")):
            missing = [side for side, cell in (("A", x), ("B", y)) if not (cell and cell.record)]
            alone.append(" ".join(map(str, key)) + ": not measured in " + " and ".join(missing))
            continue
        before, after = x.metric("throughput"), y.metric("throughput")
        cx, cy = _ci(x), _ci(y)
        significant = (cy[1] < cx[0] or cy[0] > cx[1]) if cx and cy else None
        changes.append(Change(key, before, after, after / before, significant))
    return changes, alone


def render_changes(a: dict, b: dict, changes: list[Change], alone: list[str], fail_above: float | None) -> str:
    unit = (b.get("model") or {}).get("unit", "samples")
    lines = [f"# devswitch report: B = {b['_path']} against A = {a['_path']}", "",
             f"| cell | A {unit}/s | B {unit}/s | B / A | change |", "| --- | --- | --- | --- | --- |"]
    for c in changes:
        if c.significant is None:
            verdict = "noise unknown (a result set without confidence intervals)"
        elif c.significant:
            verdict = "faster" if c.ratio > 1 else "slower"
        else:
            verdict = "within the noise (95% intervals overlap)"
        if fail_above is not None and c.ratio < 1 - fail_above / 100:
            verdict += f"; FAIL: more than {fail_above:g}% slower"
        lines.append(f"| {c.label} | {_num(c.before)} | {_num(c.after)} | {c.ratio:.2f}x | {verdict} |")
    for text in alone:
        lines.append(f"| {text} | - | - | - | not compared |")
    return "\n".join(lines) + "\n"


# --- the report page ---------------------------------------------------------------------------------

_CSS = """body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:75em;
color:#222;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}table{border-collapse:collapse;
margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}td:first-child,th:first-child{
text-align:left}th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2em}img{max-width:100%}
.rec{background:#eef6ee;border-left:4px solid #4a4;padding:.5em 1em}"""


def _inline(text: str) -> str:
    """Escape, then `code` spans (the only markup the markdown report uses inside a line)."""
    import html
    import re

    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render_html(doc: dict, png: bytes | None) -> str:
    """One self-contained page: the table, the plot (embedded), the recommendation, the environment and
    every configuration value with its source. It references nothing outside itself (no network)."""
    import base64
    import html

    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(doc['model']['name'] or doc['options']['target'])} - devswitch compare</title>",
             f"<style>{_CSS}</style></head><body>"]
    table: list[str] = []

    def flush_table() -> None:
        if not table:
            return
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table
                if not set(line.replace("|", "").strip()) <= {"-", " "}]
        parts.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr></thead>"
                     "<tbody>" + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                                         for row in rows[1:]) + "</tbody></table>")
        table.clear()

    for line in render_markdown(doc).splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("# "):
            parts.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.startswith("Recommendation"):
            parts.append(f"<p class='rec'>{_inline(line)}</p>")
        elif line.strip():
            parts.append(f"<p>{_inline(line)}</p>")
    flush_table()
    if png:
        parts.append("<h2>Plot</h2><img alt='throughput per configuration and batch size' "
                     f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    env = doc.get("environment") or {}
    if env:
        parts.append("<h2>Environment</h2><table><tbody>" + "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in env.items())
            + "</tbody></table>")
    config = doc.get("config") or {}
    if config:
        parts.append("<h2>Configuration (of the first configuration run; compare sets backend, device, precision "
                     "per column)</h2><table><thead><tr><th>key</th><th>value</th><th>source</th><th>location</th>"
                     "</tr></thead><tbody>" + "".join(
                         f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v.get('value')))}</td>"
                         f"<td>{html.escape(str(v.get('source')))}</td><td>{html.escape(str(v.get('location')))}</td>"
                         "</tr>" for k, v in config.items()) + "</tbody></table>")
    parts.append("<p><small>command: " + html.escape(" ".join(map(str, doc.get("command") or [])))
                 + "</small></p></body></html>")
    return "\n".join(parts) + "\n"

