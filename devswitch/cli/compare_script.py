"""``devswitch compare --script SCRIPT [options] -- [its arguments]`` (and ``-m MODULE``): the command.

Every option is checked before anything runs (exit code 2): the script, the caps, the matrix, the output
folder and the profile. The run itself is ``compare.script.run_scripts``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..errors import UsageError
from .common import _number

# Options that shape a factory's benchmark, with their defaults: a script runs its own calls.
FACTORY_ONLY = {
    "batch_sizes": "1,128",
    "mode": "inference",
    "warmup": "5",
    "iterations": "20",
    "min_time": "0",
    "accuracy_samples": "32",
    "max_error": "",
    "no_predict_baseline": False,
    "no_peak_probe": False,
}
DEFAULT_SCRIPT_ROUNDS = 1  # a script's run is long: one run per configuration unless --rounds says more


def script_job(args: argparse.Namespace):
    """The ScriptJob the options describe, checked before anything runs (UsageError, exit 2)."""
    from ..compare.script import ScriptJob
    from .compare import options_from_args

    if args.script is None and args.script_module is None:
        raise UsageError(
            "arguments after -- are the script's own: name the script",
            hint="compare --script train.py [options] -- --epochs 3, or -m package.module",
        )
    if args.script is not None and args.script_module is not None:
        raise UsageError("--script and -m both name the workload", hint="give one of them")
    if args.target is not None:
        raise UsageError(
            f"--script compares a whole script, and {args.target!r} is a MODEL (a factory); give one of them",
            hint="drop the MODEL, or drop --script",
        )
    given = [f"--{name.replace('_', '-')}" for name, default in FACTORY_ONLY.items() if getattr(args, name) != default]
    if given:
        raise UsageError(
            f"{', '.join(given)}: a factory's benchmark option; a script runs its own calls",
            hint="cap the script's fits with --max-epochs / --max-steps instead",
        )
    if args.script is not None and not Path(args.script).is_file():
        raise UsageError(
            f"--script {args.script}: no such script", hint="give the path of a Python file, or -m MODULE for a module"
        )
    caps = {
        "max_epochs": _number("--max-epochs", args.max_epochs, int, 1) if args.max_epochs.strip() else None,
        "max_steps": _number("--max-steps", args.max_steps, int, 1) if args.max_steps.strip() else None,
    }
    rounds = _number("--rounds", args.rounds, int, 1) if args.rounds.strip() else DEFAULT_SCRIPT_ROUNDS
    target = args.script if args.script is not None else args.script_module
    checked = argparse.Namespace(
        **{**vars(args), "target": target, "batch_sizes": "1", "rounds": "1", "accuracy_samples": "0"}
    )
    options = dataclasses.replace(options_from_args(checked), rounds=rounds, accuracy_samples=0)
    return ScriptJob(options, target, module=args.script_module is not None, args=tuple(args.script_args), caps=caps)


def script_compare_command(args: argparse.Namespace) -> int:
    from ..compare import prepare_output, write_outputs
    from ..compare.script import run_scripts
    from ..render.compare import render_markdown
    from .compare import _profile_file, finish, publish

    job = script_job(args)
    profile_file = _profile_file(args)
    output = prepare_output(job.options.out, job.options.force)
    job = dataclasses.replace(
        job, options=dataclasses.replace(job.options, out=str(output.path), command=("devswitch", *args.argv))
    )

    def progress(line: str) -> None:
        from ..render.escape import safe

        print(safe(line), file=sys.stderr, flush=True)  # the script's name and its last line, escapes and all

    def save_finished_rows(partial) -> None:
        try:
            write_outputs(partial, output.path, plot=False)
        except OSError as error:
            progress(f"warning: could not write the finished rows to {output.path}: {error}")

    def terminate(signum, frame):
        raise KeyboardInterrupt

    import signal

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        results = run_scripts(job, progress, output.work, output.path, on_update=save_finished_rows)
    finally:
        signal.signal(signal.SIGTERM, previous)
        output.close()
    if publish(results, output.path, render_markdown(results), write_outputs) is None:
        return 1
    print(
        f"devswitch: wrote results.json, results.csv, results.md, results.html and the scripts' logs (logs/) to "
        f"{output.path}",
        file=sys.stderr,
    )
    return finish(results, args, profile_file)
