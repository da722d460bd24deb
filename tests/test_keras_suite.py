"""benchmarks/keras_suite.py, the gate of Keras' own tests with and without devswitch: what it reads back
from a run's report, how it pairs two runs, and what it refuses before running anything (no framework here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("keras_suite", ROOT / "benchmarks" / "keras_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["keras_suite"] = module  # its dataclasses look their module up while they are made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["keras_suite"]
    return module


REPORT = [
    {"keras": "/site-packages/keras/__init__.py", "devswitch": "Plan(device='cpu')"},
    {"test": "k/saving_lib_test.py::SavingTest::test_ok", "when": "setup", "outcome": "passed", "message": ""},
    {"test": "k/saving_lib_test.py::SavingTest::test_ok", "when": "call", "outcome": "passed", "message": ""},
    {"test": "k/saving_lib_test.py::SavingTest::test_lost", "when": "call", "outcome": "failed",
     "message": "AssertionError: No loss to compute."},
    {"test": "k/trainer_test.py::test_two_devices", "when": "setup", "outcome": "skipped", "message": "Requires"},
    {"test": "k/trainer_test.py::test_teardown", "when": "call", "outcome": "passed", "message": ""},
    {"test": "k/trainer_test.py::test_teardown", "when": "teardown", "outcome": "failed", "message": "at teardown"},
    {"test": "k/trainer_test.py::test_setup", "when": "setup", "outcome": "failed", "message": "fixture failed"},
]


def test_the_report_gives_each_test_its_worst_phase_and_survives_a_line_cut_short(suite, tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in REPORT) + '{"test": "k/cut')
    found, keras_file, plan = suite.read_report(path)
    assert (keras_file, plan) == ("/site-packages/keras/__init__.py", "Plan(device='cpu')")
    assert found == {
        "k/saving_lib_test.py::SavingTest::test_ok": suite.Outcome("passed", ""),
        "k/saving_lib_test.py::SavingTest::test_lost": suite.Outcome("failed", "AssertionError: No loss to compute."),
        "k/trainer_test.py::test_two_devices": suite.Outcome("skipped", "Requires"),
        "k/trainer_test.py::test_teardown": suite.Outcome("error", "at teardown"),
        "k/trainer_test.py::test_setup": suite.Outcome("error", "fixture failed"),
    }
    assert suite.read_report(tmp_path / "never written") == ({}, "", "")


def test_only_changed_outcomes_are_listed_with_the_message_of_the_side_that_did_not_pass(suite):
    def run(way, **outcomes):
        return suite.Run("tensorflow", way, 0, 1.0, {k: suite.Outcome(*v) for k, v in outcomes.items()},
                         Path("log"), "", "")

    plain = run("plain", a=("passed", ""), b=("passed", ""), c=("failed", "boom"), d=("skipped", "why"))
    switched = run("devswitch", a=("passed", ""), b=("failed", "No loss to compute"), c=("failed", "boom"))
    assert suite.compare(plain, switched) == [
        "  b: passed -> failed", "      devswitch: No loss to compute",
        "  d: skipped -> not run", "      plain: why",
    ]
    # a run cut short at the time limit: only the tests both finished
    assert suite.compare(plain, switched, both_only=True) == ["  b: passed -> failed", "      devswitch: No loss to compute"]


def test_a_checkout_of_another_version_is_refused_before_anything_runs(suite, tmp_path, capsys):
    (tmp_path / "keras" / "src").mkdir(parents=True)
    (tmp_path / "keras" / "src" / "version.py").write_text('__version__ = "0.0.1"\n')
    (tmp_path / "conftest.py").write_text("")
    assert suite.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "holds Keras 0.0.1, but Keras" in err and "checkout v3." in err
    assert not (tmp_path / "out").exists()
    assert suite.main([str(tmp_path / "nowhere")]) == 2
    assert "is not a Keras source checkout" in capsys.readouterr().err
