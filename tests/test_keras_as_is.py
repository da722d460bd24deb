"""Keras as it is, with devswitch in the process (issue 26, items 2, 4 and 6): a saved model loads back whole
(devswitch patches nothing whose identity Keras checks), the user's error stays the error, and a half-precision
dtype mismatch gets one explaining line added, never a replacement."""

from __future__ import annotations

import json
import logging

import keras
import numpy as np
import pytest

import devswitch
from conftest import SCRIPTS, Child, children, result_line
from _devswitch import backends, halfnotes
from _devswitch.compare.process import last_error_line
from _devswitch.compare.script import failure

BACKENDS = [pytest.param(name, marks=[pytest.mark.subprocess, pytest.mark.skipif(
    not backends.installed(name), reason=f"{name} is not installed here")]) for name in backends.NAMES]
HALF = ["--devices", "cpu", "--max-epochs", "1", "--max-steps", "2", "--out", "out"]


def _runs(root):
    """keras_as_is.py once per backend (plain, then devswitch in the same process; TensorFlow kept out of the
    JAX and PyTorch ones), and the float32-only layer of half_mismatch.py under fp16, fp32, Keras' own policy
    and compare --script."""
    jobs = {backend: Child([SCRIPTS / "keras_as_is.py"], {"KERAS_BACKEND": backend, "DEVSWITCH_DEVICE": "cpu"})
            for backend in backends.NAMES if backends.installed(backend)}
    if backends.installed("tensorflow"):
        script = SCRIPTS / "half_mismatch.py"
        tf = {"KERAS_BACKEND": "tensorflow", "DEVSWITCH_DEVICE": "cpu"}
        jobs["fp16"] = Child([script], {**tf, "DEVSWITCH_PRECISION": "fp16"})
        jobs["fp32"] = Child([script], {**tf, "DEVSWITCH_PRECISION": "fp32"})
        jobs["keras policy"] = Child([script, "--keras-policy", "mixed_bfloat16"], tf)
        jobs["compare"] = Child(["-m", "devswitch", "compare", "--script", script, "--backends", "tensorflow",
                                 "--precisions", "fp32,fp16", *HALF])
    return jobs


