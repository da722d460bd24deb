"""A terminal: the table as a ``rich`` table, fitted to the console's width without breaking a word."""

from __future__ import annotations

from .table import Table


def to_rich(table: Table, width: int):
    """A rich Table for a console ``width`` characters wide (columns no narrower than their widest word)."""
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    table = table.fit(width, gap=3)
    out = RichTable(title=table.title or None, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                    pad_edge=False, caption=None)
    for column, minimum in zip(table.columns, table.min_widths()):
        out.add_column(Text(column.header), justify="right" if column.numeric else "left", min_width=minimum,
                       overflow="fold")
    for row in table.rows:
        out.add_row(*(Text(v) for v in row))  # Text, not markup: a value is never interpreted
    return out, table


def print_table(table: Table, console=None, file=None) -> None:
    """Print on a rich console (one is made for ``file``, stderr by default, when none is given)."""
    import sys

    from rich.console import Console
    from rich.text import Text

    console = console or Console(file=file or sys.stderr)
    rich_table, fitted = to_rich(table, console.width)
    console.print(rich_table)
    extra = ([fitted.omitted_line()] if fitted.omitted else []) + list(fitted.notes)
    for line in extra:
        console.print(Text(line))
