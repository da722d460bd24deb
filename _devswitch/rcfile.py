"""One ``.devswitchrc`` read into a Layer: bounded bytes, PyYAML's safe loader with limits, entries with lines.

YAML is read with the safe loader only; tags that would construct Python objects are refused, and
a file may not ask for more than MAX_FILE_BYTES, MAX_DEPTH levels of nesting or MAX_VALUES values
after alias expansion.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, char_name, clip, quote
from .files import MAX_FILE_BYTES, read_bounded
from .settings import BY_NAME, PROFILE_NAME, PROFILES_KEY
from .sources import Entry, Layer, _valid_keys_hint

MAX_DEPTH = 32  # nesting of lists/mappings; devswitch's own schema needs 4
MAX_VALUES = 10_000  # values after alias expansion (anchors to share settings stay cheap)
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


Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", re.ASCII), list("-+0123456789")
)
Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        re.ASCII,
    ),
    list("-+0123456789."),
)
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
            what = (
                f"more than {MAX_VALUES} values" if values > MAX_VALUES else f"nesting deeper than {MAX_DEPTH} levels"
            )
            raise _Limit(None, None, f"YAML aliases expand this file to {what}", node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            chars += len(node.value)
            if chars > MAX_EXPANDED_CHARS:
                raise _Limit(
                    None,
                    None,
                    f"YAML aliases expand this file to more than {MAX_EXPANDED_CHARS} characters",
                    node.start_mark,
                )
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
        for source in value.value if isinstance(value, yaml.SequenceNode) else [value]:
            if not isinstance(source, yaml.MappingNode):
                raise ConfigError(
                    "'<<' must name a mapping (<<: *anchor)",
                    where=_at(path, source),
                    hint="anchor a mapping of settings: base: &base {device: gpu}",
                )
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
            raise ConfigError(
                f"refused YAML tag {quote(value_node.tag)} for '{key}': devswitch loads YAML "
                "with a safe loader and never constructs Python objects",
                where=_at(path, value_node),
                hint="write a plain value",
            ) from None
        raise ConfigError(
            f"cannot read the value of '{key}': {exc.problem}", where=_at(path, value_node), hint="write a plain value"
        ) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp with month 13
        raise ConfigError(
            f"cannot read the value of '{key}': {clip(str(exc))}",
            where=_at(path, value_node),
            hint="write a plain value, quoted if need be",
        ) from None
    except (AttributeError, KeyError, IndexError):  # PyYAML's own constructors on e.g. '!!bool x', '!!float _'
        tag = value_node.tag.replace("tag:yaml.org,2002:", "!!")
        raise ConfigError(
            f"cannot read the value of '{key}' as {quote(tag)}",
            where=_at(path, value_node),
            hint="write a plain value, or one the tag accepts (!!bool true, !!float 1.5)",
        ) from None


def _entries(loader: Loader, path: str, mapping: yaml.MappingNode, *, in_profile: str | None):
    entries: list[Entry] = []
    profiles: dict[str, tuple[Entry, ...]] = {}
    profile_where: dict[str, str] = {}
    seen: dict[str, str] = {}
    for key_node, value_node in _merged(path, mapping):
        where = _at(path, key_node)
        key = _plain_key(key_node)
        if key is None:
            raise ConfigError("a key must be a plain name such as 'device'", where=where, hint=_valid_keys_hint(""))
        if key in seen:
            raise ConfigError(
                f"key '{quote(key)[1:-1]}' is given twice (first at {seen[key]})", where=where, hint="keep one of them"
            )
        seen[key] = where
        if key == PROFILES_KEY:
            profiles, profile_where = _profiles(loader, path, where, value_node, in_profile=in_profile)
            continue
        if key not in BY_NAME:
            raise ConfigError(f"unknown key {quote(key)}", where=where, hint=_valid_keys_hint(key))
        if key == "profile" and in_profile is not None:
            raise ConfigError(
                f"profile '{in_profile}' cannot select another profile",
                where=where,
                hint="remove 'profile:' from inside the profile",
            )
        entries.append(Entry(key, _construct(loader, path, key, value_node), _at(path, value_node)))
    return tuple(entries), profiles, profile_where


def _profiles(
    loader: Loader, path: str, where: str, value_node: yaml.Node, *, in_profile: str | None
) -> tuple[dict[str, tuple[Entry, ...]], dict[str, str]]:
    """The ``profiles:`` mapping: each profile's entries, and where each is defined."""
    profiles: dict[str, tuple[Entry, ...]] = {}
    profile_where: dict[str, str] = {}
    if in_profile is not None:
        raise ConfigError(
            f"profile '{in_profile}' cannot define profiles",
            where=where,
            hint="profiles can only be defined at the top level of a file",
        )
    if not isinstance(value_node, yaml.MappingNode):
        raise ConfigError(
            "'profiles' must be a mapping of name -> settings",
            where=where,
            hint="profiles:\n    gpu:\n      device: gpu",
        )
    for name_node, body in _merged(path, value_node):
        name = _plain_key(name_node)
        if name is None or not PROFILE_NAME.fullmatch(name):
            raise ConfigError(
                f"profile name {quote(name if name else name_node.value)} is not a plain name",
                where=_at(path, name_node),
                hint="name profiles with letters, digits, '_', '-' or '.', e.g. gpu_fast",
            )
        if name in profiles:
            raise ConfigError(
                f"profile '{name}' is defined twice (first at {profile_where[name]})",
                where=_at(path, name_node),
                hint="keep one of them, or rename one",
            )
        if not isinstance(body, yaml.MappingNode):
            raise ConfigError(
                f"profile '{name}' must be a mapping of settings, it is {_kind(body)}",
                where=_at(path, name_node),
                hint=f"{name}:\n      device: gpu",
            )
        profiles[name] = _entries(loader, path, body, in_profile=name)[0]
        profile_where[name] = _at(path, name_node)
    return profiles, profile_where


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f"{line}:{index - (text.rfind(chr(10), 0, index) + 1) + 1}"


