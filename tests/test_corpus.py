"""The corpus: scripts written the way users write Keras (tests/scripts/corpus/), each run three ways on
each backend it declares — plain, with ``import devswitch`` as its first line, and under ``devswitch run`` —
must end alike: the same exit code, the same final loss within noise, saved files of the same structure and
the same backend in force. Each also runs under ``devswitch compare --script`` over its backends.

What runs by default: the scripts of ``EVERY_RUN`` three ways on the first backend each lists (their lists
start with different backends, so all three are covered). The other scripts, the other backends and the
compares carry the ``corpus_full`` marker, left out unless ``-m`` names it (``pytest -m corpus_full``, as
.ci/run does after the main run).
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest

from conftest import SCRIPTS, Child, children, result_line

CORPUS = SCRIPTS / "corpus"
WAYS = ("plain", "import", "run")

# Every run of one script and backend starts from the same seeds, on the CPU, in float32 (or the script's
# own policy): plain Keras and Keras under devswitch with nothing chosen do the same arithmetic, so their
# losses are expected bit-for-bit equal. The tolerance leaves room only for what may legitimately differ
# between two processes: the order of a multi-threaded reduction (oneDNN and Eigen split work by the
# threads they get), a few float32 ulps compounded over the scripts' 20-40 steps. 1e-5 relative is ~80
# ulps; a devswitch that changed the arithmetic (another policy, XLA on or off, another device, a lost
# seed) moves a loss by 1e-3 or more. Half precision (mixed_precision_own) is compared at 1e-3: one
# float16 ulp is ~5e-4 of the value.
RTOL = {"default": 1e-5, "mixed_precision_own": 1e-3}


def backends_of(script: Path) -> tuple[str, ...]:
    """The script's module-level ``BACKENDS = (...)``, read without importing it."""
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["BACKENDS"]:
            value = ast.literal_eval(node.value)
            assert value and set(value) <= {"tensorflow", "jax", "torch"}, f"{script.name}: BACKENDS = {value!r}"
            return tuple(value)
    raise AssertionError(f"{script.name} declares no BACKENDS = (...) tuple")


SCRIPT_FILES = sorted(CORPUS.glob("*.py"))
PAIRS = [(script.stem, backend) for script in SCRIPT_FILES for backend in backends_of(script)]
# In every run (pytest -q): these scripts three ways on their first backend, the styles nothing else in the suite
# runs end to end (the backend set in code, checkpoints loaded back, a custom train_step, the subclassed model,
# each native loop, Keras' own mixed precision; the three backends). The rest join the corpus_full lane, which
# keeps pytest -q within 8 minutes on 2 cores.
# the native loops of JAX and PyTorch run in corpus_full: their fp16 loss-scaling notes have tests of their own
# (tests/test_keras_as_is.py), and JAX and PyTorch come first in backend_in_code and subclassed_model
EVERY_RUN = frozenset({"backend_in_code", "checkpoint_earlystop", "custom_train_step", "loop_tf_gradienttape",
                       "mixed_precision_own", "subclassed_model"})
FIRST = [(script.stem, backends_of(script)[0]) for script in SCRIPT_FILES if script.stem in EVERY_RUN]
OTHERS = [pair for pair in PAIRS if pair not in FIRST]


def _with_import_first(script: Path):
    """A copy of ``script`` in the run's folder with ``import devswitch`` as its first line, as the README says."""

    def write(folder: Path) -> None:
        (folder / script.name).write_text("import devswitch\n" + script.read_text())

    return write


def _three_ways(pairs: list[tuple[str, str]]) -> dict[str, Child]:
    runs = {}
    for stem, backend in pairs:
        script = CORPUS / f"{stem}.py"
        env = {"KERAS_BACKEND": backend}
        runs[f"{stem} {backend} plain"] = Child([script], env)
        runs[f"{stem} {backend} import"] = Child([script.name], env, prepare=_with_import_first(script))
        runs[f"{stem} {backend} run"] = Child(["-m", "devswitch", "run", script], env)
    return runs


def _corpus_first(root: Path) -> dict[str, Child]:
    """Each script three ways on the first backend it lists."""
    return _three_ways(FIRST)


def _corpus_others(root: Path) -> dict[str, Child]:
    """The scripts not in every run three ways on each backend they list, the others on their other backends."""
    return _three_ways(OTHERS)


def _corpus_compares(root: Path) -> dict[str, Child]:
    """One ``compare --script`` per script over the backends it lists, fits capped at 1 epoch x 3 steps."""
    return {script.stem: Child(["-m", "devswitch", "compare", "--script", script,
                                "--backends", ",".join(backends_of(script)), "--devices", "cpu",
                                "--precisions", "fp32", "--max-epochs", "1", "--max-steps", "3", "--rounds", "1",
                                "--out", "out"], timeout=600)
            for script in SCRIPT_FILES}


