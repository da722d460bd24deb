"""Assert a devswitch error by its stable parts, not by its English sentence.

A teaching error has parts a test can hold on to whatever its wording becomes: its class (and so its exit code),
the source it names (``where``: ``path:line:col``, a variable, ``devswitch.configure(key=...)``), the key and the
value it quotes, and a hint that names the fix. ``parts(info, ConfigError, where=..., named=(...), fix=...)``
checks those; a test keeps one assertion on the hint's fix so the teaching part cannot silently go away.
``printed(err, where=..., named=(...), fix=...)`` checks the same parts of an error as the command line printed
it (``devswitch: error: <where>: <message>`` and the ``  hint:`` line under it); the exit code is the command's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest

from _devswitch.errors import DevswitchError


def parts(
    caught: pytest.ExceptionInfo[BaseException] | BaseException,
    kind: type[DevswitchError],
    *,
    where: str | None = None,
    named: Iterable[str] = (),
    fix: str | None = None,
    exit_code: int | None = None,
) -> DevswitchError:
    """The error in ``caught``, after asserting: it is a ``kind`` with ``kind``'s exit code (or ``exit_code``),
    its source is ``where`` (exactly), its message quotes each of ``named`` (a key, a value, a number), and it
    has a hint, which names ``fix`` when given; the text a user sees carries the source, the message and
    the hint. Returns the error for further checks."""
    error = caught.value if isinstance(caught, pytest.ExceptionInfo) else caught
    assert isinstance(error, kind), f"{type(error).__name__} is not a {kind.__name__}: {error}"
    assert error.exit_code == (kind.exit_code if exit_code is None else exit_code), str(error)
    if where is not None:
        assert error.where == where, f"the source named is {error.where!r}, not {where!r}: {error}"
    for token in named:
        assert token in error.message, f"{token!r} is not named in: {error.message}"
    assert error.hint, f"no hint: {error}"
    if fix is not None:
        assert fix in error.hint, f"the hint does not name {fix!r}: {error.hint}"
    shown = str(error)
    assert error.message in shown or "\\x" in shown  # (control characters are written out where shown)
    assert shown.startswith(f"{error.where}: ") if error.where else True
    assert "\n  hint: " in shown, shown
    return error


@dataclasses.dataclass(frozen=True)
class Printed:
    """An error as the command line printed it: its source (None when it names none), message and hint."""

    where: str | None
    message: str
    hint: str


PREFIX = "devswitch: error: "


def printed(
    text: str, *, where: str | None = None, named: Iterable[str] = (), fix: str | None = None, prefix: str = PREFIX
) -> Printed:
    """The error printed in ``text`` (a command's stderr or stdout), after asserting: a line starts with ``prefix``
    then, when given, ``where`` and ": " (the first such line is the error); its message (up to the hint)
    quotes each of ``named``; the ``  hint: `` line under it names ``fix`` when given; and no traceback."""
    lines = text.splitlines()
    assert "Traceback (most recent call last)" not in text, text
    found = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert found, f"no {prefix!r} line in: {text}"
    head = f"{where}: " if where is not None else ""
    at = next((i for i in found if lines[i][len(prefix) :].startswith(head)), None)
    assert at is not None, f"no error names {where!r} as its source: {text}"
    ends = [i for i in range(at + 1, len(lines)) if lines[i].startswith("  hint: ")]
    assert ends, f"no hint under the error: {text}"
    message = "\n".join([lines[at][len(prefix) + len(head) :], *lines[at + 1 : ends[0]]])
    hint = lines[ends[0]][len("  hint: ") :]
    for token in named:
        assert token in message, f"{token!r} is not named in: {message}"
    if fix is not None:
        assert fix in hint, f"the hint does not name {fix!r}: {hint}"
    return Printed(where, message, hint)
