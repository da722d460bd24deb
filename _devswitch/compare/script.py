"""``compare --script``: the user's unmodified script as the workload, one process per run.

Every configuration (the same matrix as for a factory: backends x devices x precisions x --vary) runs the
whole script through devswitch.scriptworker, which applies it as ``devswitch run`` would, with
``fallback: error``, a timing report in the work folder, and the caps on every ``fit``. With ``--rounds N``
each configuration runs N times, the configurations taking turns (A B A B ...), one process at a time.
The script's output goes to ``logs/<configuration>.log`` in the results folder. A run that fails makes its
configuration "failed: <the last error line>" and the others go on. This process imports no framework.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from . import honest
from . import protocol as p
from .options import Options
from .process import Worker, absolute, full_disk, last_error_line, not_started, timeout_words, unwritable
from .protocol import ScriptSpec
from .resultset import Cell, Configuration, Model, ResultSet
from .runs import file_stem, no_gpu_reason
from .scriptrecord import KIND, build

LOGS = "logs"  # in the results folder: one log per configuration, every round appended
OVERRIDDEN = f"{honest.OVERRIDDEN} the script"  # the status of a column whose script changed its settings


@dataclass(frozen=True)
class ScriptJob:
    """What a script compare runs: the matrix (``options``; its target is the script) and the script."""

    options: Options
    target: str
    module: bool = False
    args: tuple[str, ...] = ()
    caps: dict | None = None  # {"max_epochs": N | None, "max_steps": N | None}


def settings_of(config: Configuration, report: Path) -> tuple[dict, dict]:
    """The explicit settings of one run, and where each came from (for messages)."""
    varied = dict(config.settings)
    settings = {
        **varied,
        "device": config.device,
        "precision": config.precision,
        "fallback": "error",
        "report": str(report),
        "backend": config.backend,
    }
    where = {key: f"devswitch compare ({'--vary ' + key if key in varied else 'its column'})" for key in settings}
    return settings, where


def run_once(
    job: ScriptJob, config: Configuration, round_number: int, work: Path, log: Path, origin: float
) -> tuple[dict, bool]:
    """One run of the script in ``config``: (what happened, interrupted)."""
    work = absolute(work)  # the script may change its working directory: every path from the root
    stem = f"{file_stem(config)}-r{round_number}"
    events, spec, report = (work / f"{stem}.{suffix}" for suffix in ("events.jsonl", "spec.json", "report.jsonl"))
    settings, where = settings_of(config, report)
    header = f"===== devswitch compare --script: {config.words()}, round {round_number} =====\n"
    try:
        work.mkdir(parents=True, exist_ok=True)  # a script of an earlier run may have removed it
        ScriptSpec(
            job.target,
            tuple(job.args),
            settings,
            str(events),
            module=job.module,
            caps=dict(job.caps or {}),
            parent_pid=os.getpid(),
            where=where,
        ).write(spec)
        worker = Worker("_devswitch.scriptworker", spec, events, log, job.options.timeout, round_number > 1, header)
    except OSError as error:  # a full disk, or a script of an earlier run replaced the work folder by a file
        why = unwritable(error, work)
        return {
            **_not_run(round_number, time.time() - origin),
            "removed": why if full_disk(error) else f"{why}; a script removed or replaced them",
            "full": why if full_disk(error) else None,
        }, False
    found, text, ended, interrupted = _wait_and_read(worker)
    done = p.first(found, p.Done)
    started = worker.started
    ready = p.first(found, p.Ready)
    unavailable = p.first(found, p.Unavailable)
    raised = p.first(found, p.Failed)  # the script's exception, in its words
    run: dict = {
        "round": round_number,
        "start_s": started - origin,
        "process_s": ended - started,
        "startup_s": ready.t - started if ready else None,
        "ready": ready,
        "unavailable": unavailable,
        "exit_code": done.exit_code if done else worker.proc.returncode,
        "done": done is not None,
        "wall_s": done.wall_s if done else None,
        "last_line": last_error_line(text),
        "error": (raised.note or raised.error) if raised else None,
        "given_up": worker.failure,
        "removed": None,
        "overridden": overridden(ready, done),
        "calls": [],
    }
    _read_calls(run, report, done)
    run["overridden"] = _with_calls(run["overridden"], config, ready, run["calls"])
    return run, interrupted


def _with_calls(said: str | None, config: Configuration, ready: p.Ready | None, calls: list) -> str | None:
    """``said`` (what the script changed through devswitch) and what its timed calls ran under that is not the
    column's and that devswitch did not set (a policy from ``keras.config.set_dtype_policy``, say)."""
    words = [said] if said else []
    for call in calls:
        for key, value in honest.record_changes(config, (ready.plan if ready else None) or {}, call):
            text = f"{key} {value} ({honest.NOT_DEVSWITCH})"
            if text not in words and not (said and key in ("policy", "precision") and "precision" in said):
                words.append(text)
    return ", ".join(words) or None


