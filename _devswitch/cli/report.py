"""``devswitch report``: show a compare result again, or compare two (A B) cell by cell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError


def report_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "report",
        help="show a compare result again, or compare two (A B) cell by cell",
        description="One PATH (a results folder or results.json of compare, or a timing report file of report: "
        "PATH.jsonl): print it again, from the JSON alone. Two: B against A, paired cell by cell "
        "(backend, device, precision, batch): the ratio of the median throughputs, the change in time "
        "per sample, and whether it is outside the noise (the confidence intervals of the medians do "
        "not overlap; their coverage is stated).",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="results folder or results.json (one or two)")
    parser.add_argument(
        "--fail-above",
        default=None,
        metavar="PCT",
        help="with A B: exit 1 when a cell of B takes more than PCT%% longer per sample than A, "
        "or when A measured a cell that B did not (a CI gate); PCT from 0 to 1000",
    )
    return parser


def _is_result_set(data: bytes) -> bool:
    """A compare result (a JSON object with cells and options), whatever the file is called."""
    import json

    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "cells" in doc and "options" in doc


def report_command(args: argparse.Namespace) -> int:
    from ..compare import read
    from ..compare.report import compare, parse_fail_above
    from ..compare.resultfile import parse, read_bytes
    from ..compare.resultset import ResultFileError
    from ..render.compare import render_comparison, render_markdown

    if len(args.paths) > 2:
        raise UsageError("report takes one PATH (show it) or two (A B: compare)", hint="devswitch report A B")
    fail_above = parse_fail_above(args.fail_above) if args.fail_above is not None else None
    if len(args.paths) == 1:
        if fail_above is not None:
            raise UsageError("--fail-above needs two result sets", hint="devswitch report A B --fail-above 10")
        path = Path(args.paths[0])
        file = path / "results.json" if path.is_dir() else path
        data = read_bytes(file)  # bounded: a regular file of a sane size, nested no deeper than a result needs
        if file.name != "results.json" and not _is_result_set(data):
            from ..render.calls import render_report_runs
            from ..results import ReportError, parse_report

            try:  # a timing report of scripts (report: PATH.jsonl), in either format devswitch wrote
                runs = parse_report(data.decode("utf-8", errors="replace"), str(file))
            except (ReportError, RecursionError) as error:
                raise ResultFileError(
                    f"{file}: not a compare result, nor a timing report devswitch can read: {error}",
                    hint="give a results folder or results.json of devswitch compare, or a "
                    "report file written by report: PATH.jsonl",
                ) from None
            if runs:  # an empty file is neither a report nor a result set: the error below says so
                print(render_report_runs(runs), end="")
                return 0
        print(render_markdown(parse(data, str(file))), end="")
        return 0
    a, b = args.paths  # two, after the checks above
    comparison = compare(read(a), read(b), fail_above=fail_above)
    print(render_comparison(comparison), end="")
    failures = comparison.failures
    if failures:
        print(f"devswitch: the gate fails ({len(failures)}): " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0
