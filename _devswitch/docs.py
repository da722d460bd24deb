"""Documentation generated from the package itself, so that it cannot drift.

``python -m _devswitch.docs`` rewrites ``.devswitchrc.example`` and the settings table of
``docs/configuration.md`` (from ``settings.py``), the exit-code table of ``docs/errors.md`` (from
``errors.py``) and the backend interface table of ``docs/architecture.md`` (from the Protocol in
``backends/interface.py``); ``tests/test_docs.py`` fails when one of them has drifted.

``python -m _devswitch.docs --outputs`` runs the commands whose output the documentation shows (the AlexNet
comparison, ``devswitch info``, a script comparison) and writes what they printed into the blocks between
``<!-- output:NAME begin -->`` and ``<!-- output:NAME end -->`` in README.md and ``docs/*.md``, so that no
figure in them is pasted by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from . import errors
from .settings import ENV_DISABLE, ENV_FLAGS, ENV_RC, PROFILES_DOC, SETTINGS

GENERATOR = "python -m _devswitch.docs"


def _default_text(setting) -> str:
    value = setting.default
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:  # a setting that is off until given (seed)
        return "none"
    return str(value) if value != "" else "(none)"


def option(name: str) -> str:
    """The command-line option of a setting (``memory_growth`` -> ``--memory-growth``)."""
    return "--" + name.replace("_", "-")


def render_example() -> str:
    """A commented ``.devswitchrc`` listing every setting at its default."""
    lines = [
        "# .devswitchrc — devswitch settings (YAML). Every key is optional; shown at its default.",
        "# Precedence, lowest first: built-in default < ~/.devswitchrc < project .devswitchrc",
        f'#   < {ENV_FLAGS}="key=value,..." < DEVSWITCH_<KEY> < explicit arguments (CLI, configure()).',
        f"# {ENV_RC}=path[:path] replaces the file search; {ENV_DISABLE}=1 turns 'import devswitch' off.",
        "# 'devswitch info' shows each value in effect and where it came from.",
        "# Read with a safe YAML loader, YAML 1.2 numbers (threads: 4:2 is INTRA:INTER, not 242), within bounds:",
        "# a regular file of at most 1 MiB, 32 levels of nesting, 10,000 values after aliases.",
        "",
    ]
    for setting in SETTINGS:
        for row in textwrap.wrap(setting.doc, 96):
            lines.append(f"# {row}")
        lines.append(f"# allowed: {setting.allowed}; variable: {setting.env}")
        lines.append(f"{setting.name}: {setting.example}")
        lines.append("")
    for row in textwrap.wrap(PROFILES_DOC, 96):
        lines.append(f"# {row}")
    lines += [
        "profiles:",
        "  gpu:",
        "    device: gpu",
        "    precision: half",
        "  cpu-bf16:",
        "    device: cpu",
        "    precision: bf16",
    ]
    return "\n".join(lines) + "\n"


def render_reference() -> str:
    """The configuration reference table: one row per setting, from its declaration."""
    rows = ["| key | allowed values | default | variable | option | meaning |", "| --- | --- | --- | --- | --- | --- |"]
    for s in SETTINGS:
        rows.append(f"| `{s.name}` | {s.allowed} | `{_default_text(s)}` | `{s.env}` | `{option(s.name)}` | {s.doc} |")
    rows.append(f"| `profiles` | mapping name -> settings | (none) | — | — | {PROFILES_DOC} |")
    return "\n".join(rows)


def render_backends() -> str:
    """The backend interface table: one row per member of ``backends.interface.Backend``."""
    from .backends.interface import members

    lines = ["| member | what |", "| --- | --- |"]
    for _name, signature, what in members():
        text = " ".join(what.split()).replace("``", "`").replace("|", "\\|")
        lines.append(f"| `{signature.replace('|', chr(92) + '|')}` | {text} |")
    return "\n".join(lines)


# Exit codes the command line returns without an exception class of errors.py behind them.
OTHER_EXIT_CODES = (
    (0, "—", "success (for `devswitch run`: the script's own exit code is passed through)"),
    (1, "—", "`devswitch report A B --fail-above PCT`: the gate failed (a cell got slower, or B lost cells)"),
    (130, "—", "interrupted (Ctrl-C, or SIGTERM for `compare`); a compare keeps every finished row"),
)


def error_classes() -> list[type[errors.DevswitchError]]:
    """Every exception class declared in ``errors.py``, ordered by exit code."""
    found = [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.DevswitchError) and obj.__module__ == errors.__name__
    ]
    return sorted(found, key=lambda cls: (cls.exit_code, cls is not errors.DevswitchError, cls.__name__))


def _summary(cls: type) -> str:
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(doc.split()).replace("|", "\\|")


def render_errors() -> str:
    """The exit-code table: each error class of ``errors.py`` with its exit code and docstring."""
    rows = [(cls.exit_code, f"`{cls.__name__}`", _summary(cls)) for cls in error_classes()]
    rows += OTHER_EXIT_CODES
    lines = ["| exit code | error | when |", "| ---: | --- | --- |"]
    lines += [f"| {code} | {name} | {text} |" for code, name, text in sorted(rows, key=lambda row: row[0])]
    return "\n".join(lines)


# --- generated blocks: <!-- NAME:begin (generated by python -m _devswitch.docs) --> ... <!-- NAME:end --> ---


@dataclasses.dataclass(frozen=True)
class Generated:
    """A block of a documentation file written from the package: its name, its file and its renderer."""

    name: str
    path: str
    render: Callable[[], str]

    @property
    def begin(self) -> str:
        return f"<!-- {self.name}:begin (generated by {GENERATOR}) -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.name}:end -->"


GENERATED = (
    Generated("settings", "docs/configuration.md", render_reference),
    Generated("errors", "docs/errors.md", render_errors),
    Generated("backends", "docs/architecture.md", render_backends),
)


def replace_block(text: str, begin: str, end: str, body: str, where: str) -> str:
    """``text`` with what lies between the lines ``begin`` and ``end`` replaced by ``body``."""
    head, found_begin, rest = text.partition(begin)
    middle, found_end, tail = rest.partition(end)
    if not found_begin or not found_end:
        raise ValueError(f"{where} lacks the markers {begin!r} ... {end!r}")
    if begin in tail or begin in middle:
        raise ValueError(f"{where} has the marker {begin!r} twice")
    return f"{head}{begin}\n{body.strip(chr(10))}\n{end}{tail}"


def block(text: str, begin: str, end: str) -> str | None:
    """What lies between the marker lines ``begin`` and ``end`` of ``text`` (None without them)."""
    _, found, rest = text.partition(begin)
    body, found_end, _ = rest.partition(end)
    return body.strip("\n") if found and found_end else None


def write_generated(root: Path) -> list[Path]:
    """Rewrite ``.devswitchrc.example`` and every generated block under ``root``; returns the files written."""
    example = root / ".devswitchrc.example"
    example.write_text(render_example(), encoding="utf-8")
    written = [example]
    for generated in GENERATED:
        path = root / generated.path
        text = path.read_text(encoding="utf-8")
        path.write_text(
            replace_block(text, generated.begin, generated.end, generated.render(), str(path)), encoding="utf-8"
        )
        written.append(path)
    return written


# --- example outputs: run the real commands, write what they printed ---------------------------------------


@dataclasses.dataclass(frozen=True)
class Output:
    """A command whose output the documentation shows.

    ``command`` is split like a shell line; ``{out}`` in it is a fresh empty folder. ``reads`` is ``stdout``
    or the name of a file the command writes into ``{out}`` (a markdown file such as ``results.md``);
    ``copies`` are (file in ``{out}``, path under the documentation root) pairs copied after the run.
    """

    name: str
    command: str
    reads: str = "stdout"
    copies: tuple[tuple[str, str], ...] = ()


OUTPUTS = (
    Output(
        "alexnet",
        "devswitch compare alexnet --iterations 5 --warmup 2 --out {out}",
        "results.md",
        (("results.png", "docs/alexnet-compare-cpu.png"),),
    ),
    Output("info", "devswitch info"),
    Output(
        "script",
        "devswitch compare --script examples/existing_script.py --devices cpu --precisions fp32,bf16 "
        "--vary xla=false,true --max-epochs 1 --max-steps 20 --out {out} -- --epochs 3",
        "results.md",
    ),
)

# A block shows an output whole (output:NAME) or one view of it (output:NAME:VIEW); its markers are lines.
OUTPUT_MARKER = re.compile(r"^<!-- output:([A-Za-z0-9_-]+)(?::([a-z]+))? begin -->$", re.M)


def output_markers(name: str, view: str | None = None) -> tuple[str, str]:
    label = f"{name}:{view}" if view else name
    return f"<!-- output:{label} begin -->", f"<!-- output:{label} end -->"


def _paragraphs(markdown: str) -> list[str]:
    return [p.strip("\n") for p in re.split(r"\n\s*\n", markdown) if p.strip()]


def _view_full(markdown: str) -> list[str]:
    """The whole file; its title becomes bold text, so that it does not add a heading to the page."""
    return [f"**{p[2:].strip()}**" if p.startswith("# ") else p for p in _paragraphs(markdown)]


def _view_summary(markdown: str) -> list[str]:
    """The machine (the first sentence of its line), the tables, their footnotes and the recommendations."""
    kept = []
    for p in _paragraphs(markdown):
        if p.startswith("Machine:"):
            kept.append(p.split(". ", 1)[0].rstrip(".") + ".")
        elif p.startswith("|") or re.match(r"\[\d+\] ", p) or p.startswith("Recommendation"):
            kept.append(p)
    return kept


VIEWS: dict[str | None, Callable[[str], list[str]]] = {None: _view_full, "summary": _view_summary}


def _argv(command: str, out: Path) -> list[str]:
    """The command line to run: ``devswitch`` and ``python`` are this interpreter's, ``{out}`` the folder."""
    argv = [token.replace("{out}", str(out)) for token in shlex.split(command)]
    if argv and argv[0] == "devswitch":
        return [sys.executable, "-m", "devswitch", *argv[1:]]
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


