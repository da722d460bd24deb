"""Writing a profile into a project's ``.devswitchrc`` without destroying what the user wrote there.

The file is edited as text (comments, order and other keys are kept): the new profile is inserted under
an existing block-style ``profiles:`` key, or a ``profiles:`` block is appended. The result is read back
with devswitch's own bounded reader before it replaces the file (atomically), so a write never leaves a
file that devswitch itself would refuse.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Mapping

from .errors import ConfigError, UsageError
from .settings import PROFILE_NAME
from .rcfile import read_file
from .sources import RC_NAME

_PROFILES_LINE = re.compile(r"^profiles:[ \t]*(#.*)?$")


def check(path: Path, name: str) -> None:
    """Refuse, before anything runs, a profile that could not be saved: a bad name, a name already
    defined, a file devswitch cannot read, or ``profiles:`` in a style it cannot extend."""
    if not PROFILE_NAME.fullmatch(name) or not name:
        raise UsageError(f"--save-profile {name!r}: a profile name is letters, digits, '_', '-' or '.'",
                         hint="e.g. --save-profile fastest")
    if not path.exists():
        return
    try:
        layer = read_file(path, "project file")
    except ConfigError as error:
        raise UsageError(f"cannot add a profile to {path}: {error.message}", hint="fix the file first, or run "
                         "compare in another folder") from None
    if name in layer.profiles:
        raise UsageError(f"profile '{name}' is already defined in {path} ({layer.profile_where[name]})",
                         hint="choose another name with --save-profile, or remove the old profile first")
    text = path.read_text(encoding="utf-8")
    if layer.profiles and not any(_PROFILES_LINE.match(line) for line in text.splitlines()):
        raise UsageError(f"{path} writes 'profiles:' in flow style ({{...}}); devswitch adds to block style only",
                         hint="add the profile by hand, or write profiles: as a block (one profile per line)")


def add(path: Path, name: str, settings: Mapping[str, str], comment: str) -> None:
    """Add profile ``name`` with ``settings`` to the file at ``path`` (created if missing)."""
    check(path, name)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.splitlines()
    at = next((i for i, line in enumerate(lines) if _PROFILES_LINE.match(line)), None)
    if at is None:
        block = ["profiles:", *_entry(name, settings, comment, "  ")]
        lines = (lines + [""] if lines and lines[-1].strip() else lines) + block
    else:
        following = next((line for line in lines[at + 1:] if line.strip() and not line.lstrip().startswith("#")),
                         "")
        indent = re.match(r"^[ ]*", following).group() if following.startswith(" ") else "  "
        lines[at + 1:at + 1] = _entry(name, settings, comment, indent)
    new = "\n".join(lines) + "\n"
    _write_checked(path, new, name)


def _entry(name: str, settings: Mapping[str, str], comment: str, indent: str) -> list[str]:
    return [f"{indent}# {comment}", f"{indent}{name}:",
            *(f"{indent}  {key}: {value}" for key, value in settings.items())]


def _write_checked(path: Path, text: str, name: str) -> None:
    folder = path.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{RC_NAME}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        layer = read_file(Path(temporary), "project file")  # what devswitch will read is what we wrote
        if name not in layer.profiles:
            raise UsageError(f"the profile could not be added to {path} (devswitch would not read it back)",
                             hint="add it by hand")
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _umask() -> int:
    """The process umask, read from /proc where possible (setting it to read it is process-wide)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022
