"""One small exception hierarchy. Every user-facing failure is a DevswitchError.

Each error carries the place the bad value came from (``path:line:col`` or an
environment variable), a message, and a hint saying how to fix it. The CLI prints
``str(error)`` and exits with ``error.exit_code`` — never a traceback.
"""

from __future__ import annotations


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
        return text


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
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    text = text.split("Arguments received by", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if line != "in user code:" and not line.startswith("File ")
             and not line.startswith("Exception encountered when calling")]
    if not lines:
        return type(error).__name__
    line = lines[-1] if str(error).lstrip().startswith("in user code:") else lines[0]
    if line.startswith(type(error).__name__ + ":"):
        line = line[len(type(error).__name__) + 1:].strip()
    return f"{type(error).__name__}: {line}"[:limit]
