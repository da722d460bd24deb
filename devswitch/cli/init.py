"""``devswitch init``: write a commented .devswitchrc."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError


def init_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("init", help="write a commented .devswitchrc here (or in ~ with --user)")
    parser.add_argument("--user", action="store_true", help="write ~/.devswitchrc instead of ./.devswitchrc")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


def init_command(args: argparse.Namespace) -> int:
    from ..docs import render_example

    target = (Path.home() if args.user else Path.cwd()) / ".devswitchrc"
    if target.exists() and not args.force:
        raise UsageError(
            f"{target} already exists; nothing was written", hint="pass --force to overwrite it, or edit it by hand"
        )
    target.write_text(render_example(), encoding="utf-8")
    print(f"wrote {target}")
    return 0
