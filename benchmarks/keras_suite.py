"""Keras' own tests as a gate: the same test files run with and without ``import devswitch`` first (issue 26).

    python benchmarks/keras_suite.py KERAS_SOURCE [--backends tensorflow,jax,torch]
                                     [--groups saving,trainer,models,callbacks,precision] [--files PATH ...]
                                     [-k EXPR] [--out DIR] [--timeout SECONDS] [--side-by-side]

KERAS_SOURCE is a checkout of Keras' repository at the installed version's tag, e.g.
``git clone --branch v3.15.1 --depth 1 https://github.com/keras-team/keras``. Its test files are read
from there; nothing of them is copied into this project. They test the *installed* Keras (the one
devswitch patches): each run is ``python -c "[import devswitch;] import pytest; pytest.main([...])"`` in a
scratch folder, with ``--import-mode=importlib`` so that the checkout never lands on ``sys.path``, and
with Keras' own ``pyproject.toml`` (its warnings-as-errors filters) and ``conftest.py``. The run reports
which ``keras`` it imported, and a run that imported the checkout's is refused.

Per backend (``KERAS_BACKEND`` per process: TensorFlow and PyTorch never share a backend's runs), two
runs: ``plain`` and ``devswitch`` (``import devswitch`` as the first line, every DEVSWITCH_* variable
cleared, so devswitch runs with nothing chosen). Each writes one JSON line per test as it ends (a small
pytest plugin in the child, so a run stopped at ``--timeout`` still tells what it ran); the outcomes
(passed, failed, error, skipped) are compared test by test and every difference is printed with the
failing side's message. ``--side-by-side`` runs a backend's two runs at the same time.

Exit status: 0 no difference, 1 some test's outcome differs, 2 bad arguments (no checkout, a version
that is not the installed one, a file that does not exist), 3 a run ended without its report (a crash or
the time limit).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")

# Test files per group, relative to the checkout. keras/src/models/variable_mapping_test.py is left out: it
# imports another test module (saving_lib_test) as part of the keras package, which the installed Keras lacks.
GROUPS: dict[str, tuple[str, ...]] = {
    "saving": (
        "keras/src/saving/saving_api_test.py",
        "keras/src/saving/saving_lib_test.py",
        "keras/src/saving/serialization_lib_test.py",
        "keras/src/saving/file_editor_test.py",
        "keras/src/legacy/saving/legacy_h5_format_test.py",
    ),
    "trainer": (
        "keras/src/trainers/trainer_test.py",
        "keras/src/trainers/compile_utils_test.py",
        "keras/src/trainers/epoch_iterator_test.py",
    ),
    "models": (
        "keras/src/models/model_test.py",
        "keras/src/models/functional_test.py",
        "keras/src/models/sequential_test.py",
        "keras/src/models/cloning_test.py",
    ),
    "callbacks": (
        "keras/src/callbacks/model_checkpoint_test.py",
        "keras/src/callbacks/early_stopping_test.py",
        "keras/src/callbacks/callback_test.py",
        "keras/src/callbacks/backup_and_restore_test.py",
    ),
    "precision": (
        "keras/src/dtype_policies/dtype_policy_test.py",
        "keras/src/dtype_policies/dtype_policy_map_test.py",
        "keras/src/optimizers/loss_scale_optimizer_test.py",
    ),
}

WAYS = ("plain", "devswitch")
RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}  # a test reported twice keeps its worst outcome

# The child: pytest with a plugin that writes one JSON line per test phase as it ends (so a run stopped at the
# time limit still tells what it ran), and, once collected, which keras it imported and what devswitch applied.
BOOT = """\
{first}import json, os, sys
import pytest


class Report:
    def __init__(self):
        self.out = open(os.environ["KERAS_SUITE_REPORT"], "a", buffering=1)

    def pytest_collection_finish(self, session):
        keras, switch = sys.modules.get("keras"), sys.modules.get("devswitch")
        self.out.write(json.dumps({{"keras": getattr(keras, "__file__", None),
                                   "devswitch": repr(switch.plan()) if switch else ""}}) + "\\n")

    def pytest_runtest_logreport(self, report):
        message = ""
        if not report.passed:
            text = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            message = (getattr(report.longrepr, "reprcrash", None) and report.longrepr.reprcrash.message) or text
        self.out.write(json.dumps({{"test": report.nodeid, "when": report.when, "outcome": report.outcome,
                                   "message": str(message).strip().split("\\n")[0][:300]}}) + "\\n")


