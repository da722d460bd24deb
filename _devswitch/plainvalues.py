"""Plain facts about a raw value, shared by every parser: a truth value or a whole number behind whatever type
delivered it (numpy's included, without importing numpy), and the words for a near miss ("did you mean")."""

from __future__ import annotations

import difflib
import operator
import unicodedata
from typing import Any


def closest(word: Any, candidates: list[str] | tuple[str, ...]) -> str | None:
    """The candidate most like ``word`` (for "did you mean"), or None; only short strings are compared."""
    if not isinstance(word, str) or len(word) > 64 or not word.isascii():
        return None  # a look-alike non-ASCII letter gets its own message (lookalike_note), not a guess
    hits = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return hits[0] if hits else None


def lookalike_note(text: Any) -> str | None:
    """Name the first non-ASCII character of a would-be keyword (a Cyrillic 'с' in 'сpu' looks like 'c')."""
    if not isinstance(text, str) or text.isascii():
        return None
    for position, char in enumerate(text[:200]):
        if not char.isascii():
            name = unicodedata.name(char, "unnamed character")
            return (
                f"it contains the non-ASCII character {char!r} (U+{ord(char):04X} {name}) at position "
                f"{position + 1}; settings are plain ASCII: retype it"
            )
    return "it contains non-ASCII characters; settings are plain ASCII: retype it"


def _truth(raw: Any) -> bool | None:
    """A bool from ``True``/``False`` or a numpy bool (without importing numpy), else None."""
    if isinstance(raw, bool):
        return raw
    kind = type(raw)
    return bool(raw) if kind.__module__ == "numpy" and kind.__name__ in ("bool_", "bool") else None


def _whole(raw: Any) -> int | None:
    """An int from an int or an int-like value (numpy integers: anything with ``__index__``); never a bool."""
    if _truth(raw) is not None or isinstance(raw, (str, bytes, float)):
        return None
    if isinstance(raw, int):
        return int(raw)
    try:
        return operator.index(raw)
    except Exception:  # noqa: BLE001 - any object may reach configure(); its __index__ may raise anything
        return None
