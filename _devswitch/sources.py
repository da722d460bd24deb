"""Where settings come from: the files to read, keras.json, DEVSWITCH_* and the one flag parser.

Each reader returns ``Layer`` objects: the raw, not yet validated entries of one
source, each with its exact location (``path:line:col`` or the variable name).
One file is read by ``rcfile.read_file`` (bounded, PyYAML's safe loader only).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, char_name, clip, quote
from .files import read_bounded
from .files import why as _why
from .settings import (
    BY_NAME,
    ENV_FLAGS,
    ENV_PREFIX,
    ENV_RC,
    MAX_DEVICES,
    MAX_WORKERS,
    NAMES,
    PROFILES_KEY,
    SPECIAL_ENV,
    UNSAFE,
    closest,
    lookalike_note,
)

RC_NAME = ".devswitchrc"
MAX_RC_FILES = 16  # files in DEVSWITCHRC
MAX_FLAGS = 64  # KEY=VALUE entries in DEVSWITCH_FLAGS (or one %devswitch line)

# Source names, lowest precedence first (the order of the README's table).
DEFAULT = "default"
USER_FILE = "user file"
PROJECT_FILE = "project file"
RC_FILE = "DEVSWITCHRC file"
FLAGS = ENV_FLAGS
ENV = "env var"
EXPLICIT = "explicit"


@dataclass(frozen=True)
class Entry:
    key: str
    raw: Any
    where: str


@dataclass(frozen=True)
class Layer:
    source: str
    entries: tuple[Entry, ...] = ()
    profiles: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)
    profile_where: Mapping[str, str] = field(default_factory=dict)
    path: str | None = None


def _valid_keys_hint(key: str) -> str:
    keys = ", ".join(list(NAMES) + [PROFILES_KEY])
    lookalike = lookalike_note(key)
    if lookalike:
        return f"{lookalike}; valid keys: {keys}"
    guess = closest(key, list(NAMES) + [PROFILES_KEY])
    return (f"did you mean '{guess}'? " if guess else "") + f"valid keys: {keys}"


# --- YAML files ----------------------------------------------------------------
#
# A .devswitchrc is found automatically from the working directory upward, so a file in a cloned
# repository is untrusted input. PyYAML's safe loader constructs no Python objects, but it happily
# reads a FIFO forever, a 50 MB file, nesting deep enough to overflow Python's stack, and aliases that
# expand to billions of values ("billion laughs"). Every one of those limits is enforced here, before
# any value reaches a parser or an error message.


def _expand_user(part: str, home: Path) -> Path:
    """``~`` and ``~/x`` against the resolver's ``home``; ``~user/x`` through the password database."""
    if part == "~" or part.startswith("~/"):
        return home / part[2:]
    if part.startswith("~"):
        user, _, rest = part[1:].partition("/")
        try:
            import pwd

            return Path(pwd.getpwnam(user).pw_dir) / rest
        except (KeyError, ImportError, ValueError):
            raise ConfigError(
                f"{quote(part)}: there is no user {quote(user)} to expand '~{user}' for",
                where=ENV_RC,
                hint="write the full path, or ~/ for your own home",
            ) from None
    return Path(part)


def _exists(path: Path, where: str) -> bool:
    """Whether anything is at ``path`` (a broken link counts: reading it then says so); OS errors are ConfigErrors."""
    try:
        os.lstat(path)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot check {clip(str(path))}: {_why(exc)}",
            where=where,
            hint=f"fix the path or its permissions, or set {ENV_RC} to the file to read",
        ) from None


def find_files(environ: Mapping[str, str], home: Path, cwd: Path) -> list[tuple[str, Path]]:
    """The files to read, lowest precedence first: DEVSWITCHRC, or ~/.devswitchrc then the nearest project file."""
    if environ.get(ENV_RC):
        found = []
        parts = [part for part in environ[ENV_RC].split(os.pathsep) if part]
        if len(parts) > MAX_RC_FILES:
            raise ConfigError(
                f"names {len(parts)} files; at most {MAX_RC_FILES} are read",
                where=ENV_RC,
                hint=f"list at most {MAX_RC_FILES} files, separated by '{os.pathsep}' (later "
                "files win); merge the rest into one",
            )
        for part in parts:
            bad = UNSAFE.search(part)
            if bad:
                raise ConfigError(
                    f"the path {quote(part)} holds {char_name(bad.group())} at position {bad.start() + 1}",
                    where=ENV_RC,
                    hint="rename the file, or fix the variable",
                )
            path = _expand_user(part, home)
            if not path.is_absolute():
                path = cwd / path
            if not _exists(path, ENV_RC):
                raise ConfigError(
                    f"file not found: {clip(str(path))}",
                    where=ENV_RC,
                    hint=f"create it with 'devswitch init', fix the path, or unset {ENV_RC}",
                )
            found.append((RC_FILE, path))
        return found
    files = []
    user = home / RC_NAME
    has_user = _exists(user, f"~/{RC_NAME} (HOME={clip(str(home))})")
    if has_user:
        files.append((USER_FILE, user))
    for folder in [cwd, *cwd.parents]:
        candidate = folder / RC_NAME
        if _exists(candidate, str(candidate)):
            if not (has_user and os.path.abspath(candidate) == os.path.abspath(user)):
                files.append((PROJECT_FILE, candidate))
            break
    return files


