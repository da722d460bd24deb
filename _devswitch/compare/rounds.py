"""Workers kept warm and taking turns: every configuration timed in rounds, A B C A B C ...

All workers start side by side (their start-ups overlap; nothing is timed yet), build the model and
wait. Then each in turn warms up (first call, warm-up, matmul probe), each in turn takes its share of
the timed samples of round 1, then of round 2, ..., and each in turn finishes (the predict baseline,
its records). Only one worker computes at any moment, so the figures are as clean as one after
another, while a burst or a drift of the machine lands on every configuration alike and the speed-up
can be paired by round. A turn is handed over through pipes (the next phase's name on one, "done" back
on the other; the worker's stdin is /dev/null): no polling while a worker is timed. The workers are
started, watched, timed out and ended by ``process``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import protocol as p
from .options import Options
from .process import (
    TURN,
    Estimate,
    Worker,
    bundled_estimate,
    check_memory,
    full_disk,
    measured_estimate,
    not_started,
    timeout_words,
    unwritable,
)
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


@dataclass
class _Worker:
    run: ConfigRun
    process: Worker
    turns: int  # the read end of its "done" pipe
    phases: int  # the write end of the pipe that names its next phase
    alive: bool = True  # still taking turns

    @property
    def config(self) -> Configuration:
        return self.run.config

    @property
    def started(self) -> float:
        return self.process.started


def _start(options: Options, config: Configuration, workdir: Path, origin: float, role: str = "measure") -> _Worker:
    backend, device, precision, settings = config
    turns, turn_end = os.pipe()
    phase_end, phases = os.pipe()
    try:
        spec, events, log = write_spec(
            options, config, workdir, role, rounds=options.rounds, origin=origin, turn_fd=turn_end, phase_fd=phase_end
        )
        worker = Worker("_devswitch.worker", spec, events, log, options.timeout, pass_fds=(turn_end, phase_end))
    except BaseException:
        for fd in (turns, phases):
            os.close(fd)
        raise
    finally:
        for fd in (turn_end, phase_end):
            os.close(fd)  # the worker holds them now: its end (even by a crash) is our end of file
    return _Worker(ConfigRun(device, precision, backend, settings=settings), worker, turns, phases)


def _wait_done(worker: _Worker, progress: Callable[[str], None]) -> bool:
    """Until the worker says "done" (True) or ends (False). A turn longer than its time limit, or a worker
    stopped by a signal, is stopped as Ctrl-C stops it: the rounds it finished become its records."""
    if worker.process.wait(turns=worker.turns) == TURN:
        return True
    if worker.process.failure is not None:
        progress(f"failed: {worker.process.failure}")
        worker.process.stop()
    return False


def _labelled(progress: Callable[[str], None], label: str) -> Callable[[str], None]:
    """``progress`` with each line stripped and prefixed by ``label`` (a worker's configuration)."""
    return lambda line: progress(f"{label}: {line.strip()}")


def _tell(worker: _Worker, phase: str) -> bool:
    try:
        os.write(worker.phases, (phase + "\n").encode())
        return True
    except OSError:  # the worker is gone (BrokenPipeError)
        return False


def _stop(workers: list[_Worker], progress: Callable[[str], None], interrupted: bool) -> None:
    """Every worker ends, with every process it started: interrupted ones are asked to stop (keeping their
    finished rounds), the others hear that there is no next phase; then their groups are ended."""
    if interrupted:
        for w in workers:
            w.process.interrupt()
    deadline = time.time() + (15 if interrupted else 30)
    for w in workers:
        try:
            os.close(w.phases)  # end of file where it waits for a phase: it ends
        except OSError:
            pass
        try:
            w.process.proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:  # ended below
            pass
        w.process.end()
        os.close(w.turns)


@dataclass
class Run:
    """What the phases of one interleaved run share: the workers in their states and the columns settled early."""

    options: Options
    progress: Callable[[str], None]
    workdir: Path
    started: float
    estimate: Estimate | None  # what a worker takes; None: a factory of the user's, measured on its first worker
    measured: bool
    early: dict[Configuration, list[Cell]] = field(default_factory=dict)  # unavailable or failed before a turn
    workers: list[_Worker] = field(default_factory=list)  # started and ready, in the order of the columns
    waiting: list[_Worker] = field(default_factory=list)  # started, not yet ready
    reference: _Worker | None = None
    full: list[str] = field(default_factory=list)  # the disk took no more work files: no worker is started after
    startup_s: float | None = None

    def name(self, config: Configuration) -> str:
        return config.label(len(self.options.backends) > 1)

    def unavailable(self, config: Configuration, reason: str) -> None:
        self.progress(f"{self.name(config)}: unavailable: {reason}")
        self.early[config] = [Cell.of(config, b, f"unavailable: {reason}") for b in self.options.batch_sizes]

    def start(self, config: Configuration, role: str = "measure") -> _Worker | None:
        """The configuration's worker, or None (its column failed) when its work files cannot be written."""
        status = not_started(self.full[0]) if self.full else None
        if status is None:
            try:
                return _start(self.options, config, self.workdir, self.started, role)
            except OSError as error:  # a disk full since the up-front check: a failed column, not a traceback
                status = f"failed: {unwritable(error, self.workdir)}"
                if full_disk(error):
                    self.full.append(unwritable(error, self.workdir))
        self.progress(f"{'reference' if role == 'reference' else self.name(config)}: {status}")
        if role != "reference":
            self.early[config] = [Cell.of(config, b, status) for b in self.options.batch_sizes]
        return None

    def room_for(self, more: list[Configuration]) -> None:
        """Refuse (UsageError, every worker ended) when ``more`` workers will not fit in the memory available
        beside the ones alive; a factory of the user's is measured on the first worker before."""
        everyone = ([self.reference] if self.reference else []) + self.workers + self.waiting
        alive = [w for w in everyone if w.process.proc.poll() is None]
        if not more or not alive:
            return
        if not self.measured:
            self.measured = True
            first = next((w for w in alive if w is not self.reference), alive[0])  # the reference ends soon after
            self.progress("waiting for the first worker's model to be built, to measure what a worker takes")
            self.estimate = measured_estimate(first.process, first.config.backend, self.progress)
        if self.estimate is not None:
            check_memory(
                [c.backend for c in more],
                self.options.target,
                self.options.rounds,
                estimate=self.estimate,
                running=tuple(w.process.pid for w in alive),
                running_backends=tuple(w.config.backend for w in alive),
            )


def stop_and_collect(options, configs, run, progress, interrupted: bool):
    """Stop every worker of ``run`` (those still starting too) and the reference, read back what each measured,
    and close their processes: the result set of a rounds run or a tune race."""
    run.workers += run.waiting  # interrupted while starting: those too are stopped and read back
    everyone = run.workers + ([run.reference] if run.reference else [])
    try:
        _stop(everyone, progress, interrupted)
        return _collect(
            options, configs, run.early, run.workers, run.started, interrupted, run.startup_s, reference=run.reference
        )
    finally:
        for w in everyone:
            w.process.close()


def run_interleaved(
    options: Options,
    progress: Callable[[str], None],
    workdir: Path,
    on_update: Callable[[ResultSet], None] | None = None,
) -> ResultSet:
    """Run every configuration in ``options.rounds`` interleaved rounds; the result set, as run_matrix's."""
    configs = options.configurations
    estimate = bundled_estimate(options.target)  # None: a factory of the user's, measured on its first worker
    run = Run(options, progress, workdir, time.time(), estimate, measured=estimate is not None)
    interrupted = False
    progress(
        f"devswitch compare: {options.target}, {options.mode}, {options.size()}, {options.rounds} "
        "rounds taken in turn "
        "(--rounds 1: one configuration after another, one process at a time); time limit "
        f"{timeout_words(options.timeout)} per turn"
    )
    try:
        start_workers(run, configs)
        progress(
            f"all started in {run.startup_s:.1f} s; "
            + ", ".join(f"{run.name(w.config)} {'ready' if w.alive else 'not running'}" for w in run.workers)
        )
        _take_turns(run, configs, on_update)
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: stopping every worker, keeping every round already measured")
    finally:
        results = stop_and_collect(options, configs, run, progress, interrupted)
    return results


def start_workers(run: Run, configs: list[Configuration]) -> None:
    """Start every configuration's worker (and the reference) side by side, wait until each is ready and the
    reference has ended, and note how long that took (``run.startup_s``): the workers in the order of the columns."""
    deferred = _start_all(run, configs)
    _until_ready(run, deferred)
    run.workers.sort(key=lambda w: configs.index(w.config))  # turns in the order of the columns
    _wait_for_reference(run)
    run.startup_s = time.time() - run.started


def take_turn(run: Run, w: _Worker, phase: str, records: bool = True) -> bool:
    """Tell worker ``w`` to run ``phase``, wait until it is done and show what it said (its records too, unless
    ``records`` is False); whether it is still alive."""
    label = _labelled(run.progress, run.name(w.config))
    ok = _tell(w, phase) and _wait_done(w, label)
    new = w.process.poll_events()
    report_progress(new if records else [e for e in new if not isinstance(e, p.Record)], label)
    return ok


def _start_all(run: Run, configs: list[Configuration]) -> list[Configuration]:
    """Start the reference and every configuration's worker side by side; return the GPU configurations that
    wait for a CPU one of their backend to say whether there is a GPU at all (so that a machine without one
    does not start a framework per GPU column only to hear "no GPU" each time)."""
    from .. import backends

    on_cpu = {c[0] for c in configs if c[1] == "cpu"}
    deferred = [c for c in configs if c[1] != "cpu" and c[0] in on_cpu]
    if run.options.accuracy_samples:  # the strict float32 reference, computed while the others start
        config = reference_config(run.options)
        if not backends.missing_reason(config.backend):
            run.reference = run.start(config, role="reference")
    for i, config in enumerate(configs):
        missing = backends.missing_reason(config.backend)
        if missing:  # known without starting anything
            run.unavailable(config, missing)
            continue
        if config in deferred:
            continue
        if not run.measured and run.waiting:  # a factory of the user's: the others start once the first says
            run.room_for([c for c in configs[i:] if c not in deferred and not backends.missing_reason(c.backend)])
        if (w := run.start(config)) is not None:
            run.waiting.append(w)
    deferred = [c for c in deferred if c not in run.early]
    run.progress(
        f"starting {len(run.waiting)} worker(s) side by side"
        + (f" ({len(deferred)} GPU configuration(s) wait to hear whether there is a GPU)" if deferred else "")
    )
    return deferred


def _until_ready(run: Run, deferred: list[Configuration]) -> None:
    """Each waiting worker in turn until it is ready; a CPU one then starts (or rules out) the GPU
    configurations of its backend."""
    while run.waiting:
        w = run.waiting.pop(0)
        run.workers.append(w)
        w.alive = _wait_done(w, _labelled(run.progress, run.name(w.config)))
        report_progress(w.process.poll_events(), _labelled(run.progress, run.name(w.config)))
        if w.config.device != "cpu":
            continue
        w.run.events = list(w.process.events)
        gpus = gpus_seen(w.run)
        found = [c for c in deferred if c.backend == w.config.backend]
        if gpus != 0:  # GPU columns are counted once they will run
            run.room_for(found)
        for config in found:
            deferred.remove(config)
            if gpus == 0:
                run.unavailable(config, no_gpu_reason(config.backend, w.config.device, w.config.precision))
            elif (more := run.start(config)) is not None:
                run.waiting.append(more)


def _wait_for_reference(run: Run) -> None:
    """Every configuration loads the reference's weights when it warms up: the reference run ends first."""
    reference = run.reference
    if reference is None:
        return
    run.progress("waiting for the reference run (strict float32 outputs of the shared weights)")
    _wait_done(reference, _labelled(run.progress, "reference"))
    reference.process.wait()
    reference.process.poll_events()
    ended = reference.process.events
    reference.run.wall_s = (ended[-1].t if ended else time.time()) - reference.started


def _take_turns(run: Run, configs: list[Configuration], on_update: Callable[[ResultSet], None] | None) -> None:
    """Every phase (warm, round 1, ..., finish), each live worker in turn; a finished column is published at once."""
    for phase in p.phases(run.options.rounds):
        live = [w for w in run.workers if w.alive]
        if not live:
            break
        run.progress(f"[{phase}] " + " -> ".join(run.name(w.config) for w in live))
        for w in live:
            w.alive = take_turn(run, w, phase)
            if phase == "finish" and on_update and w is not live[-1]:  # its rows are on disk at once
                on_update(
                    _collect(
                        run.options,
                        configs,
                        run.early,
                        run.workers,
                        run.started,
                        False,
                        run.startup_s,
                        w,
                        run.reference,
                    )
                )


def _read(w: _Worker) -> ConfigRun:
    run = w.run
    w.process.poll_events()
    run.events = list(w.process.events)
    if w.process.failure is not None:
        run.events.append(p.GivenUp(reason=w.process.failure, t=time.time()))
    run.wall_s = run.wall_s or time.time() - w.started  # the reference's was set when it ended
    ready = p.first(run.events, p.Ready, p.Unavailable)
    run.startup_s = ready.t - w.started if ready else None
    run.log = w.process.log_text()
    return run


def _collect(
    options: Options,
    configs: list,
    early: dict,
    workers: list[_Worker],
    started: float,
    interrupted: bool,
    startup_s: float | None,
    last: _Worker | None = None,
    reference: _Worker | None = None,
) -> ResultSet:
    """The result set: every worker's events read back into cells. ``last``: the run is still going, and
    the workers after this one have not finished (their cells are "not run (pending)")."""
    runs, cells = [], []
    by_config = {w.config: w for w in workers}
    pending = False
    for config in configs:
        if config in early:
            cells += early[config]
            continue
        w = by_config.get(config)
        if w is None:  # interrupted before it was started
            cells += [Cell.of(config, b, "not run (interrupted)") for b in options.batch_sizes]
            continue
        if pending:
            cells += [Cell.of(config, b, "not run (pending)") for b in options.batch_sizes]
            continue
        pending = w is last
        run = _read(w)
        ended = p.first(run.events, p.Done, p.Interrupted) is not None
        returncode = w.process.proc.returncode
        if last is None and returncode not in (0, None) and not interrupted and not ended:
            run.events.append(p.Crashed(returncode=returncode, t=time.time()))
        runs.append(run)
        cells += cells_of(run, options.batch_sizes, interrupted)
    return factory_results(
        options,
        runs,
        cells,
        time.time() - started,
        interrupted,
        complete=last is None,
        startup_s=startup_s,
        reference=_read(reference) if reference else None,
    )
