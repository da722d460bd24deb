"""Shared fixtures. Nothing here reads or writes the real home directory or DEVSWITCH_* variables."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Importing devswitch inside the test process must not switch the test process itself.
os.environ["DEVSWITCH_DISABLE"] = "1"

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment minus every DEVSWITCH* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSWITCH")}
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def reset_devswitch():
    """Every test starts and ends with a process devswitch has not touched (the public devswitch.reset())."""
    if "devswitch" in sys.modules:
        sys.modules["devswitch"].reset()
    yield
    if "devswitch" in sys.modules:
        sys.modules["devswitch"].reset()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def project(home: Path) -> Path:
    """A project directory (with a sub-directory as the cwd) under the fake home."""
    path = home / "proj"
    (path / "src").mkdir(parents=True)
    return path


@pytest.fixture
def run_python(tmp_path: Path):
    """Run a Python script in a subprocess with a clean DEVSWITCH environment and a fake HOME."""

    def run(script: str | Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
        home = tmp_path / "subhome"
        home.mkdir(exist_ok=True)
        environ = clean_environ(HOME=str(home), PYTHONUNBUFFERED="1")
        environ.update(env or {})
        return subprocess.run([sys.executable, str(script), *args], env=environ, cwd=str(cwd or tmp_path),
                              capture_output=True, text=True, timeout=timeout)

    return run


def result_line(stdout: str) -> dict:
    import json

    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the script printed no RESULT line; stdout was:\n{stdout}"
    return json.loads(lines[-1][len("RESULT "):])


# --- one real devswitch compare for the whole session -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CompareRun:
    proc: subprocess.CompletedProcess
    out: Path       # the --out folder
    project: Path   # the working directory (where --save-profile wrote .devswitchrc)
    home: Path


SHARED_ARGS = ["mlp", "--devices", "cpu,gpu", "--precisions", "fp32,fp16", "--batch-sizes", "1,8",
               "--iterations", "3", "--warmup", "1", "--no-peak-probe", "--save-profile", "fastest"]


@pytest.fixture(scope="session")
def shared_compare(tmp_path_factory) -> CompareRun:
    """``compare mlp`` over cpu,gpu x fp32,fp16 x batch 1,8 with --save-profile, run once. Read it; never write
    into it (copy it to tmp_path first)."""
    root = tmp_path_factory.mktemp("shared-compare")
    home, project = root / "home", root / "project"
    home.mkdir()
    project.mkdir()
    out = root / "out"
    proc = subprocess.run([sys.executable, "-m", "devswitch", "compare", *SHARED_ARGS, "--out", str(out)],
                          cwd=project, env=clean_environ(HOME=str(home), PYTHONUNBUFFERED="1"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return CompareRun(proc, out, project, home)


# --- subprocesses started together ---------------------------------------------------------------------

@contextlib.contextmanager
def started_together(root: Path, jobs: dict, prepare: dict | None = None, workers: int = 2, timeout: float = 300):
    """Start ``python ARGS`` for every job ``name: (args, env[, umask])``, ``workers`` at a time (each starting
    a framework is mostly one busy core), each in its own folder under ``root`` (its cwd, with HOME in it);
    ``prepare[name](folder)`` runs first. Yields ``wait(name) -> (CompletedProcess, folder)``."""
    from concurrent.futures import ThreadPoolExecutor

    folders = {}
    for name in jobs:
        folders[name] = root / "".join(c if c.isalnum() else "-" for c in name)
        (folders[name] / "home").mkdir(parents=True)
        if prepare and name in prepare:
            prepare[name](folders[name])

    def run(name):
        args, env, *umask = jobs[name]
        return subprocess.run([sys.executable, *map(str, args)], cwd=folders[name], capture_output=True, text=True,
                              env=clean_environ(HOME=str(folders[name] / "home"), PYTHONUNBUFFERED="1", **env),
                              timeout=timeout, preexec_fn=(lambda: os.umask(umask[0])) if umask else None)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(run, name) for name in jobs}
        try:
            yield lambda name: (futures[name].result(), folders[name])
        finally:
            for future in futures.values():
                future.cancel()  # a failing test does not wait for processes nobody will read
