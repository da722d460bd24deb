"""The names of devswitch's backends: every module of backends/ but the interface and its helpers, Keras'
default first. It imports nothing (not even backends/), so the declaration of the settings can list them."""

from __future__ import annotations

import pkgutil
from pathlib import Path

DEFAULT = "tensorflow"  # Keras' own default backend, listed first
_NOT_BACKENDS = {"common", "interface"}
NAMES: tuple[str, ...] = tuple(
    sorted(
        (
            m.name
            for m in pkgutil.iter_modules([str(Path(__file__).parent / "backends")])
            if m.name not in _NOT_BACKENDS and not m.name.startswith("_")
        ),
        key=lambda name: (name != DEFAULT, name),
    )
)
