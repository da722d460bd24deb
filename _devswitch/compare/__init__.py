"""``devswitch compare``: a matrix of configurations (backend x device x precision x the --vary settings), one
worker process each.

Data flows one way: ``Options`` -> the output folder checked (``options``) -> one worker per
configuration (``axes``: the columns, in order; ``protocol``: the spec it gets, the events it appends;
``dispatch`` picks the runner: ``matrix`` one after another or ``rounds`` in turns, both over ``runs``;
``script`` runs a user's script) -> a typed ``ResultSet`` (``resultset``: the one schema of results.json) -> the
recommendation (``recommend``) -> the files (``render/outputs.py``: render/ draws them; compare/ knows no renderer).
``report`` compares two result sets.
"""

from .dispatch import run_matrix
from .matrix import run_configuration
from .options import DEFAULT_ROOT, RESULT_FILES, WORK_PREFIX, Options, Output, prepare_output
from .recommend import Pick, recommend, recommendation_lines, switch_text
from .resultfile import read
from .resultset import Cell, Configuration, Key, ResultFileError, ResultSet
from .runs import ConfigRun, cells_of

__all__ = [
    "Cell",
    "ConfigRun",
    "Configuration",
    "DEFAULT_ROOT",
    "Key",
    "Options",
    "Output",
    "Pick",
    "RESULT_FILES",
    "ResultFileError",
    "ResultSet",
    "WORK_PREFIX",
    "cells_of",
    "prepare_output",
    "read",
    "recommend",
    "recommendation_lines",
    "run_configuration",
    "run_matrix",
    "switch_text",
]
