"""benchmarks/keras_suite.py, the gate of Keras' own tests with and without devswitch: what it reads back
from a JUnit file, how it pairs two runs, and what it refuses before running anything (no framework here)."""

from __future__ import annotations

import importlib.util
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


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
  <testcase classname="keras.src.saving.saving_lib_test.SavingTest" name="test_ok" time="0.1"/>
  <testcase classname="keras.src.saving.saving_lib_test.SavingTest" name="test_lost"
      ><failure message="AssertionError: No loss to compute.&#10;second line">trace</failure></testcase>
  <testcase classname="keras.src.trainers.trainer_test" name="test_plain_function[jax]"
      ><skipped type="pytest.skip" message="Requires multiple devices">skip</skipped></testcase>
  <testcase classname="keras.src.trainers.trainer_test" name="test_teardown"/>
  <testcase classname="keras.src.trainers.trainer_test" name="test_teardown"
      ><error message="error at teardown">e</error></testcase>
</testsuite></testsuites>
"""


def test_outcomes_are_keyed_like_pytest_node_ids_and_a_test_keeps_its_worst(suite, tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(JUNIT)
    found = suite.outcomes_of(path)
    assert found == {
        "keras/src/saving/saving_lib_test.py::SavingTest::test_ok": suite.Outcome("passed", ""),
        "keras/src/saving/saving_lib_test.py::SavingTest::test_lost":
            suite.Outcome("failed", "AssertionError: No loss to compute."),
        "keras/src/trainers/trainer_test.py::test_plain_function[jax]":
            suite.Outcome("skipped", "Requires multiple devices"),
        "keras/src/trainers/trainer_test.py::test_teardown": suite.Outcome("error", "error at teardown"),
    }


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
