"""The package passes its linter, its formatter's check and its type checker, as configured in pyproject.toml."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.subprocess


def run_tool(module: str, *args: str) -> None:
    """Run ``python -m module args`` in the repository root; fail with its output unless it exits 0."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{module} {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"


def test_ruff_finds_nothing_to_report():
    """``ruff check devswitch _devswitch`` passes (lint rules E, F, W, I, B, UP)."""
    run_tool("ruff", "check", "devswitch", "_devswitch")


def test_the_package_is_formatted():
    """``ruff format --check devswitch _devswitch`` would change no file."""
    run_tool("ruff", "format", "--check", "devswitch", "_devswitch")


def test_mypy_finds_no_type_errors():
    """``mypy`` (packages and options from pyproject.toml) reports no error."""
    run_tool("mypy")
