"""tf.distribute from the same switch: planning and errors (pure), then real runs on logical CPUs."""

from __future__ import annotations

import json
import socket

import pytest

from conftest import SCRIPTS, Child, children, result_line
from errorparts import parts
from _devswitch.config import resolve
from _devswitch.decide import choose
from _devswitch.devices import Cpu, Gpu, Inventory
from _devswitch.distribute import plan_strategy
from _devswitch.errors import ConfigError, DeviceError

CPU = Inventory(Cpu("cpu", 2, frozenset()))
TWO_GPUS = Inventory(Cpu("cpu", 8, frozenset()), (Gpu(0, "A100", (8, 0)), Gpu(1, "A100", (8, 0))))


def plan(env: dict, inventory=CPU, home=None, project=None):
    config = resolve(env, home, project)
    return plan_strategy(config, choose(config, inventory), env)


@pytest.mark.parametrize("env, inventory, name, devices, replicas", [
    pytest.param({}, CPU, "none", ("/cpu:0",), 1, id="default: no strategy"),
    pytest.param({"DEVSWITCH_STRATEGY": "mirrored", "DEVSWITCH_CPU_REPLICAS": "2"}, CPU, "mirrored",
                 ("/cpu:0", "/cpu:1"), 2, id="mirrored over 2 logical CPUs"),
    pytest.param({"DEVSWITCH_STRATEGY": "mirrored"}, TWO_GPUS, "mirrored", ("/gpu:0", "/gpu:1"), 2,
                 id="mirrored over two GPUs"),
    pytest.param({"DEVSWITCH_STRATEGY": "mirrored", "DEVSWITCH_DEVICE": "gpu:1"}, TWO_GPUS, "mirrored",
                 ("/gpu:0",), 1, id="mirrored over the one selected GPU (renumbered)"),
    pytest.param({"DEVSWITCH_FLAGS": "strategy=multi_worker,workers=h1:1000,h2:1000,worker_index=1",
                  "DEVSWITCH_CPU_REPLICAS": "2"}, CPU, "multi_worker", ("/cpu:0", "/cpu:1"), 4,
                 id="multi_worker from settings: 2 workers x 2 replicas"),
])
def test_strategy_plans(home, project, env, inventory, name, devices, replicas):
    result = plan(env, inventory, home, project)
    assert (result.name, result.devices, result.replicas) == (name, devices, replicas)


def test_settings_become_tf_config(home, project):
    result = plan({"DEVSWITCH_STRATEGY": "multi_worker", "DEVSWITCH_WORKERS": "10.0.0.1:2222,10.0.0.2:2222",
                   "DEVSWITCH_WORKER_INDEX": "1"}, CPU, home, project)
    assert json.loads(result.tf_config) == {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
                                            "task": {"type": "worker", "index": 1}}
    assert result.role == "worker 1 of 2 workers" and result.workers == 2


def test_tf_config_wins_and_is_read(home, project):
    tf_config = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "chief",
                                                                                              "index": 0}})
    result = plan({"DEVSWITCH_STRATEGY": "multi_worker", "TF_CONFIG": tf_config, "DEVSWITCH_WORKERS": "x:1"},
                  CPU, home, project)
    assert result.workers == 3 and result.tf_config is None and result.role == "chief 0 of 3 workers (chief)"
    (warning,) = result.warnings  # names both sources of the cluster
    assert "TF_CONFIG" in warning and "workers (DEVSWITCH_WORKERS)" in warning


def test_workers_in_a_yaml_list(home, project):
    (home / ".devswitchrc").write_text("strategy: multi_worker\nworkers:\n  - a:1\n  - b:2\nworker_index: 0\n")
    assert plan({}, CPU, home, project).workers == 2


