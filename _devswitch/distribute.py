"""Distribution: which tf.distribute strategy, over which replicas and cluster — decided purely.

devswitch does not invent its own distribution: it chooses TensorFlow's
``MirroredStrategy`` or ``MultiWorkerMirroredStrategy`` from the same settings
as everything else. ``plan_strategy(config, plan, environ)`` validates the
cluster (``TF_CONFIG``, or the ``workers`` / ``worker_index`` settings that
devswitch turns into ``TF_CONFIG``) and says how many replicas will run, with
no TensorFlow involved; ``apply.py`` creates the strategy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from .config import Config
from .devices import Plan
from .errors import ConfigError
from .plans import StrategyPlan

TF_CONFIG = "TF_CONFIG"
_CLUSTER_HINT = (
    "set workers: [host1:port, host2:port] and worker_index: N (the same list on every machine), "
    'or TF_CONFIG=\'{"cluster": {"worker": ["host1:port", "host2:port"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)


def _local_devices(config: Config, plan: Plan) -> tuple[str, ...]:
    if plan.gpus:
        return tuple(f"/gpu:{i}" for i in range(len(plan.gpus)))  # the visible GPUs are renumbered from 0
    return tuple(f"/cpu:{i}" for i in range(max(1, config.cpu_replicas)))


def parse_tf_config(text: str) -> dict:
    """Validate TF_CONFIG; every problem names the field."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"not valid JSON: {error.msg} at character {error.pos}", where=TF_CONFIG, hint=_CLUSTER_HINT
        ) from None
    if not isinstance(data, dict):
        raise ConfigError("must be a JSON object with 'cluster' and 'task'", where=TF_CONFIG, hint=_CLUSTER_HINT)
    cluster = data.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError("field 'cluster' is missing or empty", where=TF_CONFIG, hint=_CLUSTER_HINT)
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise ConfigError(
                f"field 'cluster.{role}' must be a list of \"host:port\" strings", where=TF_CONFIG, hint=_CLUSTER_HINT
            )
    if not cluster.get("worker") and not cluster.get("chief"):
        raise ConfigError("field 'cluster' has no 'worker' (or 'chief') list", where=TF_CONFIG, hint=_CLUSTER_HINT)
    task = data.get("task")
    if not isinstance(task, dict):
        raise ConfigError(
            "field 'task' is missing: which member of the cluster is this process?",
            where=TF_CONFIG,
            hint='add "task": {"type": "worker", "index": N}',
        )
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise ConfigError(
            f"field 'task.type' is {task_type!r}, not one of the cluster's roles ({', '.join(cluster)})",
            where=TF_CONFIG,
            hint='use "type": "worker"',
        )
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise ConfigError(
            f"field 'task.index' is {index!r}, but cluster.{task_type} has {len(cluster[task_type])} address(es)",
            where=TF_CONFIG,
            hint=f"use an index from 0 to {len(cluster[task_type]) - 1}",
        )
    return data


def plan_strategy(config: Config, plan: Plan, environ: Mapping[str, str]) -> StrategyPlan:
    """Decide the strategy for ``config`` on the devices of ``plan``; raises ConfigError for a bad cluster."""
    name = config.strategy
    devices = _local_devices(config, plan)
    warnings: list[str] = []
    if config.cpu_replicas and plan.gpus:
        warnings.append(
            f"cpu_replicas={config.cpu_replicas} is ignored for replicas: GPUs are selected "
            f"({plan.device}), and each GPU is one replica"
        )
    if name == "none":
        if config.cpu_replicas > 1 and not plan.gpus:
            warnings.append(
                f"cpu_replicas={config.cpu_replicas} splits the CPU, but strategy=none uses one "
                "device; set strategy: mirrored to run that many replicas"
            )
        return StrategyPlan("none", devices[:1], warnings=tuple(warnings))
    if name == "mirrored":
        if len(devices) == 1:
            warnings.append(
                f"strategy=mirrored over one device ({devices[0]}) has a single replica; on a CPU-only "
                "machine set cpu_replicas: N to split the CPU"
            )
        return StrategyPlan("mirrored", devices, reason=f"{config['strategy'].location}", warnings=tuple(warnings))
    return _multi_worker(config, devices, environ, warnings)


def _multi_worker(
    config: Config, devices: tuple[str, ...], environ: Mapping[str, str], warnings: list[str]
) -> StrategyPlan:
    """multi_worker: the cluster comes from TF_CONFIG, or from our settings (turned into TF_CONFIG)."""
    where = config["strategy"].location
    if environ.get(TF_CONFIG, "").strip():
        if config.workers:
            warnings.append(
                f"both TF_CONFIG and workers ({config['workers'].location}) are set; TF_CONFIG wins, "
                "as TensorFlow reads it"
            )
        data = parse_tf_config(environ[TF_CONFIG])
        cluster, task = data["cluster"], data["task"]
        workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
        return StrategyPlan(
            "multi_worker",
            devices,
            workers,
            task["type"],
            task["index"],
            None,
            reason=f"{where}, cluster from TF_CONFIG",
            warnings=tuple(warnings),
        )
    if not config.workers:
        raise ConfigError("strategy=multi_worker needs a cluster, and none is set", where=where, hint=_CLUSTER_HINT)
    if config.worker_index >= len(config.workers):
        raise ConfigError(
            f"worker_index={config.worker_index} is out of range: workers lists {len(config.workers)} address(es)",
            where=config["worker_index"].location,
            hint=f"use an index from 0 to {len(config.workers) - 1} (this machine's position in workers)",
        )
    tf_config = json.dumps(
        {"cluster": {"worker": list(config.workers)}, "task": {"type": "worker", "index": config.worker_index}}
    )
    return StrategyPlan(
        "multi_worker",
        devices,
        len(config.workers),
        "worker",
        config.worker_index,
        tf_config,
        reason=f"{where}, cluster from {config['workers'].location}",
        warnings=tuple(warnings),
    )
