"""Plain text, for logs, CI and pipes: fixed columns, wrapped between words to a width when one is given."""

from __future__ import annotations

import textwrap

from .table import GAP, Table


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def render(table: Table, width: int | None = None) -> str:
    """The table as text; with ``width``, fitted (see ``Table.fit``) and wrapped between words."""
    table = table.fit(width)
    widths = table.widths(width)
    lines = [table.title] if table.title else []

    def emit(cells, numeric) -> None:
        wrapped = [_wrap(text, w) for text, w in zip(cells, widths, strict=True)]  # a Table's rows fit its columns
        for n in range(max(len(w) for w in wrapped)):
            parts = []
            for lines_of, w, right in zip(wrapped, widths, numeric, strict=True):
                part = lines_of[n] if n < len(lines_of) else ""
                parts.append(part.rjust(w) if right else part.ljust(w))
            lines.append((" " * GAP).join(parts).rstrip())

    if table.columns:
        emit(table.headers, [c.numeric for c in table.columns])
        lines.append((" " * GAP).join("-" * w for w in widths))
        for row in table.rows:
            emit(row, [c.numeric for c in table.columns])
    lines += table.footer_lines()
    return "\n".join(lines)
