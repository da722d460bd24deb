"""HTML through the standard library's escaping: every header, cell, title and note is escaped."""

from __future__ import annotations

from .escape import safe
from .table import Table


def esc(text: object) -> str:
    return safe(text, "html")


def render(table: Table, css_class: str = "devswitch") -> str:
    head = "".join(f"<th{' class=num' if c.numeric else ''}>{esc(c.header)}</th>" for c in table.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if c.numeric else ''}>{esc(v)}</td>" for c, v in zip(table.columns, row, strict=True)
        )
        + "</tr>"
        for row in table.rows
    )
    caption = f"<caption>{esc(table.title)}</caption>" if table.title else ""
    out = f"<table class='{esc(css_class)}'>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return out + "".join(f"<p>{esc(line)}</p>" for line in table.footer_lines())