_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
# What YAML's own check lets through but a reader of the file would not see: NEL, U+2028 and U+2029 are
# line breaks to PyYAML yet not to cat or most editors, nor is a CR without LF (the terminal overwrites
# the line with what follows it); bidirectional overrides, isolates and marks reorder what is shown.
_HIDDEN = re.compile("[\x85\u200e\u200f\u2028-\u202e\u2066-\u2069]|\r(?!\n)")


def read_file(path: Path, source: str) -> Layer:
    """Read one ``.devswitchrc`` into a Layer; every problem is a ConfigError naming the file."""
    name = str(path)
    if os.path.realpath(path) == os.devnull:  # "no configuration file", as git reads /dev/null
        return Layer(source, path=name)
    return _load(_text(read_bounded(path), name), name, source)


def _text(data: bytes, name: str) -> str:
    """The file's text: UTF-8, with no control character and nothing that hides or reorders what is shown."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", where=name, hint="save the file as UTF-8 YAML"
        ) from None
    bad = _NON_PRINTABLE.search(text)
    if bad:
        char = bad.group()
        label = unicodedata.name(char, "") or {0: "NUL", 7: "BEL", 8: "BACKSPACE", 0x1B: "ESCAPE"}.get(
            ord(char), "a control character"
        )
        raise ConfigError(
            f"control character U+{ord(char):04X} ({label}) is not allowed in YAML",
            where=f"{name}:{_position(text, bad.start())}",
            hint="remove it; a .devswitchrc is plain text",
        )
    hidden = _HIDDEN.search(text)
    if hidden:
        char = hidden.group()
        why = (
            "reorders how the text is shown"
            if char not in "\x85\u2028\u2029\r"
            else "is a line break to YAML that cat and most editors do not show"
        )
        raise ConfigError(
            f"{char_name(char)} is not allowed in a .devswitchrc, comments included: it {why}",
            where=f"{name}:{_position(text, hidden.start())}",
            hint="remove it (a line ends with a plain newline); a .devswitchrc is plain text",
        )
    return text


def _load(text: str, name: str, source: str) -> Layer:
    """Parse the YAML (bounded: size, nesting, aliases) into the file's entries and profiles."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:  # an empty file (or only comments): all defaults
            return Layer(source, path=name)
        _check_expansion(node)
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(
                f"the top level must be a mapping of settings (key: value), found {_kind(node)}",
                where=_at(name, node),
                hint="write e.g.\n    device: gpu\n    precision: half",
            )
        entries, profiles, profile_where = _entries(loader, name, node, in_profile=None)
    except _Limit as exc:
        mark = exc.problem_mark  # every _Limit has one
        raise ConfigError(
            f"refused: {exc.problem}",
            where=f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name,
            hint=f"devswitch bounds what a file may ask of it (at most {MAX_FILE_BYTES // 1024} "
            f"KiB, {MAX_DEPTH} levels of nesting, {MAX_VALUES} values after aliases); "
            "is this file really a .devswitchrc?",
        ) from None
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
        raise ConfigError(
            f"refused: nesting deeper than {MAX_DEPTH} levels", where=name, hint="is this file really a .devswitchrc?"
        ) from None
    finally:
        loader.dispose()
    return Layer(source, entries, profiles, profile_where, path=name)


def _line(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line] if 0 <= line < len(lines) else ""
