"""compare --script: the user's unmodified script as the workload, its fits capped, one column per configuration."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, SCRIPTS, Child, children, info_json
from errorparts import printed

from _devswitch.caps import Caps, batches_per_epoch

# --- the caps, pure ----------------------------------------------------------------------------------------


def test_caps_clip_epochs_and_set_steps_for_arrays_and_say_what_was_asked():
    """A fit of 3 epochs over 6 batches under --max-epochs 1 --max-steps 3 runs 1 x 3, and the label says so."""
    out, label = Caps(1, 3).clip({"epochs": 3}, batches=6)
    assert (out["epochs"], out["steps_per_epoch"]) == (1, 3)
    assert label == {"max_epochs": 1, "max_steps": 3, "epochs_asked": 3, "steps_asked": None,
                     "batches_per_epoch": 6, "epochs_run": 1, "steps_run": 3, "applied": True}


def test_caps_leave_a_fit_within_them_alone_and_count_from_initial_epoch():
    out, label = Caps(2, 10).clip({"epochs": 5, "initial_epoch": 4, "steps_per_epoch": 4}, batches=None)
    assert out == {"epochs": 5, "initial_epoch": 4, "steps_per_epoch": 4} and label["applied"] is False
    out, _ = Caps(2, None).clip({"epochs": 9, "initial_epoch": 4}, batches=None)
    assert out["epochs"] == 6


def test_an_input_of_unknown_length_gets_the_step_cap():
    out, label = Caps(None, 5).clip({}, batches=None)
    assert out["steps_per_epoch"] == 5 and label["epochs_run"] == 1


def test_batches_per_epoch_of_arrays_with_a_validation_split():
    import numpy as np

    assert batches_per_epoch(np.zeros((64, 3)), 8, 0.25) == 6
    assert batches_per_epoch([np.zeros((10, 1)), np.zeros((10, 1))], None) == 1
    assert batches_per_epoch(iter(()), 8) is None


# --- option errors: exit 2 before anything runs --------------------------------------------------------------

@pytest.mark.parametrize("argv, where, named, fix", [
    pytest.param(["--", "--epochs", "3"], None, ["--"], "--script train.py", id="no script"),
    pytest.param(["--script", "missing.py"], "--script missing.py", [], "-m MODULE", id="script not found"),
    pytest.param(["mlp", "--script", "train.py"], None, ["--script", "'mlp'", "MODEL"], "drop --script",
                 id="script and a MODEL"),
    pytest.param(["--script", "train.py", "--max-steps", "0"], "--max-steps", ["'0'", ">= 1"], "--max-steps 1",
                 id="max-steps 0"),
    pytest.param(["--script", "train.py", "--batch-sizes", "8"], "--batch-sizes", ["factory"], "--max-epochs",
                 id="factory option"),
    pytest.param(["--script", "train.py", "-m", "pkg.train"], None, ["--script", "-m"], "one of them",
                 id="script and module"),
    pytest.param(["mlp", "--max-epochs", "1"], None, ["--max-epochs", "--max-steps"], "--script SCRIPT",
                 id="caps without a script"),
])
def test_option_errors_exit_2_before_anything_runs(argv, where, named, fix, tmp_path, monkeypatch, capsys):
    from _devswitch.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("print('ran')\n")
    assert main(["compare", "--devices", "cpu", "--precisions", "fp32", "--out", "out", *argv]) == 2
    printed(capsys.readouterr().err, where=where, named=named, fix=fix)
    assert not (tmp_path / "out").exists()


# --- end to end: real scripts ------------------------------------------------------------------------------

CAPS = ["--devices", "cpu", "--max-epochs", "1", "--max-steps", "3", "--out", "out"]


def _script_compares(root) -> dict[str, Child]:
    """Three script compares (queued with the session's children): the example (profile saved), a script with
    its own arguments that fails under fp16, and one that never calls fit."""
    script = str(SCRIPTS / "script_compare.py")
    return {
        "example": Child(["-m", "devswitch", "compare", "--script", str(ROOT / "examples" / "existing_script.py"),
                          *CAPS, "--precisions", "fp32", "--save-profile", "mine", "--save-profile-anyway", "--",
                          "--epochs", "3"]),
        # fp16 runs on every CPU (emulated), where bf16 is unavailable on a CPU without native bf16
        "args": Child(["-m", "devswitch", "compare", "--script", script, *CAPS, "--precisions", "fp32,fp16", "--",
                       "--epochs", "3", "--validation", "--fail-under", "float16"]),
        # as a module (-m), run twice in turn (--rounds 2)
        "nofit": Child(["-m", "devswitch", "compare", "-m", "script_compare", *CAPS, "--precisions", "fp32",
                        "--rounds", "2", "--", "--no-fit"], {"PYTHONPATH": str(SCRIPTS)}),
    }


script_compares = children(_script_compares)


@pytest.fixture(scope="module")
def runs(script_compares):
    return {name: script_compares(name) for name in ("example", "args", "nofit")}


def _cell(folder, index=0):
    return json.loads((folder / "out" / "results.json").read_text())["cells"][index]


@pytest.mark.subprocess
def test_the_example_runs_capped_and_its_profile_reads_back_in_devswitch_info(runs, monkeypatch, capsys):
    proc, folder = runs["example"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    fit = next(c for c in _cell(folder)["record"]["runs"][0]["calls"] if c["kind"] == "fit")
    assert fit["cap"]["epochs_run"] == 1 and fit["cap"]["epochs_asked"] == 3 and fit["cap"]["applied"]
    assert len(fit["epochs"]) == 1 and fit["metrics"]["steps"]["value"] == 3
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(fit["history"])
    assert "| fit 1: epochs x steps | 1 x 3 (capped; asked 3 x 41) |" in proc.stdout
    assert "test accuracy" in (folder / "out" / "logs" / "tensorflow-cpu-fp32.log").read_text()
    assert "test accuracy" not in proc.stdout  # the script's output is in its log, not in the table
    config = info_json(folder, "mine", monkeypatch, capsys)["config"]
    assert config["precision"]["source"] == "project file (profile mine)"
    assert config["precision"]["value"] == "fp32" and config["device"]["value"] == "cpu"


@pytest.mark.subprocess
def test_a_script_with_its_own_arguments_is_capped_and_a_failing_column_says_why(runs):
    proc, folder = runs["args"]
    assert proc.returncode == 5, proc.stderr[-3000:]
    ok, failed = _cell(folder, 0), _cell(folder, 1)
    assert failed["status"] == "failed: RuntimeError: this script does not run under mixed_float16"
    log = (folder / "out" / "logs" / "tensorflow-cpu-fp32.log").read_text()
    assert 'HISTORY {"epochs": 1' in log  # what the unmodified script saw: the capped fit's history
    fit = ok["record"]["runs"][0]["calls"][0]
    assert fit["cap"] == {"max_epochs": 1, "max_steps": 3, "epochs_asked": 3, "steps_asked": None,
                          "batches_per_epoch": 6, "epochs_run": 1, "steps_run": 3, "applied": True}
    assert "val_loss" in fit["history"]
    assert "| cpu fp32 | cpu fp16 |" in proc.stdout and "failed [1]" in proc.stdout
    from _devswitch.cli import main

    assert main(["report", str(folder / "out")]) == 0  # devswitch report shows it again from results.json


@pytest.mark.subprocess
def test_a_script_that_calls_no_fit_gets_a_note_not_an_empty_table(runs, capsys):
    proc, folder = runs["nofit"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| fit | the script called no fit |" in proc.stdout
    assert "The script called no fit" in proc.stdout
    assert "evaluate 1: samples/s" in proc.stdout and "| s per run |" in proc.stdout and "| runs/s |" in proc.stdout
    cell = _cell(folder)
    assert cell["status"] == "ok" and len(cell["record"]["runs"]) == 2  # -m MODULE, --rounds 2: two runs
    assert cell["record"]["schema_version"] == 2 and cell["record"]["metrics"]["runs_per_s"]["unit"] == "runs/s"
    from _devswitch.cli import main

    capsys.readouterr()
    assert main(["report", str(folder / "out"), str(folder / "out")]) == 0  # a script set against itself
    assert "B / A" in capsys.readouterr().out


def test_a_run_with_more_calls_than_a_reader_takes_keeps_the_first_and_counts_the_rest():
    from _devswitch.compare.scriptrecord import MAX_CALLS, build

    run = {"round": 0, "start_s": 0.0, "wall_s": 1.0, "startup_s": 0.5, "process_s": 2.0, "exit_code": 0,
           "calls": [{"kind": "predict", "status": "ok"}] * (MAX_CALLS + 5)}
    (kept,) = build([run], {}, {}, {}).runs
    assert len(kept.calls) == MAX_CALLS and kept.calls_dropped == 5
