"""memory_limit (issue 21 item 4): a size or a fraction of the GPU, from every source with its origin, refused
with the source named when bad, applied through each backend's own mechanism (TensorFlow's logical device, JAX's
variable, PyTorch's per-process fraction) on injected inventories and fake frameworks, read back where the
framework allows, and a warning where it does nothing (a CPU)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from errorparts import parts

from _devswitch import backends, memorylimit, state
from _devswitch.backends import common
from _devswitch.config import resolve
from _devswitch.decide import choose, decide
from _devswitch.errors import ConfigError, TooLateError
from _devswitch.memorylimit import ON_CPU, bytes_of, fraction_of
from _devswitch.plans import Cpu, Gpu, Inventory
from _devswitch.settings import Invalid, parse_memory_limit

CPU = Cpu("Test CPU", 8, frozenset({"AVX2"}))
GIB = 2**30


def gpus(count: int = 1, memory: int | None = 16 * GIB) -> tuple[Gpu, ...]:
    return tuple(Gpu(i, f"Test GPU {i}", (9, 0), memory) for i in range(count))


def config(home, project, **explicit):
    return resolve({}, home, project, explicit)


@pytest.mark.parametrize("raw, canonical", [
    ("8GiB", "8GiB"), ("512 MiB", "512MiB"), ("2GB", "2GB"), ("1048576B", "1MiB"), ("123456789B", "123456789B"),
    (0.5, "0.5"), ("50%", "0.5"), (1, "1"), (".25", "0.25"), ("none", "none"), (None, "none"), ("off", "none"),
])
def test_a_limit_is_a_size_or_a_fraction_written_one_way(raw, canonical):
    assert parse_memory_limit(raw) == canonical


@pytest.mark.parametrize("raw", [True, 0, 2, "2", "1048576", "150%", 1.5, -0.5, "lots", "nan", "8XB", "9999TiB"])
def test_anything_else_is_refused_saying_what_is_allowed(raw):
    """A bare number above 1 too: bytes, or a percentage? A size says its unit."""
    with pytest.raises(Invalid, match=r"fraction|size"):
        parse_memory_limit(raw)


def test_the_limit_comes_from_every_source_with_its_origin(home, project, monkeypatch):
    (project / ".devswitchrc").write_text("memory_limit: 0.5\n", encoding="utf-8")
    value = resolve({}, home, project)["memory_limit"]
    assert (value.value, value.location) == ("0.5", f"{project / '.devswitchrc'}:1:15")
    value = resolve({"DEVSWITCH_MEMORY_LIMIT": "8GiB"}, home, project)["memory_limit"]
    assert (value.value, value.location) == ("8GiB", "DEVSWITCH_MEMORY_LIMIT")
    value = resolve({"DEVSWITCH_FLAGS": "memory_limit=25%"}, home, project)["memory_limit"]
    assert value.value == "0.25" and value.location.startswith("DEVSWITCH_FLAGS")
    value = resolve({"DEVSWITCH_MEMORY_LIMIT": "8GiB"}, home, project, {"memory_limit": "4GiB"})["memory_limit"]
    assert value.value == "4GiB" and value.source != "default"
    (project / ".devswitchrc").unlink()
    assert resolve({}, home, project)["memory_limit"].value == "none"


@pytest.mark.parametrize("source, where", [
    pytest.param("file", ".devswitchrc:1:15", id="a bare number above 1 in a file"),
    pytest.param("env", "DEVSWITCH_MEMORY_LIMIT", id="a word in the variable"),
])
def test_a_bad_limit_is_an_error_naming_its_source(home, project, source, where):
    env = {}
    if source == "file":
        (project / ".devswitchrc").write_text("memory_limit: 2\n", encoding="utf-8")
    else:
        env = {"DEVSWITCH_MEMORY_LIMIT": "lots"}
    with pytest.raises(ConfigError) as info:
        resolve(env, home, project)
    where = f"{project / where}" if source == "file" else where
    parts(info, ConfigError, where=where, named=["'memory_limit'"], fix="default (none)", exit_code=2)


def test_a_size_and_a_fraction_against_a_device():
    assert bytes_of("0.5", 16 * GIB) == 8 * GIB and bytes_of("8GiB", None) == 8 * GIB
    assert bytes_of("32GiB", 16 * GIB) == 16 * GIB and bytes_of("0.5", None) is None
    assert fraction_of("4GiB", 16 * GIB) == 0.25 and fraction_of("4GiB", None) is None
    assert fraction_of("none", 16 * GIB) is None and bytes_of("none", 16 * GIB) is None


# --- on a CPU: nothing, said ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_on_a_cpu_info_says_it_does_nothing_and_a_set_limit_is_warned(home, project, backend):
    cfg = config(home, project, backend=backend, memory_limit="8GiB")
    decision = decide(cfg, Inventory(CPU), {})
    assert backends.get(backend).meanings(cfg, decision.plan)["memory_limit"] == ON_CPU
    assert any(re.search(r"memory_limit=8GiB \(devswitch.configure\(memory_limit=...\)\) does nothing on a CPU", w)
               for w in decision.warnings), decision.warnings
    unset = config(home, project, backend=backend)
    assert not [w for w in decide(unset, Inventory(CPU), {}).warnings if "memory_limit" in w]


def test_a_size_above_the_gpus_memory_is_warned(home, project):
    cfg = config(home, project, backend="tensorflow", device="gpu", memory_limit="32GiB")
    warnings = decide(cfg, Inventory(CPU, gpus(1)), {}).warnings
    assert any("is not below gpu:0's 16 GiB: it caps nothing there" in w for w in warnings), warnings


# --- TensorFlow: a logical device of that many MiB, read back -------------------------------------------------


class FakeTf:
    """tf.config as _apply_devices uses it, on physical GPUs that exist only here."""

    def __init__(self, count: int, running: bool = False, logical: dict | None = None):
        self.physical = [SimpleNamespace(name=f"/physical_device:GPU:{i}") for i in range(count)]
        self.growth: dict[str, bool] = {}
        self.logical: dict[str, list] = dict(logical or {})
        self.running = running
        fake = self

        class Experimental:
            @staticmethod
            def set_memory_growth(device, enable):
                fake.growth[device.name] = enable

        class Config:
            @staticmethod
            def LogicalDeviceConfiguration(memory_limit=None):  # noqa: N802 - TensorFlow's name
                return SimpleNamespace(memory_limit=memory_limit)

            experimental = Experimental

            @staticmethod
            def list_physical_devices(kind):
                return fake.physical

            @staticmethod
            def set_visible_devices(devices, kind):
                pass

            @staticmethod
            def set_logical_device_configuration(device, configs):
                if fake.running:
                    raise RuntimeError("Virtual devices cannot be modified after being initialized")
                fake.logical[device.name] = configs

            @staticmethod
            def get_logical_device_configuration(device):
                return fake.logical.get(device.name)

        self.config = Config


def _tf_apply(cfg, inventory: Inventory, fake: FakeTf) -> None:
    from _devswitch.backends import tensorflow

    state.current().inventory = inventory
    tensorflow._apply_devices(fake, choose(cfg, inventory), cfg)


@pytest.mark.parametrize("limit, mib", [("0.5", 8192), ("6GiB", 6144)])
def test_tensorflow_gets_a_logical_device_of_the_limit_on_each_selected_gpu(home, project, limit, mib):
    fake = FakeTf(2)
    _tf_apply(config(home, project, backend="tensorflow", device="gpu:1", memory_limit=limit), Inventory(CPU, gpus(2)),
              fake)
    assert {name: [c.memory_limit for c in configs] for name, configs in fake.logical.items()} == {
        "/physical_device:GPU:1": [mib]}
    assert fake.growth == {}  # TensorFlow refuses memory growth on a GPU with a logical device


def test_tensorflow_without_a_limit_keeps_memory_growth(home, project):
    fake = FakeTf(1)
    _tf_apply(config(home, project, backend="tensorflow", device="gpu"), Inventory(CPU, gpus(1)), fake)
    assert fake.logical == {} and fake.growth == {"/physical_device:GPU:0": True}


def test_tensorflow_refuses_a_fraction_of_a_gpu_of_unknown_memory_before_changing_anything(home, project):
    fake = FakeTf(1)
    cfg = resolve({"DEVSWITCH_MEMORY_LIMIT": "0.5"}, home, project, {"backend": "tensorflow", "device": "gpu"})
    with pytest.raises(ConfigError) as info:
        _tf_apply(cfg, Inventory(CPU, gpus(1, memory=None)), fake)
    parts(info, ConfigError, where="DEVSWITCH_MEMORY_LIMIT", named=["memory_limit=0.5", "gpu:0"], fix="8GiB")
    assert fake.logical == {} and fake.growth == {}


def test_tensorflow_already_running_reads_the_limit_back(home, project):
    cfg = config(home, project, backend="tensorflow", device="gpu", memory_limit="4GiB")
    same = FakeTf(1, running=True, logical={"/physical_device:GPU:0": [SimpleNamespace(memory_limit=4096)]})
    _tf_apply(cfg, Inventory(CPU, gpus(1)), same)  # what runs is what is asked: fine
    other = FakeTf(1, running=True)
    with pytest.raises(TooLateError) as info:
        _tf_apply(cfg, Inventory(CPU, gpus(1)), other)
    named = ["memory_limit", "/physical_device:GPU:0", "4096 MiB", "no limit"]  # the device, asked and running
    parts(info, TooLateError, named=named, fix="import devswitch")


# --- JAX: its variable, before it starts ----------------------------------------------------------------------


def test_jax_takes_the_fraction_in_one_variable(home, project, monkeypatch):
    jax = backends.get("jax")
    monkeypatch.setattr(memorylimit, "fraction_variable", lambda: "XLA_CLIENT_MEM_FRACTION")
    env = jax.environment(config(home, project, backend="jax", memory_limit="0.5"), {})
    assert {k: v for k, v in env.items() if "MEM_FRACTION" in k} == {"XLA_CLIENT_MEM_FRACTION": "0.5"}
    # jaxlib refuses both names at once: the one the user already set is the one devswitch sets
    env = jax.environment(config(home, project, backend="jax", memory_limit="0.5"),
                          {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.9"})
    assert {k: v for k, v in env.items() if "MEM_FRACTION" in k} == {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"}
    # no limit: the user's variable stands; device=cpu: JAX's GPU client never starts
    assert not [k for k in jax.environment(config(home, project, backend="jax"), {}) if "MEM_FRACTION" in k]
    cpu = config(home, project, backend="jax", device="cpu", memory_limit="0.5")
    assert not [k for k in jax.environment(cpu, {}) if "MEM_FRACTION" in k]


def test_jax_takes_a_size_as_a_fraction_of_the_gpu_memory_nvml_reports(home, project, monkeypatch):
    jax = backends.get("jax")
    monkeypatch.setattr(memorylimit, "fraction_variable", lambda: "XLA_CLIENT_MEM_FRACTION")
    monkeypatch.setattr(common, "nvml_memory", lambda: {0: 80 * GIB, 1: 80 * GIB})
    cfg = config(home, project, backend="jax", device="gpu", memory_limit="8GiB")
    assert jax.environment(cfg, {})["XLA_CLIENT_MEM_FRACTION"] == "0.1"
    assert jax.notices(cfg, choose(cfg, Inventory(CPU, gpus(2, 80 * GIB)))) == []
    monkeypatch.setattr(common, "nvml_memory", lambda: {})  # no nvidia-ml-py: the memory is unknown before JAX starts
    assert not [k for k in jax.environment(cfg, {}) if "MEM_FRACTION" in k]
    notes = jax.notices(cfg, choose(cfg, Inventory(CPU, gpus(2, 80 * GIB))))
    named = ("memory_limit=8GiB", "gpu:0", "JAX", "memory_limit: 0.5")  # the setting, the GPU, the fix: a fraction
    assert notes and all(part in notes[0] for part in named), notes


def test_jax_says_so_when_the_limit_replaces_the_users_own_variable(home, project, monkeypatch):
    jax = backends.get("jax")
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.9")
    cfg = resolve({"DEVSWITCH_MEMORY_LIMIT": "0.25"}, home, project, {"backend": "jax", "device": "gpu"})
    plan = choose(cfg, Inventory(CPU, gpus(1)))
    state.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.25")  # what applying does before JAX starts
    (note,) = jax.notices(cfg, plan)
    assert note == ("XLA_PYTHON_CLIENT_MEM_FRACTION=0.25 (memory_limit=0.25, DEVSWITCH_MEMORY_LIMIT) over "
                    "XLA_PYTHON_CLIENT_MEM_FRACTION=0.9 from the environment: a setting given to devswitch wins")
    state.reset()
    import os

    assert os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.9"  # reset puts the user's value back


# --- PyTorch: the per-process fraction, read back and undone --------------------------------------------------


class FakeTorch:
    def __init__(self):
        self.fractions: dict[int, float] = {}
        fake = self

        class Cuda:
            @staticmethod
            def set_per_process_memory_fraction(fraction, device):
                fake.fractions[device] = fraction

            @staticmethod
            def get_per_process_memory_fraction(device):
                return fake.fractions.get(device, 1.0)

        self.cuda = Cuda


def test_torch_sets_the_per_process_fraction_reads_it_back_and_reset_undoes_it(home, project):
    from _devswitch.backends import torch as torch_backend

    fake = FakeTorch()
    inventory = Inventory(CPU, gpus(2, 40 * GIB))
    state.current().inventory = inventory
    cfg = config(home, project, backend="torch", device="gpu:1", memory_limit="10GiB")
    torch_backend._apply_memory_limit(fake, cfg, choose(cfg, inventory))
    assert fake.fractions == {1: 0.25}
    state.reset()
    assert fake.fractions == {1: 1.0}  # PyTorch's own default: no cap
    meaning = torch_backend.meanings(cfg, choose(cfg, inventory))["memory_limit"]
    assert meaning.startswith("torch.cuda.set_per_process_memory_fraction")


def test_info_shows_the_limit_with_its_origin(here, monkeypatch, capsys):
    from _devswitch.cli import main

    monkeypatch.setenv("DEVSWITCH_MEMORY_LIMIT", "8GiB")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\nmemory_limit +8GiB +env var +DEVSWITCH_MEMORY_LIMIT\n", out), out
    assert re.search(r"memory_limit +(nothing on a CPU|tf\.config\.set_logical_device_configuration)", out), out


def test_the_command_line_takes_the_limit_and_its_help_renders(here, capsys):
    """--memory-limit is an option like every setting's, and its help (which argparse %-formats) renders."""
    from _devswitch.cli import main

    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0 and "--memory-limit" in capsys.readouterr().out
