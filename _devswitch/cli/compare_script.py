"""``devswitch compare --script SCRIPT [options] -- [its arguments]`` (and ``-m MODULE``): the script's side.

The script as a source of columns: the workload (a script or a module, found before any framework starts) and
the caps of its fits, checked before anything runs (exit code 2); the rest of the options is
``compare_options``. The one ``compare`` command (cli/compare.py) runs it with ``compare.script.run_scripts``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from .common import _number
from .compare_options import FACTORY_DEFAULTS, SCRIPT_CAPS, flag, given, options_from_args


def script_job(args: argparse.Namespace):
    """The ScriptJob the options describe, checked before anything runs (UsageError, exit 2)."""
    from ..compare.script import ScriptJob

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
    factory = given(args, FACTORY_DEFAULTS)  # given, whatever the value: an explicit default is refused too
    if factory:
        raise UsageError(
            f"{', '.join(factory)}: a factory's benchmark option; a script runs its own calls",
            hint="cap the script's fits with --max-epochs / --max-steps instead",
        )
    if args.script is not None and not Path(args.script).is_file():
        raise UsageError(
            f"--script {args.script}: no such script", hint="give the path of a Python file, or -m MODULE for a module"
        )
    if args.script_module is not None:
        check_module(args.script_module)
    caps = {
        name: None if getattr(args, name) is None else _number(flag(name), getattr(args, name), int, 1)
        for name in SCRIPT_CAPS
    }
    target = args.script if args.script is not None else args.script_module
    options = options_from_args(args, script=target)
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