sys.exit(pytest.main(sys.argv[1:], plugins=[Report()]))
"""


@dataclass(frozen=True)
class Outcome:
    state: str  # passed, failed, error, skipped
    message: str  # the first line of the failure, error or skip message ('' when passed)


@dataclass(frozen=True)
class Run:
    backend: str
    way: str
    code: int
    seconds: float
    outcomes: dict[str, Outcome]
    log: Path
    keras_file: str
    plan: str  # the devswitch run's devswitch.plan(), as its repr ('' in a plain run)


class Refused(Exception):
    """Bad arguments: exit 2 with the message."""


def source_version(source: Path) -> str:
    text = (source / "keras" / "src" / "version.py").read_text()
    match = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if not match:
        raise Refused(f"{source}/keras/src/version.py names no __version__")
    return match.group(1)


def check_source(source: Path) -> str:
    """The checkout's Keras version, which must be the installed one."""
    if not (source / "keras" / "src" / "version.py").is_file() or not (source / "conftest.py").is_file():
        raise Refused(
            f"{source} is not a Keras source checkout (no keras/src/version.py or conftest.py); "
            "give the folder of a clone of https://github.com/keras-team/keras"
        )
    installed, checkout = version("keras"), source_version(source)
    if installed != checkout:
        raise Refused(
            f"{source} holds Keras {checkout}, but Keras {installed} is installed; check out its tag: "
            f"git -C {source} checkout v{installed}"
        )
    return installed


def read_report(path: Path) -> tuple[dict[str, Outcome], str, str]:
    """Each test's outcome from the child's report (keyed by pytest's node id; a test keeps its worst phase:
    a failed setup or teardown is an error, a skip at setup a skip), the keras file it imported and
    devswitch's plan ('' in a plain run)."""
    found: dict[str, Outcome] = {}
    keras_file = plan = ""
    for line in path.read_text(errors="replace").splitlines() if path.is_file() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by the time limit
        if "keras" in entry:
            keras_file, plan = str(entry["keras"]), str(entry["devswitch"])
            continue
        outcome = entry["outcome"]
        state = outcome if entry["when"] == "call" or outcome == "skipped" else "error" if outcome == "failed" else ""
        if not state:
            continue  # a setup or teardown that passed says nothing about the test
        key = entry["test"]
        if key not in found or RANK[state] > RANK[found[key].state]:
            found[key] = Outcome(state, entry["message"])
    return found, keras_file, plan


