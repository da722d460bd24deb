"""``devswitch compare``: benchmark a model (a factory) or a whole script across devices and precisions, one
process per configuration. One parser, its argument groups saying which options belong to which source; one
command that reads them into one ``compare.Options`` (``compare_options``; the script's side:
``compare_script``), runs the columns, writes the results and saves the profile."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DevswitchError, UsageError
from .compare_options import DEFAULT_ROUNDS, FACTORY_DEFAULTS, options_from_args
from .compare_script import script_job

if TYPE_CHECKING:
    from rich.status import Status

    from ..compare import ResultSet


def compare_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "compare",
        help="benchmark a model across devices and precisions, one process per configuration",
        description="Run a backend x device x precision matrix (x the values of each --vary setting) and print "
        "the classic comparison table (img/s, W, img/s per W, speed-up), writing "
        "results.json/.csv/.md/.html/.png.",
    )
    _factory_group(parser)
    _script_group(parser)
    _columns_group(parser)
    _measuring_group(parser)
    _output_group(parser)
    _recommendation_group(parser)
    return parser


def _factory_group(parser: argparse.ArgumentParser) -> None:
    """A factory's options: the MODEL and how its benchmark runs (refused with --script, given or not)."""
    group = parser.add_argument_group(
        "factory", "a MODEL (a function returning a Keras model) as the workload, and its benchmark; not with --script"
    )
    group.add_argument(
        "target",
        nargs="?",
        default=None,
        metavar="MODEL",
        help="a bundled model (alexnet, small_cnn, mlp), path.py[:function] "
        "(default function build_model) or module:function (default: alexnet)",
    )
    default = FACTORY_DEFAULTS
    _batch_options(group)
    group.add_argument(
        "--mode",
        default=None,
        choices=["inference", "training"],
        help=f"what is timed: predict calls or training steps (default {default['mode']})",
    )
    group.add_argument(
        "--warmup", default=None, help=f"untimed iterations after the first call (default {default['warmup']})"
    )
    group.add_argument(
        "--iterations", default=None, help=f"timed iterations per batch size (default {default['iterations']})"
    )
    group.add_argument(
        "--min-time", default=None, help=f"keep timing for at least this many seconds (default {default['min_time']})"
    )
    group.add_argument(
        "--accuracy-samples",
        default=None,
        metavar="N",
        help="compare every column's outputs with a strict float32 reference (the same weights, "
        "N seeded inputs; training: the loss after a few SGD steps); 0 skips it "
        f"(default {default['accuracy_samples']})",
    )
    group.add_argument(
        "--max-error",
        default=None,
        metavar="X",
        help="recommend only configurations whose maximum relative error against the reference "
        "(training: of the loss) is at most X, e.g. 1e-2; the others are named with the reason",
    )
    group.add_argument(
        "--no-predict-baseline", action="store_true", default=None, help="skip the plain model.predict figure"
    )
    group.add_argument(
        "--no-peak-probe", action="store_true", default=None, help="skip the matmul probe (a rate, not a peak)"
    )


def _batch_options(group) -> None:
    """--batch-sizes (numbers, or each column's own: max, max,knee) and the batch finder's --memory-budget."""
    group.add_argument(
        "--batch-sizes",
        default=None,
        help=f"comma-separated (default {FACTORY_DEFAULTS['batch_sizes']}); max: each column's largest batch that "
        "fits, found in its own worker (max,knee: also the smallest batch within 5%% of the best throughput seen)",
    )
    group.add_argument(
        "--memory-budget",
        default=None,
        metavar="SIZE",
        help="with --batch-sizes max: the memory a column's batch may use, e.g. 4GiB (on a CPU the resident "
        "memory above the worker's start; default half the available memory; on a GPU, out-of-memory is the limit)",
    )


def _script_group(parser: argparse.ArgumentParser) -> None:
    """A whole script's options: the workload and the caps of its fits (refused without --script)."""
    group = parser.add_argument_group("script", "a whole unmodified script as the workload, instead of a MODEL")
    group.add_argument(
        "--script",
        default=None,
        metavar="SCRIPT",
        help="compare the whole unmodified script (run as devswitch run runs it) instead of a MODEL; "
        "its own arguments after --: compare --script train.py [options] -- --epochs 3",
    )
    group.add_argument(
        "-m",
        dest="script_module",
        default=None,
        metavar="MODULE",
        help="like --script, for a module run as python -m MODULE",
    )
    group.add_argument(
        "--max-epochs",
        default=None,
        metavar="N",
        help="with --script: every fit the script calls runs at most N epochs (labelled in its record)",
    )
    group.add_argument(
        "--max-steps",
        default=None,
        metavar="N",
        help="with --script: every epoch of every fit runs at most N steps (labelled in its record)",
    )
    parser.set_defaults(script_args=())


