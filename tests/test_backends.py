"""One switch for TensorFlow, JAX and PyTorch: the backend setting, each backend's mechanism for every
setting (GPU branches through an injected inventory), and real runs of each backend in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SCRIPTS, Child, children, clean_environ, result_line
from errorparts import parts, printed

from _devswitch import backends
from _devswitch.config import resolve
from _devswitch.decide import choose
from _devswitch.devices import Cpu, Gpu, Inventory
from _devswitch.errors import ConfigError

BF16_CPU = Cpu("Test CPU with AVX512-BF16", 8, frozenset({"AVX2", "AVX-512", "AVX512-BF16"}))
PLAIN_CPU = Cpu("Test CPU", 8, frozenset({"AVX2"}))


def gpus(*ccs):
    return tuple(Gpu(i, f"Test GPU {i}", cc, 16 << 30) for i, cc in enumerate(ccs))


def config(home, project, **explicit):
    return resolve({}, home, project, explicit)


# --- the backend setting: auto = what Keras itself would pick -------------------------------------------------

def test_auto_is_kerass_own_choice_with_its_origin(home, project, tmp_path):
    cfg = resolve({}, home, project)
    assert cfg.backend == "tensorflow" and cfg["backend"].location.startswith("Keras' default")
    cfg = resolve({"KERAS_BACKEND": "jax"}, home, project)
    assert (cfg.backend, cfg["backend"].source, cfg["backend"].location) == ("jax", "Keras", "KERAS_BACKEND")
    (home / ".keras").mkdir()
    (home / ".keras" / "keras.json").write_text('{\n  "floatx": "float32",\n  "backend": "torch"\n}\n')
    cfg = resolve({}, home, project)
    assert cfg.backend == "torch" and cfg["backend"].location == f"{home}/.keras/keras.json:3"
    keras_home = tmp_path / "kh"
    keras_home.mkdir()
    (keras_home / "keras.json").write_text('{"backend": "jax"}')
    assert resolve({"KERAS_HOME": str(keras_home)}, home, project).backend == "jax"


def test_an_explicit_backend_beats_keras_and_a_foreign_backend_is_an_error(home, project):
    cfg = resolve({"KERAS_BACKEND": "jax", "DEVSWITCH_BACKEND": "torch"}, home, project)
    assert (cfg.backend, cfg["backend"].location) == ("torch", "DEVSWITCH_BACKEND")
    with pytest.raises(ConfigError) as info:
        resolve({"KERAS_BACKEND": "numpy"}, home, project)
    parts(info, ConfigError, where="KERAS_BACKEND", named=["'numpy'"], fix="torch")  # the backends it drives
    with pytest.raises(ConfigError) as info:
        resolve({"DEVSWITCH_BACKEND": "jaxx"}, home, project)
    parts(info, ConfigError, where="DEVSWITCH_BACKEND", named=["'jaxx'"], fix="'jax'")


def test_a_backend_that_is_not_installed_names_the_extra(home, project, monkeypatch):
    from _devswitch import apply

    monkeypatch.setitem(backends.LIBRARIES, "jax", "devswitch_no_such_framework")
    with pytest.raises(ConfigError) as info:
        apply._check_backend(config(home, project, backend="jax"))
    error = parts(info, ConfigError, named=["backend=jax", "devswitch_no_such_framework"])
    assert 'pip install "devswitch[jax]"' in str(error)  # the extra to install, wherever the error says it


def test_every_backend_module_has_the_whole_interface():
    """Every module of NAMES has every member of the Protocol, with the Protocol's parameters, and imports no
    framework at module level; the Protocol names the math members maths.py calls."""
    import inspect

    from _devswitch.backends.interface import Backend, members

    names = [name for name, _, _ in members()]
    assert {"math_effect", "apply_math", "math_state", "Runner", "environment"} <= set(names)
    for name in backends.NAMES:
        module = backends.get(name)
        assert [n for n in names if not hasattr(module, n)] == [], name
        for member in names:
            declared = vars(Backend)[member]
            if inspect.isfunction(declared):
                expected = [p for p in inspect.signature(declared).parameters if p != "self"]
                given = list(inspect.signature(getattr(module, member)).parameters)
                assert given[: len(expected)] == expected, (name, member)
        assert "import tensorflow" not in Path(module.__file__).read_text().split("\ndef ")[0] or name == "tensorflow"


def test_mypy_checks_every_backend_module_against_the_protocol():
    """backends/_checked.py assigns each module of NAMES to a Backend-typed name under TYPE_CHECKING, which is
    what makes mypy check it; a fourth module without that line would go unchecked."""
    import ast

    tree = ast.parse((Path(backends.__file__).parent / "_checked.py").read_text())
    checked = {
        node.value.id.lstrip("_")
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign) and isinstance(node.annotation, ast.Name)
        and node.annotation.id == "Backend" and isinstance(node.value, ast.Name)
    }
    assert checked == set(backends.NAMES)


# --- each setting through each backend's own mechanism (pure) ------------------------------------------------

@pytest.mark.parametrize("backend, explicit, expected", [
    ("jax", {"device": "cpu"}, {"JAX_PLATFORMS": "cpu", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}),
    ("jax", {"memory_growth": "false"}, {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}),
    ("jax", {"cpu_replicas": "2", "strategy": "mirrored"},
     {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}),
    ("torch", {"device": "cpu"}, {}),
    ("tensorflow", {"log_level": "quiet"}, {"TF_CPP_MIN_LOG_LEVEL": "3"}),
])
def test_variables_set_before_the_framework_starts(home, project, backend, explicit, expected):
    env = backends.get(backend).environment(config(home, project, backend=backend, **explicit), {})
    assert {k: env[k] for k in expected} == expected


def test_jax_keeps_the_users_other_xla_flags(home, project):
    cfg = config(home, project, backend="jax", cpu_replicas=4)
    env = backends.get("jax").environment(cfg, {"XLA_FLAGS": "--xla_dump_to=/tmp/x "
                                                              "--xla_force_host_platform_device_count=9"})
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=4"


@pytest.mark.parametrize("backend, inventory, expected", [
    pytest.param("tensorflow", Inventory(BF16_CPU), "bf16", id="tensorflow, CPU with bf16: bf16 (1.8x measured)"),
    pytest.param("torch", Inventory(BF16_CPU), "bf16", id="torch, CPU with bf16: bf16 (1.6x measured)"),
    pytest.param("jax", Inventory(BF16_CPU), "fp32", id="jax, CPU with bf16: fp32 (bf16 measured slower)"),
    pytest.param("torch", Inventory(PLAIN_CPU), "fp32", id="torch, CPU without bf16: fp32"),
] + [pytest.param(b, Inventory(PLAIN_CPU, gpus(cc)), p, id=f"{b}, one GPU cc {cc[0]}.{cc[1]}: {p}")
     for b in backends.NAMES for cc, p in (((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16"), ((6, 1), "fp32"))])
def test_half_per_backend_and_device(home, project, backend, inventory, expected):
    plan = choose(config(home, project, backend=backend, precision="half"), inventory)
    assert plan.precision == expected and plan.backend == backend
    assert f"[{backend}]" in plan.precision_reason


@pytest.mark.parametrize("backend", backends.NAMES)
@pytest.mark.parametrize("inventory, device, expected_gpus", [
    (Inventory(PLAIN_CPU), "auto", ()),
    (Inventory(PLAIN_CPU, gpus((8, 0))), "auto", (0,)),
    (Inventory(PLAIN_CPU, gpus((8, 0), (8, 0))), "gpu:1", (1,)),
    (Inventory(PLAIN_CPU, gpus((7, 5), (7, 5))), "cpu", ()),
], ids=["no GPU", "one GPU", "two GPUs, the second", "two GPUs, cpu asked"])
def test_device_choice_and_its_meaning_on_each_backend(home, project, backend, inventory, device, expected_gpus):
    cfg = config(home, project, backend=backend, device=device)
    plan = choose(cfg, inventory)
    assert plan.gpus == expected_gpus
    module = backends.get(backend)
    strategy = module.plan_distribution(cfg, plan, {})
    meaning = module.meanings(cfg, plan)
    assert set(meaning) >= {"device", "memory_growth", "threads", "xla", "strategy", "cpu_replicas"}
    if backend == "torch":
        assert strategy.devices == ((f"cuda:{expected_gpus[0]}",) if expected_gpus else ("cpu",))
        assert "not applicable on torch" in meaning["memory_growth"]
    if backend == "jax":
        assert "not applicable on jax" in meaning["threads"]
        assert ("JAX_PLATFORMS=cpu" in meaning["device"]) == (device == "cpu")


def test_two_gpus_mirrored_on_jax_and_tensorflow_refused_on_torch(home, project):
    inventory = Inventory(PLAIN_CPU, gpus((9, 0), (9, 0)))
    for backend in ("jax", "tensorflow"):
        cfg = config(home, project, backend=backend, device="gpu", strategy="mirrored")
        plan = choose(cfg, inventory)
        assert backends.get(backend).plan_distribution(cfg, plan, {}).replicas == 2
    cfg = config(home, project, backend="torch", device="gpu", strategy="mirrored")
    with pytest.raises(ConfigError) as info:
        backends.get("torch").refuse(cfg)
    parts(info, ConfigError, named=["strategy=mirrored", "torch"], fix="backend: jax")
    with pytest.raises(ConfigError) as info:
        backends.get("torch").refuse(config(home, project, backend="torch", device="gpu:0,1"))
    parts(info, ConfigError, named=["device=gpu:0,1"])


def test_jax_multi_worker_cluster_from_settings_or_kerass_variables(home, project):
    jax = backends.get("jax")
    inventory = Inventory(PLAIN_CPU)
    cfg = config(home, project, backend="jax", strategy="multi_worker", workers="h1:1,h2:2", worker_index=1)
    plan = jax.plan_distribution(cfg, choose(cfg, inventory), {})
    assert (plan.workers, plan.task_index, plan.role) == (2, 1, "worker 1 of 2 workers")
    cfg = config(home, project, backend="jax", strategy="multi_worker")
    env = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "h1:1,h2:2", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
           "KERAS_DISTRIBUTION_PROCESS_ID": "0"}
    assert jax.plan_distribution(cfg, choose(cfg, inventory), env).role.endswith("(chief)")
    with pytest.raises(ConfigError) as info:
        jax.plan_distribution(cfg, choose(cfg, inventory), {})
    parts(info, ConfigError, named=["multi_worker"], fix="KERAS_DISTRIBUTION_JOB_ADDRESSES")


def test_settings_a_backend_cannot_honour_are_flagged_not_dropped(home, project):
    cfg = config(home, project, backend="jax", threads="4")
    notes = backends.get("jax").notices(cfg, choose(cfg, Inventory(PLAIN_CPU)))
    assert notes and all(token in notes[0] for token in ("threads=4:0", "devswitch.configure(threads=...)", "jax"))
    cfg = config(home, project, backend="torch", memory_growth="false")
    notes = backends.get("torch").notices(cfg, choose(cfg, Inventory(PLAIN_CPU)))
    assert notes and "memory_growth=false" in notes[0] and "torch" in notes[0]
    assert backends.get("tensorflow").notices(cfg, choose(cfg, Inventory(PLAIN_CPU))) == []


# --- real runs, one process per backend ---------------------------------------------------------------------

def _installed(name):
    return pytest.mark.skipif(not backends.installed(name), reason=f"{name} is not installed here")


BACKENDS = [pytest.param(name, marks=[pytest.mark.subprocess, _installed(name)]) for name in backends.NAMES]


def run(args, env, cwd, timeout=300):
    return subprocess.run([sys.executable, *args], env=clean_environ(**env), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


JAX_FIT = (  # the same fit on one device, or mirrored over two host devices
    "import devswitch, json, keras, numpy as np\n"
    "keras.utils.set_random_seed(0)\n"
    "model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation='relu'),"
    " keras.layers.Dense(1)])\n"
    "model.compile(optimizer=keras.optimizers.SGD(0.05), loss='mse')\n"
    "x = np.random.default_rng(0).normal(size=(256, 8)).astype('float32'); y = x.sum(1, keepdims=True)\n"
    "h = model.fit(x, y, epochs=3, batch_size=32, verbose=0, shuffle=False)\n"
    "d = keras.distribution.distribution()\n"
    "print('RESULT ' + json.dumps({'loss': h.history['loss'][-1], 'devices': len(d.device_mesh.devices.ravel())"
    " if d else 1, 'replicas': devswitch.plan().strategy.replicas}))\n")


def _script(name, text):
    return lambda folder: (folder / name).write_text(text)


def _backend_runs(root):
    """The per-backend processes of this module (each starts a framework: several seconds)."""
    jobs = {}
    for backend in backends.NAMES:
        if not backends.installed(backend):
            continue
        jobs[f"import {backend}"] = Child([SCRIPTS / "any_backend.py"], {"KERAS_BACKEND": backend,
                                                                         "DEVSWITCH_PRECISION": "bf16",
                                                                         "DEVSWITCH_DEVICE": "cpu"})
        jobs[f"run {backend}"] = Child(["-m", "devswitch", "run", "--backend", backend, "--device", "cpu", "--report",
                                        "r.jsonl", SCRIPTS / "any_backend.py"])
    if all(backends.installed(n) for n in backends.NAMES):
        jobs["compare"] = Child(["-m", "devswitch", "compare", "mlp", "--backends", ",".join(backends.NAMES),
                                 "--devices", "cpu", "--precisions", "fp32", "--batch-sizes", "8", "--iterations", "3",
                                 "--warmup", "1", "--no-peak-probe", "--no-predict-baseline", "--accuracy-samples", "8",
                                 "--out", "out"])
    if backends.installed("jax"):
        fit = _script("fit.py", JAX_FIT)
        jobs["jax single"] = Child(["fit.py"], {"KERAS_BACKEND": "jax", "DEVSWITCH_REPORT": "off"}, prepare=fit)
        jobs["jax mirrored"] = Child(["fit.py"], {"KERAS_BACKEND": "jax", "DEVSWITCH_REPORT": "off",
                                                  "DEVSWITCH_STRATEGY": "mirrored", "DEVSWITCH_CPU_REPLICAS": "2"},
                                     prepare=fit)
        jobs["too late"] = Child(["late.py"], {"KERAS_BACKEND": "jax", "DEVSWITCH_BACKEND": "torch"},
                                 prepare=_script("late.py", "import keras\nimport devswitch\nprint('ran')\n"))
    if backends.installed("torch"):
        jobs["torch threads"] = Child(["-c", "import devswitch, torch; print('RESULT', torch.get_num_threads(), "
                                             "torch.get_num_interop_threads())"],
                                      {"KERAS_BACKEND": "torch", "DEVSWITCH_THREADS": "1:3"})
    return jobs


started = children(_backend_runs, name="started")  # started(name) waits for one: (process, its folder)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_ordinary_script_with_the_one_import_on_each_backend(backend, started):
    done, _ = started(f"import {backend}")
    assert done.returncode == 0, done.stderr
    result = result_line(done.stdout)
    assert result["backend"] == result["plan_backend"] == backend
    assert result["hidden_compute_dtype"] == "bfloat16" and result["global_policy"] == "mixed_bfloat16"
    assert result["tensorflow_imported"] is (backend == "tensorflow")
    assert result["loss_finite"] and result["prediction_shape"] == [4, 1]
    assert [r[:2] for r in result["runs"]] == [["fit", "ok"], ["evaluate", "ok"], ["predict", "ok"]]
    assert all(r[2] != "unknown" and "cpu" in r[2].lower() for r in result["runs"]), result["runs"]
    assert result["jit_compile"] is (backend == "jax")  # Keras' own "auto": JAX compiles, TF on a CPU and torch not
    assert "timed Keras calls" in done.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_devswitch_run_on_each_backend(backend, started):
    done, folder = started(f"run {backend}")
    assert done.returncode == 0, done.stderr
    from _devswitch.results import read_report

    (only,) = read_report(folder / "r.jsonl")
    assert only.plan["backend"] == only.environment["backend"] == backend
    assert only.environment[backend]  # the framework's version


@pytest.mark.subprocess
@pytest.mark.skipif(not all(backends.installed(n) for n in backends.NAMES), reason="needs all three backends")
def test_compare_across_the_three_backends(started):
    done, folder = started("compare")
    assert done.returncode == 0, done.stderr
    doc = json.loads((folder / "out" / "results.json").read_text())
    assert [(c["backend"], c["status"]) for c in doc["cells"]] == [("tensorflow", "ok"), ("jax", "ok"),
                                                                   ("torch", "ok")]
    assert "| batch 8 | tensorflow cpu fp32 | jax cpu fp32 | torch cpu fp32 |" in done.stdout
    assert "speed-up vs tensorflow cpu fp32" in done.stdout
    # one strict float32 reference (TensorFlow, the baseline's backend): its weights moved to JAX and PyTorch
    assert doc["reference"]["status"] == "ok" and doc["reference"]["backend"] == "tensorflow"
    errors = {c["backend"]: c["record"]["accuracy"]["max_rel_error"] for c in doc["cells"]}
    assert errors["tensorflow"] <= 1e-6 and errors["jax"] <= 1e-5 and errors["torch"] <= 1e-5, errors


def test_compare_marks_a_backend_that_is_not_installed_unavailable(monkeypatch, tmp_path):
    from _devswitch import compare

    monkeypatch.setitem(backends.LIBRARIES, "torch", "devswitch_no_such_framework")
    options = compare.Options("mlp", ("torch",), ("cpu",), ("fp32",), (1,), baseline=("torch", "cpu", "fp32"))
    doc = compare.run_matrix(options, lambda line: None, tmp_path)
    assert [c.status for c in doc.cells] == [
        'unavailable: devswitch_no_such_framework is not installed: pip install "devswitch[torch]"']


@pytest.mark.subprocess
@pytest.mark.skipif(not backends.installed("jax"), reason="jax is not installed here")
def test_jax_mirrored_over_two_host_devices_trains_like_one(started):
    (single, _), (mirrored, _) = started("jax single"), started("jax mirrored")
    assert single.returncode == 0 and mirrored.returncode == 0, single.stderr + mirrored.stderr
    one, two = result_line(single.stdout), result_line(mirrored.stdout)
    assert (one["devices"], two["devices"], two["replicas"]) == (1, 2, 2)
    assert two["loss"] == pytest.approx(one["loss"], rel=0.05)


@pytest.mark.subprocess
@pytest.mark.skipif(not backends.installed("jax"), reason="jax is not installed here")
def test_too_late_for_another_backend_is_a_clear_error(started):
    done, _ = started("too late")
    assert done.returncode == 4 and "Traceback" not in done.stderr, done.stderr
    error = printed(done.stderr, named=["torch", "jax"])  # the backend asked for and the one running
    assert error.message.index("torch") < error.message.index("jax")


@pytest.mark.subprocess
@pytest.mark.parametrize("env, code, message", [
    ({"DEVSWITCH_BACKEND": "torch", "DEVSWITCH_STRATEGY": "mirrored"}, 2,
     "strategy=mirrored is not available on the torch backend"),
    ({"DEVSWITCH_BACKEND": "torch", "DEVSWITCH_DEVICE": "gpu:0,1"}, 2, "Keras on PyTorch runs a model on one device"),
    ({"DEVSWITCH_BACKEND": "jax", "DEVSWITCH_STRATEGY": "multi_worker"}, 2, "multi_worker needs a cluster"),
], ids=["torch mirrored", "torch two GPUs", "jax multi_worker without cluster"])
def test_refused_settings_end_the_script_with_one_line(tmp_path, env, code, message):
    backend = env["DEVSWITCH_BACKEND"]
    if not backends.installed(backend):
        pytest.skip(f"{backend} is not installed here")
    script = tmp_path / "s.py"
    script.write_text("import sys, devswitch\nprint('ran', 'tensorflow' in sys.modules)\n")
    done = run([str(script)], {"HOME": str(tmp_path), **env}, tmp_path)
    assert done.returncode == code and message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(not backends.installed("jax"), reason="jax is not installed here")
def test_jax_multi_worker_two_local_processes_end_with_the_same_weights(tmp_path):
    """jax.distributed (through keras.distribution.initialize) on the CPU, with gloo collectives."""
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("localhost", 0))
            ports.append(s.getsockname()[1])
    script = tmp_path / "fit.py"
    script.write_text(
        "import devswitch, json, jax, keras, numpy as np\n"
        "keras.utils.set_random_seed(0)\n"
        "model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation='relu'),"
        " keras.layers.Dense(1)])\n"
        "model.compile(optimizer=keras.optimizers.SGD(0.05), loss='mse')\n"
        "x = np.random.default_rng(0).normal(size=(256, 8)).astype('float32'); y = x.sum(1, keepdims=True)\n"
        "keras.distribution.distribution().auto_shard_dataset = False  # Keras' rule for in-memory arrays\n"
        "h = model.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False)\n"
        "print('RESULT ' + json.dumps({'loss': h.history['loss'][-1], 'processes': jax.process_count(),"
        " 'w': [float(abs(w).sum()) for w in model.get_weights()], 'role': devswitch.plan().strategy.role}))\n")
    env = clean_environ(HOME=str(tmp_path), KERAS_BACKEND="jax", DEVSWITCH_REPORT="off",
                        DEVSWITCH_STRATEGY="multi_worker", DEVSWITCH_WORKERS=f"localhost:{ports[0]},localhost:{ports[1]}")
    procs = [subprocess.Popen([sys.executable, str(script)], env={**env, "DEVSWITCH_WORKER_INDEX": str(i)},
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    first, second = (result_line(out) for out, _ in outputs)
    assert first["processes"] == second["processes"] == 2
    assert first["role"].endswith("(chief)") and second["role"] == "worker 1 of 2 workers"
    assert first["w"] == second["w"] and first["loss"] == second["loss"]


# --- found in review -----------------------------------------------------------------------------------------

def test_a_refused_configure_puts_the_variables_back(here_env, home, project):
    """The variables set for the framework before a refusal are restored (TF_CPP_MIN_LOG_LEVEL here)."""
    import os

    from _devswitch import session
    from _devswitch.devices import Inventory, detect_cpu
    from _devswitch.errors import DeviceError

    before = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    with pytest.raises(DeviceError):
        session.activate({"log_level": "quiet", "device": "gpu", "fallback": "error"},
                         inventory=Inventory(detect_cpu()))  # an injected GPU-less machine: refused everywhere
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == before and session.plan() is None


@pytest.fixture
def here_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_deep_keras_json_is_kerass_default_not_a_traceback(home, project, tmp_path):
    folder = tmp_path / "kh"
    folder.mkdir()
    (folder / "keras.json").write_text('{"backend": ' + "[" * 200_000)
    cfg = resolve({"KERAS_HOME": str(folder)}, home, project)
    assert cfg.backend == "tensorflow" and "is not valid JSON" in cfg["backend"].location


def test_workers_are_not_taken_from_a_project_file(home, project):
    (project / ".devswitchrc").write_text("strategy: multi_worker\nworkers: attacker:1,attacker:2\n")
    with pytest.raises(ConfigError) as info:
        resolve({}, home, project)
    parts(info, ConfigError, where=f"{project / '.devswitchrc'}:2:10", named=["'workers'"], fix="DEVSWITCH_WORKERS")
    (home / ".devswitchrc").write_text("workers: h1:1,h2:2\n")  # the user's own file may set it
    (project / ".devswitchrc").write_text("strategy: multi_worker\n")
    assert resolve({}, home, project).workers == ("h1:1", "h2:2")


NUM, ID = "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID"


@pytest.mark.parametrize("variables, where, named", [
    ({NUM: "9" * 5000, ID: "0"}, NUM, [f"'{'9' * 10}", "...", "0", "4096"]),  # the value by its start, the range
    ({NUM: "٢", ID: "0"}, NUM, ["'٢'"]),
    ({NUM: "0", ID: "0"}, ID, [f"{ID}=0", "0 processes"]),  # no index is in range of 0 processes
])
def test_kerass_cluster_variables_are_bounded(home, project, variables, where, named):
    cfg = config(home, project, backend="jax", strategy="multi_worker")
    env = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "h:1", **variables}
    with pytest.raises(ConfigError) as info:
        backends.get("jax").plan_distribution(cfg, choose(cfg, Inventory(PLAIN_CPU)), env)
    parts(info, ConfigError, where=where, named=named)
    assert len(str(info.value)) < 400


def test_jax_flags_a_gpu_subset_that_would_still_preallocate_every_gpu(home, project):
    cfg = config(home, project, backend="jax", device="gpu:1", memory_growth="false")
    notes = backends.get("jax").notices(cfg, choose(cfg, Inventory(PLAIN_CPU, gpus((9, 0), (9, 0)))))
    assert any("preallocates 75% of every GPU" in n for n in notes)
    with pytest.raises(ConfigError) as info:
        backends.get("jax").refuse(config(home, project, backend="jax", device="gpu:1", strategy="multi_worker",
                                          workers="h:1,h:2"))
    parts(info, ConfigError, named=["device=gpu:1", "strategy=multi_worker", "jax"])


def test_jax_keeps_a_preallocation_the_user_exported(home, project):
    env = backends.get("jax").environment(config(home, project, backend="jax"), {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"})
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in env  # default memory_growth: the user's variable stands
    env = backends.get("jax").environment(config(home, project, backend="jax", memory_growth="true"),
                                          {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"})
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"  # an explicit setting wins


@pytest.mark.subprocess
@pytest.mark.skipif(not backends.installed("torch"), reason="torch is not installed here")
def test_torch_thread_pools_from_the_switch(started):
    done, _ = started("torch threads")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "RESULT 1 3"


@pytest.mark.parametrize("backend, device, gpus, told", [
    pytest.param("tensorflow", "cpu", (), 2, id="TensorFlow on the CPU still counts the GPUs"),
    pytest.param("torch", "cpu", (), 2, id="PyTorch on the CPU still counts the GPUs"),
    pytest.param("jax", "cpu", (), None, id="JAX on the CPU cannot see them: says nothing"),
    pytest.param("jax", "gpu:0", (0,), 2, id="JAX on a GPU counts them"),
    pytest.param("jax", "gpu", (), 0, id="JAX asked for a GPU and found none"),
])
def test_a_worker_tells_compare_the_gpu_count_only_when_it_could_see_it(backend, device, gpus, told):
    """A JAX worker set up for the CPU (JAX_PLATFORMS=cpu) must not make compare skip the GPU columns."""
    from _devswitch.devices import Plan
    from _devswitch.workerbase import gpus_seen

    count = 0 if device == "gpu" else 2
    plan = Plan(device, gpus, "fp32", "test", "test", backend=backend)
    if device == "gpu":  # a GPU configuration that found none: the count it saw is the answer
        plan = Plan("gpu:0", (0,), "fp32", "test", "test", backend=backend)
    assert gpus_seen(plan, count) == told
