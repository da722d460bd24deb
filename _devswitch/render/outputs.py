"""The result files of a compare run: results.json (the result set), .csv, .md, .png and one .html page."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..compare.resultset import ResultSet
from ..results import write_atomic
from .chart import render_plot
from .compare import render_csv, render_html, render_markdown


def _write(path: Path, data: str) -> None:
    """write_atomic, with an error that names the results file (not its temporary file, or nothing)."""
    try:
        write_atomic(path, data)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error


def write_outputs(results: ResultSet, out: Path, plot: bool = True) -> list[str]:
    """Write results.json/.csv/.md/.html and (with ``plot``) results.png, each atomically; returns notes.

    A results.png that would not match the new results.json (not plotted now, or left by an earlier
    run) is removed rather than left beside it.
    """
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "results.json", results.dumps())
    _write(out / "results.csv", render_csv(results))
    _write(out / "results.md", render_markdown(results))
    png: bytes | None = None
    note: str | None = "not plotted"
    if plot and results.kind == "script":  # one bar per configuration would only redraw the wall-time row
        plot, note = False, None
    if plot:
        try:
            png, note = render_plot(results, out / "results.png")
        except OSError:
            raise  # the folder cannot take files: compare says so, as for the other files
        except Exception as error:  # noqa: BLE001 - a chart that cannot be drawn must not lose the results
            from ..errors import describe

            png, note = None, f"results.png not written: the chart could not be drawn: {describe(error)}"
    if png is None:
        with contextlib.suppress(FileNotFoundError):
            (out / "results.png").unlink()
    _write(out / "results.html", render_html(results, png))
    return [note] if note and plot else []
