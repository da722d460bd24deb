"""The documentation is generated from the package where it can be, and checked against it where it cannot:
the generated blocks, the links, the nav, the command-line options, the README's length and the site build."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

import devswitch
from _devswitch import docs
from _devswitch.config import resolve
from _devswitch.settings import SETTINGS

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
README_MAX_LINES = 200


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _all_pages_text() -> str:
    return "\n".join(_text(page) for page in PAGES)


# --- generated from the package ------------------------------------------------------------------------------


def test_example_file_is_generated_from_the_settings():
    assert _text(ROOT / ".devswitchrc.example") == docs.render_example(), (
        "run 'python -m _devswitch.docs' to regenerate .devswitchrc.example"
    )


def test_example_file_is_valid_and_sets_every_default(tmp_path):
    cfg = resolve({"DEVSWITCHRC": str(ROOT / ".devswitchrc.example")}, tmp_path, tmp_path)
    for setting in SETTINGS:
        if setting.name == "backend":  # "auto" in the file: resolved to Keras' own choice, and says so
            assert cfg["backend"].source == "DEVSWITCHRC file: auto -> Keras"
            continue
        assert cfg[setting.name].source == "DEVSWITCHRC file", setting.name
        assert getattr(cfg, setting.name) == setting.default, setting.name
    assert set(cfg.profiles) == {"gpu", "cpu-bf16"}


@pytest.mark.parametrize("generated", docs.GENERATED, ids=lambda g: g.name)
def test_generated_block_equals_what_the_package_renders(generated):
    """The settings table and the exit-code table in the pages are exactly what devswitch.docs renders."""
    text = _text(ROOT / generated.path)
    assert docs.block(text, generated.begin, generated.end) == generated.render(), (
        f"run 'python -m _devswitch.docs' to regenerate {generated.path}"
    )
    assert text == docs.replace_block(text, generated.begin, generated.end, generated.render(), generated.path)


def test_every_setting_is_documented_on_the_configuration_page():
    page = _text(DOCS / "configuration.md")
    for setting in SETTINGS:
        assert f"`{setting.env}`" in page, setting.env
        assert f"`{docs.option(setting.name)}`" in page, setting.name


def test_the_errors_table_names_every_error_class_with_its_exit_code():
    table = docs.render_errors()
    classes = docs.error_classes()
    assert {cls.__name__ for cls in classes} >= {"ConfigError", "UsageError", "DeviceError", "TooLateError"}
    for cls in classes:
        assert re.search(rf"^\| {cls.exit_code} \| `{cls.__name__}` \|", table, re.M), cls.__name__
        assert getattr(devswitch, cls.__name__) is cls  # every documented class is public


@pytest.mark.parametrize("raised", [*docs.error_classes(), KeyboardInterrupt], ids=lambda cls: cls.__name__)
def test_the_command_line_exits_with_the_documented_code(raised, monkeypatch, capsys):
    """What the table says each failure exits with is what `devswitch` returns when a command raises it."""
    from _devswitch import cli

    documented = {int(m[0]): m[1] for m in re.findall(r"^\| (\d+) \| (\S+) \|", docs.render_errors(), re.M)}

    def command(args):
        raise raised() if raised is KeyboardInterrupt else raised("boom")

    monkeypatch.setitem(cli.COMMANDS, "init", (cli.COMMANDS["init"][0], command))
    code = cli.main(["init"])
    capsys.readouterr()
    assert code in documented
    if raised is not KeyboardInterrupt:
        assert code == raised.exit_code


# --- the example outputs: written by the generator, into blocks that name known outputs ------------------------


def test_every_output_block_names_a_known_output_and_every_output_has_a_block():
    blocks = docs.blocks_in(ROOT)
    shown = {name for found in blocks.values() for name, _ in found}
    assert shown == {output.name for output in docs.OUTPUTS}
    for path, found in blocks.items():
        text = _text(path)
        for name, view in found:
            assert view in docs.VIEWS, (path, name, view)
            begin, end = docs.output_markers(name, view)
            assert text.count(begin) == 1 and text.count(end) == 1, (path, name)
            body = docs.block(text, begin, end)
            assert body and "run on 20" in body, f"{path}: block {name} does not say when it was run"


def _fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text(
        "# Title\n\nbefore\n\n<!-- output:table:summary begin -->\nold\n<!-- output:table:summary end -->\n\nafter\n"
    )
    (root / "docs" / "page.md").write_text(
        "# Page\n\n<!-- output:table begin -->\n<!-- output:table end -->\n\n"
        "<!-- output:hello begin -->\nstale\n<!-- output:hello end -->\ntail\n"
    )
    return root


_WRITE_RESULTS = (
    'python -c "import pathlib, sys; out = pathlib.Path(sys.argv[1]); '
    "(out / 'results.md').write_text('# devswitch compare: fake\\n\\nMachine: Fake CPU (1 core); Keras 0. More.\\n\\n"
    "Explanation to leave out.\\n\\n| batch 1 | cpu |\\n| --- | ---: |\\n| img/s | 1.0 |\\n\\n[1] a footnote\\n\\n"
    "Recommendation, batch 1: fastest: cpu.\\n'); (out / 'results.png').write_bytes(b'PNG')\" {out}"
)
_FAKE_OUTPUTS = (
    docs.Output("table", _WRITE_RESULTS, "results.md", (("results.png", "docs/chart.png"),)),
    docs.Output("hello", "python -c \"print('hello from the command')\""),
)


def test_write_outputs_runs_the_commands_and_fills_every_block(tmp_path):
    root = _fake_root(tmp_path)
    written = docs.write_outputs(root, _FAKE_OUTPUTS, date="2000-01-02")
    assert set(written) == {root / "README.md", root / "docs" / "page.md", root / "docs" / "chart.png"}
    readme, page = _text(root / "README.md"), _text(root / "docs" / "page.md")
    assert readme.startswith("# Title\n\nbefore\n\n") and readme.endswith("\n\nafter\n")
    summary = docs.block(readme, *docs.output_markers("table", "summary"))
    assert summary is not None and "old" not in summary
    assert "run on 2000-01-02" in summary and "Machine: Fake CPU (1 core); Keras 0." in summary
    assert "| img/s | 1.0 |" in summary and "[1] a footnote" in summary and "Recommendation, batch 1" in summary
    shown = summary.split("\n\n", 1)[1]  # after the line that says where it comes from
    assert "Explanation to leave out" not in shown and "More." not in shown
    full = docs.block(page, *docs.output_markers("table"))
    assert full is not None and "**devswitch compare: fake**" in full and "Explanation to leave out" in full
    assert "\n# " not in full  # the title is not a heading of the page
    hello = docs.block(page, *docs.output_markers("hello"))
    assert hello is not None and "stale" not in hello
    assert "```text\n$ python -c" in hello and "hello from the command\n```" in hello
    assert page.endswith("<!-- output:hello end -->\ntail\n")
    assert (root / "docs" / "chart.png").read_bytes() == b"PNG"


def test_write_outputs_writes_nothing_when_a_command_fails(tmp_path):
    root = _fake_root(tmp_path)
    before = {path: _text(path) for path in (root / "README.md", root / "docs" / "page.md")}
    failing = (_FAKE_OUTPUTS[0], docs.Output("hello", "python -c \"raise SystemExit('no luck')\""))
    with pytest.raises(RuntimeError) as raised:
        docs.write_outputs(root, failing)
    said = str(raised.value)  # the output's name, its command, its exit code, what it printed
    assert said.startswith("hello: ") and "SystemExit" in said and " 1:\n" in said and said.rstrip().endswith("no luck")
    assert {path: _text(path) for path in before} == before
    assert not (root / "docs" / "chart.png").exists()


def test_write_outputs_refuses_blocks_and_names_it_does_not_know(tmp_path):
    root = _fake_root(tmp_path)
    with pytest.raises(ValueError) as raised:
        docs.write_outputs(root, _FAKE_OUTPUTS, only=["nothing"])
    assert "nothing" in str(raised.value) and str(raised.value).endswith("table, hello")  # the name, the known ones
    with pytest.raises(ValueError) as raised:
        docs.write_outputs(root, _FAKE_OUTPUTS[:1])
    assert str(raised.value).startswith(f"{root / 'docs' / 'page.md'}: ") and "'hello'" in str(raised.value)
    (root / "docs" / "page.md").write_text(
        "<!-- output:table:everything begin -->\n<!-- output:table:everything end -->"
    )
    with pytest.raises(ValueError) as raised:
        docs.write_outputs(root, _FAKE_OUTPUTS)
    assert "'table'" in str(raised.value) and "'everything'" in str(raised.value)  # the output and its view


def test_the_generator_command_line_runs_one_output_with_another_command(tmp_path, capsys):
    root = _fake_root(tmp_path)
    argv = ["--outputs", str(root), "--only", "hello", "--command", "hello=python -c \"print('instead')\""]
    code = docs.main(argv, _FAKE_OUTPUTS)
    assert code == 0, capsys.readouterr().err
    page = _text(root / "docs" / "page.md")
    assert "instead" in docs.block(page, *docs.output_markers("hello")) and "stale" not in page
    assert "old" in _text(root / "README.md")  # the other output was not run
    with pytest.raises(SystemExit) as refused:  # an unknown output name is a usage error of argparse's
        docs.main(["--outputs", str(root), "--command", "nothing=true"], _FAKE_OUTPUTS)
    assert refused.value.code == 2


# --- links, nav, options, length -------------------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where a link is only an example."""
    return re.sub(r"`[^`\n]*`", "", _FENCE.sub("", text))