def shown_command(command: str) -> str:
    """The command as the documentation shows it (the temporary folder named DIR)."""
    return command.replace("{out}", "DIR")


@dataclasses.dataclass(frozen=True)
class Produced:
    """What one output's command printed or wrote, ready to go into the blocks."""

    output: Output
    text: str
    folder: Path


def run_output(output: Output, root: Path, folder: Path, timeout: float) -> Produced:
    """Run one output's command in ``root`` with no configuration file and no DEVSWITCH_* variable."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSWITCH")}
    env[ENV_RC] = os.devnull  # the documented output is the defaults', not this checkout's .devswitchrc
    argv = _argv(output.command, folder)
    print(f"{GENERATOR}: running {shlex.join(argv)}", file=sys.stderr, flush=True)
    done = subprocess.run(
        argv, cwd=root, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"{output.name}: {shlex.join(argv)} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    text = done.stdout if output.reads == "stdout" else (folder / output.reads).read_text(encoding="utf-8")
    return Produced(output, text, folder)


def render_output(produced: Produced, view: str | None, date: str) -> str:
    """The body of one output block: where and when it was measured, then the output (or its view)."""
    output = produced.output
    if output.reads == "stdout":
        body = "```text\n$ " + shown_command(output.command) + "\n" + produced.text.rstrip("\n") + "\n```"
        origin = f"Output of `{shown_command(output.command)}`"
    else:
        body = "\n\n".join(VIEWS[view](produced.text))
        origin = f"From `{output.reads}` of `{shown_command(output.command)}`"
    return f"<!-- written by {GENERATOR} --outputs: do not edit -->\n_{origin}, run on {date}._\n\n{body}"


def doc_files(root: Path) -> list[Path]:
    """README.md and every markdown page under ``docs/``."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def blocks_in(root: Path) -> dict[Path, list[tuple[str, str | None]]]:
    """Each documentation file's output blocks, as (output name, view)."""
    found = {}
    for path in doc_files(root):
        if path.is_file():
            markers = OUTPUT_MARKER.findall(path.read_text(encoding="utf-8"))
            if markers:
                found[path] = [(name, view or None) for name, view in markers]
    return found


