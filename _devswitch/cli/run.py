"""``devswitch run``: run an unmodified Keras script under the switch."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from .common import add_switch_options, explicit_from_args


def run_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "run",
        help="run an unmodified Keras script under the switch",
        description="Run SCRIPT (or -m MODULE) with devswitch applied first, as 'python SCRIPT ARGS...' would. "
        "Switch options go before the script; everything after it is the script's own.",
        usage="devswitch run [switch options] (SCRIPT | -m MODULE) [ARGS...]",
    )
    add_switch_options(parser)
    parser.add_argument("-m", dest="module", action="store_true", help="run a module, like python -m")
    parser.add_argument("target", metavar="SCRIPT", help="the script (or module with -m) to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    return parser


def run_command(args: argparse.Namespace) -> int:
    from .. import session
    from ..launch import run_target

    if not args.module and not Path(args.target).is_file():
        raise UsageError(
            f"no such script: {args.target}", hint="give the path of a Python file, or -m MODULE for a module"
        )
    session.activate(explicit_from_args(args))
    return run_target(args.target, args.args, module=args.module)
