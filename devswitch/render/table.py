"""The one table model: producers build a ``Table`` as data, and ``render`` turns it into text, markdown,
HTML or a rich terminal table. Nothing parses rendered text back.

Fitting a width is part of the model, so every renderer drops and wraps the same way: columns that say
nothing (every cell empty or "-") go first, then optional columns from the last declared, and a cell is
wrapped between words only, never inside one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

EMPTY = ("", "-")
GAP = 2  # characters between two columns in text


@dataclass(frozen=True)
class Column:
    """One column: its header, whether it holds numbers (right-aligned), and whether it may be dropped
    to fit a narrow terminal (optional columns are dropped from the last one declared)."""

    header: str
    numeric: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Table:
    """Rows of plain strings under columns, with an optional title and notes printed after the rows.

    ``omitted`` counts rows left out by ``limited`` and ``omitted_hint`` says where to see them all.
    """

    columns: tuple[Column, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str = ""
    notes: tuple[str, ...] = ()
    omitted: int = 0
    omitted_hint: str = ""
    dropped: tuple[str, ...] = field(default=())  # headers of columns dropped to fit a width

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"a row of {len(row)} cells under {len(self.columns)} columns: {row!r}")

    @classmethod
    def of(cls, columns, rows, **extra) -> "Table":
        """Build from headers (str or Column) and any iterables of cells (converted with str)."""
        cols = tuple(c if isinstance(c, Column) else Column(str(c)) for c in columns)
        return cls(cols, tuple(tuple("" if v is None else str(v) for v in row) for row in rows), **extra)

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(c.header for c in self.columns)

    def omitted_line(self) -> str:
        if not self.omitted:
            return ""
        return f"... and {self.omitted} more" + (f": {self.omitted_hint}" if self.omitted_hint else "")

    def limited(self, max_rows: int | None, head: int | None = None) -> "Table":
        """At most ``max_rows`` rows: the first ``head`` and the last ones, the rest counted in ``omitted``."""
        if max_rows is None or len(self.rows) <= max_rows:
            return self
        head = max_rows // 2 if head is None else head
        tail = max_rows - head
        kept = self.rows[:head] + (self.rows[-tail:] if tail else ())
        return replace(self, rows=kept, omitted=self.omitted + len(self.rows) - len(kept))

    def without_columns(self, keep) -> "Table":
        """Only the columns for which ``keep(index, column)`` is true; the others are named in ``dropped``."""
        indices = [i for i, c in enumerate(self.columns) if keep(i, c)]
        gone = tuple(c.header for i, c in enumerate(self.columns) if i not in indices)
        return replace(self, columns=tuple(self.columns[i] for i in indices),
                       rows=tuple(tuple(row[i] for i in indices) for row in self.rows),
                       dropped=self.dropped + gone)

    def without_empty_columns(self) -> "Table":
        """Drop columns that say nothing: every cell empty or "-" (the first column always stays)."""
        if not self.rows:
            return self
        return self.without_columns(lambda i, c: i == 0 or any(row[i] not in EMPTY for row in self.rows))

    def min_widths(self) -> list[int]:
        """Per column, the widest word in it (header included): narrower would break a word."""
        return [max((len(word) for text in (c.header, *(row[i] for row in self.rows)) for word in text.split()),
                    default=1) for i, c in enumerate(self.columns)]

    def natural_widths(self) -> list[int]:
        return [max((len(text) for text in (c.header, *(row[i] for row in self.rows))), default=1)
                for i, c in enumerate(self.columns)]

    def fit(self, width: int | None, gap: int = GAP) -> "Table":
        """The table as it can be shown in ``width`` characters without breaking a word: empty columns
        dropped, then optional ones from the last, while the narrowest layout is still too wide."""
        table = self.without_empty_columns()
        if width is None:
            return table
        while sum(table.min_widths()) + gap * (len(table.columns) - 1) > width:
            optional = [i for i, c in enumerate(table.columns) if c.optional]
            if not optional:
                break  # nothing left to drop: wider than the terminal, but no word broken
            last = optional[-1]
            table = table.without_columns(lambda i, c, last=last: i != last)
        return table
