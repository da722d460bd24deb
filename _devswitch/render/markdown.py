"""GitHub-flavoured markdown: one pipe table (cells escaped), the title as a heading, notes as paragraphs."""

from __future__ import annotations

from .escape import safe
from .table import Table


def escape(text: str) -> str:
    """One line of markdown that shows ``text`` as it is (``escape.safe`` for markdown)."""
    return safe(text, "markdown")


def render(table: Table, heading: str = "") -> str:
    """``heading`` ("#", "##", ...) puts the title on a heading line; without it the title is bold."""
    lines = []
    if table.title:
        lines += [f"{heading} {escape(table.title)}" if heading else f"**{escape(table.title)}**", ""]
    lines.append("| " + " | ".join(escape(h) for h in table.headers) + " |")
    lines.append("| " + " | ".join("---:" if c.numeric else "---" for c in table.columns) + " |")
    for row in table.rows:
        lines.append("| " + " | ".join(escape(c) for c in row) + " |")
    said = [line for line in (table.omitted_line(), table.dropped_line()) if line]
    if said:
        lines += ["", *(escape(line) for line in said)]
    if table.notes:
        lines += ["", *(escape(note) for note in table.notes)]
    return "\n".join(lines) + "\n"
