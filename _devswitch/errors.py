"""One small exception hierarchy. Every user-facing failure is a DevswitchError.

Each error carries the place the bad value came from (``path:line:col`` or an
environment variable), a message, and a hint saying how to fix it. The CLI prints
``str(error)`` and exits with ``error.exit_code`` — never a traceback.
"""

from __future__ import annotations

import re
import reprlib
import unicodedata


class DevswitchError(Exception):
    """Base class: a problem the user can fix, explained in plain words."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.format())

    def format(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return visible(text)  # a path or value in the message never reaches the terminal as a control


class _ShortRepr(reprlib.Repr):
    """``repr`` that never grows with the value: long strings, deep lists and huge numbers are cut."""

    def __init__(self):
        super().__init__()
        self.maxstring = self.maxother = 60
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 4
        self.maxlevel = 2
        self.maxlong = 40

    def repr_int(self, x, level):
        if x.bit_length() > 128:  # repr() of a huge int is slow, and refused past 4300 digits
            return f"<a {'negative ' if x < 0 else ''}number of about {int(x.bit_length() * 0.30103)} digits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()


def quote(value) -> str:
    """A bounded ``repr`` of a user's value for an error message (a 50 MB value is quoted by its start)."""
    try:
        text = _SHORT.repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not replace the real error
        return f"<{type(value).__name__} value>"
    return text if len(text) <= 100 else text[:97] + "..."


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with its control characters, line separators and bidirectional overrides written out (ESC
    as the four characters \\x1b; tabs and newlines kept): a value read from a file never sends an escape
    sequence to a terminal, nor makes a line read differently from what it is."""
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text) if _CONTROL.search(text) else text


_C0 = (
    "NULL|START OF HEADING|START OF TEXT|END OF TEXT|END OF TRANSMISSION|ENQUIRY|ACKNOWLEDGE|BELL|BACKSPACE|"
    "CHARACTER TABULATION|LINE FEED|LINE TABULATION|FORM FEED|CARRIAGE RETURN|SHIFT OUT|SHIFT IN|"
    "DATA LINK ESCAPE|DEVICE CONTROL ONE|DEVICE CONTROL TWO|DEVICE CONTROL THREE|DEVICE CONTROL FOUR|"
    "NEGATIVE ACKNOWLEDGE|SYNCHRONOUS IDLE|END OF TRANSMISSION BLOCK|CANCEL|END OF MEDIUM|SUBSTITUTE|ESCAPE|"
    "FILE SEPARATOR|GROUP SEPARATOR|RECORD SEPARATOR|UNIT SEPARATOR"
).split("|")
_C1 = {
    0x7F: "DELETE",
    0x85: "NEXT LINE (NEL)",
    0x90: "DEVICE CONTROL STRING",
    0x9B: "CONTROL SEQUENCE INTRODUCER",
    0x9C: "STRING TERMINATOR",
    0x9D: "OPERATING SYSTEM COMMAND",
}


def char_name(char: str) -> str:
    """``U+2028 LINE SEPARATOR``: the code point and its Unicode name (control characters by their alias)."""
    code = ord(char)
    name = (
        _C0[code]
        if code < 0x20
        else _C1.get(code)
        or unicodedata.name(char, "")
        or ("a C1 control character" if code <= 0x9F else "unnamed character")
    )
    return f"U+{code:04X} {name}"


def clip(text: str, limit: int = 200) -> str:
    """At most ``limit`` characters of a message taken from elsewhere (a library's error, a value)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Invalid(ValueError):
    """A value a setting does not accept; ``str()`` says what was expected (a parser raises it; config.py turns
    it into a ConfigError naming the source)."""

    def __init__(self, expected: str, suggestion: str | None = None):
        self.expected = expected
        self.suggestion = suggestion
        super().__init__(expected)


class ConfigError(DevswitchError):
    """A setting is malformed, unknown or has a bad value (file, variable or argument)."""

    exit_code = 2


class UsageError(DevswitchError):
    """A command-line invocation is wrong (bad option, missing script, ...)."""

    exit_code = 2


class DeviceError(DevswitchError):
    """The hardware asked for is not there (and ``fallback: error`` is set)."""

    exit_code = 3


class TooLateError(DevswitchError):
    """TensorFlow's runtime was already initialised with a different device set-up."""

    exit_code = 4


class RunError(DevswitchError):
    """A measured run could not complete (crash, out of memory, interrupted)."""

    exit_code = 5


def describe(error: BaseException, limit: int = 200) -> str:
    """One line for a failed run: the exception type and the most telling line of its message.

    TensorFlow wraps errors raised inside a ``tf.function`` as "in user code: ...
    File ... ValueError: message", and Keras as "Exception encountered when calling
    X.call(). <message> Arguments received by ..."; we dig the message out of both.
    """
    return summarize(type(error).__name__, str(error), limit)


def summarize(kind: str, message: str, limit: int = 200) -> str:
    """``describe`` of an exception known by its type's name and its message (as a log shows them)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", message)
    text = text.split("Arguments received by", 1)[0]
    text = text.split("Error encountered:", 1)[-1]  # Keras' "Could not automatically infer the output shape"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [
        line
        for line in lines
        if line != "in user code:"
        and not line.startswith("File ")
        and not line.startswith("Exception encountered when calling")
    ]
    if not lines:
        return kind
    line = lines[-1] if message.lstrip().startswith("in user code:") else lines[0]
    if line.startswith(kind + ":"):
        line = line[len(kind) + 1 :].strip()
    return f"{kind}: {line}"[:limit]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OP = re.compile(r"\s*\[Op:[^\]]*\]$")
_NOT_THE_MESSAGE = (
    "Detected at node",
    "<stack traces unavailable>",
    "[[{{node",
    "[[node",
    "0 successful operations",
    "0 derived errors ignored",
)


def framework_message(text: str) -> str | None:
    """The framework's own message under a header such as TensorFlow's "Graph execution error:" (which is
    followed by where the failing op was defined, then the message, then the op's name), or None when
    ``text`` does not start with such a header."""
    lines = [line.rstrip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].endswith(":") or lines[0].strip() == "in user code:":
        return None
    kept, frame = [], None
    for line in lines[1:]:
        indent, bare = len(line) - len(line.lstrip()), line.strip()
        if frame is not None and indent > frame:
            continue  # the source line under a traceback frame
        frame = indent if bare.startswith("File ") else None
        if frame is None and not bare.startswith(_NOT_THE_MESSAGE):
            kept.append(_OP.sub("", bare))
    return next((line for line in reversed(kept) if line), None)


def error_line(error: BaseException) -> str:
    """ "Type: message" for an exception that ended a user's call or script: its most telling line (for a
    TensorFlow graph error, the framework's own message such as "Matrix size-incompatible: ...", not its
    header; for a Keras error, the message, not the argument list)."""
    message = framework_message(str(error))
    return describe(error) if message is None else clip(f"{type(error).__name__}: {message}")