def clean_environ(backend: str, home: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSWITCH")}
    env.update(KERAS_BACKEND=backend, PYTHONUNBUFFERED="1")
    if home:
        env["HOME"] = home
    return env


def run_one(
    source: Path,
    files: list[str],
    backend: str,
    way: str,
    out: Path,
    keyword: str | None,
    timeout: float,
    home: str | None,
) -> Run:
    """One pytest process over ``files`` on ``backend``, ``way`` plain or devswitch; its report read back."""
    stem = f"{backend}-{way}"
    report, log = out / f"{stem}.jsonl", out / f"{stem}.log"
    report.unlink(missing_ok=True)
    work = out / stem
    work.mkdir(parents=True, exist_ok=True)
    switched = way == "devswitch"
    boot = BOOT.format(first="import devswitch\n" if switched else "")
    args = [
        sys.executable,
        "-c",
        boot,
        "-c",
        str(source / "pyproject.toml"),
        "--rootdir",
        str(source),
        "--import-mode=importlib",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-q",
        "-rfE",
        *(["-k", keyword] if keyword else []),
        *(str(source / f) for f in files),
    ]
    started = time.monotonic()
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            args,
            cwd=work,
            env={**clean_environ(backend, home), "KERAS_SUITE_REPORT": str(report)},
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = -signal.SIGKILL
    seconds = time.monotonic() - started
    outcomes, keras_file, plan = read_report(report)
    return Run(backend, way, code, seconds, outcomes, log, keras_file, plan)


def counts(run: Run) -> str:
    tally = {state: 0 for state in RANK}
    for outcome in run.outcomes.values():
        tally[outcome.state] += 1
    return ", ".join(f"{n} {state}" for state, n in tally.items() if n) or "no test"


def compare(plain: Run, switched: Run, both_only: bool = False) -> list[str]:
    """One line (and the message of the side that did not pass) per test whose outcome differs; with
    ``both_only`` (a run was cut short) only the tests both runs finished."""
    lines = []
    for key in sorted(set(plain.outcomes) | set(switched.outcomes)):
        a, b = plain.outcomes.get(key), switched.outcomes.get(key)
        if both_only and not (a and b):
            continue
        if (a and a.state) == (b and b.state):
            continue
        lines.append(f"  {key}: {a.state if a else 'not run'} -> {b.state if b else 'not run'}")
        worse = b if b and (not a or RANK[b.state] > RANK[a.state]) else a
        if worse and worse.message:
            lines.append(f"      {'devswitch' if worse is b else 'plain'}: {worse.message}")
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("source", type=Path, metavar="KERAS_SOURCE", help="a Keras checkout at the installed version")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default: all three)")
    p.add_argument(
        "--groups",
        default=",".join(GROUPS),
        help=f"comma-separated groups of test files: {', '.join(GROUPS)} (default: all)",
    )
    p.add_argument(
        "--files",
        nargs="+",
        metavar="PATH",
        help="test files relative to KERAS_SOURCE (instead of --groups), e.g. keras/src/saving/saving_lib_test.py",
    )
    p.add_argument("-k", dest="keyword", help="pytest -k expression, passed to every run")
    p.add_argument("--out", type=Path, help="where the per-test reports and logs go (default: a new temporary folder)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run (default 3600)")
    p.add_argument(
        "--side-by-side",
        action="store_true",
        help="run a backend's plain and devswitch runs at the same time (two cores' worth)",
    )
    p.add_argument(
        "--home",
        help="HOME for the runs (default: a new empty folder, so no ~/.devswitchrc or "
        "~/.keras of this user's changes a run)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    source = args.source.resolve()
    try:
        keras_version = check_source(source)
        backends = [b for b in args.backends.split(",") if b]
        if not backends or set(backends) - set(BACKENDS):
            raise Refused(f"--backends {args.backends}: choose from {', '.join(BACKENDS)}")
        if args.files:
            files = list(args.files)
        else:
            groups = [g for g in args.groups.split(",") if g]
            if not groups or set(groups) - set(GROUPS):
                raise Refused(f"--groups {args.groups}: choose from {', '.join(GROUPS)}")
            files = [f for g in groups for f in GROUPS[g]]
        missing = [f for f in files if not (source / f).is_file()]
        if missing:
            raise Refused(f"not in {source}: {', '.join(missing)}")
    except Refused as exc:
        print(f"keras_suite: error: {exc}", file=sys.stderr)
        return 2
    out = (args.out or Path(tempfile.mkdtemp(prefix="keras-suite-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    home = args.home or str(Path(tempfile.mkdtemp(prefix="home-", dir=out)))
    print(
        f"keras_suite: Keras {keras_version}, tests from {source} ({len(files)} files), on "
        f"{', '.join(backends)}; reports and logs in {out}",
        flush=True,
    )

    differing, broken, total = 0, 0, 0
    for backend in backends:
        with ThreadPoolExecutor(2 if args.side_by_side else 1) as pool:
            started = {
                way: pool.submit(run_one, source, files, backend, way, out, args.keyword, args.timeout, home)
                for way in WAYS
            }
            runs = {way: started[way].result() for way in WAYS}
        for way, run in runs.items():
            where = run.keras_file or "unknown"
            print(
                f"{backend:10} {way:9} {len(run.outcomes):5} tests in {run.seconds:6.0f} s: {counts(run)} "
                f"(exit {run.code}; keras from {where})",
                flush=True,
            )
            if run.code < 0:
                broken += 1
                print(
                    f"  ended by signal {-run.code} (the time limit, --timeout {args.timeout:.0f} s): only the "
                    "tests both runs finished are compared",
                    flush=True,
                )
            if not run.outcomes:
                broken += 1
                print(f"  no report: the run ended without one; see {run.log}", flush=True)
            elif where.startswith(str(source)):
                broken += 1
                print(f"  it imported Keras from the checkout ({where}), not the installed one", flush=True)
            elif way == "devswitch" and not run.plan.startswith("Plan("):
                broken += 1
                print(f"  devswitch was not active in it (devswitch.plan() = {run.plan or 'not printed'})", flush=True)
            elif way == "devswitch":
                print(f"  devswitch applied: {run.plan[:160]}", flush=True)
        lines = compare(runs["plain"], runs["devswitch"], both_only=any(r.code < 0 for r in runs.values()))
        total += len(set(runs["plain"].outcomes) | set(runs["devswitch"].outcomes))
        changed = sum(1 for line in lines if line.startswith("  ") and not line.startswith("      "))
        differing += changed
        print(f"{backend}: {changed} difference(s)" + (":" if lines else ""), flush=True)
        for line in lines:
            print(line, flush=True)

    print(
        f"keras_suite: {total} tests on {len(backends)} backend(s), {differing} difference(s) between plain "
        f"and import devswitch" + (f"; {broken} run(s) without a usable report" if broken else "")
    )
    return 3 if broken else 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