runs = children(_runs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_saved_model_loads_back_whole_and_a_framework_error_is_kept(runs, backend):
    """With devswitch in the process a compiled model saved as .keras, as legacy .h5 and by ModelCheckpoint
    loads back with its loss and optimizer and evaluates as without devswitch; .weights.h5 round-trips; a fit
    whose data does not fit the model fails with the framework's own exception type and message."""
    proc, _ = runs(backend)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = result_line(proc.stdout)
    plain, switched = result["plain"], result["devswitch"]
    assert result["applied"] and result["tensorflow imported"] == (backend == "tensorflow")
    for name in ("model.keras", "model.h5", "checkpoint.keras"):
        loaded = switched[name]
        assert loaded["compiled"] and ("MeanSquaredError" in loaded["loss"] or "mean_squared" in loaded["loss"])
        assert loaded["optimizer"] == "Adam", (name, loaded)
        assert loaded["evaluate"] == pytest.approx(switched["evaluate"])  # the model it was saved from
        assert loaded["evaluate"] == pytest.approx(plain[name]["evaluate"], rel=1e-5)
        assert loaded["compile config"] == plain[name]["compile config"]
    assert switched["warnings"] == plain["warnings"] == []  # no "compile() was not called" on load
    assert switched["weights"] and plain["weights"]
    assert plain["error"] is not None and switched["error"] == plain["error"], (plain["error"], switched["error"])
    assert {k: v for k, v in switched.items() if k != "evaluate"} == {k: v for k, v in plain.items()
                                                                       if k != "evaluate"}


LAYER = "devswitch: layer 'positional_encoding' (PositionalEncoding) "  # the note starts by naming the layer
FIXES = ("self.compute_dtype", "precision=fp32")  # the two ways out the note names: cast in the layer, or fp32


def _dtype_notes(stderr: str) -> list[str]:
    """devswitch's lines in ``stderr`` that explain a dtype mismatch: those that name the fix in the layer."""
    return [line for line in stderr.splitlines() if line.startswith("devswitch: ") and FIXES[0] in line]


def _names(note: str, *parts: str) -> bool:
    """Whether ``note`` names the layer, each of ``parts`` (the policy, where it came from) and both fixes."""
    return note.startswith(LAYER) and all(part in note for part in (*parts, *FIXES))


@pytest.mark.subprocess
def test_a_dtype_mismatch_under_fp16_ends_with_one_explaining_line(runs):
    proc, _ = runs("fp16")
    assert proc.returncode == 1 and "RESULT" not in proc.stdout
    assert "TypeError: Exception encountered when calling PositionalEncoding.call()" in proc.stderr  # TF's own
    assert "Input 'y' of 'AddV2' Op has type float32 that does not match type float16" in proc.stderr
    [note] = _dtype_notes(proc.stderr)  # one line
    assert _names(note, "mixed_float16", "precision=fp16 from DEVSWITCH_PRECISION"), note
    assert proc.stderr.rstrip().splitlines()[-1].startswith(note)  # added to the error, after its message


@pytest.mark.subprocess
def test_a_run_in_fp32_is_never_affected_and_keras_own_policy_is_named_as_the_scripts(runs):
    proc, _ = runs("fp32")
    assert proc.returncode == 0 and "RESULT ok" in proc.stdout and "devswitch: layer" not in proc.stderr
    proc, _ = runs("keras policy")
    assert proc.returncode == 1
    [note] = _dtype_notes(proc.stderr)  # the policy the script set is named as the script's, with how it set it
    assert _names(note, "mixed_bfloat16", "keras.config.set_dtype_policy"), note


@pytest.mark.subprocess
def test_a_compare_column_fails_with_the_explaining_line(runs):
    proc, folder = runs("compare")
    cells = json.loads((folder / "out" / "results.json").read_text())["cells"]
    status = {cell["precision"]: cell["status"] for cell in cells}
    assert status["fp32"] == "ok", proc.stderr[-3000:]
    assert status["fp16"].startswith("failed: TypeError: layer 'positional_encoding' (PositionalEncoding) mixes "
                                     "float32 with the half precision of dtype policy mixed_float16 (precision=fp16 "
                                     "from devswitch compare (its column))"), status


# --- the pieces, in this process ---------------------------------------------------------------------------

KERAS_ERROR = """Traceback (most recent call last):
  File "train.py", line 12, in <module>
    h = PositionalEncoding()(inp)
TypeError: Exception encountered when calling PositionalEncoding.call().

\x1b[1mCould not automatically infer the output shape / dtype of 'positional_encoding' (of type PositionalEncoding). \
Error encountered:

Input 'y' of 'AddV2' Op has type float32 that does not match type float16 of argument 'x'.\x1b[0m

Arguments received by PositionalEncoding.call():
  \u2022 args=('<KerasTensor shape=(None, 8, 16), dtype=float16>',)
  \u2022 kwargs=<class 'inspect._empty'>
"""


def test_a_failed_column_states_the_exception_not_the_logs_last_line():
    """The worker's own FAILED event wins; without one the log's "Type: message" line, not Keras' argument
    list that ends the log."""
    assert last_error_line(KERAS_ERROR) == ("TypeError: Input 'y' of 'AddV2' Op has type float32 that does not "
                                            "match type float16 of argument 'x'.")
    run = {"given_up": None, "removed": None, "done": True, "exit_code": 1, "last_line": last_error_line(KERAS_ERROR)}
    assert failure(run) == "failed: " + run["last_line"]
    assert failure({**run, "error": "ValueError: the script's own words"}) == "failed: ValueError: the script's own words"
    assert last_error_line("a line\n  \u2022 kwargs=<class 'inspect._empty'>\n") == "\u2022 kwargs=<class 'inspect._empty'>"


@pytest.mark.parametrize("message, mismatch", [
    pytest.param("Input 'y' of 'AddV2' Op has type float32 that does not match type float16 of argument 'x'.", True,
                 id="TensorFlow graph"),
    pytest.param("cannot compute AddV2 as input #1(zero-based) was expected to be a half tensor but is a float tensor",
                 True, id="TensorFlow eager"),
    pytest.param("lax.add requires arguments to have the same dtypes, got float16, float32.", True, id="JAX lax"),
    pytest.param("expected mat1 and mat2 to have the same dtype, but got: c10::Half != float", True,
                 id="PyTorch matmul"),
    pytest.param("expected scalar type BFloat16 but found Float", True, id="PyTorch"),
    pytest.param("mat1 and mat2 must have the same dtype, but got Half and Float", True, id="PyTorch addmm"),
    pytest.param("Input type (torch.FloatTensor) and weight type (torch.HalfTensor) should be the same", True,
                 id="PyTorch conv"),
    pytest.param("Input 'y' of 'AddV2' Op has type int32 that does not match type float32 of argument 'x'.", False,
                 id="no half operand: not ours to explain"),
    pytest.param("Matrix size-incompatible: In[0]: [16,5], In[1]: [4,8]", False, id="a shape error"),
])
def test_what_counts_as_a_half_precision_dtype_mismatch(message, mismatch):
    assert halfnotes.is_dtype_mismatch(message) is mismatch


@pytest.fixture
def warnings_seen():
    seen: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger("devswitch")
    handler = Grab()
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


def test_the_note_is_added_once_and_only_under_a_half_policy(here):
    error = TypeError("Input 'y' of 'AddV2' Op has type float32 that does not match type float16 of argument 'x'.")
    devswitch.configure(device="cpu", report="off")  # float32: never affected
    assert halfnotes.explain_dtype_error(error) is None and not getattr(error, "__notes__", None)
    devswitch.configure(device="cpu", precision="fp16", report="off")
    note = halfnotes.explain_dtype_error(error)
    assert note and _dtype_notes(note) == [note] and all(p in note for p in ("mixed_float16", "precision=fp16", *FIXES))
    assert not note.startswith(LAYER)  # no layer named in this error: the note names none
    assert halfnotes.explain_dtype_error(error) is None and error.__notes__ == [note]  # once
    assert str(error).startswith("Input 'y'") and type(error) is TypeError  # the user's error, as it was


def _custom_step(optimizer, model, x, y):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.ops.mean((model(x) - y) ** 2)
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))


