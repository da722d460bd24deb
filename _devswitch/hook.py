"""The import hook of ``import devswitch``: the rest of the switch is applied when the process first imports Keras.

``import devswitch`` resolves the configuration and sets the variables a framework reads when it starts;
the device choice, the dtype policy and the Keras patches wait for ``import keras``, so whatever the script
puts in ``os.environ`` before that import (``os.environ["KERAS_BACKEND"] = "jax"``, as keras.io's examples
do) is seen. The hook is a ``sys.meta_path`` finder that answers for ``keras`` only: it finds Keras' own spec
with the finders after it and wraps that spec's loader, so ``before()`` runs just before Keras' package
executes (the backend and its variables, the framework set up, as ``apply`` has always done before
importing Keras) and ``after()`` right after it (the policy and the patches). It is removed the moment it
fires (or at ``reset()``); Keras' module keeps its own loader.

Nothing here imports a framework.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from types import FrameType, ModuleType

TARGET = "keras"


class KerasFinder(importlib.abc.MetaPathFinder):
    """Answers ``find_spec("keras")`` with Keras' own spec, its loader wrapped to call ``before`` and ``after``
    around the execution of Keras' package; and for ``framework`` (the backend's library, which a script may
    import before Keras), calls ``on_framework()`` once it has executed, which says whether it applied the
    switch (then the hook is done)."""

    def __init__(
        self,
        before: Callable[[], None],
        after: Callable[[], None],
        framework: str | None = None,
        on_framework: Callable[[], bool] | None = None,
    ) -> None:
        self.before, self.after = before, after
        self.framework, self.on_framework = framework, on_framework

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TARGET and (fullname != self.framework or self.on_framework is None):
            return None
        spec = None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec  # no Keras (the import fails as it would), or a loader this hook cannot wrap
        spec.loader = _Loader(spec.loader, self, fullname)
        return spec


class _Loader(importlib.abc.Loader):
    """Keras' loader, with the switch applied around the execution of its package."""

    def __init__(self, loader: importlib.abc.Loader, finder: KerasFinder, name: str) -> None:
        self.loader, self.finder, self.name = loader, finder, name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Keras' module keeps its own loader; the hook fires once
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        module.__loader__ = self.loader
        if self.name != TARGET:  # the framework, first: the switch once it has executed (Keras is imported then)
            self.loader.exec_module(module)
            if self.finder.on_framework is not None and self.finder.on_framework():
                remove(self.finder)
            return
        remove(self.finder)
        self.finder.before()
        self.loader.exec_module(module)
        self.finder.after()

    def __getattr__(self, name: str) -> object:
        return getattr(self.loader, name)


def install(finder: KerasFinder) -> None:
    """Put ``finder`` first on ``sys.meta_path`` (once)."""
    if finder not in sys.meta_path:
        sys.meta_path.insert(0, finder)


def remove(finder: KerasFinder) -> None:
    """Take ``finder`` off ``sys.meta_path`` (nothing when it is not there)."""
    try:
        sys.meta_path.remove(finder)
    except ValueError:
        pass


# --- where the script set a variable ------------------------------------------------------------------


def importer(skip: Iterable[str] = ()) -> FrameType | None:
    """The frame that is importing Keras now: the first one outside importlib, devswitch and ``skip``
    (folders), or None."""
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    skipped = (here, *(os.path.join(os.path.abspath(folder), "") for folder in skip))
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith("<frozen importlib") and not os.path.abspath(name).startswith(skipped):
            return frame
        frame = frame.f_back
    return None


def _assignment(name: str) -> re.Pattern[str]:
    """A line that sets ``name`` in os.environ: ``environ["NAME"] = ...``, ``setdefault("NAME", ...)``,
    ``putenv("NAME", ...)`` or ``update(NAME=...)``."""
    quoted = rf"""['"]{re.escape(name)}['"]"""
    return re.compile(
        rf"environ\s*\[\s*{quoted}\s*\]\s*=(?!=)|(setdefault|putenv)\s*\(\s*{quoted}|update\s*\(.*\b{re.escape(name)}\s*="
    )


def where_set(name: str, files: Iterable[str], limit: int = 1 << 20) -> str | None:
    """ "train.py:3": the one line of ``files`` that sets ``name`` in the environment, or None when there is
    no such line or more than one (then which of them ran cannot be known from the source)."""
    pattern = _assignment(name)
    found = []
    for path in dict.fromkeys(files):
        try:
            with open(path, encoding="utf-8", errors="replace") as file:
                text = file.read(limit)
        except OSError:
            continue
        found += [
            f"{os.path.basename(path)}:{number}"
            for number, line in enumerate(text.splitlines(), 1)
            if pattern.search(line.split("#", 1)[0])
        ]
    return found[0] if len(found) == 1 else None


def script_files(frame: FrameType | None) -> list[str]:
    """The files a variable set before ``import keras`` most likely comes from: the importing frame's file,
    then the ``__main__`` script's."""
    files = []
    if frame is not None and os.path.isfile(frame.f_code.co_filename):
        files.append(frame.f_code.co_filename)
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if isinstance(main, str) and os.path.isfile(main):
        files.append(main)
    return files


def describe_setter(name: str, frame: FrameType | None) -> str:
    """Where the script set ``name``: "train.py:3" when one line of its source does, else "the script before
    importing keras (train.py)" (the file that imported Keras), else "the script before importing keras"."""
    files = script_files(frame)
    line = where_set(name, files)
    if line is not None:
        return line
    if files:
        return f"the script before importing keras ({os.path.basename(files[0])})"
    return "the script before importing keras"