def write_outputs(
    root: Path,
    outputs: Sequence[Output] = OUTPUTS,
    only: Sequence[str] = (),
    timeout: float = 1800,
    date: str | None = None,
) -> list[Path]:
    """Run the outputs (all, or those named in ``only``) and write them into their blocks under ``root``.

    Every block must name a known output and view, and every output run must have a block; nothing is
    written unless every command succeeds. Returns the files written.
    """
    by_name = {output.name: output for output in outputs}
    unknown = sorted(set(only) - set(by_name))
    if unknown:
        raise ValueError(f"no output named {', '.join(unknown)}; known: {', '.join(by_name)}")
    blocks = blocks_in(root)
    for path, found in blocks.items():
        for name, view in found:
            if name not in by_name or view not in VIEWS:
                raise ValueError(f"{path}: a block names output {name!r} (view {view!r}), which is not known")
    chosen = [by_name[name] for name in only] if only else list(outputs)
    shown = {name for found in blocks.values() for name, _ in found}
    missing = [output.name for output in chosen if output.name not in shown]
    if missing:
        raise ValueError(f"no block shows output {', '.join(missing)} (add <!-- output:NAME begin/end --> markers)")
    date = date or datetime.date.today().isoformat()
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="devswitch-docs-") as scratch:
        produced = {output.name: run_output(output, root, Path(scratch, output.name), timeout) for output in chosen}
        for path, found in blocks.items():
            text = original = path.read_text(encoding="utf-8")
            for name, view in found:
                if name in produced:
                    begin, end = output_markers(name, view)
                    text = replace_block(text, begin, end, render_output(produced[name], view, date), str(path))
            if text != original:
                path.write_text(text, encoding="utf-8")
                written.append(path)
        for result in produced.values():
            for source, target in result.output.copies:
                shutil.copyfile(result.folder / source, root / target)
                written.append(root / target)
    return written


