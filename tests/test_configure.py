"""The Python API in this process, with real Keras: configure() before building a model."""

from __future__ import annotations

import keras
import pytest
from errorparts import parts

import devswitch
from _devswitch import session
from _devswitch.devices import Cpu, Inventory


@pytest.fixture(autouse=True)
def restore_keras_policy(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    devswitch.reset()
    yield
    devswitch.reset()
    keras.config.set_dtype_policy("float32")


def test_configure_sets_the_policy_used_by_layers_built_afterwards():
    plan = devswitch.configure(precision="bf16", device="cpu")
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    assert layer.compute_dtype == "bfloat16" and plan.policy == "mixed_bfloat16"
    cfg = devswitch.config()
    assert cfg.precision == "bf16" and cfg["precision"].source == "explicit"
    assert cfg["precision"].location == "devswitch.configure(precision=...)"


def test_configure_keeps_earlier_explicit_values():
    devswitch.configure(device="cpu")
    devswitch.configure(precision="fp16")
    cfg = devswitch.config()
    assert (cfg.device, cfg.precision) == ("cpu", "fp16")
    assert keras.config.dtype_policy().name == "mixed_float16"


def test_configure_with_an_injected_inventory_decides_half_for_that_hardware():
    plain = Inventory(Cpu("old CPU", 4, frozenset({"AVX2"})))
    plan = session.activate({"precision": "half"}, inventory=plain)
    assert plan.precision == "fp32" and keras.config.dtype_policy().name == "float32"


def test_configure_rejects_unknown_settings():
    with pytest.raises(devswitch.ConfigError) as info:
        devswitch.configure(devcie="cpu")
    parts(info, devswitch.ConfigError, named=["'devcie'"], fix="'device'")


def test_env_is_read_at_configure_time(monkeypatch):
    monkeypatch.setenv("DEVSWITCH_PRECISION", "mixed_bfloat16")
    devswitch.configure()
    assert devswitch.config()["precision"].source == "env var"
    assert keras.config.dtype_policy().name == "mixed_bfloat16"


def test_configure_keeps_the_strategy_when_it_does_not_change():
    import tensorflow as tf

    from _devswitch import apply

    devswitch.configure(strategy="mirrored")
    first = apply.strategy()
    devswitch.configure(precision="bf16")  # same strategy plan: the same strategy object
    assert apply.strategy() is first and tf.distribute.get_strategy() is first
    devswitch.configure(strategy="none")
    assert apply.strategy() is None and not tf.distribute.has_strategy()