def _slugs(heading: str) -> set[str]:
    """The anchors a heading gets: Python-Markdown's toc (MkDocs) and GitHub's."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "").strip()
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    mkdocs = re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", ascii_text).strip().lower())
    github = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
    return {mkdocs, github}


def _anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _FENCE.sub("", _text(path)), re.M)
    return {slug for heading in headings for slug in _slugs(heading)}


def _relative_links(path: Path) -> list[str]:
    return [t for t in _LINK.findall(_prose(_text(path))) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_link_checker_finds_links_and_anchors():
    links = _relative_links(ROOT / "README.md")
    assert "docs/alexnet-compare-cpu.png" in links and "docs/compare.md" in links
    assert "rounds" in _anchors(DOCS / "compare.md")
    assert _slugs("`devswitch info [--json]`") == {"devswitch-info-json", "devswitch-info---json"}


@pytest.mark.parametrize("path", [ROOT / "README.md", *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_and_heading_that_exist(path):
    for link in _relative_links(path):
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.is_file(), f"{path.name}: link {link!r}: no such file {file}"
        assert file.is_relative_to(ROOT), f"{path.name}: link {link!r} leaves the repository"
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file), f"{path.name}: link {link!r}: no heading with that anchor"


def _nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    config = yaml.safe_load(_text(ROOT / "mkdocs.yml"))
    assert config["docs_dir"] == "docs" and config["site_dir"] == "site"
    nav = _nav_pages(config["nav"])
    assert len(nav) == len(set(nav)), "a page is in the nav twice"
    for page in nav:
        assert (DOCS / page).is_file(), f"mkdocs.yml nav names {page}, which does not exist"
    assert {str(p.relative_to(DOCS)) for p in PAGES} == set(nav)
    assert "site/" in _text(ROOT / ".gitignore").splitlines()


def _subcommand_parsers():
    import argparse

    from _devswitch.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def test_every_option_of_every_subcommand_is_documented():
    """Building the parsers imports no framework, and each of their options appears in the pages."""
    frameworks = ("tensorflow", "keras", "jax", "torch")
    before = set(sys.modules)
    parsers = _subcommand_parsers()
    assert not [m for m in set(sys.modules) - before if m.split(".")[0] in frameworks]
    assert set(parsers) == {"info", "init", "run", "compare", "report", "tune"}
    pages = _all_pages_text()
    missing = []
    for name, parser in parsers.items():
        assert f"devswitch {name}" in pages, name
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help") and not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", pages):
                    missing.append(f"devswitch {name} {option}")
    assert not missing, f"not in docs/*.md: {missing}"


def test_the_readme_is_short_and_keeps_the_two_setup_commands():
    readme = _text(ROOT / "README.md")
    assert len(readme.splitlines()) <= README_MAX_LINES
    assert (
        'python -m venv .venv && . .venv/bin/activate && python -m pip install ".[test,jax,torch]" && '
        "devswitch compare alexnet --iterations 5 --warmup 2\npytest -q\n"
    ) in readme
    for page in PAGES:
        if page.name != "index.md":
            assert f"(docs/{page.relative_to(DOCS)}" in readme, f"the README does not link {page.name}"


# --- the site ---------------------------------------------------------------------------------------------------


@pytest.mark.subprocess
def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: no warning (broken link or anchor, page left out of the nav, bad docstring)."""
    missing = [name for name in ("mkdocs", "material", "mkdocstrings") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the docs extra is not installed ({', '.join(missing)}): pip install '.[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml")]
        + ["--site-dir", str(site)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "WARNING" not in done.stderr
    for page in PAGES:
        stem = page.relative_to(DOCS).with_suffix("")
        assert (site / ("index.html" if stem.name == "index" else f"{stem}/index.html")).is_file(), page
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("devswitch.configure", "_devswitch.session.config", "_devswitch.benchmarking.benchmark"):
        assert f'id="{name}"' in api, name
