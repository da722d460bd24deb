"""``deterministic`` and ``seed`` (issue 27 item 1): the settings, what each backend sets for them (GPU
branches on an injected inventory), and two seeded fits per backend, each in a real child process, that
end with bit-identical weights on this CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import Child, children, result_line
from errorparts import parts

from _devswitch import backends, determinism
from _devswitch.compare.axes import parse_vary
from _devswitch.config import resolve
from _devswitch.decide import decide
from _devswitch.devices import Cpu, Gpu, Inventory
from _devswitch.errors import ConfigError, TooLateError, UsageError
from _devswitch.settings import BY_NAME, Invalid

CPU = Inventory(Cpu("Intel Xeon", 8, frozenset({"AVX2"})))
GPU = Inventory(Cpu("Intel Xeon", 8, frozenset({"AVX2"})), (Gpu(0, "GPU0 cc90", (9, 0), 80 * 2**30),))


def _config(home, project, **env: str):
    return resolve({f"DEVSWITCH_{k.upper()}": v for k, v in env.items()}, home, project)


# --- the settings -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, value", [("auto", "auto"), ("true", True), (True, True), ("off", False), (0, False)])
def test_deterministic_takes_auto_true_false(raw, value):
    assert BY_NAME["deterministic"].parse(raw) == value


@pytest.mark.parametrize("raw, value", [("none", None), (None, None), ("0", 0), (42, 42), ("4294967295", 2**32 - 1)])
def test_seed_takes_none_or_a_whole_number_numpy_can_seed_with(raw, value):
    assert BY_NAME["seed"].parse(raw) == value


@pytest.mark.parametrize("raw", ["-1", 2**32, "4294967296", "1.5", 1.5, True, "seven"])
def test_seed_refuses_what_numpy_cannot_seed_with(raw):
    with pytest.raises(Invalid) as caught:
        BY_NAME["seed"].parse(raw)
    assert all(part in caught.value.expected for part in ("none", " 0 ", "4294967295")), caught.value  # the range


def test_the_settings_come_from_files_variables_and_configure_with_their_origin(home, project):
    (project / ".devswitchrc").write_text("deterministic: true\nseed: 7\n")
    config = resolve({"DEVSWITCH_SEED": "9"}, home, project)
    assert (config.deterministic, config["deterministic"].source) == (True, "project file")
    assert (config.seed, config["seed"].source) == (9, "env var")
    explicit = resolve({}, home, project, {"seed": 3, "deterministic": "false"})
    assert (explicit.seed, explicit.deterministic) == (3, False)
    with pytest.raises(ConfigError) as caught:
        resolve({"DEVSWITCH_DETERMINISTIC": "maybe"}, home, project)
    parts(caught, ConfigError, where="DEVSWITCH_DETERMINISTIC", named=["'maybe'", "'deterministic'", "auto"],
          fix="default (auto)")


@pytest.mark.parametrize("deterministic, seed, wanted, words", [
    ("auto", "none", False, "auto (false: no seed, the framework's default)"),
    ("auto", "1", True, "auto (true: seed is set)"),
    ("true", "none", True, "true"),
    ("false", "1", False, "false"),
])
def test_auto_is_deterministic_exactly_when_a_seed_is_set(home, project, deterministic, seed, wanted, words):
    config = _config(home, project, deterministic=deterministic, seed=seed)
    assert determinism.wanted(config) is wanted and determinism.words(config) == words


def test_deterministic_without_a_seed_is_warned_not_claimed(home, project):
    warnings = decide(_config(home, project, deterministic="true"), CPU, {}).warnings
    assert any("without a seed: the ops are deterministic, but every run starts from other random weights" in w
               for w in warnings)
    seeded = _config(home, project, deterministic="true", seed="1")
    assert not any("seed" in w for w in decide(seeded, CPU, {}).warnings)


# --- what each backend sets, before the framework starts and after ------------------------------------------

def test_torch_sets_the_cublas_workspace_before_cuda_and_keeps_a_users_own(home, project):
    torch = backends.get("torch")
    config = _config(home, project, backend="torch", deterministic="true", seed="1")
    assert torch.environment(config, {}) == {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    assert torch.environment(config, {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}) == {}  # the user's own, kept
    assert torch.environment(_config(home, project, backend="torch"), {}) == {}  # auto without a seed: nothing


def test_jax_appends_the_deterministic_flag_to_the_users_xla_flags(home, project):
    jax = backends.get("jax")
    config = _config(home, project, backend="jax", deterministic="true", seed="1", cpu_replicas="2")
    flags = jax.environment(config, {"XLA_FLAGS": "--xla_dump_to=/tmp/x"})["XLA_FLAGS"]
    assert flags == ("--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=2 "
                     "--xla_gpu_deterministic_ops=true")
    mine = {"XLA_FLAGS": "--xla_gpu_deterministic_ops=false"}  # the user's own value of the flag is theirs
    assert jax.environment(_config(home, project, backend="jax", deterministic="true"), mine)["XLA_FLAGS"] == \
        mine["XLA_FLAGS"]
    assert "XLA_FLAGS" not in jax.environment(_config(home, project, backend="jax", deterministic="false"), {})


@pytest.mark.parametrize("backend, phrase", [
    ("tensorflow", "tf.config.experimental.enable_op_determinism()"),
    ("jax", "--xla_gpu_deterministic_ops=true appended to XLA_FLAGS"),
    ("torch", "torch.use_deterministic_algorithms(True)"),
])
def test_info_says_what_deterministic_and_seed_do_on_each_backend(home, project, backend, phrase):
    config = _config(home, project, backend=backend, seed="5")
    plan = decide(config, CPU, {}).plan
    meanings = backends.get(backend).meanings(config, plan)
    assert meanings["deterministic"].startswith("auto (true: seed is set): ") and phrase in meanings["deterministic"]
    assert meanings["seed"].startswith("5: keras.utils.set_random_seed(5)")
    assert ("TensorFlow only where it is already imported" in meanings["seed"]) is (backend != "tensorflow")
    off = backends.get(backend).meanings(_config(home, project, backend=backend, deterministic="false"), plan)
    assert off["deterministic"].startswith("false: nothing set") and off["seed"].startswith("none: nothing seeded")


def test_jax_on_a_gpu_says_what_xla_does_not_cover(home, project):
    config = _config(home, project, backend="jax", deterministic="true", seed="1")
    on_gpu = decide(config, GPU, {}).warnings
    assert any("covers XLA's own GPU kernels only; custom calls outside XLA" in w for w in on_gpu)
    assert not any("custom calls" in w for w in decide(config, CPU, {}).warnings)  # XLA:CPU: nothing to warn


def test_torch_on_a_gpu_warns_of_a_users_workspace_cublas_cannot_be_deterministic_with(home, project, monkeypatch):
    config = _config(home, project, backend="torch", deterministic="true", seed="1")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    assert any("CUBLAS_WORKSPACE_CONFIG=:0:0 (yours, kept): cuBLAS is deterministic only with :4096:8 or :16:8" in w
               for w in decide(config, GPU, {}).warnings)
    assert not any("CUBLAS" in w for w in decide(config, CPU, {}).warnings)  # no cuBLAS on a CPU
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    assert not any("CUBLAS" in w for w in decide(config, GPU, {}).warnings)


TORCH_CHILD = """\
import sys
from pathlib import Path
import torch
from _devswitch import backends, state
from _devswitch.config import resolve
from _devswitch.decide import decide
from _devswitch.devices import Cpu, Gpu, Inventory
from _devswitch.errors import TooLateError
from _devswitch.session import reset