def main(argv: Sequence[str] | None = None, outputs: Sequence[Output] = OUTPUTS) -> int:
    """The command line; ``outputs`` are the known outputs (the documentation's, unless a test gives others)."""
    parser = argparse.ArgumentParser(
        prog=GENERATOR,
        description="Write the generated parts of the documentation: .devswitchrc.example and the tables "
        "(default), or, with --outputs, the example outputs of real commands.",
    )
    parser.add_argument("root", nargs="?", default=".", help="the repository root (default: the current folder)")
    parser.add_argument(
        "--outputs", action="store_true", help="run the documented commands and write their outputs into the blocks"
    )
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="only this output (repeatable)")
    parser.add_argument(
        "--command",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="run COMMAND for output NAME instead of its own (e.g. a cheap model, to try the mechanics)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds each command may take (default 1800)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not args.outputs:
        written = write_generated(root)
    else:
        by_name = {output.name: output for output in outputs}
        for item in args.command:
            name, sep, command = item.partition("=")
            if not sep or name not in by_name:
                parser.error(f"--command {item!r}: expected NAME=COMMAND with NAME one of {', '.join(by_name)}")
            by_name[name] = dataclasses.replace(by_name[name], command=command)
        try:
            written = write_outputs(root, list(by_name.values()), args.only, args.timeout)
        except (ValueError, RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            print(f"{GENERATOR}: error: {error}", file=sys.stderr)
            return 1
    print(f"{GENERATOR}: wrote {', '.join(str(path) for path in written)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
