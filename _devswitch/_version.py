"""The one place the version is written: pyproject reads it (setuptools ``dynamic``), ``devswitch --version``
prints it, and CHANGELOG.md's newest entry must match it (tests/test_packaging.py)."""

__version__ = "0.3.0"
