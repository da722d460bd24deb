"""Running the matrix: one worker process per configuration, its events read back into cells of a result set.

This process never imports a framework; a configuration that cannot run here becomes "unavailable:
<reason>", one that crashes "failed: <error>", and Ctrl-C stops the running worker and keeps every
finished row. Every worker is started, watched, timed out and ended by ``process``; workers die with
this process, however it ends (see worker.die_with_parent).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import honest
from . import protocol as p
from .options import Options
from .process import ENDED, Worker, absolute, full_disk_reason, last_error_line, not_started, timeout_words, unwritable
from .protocol import Spec
from .resultset import Cell, Configuration, Model, ResultSet


@dataclass
class ConfigRun:
    device: str
    precision: str
    backend: str = "tensorflow"
    wall_s: float = 0.0
    startup_s: float | None = None
    events: list[dict] = field(default_factory=list)  # the worker's events, as read back from JSON
    log: str = ""
    settings: tuple[tuple[str, str], ...] = ()  # the varied settings: ((name, value text), ...)
    unwritable: str | None = None  # not started: its work files could not be written (why)

    @property
    def config(self) -> Configuration:
        return Configuration(self.backend, self.device, self.precision, self.settings)


REFERENCE_FILE = "reference.npz"  # in the work folder: the shared weights, seeded input and reference outputs


def reference_config(options: Options) -> Configuration:
    """Where the strict float32 reference is computed: the baseline's backend, on the CPU, in float32, with
    every other setting as this project has it (nothing varied)."""
    return Configuration(options.baseline.backend, "cpu", "fp32")


def file_stem(config: Configuration, role: str = "measure") -> str:
    """The name of a worker's spec, events and log files: its configuration, in characters any file system takes."""
    name = ("reference-" if role == "reference" else "") + "-".join(config.words().split(" "))
    return re.sub(r"[^A-Za-z0-9=._-]", "_", name)


def write_spec(options: Options, config, workdir: Path, role: str = "measure", **more) -> tuple[Path, Path, Path]:
    """The spec of one worker (``role`` "reference": the reference run), and its events and log files."""
    config = Configuration.of(config)
    backend, device, precision, settings = config
    workdir = absolute(workdir)  # the worker reads and writes these wherever its working directory is
    events, spec, log = (
        workdir / f"{file_stem(config, role)}.{suffix}" for suffix in ("events.jsonl", "spec.json", "log")
    )
    reference = str(workdir / REFERENCE_FILE) if options.accuracy_samples else None
    Spec(
        backend=backend,
        device=device,
        precision=precision,
        settings=dict(settings),
        target=options.target,
        batch_sizes=tuple(options.batch_sizes),
        mode=options.mode,
        warmup=options.warmup,
        iterations=options.iterations,
        min_time=options.min_time,
        predict_baseline=options.predict_baseline,
        peak_probe=options.peak_probe,
        events=str(events),
        parent_pid=os.getpid(),
        role=role,
        reference=reference,
        accuracy_samples=options.accuracy_samples,
        **more,
    ).write(spec)
    return spec, events, log