def _model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, dtype="float32")])
    return model


def test_a_custom_loop_under_fp16_gets_one_note_on_loss_scaling(here, warnings_seen):
    """Its first optimizer step outside fit says that Keras scales the loss only in fit; said once, and
    Keras' optimizer methods are Keras' own again after it."""
    from keras.src.optimizers.base_optimizer import BaseOptimizer

    before = BaseOptimizer.apply_gradients
    devswitch.configure(device="cpu", precision="fp16", report="off")
    x, y = np.ones((8, 4), "float32"), np.ones((8, 1), "float32")
    model, optimizer = _model(), keras.optimizers.SGD(0.01)
    _custom_step(optimizer, model, x, y)
    _custom_step(optimizer, model, x, y)
    notes = [w for w in warnings_seen if "Keras scales the loss only in fit()" in w]
    assert len(notes) == 1 and "keras.optimizers.LossScaleOptimizer" in notes[0]
    assert BaseOptimizer.apply_gradients is before


@pytest.mark.parametrize("first", ["fit", "a LossScaleOptimizer"])
def test_no_note_after_a_fit_nor_for_a_loss_scale_optimizer(here, warnings_seen, first):
    devswitch.configure(device="cpu", precision="fp16", report="off")
    x, y = np.ones((8, 4), "float32"), np.ones((8, 1), "float32")
    model = _model()
    if first == "fit":
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, y, verbose=0)
    else:
        _custom_step(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01)), model, x, y)
    _custom_step(keras.optimizers.SGD(0.01), model, x, y)
    assert not [w for w in warnings_seen if "Keras scales the loss only in fit()" in w]


def _loops(root):
    """loss_scaling_loops.py under ``devswitch run`` with fp16 on the CPU: a torch.optim loop (torch), a Keras
    optimizer's stateless_apply under jax.jit (jax), and a process that imports optax and runs no fit (jax)."""
    lib = root / "optax_lib"

    def write_optax(folder):
        lib.mkdir(exist_ok=True)
        (lib / "optax.py").write_text('"""A stand-in for optax (not installed here): only its name matters."""\n')

    script = SCRIPTS / "loss_scaling_loops.py"
    fp16 = {"DEVSWITCH_PRECISION": "fp16", "DEVSWITCH_DEVICE": "cpu"}
    jobs = {}
    for mode, backend in (("torch", "torch"), ("jax", "jax"), ("optax", "jax")):
        if backends.installed(backend):
            env = {**fp16, "KERAS_BACKEND": backend, **({"PYTHONPATH": str(lib)} if mode == "optax" else {})}
            jobs[mode] = Child(["-m", "devswitch", "run", script, mode], env,
                               prepare=write_optax if mode == "optax" else None)
    return jobs


loops = children(_loops)
STEP_NOTE = halfnotes.LOSS_SCALE_NOTE  # the note at a loop's first optimizer step
EXIT_NOTE = halfnotes.LOSS_SCALE_AT_EXIT  # the note at exit, where no step could be seen
FIX = "keras.optimizers.LossScaleOptimizer"  # what both notes name as the way out


