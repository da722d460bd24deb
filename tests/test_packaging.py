"""What users install: the wheel holds every module of the source tree, the tests run against the installed
package (not the checkout), and the version has one source that the changelog and the CLI agree with."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGES = (ROOT / "devswitch", ROOT / "_devswitch")  # the face and the machinery
SOURCE = PACKAGES[0]


def _source_files() -> set[str]:
    """Every file of the packages in the source tree that a wheel must carry, as wheel paths."""
    files = {p for package in PACKAGES for p in package.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    return {p.relative_to(ROOT).as_posix() for p in files}


def _editable() -> bool | None:
    """Whether devswitch is installed in editable (developer) mode; None when it is not installed at all."""
    try:
        dist = importlib.metadata.distribution("devswitch")
    except importlib.metadata.PackageNotFoundError:
        return None
    direct = dist.read_text("direct_url.json")
    return bool(direct and json.loads(direct).get("dir_info", {}).get("editable"))


@pytest.mark.subprocess
def test_the_wheel_built_from_the_source_holds_every_module(tmp_path):
    """``python -m build`` on a copy of the tree (the checkout gets no build/ or egg-info) gives an sdist and a
    wheel; the wheel holds exactly the package's files, and its metadata carries the one version."""
    if importlib.util.find_spec("build") is None:
        pytest.skip("the 'build' package is not installed (pip install '.[test]')")
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    for package in PACKAGES:
        shutil.copytree(package, tree / package.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"), str(tree)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("devswitch-*.whl")
    assert len(list((tmp_path / "dist").glob("devswitch-*.tar.gz"))) == 1
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        version = re.search(r"^Version: (.+)$", archive.read(metadata).decode(), re.M)
    shipped = {n for n in names if n.startswith(("devswitch/", "_devswitch/"))}
    missing, extra = _source_files() - shipped, shipped - _source_files()
    assert not missing, f"modules in the source tree but not in the wheel: {sorted(missing)}"
    assert not extra, f"files in the wheel but not in the source tree: {sorted(extra)}"
    assert "_devswitch/compare/__init__.py" in shipped and "devswitch/py.typed" in shipped
    assert version and version.group(1) == _version()


def test_devswitch_is_imported_from_the_installed_package_not_the_checkout():
    editable = _editable()
    assert editable is not None, "devswitch is not installed: pip install '.[test,jax,torch]' (README, set-up)"
    if editable:
        pytest.skip("an editable install (developer mode): devswitch is the checkout by design; "
                    ".ci/run and the README's set-up test the installed wheel")
    import devswitch

    where = Path(devswitch.__file__).resolve().parent
    assert where != SOURCE.resolve(), f"devswitch was imported from the checkout ({where}), not the installed wheel"
    site = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    assert where.parent in site, f"devswitch imported from {where}, not from site-packages ({sorted(map(str, site))})"
    installed = importlib.metadata.distribution("devswitch").files or []
    assert {f.as_posix() for f in installed if f.as_posix().startswith(("devswitch/", "_devswitch/"))} >= _source_files(), \
        "the installed package lacks modules that the source tree has"


def _version() -> str:
    """The version as written in its one place (_devswitch/_version.py), read without importing devswitch."""
    match = re.search(r'^__version__ = "([^"]+)"$', (ROOT / "_devswitch" / "_version.py").read_text(), re.M)
    assert match, "_devswitch/_version.py must set __version__ = \"X.Y.Z\""
    return match.group(1)


def test_the_version_is_written_once_and_the_changelog_and_the_cli_agree(capsys):
    assert "version =" not in re.sub(r"(?s)\[tool\..*", "", (ROOT / "pyproject.toml").read_text()).split(
        "[project]")[1].split("\n[")[0].replace("dynamic", ""), "pyproject's [project] must not write the version"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in changelog and "Semantic Versioning" in changelog
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", changelog, re.M)
    assert releases, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' entry"
    assert releases[0][0] == _version(), f"the newest changelog entry is {releases[0][0]}, the package {_version()}"
    assert [r[1] for r in releases] == sorted((r[1] for r in releases), reverse=True), "entries newest first"
    import devswitch
    from _devswitch.cli import main

    assert devswitch.__version__ == _version()
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"devswitch {_version()}"
    if _editable() is False:  # an installed wheel: its metadata carries the same version
        assert importlib.metadata.version("devswitch") == _version()


def test_the_gpu_check_script_parses_and_runs_the_gpu_lane_against_local_wheels():
    script = ROOT / "benchmarks" / "gpu_check.sh"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    assert "--no-index --no-deps" in text and "-m gpu" in text and "--backends jax,torch" in text
    assert "--devices cpu,gpu" in text and "import tensorflow" not in text  # that machine has no TensorFlow