def _columns_group(parser: argparse.ArgumentParser) -> None:
    """The configurations compared, for either workload."""
    group = parser.add_argument_group("columns", "the configurations compared (either workload)")
    group.add_argument(
        "--backends",
        default="",
        help="comma-separated Keras backends: tensorflow, jax, torch "
        "(default: the resolved backend, see devswitch info)",
    )
    group.add_argument("--devices", default="cpu,gpu", help="comma-separated: cpu, gpu, gpu:N (default cpu,gpu)")
    group.add_argument(
        "--precisions", default="fp32,half", help="comma-separated: fp32, fp16, bf16, half (default fp32,half)"
    )
    group.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="one more axis: a setting and its values, each value a column beside every backend, "
        "device and precision, e.g. --vary xla=true,false --vary threads=1,2 (repeatable; "
        "settings that can vary: math, xla, threads, memory_growth, strategy, cpu_replicas, deterministic)",
    )
    group.add_argument(
        "--maths",
        default="",
        metavar="M1,M2",
        help="float32 math modes as columns: short for --vary math=M1,M2 (auto, ieee, tf32, bf16)",
    )
    group.add_argument(
        "--yes",
        action="store_true",
        help="run a matrix of more than 32 configurations (refused without it, before anything runs)",
    )


def _measuring_group(parser: argparse.ArgumentParser) -> None:
    """How the columns are timed, for either workload."""
    group = parser.add_argument_group("measuring", "how the columns are timed (either workload)")
    group.add_argument(
        "--rounds",
        default=None,
        metavar="N",
        help="take the timed iterations in N rounds, the configurations taking turns (A B C A B "
        "C ...), so that a noisy neighbour slows every column alike and the speed-up gets an "
        f"interval paired by round; all workers stay alive side by side (default: {DEFAULT_ROUNDS}, or "
        "--iterations if fewer; 1: one configuration after another, one process at a time, "
        "for when memory is tight)",
    )
    group.add_argument(
        "--timeout",
        default="",
        metavar="SECONDS",
        help="the time limit of one configuration's worker (with rounds: of one turn; with --script: of one run "
        "of the script); a worker past it, or stopped by a signal, is ended with every process it started and "
        "its column fails with the reason (default 3600)",
    )


