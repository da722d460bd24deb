"""``devswitch report``: show a compare result again, or compare two (A B) cell by cell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from .common import _number


def report_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("report", help="show a compare result again, or compare two (A B) cell by cell",
                            description="One PATH (a results folder or results.json of compare, or a timing "
                                        "report file of report: PATH.jsonl): print it again, from the JSON alone. Two: B against A, cell by cell: the ratio of "
                                        "the median throughputs and whether the change is outside the noise "
                                        "(the 95%% intervals of the medians do not overlap).")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="results folder or results.json (one or two)")
    parser.add_argument("--fail-above", default=None, metavar="PCT",
                        help="with A B: exit 1 when a cell of B is more than PCT%% slower than A (a CI gate)")
    return parser


def report_command(args: argparse.Namespace) -> int:
    from ..compare import compare_results, load_results, render_changes, render_markdown

    if len(args.paths) > 2:
        raise UsageError("report takes one PATH (show it) or two (A B: compare)", hint="devswitch report A B")
    fail_above = _number("--fail-above", args.fail_above, float, 0) if args.fail_above is not None else None
    if len(args.paths) == 1:
        if fail_above is not None:
            raise UsageError("--fail-above needs two result sets", hint="devswitch report A B --fail-above 10")
        path = Path(args.paths[0])
        if path.is_file() and path.suffix in (".jsonl", ".json") and path.name != "results.json":
            from ..results import ReportError, read_report, render_report_runs

            try:  # a timing report of scripts (report: PATH.jsonl), in either format devswitch wrote
                print(render_report_runs(read_report(path)), end="")
                return 0
            except ReportError:
                pass  # perhaps a compare results.json under another name
            except OSError as error:
                raise UsageError(f"cannot read {path}: {error.strerror or error}", hint="check the path") from None
        print(render_markdown(load_results(args.paths[0])), end="")
        return 0
    a, b = (load_results(p) for p in args.paths)
    changes, alone = compare_results(a, b)
    if not changes:
        raise UsageError("A and B have no measured cell in common",
                         hint="compare results of the same model, devices, precisions and batch sizes")
    print(render_changes(a, b, changes, alone, fail_above), end="")
    slower = [c for c in changes if fail_above is not None and c.ratio < 1 - fail_above / 100]
    if slower:
        print(f"devswitch: {len(slower)} cell(s) more than {fail_above:g}% slower: "
              + ", ".join(c.label for c in slower), file=sys.stderr)
        return 1
    return 0
