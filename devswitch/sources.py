"""Readers for the places settings come from. File and environment I/O only.

Each reader returns ``Layer`` objects: the raw, not yet validated entries of one
source, each with its exact location (``path:line:col`` or the variable name).
YAML is read with PyYAML's safe loader only; tags that would construct Python
objects are refused before anything runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError
from .settings import (BY_NAME, ENV_FLAGS, ENV_PREFIX, ENV_RC, NAMES, PROFILES_KEY, SPECIAL_ENV,
                       closest)

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
    guess = closest(key, list(NAMES) + [PROFILES_KEY])
    keys = ", ".join(list(NAMES) + [PROFILES_KEY])
    return (f"did you mean '{guess}'? " if guess else "") + f"valid keys: {keys}"


# --- YAML files ----------------------------------------------------------------

def _at(path: str, node: yaml.Node) -> str:
    mark = node.start_mark
    return f"{path}:{mark.line + 1}:{mark.column + 1}"


def _kind(node: yaml.Node) -> str:
    return {yaml.SequenceNode: "a list", yaml.ScalarNode: "a single value"}.get(type(node), "not a mapping")


def _entries(loader: yaml.SafeLoader, path: str, mapping: yaml.MappingNode, *, in_profile: str | None):
    entries: list[Entry] = []
    profiles: dict[str, tuple[Entry, ...]] = {}
    profile_where: dict[str, str] = {}
    seen: dict[str, str] = {}
    for key_node, value_node in mapping.value:
        where = _at(path, key_node)
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or not key:
            raise ConfigError("a key must be a plain name such as 'device'", where=where,
                              hint=_valid_keys_hint(""))
        if key in seen:
            raise ConfigError(f"key '{key}' is given twice (first at {seen[key]})", where=where,
                              hint="keep one of them")
        seen[key] = where
        if key == PROFILES_KEY:
            if in_profile is not None:
                raise ConfigError(f"profile '{in_profile}' cannot define profiles", where=where,
                                  hint="profiles can only be defined at the top level of a file")
            if not isinstance(value_node, yaml.MappingNode):
                raise ConfigError("'profiles' must be a mapping of name -> settings", where=where,
                                  hint="profiles:\n    gpu:\n      device: gpu")
            for name_node, body in value_node.value:
                name = str(name_node.value)
                if not isinstance(body, yaml.MappingNode):
                    raise ConfigError(f"profile '{name}' must be a mapping of settings, it is {_kind(body)}",
                                      where=_at(path, name_node), hint=f"{name}:\n      device: gpu")
                profiles[name] = _entries(loader, path, body, in_profile=name)[0]
                profile_where[name] = _at(path, name_node)
            continue
        if key not in BY_NAME:
            raise ConfigError(f"unknown key '{key}'", where=where, hint=_valid_keys_hint(key))
        if key == "profile" and in_profile is not None:
            raise ConfigError(f"profile '{in_profile}' cannot select another profile", where=where,
                              hint="remove 'profile:' from inside the profile")
        try:
            raw = loader.construct_object(value_node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise ConfigError(f"refused YAML tag {value_node.tag!r} for '{key}': devswitch loads YAML "
                              "with a safe loader and never constructs Python objects",
                              where=_at(path, value_node), hint="write a plain value") from exc
        entries.append(Entry(key, raw, _at(path, value_node)))
    return tuple(entries), profiles, profile_where


def read_file(path: Path, source: str) -> Layer:
    """Read one ``.devswitchrc`` into a Layer; every problem is a ConfigError naming the file."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", where=name,
                          hint="save the file as UTF-8 YAML") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", where=name,
                          hint="check that it is a readable file, or remove it") from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:  # an empty file (or only comments): all defaults
            return Layer(source, path=name)
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"the top level must be a mapping of settings (key: value), found {_kind(node)}",
                              where=_at(name, node), hint="write e.g.\n    device: gpu\n    precision: half")
        entries, profiles, profile_where = _entries(loader, name, node, in_profile=None)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = exc.problem or exc.context or "malformed YAML"
        raise ConfigError(f"malformed YAML: {problem}", where=where,
                          hint="fix the YAML syntax (indentation, a ':' after each key, quotes)") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", where=name, hint="fix the YAML syntax") from exc
    finally:
        loader.dispose()
    return Layer(source, entries, profiles, profile_where, path=name)


def find_files(environ: Mapping[str, str], home: Path, cwd: Path) -> list[tuple[str, Path]]:
    """The files to read, lowest precedence first: DEVSWITCHRC, or ~/.devswitchrc then the nearest project file."""
    if environ.get(ENV_RC):
        found = []
        for part in environ[ENV_RC].split(os.pathsep):
            if not part:
                continue
            path = Path(part).expanduser()
            if not path.is_absolute():
                path = cwd / path
            if not path.exists():
                raise ConfigError(f"file not found: {path}", where=ENV_RC,
                                  hint=f"create it with 'devswitch init', fix the path, or unset {ENV_RC}")
            found.append((RC_FILE, path))
        return found
    files = []
    user = home / RC_NAME
    if user.exists():
        files.append((USER_FILE, user))
    for folder in [cwd, *cwd.parents]:
        candidate = folder / RC_NAME
        if candidate.exists():
            if not (user.exists() and os.path.abspath(candidate) == os.path.abspath(user)):
                files.append((PROJECT_FILE, candidate))
            break
    return files


# --- environment -----------------------------------------------------------------

def parse_flags(text: str) -> tuple[Entry, ...]:
    """``DEVSWITCH_FLAGS="device=gpu:0,1,precision=fp16"`` -> entries (a bare index continues a GPU list)."""
    entries: list[Entry] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if "=" not in token:
            if entries and ((token.isdigit() and entries[-1].key == "device") or
                            (":" in token and entries[-1].key == "workers")):
                last = entries[-1]  # lists keep their commas: device=gpu:0,1 / workers=a:1,b:2
                entries[-1] = Entry(last.key, f"{last.raw},{token}", last.where)
                continue
            guess = next((n for n in NAMES if token.lower().startswith(n)), None)
            hint = (f"did you mean '{guess}={token[len(guess):]}'?" if guess else
                    f'write {ENV_FLAGS}="device=gpu,precision=fp16"')
            raise ConfigError(f"'{token}' is not KEY=VALUE", where=ENV_FLAGS, hint=hint)
        key, _, value = (part.strip() for part in token.partition("="))
        if not key:
            raise ConfigError(f"'{token}' has no key before '='", where=ENV_FLAGS,
                              hint=f'write {ENV_FLAGS}="device={value}"' if value else None)
        if key not in BY_NAME:
            raise ConfigError(f"unknown key '{key}'", where=ENV_FLAGS, hint=_valid_keys_hint(key))
        if not value:
            raise ConfigError(f"'{token}' has no value after '='", where=ENV_FLAGS,
                              hint=f"allowed for {key}: {BY_NAME[key].allowed}")
        entries.append(Entry(key, value, f"{ENV_FLAGS} ({key})"))
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
            raise ConfigError(f"unknown variable {var}", where=var,
                              hint=(f"did you mean {guess}? " if guess else "") + "known: " + ", ".join(known))
        if environ[var] == "":
            continue  # an empty variable counts as unset, as in most tools
        entries.append(Entry(key, environ[var], var))
    if entries:
        layers.append(Layer(ENV, tuple(entries)))
    return layers
