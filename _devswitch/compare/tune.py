"""``devswitch tune``: the fastest configuration by racing, in a fraction of an exhaustive compare.

A factory's configurations start as compare's interleaved workers do (``rounds``: started side by side,
warmed in turn); then they take turns round by round, each turn timed here, and after each round the rules
of ``race`` drop the configurations that are significantly slower than the leader (each told to finish at
once, so that its rows keep what it measured) until the leader leads decisively or the budget ends. A
script's configurations run the whole script once per round, as ``compare --script`` does. The result is a
compare result set (every round, each dropped row marked with its reason) with the race in
``options["tune"]``; the decision at the end is compare's own (``recommend``, ``decision.py``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import protocol as p
from . import race
from .decision import Evidence, Rules
from .options import Options
from .resultset import Cell, Configuration, ResultSet
from .rounds import Run, start_workers, stop_and_collect, take_turn
from .runs import found_batch


@dataclass(frozen=True)
class TuneOptions:
    """What the race adds to compare's options: its budget, its most rounds, its rules and accuracy guards."""

    budget_s: float | None = 300.0  # None: no budget (the most rounds end the race)
    max_rounds: int = 20
    rules: Rules = Rules()
    max_error: float | None = None  # a factory: the most relative error against the fp32 reference
    max_loss_change: float | None = None  # a script: the most relative change of the final loss vs the baseline's


@dataclass
class RaceLog:
    """What happened in the race, round by round (written to results.json as ``options["tune"]``)."""

    tune: TuneOptions
    baseline: Configuration | None = None  # what a tie keeps: dropped only with a decision's coverage
    rates: dict[Configuration, dict[int, float]] = field(default_factory=dict)
    dropped: dict[Configuration, race.Drop[Configuration]] = field(default_factory=dict)
    rounds: list[dict] = field(default_factory=list)
    stop: race.Stop = race.Stop.GO_ON
    started: float = field(default_factory=time.time)

    def alive(self, configs: list[Configuration]) -> list[Configuration]:
        return [c for c in configs if c not in self.dropped]

    def left_s(self) -> float | None:
        return None if self.tune.budget_s is None else self.tune.budget_s - (time.time() - self.started)

    def after_round(
        self,
        number: int,
        seconds: float,
        alive: list[Configuration],
        label: Callable[[Configuration], str],
        turns: Mapping[Configuration, float] | None = None,
    ) -> list[race.Drop[Configuration]]:
        """Drop the significantly slower survivors; note the round; decide whether the race stops. ``turns``:
        each configuration's turn in this round, in seconds: the next round is predicted as the survivors' turns
        (without them: as long as this round)."""
        new = race.drops(self.rates, alive, number, self.baseline, self.tune.rules)
        for drop in new:
            self.dropped[drop.config] = drop
        alive = [c for c in alive if c not in self.dropped]
        if turns is not None:
            seconds = sum(turns.get(c, 0.0) for c in alive)
        leader = next(iter(race.ranked(self.rates, alive)), None)
        self.stop = race.stop(
            self.rates,
            alive,
            self.tune.rules,
            number,
            self.tune.max_rounds,
            time.time() - self.started,
            seconds,
            self.tune.budget_s,
            finish_s=seconds,  # the finish (accuracy, records) takes about a round
        )
        self.rounds.append(
            {
                "round": number,
                "seconds": sum(turns.values()) if turns is not None else seconds,
                "next_s": seconds,
                "rates": {label(c): self.rates[c].get(number) for c in self.rates if number in self.rates[c]},
                "survivors": [label(c) for c in alive],
                "leader": label(leader) if leader is not None else None,
                "dropped": {label(d.config): d.reason for d in new},
            }
        )
        return new

    def status(self, number: int, alive: list[Configuration], label: Callable[[Configuration], str]) -> str:
        """The live display's line: the round, the survivors, the leader and the time left."""
        leader = next(iter(race.ranked(self.rates, alive)), None)
        left = self.left_s()
        time_left = "no budget" if left is None else f"{max(0.0, left):.0f} s left"
        return (
            f"tune: round {number}, {len(alive)} survivor(s): {', '.join(label(c) for c in alive)}; "
            f"leader {label(leader) if leader is not None else '-'}; {time_left}"
        )

    def to_dict(self, label: Callable[[Configuration], str]) -> dict:
        return {
            "budget_s": self.tune.budget_s,
            "max_rounds": self.tune.max_rounds,
            "max_error": self.tune.max_error,
            "max_loss_change": self.tune.max_loss_change,
            "stop": self.stop.value,
            "wall_s": time.time() - self.started,
            "rounds": self.rounds,
            "dropped": {label(c): d.reason for c, d in self.dropped.items()},
        }


