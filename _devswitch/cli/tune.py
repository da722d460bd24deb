"""``devswitch tune``: the fastest configuration of a model (a factory) or of a whole script, by racing.

The same parser groups as ``compare`` (its axes, its factory's and script's options, its output and
recommendation), read by the same ``compare_options``; the race adds ``--budget`` and ``--max-loss-change``.
The race is ``compare.tune``'s; the decision, the result files and ``--save-profile`` are compare's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys

from ..errors import UsageError
from .common import _number
from .compare import (
    _columns_group,
    _factory_group,
    _measuring_group,
    _output_group,
    _profile_file,
    _recommendation_group,
    _script_group,
    _stoppable,
    factory_options,
    publish,
    save_and_exit_code,
)

DEFAULT_BUDGET = "5m"
DEFAULT_MAX_ROUNDS = 20  # tune's --rounds: the most rounds a race takes
SAMPLES_PER_ROUND = 10  # tune's --iterations default: this many timed steps per round and batch size
TUNE_BATCH_SIZES = "128"  # one batch size by default: the decision is at the largest anyway
UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def tune_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "tune",
        help="find the fastest configuration by racing: the slower ones dropped after each round",
        description="Race the configurations of a compare (backends x devices x precisions x --vary) in "
        "rounds, dropping after each round those significantly slower than the leader, until one leads "
        "decisively or --budget ends; prints the winner and the switch that selects it, and writes a "
        "compare's results (every round; dropped rows marked with their reason).",
    )
    _factory_group(parser)
    _script_group(parser)
    _columns_group(parser)
    _measuring_group(parser)
    _output_group(parser)
    _recommendation_group(parser)
    group = parser.add_argument_group("race", "how long the race may take and what may not win it")
    group.add_argument(
        "--budget",
        default=None,
        metavar="TIME",
        help=f"the wall time the tune may take, e.g. 90s, 5m, 1h (default {DEFAULT_BUDGET}); a round is started "
        "only when it (as long as the last) and the finish still fit; with tune, --rounds is the most rounds "
        f"(default {DEFAULT_MAX_ROUNDS})",
    )
    group.add_argument(
        "--max-loss-change",
        default=None,
        metavar="X",
        help="with --script: a configuration whose final loss (the last epoch of the script's last fit) differs "
        "from the baseline's by more than X relatively (e.g. 0.05) cannot win; a MODEL's guard is --max-error",
    )
    return parser


def parse_budget(text: str) -> float:
    """'90s', '5m', '1h', '1.5min', '120' (seconds) as seconds; a UsageError otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h)?\s*", text or "")
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(
            f"--budget {text!r}: not a time", hint="give a positive number of seconds, minutes or hours: 90s, 5m, 1h"
        )
    return float(match.group(1)) * UNITS[match.group(2) or ""]


def _tune_defaults(args: argparse.Namespace, script: bool) -> None:
    """tune's own defaults, where compare's would not race well (set only where the option was not given)."""
    if args.rounds is None:
        args.rounds = str(DEFAULT_MAX_ROUNDS)
    if script:
        return
    rounds = _number("--rounds", args.rounds, int, 2)
    if args.iterations is None:
        args.iterations = str(rounds * SAMPLES_PER_ROUND)
    if args.batch_sizes is None:
        args.batch_sizes = TUNE_BATCH_SIZES
    if args.min_time not in (None, "0"):
        raise UsageError(
            f"--min-time {args.min_time}: tune times each turn as a whole, so every configuration must take the "
            "same steps in a round",
            hint="drop --min-time; raise --iterations for longer rounds",
        )
    for name in ("no_predict_baseline", "no_peak_probe"):  # not what a race needs; given, they stay as given
        if getattr(args, name) is None:
            setattr(args, name, True)


def tune_command(args: argparse.Namespace) -> int:
    """Race, write the results as compare's, print the winner and its switch, save the profile if asked."""
    from ..compare import prepare_output
    from ..compare.decision import Rules
    from ..compare.tune import TuneOptions, run_tune, run_tune_script, winner_lines
    from ..render.compare import render_markdown
    from ..render.escape import safe
    from ..render.outputs import write_outputs
    from .compare_script import script_job

    script = args.script is not None or args.script_module is not None or bool(args.script_args)
    budget = parse_budget(args.budget if args.budget is not None else DEFAULT_BUDGET)
    if args.max_loss_change is not None and not script:
        raise UsageError(
            "--max-loss-change guards a script's final loss", hint="with a MODEL, bound its error with --max-error"
        )
    _tune_defaults(args, script)
    job = script_job(args) if script else None
    options = job.options if job is not None else factory_options(args)
    if options.rounds < 2:
        raise UsageError(f"--rounds {options.rounds}: a race needs 2 rounds or more", hint="use --rounds 5 or more")
    max_loss = None if args.max_loss_change is None else _number("--max-loss-change", args.max_loss_change, float, 0)
    tune = TuneOptions(budget, options.rounds, Rules(min_speedup=options.min_speedup), options.max_error, max_loss)
    profile_file = _profile_file(args)
    output = prepare_output(options.out, options.force)
    options = dataclasses.replace(
        options, out=str(output.path), command=("devswitch", *args.argv), round_records=job is None
    )
    live = _live_status() if sys.stderr.isatty() else None

    def progress(line: str) -> None:
        print(safe(line), file=sys.stderr, flush=True)

    def show(line: str) -> None:
        if live is not None:
            live.update(safe(line))  # one updating line on a terminal
        else:
            print(safe(line), file=sys.stderr, flush=True)

    def run():
        if job is not None:
            return run_tune_script(
                dataclasses.replace(job, options=options), tune, progress, output.work, output.path, show
            )
        return run_tune(options, tune, progress, output.work, show)

    try:
        results = _stoppable(run, live)
    finally:
        output.close()
    notes = publish(results, output.path, render_markdown(results), write_outputs)
    if notes is None:
        return UsageError.exit_code
    for line in winner_lines(results):
        print(safe(line))
    print(f"devswitch: wrote results.json, results.csv, results.md, results.html to {output.path}", file=sys.stderr)
    return save_and_exit_code(results, args, profile_file)


def _live_status():
    from rich.console import Console

    return Console(stderr=True).status("devswitch tune: starting")
