"""Plain text, for logs, CI and pipes: fixed columns, wrapped between words to a width when one is given."""

from __future__ import annotations

import textwrap

from .table import GAP, Table


def _widths(table: Table, width: int | None) -> list[int]:
    natural, minimum = table.natural_widths(), table.min_widths()
    if width is None or sum(natural) + GAP * (len(natural) - 1) <= width:
        return natural
    widths = list(minimum)
    spare = width - sum(widths) - GAP * (len(widths) - 1)
    # Share what is left in proportion to what each column would like beyond its widest word.
    wants = [n - m for n, m in zip(natural, minimum)]
    total = sum(wants)
    if spare > 0 and total:
        for i, want in enumerate(wants):
            widths[i] += min(want, spare * want // total)
    return widths


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def render(table: Table, width: int | None = None) -> str:
    """The table as text; with ``width``, fitted (see ``Table.fit``) and wrapped between words."""
    table = table.fit(width)
    widths = _widths(table, width)
    lines = [table.title] if table.title else []

    def emit(cells, numeric) -> None:
        wrapped = [_wrap(text, w) for text, w in zip(cells, widths)]
        for n in range(max(len(w) for w in wrapped)):
            parts = []
            for lines_of, w, right in zip(wrapped, widths, numeric):
                part = lines_of[n] if n < len(lines_of) else ""
                parts.append(part.rjust(w) if right else part.ljust(w))
            lines.append((" " * GAP).join(parts).rstrip())

    if table.columns:
        emit(table.headers, [c.numeric for c in table.columns])
        lines.append((" " * GAP).join("-" * w for w in widths))
        for row in table.rows:
            emit(row, [c.numeric for c in table.columns])
    if table.omitted:
        lines.append(table.omitted_line())
    lines += list(table.notes)
    return "\n".join(lines)