@pytest.mark.parametrize("env, pattern", [
    pytest.param({"DEVSWITCH_STRATEGY": "multi_worker"}, r"DEVSWITCH_STRATEGY: strategy=multi_worker needs a "
                 r"cluster, and none is set\n  hint: set workers:", id="multi_worker without a cluster"),
    pytest.param({"DEVSWITCH_STRATEGY": "multi_worker", "TF_CONFIG": "{not json"}, r"TF_CONFIG: not valid JSON",
                 id="TF_CONFIG not JSON"),
    pytest.param({"DEVSWITCH_STRATEGY": "multi_worker", "TF_CONFIG": '{"task": {"type": "worker", "index": 0}}'},
                 r"TF_CONFIG: field 'cluster' is missing", id="TF_CONFIG without cluster"),
    pytest.param({"DEVSWITCH_STRATEGY": "multi_worker", "TF_CONFIG": '{"cluster": {"worker": ["a:1"]}}'},
                 r"TF_CONFIG: field 'task' is missing", id="TF_CONFIG without task"),
    pytest.param({"DEVSWITCH_STRATEGY": "multi_worker",
                  "TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}'},
                 r"TF_CONFIG: field 'task.index' is 3, but cluster.worker has 1 address\(es\)",
                 id="TF_CONFIG index out of range"),
    pytest.param({"DEVSWITCH_STRATEGY": "multi_worker",
                  "TF_CONFIG": '{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}'},
                 r"TF_CONFIG: field 'cluster.worker' must be a list", id="TF_CONFIG worker not a list"),
    pytest.param({"DEVSWITCH_STRATEGY": "multi_worker", "DEVSWITCH_WORKERS": "a:1,b:1",
                  "DEVSWITCH_WORKER_INDEX": "2"}, r"DEVSWITCH_WORKER_INDEX: worker_index=2 is out of range: "
                 r"workers lists 2 address\(es\)", id="worker index out of range"),
    pytest.param({"DEVSWITCH_WORKERS": "nohost"}, r"DEVSWITCH_WORKERS: invalid value 'nohost'",
                 id="worker address without port"),
    pytest.param({"DEVSWITCH_STRATEGY": "mirored"}, r"invalid value 'mirored' for 'strategy'.*did you mean "
                 r"'mirrored'", id="misspelt strategy"),
])
def test_strategy_errors(home, project, env, pattern):
    with pytest.raises(ConfigError, match="(?s)" + pattern):
        plan(env, CPU, home, project)


def test_a_strategy_on_gpus_that_are_not_there_follows_the_fallback_rules(home, project):
    result = plan({"DEVSWITCH_STRATEGY": "mirrored", "DEVSWITCH_DEVICE": "gpu", "DEVSWITCH_CPU_REPLICAS": "2"},
                  CPU, home, project)
    assert result.devices == ("/cpu:0", "/cpu:1")  # fallback: cpu, with the device warning
    with pytest.raises(DeviceError) as info:
        plan({"DEVSWITCH_STRATEGY": "mirrored", "DEVSWITCH_DEVICE": "gpu", "DEVSWITCH_FALLBACK": "error"},
             CPU, home, project)
    parts(info, DeviceError, where="DEVSWITCH_DEVICE", named=["device=gpu"], fix="fallback: cpu")


def test_mirrored_on_one_device_warns(home, project):
    (warning,) = plan({"DEVSWITCH_STRATEGY": "mirrored"}, CPU, home, project).warnings
    assert warning.startswith("strategy=mirrored") and "(/cpu:0)" in warning and "cpu_replicas" in warning  # the fix


# --- real runs ------------------------------------------------------------------------------------

def _fits(root):
    return {"single": Child([SCRIPTS / "distributed_fit.py"]),
            "mirrored": Child([SCRIPTS / "distributed_fit.py"], {"DEVSWITCH_STRATEGY": "mirrored",
                                                                 "DEVSWITCH_CPU_REPLICAS": "2"})}


fits = children(_fits)


@pytest.mark.subprocess
def test_mirrored_over_two_logical_cpus_trains_like_one_device(fits):
    (single, _), (mirrored, _) = fits("single"), fits("mirrored")
    assert single.returncode == 0, single.stderr
    assert mirrored.returncode == 0, mirrored.stderr
    one, two = result_line(single.stdout), result_line(mirrored.stdout)
    assert one["replicas"] == 1 and two["replicas"] == 2
    assert two["strategy"] == "MirroredStrategy" and two["variable_type"] == "MirroredVariable"
    assert two["record_replicas"] == 2 and two["record_workers"] == 1
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-3)
    assert two["checksum"] == pytest.approx(one["checksum"], rel=1e-3)
    assert "strategy=mirrored (2 replicas, single machine)" in mirrored.stderr


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.subprocess
def test_multi_worker_with_two_local_workers_agrees_on_the_weights(tmp_path):
    import subprocess
    import sys

    from conftest import clean_environ

    workers = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    procs = []
    for index in range(2):
        env = clean_environ(HOME=str(tmp_path), PYTHONUNBUFFERED="1", DEVSWITCH_STRATEGY="multi_worker",
                            DEVSWITCH_WORKERS=workers, DEVSWITCH_WORKER_INDEX=str(index))
        env.pop("TF_CONFIG", None)
        procs.append(subprocess.Popen([sys.executable, str(SCRIPTS / "distributed_fit.py")], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=180))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    first, second = (result_line(out) for out, _ in outputs)
    assert first["multi_worker"] and second["multi_worker"]
    assert first["replicas"] == second["replicas"] == 2
    assert first["record_workers"] == 2
    assert first["checksum"] == pytest.approx(second["checksum"], rel=1e-6)
    assert first["losses"] == pytest.approx(second["losses"], rel=1e-5)
