"""One function, ``safe``, makes text that devswitch did not write safe for where it is shown.

A script's last error line, a factory's message, a file name, a framework's message or a string read back
from a result file may hold escape sequences (blink, an OSC 8 hyperlink, a title change), other control
characters, newlines, bidirectional overrides, markdown table pipes, HTML, or a CSV cell that a spreadsheet
would run as a formula. Every renderer in ``_devswitch/render/`` and the compare commands' progress lines
pass such text through ``safe`` for their medium; nothing else escapes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any, Literal

from ..errors import visible

Medium = Literal["terminal", "markdown", "csv", "html"]

_NEWLINES = re.compile("[\n\r\t]")
_MARKDOWN = re.compile(r"([\\|<>]|(?<=\])\()")
_FORMULA = ("=", "+", "-", "@")


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def safe(text: object, medium: Medium = "terminal") -> str:
    """``text`` as one line that shows what it holds and does nothing else in ``medium``.

    Everywhere: control characters (ESC, CSI, OSC, BEL, ...), line and paragraph separators, bidirectional
    overrides, newlines and tabs are written out (ESC as the four characters ``\\x1b``, a newline as
    ``\\n``), so a value keeps to its one line and never reaches a terminal as a control. Then, per medium:

    - ``markdown``: backslashes, table pipes, angle brackets (inline HTML) and the ``(`` of a link or image
      (``](``) escaped;
    - ``csv``: a cell starting with ``=``, ``+``, ``-`` or ``@`` (a spreadsheet formula) that is not a plain
      number gets a leading ``'``; quoting commas and quotes is the csv module's part;
    - ``html``: ``& < > " '`` as entities.
    """
    shown = visible(str(text))
    if _NEWLINES.search(shown):
        shown = _NEWLINES.sub(lambda m: ascii(m.group())[1:-1], shown)
    if medium == "markdown":
        return _MARKDOWN.sub(r"\\\1", shown)
    if medium == "csv":
        formula = len(shown) > 1 and shown.startswith(_FORMULA) and not _number(shown)
        return "'" + shown if formula else shown
    if medium == "html":
        return html.escape(shown, quote=True)
    return shown


def csv_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A CSV row (for ``csv.DictWriter``) with every name and text value passed through ``safe`` for CSV;
    numbers and None as they are."""
    return {safe(k, "csv"): safe(v, "csv") if isinstance(v, str) else v for k, v in row.items()}