def _wait_and_read(worker: Worker) -> tuple[list[p.Event], str, float, bool]:
    """Until the script's run ends (Ctrl-C stops it): its events, its log up to devswitch's summary, when it
    ended, and whether it was interrupted. Every process the script started ends with its run."""
    interrupted = False
    try:
        try:
            worker.wait()
        except KeyboardInterrupt:
            interrupted = True
            worker.stop()
        finally:  # every process the script started ends with its run
            worker.end()
        ended = time.time()
        worker.poll_events()
        found = list(worker.events)
        done = p.first(found, p.Done)
        end = done.log_end if done is not None else None  # the script's output ends there; a summary follows
        text = worker.log_text(end)
    finally:
        worker.close()
    return found, text, ended, interrupted


def _read_calls(run: dict, report: Path, done: p.Done | None) -> None:
    """The run's timed fit/evaluate/predict calls from its timing report, or why the report is missing."""
    if done is not None and done.calls and not report.exists():
        run["removed"] = (
            f"its timing report {report} is missing: the script removed the work folder (or the file) while it "
            f"ran, and its {done.calls} timed call(s) are lost"
        )
    if report.exists():
        from ..results import ReportError, read_report_as_written

        try:  # as written: a record the script wrote itself is left out, the timed calls kept
            reports = read_report_as_written(report)
            run["calls"] = [r for r in reports[-1]["records"] if _timed_call(r)]
        except (OSError, ReportError, IndexError, KeyError):
            pass


def _timed_call(record: object) -> bool:
    """A fit/evaluate/predict record that reads back as a CallRecord (a script may write into its report)."""
    from ..results import call_from_dict

    if not isinstance(record, dict) or record.get("kind") not in ("fit", "evaluate", "predict"):
        return False
    try:
        call_from_dict(record)
    except ValueError:
        return False
    return True


def _not_run(round_number: int, start_s: float) -> dict:
    """The run of a script that could not be started."""
    return {
        "round": round_number,
        "start_s": start_s,
        "process_s": 0.0,
        "startup_s": None,
        "ready": None,
        "unavailable": None,
        "exit_code": None,
        "done": False,
        "wall_s": None,
        "last_line": "no output",
        "error": None,
        "given_up": None,
        "removed": None,
        "overridden": None,
        "calls": [],
    }


def overridden(ready: p.Ready | None, done: p.Done | None) -> str | None:
    """What the script changed of its column's settings, with where (see ``honest.overridden``): the plan
    devswitch applied when it became READY against what was in force when it ended."""
    before = {"plan": ready.plan, "settings": ready.settings} if ready else None
    return honest.overridden(before, done.read_back if done else None)


def failure(run: dict) -> str:
    """ "failed: <the last error line>" of a run that did not end well."""
    if run.get("given_up"):
        return f"failed: {run['given_up']}: {run['last_line']}"
    if run.get("removed"):
        return f"failed: {run['removed']}"
    if not run["done"]:
        return f"failed: the run ended with code {run['exit_code']} before the script finished: {run['last_line']}"
    code, why = run["exit_code"], run.get("error") or run["last_line"]  # the exception's "Type: message"
    return f"failed: {why}" if code == 1 else f"failed: exit code {code}: {why}"


def run_scripts(
    job: ScriptJob,
    progress: Callable[[str], None],
    work: Path,
    out: Path,
    on_update: Callable[[ResultSet], None] | None = None,
) -> ResultSet:
    """Every configuration, ``rounds`` times in turn; returns the result set (kind "script")."""
    options = job.options
    configs = options.configurations
    several = len(options.backends) > 1
    _make_logs_folder(out)
    work = absolute(work)
    runs: dict[Configuration, list[dict]] = {c: [] for c in configs}
    status: dict[Configuration, str] = {}
    no_gpu: dict[str, str] = {}
    spent: list[dict] = []  # every run, failed ones too: where the wall time went
    interrupted = False
    full: str | None = None  # why the disk takes no more work files, once a run found it so
    origin = time.time()
    progress(_header(job))
    for number in range(1, options.rounds + 1):
        for i, config in enumerate(configs):
            if interrupted:
                if not runs[config]:  # a configuration with finished runs keeps them
                    status.setdefault(config, "not run (interrupted)")
                continue
            if config in status:
                continue
            label = config.label(several)
            if full is not None:  # the disk took no more work files: not started
                status[config] = not_started(full)
                progress(f"[{i + 1}/{len(configs)}] {label}: {status[config]}")
                continue
            missing = _missing(config, no_gpu)
            if missing:
                progress(f"[{i + 1}/{len(configs)}] {label}: unavailable: {missing}")
                status[config] = f"unavailable: {missing}"
                continue
            log = out / LOGS / f"{file_stem(config)}.log"  # round 1 empties it; a removed folder is made again
            progress(
                f"[{i + 1}/{len(configs)}] {label}"
                + (f", round {number}/{options.rounds}" if options.rounds > 1 else "")
            )
            try:
                run, interrupted = run_once(job, config, number, work, log, origin)
            except KeyboardInterrupt:
                interrupted = True
                if not runs[config]:
                    status[config] = "interrupted"
                continue
            spent.append(run)
            full = full or run.get("full")
            if next((e.gpus for e in (run["ready"], run["unavailable"]) if e and e.gpus is not None), None) == 0:
                no_gpu[config.backend] = no_gpu_reason(config.backend, config.device, config.precision)
            _settle(config, run, interrupted, runs, status)
            progress(f"    {status[config]}" if config in status else f"    {run['wall_s']:.1f} s")
            if on_update is not None and not interrupted:
                on_update(script_results(job, runs, status, time.time() - origin, False, complete=False, spent=spent))
    return script_results(job, runs, status, time.time() - origin, interrupted, spent=spent)