def run_configuration(
    options: Options,
    device: str,
    precision: str,
    workdir: Path,
    progress: Callable[[str], None],
    backend: str = "tensorflow",
    role: str = "measure",
    settings: tuple = (),
) -> tuple[ConfigRun, bool]:
    """Run one worker (``settings``: the varied settings it applies); returns its run and whether the user
    interrupted."""
    run = ConfigRun(device, precision, backend, settings=tuple(settings))
    try:
        spec, events, log = write_spec(options, (backend, device, precision, settings), workdir, role)
        worker = Worker("_devswitch.worker", spec, events, log, options.timeout)
    except OSError as error:  # a disk full since the up-front check: a failed column, not a traceback
        run.unwritable = unwritable(error, workdir)
        run.events.append({"event": p.GIVEN_UP, "reason": run.unwritable, "t": time.time()})
        progress(f"    failed: {run.unwritable}")
        return run, False
    interrupted = False
    try:
        try:
            if worker.wait(lambda: report_progress(worker.poll_events(), progress)) != ENDED:
                progress(f"    failed: {worker.failure}")
        except KeyboardInterrupt:
            interrupted = True
            progress("interrupted: stopping the running configuration, keeping every finished row")
            worker.stop()
        finally:  # a second Ctrl-C while the first was being handled: no process of the worker stays
            worker.end()
        report_progress(worker.poll_events(), progress)
        run.wall_s = time.time() - worker.started
        run.events = list(worker.events)
        run.log = worker.log_text()
    finally:
        worker.close()
    ready = next((e for e in run.events if e["event"] in (p.READY, p.UNAVAILABLE)), None)
    run.startup_s = ready["t"] - worker.started if ready else None
    returncode = worker.proc.returncode
    if worker.failure is not None:
        run.events.append({"event": p.GIVEN_UP, "reason": worker.failure, "t": time.time()})
    elif returncode not in (0, None) and not interrupted and not any(e["event"] == p.DONE for e in run.events):
        run.events.append({"event": p.CRASHED, "returncode": returncode, "t": time.time()})
    return run, interrupted


def report_progress(new: list[dict], progress: Callable[[str], None]) -> None:
    """A progress line for each new event that says something: a record's rate, why a configuration does not run."""
    for event in new:
        if event["event"] == p.RECORD:
            r = event["record"]
            rate = r["metrics"]["throughput"]["value"]
            text = f"{rate:,.1f}/s" if isinstance(rate, (int, float)) and rate == rate else r["status"]
            progress(f"    batch {r['batch']}: {text}")
        elif event["event"] == p.UNAVAILABLE:
            progress(f"    unavailable: {event['reason']}")
        elif event["event"] == p.FAILED:
            progress(f"    failed: {event['error']}")


def cells_of(run: ConfigRun, batch_sizes, interrupted: bool) -> list[Cell]:
    plan = next((e.get("plan") for e in run.events if e["event"] == p.READY), None) or {}
    resolved = plan.get("precision", "")
    records = {e["record"]["batch"]: e["record"] for e in run.events if e["event"] == p.RECORD}
    unavailable = next((e["reason"] for e in run.events if e["event"] == p.UNAVAILABLE), None)
    failed = next((e["error"] for e in run.events if e["event"] == p.FAILED), None)
    crashed = next((e for e in run.events if e["event"] == p.CRASHED), None)
    given_up = next((e["reason"] for e in run.events if e["event"] == p.GIVEN_UP), None)
    ready = next((e for e in run.events if e["event"] == p.READY), None)
    built = next((e for e in run.events if e["event"] == p.BUILT), None)
    cells = []
    for batch in batch_sizes:
        record = records.get(batch)
        if record is not None:
            status = record["status"]
            changed = honest.factory_override(run.config, ready, built, record) if status == "ok" else None
            if changed:  # measured, but not in the column's configuration: kept, marked, never recommended
                status = honest.status("the factory", changed)
        elif unavailable:
            status = f"unavailable: {unavailable}"
        elif failed:
            status = f"failed: {failed}"
        elif given_up:
            status = f"failed: {given_up}"
        elif interrupted:
            status = "interrupted"
        elif crashed:
            status = f"failed: worker exited with code {crashed['returncode']}: {last_error_line(run.log)}"
        else:
            status = "failed: no result (see the log)"
        cells.append(Cell.of(run.config, batch, status, resolved, record))
    return cells