# --- what Keras itself would pick --------------------------------------------------

KERAS_BACKEND = "KERAS_BACKEND"


def keras_json(environ: Mapping[str, str], home: Path) -> Path:
    """Where Keras reads keras.json: $KERAS_HOME, else ~/.keras (Keras uses /tmp/.keras when ~ is read-only)."""
    if environ.get("KERAS_HOME"):
        return Path(environ["KERAS_HOME"]) / "keras.json"
    base = home if os.access(home, os.W_OK) else Path("/tmp")
    return base / ".keras" / "keras.json"


def keras_backend(environ: Mapping[str, str], home: Path) -> Entry:
    """The backend Keras would pick, with where that choice comes from (an Entry for the 'backend' key)."""
    if environ.get(KERAS_BACKEND):
        return Entry("backend", environ[KERAS_BACKEND], KERAS_BACKEND)
    path = keras_json(environ, home)
    if not _exists(path, str(path)):
        return Entry("backend", "tensorflow", "Keras' default (no keras.json)")
    import json

    text = read_bounded(path).decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # Keras itself ignores a malformed keras.json
        return Entry("backend", "tensorflow", f"Keras' default ({path} is not valid JSON)")
    if not isinstance(data, dict) or "backend" not in data:
        return Entry("backend", "tensorflow", f"Keras' default ({path} names no backend)")
    line = next((i for i, row in enumerate(text.splitlines(), 1) if '"backend"' in row), 1)
    return Entry("backend", data["backend"], f"{path}:{line}")


# --- environment -----------------------------------------------------------------


def parse_flags(text: str, where: str = ENV_FLAGS) -> tuple[Entry, ...]:
    """``DEVSWITCH_FLAGS="device=gpu:0,1,precision=fp16"`` -> entries (a bare index continues a GPU list).

    ``where`` names the flags' origin in messages and locations (``%devswitch`` parses its line here too).
    """

    def example(flags: str) -> str:
        return f'{where}="{flags}"' if where == ENV_FLAGS else f"{where} {flags.replace(',', ' ')}"

    entries: list[Entry] = []
    items: list[list[str]] = []  # each entry's value, with the list items that continue it
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if "=" not in token:
            if entries and (
                (token.isascii() and token.isdigit() and entries[-1].key == "device")
                or (":" in token and entries[-1].key == "workers")
            ):
                bound = MAX_DEVICES if entries[-1].key == "device" else MAX_WORKERS
                if len(items[-1]) >= bound:
                    raise ConfigError(
                        f"'{entries[-1].key}' lists more than {bound} items",
                        where=where,
                        hint=f"allowed for {entries[-1].key}: {BY_NAME[entries[-1].key].allowed}",
                    )
                items[-1].append(token)  # lists keep their commas: device=gpu:0,1 / workers=a:1,b:2
                continue
            guess = next((n for n in NAMES if token.lower().startswith(n)), None)
            hint = (
                f"did you mean '{guess}={quote(token[len(guess) :])[1:-1]}'?"
                if guess
                else "write " + example("device=gpu,precision=fp16")
            )
            raise ConfigError(f"{quote(token)} is not KEY=VALUE", where=where, hint=hint)
        key, _, value = (part.strip() for part in token.partition("="))
        if not key:
            raise ConfigError(
                f"{quote(token)} has no key before '='",
                where=where,
                hint="write " + example(f"device={quote(value)[1:-1]}") if value else None,
            )
        if key not in BY_NAME:
            raise ConfigError(f"unknown key {quote(key)}", where=where, hint=_valid_keys_hint(key))
        if not value:
            raise ConfigError(
                f"{quote(token)} has no value after '='", where=where, hint=f"allowed for {key}: {BY_NAME[key].allowed}"
            )
        if len(entries) >= MAX_FLAGS:
            raise ConfigError(
                f"more than {MAX_FLAGS} KEY=VALUE entries",
                where=where,
                hint=f"give each setting once; there are {len(NAMES)} settings",
            )
        entries.append(Entry(key, value, f"{where} ({key})"))
        items.append([value])
    return tuple(Entry(e.key, ",".join(parts), e.where) for e, parts in zip(entries, items, strict=True))


def read_env(environ: Mapping[str, str]) -> list[Layer]:
    """DEVSWITCH_FLAGS, then one variable per key; unknown DEVSWITCH_* variables are errors, not ignored."""
    layers = []
    if environ.get(ENV_FLAGS, "").strip():
        layers.append(Layer(FLAGS, parse_flags(environ[ENV_FLAGS])))
    entries = []
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var in SPECIAL_ENV:
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key not in BY_NAME:
            known = [s.env for s in BY_NAME.values()] + list(SPECIAL_ENV)
            guess = closest(var, known)
            raise ConfigError(
                f"unknown variable {quote(var)[1:-1]}",
                where=quote(var)[1:-1],
                hint=(f"did you mean {guess}? " if guess else "") + "known: " + ", ".join(known),
            )
        if environ[var] == "":
            continue  # an empty variable counts as unset, as in most tools
        entries.append(Entry(key, environ[var], var))
    if entries:
        layers.append(Layer(ENV, tuple(entries)))
    return layers