corpus_first = children(_corpus_first)
corpus_others = children(_corpus_others)
corpus_compares = children(_corpus_compares)


def differences(a: object, b: object, rtol: float, where: str = "") -> list[str]:
    """Where two RESULT values differ: floats beyond ``rtol`` (relative), anything else when not equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        if sorted(a) != sorted(b):
            return [f"{where or 'RESULT'}: keys {sorted(a)} != {sorted(b)}"]
        return [d for key in a for d in differences(a[key], b[key], rtol, f"{where}.{key}" if where else key)]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=rtol, abs_tol=0.0) else [f"{where}: {a!r} != {b!r} (rtol {rtol})"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def tail(proc, n: int = 3000) -> str:
    return f"exit {proc.returncode}\n--- stderr (end) ---\n{proc.stderr[-n:]}"


def check_three_ways(runs, stem: str, backend: str) -> None:
    """Plain, ``import devswitch`` first and ``devswitch run`` end with the same exit code and RESULT."""
    plain, _ = runs(f"{stem} {backend} plain")
    assert plain.returncode == 0, f"the corpus script itself fails without devswitch: {tail(plain)}"
    expected = result_line(plain.stdout)
    assert expected["backend"] == backend, f"{stem} ran on {expected['backend']}, KERAS_BACKEND={backend}"
    rtol = RTOL.get(stem, RTOL["default"])
    for way in ("import", "run"):
        proc, _ = runs(f"{stem} {backend} {way}")
        assert proc.returncode == plain.returncode, f"{way}: {tail(proc)}"
        got = result_line(proc.stdout)
        assert not differences(expected, got, rtol), (
            f"{way} differs from plain: {differences(expected, got, rtol)}\n{tail(proc, 1500)}")


@pytest.mark.subprocess
@pytest.mark.parametrize("stem, backend", FIRST, ids=[f"{s}-{b}" for s, b in FIRST])
def test_a_script_ends_alike_plain_imported_and_run(corpus_first, stem, backend):
    check_three_ways(corpus_first, stem, backend)


@pytest.mark.subprocess
@pytest.mark.corpus_full
@pytest.mark.parametrize("stem, backend", OTHERS, ids=[f"{s}-{b}" for s, b in OTHERS])
def test_a_script_ends_alike_plain_imported_and_run_on_its_other_backends(corpus_others, stem, backend):
    check_three_ways(corpus_others, stem, backend)


@pytest.mark.subprocess
@pytest.mark.corpus_full
@pytest.mark.parametrize("stem", [s.stem for s in SCRIPT_FILES])
def test_a_script_compares_over_its_backends(corpus_compares, stem):
    """Every column of ``compare --script`` over the script's backends is ok, and its log shows the script ran
    to its end on that column's backend."""
    proc, folder = corpus_compares(stem)
    assert proc.returncode == 0, f"{tail(proc)}\n--- stdout ---\n{proc.stdout[-3000:]}"
    cells = json.loads((folder / "out" / "results.json").read_text())["cells"]
    backends = backends_of(CORPUS / f"{stem}.py")
    assert sorted(cell["backend"] for cell in cells) == sorted(backends)
    for cell in cells:
        backend = cell["backend"]
        if stem == "mixed_precision_own":  # the script sets its own policy: an honest column says so
            assert cell["status"] == "overridden by the script: policy mixed_float16 (not set through devswitch)", \
                f"{backend}: {cell['status']}"
        else:
            assert cell["status"] == "ok", f"{backend}: {cell['status']}"
        log = (folder / "out" / "logs" / f"{backend}-cpu-fp32.log").read_text()
        assert result_line(log)["backend"] == backend, f"the {backend} column ran on another backend:\n{log[-2000:]}"


def test_every_corpus_script_declares_its_backends_and_prints_a_result():
    """The corpus holds at least ten scripts, each with a BACKENDS tuple and a final ``print("RESULT " ...)``."""
    assert len(SCRIPT_FILES) >= 10
    for script in SCRIPT_FILES:
        backends_of(script)
        assert re.search(r'^print\("RESULT " \+ json\.dumps\(', script.read_text(), re.M), script.name
    assert {backend for _, backend in FIRST} == {"tensorflow", "jax", "torch"}


def test_differences_take_floats_within_the_tolerance_and_nothing_else():
    assert differences({"loss": 1.0, "n": [1, 2]}, {"loss": 1.0 + 1e-7, "n": [1, 2]}, 1e-5) == []
    assert differences({"loss": 1.0}, {"loss": 1.001}, 1e-5) == ["loss: 1.0 != 1.001 (rtol 1e-05)"]
    assert differences({"files": {"names": ["a"]}}, {"files": {"names": ["b"]}}, 1e-5) == \
        ["files.names: ['a'] != ['b']"]
    assert differences({"loss": 1.0}, {"loss": 1.0, "x": 1}, 1e-5) == ["RESULT: keys ['loss'] != ['loss', 'x']"]
