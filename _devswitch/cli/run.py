"""``devswitch run``: run an unmodified Keras script under the switch."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from ..errors import UsageError
from .common import add_switch_options, explicit_from_args

# python, python3, python3.11, python.exe: how `uv run`, `poetry run` and `hatch run` name the interpreter
_PYTHON = re.compile(r"python(?P<version>\d+(\.\d+)?)?(\.exe)?", re.IGNORECASE)


def run_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "run",
        help="run an unmodified Keras script under the switch",
        description="Run SCRIPT (or -m MODULE) under the switch, as 'python SCRIPT ARGS...' would: the "
        "configuration is resolved first and applied when the script imports Keras. Switch options go before "
        "the script; everything after it is the script's own. 'devswitch run python train.py' (or python3, or "
        "the path of this interpreter) is the same as 'devswitch run train.py'.",
        usage="devswitch run [switch options] [python] (SCRIPT | -m MODULE) [ARGS...]",
    )
    add_switch_options(parser)
    parser.add_argument("-m", dest="module", action="store_true", help="run a module, like python -m")
    parser.add_argument("target", metavar="SCRIPT", help="the script (or module with -m) to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    return parser


def _env_root(executable: str) -> str | None:
    """The virtual environment an interpreter belongs to (the folder with pyvenv.cfg), or None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(executable)))
    return root if os.path.isfile(os.path.join(root, "pyvenv.cfg")) else None


def is_this_python(name: str) -> bool:
    """Whether ``name`` (python, python3.11, a path) is the interpreter running devswitch: a bare name whose
    version (if any) is this one's, or a path to this executable in this same environment."""
    version = _PYTHON.fullmatch(os.path.basename(name))
    if version is None:
        return False
    if os.sep not in name and (os.altsep is None or os.altsep not in name):
        wanted = version.group("version")
        major, minor = sys.version_info[:2]
        return wanted in (None, str(major), f"{major}.{minor}")
    here = sys.executable
    return (
        os.path.isfile(name) and os.path.realpath(name) == os.path.realpath(here) and _env_root(name) == _env_root(here)
    )


def unwrap_python(target: str, rest: list[str], module: bool) -> tuple[str, list[str], bool]:
    """``devswitch run python train.py`` -> (train.py, its arguments, False); ``python -m pkg`` -> (pkg, ...,
    True). Another interpreter is refused: devswitch runs the script inside its own."""
    if module or not _PYTHON.fullmatch(os.path.basename(target)):
        return target, rest, module
    if not is_this_python(target):
        raise UsageError(
            f"{target} is not the Python that runs devswitch ({sys.executable}, Python "
            f"{sys.version_info.major}.{sys.version_info.minor}): devswitch runs the script inside its own "
            "interpreter",
            hint=f"run devswitch with that interpreter ({target} -m devswitch run SCRIPT), or drop {target!r}",
        )
    if rest[:1] == ["-m"] and len(rest) > 1:
        return rest[1], rest[2:], True
    if not rest or rest[0].startswith("-"):
        given = f"the option {rest[0]!r}" if rest else "nothing"
        raise UsageError(
            f"devswitch run {target}: expected a script or -m MODULE after {target}, got {given}",
            hint=f"devswitch run {target} train.py [ARGS...] or devswitch run {target} -m package.module; "
            "interpreter options are not taken (set PYTHONUNBUFFERED and the like in the environment)",
        )
    return rest[0], rest[1:], False


def run_command(args: argparse.Namespace) -> int:
    from .. import session
    from ..launch import run_target

    target, rest, module = unwrap_python(args.target, list(args.args), args.module)
    if not module and not Path(target).is_file():
        raise UsageError(f"no such script: {target}", hint="give the path of a Python file, or -m MODULE for a module")
    session.begin(explicit_from_args(args))  # the rest is applied when the script imports Keras
    return run_target(target, rest, module=module)
