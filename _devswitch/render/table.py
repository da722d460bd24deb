"""The one table model: producers build a ``Table`` as data, and ``render`` turns it into text, markdown,
HTML or a rich terminal table. Nothing parses rendered text back.

Fitting a width is part of the model, so every renderer drops and wraps the same way: columns that say
nothing (every cell empty or "-") go first, then optional columns from the last declared, and a cell is
wrapped between words only, never inside one. Columns dropped for the width are named under the table.
The model knows no renderer: ``terminal.Fitted(table)`` is the rich renderable of a table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .escape import safe

EMPTY = ("", "-")
GAP = 2  # characters between two columns in text
LEAST_OMITTED = 5  # Table.limited leaves out this many rows or more, or none
ELLIPSIS = "..."  # plain ASCII: a log or a pipe may not take "\u2026"


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary where there is one, marked with an
    ellipsis (for a summary's cells; the full value stays in the records)."""
    if len(text) <= limit:
        return text
    room = max(limit - len(ELLIPSIS), 1)
    cut = text[: room + 1].rsplit(" ", 1)[0] if " " in text[: room + 1] else text[:room]
    return cut[:room].rstrip(" ,;:") + ELLIPSIS


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
    omitted_which: str = ""  # which rows ``limited`` left out ("rows 11-12 of 22 (1 fit, 1 evaluate)")
    dropped: tuple[str, ...] = field(default=())  # headers of columns dropped to fit a width

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"a row of {len(row)} cells under {len(self.columns)} columns: {row!r}")

    @classmethod
    def of(cls, columns, rows, **extra) -> Table:
        """Build from headers (str or Column) and any iterables of cells (converted with str, control
        characters and newlines written out by ``escape.safe``: a value read from a file, a script's error
        line or a file name never sends an escape sequence to a terminal, nor breaks its row)."""
        cols = tuple(c if isinstance(c, Column) else Column(safe(c)) for c in columns)
        for key in ("title", "omitted_hint"):
            if key in extra:
                extra[key] = safe(extra[key])
        if "notes" in extra:
            extra["notes"] = tuple(safe(n) for n in extra["notes"])
        return cls(cols, tuple(tuple("" if v is None else safe(v) for v in row) for row in rows), **extra)

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(c.header for c in self.columns)

    def omitted_line(self) -> str:
        if not self.omitted:
            return ""
        said = f"{self.omitted_which} not shown" if self.omitted_which else f"and {self.omitted} more"
        return f"... {said}" + (f": {self.omitted_hint}" if self.omitted_hint else "")

    def limited(
        self,
        max_rows: int | None,
        head: int | None = None,
        hint: str = "",
        what: Callable[[tuple[tuple[str, ...], ...]], str] | None = None,
    ) -> Table:
        """At most ``max_rows`` rows: the first ``head`` and the last ones, the rest counted in ``omitted`` and
        named in ``omitted_which`` (their numbers, and ``what(rows)`` says what they are); ``hint`` says where
        to see them all. Fewer than ``LEAST_OMITTED`` rows are never left out: hiding them saves nothing."""
        if max_rows is None or len(self.rows) < max_rows + LEAST_OMITTED:
            return self
        head = max_rows // 2 if head is None else head
        tail = max_rows - head
        kept = self.rows[:head] + (self.rows[-tail:] if tail else ())
        left_out = self.rows[head : len(self.rows) - tail]
        which = f"rows {head + 1}-{len(self.rows) - tail} of {len(self.rows)}"
        if what is not None:
            which += f" ({what(left_out)})"
        return replace(
            self,
            rows=kept,
            omitted=self.omitted + len(left_out),
            omitted_hint=hint or self.omitted_hint,
            omitted_which=which,
        )

    def dropped_line(self) -> str:
        """The line under a fitted table naming the columns left out for the width ("" when none were)."""
        return f"not shown at this width: {', '.join(self.dropped)}" if self.dropped else ""

    def footer_lines(self) -> list[str]:
        """What every renderer prints after the rows: the omitted rows, the dropped columns, the notes."""
        return [line for line in (self.omitted_line(), self.dropped_line()) if line] + list(self.notes)

    def without_columns(self, keep, record: bool = True) -> Table:
        """Only the columns for which ``keep(index, column)`` is true; with ``record`` the others are named
        in ``dropped``."""
        indices = [i for i, c in enumerate(self.columns) if keep(i, c)]
        gone = tuple(c.header for i, c in enumerate(self.columns) if i not in indices)
        return replace(
            self,
            columns=tuple(self.columns[i] for i in indices),
            rows=tuple(tuple(row[i] for i in indices) for row in self.rows),
            dropped=self.dropped + (gone if record else ()),
        )

    def without_empty_columns(self) -> Table:
        """Drop columns that say nothing: every cell empty or "-" (the first column always stays). They are
        not named in ``dropped``: nothing was lost."""
        if not self.rows:
            return self
        return self.without_columns(lambda i, c: i == 0 or any(row[i] not in EMPTY for row in self.rows), record=False)

    def min_widths(self) -> list[int]:
        """Per column, the widest word in it (header included): narrower would break a word."""
        return [
            max((len(word) for text in (c.header, *(row[i] for row in self.rows)) for word in text.split()), default=1)
            for i, c in enumerate(self.columns)
        ]

    def natural_widths(self) -> list[int]:
        return [
            max((len(text) for text in (c.header, *(row[i] for row in self.rows))), default=1)
            for i, c in enumerate(self.columns)
        ]

    def widths(self, width: int | None, gap: int = GAP) -> list[int]:
        """Each column's width for a line of ``width`` characters (``gap`` between columns): its natural
        width when all fit, else its widest word plus a share of what is left. Columns that want little
        beyond their widest word get it whole (so "12.50 s" stays on one line); the rest share what remains
        in proportion to what they want. Call on a fitted table; every renderer that lays out columns uses it."""
        natural, minimum = self.natural_widths(), self.min_widths()
        if width is None or sum(natural) + gap * (len(natural) - 1) <= width:
            return natural
        widths = list(minimum)
        spare = width - sum(widths) - gap * (len(widths) - 1)
        wants = [n - m for n, m in zip(natural, minimum, strict=True)]
        waiting = [i for i, want in enumerate(wants) if want > 0]
        while waiting and spare > 0:
            small = [i for i in waiting if wants[i] <= spare // len(waiting)]
            if not small:  # every column left wants more than an even share: split in proportion
                total = sum(wants[i] for i in waiting)
                for i in waiting:
                    widths[i] += spare * wants[i] // total
                break
            for i in small:
                widths[i] += wants[i]
                spare -= wants[i]
                waiting.remove(i)
        return widths

    def fit(self, width: int | None, gap: int = GAP) -> Table:
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
