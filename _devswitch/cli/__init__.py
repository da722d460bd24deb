"""The ``devswitch`` command: one parser, and one ``<name>_parser`` / ``<name>_command`` pair per sub-command.

Each sub-command lives in its own module here (as accelerate's ``commands/``). A command function takes the
parsed arguments and returns an exit code; every DevswitchError is printed as its message (no traceback)
with its exit code.
"""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from ..errors import DevswitchError
from .compare import compare_command, compare_parser
from .info import info_command, info_parser
from .init import init_command, init_parser
from .report import report_command, report_parser
from .run import run_command, run_parser
from .tune import tune_command, tune_parser

COMMANDS = {
    "info": (info_parser, info_command),
    "init": (init_parser, init_command),
    "run": (run_parser, run_command),
    "compare": (compare_parser, compare_command),
    "report": (report_parser, report_command),
    "tune": (tune_parser, tune_command),
}


def command_index(argv: list[str]) -> int | None:
    """Where the sub-command is in ``argv``: the first token that is not an option (devswitch's own
    options, --version and --help, take no value). None when there is none."""
    for i, token in enumerate(argv):
        if token == "--":
            return i + 1 if i + 1 < len(argv) else None
        if not token.startswith("-"):
            return i
    return None


def _split_run(argv: list[str], start: int) -> list[str]:
    """Put a literal '--' before the script's own arguments so argparse leaves them alone.

    ``start`` is the index of the ``run`` sub-command in ``argv``."""
    i = start + 1
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return argv
        if token == "-m":
            return argv[: i + 2] + ["--"] + argv[i + 2 :] if i + 2 <= len(argv) else argv
        if token.startswith("-"):
            i += 1 if "=" in token or token in ("-h", "--help") else 2
            continue
        return argv[: i + 1] + ["--"] + argv[i + 1 :]
    return argv


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devswitch", description="One switch for device, precision and backend in Keras 3."
    )
    parser.add_argument("--version", action="version", version=f"devswitch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for make_parser, _ in COMMANDS.values():
        make_parser(sub)
    return parser


def parse_args(argv: list[str], parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse the command line; for ``run``, the script's own arguments are left to the script."""
    parser = parser or build_parser()
    at = command_index(argv)
    if at is not None and argv[at] == "run":
        argv = _split_run(argv, at)
    if at is not None and argv[at] in ("compare", "tune") and "--" in argv[at + 1 :]:  # --script S -- its arguments
        cut = argv.index("--", at + 1)
        args = parser.parse_args(argv[:cut])
        args.script_args = tuple(argv[cut + 1 :])
        return args
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv, parser)
    args.argv = tuple(argv)  # the command line as given, for the records (plain data, not sys.argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command][1](args)
    except DevswitchError as error:
        print(f"devswitch: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("devswitch: interrupted", file=sys.stderr)
        return 130
