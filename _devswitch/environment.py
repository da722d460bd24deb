"""Library versions and the build of the backend's framework: facts recorded with every result."""

from __future__ import annotations

import platform

from ._version import __version__


def versions(backend: str | None = None) -> dict:
    """Versions of Python, Keras, NumPy, devswitch and the backend's framework (imports Keras and it)."""
    import keras
    import numpy

    from . import backends

    name = backend or keras.backend.backend()
    return {
        "devswitch": __version__,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": name,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        **backends.get(name).versions(),
    }
