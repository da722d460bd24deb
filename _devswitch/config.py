"""Pure resolution of all sources into one frozen Config.

``resolve(environ, home, cwd, explicit)`` is a function of its arguments only (it
reads the files it finds under ``home`` and ``cwd``), so tests build any
configuration without touching the real environment. Precedence, lowest first:

    default < ~/.devswitchrc < project .devswitchrc (nearest upward from cwd)
            < DEVSWITCH_FLAGS < DEVSWITCH_<KEY> < explicit arguments

``DEVSWITCHRC=path[:path...]`` replaces the two files (later paths win). A
selected profile applies at the level of the file that defines it, just above
that file's own top-level values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import rcfile, sources
from .errors import ConfigError, quote
from .settings import BY_NAME, ENV_DISABLE, SETTINGS, Invalid, Unclean, closest, lookalike_note
from .sources import Entry, Layer


@dataclass(frozen=True)
class Value:
    """One resolved setting: the value, the kind of source, and exactly where it was set."""

    value: Any
    source: str
    location: str

    def to_dict(self) -> dict:
        value = self.value._asdict() if hasattr(self.value, "_asdict") else self.value
        return {"value": value, "source": self.source, "location": self.location}


@dataclass(frozen=True)
class Config:
    """The resolved, immutable configuration. ``cfg.device`` is a value, ``cfg["device"]`` a Value."""

    values: Mapping[str, Value]
    files: tuple[str, ...] = ()
    disabled: bool = False
    profiles: tuple[str, ...] = field(default=())

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name].value
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Value:
        return self.values[name]

    def to_dict(self) -> dict:
        return {name: v.to_dict() for name, v in self.values.items()}


def _parse(entry: Entry) -> Any:
    setting = BY_NAME[entry.key]
    try:
        return setting.parse(entry.raw)
    except Unclean as exc:
        raise ConfigError(
            f"invalid value {quote(entry.raw)} for '{entry.key}': it {exc.problem}",
            where=entry.where,
            hint="remove it: values are plain text (in YAML, an escape in "
            "quotes such as \\e, \\0, \\x85 or \\u2028 is that same character)",
        ) from None
    except Invalid as exc:
        default = str(setting.default).lower() if isinstance(setting.default, bool) else str(setting.default)
        lookalike = lookalike_note(entry.raw)
        if lookalike:
            hint = lookalike
        else:
            hint = (
                f"did you mean {exc.suggestion!r}? " if exc.suggestion else ""
            ) + f"fix it there, or remove it to use the default ({default or 'none'})"
        raise ConfigError(
            f"invalid value {quote(entry.raw)} for '{entry.key}': expected {exc.expected}", where=entry.where, hint=hint
        ) from None


def explicit_layer(explicit: Mapping[str, Any], where: str | Mapping[str, str] = "devswitch.configure") -> Layer:
    """Explicit arguments as a Layer; ``where`` names the argument (e.g. ``--device``) per key or for all."""
    entries = []
    for key, raw in explicit.items():
        place = where.get(key, key) if isinstance(where, Mapping) else f"{where}({key}=...)"
        if key not in BY_NAME:
            guess = closest(key, list(BY_NAME))
            raise ConfigError(
                f"unknown setting {quote(key)}",
                where=place,
                hint=(f"did you mean '{guess}'? " if guess else "") + "valid: " + ", ".join(BY_NAME),
            )
        entries.append(Entry(key, raw, place))
    return Layer(sources.EXPLICIT, tuple(entries))


def _check_project_report(report: Value, file_layers: list[Layer], cwd: Path) -> None:
    """A project file comes with whatever repository was cloned: it may name a report inside its own folder
    only. Refused: an absolute path, a path whose '..' leaves the folder (read from the project file's
    folder, so wherever the script starts), and one that a symbolic link takes outside it (where the
    report would really be written: from the working directory, links resolved). Its lock file beside it
    (``<report>.lock``) is checked as well: a symbolic link there, shipped with the repository, is refused
    rather than left for the writer to trip on."""
    if report.value in ("off", "summary") or not report.source.startswith(sources.PROJECT_FILE):
        return
    folder = next(
        Path(layer.path).parent
        for layer in file_layers
        if layer.source == sources.PROJECT_FILE and layer.path is not None
    )
    path = report.value
    if os.path.isabs(path):
        why = "is an absolute path"
    elif os.path.normpath(path).split(os.sep)[0] == os.pardir:
        why = "leaves the project's folder through '..'"
    else:
        real, inside = os.path.realpath(cwd / path), os.path.realpath(folder)
        lock = Path(real + ".lock")
        if os.path.commonpath([real, inside]) != inside:
            why = f"leads outside the project's folder through a symbolic link (to {real})"
        elif os.path.islink(lock):
            why = (
                f"has a symbolic link for its lock file ({lock} -> {os.readlink(lock)}), which devswitch "
                f"never follows; remove the link"
            )
        else:
            return
    raise ConfigError(
        f"'report' {quote(path)} {why}; a project .devswitchrc comes with whatever repository was "
        f"cloned and may name a report only inside its own folder ({folder})",
        where=report.location,
        hint="name a file inside the project (report: results.jsonl), or set the path in "
        "~/.devswitchrc, DEVSWITCH_REPORT or the --report option",
    )


_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")


def is_disabled(environ: Mapping[str, str]) -> bool:
    """DEVSWITCH_DISABLE, read before anything else: when set, devswitch reads and validates nothing."""
    value = environ.get(ENV_DISABLE, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ConfigError(
        f"invalid value {quote(environ[ENV_DISABLE])}: expected 1/0 (true/false, yes/no, on/off)",
        where=ENV_DISABLE,
        hint=f"export {ENV_DISABLE}=1 to turn devswitch off, or unset it",
    )


def resolve(
    environ: Mapping[str, str], home: Path, cwd: Path, explicit: Mapping[str, Any] | Layer | None = None
) -> Config:
    """Resolve every source into a Config; raises ConfigError naming the source of any bad input."""
    file_layers = [rcfile.read_file(path, source) for source, path in sources.find_files(environ, home, cwd)]
    layers: list[Layer] = [*file_layers, *sources.read_env(environ)]
    if explicit:
        layers.append(explicit if isinstance(explicit, Layer) else explicit_layer(explicit))
    defined = {name: layer.profile_where[name] for layer in file_layers for name in layer.profiles}
    profile = _profile(layers, defined)
    resolved = _layered(layers, profile)
    _check_workers(resolved["workers"])
    _check_project_report(resolved["report"], file_layers, cwd)
    if resolved["backend"].value == "auto":  # what Keras itself would pick, and from where
        resolved["backend"] = _keras_backend(resolved["backend"], environ, home)
    return Config(
        MappingProxyType(resolved),
        files=tuple(layer.path for layer in file_layers if layer.path is not None),  # a file's layer has its path
        disabled=is_disabled(environ),
        profiles=tuple(defined),
    )


def _profile(layers: list[Layer], defined: Mapping[str, str]) -> str:
    """Which profile? Resolved like any setting, from files, variables and arguments; "" for none."""
    profile_entry = None
    for layer in layers:
        for entry in layer.entries:
            if entry.key == "profile":
                profile_entry = entry
    profile = _parse(profile_entry) if profile_entry else ""
    if profile_entry is not None and profile and profile not in defined:
        guess = closest(profile, list(defined))
        known = ", ".join(f"{n} ({w})" for n, w in defined.items()) or "none (no file defines 'profiles:')"
        raise ConfigError(
            f"unknown profile {quote(profile)}",
            where=profile_entry.where,
            hint=(f"did you mean '{guess}'? " if guess else "") + f"profiles defined: {known}",
        )
    return profile


def _layered(layers: list[Layer], profile: str) -> dict[str, Value]:
    """Every setting's value from the last layer (or selected profile in it) that sets it, else its default."""
    resolved = {s.name: Value(s.default, sources.DEFAULT, "built-in default") for s in SETTINGS}
    for layer in layers:
        ordered = [(layer.source, e) for e in layer.entries]
        if profile in layer.profiles:
            ordered += [(f"{layer.source} (profile {profile})", e) for e in layer.profiles[profile]]
        # validate every profile, selected or not, so a typo never waits for the day it is selected
        for body in layer.profiles.values():
            for entry in body:
                _parse(entry)
        for source, entry in ordered:
            resolved[entry.key] = Value(_parse(entry), source, entry.where)
    return resolved


