"""Keras left as it was: with every setting at its default devswitch does not touch Keras' dtype policy
(``set_floatx``, ``set_dtype_policy`` and ``clear_session`` behave as in plain Keras, on every backend);
a chosen precision is applied and survives ``clear_session()``."""

from __future__ import annotations

import pytest

from conftest import SCRIPTS, Child, children, result_line
from _devswitch.apply import chooses_policy
from _devswitch.config import Value
from _devswitch.devices import Plan

BACKENDS = ("tensorflow", "jax", "torch")


def _policy_runs(root):
    """tests/scripts/keras_policy.py once per backend."""
    return {backend: Child([SCRIPTS / "keras_policy.py"], {"KERAS_BACKEND": backend}) for backend in BACKENDS}


policy_runs = children(_policy_runs)


@pytest.fixture
def ran(policy_runs):
    """``ran(backend)`` waits for that backend's process."""
    return lambda backend: policy_runs(backend)[0]


@pytest.mark.subprocess
@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_chosen_is_plain_keras_and_a_choice_survives_clear_session(ran, backend):
    proc = ran(backend)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = result_line(proc.stdout)
    half, mixed = ["float16"] * 3, ["mixed_bfloat16", "bfloat16", "float32"]
    assert result["plain"] == [half, half, mixed, half]  # Keras' own behaviour, as this test knows it
    assert result["precision source"] == "default"
    assert result["devswitch"] == result["plain"], "import devswitch with nothing chosen changed Keras"
    assert result["after reset"] == result["plain"] and result["withdrawn"] == result["plain"]
    # chosen: floatx does not override it, clear_session keeps it, the user's own set_dtype_policy wins
    assert result["chosen"] == [mixed, mixed, ["float32"] * 3, mixed]
    assert result["tensorflow imported"] == (backend == "tensorflow")


def _config(source: str):
    class Config(dict):
        pass

    return Config(precision=Value("fp32", source, "x"))


@pytest.mark.parametrize("source, precision, chosen", [
    pytest.param("default", "fp32", False, id="default fp32: Keras keeps its own mechanism"),
    pytest.param("env var", "fp32", True, id="fp32 chosen by a variable: applied"),
    pytest.param("explicit", "bf16", True, id="bf16 chosen: applied"),
    pytest.param("default", "bf16", True, id="a default that leads away from float32: applied"),
])
def test_devswitch_sets_a_policy_only_for_a_choice(source, precision, chosen):
    plan = Plan("cpu", (), precision, "", "")
    assert chooses_policy(_config(source), plan) is chosen
