"""mypy checks each backend module against the Protocol ``interface.Backend`` here: a module satisfies a
Protocol when it is assigned to a name of its type. Nothing imports this module (it would add nothing at run
time); tests/test_backends.py checks that every module of ``NAMES`` is named here."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import jax as _jax
    from . import tensorflow as _tensorflow
    from . import torch as _torch
    from .interface import Backend

    _check_tensorflow: Backend = _tensorflow
    _check_jax: Backend = _jax
    _check_torch: Backend = _torch
