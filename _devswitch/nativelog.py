"""TensorFlow's, JAX's and PyTorch's native start-up lines, filtered by ``log_level``.

TensorFlow 2.20+ (and jaxlib) log their start-up lines through absl before they read
TF_CPP_MIN_LOG_LEVEL, so the variable alone cannot honour ``log_level``; devswitch
captures fd 2 while the framework is imported and its devices probed, and replays
what passes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

_ABSL_LINE = re.compile(r"^([IWEF])\d{4} ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_DROP = {"quiet": "IWE", "error": "IW", "warning": "I", "info": "", "debug": ""}


def filter_native_log(text: str, log_level: str) -> str:
    """Drop absl-formatted TensorFlow lines below ``log_level`` (and their continuation lines)."""
    drop = _DROP[log_level]
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _ABSL_LINE.match(line)
        if match:
            dropping = match.group(1) in drop
        elif line.rstrip("\n") == _ABSL_PREAMBLE:
            dropping = bool(drop)
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def native_log_filter(log_level: str, library: str):
    """Filter what native code writes to fd 2 while the block runs (only while ``library`` is first imported)."""
    if not _DROP[log_level] or library in sys.modules:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = filter_native_log(capture.read().decode("utf-8", "replace"), log_level)
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()