def marked(results: ResultSet, log: RaceLog, label: Callable[[Configuration], str]) -> ResultSet:
    """The result set with each dropped configuration's rows marked with its reason (its record kept), and
    the race in ``options["tune"]``."""
    cells = tuple(
        dataclasses.replace(c, status=log.dropped[c.config].reason)
        if c.config in log.dropped and c.status == "ok"
        else c
        for c in results.cells
    )
    return dataclasses.replace(results, cells=cells, options={**results.options, "tune": log.to_dict(label)})


def guard_accuracy(results: ResultSet, log: RaceLog) -> None:
    """The factory's accuracy guard: a configuration over --max-error cannot win (dropped with its error)."""
    limit = log.tune.max_error
    if limit is None:
        return
    last = log.rounds[-1]["round"] if log.rounds else 0
    for cell in results.cells:
        error = cell.error() if cell.ok else None
        if error is None or cell.config in log.dropped:
            continue
        drop = race.accuracy_drop(cell.config, last, "max relative error", error, limit, "--max-error")
        if drop is not None:
            log.dropped[cell.config] = drop


# --- a factory: workers kept warm, racing in rounds --------------------------------------------


def run_tune(
    options: Options, tune: TuneOptions, progress: Callable[[str], None], workdir: Path, show: Callable[[str], None]
) -> ResultSet:
    """Race ``options.configurations`` (``options.rounds`` is the most rounds) and return the result set."""
    from .process import bundled_estimate

    configs = options.configurations
    estimate = bundled_estimate(options.target)
    run = Run(options, progress, workdir, time.time(), estimate, measured=estimate is not None)
    log = RaceLog(tune, options.baseline, started=run.started)
    interrupted = False
    budget = "no budget" if tune.budget_s is None else f"a budget of {tune.budget_s:g} s"
    progress(
        f"devswitch tune: {options.target}, {options.mode}, {options.size()}, racing in up to {options.rounds} "
        f"rounds with {budget}"
    )
    try:
        start_workers(run, configs)  # a GPU column waits to hear whether there is a GPU at all
        progress(f"all started in {run.startup_s:.1f} s")
        _race(run, log, show)
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: stopping every worker, keeping every round already measured")
    finally:
        results = stop_and_collect(options, configs, run, progress, interrupted)
    guard_accuracy(results, log)
    return marked(results, log, run.name)


def _race(run: Run, log: RaceLog, show: Callable[[str], None]) -> None:
    """Warm every worker in turn, then round after round until the race stops; every worker then finishes."""
    for w in [w for w in run.workers if w.alive]:
        w.alive = _turn(run, w, "warm")
    left = log.left_s()
    if left is not None and left < 0:  # the start-ups and warm-ups are every configuration's, raced or not
        run.progress(
            f"tune: starting and warming up took {time.time() - run.started:.0f} s, past the budget of "
            f"{log.tune.budget_s:g} s: one round is taken, the least a result needs"
        )
    for number in range(1, run.options.rounds + 1):
        live = [w for w in run.workers if w.alive and w.config not in log.dropped]
        if not live:
            break
        started, turns = time.time(), {}
        for w in live:
            t0 = time.time()
            w.alive = _turn(run, w, f"round {number}")
            turns[w.config] = time.time() - t0
            cell = _latest(run, w) if w.alive else None
            if cell is not None:
                # the worker counts its rounds from 0, the race (and its "dropped after round k") from 1
                log.rates[w.config] = {number + 1: rate for number, rate in cell.round_rates.items()}
                error = cell.error()
                limit = log.tune.max_error
                if error is not None and limit is not None:  # the accuracy guard, from round 1 on
                    drop = race.accuracy_drop(w.config, number, "max relative error", error, limit, "--max-error")
                    if drop is not None:
                        log.dropped[w.config] = drop
                        run.progress(f"{run.name(w.config)}: {drop.reason}")
                        w.alive = _turn(run, w, "finish") and False
        alive = [w.config for w in live if w.alive]
        for drop in log.after_round(number, time.time() - started, alive, run.name, turns):
            run.progress(f"{run.name(drop.config)}: {drop.reason}")
            w = next(w for w in live if w.config == drop.config)
            w.alive = _turn(run, w, "finish") and False  # its records now; the worker then ends
        survivors = log.alive([w.config for w in live if w.alive])
        show(log.status(number, survivors, run.name))
        if log.stop is not race.Stop.GO_ON:
            run.progress(f"tune: the race ends after round {number}: {log.stop.value}")
            break
    for w in run.workers:
        if w.alive:
            w.alive = _turn(run, w, "finish") and False


