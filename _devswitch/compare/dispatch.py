"""Which runner takes a factory compare: workers one after another (``matrix``) or kept warm and taking
turns in rounds (``rounds``, with ``--rounds`` over 1). Both build their result set with ``runs``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .matrix import run_sequential
from .options import Options
from .resultset import ResultSet
from .rounds import run_interleaved


def run_matrix(
    options: Options,
    progress: Callable[[str], None],
    workdir: Path,
    on_update: Callable[[ResultSet], None] | None = None,
) -> ResultSet:
    """Run every configuration with the runner ``options`` asks for and return the result set (written by
    ``render.outputs.write_outputs``); ``on_update`` gets the document so far between configurations."""
    runner = run_interleaved if options.rounds > 1 else run_sequential
    return runner(options, progress, workdir, on_update)
