"""The ``devswitch`` command: one parser, and one ``<name>_parser`` / ``<name>_command`` pair per sub-command.

A command function takes the parsed arguments and returns an exit code; every
DevswitchError is printed as its message (no traceback) with its exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from . import __version__
from .config import Config, explicit_layer
from .errors import DevswitchError, UsageError
from .settings import SETTINGS


# --- switch options shared by commands: one flag per setting, from the declaration -------

def add_switch_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("switch options (highest precedence; same values as .devswitchrc)")
    for setting in SETTINGS:
        group.add_argument("--" + setting.name.replace("_", "-"), dest=setting.name, metavar="VALUE",
                           default=argparse.SUPPRESS, help=f"{setting.allowed} (default {setting.default!s})")


def explicit_from_args(args: argparse.Namespace):
    given = {s.name: getattr(args, s.name) for s in SETTINGS if hasattr(args, s.name)}
    return explicit_layer(given, {name: "--" + name.replace("_", "-") for name in given})


# --- info ----------------------------------------------------------------------------

def info_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("info", help="hardware, versions, the resolved configuration and why")
    parser.add_argument("--json", action="store_true", help="print one JSON object (schema in README)")
    add_switch_options(parser)
    return parser


def collect_info(config: Config, inventory) -> tuple[dict, int]:
    """Everything ``info`` shows, as data. Returns (data, exit code)."""
    from .devices import choose
    from .environment import versions

    data = {
        "schema_version": 1,
        "versions": versions(),
        "devices": {
            "cpu": {"model": inventory.cpu.model, "cores": inventory.cpu.cores,
                    "features": sorted(inventory.cpu.features), "native_bf16": inventory.cpu.native_bf16},
            "gpus": [dict(dataclasses.asdict(g), compute_capability=g.cc) for g in inventory.gpus],
        },
        "files": [f for f in config.files],
        "profiles": list(config.profiles),
        "config": config.to_dict(),
    }
    code = 0
    try:
        plan = choose(config, inventory)
        half = choose(Config({**config.values, "precision": dataclasses.replace(
            config["precision"], value="half")}), inventory)
        data["resolved"] = {
            "device": plan.device, "gpus": list(plan.gpus), "device_reason": plan.device_reason,
            "precision": plan.precision, "policy": plan.policy, "precision_reason": plan.precision_reason,
            "half": half.precision, "half_reason": half.precision_reason,
        }
        data["warnings"] = list(plan.warnings)
    except DevswitchError as error:
        data["resolved"] = {"error": str(error)}
        data["warnings"] = []
        code = error.exit_code
    return data, code


def render_info(data: dict) -> str:
    v, cpu = data["versions"], data["devices"]["cpu"]
    build = f"CUDA {v['cuda']}, cuDNN {v['cudnn']}" if v["cuda_build"] else "CPU-only build"
    lines = [
        f"devswitch {v['devswitch']}",
        f"versions   python {v['python']} | tensorflow {v['tensorflow']} ({build}) | keras {v['keras']} "
        f"| numpy {v['numpy']}",
        f"cpu        {cpu['model']} | {cpu['cores']} cores | {' '.join(cpu['features']) or 'no SIMD features read'}",
    ]
    gpus = data["devices"]["gpus"]
    if gpus:
        for g in gpus:
            mem = f", {g['memory_bytes'] / 2**30:.0f} GiB" if g.get("memory_bytes") else ""
            lines.append(f"gpu:{g['index']:<6} {g['name']} | compute capability {g['compute_capability']}{mem}")
    else:
        lines.append("gpus       none visible to TensorFlow")
    lines += ["", "configuration (files read: " + (", ".join(data["files"]) or "none") + ")"]
    rows = [("key", "value", "source", "location")]
    for key, entry in data["config"].items():
        value = entry["value"]
        if isinstance(value, dict):
            value = ":".join(str(x) for x in value.values())
        rows.append((key, str(value) if value != "" else "-", entry["source"], entry["location"]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
    lines += ["", "on this machine"]
    r = data["resolved"]
    if "error" in r:
        lines.append(f"  error: {r['error']}")
    else:
        lines.append(f"  device     {r['device']}  ({r['device_reason']})")
        lines.append(f"  precision  {r['precision']} = Keras policy {r['policy']}  ({r['precision_reason']})")
        lines.append(f"  half       would be {r['half']}  ({r['half_reason']})")
    for warning in data["warnings"]:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def info_command(args: argparse.Namespace) -> int:
    import os

    from .config import resolve
    from .devices import detect

    from .apply import native_log_filter, set_tf_log_level

    config = resolve(os.environ, Path.home(), Path.cwd(), explicit_from_args(args))
    set_tf_log_level(config)
    with native_log_filter(config):
        inventory = detect()
    data, code = collect_info(config, inventory)
    print(json.dumps(data, indent=2, default=str) if args.json else render_info(data))
    return code


# --- init ----------------------------------------------------------------------------

def init_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("init", help="write a commented .devswitchrc here (or in ~ with --user)")
    parser.add_argument("--user", action="store_true", help="write ~/.devswitchrc instead of ./.devswitchrc")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


def init_command(args: argparse.Namespace) -> int:
    from .docs import render_example

    target = (Path.home() if args.user else Path.cwd()) / ".devswitchrc"
    if target.exists() and not args.force:
        raise UsageError(f"{target} already exists; nothing was written",
                         hint="pass --force to overwrite it, or edit it by hand")
    target.write_text(render_example(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


# --- entry point -----------------------------------------------------------------------

COMMANDS = {"info": (info_parser, info_command), "init": (init_parser, init_command)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devswitch", description="One switch for device and precision in TensorFlow/Keras.")
    parser.add_argument("--version", action="version", version=f"devswitch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for make_parser, _ in COMMANDS.values():
        make_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command][1](args)
    except DevswitchError as error:
        print(f"devswitch: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("devswitch: interrupted", file=sys.stderr)
        return 130
