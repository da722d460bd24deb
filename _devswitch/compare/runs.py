"""What every factory runner (one after another: ``matrix``; in rounds: ``rounds``) shares: a configuration's
run (``ConfigRun``) and its spec files, the progress lines and cells read from its events, and the result set
(``document``) of the runs so far. The runners import this module and nothing from each other."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..memory import available_memory
from . import honest
from . import protocol as p
from .options import KNEE_BATCH, MAX_BATCH, Options
from .process import absolute, last_error_line
from .protocol import Spec
from .resultset import Cell, Configuration, Model, ResultSet


@dataclass
class ConfigRun:
    device: str
    precision: str
    backend: str = "tensorflow"
    wall_s: float = 0.0
    startup_s: float | None = None
    events: list[p.Event] = field(default_factory=list)  # the worker's events, as read back (protocol.py)
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


def _memory_budget(options: Options) -> int | None:
    """The batch finder's budget in one worker: as given, else (the finder's default is half the memory
    available) in rounds, where every column's worker is alive at once, that half shared among them."""
    if options.memory_budget is not None or MAX_BATCH not in options.batch_sizes or options.rounds <= 1:
        return options.memory_budget
    available = available_memory()
    return None if available is None else max(1, available // 2 // max(1, len(options.configurations)))


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
        memory_budget=_memory_budget(options),
        round_records=options.round_records,
        **more,
    ).write(spec)
    return spec, events, log


def report_progress(new: list[p.Event], progress: Callable[[str], None]) -> None:
    """A progress line for each new event that says something: a record's rate, why a configuration does not run."""
    for event in new:
        if isinstance(event, p.Record):
            r = event.benchmark
            rate = r.samples_per_s
            text = f"{rate:,.1f}/s" if rate is not None and rate == rate else r.status
            progress(f"    batch {r.batch}: {text}")
        elif isinstance(event, p.Found):
            knee = f", knee {event.knee}" if event.knee is not None else ""
            progress(f"    largest batch that fits: {event.batch}{knee} ({event.reason})")
        elif isinstance(event, p.Unavailable):
            progress(f"    unavailable: {event.reason}")
        elif isinstance(event, p.Failed):
            progress(f"    failed: {event.error}")


def found_batch(batch: int, found: p.Found | None) -> int | None:
    """The batch a cell's record ran at: ``batch`` itself, or the one the column's worker found for it
    (``--batch-sizes max,knee``: its largest batch that fits, its knee; None before it was found)."""
    if batch not in (MAX_BATCH, KNEE_BATCH):
        return batch
    if found is None or found.batch is None:
        return None
    return found.knee if batch == KNEE_BATCH and found.knee is not None else found.batch


def cells_of(run: ConfigRun, batch_sizes, interrupted: bool) -> list[Cell]:
    ready = p.first(run.events, p.Ready)
    built = p.first(run.events, p.Built)
    resolved = ((ready.plan if ready else None) or {}).get("precision", "")
    records = {e.benchmark.batch: e for e in p.every(run.events, p.Record)}  # the last of a batch size counts
    unavailable = next((e.reason for e in p.every(run.events, p.Unavailable)), None)
    failed = next((e.error for e in p.every(run.events, p.Failed)), None)
    crashed = p.first(run.events, p.Crashed)
    given_up = next((e.reason for e in p.every(run.events, p.GivenUp)), None)
    cells = []
    found = p.first(run.events, p.Found)
    for batch in batch_sizes:
        ran_at = found_batch(batch, found)
        measured = records.get(ran_at) if ran_at is not None else None
        record = measured.benchmark if measured is not None else None  # the dataclass the worker wrote
        if measured is not None and record is not None:
            status = record.status
            changed = honest.factory_override(run.config, ready, built, measured.record) if status == "ok" else None
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
            status = f"failed: worker exited with code {crashed.returncode}: {last_error_line(run.log)}"
        else:
            status = "failed: no result (see the log)"
        cells.append(Cell.of(run.config, batch, status, resolved, record))
    return cells


def gpus_seen(run: ConfigRun) -> int | None:
    """How many GPUs the worker found, where its backend can tell (None: it could not, or did not say)."""
    return next((e.gpus for e in run.events if isinstance(e, (p.Ready, p.Unavailable)) and e.gpus is not None), None)


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
    for event in p.every(run.events, p.Record):
        r = event.benchmark
        timed = r.summary.total_s if r.summary else None
        total += sum(v for v in (r.first_call_s, r.warmup_s, timed, r.predict_s, *r.more_phases_s.values()) if v)
        probe = max(probe, r.probe_s or 0.0)
    return total + probe


def reference_summary(run: ConfigRun | None) -> dict | None:
    """What results.json says about the reference run: how it was computed, or why there is none."""
    if run is None:
        return None
    done = p.first(run.events, p.Reference)
    if done is not None:
        return {"status": "ok", **done.reference, "loss": done.loss, "seconds": done.seconds, "wall_s": run.wall_s}
    why = next(
        (
            e.error if isinstance(e, p.Failed) else e.reason
            for e in run.events
            if isinstance(e, (p.Failed, p.Unavailable, p.GivenUp))
        ),
        None,
    )
    return {"status": f"failed: {why or last_error_line(run.log)}", "wall_s": run.wall_s}


def factory_results(
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
    ready = p.first((e for r in runs for e in r.events), p.Ready)
    built = p.first((e for r in runs for e in r.events), p.Built)
    return ResultSet(
        options={
            **{k: v for k, v in asdict(options).items() if k not in ("command", "vary")},
            "baseline": options.baseline.words(),
            "vary": {name: list(values) for name, values in options.vary},
        },
        model=Model(
            target=options.target,
            name=built.model if built else None,
            parameters=built.parameters if built else None,
            unit=built.unit if built else "samples",
        ),
        cells=tuple(cells),
        environment=ready.environment if ready else None,
        config=ready.config if ready else None,
        timing=_breakdown(runs, total, startup_s, reference),
        command=tuple(options.command) or ("devswitch", "compare", options.target),
        interrupted=interrupted,
        complete=complete,
        reference=reference_summary(reference),
    )


def _breakdown(runs: list[ConfigRun], total: float, startup_s: float | None, reference: ConfigRun | None) -> dict:
    """Where the wall time went: measuring, starting up (side by side in rounds), and the overhead beside them."""
    measured = sum(_measured(r) for r in runs)
    done = p.first(reference.events, p.Reference) if reference is not None else None
    measured += (done.seconds if done else None) or 0.0  # computing the reference is measuring too
    startup = sum(r.startup_s or 0.0 for r in runs) if startup_s is None else startup_s
    if reference is not None and startup_s is None:  # one after another: the reference run came first
        startup += reference.startup_s or 0.0
    return {
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
