"""``devswitch info``: hardware, versions, the resolved configuration and why."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .._version import __version__
from ..config import Config
from ..errors import DevswitchError
from ..render import terminal, text
from ..render.table import Column, Table
from .common import add_switch_options, explicit_from_args

if TYPE_CHECKING:
    from ..decide import Decision


def info_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("info", help="hardware, versions, the resolved configuration and why")
    parser.add_argument("--json", action="store_true", help="print one JSON object (schema in README)")
    add_switch_options(parser)
    return parser


def last_compare(folder: Path) -> dict | None:
    """What the newest ``devswitch compare`` under ``folder/devswitch-results`` measured at its largest batch
    size: each column's speed-up and error against the reference (None when there is none to read)."""
    from ..compare import DEFAULT_ROOT, read
    from ..errors import DevswitchError

    found = sorted(Path(folder, DEFAULT_ROOT).glob("*/results.json"), key=lambda p: p.stat().st_mtime)[-1:]
    if not found:
        return None
    found = [found[0].relative_to(folder)] if found[0].is_relative_to(folder) else found
    try:
        results = read(Path(folder, found[0]))
    except DevswitchError as error:
        return {"path": str(found[0]), "error": error.message}
    batch = max(results.batch_sizes)
    columns = [
        {"column": results.column(c), "speedup": results.speedup(c), "max_rel_error": c.error()}
        for c in results.cells
        if c.batch == batch and c.ok
    ]
    return {"path": str(found[0]), "model": results.model.title, "batch": batch, "columns": columns}


def collect_info(
    config: Config,
    inventory,
    versions: dict | None = None,
    environ: Mapping[str, str] | None = None,
    measured: dict | None = None,
) -> tuple[dict, int]:
    """Everything ``info`` shows, as data. Returns (data, exit code). Pure given its arguments: the decision
    is ``decide()``'s, the same that ``import devswitch``, the compare worker and ``%devswitch`` apply."""
    import os

    from .. import backends
    from ..decide import decide

    backend = backends.get(config.backend)
    data = {
        "schema_version": 2,
        "versions": versions or {},
        "backend": {
            "name": config.backend,
            "source": config["backend"].source,
            "location": config["backend"].location,
            "installed": {name: backends.missing_reason(name) or "installed" for name in backends.NAMES},
        },
        "devices": _devices(inventory),
        "files": [f for f in config.files],
        "profiles": list(config.profiles),
        "config": config.to_dict(),
        "measured": measured,
    }
    code = 0
    try:
        env = os.environ if environ is None else environ
        decision = decide(config, inventory, env)
        data["resolved"] = _resolved(config, backend, decision, inventory, env)
        data["warnings"] = list(decision.warnings)
    except DevswitchError as error:
        data["resolved"] = {"error": str(error)}
        data["warnings"] = []
        code = error.exit_code
    return data, code


def _devices(inventory) -> dict:
    return {
        "cpu": {
            "model": inventory.cpu.model,
            "cores": inventory.cpu.cores,
            "features": sorted(inventory.cpu.features),
            "native_bf16": inventory.cpu.native_bf16,
            "feature_edits": list(inventory.cpu.edits),
        },
        "gpus": [dict(dataclasses.asdict(g), compute_capability=g.cc) for g in inventory.gpus],
    }


def _resolved(config: Config, backend, decision: Decision, inventory, environ: Mapping[str, str]) -> dict:
    """What ``decide()`` chose and why: device, precision, math, strategy, and what they mean on this backend."""
    from ..maths import modes_here

    plan, strategy = decision.plan, decision.strategy
    return {
        "backend": config.backend,
        "device": plan.device,
        "gpus": list(plan.gpus),
        "device_reason": plan.device_reason,
        "precision": plan.precision,
        "policy": plan.policy,
        "precision_reason": plan.precision_reason,
        "half": decision.half[0],
        "half_reason": decision.half[1],
        "math": plan.math,
        "math_in_force": decision.maths.in_force,
        "math_reason": decision.maths.reason,
        "math_modes": modes_here(backend, inventory, plan.gpus, environ),
        "strategy": strategy.name,
        "replicas": strategy.replicas,
        "replica_devices": list(strategy.devices),
        "workers": strategy.workers,
        "role": strategy.role,
        "xla": config.xla,
        "meanings": backend.meanings(config, plan),
    }


def _head_lines(data: dict) -> list[str]:
    v, cpu, b = data["versions"], data["devices"]["cpu"], data["backend"]
    framework = " | ".join(f"{k} {v[k]}" for k in ("tensorflow", "jax", "jaxlib", "torch") if v.get(k))
    if v.get("cuda_build") is not None:
        framework += (
            f" ({'CUDA ' + str(v['cuda']) + ', cuDNN ' + str(v['cudnn']) if v['cuda_build'] else 'CPU-only build'})"
        )
    lines = [
        f"devswitch {v.get('devswitch', '?')}",
        f"backend    {b['name']}  ({b['source']}: {b['location']})",
        f"versions   python {v.get('python')} | keras {v.get('keras')} | {framework or 'framework not loaded'} "
        f"| numpy {v.get('numpy')}",
        "backends   " + " | ".join(f"{name}: {state}" for name, state in b["installed"].items()),
        f"cpu        {cpu['model']} | {cpu['cores']} cores | {' '.join(cpu['features']) or 'no SIMD features read'}"
        + (
            f" (edited by DEVSWITCH_CPU_FEATURES: {','.join(cpu['feature_edits'])})" if cpu.get("feature_edits") else ""
        ),
    ]
    gpus = data["devices"]["gpus"]
    if gpus:
        for g in gpus:
            mem = f", {g['memory_bytes'] / 2**30:.0f} GiB" if g.get("memory_bytes") else ""
            lines.append(f"gpu:{g['index']:<6} {g['name']} | compute capability {g['compute_capability']}{mem}")
    else:
        lines.append(f"gpus       none visible to {b['name']}")
    return lines