def _make_logs_folder(out: Path) -> None:
    try:
        (out / LOGS).mkdir(exist_ok=True)
    except OSError:  # a full disk: the first run's worker says so, as a failed column
        pass


def _header(job: ScriptJob) -> str:
    options = job.options
    caps = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in (job.caps or {}).items() if v is not None)
    return (
        f"devswitch compare --script {job.target}: {options.size().split(' x ')[0].split(' (')[0]}, "
        f"{options.rounds} run{'s' if options.rounds > 1 else ''} each{', ' + caps if caps else ''}; time limit "
        f"{timeout_words(options.timeout)} per run"
    )


def _missing(config: Configuration, no_gpu: dict[str, str]) -> str | None:
    """Why ``config`` cannot run, known without starting anything (its backend, or no GPU seen on it)."""
    from .. import backends

    return backends.missing_reason(config.backend) or (no_gpu.get(config.backend) if config.device != "cpu" else None)


def _settle(
    config: Configuration, run: dict, interrupted: bool, runs: dict[Configuration, list[dict]], status: dict
) -> None:
    """A finished run joins its column's runs, or settles the column's status (failed, unavailable, ...)."""
    if interrupted:
        if not runs[config]:
            status[config] = "interrupted"
    elif run["unavailable"] is not None:
        status[config] = f"unavailable: {run['unavailable'].reason}"
    elif run["exit_code"] != 0 or not run["done"] or run["given_up"] or run["removed"]:
        status[config] = failure(run)
    else:
        runs[config].append(run)
        if run["overridden"]:  # measured, but not what the column says: kept, not recommended
            status[config] = f"{OVERRIDDEN}: {run['overridden']}"


def script_results(
    job: ScriptJob,
    runs: dict,
    status: dict,
    total: float,
    interrupted: bool,
    complete: bool = True,
    spent: list | None = None,
) -> ResultSet:
    """The result set of a script compare: one cell per configuration (batch 1 = the run as a whole)."""
    options = job.options
    cells, done = [], []
    for config, taken in runs.items():
        why = status.get(config)
        if why is None and not taken:
            why = "not run (pending)" if not complete else "failed: no run finished"
        ready: p.Ready | None = next((r["ready"] for r in taken if r["ready"]), None)
        dropped = ("ready", "unavailable", "done", "last_line", "error")
        kept = [{k: v for k, v in r.items() if k not in dropped} for r in taken]
        plan = ready.plan if ready else None
        environment, applied = (ready.environment, ready.settings) if ready else (None, None)
        record = build(kept, plan, environment, applied) if taken else None
        resolved = ((plan or {}).get("precision")) or ""
        keep = why is None or why.startswith(OVERRIDDEN)  # an overridden column keeps what it measured
        cells.append(Cell.of(config, 1, why or "ok", resolved, record if keep else None))
        done += taken
    first: p.Ready | None = next((r["ready"] for r in done if r["ready"]), None)
    spent = done if spent is None else spent
    walls = sum(r["wall_s"] or 0.0 for r in spent)
    processes = sum(r["process_s"] for r in spent)
    timing = {
        "total_s": total,
        "sum_measured_s": walls,
        "sum_startup_s": processes - walls,
        "overhead_ratio": total / processes if processes else None,
        "note": "measured = the script's own wall time in every run; startup = the rest of each run's "
        "process (Python, the framework imported, devswitch applied, the exit)",
    }
    return ResultSet(
        options={
            **{k: v for k, v in asdict(options).items() if k not in ("command", "vary")},
            "kind": KIND,
            "mode": KIND,
            "batch_sizes": [1],
            "baseline": options.baseline.words(),
            "vary": {name: list(values) for name, values in options.vary},
            "module": job.module,
            "args": list(job.args),
            "caps": dict(job.caps or {}),
        },
        model=Model(target=job.target, name=Path(job.target).name if not job.module else job.target, unit="runs"),
        cells=tuple(cells),
        environment=first.environment if first else None,
        config=first.config if first else None,
        timing=timing,
        command=tuple(options.command) or ("devswitch", "compare", "--script", job.target),
        interrupted=interrupted,
        complete=complete,
    )
