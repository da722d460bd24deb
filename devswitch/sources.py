"""Readers for the places settings come from. File and environment I/O only.

Each reader returns ``Layer`` objects: the raw, not yet validated entries of one
source, each with its exact location (``path:line:col`` or the variable name).
YAML is read with PyYAML's safe loader only; tags that would construct Python
objects are refused before anything runs.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError, clip, quote
from .settings import (BY_NAME, ENV_FLAGS, ENV_PREFIX, ENV_RC, NAMES, PROFILE_NAME, PROFILES_KEY, SPECIAL_ENV,
                       closest, lookalike_note)

RC_NAME = ".devswitchrc"

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

MAX_FILE_BYTES = 1 << 20      # 1 MiB: a real .devswitchrc is well under 10 KiB
MAX_DEPTH = 32                # nesting of lists/mappings; devswitch's own schema needs 4
MAX_VALUES = 10_000           # values after alias expansion (anchors to share settings stay cheap)
MAX_EXPANDED_CHARS = 4 * MAX_FILE_BYTES  # characters of all scalars after alias expansion
MAX_NUMBER_DIGITS = 30

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"


class _Limit(yaml.MarkedYAMLError):
    """A bound of untrusted input was reached; reported like a YAML error, with its place."""


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader with bounded nesting and YAML 1.2 numbers.

    YAML 1.1 (PyYAML's default) reads ``4:2`` as the base-60 integer 242, ``010`` as octal 8 and
    ``off`` as false; the documented ``threads: INTRA:INTER`` and ``report: off`` must stay what they
    say, so scalars are typed the YAML 1.2 (core schema) way: decimal, ``0o`` octal, ``0x`` hexadecimal
    numbers, and only ``true``/``false`` as booleans (the settings' own parsers accept yes/no/on/off).
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT, _BOOL)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    yaml_constructors = dict(yaml.SafeLoader.yaml_constructors)

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        # the composer recurses once per level: stop long before Python's recursion limit
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Limit(None, None, f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            if self._nodes > MAX_VALUES:
                raise _Limit(None, None, f"more than {MAX_VALUES} values", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        digits = text.lstrip("+-")
        if len(digits) > MAX_NUMBER_DIGITS:
            raise _Limit(None, None, f"a number of {len(digits)} digits is out of range", node.start_mark)
        sign = -1 if text.startswith("-") else 1
        if digits.startswith("0o"):
            return sign * int(digits[2:], 8)
        if digits.startswith("0x"):
            return sign * int(digits[2:], 16)
        return sign * int(digits, 10)


Loader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", re.ASCII),
                             list("-+0123456789"))
Loader.add_implicit_resolver(_FLOAT, re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    re.ASCII), list("-+0123456789."))
Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Loader.add_constructor(_INT, Loader.construct_yaml_int)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand past MAX_VALUES values or MAX_EXPANDED_CHARS characters.

    The composer shares an aliased node instead of copying it, so the file itself is small; it is
    whatever walks the values afterwards (a parser, ``str()`` in a message) that would expand it.
    """
    values = chars = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        values += 1
        if values > MAX_VALUES or depth > MAX_DEPTH:
            what = (f"more than {MAX_VALUES} values" if values > MAX_VALUES else
                    f"nesting deeper than {MAX_DEPTH} levels")
            raise _Limit(None, None, f"YAML aliases expand this file to {what}", node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            chars += len(node.value)
            if chars > MAX_EXPANDED_CHARS:
                raise _Limit(None, None, f"YAML aliases expand this file to more than {MAX_EXPANDED_CHARS} "
                             "characters", node.start_mark)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend(((key, depth + 1), (value, depth + 1)))


def _at(path: str, node: yaml.Node) -> str:
    mark = node.start_mark
    return f"{path}:{mark.line + 1}:{mark.column + 1}"


def _kind(node: yaml.Node) -> str:
    return {yaml.SequenceNode: "a list", yaml.ScalarNode: "a single value"}.get(type(node), "not a mapping")


def _plain_key(key_node: yaml.Node) -> str | None:
    """A mapping key written as a plain string (not a number, null, list or mapping), else None."""
    if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str" and key_node.value:
        return key_node.value
    return None


def _merged(path: str, mapping: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
    """The mapping's own entries, plus those of ``<<: *anchor`` merge keys that it does not set itself."""
    own = [(k, v) for k, v in mapping.value if not (isinstance(k, yaml.ScalarNode) and k.tag.endswith(":merge"))]
    merges = [v for k, v in mapping.value if isinstance(k, yaml.ScalarNode) and k.tag.endswith(":merge")]
    sources = []
    for value in merges:
        for source in (value.value if isinstance(value, yaml.SequenceNode) else [value]):
            if not isinstance(source, yaml.MappingNode):
                raise ConfigError("'<<' must name a mapping (<<: *anchor)", where=_at(path, source),
                                  hint="anchor a mapping of settings: base: &base {device: gpu}")
            sources.append(source)
    names = {_plain_key(k) for k, _ in own}
    inherited: list[tuple[yaml.Node, yaml.Node]] = []
    for source in sources:  # the first merged mapping wins, as in YAML's merge-key spec
        for key, value in _merged(path, source):
            name = _plain_key(key)
            if name not in names:
                names.add(name)
                inherited.append((key, value))
    return inherited + own


def _construct(loader: Loader, path: str, key: str, value_node: yaml.Node) -> Any:
    try:
        return loader.construct_object(value_node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        if value_node.tag.startswith("tag:yaml.org,2002:python/") or not value_node.tag.startswith("tag:yaml.org"):
            raise ConfigError(f"refused YAML tag {quote(value_node.tag)} for '{key}': devswitch loads YAML "
                              "with a safe loader and never constructs Python objects",
                              where=_at(path, value_node), hint="write a plain value") from None
        raise ConfigError(f"cannot read the value of '{key}': {exc.problem}", where=_at(path, value_node),
                          hint="write a plain value") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp with month 13
        raise ConfigError(f"cannot read the value of '{key}': {clip(str(exc))}", where=_at(path, value_node),
                          hint="write a plain value, quoted if need be") from None


def _entries(loader: Loader, path: str, mapping: yaml.MappingNode, *, in_profile: str | None):
    entries: list[Entry] = []
    profiles: dict[str, tuple[Entry, ...]] = {}
    profile_where: dict[str, str] = {}
    seen: dict[str, str] = {}
    for key_node, value_node in _merged(path, mapping):
        where = _at(path, key_node)
        key = _plain_key(key_node)
        if key is None:
            raise ConfigError("a key must be a plain name such as 'device'", where=where,
                              hint=_valid_keys_hint(""))
        if key in seen:
            raise ConfigError(f"key '{quote(key)[1:-1]}' is given twice (first at {seen[key]})", where=where,
                              hint="keep one of them")
        seen[key] = where
        if key == PROFILES_KEY:
            if in_profile is not None:
                raise ConfigError(f"profile '{in_profile}' cannot define profiles", where=where,
                                  hint="profiles can only be defined at the top level of a file")
            if not isinstance(value_node, yaml.MappingNode):
                raise ConfigError("'profiles' must be a mapping of name -> settings", where=where,
                                  hint="profiles:\n    gpu:\n      device: gpu")
            for name_node, body in _merged(path, value_node):
                name = _plain_key(name_node)
                if name is None or not PROFILE_NAME.fullmatch(name):
                    raise ConfigError(f"profile name {quote(name if name else name_node.value)} is not a plain "
                                      "name", where=_at(path, name_node),
                                      hint="name profiles with letters, digits, '_', '-' or '.', e.g. gpu_fast")
                if name in profiles:
                    raise ConfigError(f"profile '{name}' is defined twice (first at {profile_where[name]})",
                                      where=_at(path, name_node), hint="keep one of them, or rename one")
                if not isinstance(body, yaml.MappingNode):
                    raise ConfigError(f"profile '{name}' must be a mapping of settings, it is {_kind(body)}",
                                      where=_at(path, name_node), hint=f"{name}:\n      device: gpu")
                profiles[name] = _entries(loader, path, body, in_profile=name)[0]
                profile_where[name] = _at(path, name_node)
            continue
        if key not in BY_NAME:
            raise ConfigError(f"unknown key {quote(key)}", where=where, hint=_valid_keys_hint(key))
        if key == "profile" and in_profile is not None:
            raise ConfigError(f"profile '{in_profile}' cannot select another profile", where=where,
                              hint="remove 'profile:' from inside the profile")
        entries.append(Entry(key, _construct(loader, path, key, value_node), _at(path, value_node)))
    return tuple(entries), profiles, profile_where


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def read_bounded(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; anything else is a ConfigError naming it.

    Opened non-blocking, so a FIFO in the file's place cannot hang us; /dev/zero and friends are
    refused by their type before a byte is read; the read stops at ``limit + 1`` bytes whatever the
    file claims its size is.
    """
    name = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:
        broken = isinstance(exc, FileNotFoundError) and os.path.islink(path)
        raise ConfigError(f"cannot open the file: {'a broken symbolic link' if broken else _why(exc)}", where=name,
                          hint="make it a readable file, or remove it") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((label for test, label in _FILE_KINDS if test(info.st_mode)), "not a regular file")
            raise ConfigError(f"is {kind}, not a regular file: devswitch reads only regular files", where=name,
                              hint="replace it with a YAML file, or remove it")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {_why(exc)}", where=name,
                          hint="make it a readable file, or remove it") from None
    finally:
        os.close(fd)
    if size > limit:
        raise ConfigError(f"the file is larger than {limit // 1024} KiB (a .devswitchrc holds a few settings)",
                          where=name, hint="is this the right file? keep only devswitch's settings in it")
    return b"".join(chunks)


def _why(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else clip(str(exc))


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f"{line}:{index - (text.rfind(chr(10), 0, index) + 1) + 1}"


_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE


def read_file(path: Path, source: str) -> Layer:
    """Read one ``.devswitchrc`` into a Layer; every problem is a ConfigError naming the file."""
    name = str(path)
    data = read_bounded(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", where=name,
                          hint="save the file as UTF-8 YAML") from None
    bad = _NON_PRINTABLE.search(text)
    if bad:
        char = bad.group()
        label = unicodedata.name(char, "") or {0: "NUL", 7: "BEL", 8: "BACKSPACE", 0x1B: "ESCAPE"}.get(
            ord(char), "a control character")
        raise ConfigError(f"control character U+{ord(char):04X} ({label}) is not allowed in YAML",
                          where=f"{name}:{_position(text, bad.start())}",
                          hint="remove it; a .devswitchrc is plain text")
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:  # an empty file (or only comments): all defaults
            return Layer(source, path=name)
        _check_expansion(node)
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"the top level must be a mapping of settings (key: value), found {_kind(node)}",
                              where=_at(name, node), hint="write e.g.\n    device: gpu\n    precision: half")
        entries, profiles, profile_where = _entries(loader, name, node, in_profile=None)
    except _Limit as exc:
        mark = exc.problem_mark
        raise ConfigError(f"refused: {exc.problem}", where=f"{name}:{mark.line + 1}:{mark.column + 1}",
                          hint=f"devswitch bounds what a file may ask of it (at most {MAX_FILE_BYTES // 1024} "
                               f"KiB, {MAX_DEPTH} levels of nesting, {MAX_VALUES} values after aliases); "
                               "is this file really a .devswitchrc?") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = clip(exc.problem or exc.context or "malformed YAML")
        hint = "fix the YAML syntax (indentation, a ':' after each key, quotes)"
        if "'\\t'" in (exc.problem or "") or (mark and mark.buffer and "\t" in _line(text, mark.line)):
            hint = "YAML indents with spaces, not tabs: replace the tab(s) on that line with spaces"
        raise ConfigError(f"malformed YAML: {problem}", where=where, hint=hint) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {clip(str(exc))}", where=name, hint="fix the YAML syntax") from None
    except RecursionError:  # a belt to the depth limit's braces
        raise ConfigError(f"refused: nesting deeper than {MAX_DEPTH} levels", where=name,
                          hint="is this file really a .devswitchrc?") from None
    finally:
        loader.dispose()
    return Layer(source, entries, profiles, profile_where, path=name)


def _line(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line] if 0 <= line < len(lines) else ""


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
            raise ConfigError(f"{quote(part)}: there is no user {quote(user)} to expand '~{user}' for",
                              where=ENV_RC, hint="write the full path, or ~/ for your own home") from None
    return Path(part)


def _exists(path: Path, where: str) -> bool:
    """Whether anything is at ``path`` (a broken link counts: reading it then says so); OS errors are ConfigErrors."""
    try:
        os.lstat(path)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot check {clip(str(path))}: {_why(exc)}", where=where,
                          hint=f"fix the path or its permissions, or set {ENV_RC} to the file to read") from None


def find_files(environ: Mapping[str, str], home: Path, cwd: Path) -> list[tuple[str, Path]]:
    """The files to read, lowest precedence first: DEVSWITCHRC, or ~/.devswitchrc then the nearest project file."""
    if environ.get(ENV_RC):
        found = []
        for part in environ[ENV_RC].split(os.pathsep):
            if not part:
                continue
            path = _expand_user(part, home)
            if not path.is_absolute():
                path = cwd / path
            if not _exists(path, ENV_RC):
                raise ConfigError(f"file not found: {clip(str(path))}", where=ENV_RC,
                                  hint=f"create it with 'devswitch init', fix the path, or unset {ENV_RC}")
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
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if "=" not in token:
            if entries and ((token.isascii() and token.isdigit() and entries[-1].key == "device") or
                            (":" in token and entries[-1].key == "workers")):
                last = entries[-1]  # lists keep their commas: device=gpu:0,1 / workers=a:1,b:2
                entries[-1] = Entry(last.key, f"{last.raw},{token}", last.where)
                continue
            guess = next((n for n in NAMES if token.lower().startswith(n)), None)
            hint = (f"did you mean '{guess}={quote(token[len(guess):])[1:-1]}'?" if guess else
                    "write " + example("device=gpu,precision=fp16"))
            raise ConfigError(f"{quote(token)} is not KEY=VALUE", where=where, hint=hint)
        key, _, value = (part.strip() for part in token.partition("="))
        if not key:
            raise ConfigError(f"{quote(token)} has no key before '='", where=where,
                              hint="write " + example(f"device={quote(value)[1:-1]}") if value else None)
        if key not in BY_NAME:
            raise ConfigError(f"unknown key {quote(key)}", where=where, hint=_valid_keys_hint(key))
        if not value:
            raise ConfigError(f"{quote(token)} has no value after '='", where=where,
                              hint=f"allowed for {key}: {BY_NAME[key].allowed}")
        entries.append(Entry(key, value, f"{where} ({key})"))
    return tuple(entries)


def read_env(environ: Mapping[str, str]) -> list[Layer]:
    """DEVSWITCH_FLAGS, then one variable per key; unknown DEVSWITCH_* variables are errors, not ignored."""
    layers = []
    if environ.get(ENV_FLAGS, "").strip():
        layers.append(Layer(FLAGS, parse_flags(environ[ENV_FLAGS])))
    entries = []
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var in SPECIAL_ENV:
            continue
        key = var[len(ENV_PREFIX):].lower()
        if key not in BY_NAME:
            known = [s.env for s in BY_NAME.values()] + list(SPECIAL_ENV)
            guess = closest(var, known)
            raise ConfigError(f"unknown variable {quote(var)[1:-1]}", where=quote(var)[1:-1],
                              hint=(f"did you mean {guess}? " if guess else "") + "known: " + ", ".join(known))
        if environ[var] == "":
            continue  # an empty variable counts as unset, as in most tools
        entries.append(Entry(key, environ[var], var))
    if entries:
        layers.append(Layer(ENV, tuple(entries)))
    return layers