def config_table(data: dict) -> Table:
    """The resolved configuration: each setting's value, and where it came from (the location may be
    dropped on a narrow terminal, and the table says so)."""
    rows = []
    for key, entry in data["config"].items():
        value = entry["value"]
        if isinstance(value, dict):
            value = ":".join(str(x) for x in value.values())
        rows.append((key, str(value) if value != "" else "-", entry["source"], entry["location"]))
    return Table.of(
        (Column("key"), Column("value"), Column("source"), Column("location", optional=True)),
        rows,
        title="configuration (files read: " + (", ".join(data["files"]) or "none") + ")",
    )


def _tail_lines(data: dict) -> list[str]:
    b, r = data["backend"], data["resolved"]
    lines = [f"on this machine, with {b['name']}"]
    if "error" in r:
        lines.append(f"  error: {r['error']}")
    else:
        lines.append(f"  device     {r['device']}  ({r['device_reason']})")
        lines.append(f"  precision  {r['precision']} = Keras policy {r['policy']}  ({r['precision_reason']})")
        lines.append(f"  half       would be {r['half']}  ({r['half_reason']})")
        lines.append(f"  math       {r['math']}  ({r['math_reason']})")
        for mode, effect in r["math_modes"].items():
            lines.append(f"    math={mode:<5} {effect}")
        lines.append(
            f"  strategy   {r['strategy']}: {r['replicas']} replica(s) on {', '.join(r['replica_devices'])}"
            f" | {r['role']}"
        )
        lines.append(f"  xla        {str(r['xla']).lower()}: {r['meanings']['xla']}")
        lines += ["", f"what each setting does on {b['name']}"]
        for key, meaning in r["meanings"].items():
            lines.append(f"  {key:<14} {meaning}")
    for warning in data["warnings"]:
        lines.append(f"  warning: {warning}")
    lines += _measured_lines(data.get("measured"))
    return lines


def _measured_lines(measured: dict | None) -> list[str]:
    """What each choice cost and bought here, from the last compare (never a figure it did not measure)."""
    if not measured:
        return [
            "",
            "measured   nothing here yet: `devswitch compare` measures each choice's speed and its error "
            "against a strict float32 reference",
        ]
    if "error" in measured:
        return ["", f"measured   cannot read {measured['path']}: {measured['error']}"]
    lines = [
        "",
        f"measured   by the last compare here ({measured['path']}: {measured['model']}, batch "
        f"{measured['batch']}), against its baseline and a strict float32 reference",
    ]
    for col in measured["columns"]:
        error = col["max_rel_error"]
        shown = "not measured" if error is None else "not finite" if error == float("inf") else f"{error:.1e}"
        speed = "-" if col["speedup"] is None else f"{col['speedup']:.2f}x"
        lines.append(f"  {col['column']:<28} {speed:>7}  max rel. error {shown}")
    return lines


def render_info(data: dict, width: int | None = None) -> str:
    """``info`` as plain text: the facts, the configuration table (fitted to ``width`` when given), the
    resolution on this machine."""
    return "\n".join([*_head_lines(data), "", text.render(config_table(data), width), "", *_tail_lines(data)])


def print_info_rich(data: dict, console=None) -> None:
    """``info`` on a terminal: the same content, the configuration as a rich table that fits the width."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    for line in _head_lines(data):
        console.print(Text(line))
    console.print()
    terminal.print_table(config_table(data), console)
    console.print()
    for line in _tail_lines(data):
        console.print(Text(line))


def info_command(args: argparse.Namespace) -> int:
    import os

    from .. import backends
    from ..config import resolve
    from ..devices import Inventory, detect_cpu
    from ..nativelog import native_log_filter

    config = resolve(os.environ, Path.home(), Path.cwd(), explicit_from_args(args))
    backend = backends.get(config.backend)
    versions, inventory = {}, Inventory(detect_cpu())
    if backends.installed(config.backend) and backends.keras_running() in (None, config.backend):
        # this process is devswitch itself: set what the framework reads at start-up, as the switch would
        from .. import state

        for name, value in {"KERAS_BACKEND": config.backend, **backend.environment(config, os.environ)}.items():
            state.setenv(name, value)
        with native_log_filter(config.log_level, backend.LIBRARY):
            from ..environment import versions as library_versions

            inventory = backends.detect(config.backend)
            versions = library_versions(config.backend)
    else:
        versions = {"devswitch": __version__}
    data, code = collect_info(config, inventory, versions, measured=last_compare(Path.cwd()))
    reason = backends.missing_reason(config.backend)
    if reason and "error" not in data["resolved"]:
        data["resolved"] = {"error": f"backend={config.backend} ({config['backend'].location}): {reason}"}
        code = 2
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    elif sys.stdout.isatty():
        print_info_rich(data)
    else:
        print(render_info(data))
    return code