def _turn(run: Run, w, phase: str) -> bool:
    """Tell the worker ``phase`` and wait until it is done (False: it ended or failed); its per-round records
    are read by the race, and shown once, at its finish."""
    return take_turn(run, w, phase, records=phase == "finish")


def _latest(run: Run, w) -> Cell | None:
    """The worker's cell at its largest batch size (the one the decision is made at) from the record it wrote
    after its last round: its own timings of its timed steps by round, and its accuracy (measured first)."""
    found = p.first(w.process.events, p.Found)
    batches = [b for b in (found_batch(b, found) for b in run.options.batch_sizes) if b]
    records = [e.benchmark for e in p.every(w.process.events, p.Record)]
    latest = [r for r in records if batches and r.batch == max(batches) and r.status == "ok"]
    return Cell.of(w.config, latest[-1].batch, "ok", record=latest[-1]) if latest else None


# --- a script: one run of the whole script per configuration and round ---------------------------


def final_loss(calls: list[Mapping]) -> float | None:
    """The loss of the last epoch of the script's last ``fit`` (None: no fit, or no loss logged)."""
    for call in reversed(calls):
        if call.get("kind") != "fit":
            continue
        for epoch in reversed(call.get("epochs") or []):
            loss = epoch.get("loss") if isinstance(epoch, Mapping) else None
            if isinstance(loss, (int, float)) and math.isfinite(loss):
                return float(loss)
        return None
    return None


def loss_change(loss: float | None, reference: float | None) -> float | None:
    """The relative change of the final loss against the reference configuration's (inf: a loss lost)."""
    if reference is None:
        return None
    if loss is None:
        return math.inf
    return abs(loss - reference) / max(abs(reference), 1e-12)


@dataclass
class _ScriptRace:
    """What the rounds of a script's race share: the job, where its files go, its runs, statuses and losses."""

    job: Any
    work: Path
    out: Path
    progress: Callable[[str], None]
    log: RaceLog
    label: Callable[[Configuration], str]
    runs: dict[Configuration, list[dict]]
    status: dict[Configuration, str] = field(default_factory=dict)
    losses: dict[Configuration, float | None] = field(default_factory=dict)
    no_gpu: dict[str, str] = field(default_factory=dict)  # backend -> why its GPU configurations cannot run

    def turn(self, c: Configuration, number: int) -> bool:
        """One run of the script in ``c`` (or its pruning, known without a process); True: interrupted."""
        from .runs import file_stem, no_gpu_reason
        from .script import LOGS, _missing, _settle, run_once

        missing = _missing(c, self.no_gpu)  # not installed, or no GPU: pruned before a process starts
        if missing:
            self.status[c] = f"unavailable: {missing}"
            self.progress(f"{self.label(c)}: unavailable: {missing}")
            return False
        self.progress(f"[round {number}] {self.label(c)}")
        log_file = self.out / LOGS / f"{file_stem(c)}.log"
        try:
            one, interrupted = run_once(self.job, c, number, self.work, log_file, self.log.started)
        except KeyboardInterrupt:
            return True
        if interrupted:
            return True
        seen = [e.gpus for e in (one.get("ready"), one.get("unavailable")) if e is not None and e.gpus is not None]
        if seen and seen[0] == 0:
            self.no_gpu[c.backend] = no_gpu_reason(c.backend, c.device, c.precision)
        _settle(c, one, False, self.runs, self.status)
        if c in self.status:
            self.progress(f"    {self.status[c]}")
            return False
        wall = one.get("wall_s")
        if wall:
            self.log.rates.setdefault(c, {})[number] = 1 / wall
        self.losses[c] = final_loss(one.get("calls") or [])
        self.progress(f"    {wall:.2f} s, final loss {self.losses[c]}" if wall else "    no wall time")
        return False


