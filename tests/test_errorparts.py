"""tests/errorparts.py, the helpers that assert an error by its stable parts: each refuses a wrong part."""

from __future__ import annotations

import pytest
from errorparts import parts, printed

from _devswitch.errors import ConfigError, DeviceError, UsageError

ERROR = ConfigError("unknown key 'devcie'", where="/p/.devswitchrc:1:1", hint="did you mean 'device'?")
SHOWN = f"devswitch: note: something first\ndevswitch: error: {ERROR}\n"


def test_parts_passes_on_the_right_parts_and_returns_the_error():
    """The class, its exit code, the source, a quoted key and the hint's fix: all as the error has them."""
    assert parts(ERROR, ConfigError, where="/p/.devswitchrc:1:1", named=["'devcie'"], fix="'device'") is ERROR


@pytest.mark.parametrize(
    "kind, where, named, fix, exit_code",
    [
        pytest.param(DeviceError, None, (), None, None, id="another class"),
        pytest.param(UsageError, None, (), None, 3, id="another exit code"),
        pytest.param(ConfigError, "/p/.devswitchrc:2:1", (), None, None, id="another source"),
        pytest.param(ConfigError, None, ["'device'x"], None, None, id="a key not named"),
        pytest.param(ConfigError, None, (), "'precision'", None, id="a fix the hint does not name"),
    ],
)
def test_parts_fails_on_a_wrong_part(kind, where, named, fix, exit_code):
    with pytest.raises(AssertionError):
        parts(ERROR, kind, where=where, named=named, fix=fix, exit_code=exit_code)


def test_parts_fails_on_an_error_without_a_hint():
    with pytest.raises(AssertionError, match="no hint"):
        parts(ConfigError("bad"), ConfigError)


def test_printed_reads_the_parts_of_a_printed_error():
    """The source, the message after it and the hint are read from what the command line printed."""
    shown = printed(SHOWN, where="/p/.devswitchrc:1:1", named=["'devcie'"], fix="'device'")
    assert (shown.where, shown.message, shown.hint) == ("/p/.devswitchrc:1:1", ERROR.message, ERROR.hint)
    assert printed(SHOWN).message == f"/p/.devswitchrc:1:1: {ERROR.message}"  # no source asked: all of the line


@pytest.mark.parametrize(
    "text, where, named, fix",
    [
        pytest.param(SHOWN, "/p/.devswitchrc:2:1", (), None, id="another source"),
        pytest.param(SHOWN, None, ["'precision'"], None, id="a value not named"),
        pytest.param(SHOWN, None, ["did you mean"], None, id="a word of the hint is not the message"),
        pytest.param(SHOWN, None, (), "'precision'", id="a fix the hint does not name"),
        pytest.param("devswitch: error: bad\n", None, (), None, id="no hint"),
        pytest.param("nothing went wrong\n", None, (), None, id="no error"),
        pytest.param(SHOWN + "Traceback (most recent call last):\n", None, (), None, id="a traceback"),
    ],
)
def test_printed_fails_on_a_wrong_part(text, where, named, fix):
    with pytest.raises(AssertionError):
        printed(text, where=where, named=named, fix=fix)
