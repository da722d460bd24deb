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
    if args.script_module is not None:
        check_module(args.script_module)
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


_FIND_SPEC = """
import importlib.util, sys
try:
    found = importlib.util.find_spec(sys.argv[1])
except ModuleNotFoundError as error:
    print(f"{error}", file=sys.stderr); sys.exit(3)
except Exception as error:
    print(f"{type(error).__name__}: {error}", file=sys.stderr); sys.exit(4)
sys.exit(0 if found is not None else 3)
"""


def check_module(module: str, timeout: float = 60.0) -> None:
    """``-m MODULE`` is found where the workers will look for it (this interpreter, this folder, this
    environment; importlib.util.find_spec in a child, which imports a dotted name's parent packages but not
    the module itself) before any framework starts; a UsageError (exit 2) otherwise."""
    import os
    import subprocess

    from ..errors import clip
    from ..render.escape import safe

    env = {**os.environ, "DEVSWITCH_DISABLE": "1"}  # a package that imports devswitch must not switch here
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _FIND_SPEC, module],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise UsageError(
            f"-m {safe(module)}: looking the module up took more than {timeout:.0f} s (its packages' imports hang?)",
            hint="check that python -m " + safe(module) + " starts here",
        ) from None
    if proc.returncode == 0:
        return
    why = safe(clip(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "not found", 200))
    raise UsageError(
        f"-m {safe(module)}: no such module here ({why}); nothing was run",
        hint=f"run compare where python -m {safe(module)} works (its folder, its virtual environment), or give "
        "--script PATH",
    )


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
        return UsageError.exit_code  # not 1, the report gate's "regression": the files could not be written
    print(
        f"devswitch: wrote results.json, results.csv, results.md, results.html and the scripts' logs (logs/) to "
        f"{output.path}",
        file=sys.stderr,
    )
    return finish(results, args, profile_file)