def run_tune_script(job, tune: TuneOptions, progress: Callable[[str], None], work: Path, out: Path, show) -> ResultSet:
    """Race a script's configurations: one run each per round, the configurations taking turns."""
    from .script import _make_logs_folder, script_results

    options = job.options
    configs = options.configurations
    several = len(options.backends) > 1

    def label(c: Configuration) -> str:
        return c.label(several)

    _make_logs_folder(out)
    log = RaceLog(tune, options.baseline)
    state = _ScriptRace(job, work, out, progress, log, label, {c: [] for c in configs})
    interrupted = False
    progress(f"devswitch tune --script {job.target}: {len(configs)} configuration(s), up to {options.rounds} rounds")
    for number in range(1, options.rounds + 1):
        live = [c for c in configs if c not in state.status and c not in log.dropped]
        if not live:
            break
        started = time.time()
        interrupted = any(state.turn(c, number) for c in live)  # any() stops at the first interrupted run
        if interrupted:
            break
        alive = [c for c in live if c not in state.status]
        _guard_loss(log, alive, state.losses, options.baseline, number, progress, label)
        alive = [c for c in alive if c not in log.dropped]
        for drop in log.after_round(number, time.time() - started, alive, label):
            progress(f"{label(drop.config)}: {drop.reason}")
        show(log.status(number, log.alive(alive), label))
        if log.stop is not race.Stop.GO_ON:
            progress(f"tune: the race ends after round {number}: {log.stop.value}")
            break
    results = script_results(job, state.runs, state.status, time.time() - log.started, interrupted)
    return marked(results, log, label)


def _guard_loss(
    log: RaceLog,
    alive: list[Configuration],
    losses: Mapping[Configuration, float | None],
    baseline: Configuration,
    number: int,
    progress: Callable[[str], None],
    label: Callable[[Configuration], str],
) -> None:
    """The script's accuracy guard: a final loss more than --max-loss-change from the baseline's cannot win."""
    limit = log.tune.max_loss_change
    reference = losses.get(baseline)
    if limit is None or reference is None:
        return
    for c in alive:
        if c == baseline or c in log.dropped:
            continue
        change = loss_change(losses.get(c), reference)
        if change is None:
            continue
        drop = race.accuracy_drop(c, number, "final loss change", change, limit, "--max-loss-change")
        if drop is not None:
            log.dropped[c] = drop
            progress(f"{label(c)}: {drop.reason}")


def winner_lines(results: ResultSet) -> list[str]:
    """The end of a tune: the winner, its interval against the runner-up, and the switch that selects it."""
    from .options import FOUND_NAMES, batch_label
    from .recommend import outpaced, recommend, switch_text

    lines = []
    for pick in recommend(results):
        d = pick.decision
        if d is None:
            continue
        at = "" if results.kind == "script" else f" at {batch_label(pick.batch)}"

        found = pick.batch in FOUND_NAMES

        def show(cell: Cell, found: bool = found) -> str:
            ran = getattr(cell.record, "batch", None) if found else None
            return results.column(cell) + (f" (batch {ran})" if ran else "")  # a found batch: the one it ran at

        line = f"tune{at}: winner {show(d.chosen)}"
        others = sorted(
            (c for c in results.cells if c.batch == pick.batch and (c.ok or outpaced(c)) and c is not d.chosen),
            key=lambda c: c.throughput,
            reverse=True,
        )
        if others:
            ev = Evidence.between(d.chosen, others[0], results.paired(d.chosen, others[0]))
            if ev is not None:
                line += f", {race.interval_words(ev)} against the runner-up, {show(others[0])}"
        line += f"; {d.why(show)}"
        lines.append(line)
        lines.append(f"  switch: {switch_text(pick.switch(results.several_backends))}")
    return lines
