"""Saving a profile into the ``.devswitchrc`` the configuration came from, without harming what is there.

Which file: the last one in DEVSWITCHRC when it is set (the one read last, that wins), else the nearest
project file on the search path, else a new ``./.devswitchrc`` (never a new file in a subfolder that would
hide a parent's). The file is edited as text through ``files.edit`` (locked, re-read under the lock, atomic,
through a symbolic link, mode and owner kept, CRLF kept): comments, order and other keys stay as they are;
the profile goes first under a block-style ``profiles:`` (``profiles: {}`` is made a block), or a
``profiles:`` block goes at the end of the document (before a ``...`` end marker). The new file must read
back, with devswitch's own reader, as the old one plus the profile, or nothing is written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from .errors import ConfigError, UsageError, quote, visible
from .files import edit, read_bounded, writable_target
from .rcfile import Loader, read_file
from .settings import ENV_RC, PROFILE_NAME, PROFILES_KEY
from .sources import PROJECT_FILE, RC_NAME, find_files

_NAME_HINT = (
    "a profile name is letters, digits, '_', '-' or '.', begins with a letter, digit or '_', and YAML "
    "reads it as text: e.g. --save-profile fastest"
)
_ODD_BREAKS = re.compile("[\r\x85\u2028\u2029]")
_DOCUMENT_END = re.compile(r"^\.\.\.(?:[ \t]|$)")


def target(environ: Mapping[str, str], home: Path, cwd: Path) -> Path:
    """The file a profile is saved into: where the configuration comes from (see the module docstring)."""
    files = find_files(environ, home, cwd)
    if environ.get(ENV_RC):
        named = [path for _, path in files if os.path.abspath(path) != os.devnull]
        if not named:
            raise UsageError(
                f"{ENV_RC} names no file to save the profile in",
                where=ENV_RC,
                hint=f"name a file in {ENV_RC}, or unset it to save into the project's {RC_NAME}",
            )
        return named[-1]
    project = [path for source, path in files if source == PROJECT_FILE]
    return project[-1] if project else cwd / RC_NAME


def check_name(name: str) -> None:
    """Refuse a profile name that is not plain, or that YAML would read as something else than text
    (``123``, ``true``, ``yes``, ``null``, ``~``, ``.inf``, ``0x1F``: devswitch's reader and other YAML tools)."""
    if not name or not PROFILE_NAME.fullmatch(name) or not (name[0].isalnum() or name[0] == "_"):
        raise UsageError(f"--save-profile {quote(name)}: not a plain name", hint=_NAME_HINT)
    for loader in (yaml.SafeLoader, Loader):
        try:
            keys = list(yaml.load(f"{name}: 1\n", Loader=loader) or {})
        except (yaml.YAMLError, AttributeError, TypeError):
            keys = []
        if keys != [name]:
            read = repr(keys[0]) if keys else "no name at all"
            raise UsageError(
                f"--save-profile {quote(name)}: YAML reads this name as {read}, not as text", hint=_NAME_HINT
            )


def check(path: Path, name: str, others: tuple[Path, ...] = ()) -> None:
    """Refuse, before anything runs, a profile that could not be saved into ``path``: a bad name, a file
    devswitch cannot read or write (or its folder), a name already defined there or in ``others`` (the
    other files read), or a file whose layout devswitch cannot add to."""
    check_name(name)
    writable_target(path)
    for other in others:
        if os.path.abspath(other) != os.path.abspath(path) and os.path.abspath(other) != os.devnull:
            layer = _read(other)
            if name in layer.profiles:
                raise UsageError(
                    f"profile '{name}' is already defined in {other} ({layer.profile_where[name]})",
                    hint="choose another name with --save-profile",
                )
    if not os.path.exists(path):  # a new file (or a dangling link's new target): nothing to read
        return
    layer = _read(path)
    if name in layer.profiles:
        raise UsageError(
            f"profile '{name}' is already defined in {path} ({layer.profile_where[name]})",
            hint="choose another name with --save-profile, or remove the old profile first",
        )
    text = read_bounded(path).decode("utf-8-sig").replace("\r\n", "\n")  # read_file took it: UTF-8
    _insert(text, name, {"device": "cpu"}, "", path)  # the layout is one devswitch can add to


def add(path: Path, name: str, settings: Mapping[str, str], comment: str) -> Path:
    """Add profile ``name`` with ``settings`` (and a comment line) to the file at ``path``, created if missing;
    returns the file written (a symbolic link's target). Everything is checked again under the lock."""
    check_name(name)
    shown = Path(os.path.abspath(path))
    old: dict = {}

    def change(text: str | None) -> str:
        if text is None:
            return "\n".join(["profiles:", *_entry(name, settings, comment, "  ")]) + "\n"
        layer = _read(shown)  # under the lock: what is there now, not what was there when the run began
        if name in layer.profiles:
            raise UsageError(
                f"profile '{name}' is already defined in {shown} ({layer.profile_where[name]})",
                hint="choose another name with --save-profile, or remove the old profile first",
            )
        old["layer"] = layer
        return _insert(text, name, settings, comment, shown)

    def verify(temporary: Path) -> None:
        try:
            new = read_file(temporary, PROJECT_FILE)
        except ConfigError as error:  # named after the user's file: the temporary one is gone by now
            where = (error.where or "").replace(str(temporary), str(shown))
            raise UsageError(
                f"adding the profile would make the file unreadable ({where}: {error.message}); it is unchanged",
                where=str(shown),
                hint="add the profile by hand",
            ) from None
        before = old.get("layer")
        kept = before is None or (
            _values(new.entries) == _values(before.entries)
            and all(_values(new.profiles.get(p, ())) == _values(body) for p, body in before.profiles.items())
        )
        if name not in new.profiles or not kept:
            raise UsageError(
                "adding the profile would change how devswitch reads the rest of the file; it is unchanged",
                where=str(shown),
                hint="add the profile by hand",
            )

    return edit(shown, change, verify=verify)


def _read(path: Path):
    try:
        return read_file(path, PROJECT_FILE)
    except ConfigError as error:
        raise UsageError(
            f"cannot add a profile to it: {error.message}",
            where=error.where or str(path),
            hint=error.hint or "fix the file first, or save the profile elsewhere",
        ) from None


def _values(entries) -> list:
    return [(e.key, repr(e.raw)) for e in entries]


def _entry(name: str, settings: Mapping[str, str], comment: str, indent: str) -> list[str]:
    note = [f"{indent}# {' '.join(visible(comment).split())}"] if comment else []
    return [*note, f"{indent}{name}:", *(f"{indent}  {key}: {value}" for key, value in settings.items())]


def _insert(text: str, name: str, settings: Mapping[str, str], comment: str, path: Path) -> str:
    """``text`` with the profile added (see the module docstring), or a UsageError saying why it cannot be."""

    def refuse(why: str) -> UsageError:
        return UsageError(
            f"cannot add a profile to {path}: {why}",
            hint="add the profile by hand, or write 'profiles:' as a block (one profile per line)",
        )

    if _ODD_BREAKS.search(text):
        raise refuse("it has line breaks other than LF and CRLF")
    loader = Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise refuse(f"devswitch cannot read it ({exc.__class__.__name__})") from None
    finally:
        loader.dispose()
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if root is None:  # empty, or comments and document markers only
        at = next((i for i, line in enumerate(lines) if _DOCUMENT_END.match(line)), len(lines))
        gap = [""] if at and lines[at - 1].strip() else []
        lines[at:at] = gap + ["profiles:", *_entry(name, settings, comment, "  ")]
        return "\n".join(lines) + "\n"
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise refuse("its settings are not a block of 'key: value' lines")
    pair = next(((k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == PROFILES_KEY), None)
    if pair is None:  # a new block at the end of the settings (before a '...' end marker)
        end = root.end_mark
        at = end.line if end.column == 0 else end.line + 1
        base = " " * root.value[0][0].start_mark.column
        gap = [""] if at and lines[at - 1].strip() else []
        lines[at:at] = gap + [f"{base}profiles:", *_entry(name, settings, comment, base + "  ")]
        return "\n".join(lines) + "\n"
    key, body = pair
    if not isinstance(body, yaml.MappingNode):
        raise refuse("'profiles' is not a mapping")
    if body.flow_style:
        if body.value or body.start_mark.line != body.end_mark.line:
            raise refuse("'profiles:' is written in flow style ({...})")
        row = lines[body.start_mark.line]  # profiles: {}  ->  profiles:  (then a block under it)
        lines[body.start_mark.line] = row[: body.start_mark.column].rstrip() + row[body.end_mark.column :]
        indent = " " * (key.start_mark.column + 2)
        at = body.start_mark.line + 1
    else:
        indent = " " * body.value[0][0].start_mark.column
        at = key.start_mark.line + 1
    lines[at:at] = _entry(name, settings, comment, indent)
    return "\n".join(lines) + "\n"