home, project = Path(sys.argv[1]), Path(sys.argv[2])
GPU = Inventory(Cpu("Intel Xeon", 8, frozenset({"AVX2"})), (Gpu(0, "GPU0 cc90", (9, 0), 80 * 2**30),))
config = resolve({"DEVSWITCH_BACKEND": "torch", "DEVSWITCH_DETERMINISTIC": "true", "DEVSWITCH_SEED": "1"}, home, project)
assert "tensorflow" not in sys.modules
"""


def _torch_child(home, project, code: str) -> None:
    """PyTorch is imported in a child process with KERAS_BACKEND=torch, never beside this process's
    TensorFlow (the two in one process can crash it)."""
    if not backends.installed("torch"):
        pytest.skip("needs torch")
    env = {**os.environ, "KERAS_BACKEND": "torch", "DEVSWITCH_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-c", TORCH_CHILD + textwrap.dedent(code), str(home), str(project)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=project)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stdout[-2000:] + done.stderr[-3000:]


@pytest.mark.subprocess
def test_torch_refuses_determinism_once_cuda_has_started_without_the_workspace(home, project):
    _torch_child(home, project, """
        plan = decide(config, GPU, {}).plan
        torch.cuda.is_initialized = lambda: True  # CUDA started (a fake: there is no GPU here)
        state.current().process["torch-cublas-before-cuda"] = False
        try:
            backends.get("torch").preflight(config, plan)
        except TooLateError as error:
            named = ("deterministic=true", "torch", "CUDA", "CUBLAS_WORKSPACE_CONFIG")  # errorparts.parts, inline
            assert all(part in error.message for part in named) and "import devswitch" in error.hint, error
            print("OK")
    """)


@pytest.mark.skipif(not backends.installed("jax"), reason="needs jax")
def test_jax_refuses_determinism_on_a_gpu_once_it_started_without_the_flag(home, project, monkeypatch):
    jax = backends.get("jax")
    from _devswitch import state

    config = _config(home, project, backend="jax", deterministic="true", seed="1")
    plan = decide(config, GPU, {}).plan
    monkeypatch.setattr(jax, "started", lambda: True)
    monkeypatch.setitem(state.current().process, "jax-xla-flags", "--xla_dump_to=/tmp/x")
    with pytest.raises(TooLateError) as caught:
        jax.preflight(config, plan)
    parts(caught, TooLateError, named=["deterministic=true", "JAX", "--xla_gpu_deterministic_ops"],
          fix="import devswitch")


@pytest.mark.subprocess
def test_torch_determinism_is_applied_for_real_and_undone_by_reset(home, project):
    """On this CPU: PyTorch's deterministic algorithms and cuDNN flags are set, and reset() restores them."""
    _torch_child(home, project, """
        from _devswitch.backends import torch as backend
        cudnn, before = torch.backends.cudnn, torch.are_deterministic_algorithms_enabled()
        flags = (cudnn.benchmark, cudnn.deterministic)
        backend._apply_determinism(torch, config)
        assert torch.are_deterministic_algorithms_enabled() and (cudnn.benchmark, cudnn.deterministic) == (False, True)
        reset()
        assert torch.are_deterministic_algorithms_enabled() is before
        assert (cudnn.benchmark, cudnn.deterministic) == flags
        print("OK")
    """)