def run_matrix(
    options: Options,
    progress: Callable[[str], None],
    workdir: Path,
    on_update: Callable[[ResultSet], None] | None = None,
) -> ResultSet:
    """Run every configuration and return the result set (written by ``outputs.write_outputs``).

    The workers' files go to ``workdir``. After each configuration but the last, ``on_update`` gets the
    document so far (finished rows, the others "not run (pending)", ``complete: false``).
    """
    from .. import backends

    if options.rounds > 1:  # workers kept warm, taking turns: compare/rounds.py
        from .rounds import run_interleaved

        return run_interleaved(options, progress, workdir, on_update)
    configs = options.configurations
    several = len(options.backends) > 1

    def cells(config, status):
        return [Cell.of(config, b, status) for b in options.batch_sizes]

    started = time.time()
    runs: list[ConfigRun] = []
    done: list[Cell] = []
    no_gpu: dict[str, str] = {}
    interrupted = False
    reference = None
    progress(
        f"devswitch compare: {options.target}, {options.mode}, {options.size()}; time limit "
        f"{timeout_words(options.timeout)} per configuration"
    )
    if options.accuracy_samples and not backends.missing_reason(reference_config(options).backend):
        config = reference_config(options)
        progress(
            f"[reference] {config.words()}: strict float32 outputs of the shared weights on "
            f"{options.accuracy_samples} seeded samples"
        )
        try:
            reference, interrupted = run_configuration(
                options, config.device, config.precision, workdir, progress, config.backend, role="reference"
            )
        except KeyboardInterrupt:
            interrupted = True
    full = full_disk_reason(reference)  # the disk took no more work files: the later columns are not started
    for i, config in enumerate(configs):
        if interrupted:
            done += cells(config, "not run (interrupted)")
            continue
        if full:
            progress(f"[{i + 1}/{len(configs)}] {config.label(several)}: {not_started(full)}")
            done += cells(config, not_started(full))
            continue
        before = len(done)
        backend, device, precision, settings = config
        try:
            left = ", ".join(c.label(several) for c in configs[i + 1 :]) or "none"
            progress(f"[{i + 1}/{len(configs)}] {config.label(several)} (then: {left})")
            missing = backends.missing_reason(backend)
            if not missing and device != "cpu" and no_gpu.get(backend):
                missing = no_gpu[backend]  # learnt once per backend, not paid again per configuration
            if missing:  # known without starting anything, like a GPU that is not there
                progress(f"    unavailable: {missing}")
                done += cells(config, f"unavailable: {missing}")
                continue
            run, interrupted = run_configuration(
                options, device, precision, workdir, progress, backend, settings=settings
            )
            full = full_disk_reason(run)
            if run.unwritable is None:
                runs.append(run)
            seen = gpus_seen(run)
            if seen == 0:
                no_gpu[backend] = no_gpu_reason(backend, device, precision)
            done += cells_of(run, options.batch_sizes, interrupted)
            progress(f"[{i + 1}/{len(configs)}] {config.label(several)}: {run.wall_s:.1f} s")
            if on_update and not interrupted and i + 1 < len(configs):
                pending = [cell for c in configs[i + 1 :] for cell in cells(c, "not run (pending)")]
                on_update(
                    document(
                        options, runs, done + pending, time.time() - started, False, complete=False, reference=reference
                    )
                )
        except KeyboardInterrupt:  # between workers, or while the rows so far were being written
            interrupted = True
            progress("interrupted: keeping every finished row")
            if len(done) == before:
                done += cells(config, "interrupted")
    total = time.time() - started
    return document(options, runs, done, total, interrupted, reference=reference)


def gpus_seen(run: ConfigRun) -> int | None:
    """How many GPUs the worker found, where its backend can tell (None: it could not, or did not say)."""
    return next(
        (e.get("gpus") for e in run.events if e["event"] in (p.READY, p.UNAVAILABLE) and e.get("gpus") is not None),
        None,
    )


def no_gpu_reason(backend: str, device: str, precision: str) -> str:
    from ..backends import DISPLAY

    return (
        f"{DISPLAY[backend]} sees no GPU on this machine (found by the {device} {precision} configuration; "
        "see 'devswitch info')"
    )