@pytest.mark.subprocess
@pytest.mark.parametrize("mode", [
    pytest.param("torch", marks=pytest.mark.skipif(not backends.installed("torch"), reason="no PyTorch")),
    pytest.param("jax", marks=pytest.mark.skipif(not backends.installed("jax"), reason="no JAX")),
])
def test_a_custom_loop_on_torch_or_jax_under_fp16_gets_the_note_once(loops, mode):
    """A torch.optim loop (KERAS_BACKEND=torch) and a loop taking a Keras optimizer's stateless_apply under
    jax.jit (KERAS_BACKEND=jax), three steps each under DEVSWITCH_PRECISION=fp16, get the loss-scaling note
    exactly once (at their first step, not again at exit), in a process that never imports TensorFlow."""
    proc, _ = loops(mode)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = result_line(proc.stdout)
    assert result["policy"] == "mixed_float16" and result["steps"] == 3 and not result["tensorflow imported"]
    assert result["backend"] == ("torch" if mode == "torch" else "jax")
    assert proc.stderr.count(STEP_NOTE) == 1 and EXIT_NOTE not in proc.stderr, proc.stderr[-3000:]
    assert FIX in STEP_NOTE and "fp16" in STEP_NOTE  # the note printed names the precision and the fix


@pytest.mark.subprocess
@pytest.mark.skipif(not backends.installed("jax"), reason="no JAX")
def test_a_process_that_imported_optax_and_ran_no_fit_gets_the_note_at_exit(loops):
    """optax updates cannot be seen, so a float16 process that imported optax and ran no fit gets the note at
    exit, once. optax is not installed here: a real module named ``optax`` written to a folder on PYTHONPATH
    stands in for it (what the note keys on is that a module of that name was imported)."""
    proc, _ = loops("optax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = result_line(proc.stdout)
    assert result["backend"] == "jax" and result["policy"] == "mixed_float16" and not result["tensorflow imported"]
    assert proc.stderr.count(EXIT_NOTE) == 1 and STEP_NOTE not in proc.stderr, proc.stderr[-3000:]
    assert FIX in EXIT_NOTE and "fp16" in EXIT_NOTE  # the note printed names the precision and the fix


def _promoted(root):
    """half_promoted.py (half_mismatch.py's float32-only layer, without TensorFlow) under fp16 on JAX and PyTorch."""
    return {backend: Child([SCRIPTS / "half_promoted.py"], {"KERAS_BACKEND": backend, "DEVSWITCH_DEVICE": "cpu",
                                                            "DEVSWITCH_PRECISION": "fp16"})
            for backend in ("jax", "torch") if backends.installed(backend)}


promoted = children(_promoted)


@pytest.mark.subprocess
@pytest.mark.parametrize("backend", [
    pytest.param(name, marks=pytest.mark.skipif(not backends.installed(name), reason=f"no {name}"))
    for name in ("jax", "torch")])
def test_on_jax_and_torch_a_float32_layer_under_fp16_is_promoted_not_refused(promoted, backend):
    """What TensorFlow refuses (float16 + float32, the dtype mismatch that devswitch explains) JAX and PyTorch
    promote to float32: the fit runs, the layer's output is float32, and devswitch adds no note (docs/precision.md
    says so)."""
    proc, _ = promoted(backend)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = result_line(proc.stdout)
    assert (result["backend"], result["policy"]) == (backend, "mixed_float16") and not result["tensorflow imported"]
    assert (result["input dtype"], result["output dtype"]) == ("float16", "float32")
    assert not _dtype_notes(proc.stderr)


def _failing_column(root):
    """compare --script over a script whose fit fails inside the framework (JAX, one fp32 column)."""
    return {"compare": Child(["-m", "devswitch", "compare", "--script", SCRIPTS / "fit_fails.py", "--backends", "jax",
                              "--precisions", "fp32", "--rounds", "1", *HALF])}


failing_column = children(_failing_column)


@pytest.mark.subprocess
@pytest.mark.skipif(not backends.installed("jax"), reason="no JAX")
def test_a_compare_column_whose_fit_fails_in_the_framework_states_type_and_message(failing_column):
    """A column whose script fails inside Keras (a shape mismatch, JAX) states ``Type: message``, the framework's
    own, while the column's log ends with Keras' argument list ("Arguments received by ...", "kwargs=...")."""
    proc, folder = failing_column("compare")
    [cell] = json.loads((folder / "out" / "results.json").read_text())["cells"]
    assert cell["status"].startswith("failed: ValueError: Input 0 ") and \
        "expected axis -1 of input shape to have value 4" in cell["status"], (cell["status"], proc.stderr[-2000:])
    assert "kwargs" not in cell["status"] and "\u2022" not in cell["status"]
    log = (folder / "out" / "logs" / "jax-cpu-fp32.log").read_text()
    assert "Arguments received by Sequential.call()" in log and "kwargs=<class 'inspect._empty'>" in log