def test_tensorflow_op_determinism_is_applied_for_real_and_undone_by_reset(home, project):
    from tensorflow.python.framework import config as tf_config

    from _devswitch.backends import tensorflow as backend
    from _devswitch.session import reset

    assert not tf_config.is_op_determinism_enabled()
    backend._apply_determinism(_config(home, project, seed="3"))  # auto with a seed: on
    assert tf_config.is_op_determinism_enabled()
    reset()
    assert not tf_config.is_op_determinism_enabled()


def test_the_notebook_magic_and_the_command_line_take_both_settings(home, project, capsys):
    from _devswitch.cli import build_parser
    from _devswitch.notebook import parse

    assert parse("seed=3 deterministic=true") == {"seed": "3", "deterministic": "true"}
    config = resolve({}, home, project, parse("seed=3 deterministic=true"))
    assert (config.seed, config.deterministic, config["seed"].source) == (3, True, "explicit")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    shown = capsys.readouterr().out
    assert "--deterministic VALUE" in shown and "none, N from 0 to 4294967295 (default none)" in shown


def test_deterministic_is_a_compare_axis_and_seed_is_not():
    assert parse_vary(["deterministic=true,false"]) == (("deterministic", ("true", "false")),)
    with pytest.raises(UsageError) as caught:
        parse_vary(["seed=1,2"])
    parts(caught, UsageError, named=["--vary seed", "cannot be a column"], fix="deterministic")


# --- two seeded fits per backend, each in its own process: bit-identical ------------------------------------

FIT = """\
import devswitch  # the first import: the switch (DEVSWITCH_DETERMINISTIC, DEVSWITCH_SEED from the environment)
import hashlib, json, os, sys
import numpy as np
import keras

x = np.random.rand(256, 16).astype("float32")  # NumPy, seeded by devswitch
y = (x.sum(axis=1) > 8).astype("float32")
model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dropout(0.5),
                          keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy")
model.fit(x, y, batch_size=16, epochs=2, shuffle=True, verbose=0)
digest = hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in model.get_weights())).hexdigest()
backend = keras.backend.backend()
state = {}
if backend == "tensorflow":
    from tensorflow.python.framework import config as tf_config
    state["op_determinism"] = tf_config.is_op_determinism_enabled()
elif backend == "torch":
    import torch
    state["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    state["cublas"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
else:
    state["xla_flags"] = os.environ.get("XLA_FLAGS", "")
print("RESULT", json.dumps({"digest": digest, "backend": backend, "state": state,
                            "tensorflow_imported": "tensorflow" in sys.modules}))
"""


def _write_fit(folder) -> None:
    (folder / "fit.py").write_text(FIT)


def _fits(root):
    jobs = {}
    for backend in backends.NAMES:
        if not backends.installed(backend):
            continue
        env = {"KERAS_BACKEND": backend, "DEVSWITCH_DETERMINISTIC": "true", "DEVSWITCH_SEED": "1234",
               "DEVSWITCH_REPORT": "off", "DEVSWITCH_DEVICE": "cpu"}
        for run, seed in (("first", "1234"), ("second", "1234"), ("other seed", "99")):
            jobs[f"{backend} {run}"] = Child(["fit.py"], {**env, "DEVSWITCH_SEED": seed}, prepare=_write_fit)
    return jobs


fits = children(_fits, name="fits")


@pytest.mark.subprocess
@pytest.mark.parametrize("backend", backends.NAMES)
def test_two_seeded_deterministic_fits_end_with_bit_identical_weights(backend, fits):
    """Dropout and shuffle=True, deterministic: true and seed: 1234, two processes: the same weights bit for
    bit; another seed gives other weights (so the digests say something). A torch or jax process never
    imports TensorFlow, though Keras' set_random_seed would."""
    if not backends.installed(backend):
        pytest.skip(f"{backend} is not installed")
    results = []
    for run in ("first", "second", "other seed"):
        done, _ = fits(f"{backend} {run}")
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(result_line(done.stdout))
    first, second, other = results
    assert first["backend"] == backend and first["digest"] == second["digest"] != other["digest"]
    assert first["tensorflow_imported"] is (backend == "tensorflow")
    expected = {"tensorflow": {"op_determinism": True},
                "torch": {"deterministic_algorithms": True, "cublas": ":4096:8"},
                "jax": {"xla_flags": "--xla_gpu_deterministic_ops=true"}}[backend]
    assert first["state"] == expected
