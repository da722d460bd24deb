"""A terminal: the table as a ``rich`` table, fitted to the console's width without breaking a word."""

from __future__ import annotations

from dataclasses import dataclass

from .table import Table

GAP = 3  # what a rich SIMPLE_HEAD table without edges puts between two columns: padding, rule, padding


def to_rich(table: Table, width: int):
    """A rich Table (without its title: ``renderables`` prints it) for a console ``width`` characters wide
    (columns no narrower than their widest word), and the fitted ``Table`` it shows."""
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    table = table.fit(width, gap=GAP)
    out = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, caption=None)
    # Widths fixed here, as the text renderer lays them out: rich's own shrinking ignores where words end.
    for column, fixed in zip(table.columns, table.widths(width, gap=GAP), strict=True):
        out.add_column(Text(column.header), justify="right" if column.numeric else "left", width=fixed, overflow="fold")
    for row in table.rows:
        out.add_row(*(Text(v) for v in row))  # Text, not markup: a value is never interpreted
    return out, table


def renderables(table: Table, width: int) -> list:
    """The title (plain text, wrapped between words, never read as markup), the rich table and, under it,
    the lines that say what was omitted, dropped and noted."""
    from rich.text import Text

    rich_table, fitted = to_rich(table, width)
    title = [Text(fitted.title)] if fitted.title else []
    return [*title, rich_table, *(Text(line) for line in fitted.footer_lines())]


@dataclass(frozen=True)
class Fitted:
    """A table as a rich renderable: ``Console.print(Fitted(table))`` fits it to the width rich offers."""

    table: Table

    def __rich_console__(self, console, options):
        yield from renderables(self.table, options.max_width)


def print_table(table: Table, console=None, file=None) -> None:
    """Print on a rich console (one is made for ``file``, stderr by default, when none is given)."""
    import sys

    from rich.console import Console

    console = console or Console(file=file or sys.stderr)
    for item in renderables(table, console.width):
        console.print(item)
