"""The matrix one configuration after another: one worker process each, its events read back into cells (``runs``).

This process never imports a framework; a configuration that cannot run here becomes "unavailable:
<reason>", one that crashes "failed: <error>", and Ctrl-C stops the running worker and keeps every
finished row. Every worker is started, watched, timed out and ended by ``process``; workers die with
this process, however it ends (see workerbase.die_with_parent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import protocol as p
from .options import Options
from .process import ENDED, Worker, full_disk_reason, not_started, timeout_words, unwritable
from .resultset import Cell, Configuration, ResultSet
from .runs import (
    ConfigRun,
    cells_of,
    factory_results,
    gpus_seen,
    no_gpu_reason,
    reference_config,
    report_progress,
    write_spec,
)


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
        run.events.append(p.GivenUp(reason=run.unwritable, t=time.time()))
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
    ready = p.first(run.events, p.Ready, p.Unavailable)
    run.startup_s = ready.t - worker.started if ready else None
    returncode = worker.proc.returncode
    if worker.failure is not None:
        run.events.append(p.GivenUp(reason=worker.failure, t=time.time()))
    elif returncode not in (0, None) and not interrupted and p.first(run.events, p.Done) is None:
        run.events.append(p.Crashed(returncode=returncode, t=time.time()))
    return run, interrupted


@dataclass
class _Sequence:
    """What the columns of a one-after-another run share: the runs and rows so far, what was learnt on the way."""

    options: Options
    progress: Callable[[str], None]
    workdir: Path
    started: float
    reference: ConfigRun | None = None
    interrupted: bool = False
    runs: list[ConfigRun] = field(default_factory=list)
    done: list[Cell] = field(default_factory=list)
    no_gpu: dict[str, str] = field(default_factory=dict)  # per backend: learnt once, not paid again per column
    full: str | None = None  # the disk took no more work files: the later columns are not started

    def cells(self, config: Configuration, status: str) -> list[Cell]:
        return [Cell.of(config, b, status) for b in self.options.batch_sizes]


def run_sequential(
    options: Options,
    progress: Callable[[str], None],
    workdir: Path,
    on_update: Callable[[ResultSet], None] | None = None,
) -> ResultSet:
    """Run every configuration, one after another, and return the result set (``render.outputs`` writes it).

    The workers' files go to ``workdir``. After each configuration but the last, ``on_update`` gets the
    document so far (finished rows, the others "not run (pending)", ``complete: false``).
    """
    configs = options.configurations
    several = len(options.backends) > 1
    seq = _Sequence(options, progress, workdir, time.time())
    progress(
        f"devswitch compare: {options.target}, {options.mode}, {options.size()}; time limit "
        f"{timeout_words(options.timeout)} per configuration"
    )
    _run_reference(seq)
    seq.full = full_disk_reason(seq.reference)
    for i, config in enumerate(configs):
        if seq.interrupted:
            seq.done += seq.cells(config, "not run (interrupted)")
        elif seq.full:
            progress(f"[{i + 1}/{len(configs)}] {config.label(several)}: {not_started(seq.full)}")
            seq.done += seq.cells(config, not_started(seq.full))
        else:
            _run_column(seq, configs, i, on_update)
    total = time.time() - seq.started
    return factory_results(options, seq.runs, seq.done, total, seq.interrupted, reference=seq.reference)


def _run_reference(seq: _Sequence) -> None:
    """The strict float32 reference run, first, when accuracy is measured and its backend is installed."""
    from .. import backends

    options = seq.options
    if not options.accuracy_samples or backends.missing_reason(reference_config(options).backend):
        return
    config = reference_config(options)
    seq.progress(
        f"[reference] {config.words()}: strict float32 outputs of the shared weights on "
        f"{options.accuracy_samples} seeded samples"
    )
    try:
        seq.reference, seq.interrupted = run_configuration(
            options, config.device, config.precision, seq.workdir, seq.progress, config.backend, role="reference"
        )
    except KeyboardInterrupt:
        seq.interrupted = True


def _run_column(
    seq: _Sequence, configs: list[Configuration], i: int, on_update: Callable[[ResultSet], None] | None
) -> None:
    """Configuration ``i``: unavailable (known without starting anything), or run; its rows join the rest."""
    from .. import backends

    options, progress, config = seq.options, seq.progress, configs[i]
    several = len(options.backends) > 1
    before = len(seq.done)
    backend, device, precision, settings = config
    try:
        left = ", ".join(c.label(several) for c in configs[i + 1 :]) or "none"
        progress(f"[{i + 1}/{len(configs)}] {config.label(several)} (then: {left})")
        missing = backends.missing_reason(backend)
        if not missing and device != "cpu" and seq.no_gpu.get(backend):
            missing = seq.no_gpu[backend]  # learnt once per backend, not paid again per configuration
        if missing:  # known without starting anything, like a GPU that is not there
            progress(f"    unavailable: {missing}")
            seq.done += seq.cells(config, f"unavailable: {missing}")
            return
        run, seq.interrupted = run_configuration(
            options, device, precision, seq.workdir, progress, backend, settings=settings
        )
        seq.full = full_disk_reason(run)
        if run.unwritable is None:
            seq.runs.append(run)
        if gpus_seen(run) == 0:
            seq.no_gpu[backend] = no_gpu_reason(backend, device, precision)
        seq.done += cells_of(run, options.batch_sizes, seq.interrupted)
        progress(f"[{i + 1}/{len(configs)}] {config.label(several)}: {run.wall_s:.1f} s")
        if on_update and not seq.interrupted and i + 1 < len(configs):
            pending = [cell for c in configs[i + 1 :] for cell in seq.cells(c, "not run (pending)")]
            elapsed = time.time() - seq.started
            on_update(
                factory_results(
                    options, seq.runs, seq.done + pending, elapsed, False, complete=False, reference=seq.reference
                )
            )
    except KeyboardInterrupt:  # between workers, or while the rows so far were being written
        seq.interrupted = True
        progress("interrupted: keeping every finished row")
        if len(seq.done) == before:
            seq.done += seq.cells(config, "interrupted")