def _check_workers(workers: Value) -> None:
    if workers.value and workers.source.startswith(sources.PROJECT_FILE):
        # a project file comes with whatever repository was cloned: it must not point this machine at
        # someone else's cluster (multi_worker connects to these addresses)
        raise ConfigError(
            "'workers' is not taken from a project .devswitchrc: a cloned repository could make "
            "this script connect to any host",
            where=workers.location,
            hint="set the cluster in ~/.devswitchrc, DEVSWITCH_WORKERS, --workers or TF_CONFIG",
        )


def _keras_backend(via: Value, environ: Mapping[str, str], home: Path) -> Value:
    """``backend: auto`` made concrete: what Keras itself would pick, and from where."""
    chosen = sources.keras_backend(environ, home)
    name: str | None
    try:
        name = BY_NAME["backend"].parse(chosen.raw)
    except Invalid:
        name = None
    if name in (None, "auto"):
        raise ConfigError(
            f"Keras backend {quote(chosen.raw)} is not one devswitch drives",
            where=chosen.where,
            hint="use tensorflow, jax or torch (KERAS_BACKEND=jax, or backend: jax in .devswitchrc)",
        )
    source = "Keras" if via.source == sources.DEFAULT else f"{via.source}: auto -> Keras"
    return Value(name, source, chosen.where)