def _measured(run: ConfigRun) -> float:
    """Seconds of measured phases in one worker; the matmul probe runs once per worker, though every
    record of that worker carries its duration."""
    total, probe = 0.0, 0.0
    for event in run.events:
        if event["event"] == p.RECORD:
            phases = event["record"]["phases_s"]
            total += sum(v for k, v in phases.items() if v and k != "peak_probe")
            probe = max(probe, phases.get("peak_probe") or 0.0)
    return total + probe


def reference_summary(run: ConfigRun | None) -> dict | None:
    """What results.json says about the reference run: how it was computed, or why there is none."""
    if run is None:
        return None
    done = next((e for e in run.events if e["event"] == p.REFERENCE), None)
    if done is not None:
        return {
            "status": "ok",
            **(done.get("reference") or {}),
            "loss": done.get("loss"),
            "seconds": done.get("seconds"),
            "wall_s": run.wall_s,
        }
    why = next(
        (e.get("error") or e.get("reason") for e in run.events if e["event"] in (p.FAILED, p.UNAVAILABLE, p.GIVEN_UP)),
        None,
    )
    return {"status": f"failed: {why or last_error_line(run.log)}", "wall_s": run.wall_s}


def document(
    options: Options,
    runs: list[ConfigRun],
    cells: list[Cell],
    total: float,
    interrupted: bool,
    complete: bool = True,
    startup_s: float | None = None,
    reference: ConfigRun | None = None,
) -> ResultSet:
    """The result set of the runs so far: cells, the environment and configuration the first worker saw,
    and where the wall time went. ``startup_s``: the wall time of start-ups that ran side by side (rounds),
    which replaces the sum of the configurations' own start-ups."""
    ready: dict = next((e for r in runs for e in r.events if e["event"] == p.READY), {})
    built: dict = next((e for r in runs for e in r.events if e["event"] == p.BUILT), {})
    measured = sum(_measured(r) for r in runs)
    done: dict = next((e for e in reference.events if e["event"] == p.REFERENCE), {}) if reference is not None else {}
    measured += done.get("seconds") or 0.0  # computing the reference is measuring too
    startup = sum(r.startup_s or 0.0 for r in runs) if startup_s is None else startup_s
    if reference is not None and startup_s is None:  # one after another: the reference run came first
        startup += reference.startup_s or 0.0
    breakdown = {
        "total_s": total,
        "configurations": [
            {
                "backend": r.backend,
                "device": r.device,
                "precision": r.precision,
                "settings": dict(r.settings),
                "wall_s": r.wall_s,
                "startup_s": r.startup_s,
                "measured_s": _measured(r),
            }
            for r in runs
        ],
        "sum_measured_s": measured,
        "sum_startup_s": startup,
        "overhead_ratio": total / (measured + startup) if measured + startup else None,
        "note": "measured = first call + warm-up + timed + predict baseline (and its first call) + accuracy + "
        "peak probe of every record, and computing the reference; "
        + (
            "startup = spawn to the framework imported and devswitch applied, per configuration and for "
            "the reference run"
            if startup_s is None
            else "startup = the workers (and the reference "
            "run) started side by side until the last was ready (the model built, the reference saved)"
        ),
    }
    return ResultSet(
        options={
            **{k: v for k, v in asdict(options).items() if k not in ("command", "vary")},
            "baseline": options.baseline.words(),
            "vary": {name: list(values) for name, values in options.vary},
        },
        model=Model(
            target=options.target,
            name=built.get("model"),
            parameters=built.get("parameters"),
            unit=built.get("unit", "samples"),
        ),
        cells=tuple(cells),
        environment=ready.get("environment"),
        config=ready.get("config"),
        timing=breakdown,
        command=tuple(options.command) or ("devswitch", "compare", options.target),
        interrupted=interrupted,
        complete=complete,
        reference=reference_summary(reference),
    )
