"""The matrix one configuration after another: one worker process each, its events read back into cells (``runs``).

This process never imports a framework; a configuration that cannot run here becomes "unavailable:
<reason>", one that crashes "failed: <error>", and Ctrl-C stops the running worker and keeps every
finished row. Every worker is started, watched, timed out and ended by ``process``; workers die with
this process, however it ends (see workerbase.die_with_parent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from . import protocol as p
from .options import Options
from .process import ENDED, Worker, full_disk_reason, not_started, timeout_words, unwritable
from .resultset import Cell, ResultSet
from .runs import ConfigRun, cells_of, document, gpus_seen, no_gpu_reason, reference_config, report_progress, write_spec


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


def run_sequential(
    options: Options,
    progress: Callable[[str], None],
    workdir: Path,
    on_update: Callable[[ResultSet], None] | None = None,
) -> ResultSet:
    """Run every configuration, one after another, and return the result set (written by ``outputs.write_outputs``).

    The workers' files go to ``workdir``. After each configuration but the last, ``on_update`` gets the
    document so far (finished rows, the others "not run (pending)", ``complete: false``).
    """
    from .. import backends

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
