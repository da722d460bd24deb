"""What several commands share: the switch options (one flag per setting) and checked number/list options."""

from __future__ import annotations

import argparse

from ..config import explicit_layer
from ..errors import UsageError
from ..settings import SETTINGS

# --- switch options shared by commands: one flag per setting, from the declaration -------


def add_switch_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("switch options (highest precedence; same values as .devswitchrc)")
    for setting in SETTINGS:
        group.add_argument(
            "--" + setting.name.replace("_", "-"),
            dest=setting.name,
            metavar="VALUE",
            default=argparse.SUPPRESS,
            help=f"{setting.allowed} (default {'none' if setting.default is None else setting.default})",
        )


def explicit_from_args(args: argparse.Namespace):
    given = {s.name: getattr(args, s.name) for s in SETTINGS if hasattr(args, s.name)}
    return explicit_layer(given, {name: "--" + name.replace("_", "-") for name in given})


def _number(option: str, text: str, kind=int, minimum=0):
    import math

    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < minimum:  # nan and inf are not durations
        raise UsageError(
            f"{option}: '{text}' is not a {'whole ' if kind is int else ''}number >= {minimum}",
            hint=f"e.g. {option} {max(minimum, 1)}",
        )
    return value


def _items(option: str, text: str, parse) -> tuple:
    from ..settings import Invalid

    items = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise UsageError(f"{option}: empty item in '{text}'", hint=f"e.g. {option} cpu,gpu")
        try:
            items.append(parse(item))
        except Invalid as error:
            hint = f"did you mean '{error.suggestion}'?" if error.suggestion else None
            raise UsageError(f"{option}: '{item}' is not valid: expected {error.expected}", hint=hint) from None
    if len(set(items)) != len(items):
        raise UsageError(f"{option}: '{text}' names an item twice", hint="list each once")
    return tuple(items)
