"""Untrusted text (a script's error line, a file name, a string in a result file) is made safe by one function,
``render.escape.safe``, for the terminal, markdown, CSV and HTML, and every renderer goes through it."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import clean_environ

BLINK = "\x1b[5mBLINK\x1b[0m"
OSC8 = "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\"
BIDI = "\u202eevil\u202c"


@pytest.mark.parametrize(
    "text, medium, expected",
    [
        pytest.param(BLINK, "terminal", "\\x1b[5mBLINK\\x1b[0m", id="terminal: ESC written out"),
        pytest.param("a\nb\rc", "terminal", "a\\nb\\rc", id="terminal: one line"),
        pytest.param(BIDI, "terminal", "\\u202eevil\\u202c", id="terminal: bidi overrides"),
        pytest.param("a|b", "markdown", "a\\|b", id="markdown: a table pipe"),
        pytest.param("<img src=x>", "markdown", "\\<img src=x\\>", id="markdown: inline HTML"),
        pytest.param("[x](http://e)", "markdown", "[x]\\(http://e)", id="markdown: a link"),
        pytest.param("a\\b", "markdown", "a\\\\b", id="markdown: a backslash"),
        pytest.param("=HYPERLINK(1)", "csv", "'=HYPERLINK(1)", id="csv: a formula"),
        pytest.param("+1+2", "csv", "'+1+2", id="csv: plus"),
        pytest.param("-2+3", "csv", "'-2+3", id="csv: minus"),
        pytest.param("@SUM(1)", "csv", "'@SUM(1)", id="csv: at"),
        pytest.param("-1.5", "csv", "-1.5", id="csv: a negative number stays"),
        pytest.param("-", "csv", "-", id="csv: a dash stays"),
        pytest.param("a\nb", "csv", "a\\nb", id="csv: one line"),
        pytest.param("<b>&'\"", "html", "&lt;b&gt;&amp;&#x27;&quot;", id="html: entities"),
        pytest.param("\x1b<", "html", "\\x1b&lt;", id="html: control and entity"),
    ],
)
def test_safe_makes_text_inert_for_each_medium(text, medium, expected):
    """Each medium gets the text written out, never acted on."""
    from _devswitch.render.escape import safe

    assert safe(text, medium) == expected


def test_every_table_renderer_escapes_through_the_one_function():
    """The table model escapes cells for the terminal; markdown and HTML add their own escaping on top."""
    from _devswitch.render import html, markdown, text
    from _devswitch.render.table import Table

    table = Table.of(["name", "why"], [["a\nb.py", f"{BLINK} {OSC8} |x"]], title="t\x1b[2J", notes=("n <b>",))
    for rendered in (text.render(table), markdown.render(table), html.render(table)):
        assert "\x1b" not in rendered and "a\nb" not in rendered
    md = markdown.render(table)
    assert "\\\\x1b[5mBLINK" in md and "\\|x" in md and "n \\<b\\>" in md
    assert "n &lt;b&gt;" in html.render(table)


def test_csv_rows_are_safe_for_a_spreadsheet():
    from _devswitch.render.escape import csv_row

    out = io.StringIO()
    row = csv_row({"=name": "=cmd|' /C calc'!A0", "rate": -3.5, "status": f"failed: {BLINK}\nx"})
    writer = csv.DictWriter(out, list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    back = list(csv.reader(io.StringIO(out.getvalue())))
    assert back == [["'=name", "rate", "status"], ["'=cmd|' /C calc'!A0", "-3.5", "failed: \\x1b[5mBLINK\\x1b[0m\\nx"]]


@pytest.mark.subprocess
def test_a_failing_scripts_escapes_and_its_file_name_come_out_written_out_everywhere(tmp_path):
    """compare --script on a script named with ESC and a newline, whose last line blinks and holds an OSC 8
    hyperlink: stdout, stderr, results.md, .csv, .html and .json hold no control character."""
    name = "bad\n\x1b[31mname.py"
    (tmp_path / name).write_text(f"raise SystemExit({'boom ' + BLINK + ' ' + OSC8 + ' end'!r})\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "devswitch",
            "compare",
            "--script",
            name,
            "--devices",
            "cpu",
            "--precisions",
            "fp32",
            "--out",
            "out",
        ],
        cwd=tmp_path,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 5, proc.stderr[-3000:]
    out = tmp_path / "out"
    outputs = {
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        **{f: (out / f).read_text() for f in ("results.md", "results.csv", "results.html", "results.json")},
    }
    for where, content in outputs.items():
        assert "\x1b" not in content and "\x07" not in content, where
    err = [line for line in proc.stderr.splitlines() if not line.startswith(("E0000", "W0000", "I0000"))]
    assert any("--script bad\\n\\x1b[31mname.py: 1 configuration" in line for line in err), err
    assert any("failed: boom \\x1b[5mBLINK\\x1b[0m \\x1b]8;;http://evil.example/" in line for line in err), err
    assert "bad\\\\n\\\\x1b[31mname.py" in outputs["results.md"]
    assert "<h1>devswitch compare: bad\\n\\x1b[31mname.py (script)</h1>" in outputs["results.html"]
    assert "failed: boom \\x1b[5mBLINK" in outputs["results.csv"]
    assert not Path(tmp_path / "out" / "results.md").read_text().count("\nname.py")