def _output_group(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output", "where the results go")
    group.add_argument(
        "--out",
        default="",
        metavar="DIR",
        help="output folder, checked before anything runs (default: a new folder "
        "devswitch-results/<timestamp>, never overwritten); a DIR that already holds "
        "results is refused (rather than written to a new folder beside it) unless --force "
        "is given",
    )
    group.add_argument(
        "--force",
        action="store_true",
        help="overwrite the results already in --out (they are replaced after the first configuration finishes)",
    )


def _recommendation_group(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("recommendation", "the speed-up's reference and the profile saved")
    group.add_argument(
        "--baseline",
        default="cpu/fp32",
        help="column the speed-up is relative to: DEVICE/PRECISION (of the first backend) or "
        "BACKEND/DEVICE/PRECISION, then /KEY=VALUE for a varied setting (default cpu/fp32 and "
        "each varied setting's first value), e.g. cpu/fp32/xla=false",
    )
    group.add_argument(
        "--min-speedup",
        default="1.05",
        metavar="X",
        help="the least speed-up over the baseline that moves the recommendation (and --save-profile) off it "
        "(default 1.05); a significant but smaller one is reported as it is, and the baseline is kept",
    )
    group.add_argument(
        "--save-profile",
        default=None,
        metavar="NAME",
        help="write the configuration the recommendation decides on at the largest batch size as profile "
        "NAME into the .devswitchrc the configuration comes from (the last file in "
        "DEVSWITCHRC, else the nearest project file, else a new ./.devswitchrc), adding to it "
        "without touching the rest; nothing is saved after an interrupted or incomplete run "
        "or when the recommendation keeps the baseline; then run it with DEVSWITCH_PROFILE=NAME",
    )
    group.add_argument(
        "--save-profile-anyway",
        action="store_true",
        help="with --save-profile: save the fastest measured configuration even when the run was "
        "interrupted or incomplete or its lead is not significant (the profile's comment "
        "says so)",
    )


def compare_command(args: argparse.Namespace) -> int:
    """One command, two sources of columns: a factory (MODEL) or a whole script (--script / -m)."""
    from ..compare import prepare_output
    from ..render.compare import render_markdown
    from ..render.escape import safe
    from ..render.outputs import write_outputs

    script = args.script is not None or args.script_module is not None or bool(args.script_args)
    if script:
        job = script_job(args)
        options = job.options
    else:
        options = factory_options(args)
    profile_file = _profile_file(args)  # so is a profile that could not be saved
    output = prepare_output(options.out, options.force)  # so is an output folder that cannot take the results
    options = dataclasses.replace(options, out=str(output.path), command=("devswitch", *args.argv))

    live = _live_status() if not script and sys.stderr.isatty() else None

    def progress(line: str) -> None:
        line = safe(line)  # a failed column's line is the script's or the factory's, escapes and all
        if live is not None and line.startswith("["):
            live.update(f"devswitch compare {line}")  # a live status line on a terminal
        print(line, file=sys.stderr, flush=True)

    def save_finished_rows(partial) -> None:
        try:
            write_outputs(partial, output.path, plot=False)
        except OSError as error:  # the rows stay in memory; the final write tries again
            progress(f"warning: could not write the finished rows to {output.path}: {error}")

    def run():
        if script:
            from ..compare.script import run_scripts

            job_here = dataclasses.replace(job, options=options)
            return run_scripts(job_here, progress, output.work, output.path, on_update=save_finished_rows)
        from ..compare import run_matrix

        return run_matrix(options, progress, output.work, on_update=save_finished_rows)

    try:
        results = _stoppable(run, live)
    finally:
        output.close()
    notes = publish(results, output.path, render_markdown(results), write_outputs)
    if notes is None:
        return UsageError.exit_code  # not 1, the report gate's "regression": the files could not be written
    if script:
        written = "results.json, results.csv, results.md, results.html and the scripts' logs (logs/)"
    else:
        for note in notes:
            print(f"note: {safe(note)}", file=sys.stderr)
        written = f"results.json, results.csv, results.md, results.html{'' if notes else ', results.png'}"
    print(f"devswitch: wrote {written} to {output.path}", file=sys.stderr)
    return save_and_exit_code(results, args, profile_file)


def _stoppable(run: Callable[[], ResultSet], live: Status | None) -> ResultSet:
    """``run()`` with SIGTERM (a CI time-out, `timeout`, kill) taken as Ctrl-C, and the live status line (a
    terminal's, or None) shown meanwhile."""
    import signal

    def terminate(signum, frame):
        raise KeyboardInterrupt  # stop as for Ctrl-C: every finished row is kept

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        if live is not None:
            live.start()
        return run()
    finally:
        if live is not None:
            live.stop()
        signal.signal(signal.SIGTERM, previous)


def factory_options(args: argparse.Namespace):
    """The options of a factory compare, its MODEL parsed and (with rounds) its workers' memory checked up front."""
    from ..worker import parse_target

    options = options_from_args(args)
    parse_target(options.target)  # a bad MODEL is an error before any process starts
    if options.rounds > 1:  # every worker alive at once: refused before anything runs when they will not fit
        from ..compare.process import check_memory, first_workers

        check_memory(first_workers(options), options.target, options.rounds)  # a factory of the user's: measured
    return options


def publish(results, folder: Path, table: str, write) -> list[str] | None:
    """Write the result files with ``write(results, folder)`` and print the table; None (after printing the
    table, and which file could not be written and why) when they could not be written: what was measured is
    then on the terminal at least (compare exits 2)."""
    try:
        notes = write(results, folder)
    except OSError as error:
        from ..render.escape import safe

        print(table)
        print(
            f"devswitch: error: could not write {safe(str(error.filename or folder))}: "
            f"{safe(error.strerror or str(error))}; the table above is what was measured",
            file=sys.stderr,
        )
        print("  hint: free some space (or choose another --out) and run compare again", file=sys.stderr)
        return None
    print(table)
    return notes or []


def save_and_exit_code(results, args: argparse.Namespace, profile_file: Path | None) -> int:
    """Save the profile if asked, then the exit code: 130 interrupted, 5 a column failed, 1 a due save failed."""
    from ..errors import RunError

    saved = True
    if profile_file is not None:
        saved = save_winner(results, args.save_profile, profile_file, anyway=args.save_profile_anyway)
    if results.interrupted:
        return 130
    failed = [c for c in results.cells if c.status.startswith("failed")]
    return RunError.exit_code if failed else 0 if saved else 1


def _live_status():
    """A rich status spinner on stderr (terminals only; logs and CI get the plain lines alone)."""
    from rich.console import Console

    return Console(stderr=True).status("devswitch compare: starting")


def _profile_file(args: argparse.Namespace) -> Path | None:
    """Where --save-profile will write, checked now (exit 2 before anything runs); None without it."""
    import os

    from .. import profiles
    from ..sources import find_files

    if args.save_profile is None:
        if args.save_profile_anyway:
            raise UsageError(
                "--save-profile-anyway saves nothing without --save-profile NAME", hint="add --save-profile NAME"
            )
        return None
    profiles.check_name(args.save_profile)
    home, cwd = Path.home(), Path.cwd()
    path = profiles.target(os.environ, home, cwd)
    profiles.check(path, args.save_profile, tuple(p for _, p in find_files(os.environ, home, cwd)))
    return path


def _at(results, largest: int) -> str:
    """Where the winner is picked: "at batch 128" (a factory), "for the run as a whole" (a script)."""
    return "for the run as a whole" if results.kind == "script" else f"at batch {largest}"


def _not_saved_because(results, pick, largest: int) -> list[str]:
    """Why the decision at the largest batch size is not one to save: an empty list when it is one."""
    from ..compare.decision import Outcome

    reasons = []
    if results.interrupted:
        reasons.append("the run was interrupted")
    missing = [
        c
        for c in results.cells
        if c.batch == largest and not c.ok and not c.status.startswith(("unavailable", "dropped"))
    ]
    if missing:
        shown = "; ".join(f"{results.column(c)}: {c.status}" for c in missing[:3])
        reasons.append(f"the run is incomplete {_at(results, largest)} ({shown}{'; ...' if len(missing) > 3 else ''})")
    elif not results.complete and not results.interrupted:
        reasons.append("the run is incomplete")
    decision = pick.decision
    if decision.outcome is Outcome.ONLY:
        reasons.append(
            f"{results.column(decision.chosen)} is the only configuration measured {_at(results, largest)}: "
            "nothing to compare it with"
        )
    elif not decision.decided:
        reasons.append(f"the recommendation does not decide ({decision.why(results.column)})")
    return reasons


def save_winner(results, name: str, path: Path, anyway: bool = False) -> bool:
    """Write the configuration the recommendation decides on at the largest batch size as a profile (with
    ``anyway``, the fastest measured when it does not decide), or say on stderr why nothing was saved; False
    only when saving was due and failed."""
    import os

    from .. import profiles
    from ..compare import recommend

    largest = max(results.batch_sizes)
    pick = next((p for p in recommend(results) if p.batch == largest), None)
    decision = None if pick is None else pick.decision
    if pick is None or decision is None:
        what = "was measured" if pick is None else "measured"
        print(
            f"devswitch: profile '{name}' not saved: no configuration {what} {_at(results, largest)} (the largest)"
            + ("" if pick is None else " is within --max-error"),
            file=sys.stderr,
        )
        return True
    reasons = _not_saved_because(results, pick, largest)
    if reasons and not anyway:
        print(
            f"devswitch: profile '{name}' not saved: {'; '.join(reasons)}. The fastest measured "
            f"{_at(results, largest)} was {results.column(decision.leader)}; pass --save-profile-anyway to save it "
            "all the same",
            file=sys.stderr,
        )
        return True
    chosen = decision.leader if reasons else decision.chosen  # --save-profile-anyway: the fastest measured
    settings = dataclasses.replace(pick, decision=dataclasses.replace(decision, chosen=chosen)).switch(
        results.several_backends
    )
    try:
        written = profiles.add(path, name, settings, _profile_note(results, decision, chosen, reasons))
    except (OSError, DevswitchError) as error:
        print(f"devswitch: error: profile '{name}' not saved: {error}", file=sys.stderr)
        return False
    shown = str(path) if os.path.abspath(path) == str(written) else f"{path} (a link to {written})"
    why = (
        f"although {'; '.join(reasons)} (--save-profile-anyway)"
        if reasons
        else f"recommended {_at(results, largest)}"
        + ("" if results.kind == "script" else ", the largest")
        + f": {'faster than the baseline' if decision.outcome.value == 'switch' else 'the fastest'}, decisively"
    )
    print(
        f"devswitch: saved profile '{name}' ({', '.join(f'{k}={v}' for k, v in settings.items())}: {why}) to "
        f"{shown}; run it with DEVSWITCH_PROFILE={name} python train.py",
        file=sys.stderr,
    )
    return True


def _profile_note(results, decision, chosen, reasons: list[str]) -> str:
    """The saved profile's comment: what was saved, from which compare, and with what lead (or why anyway)."""
    largest = max(results.batch_sizes)
    rate = chosen.throughput
    ev, against = decision.evidence, decision.against
    lead = (
        ""
        if ev is None or against is None or reasons
        else f", {ev.value:.2f}x {'the baseline' if against is decision.baseline else 'the next'}, "
        f"{results.column(against)}"
    )
    shown_rate = f"{1 / rate:,.2f} s wall" if results.kind == "script" else f"{rate:,.1f} {results.model.unit}/s"
    command = "devswitch tune" if "tune" in results.options else "devswitch compare"  # the same rules and writer
    return (
        f"{command} {results.model.target}: {results.column(chosen)}, "
        f"{'the fastest measured' if reasons else 'recommended'} {_at(results, largest)} ({shown_rate}"
        f"{lead})" + (f"; saved with --save-profile-anyway: {'; '.join(reasons)}" if reasons else "")
    )
