"""``devswitch init``: write a commented .devswitchrc."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import UsageError


def init_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("init", help="write a commented .devswitchrc here (or in ~ with --user)")
    parser.add_argument("--user", action="store_true", help="write ~/.devswitchrc instead of ./.devswitchrc")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


def init_command(args: argparse.Namespace) -> int:
    """Write the example file through ``files.edit``, the writer of ``--save-profile``: locked, atomic, the
    file's mode kept, a symbolic link followed to an existing target (and kept a link); refused, with the
    file untouched: a dangling link, a read-only file (even with --force), a folder or other non-regular
    file, and a file with several names (hard links), see ``files.writable_target``."""
    from ..docs import render_example
    from ..files import edit, writable_target

    target = (Path.home() if args.user else Path.cwd()) / ".devswitchrc"
    writable_target(target)  # refusals first: a read-only or linked file is not "already there" to force
    if os.path.lexists(target) and not args.force:
        raise UsageError(
            f"{target} already exists; nothing was written", hint="pass --force to overwrite it, or edit it by hand"
        )

    def change(text: str | None) -> str:
        if text is not None and not args.force:  # created by someone else since the check above
            raise UsageError(
                f"{target} already exists; nothing was written", hint="pass --force to overwrite it, or edit it by hand"
            )
        return render_example()

    written = edit(target, change)
    print(f"wrote {target}" if written == Path(os.path.abspath(target)) else f"wrote {written} (through {target})")
    return 0
