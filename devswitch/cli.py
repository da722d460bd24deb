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
from .settings import SETTINGS, Invalid


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


def collect_info(config: Config, inventory, versions: dict | None = None) -> tuple[dict, int]:
    """Everything ``info`` shows, as data. Returns (data, exit code). Pure given its arguments."""
    from . import backends
    from .devices import choose

    backend = backends.get(config.backend)
    data = {
        "schema_version": 2,
        "versions": versions or {},
        "backend": {"name": config.backend, "source": config["backend"].source,
                    "location": config["backend"].location,
                    "installed": {name: backends.missing_reason(name) or "installed" for name in backends.NAMES}},
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
        import os

        backend.refuse(config)
        plan = choose(config, inventory)
        half = choose(Config({**config.values, "precision": dataclasses.replace(
            config["precision"], value="half")}), inventory)
        strategy = backend.plan_distribution(config, plan, os.environ)
        data["resolved"] = {
            "backend": config.backend,
            "device": plan.device, "gpus": list(plan.gpus), "device_reason": plan.device_reason,
            "precision": plan.precision, "policy": plan.policy, "precision_reason": plan.precision_reason,
            "half": half.precision, "half_reason": half.precision_reason,
            "strategy": strategy.name, "replicas": strategy.replicas, "replica_devices": list(strategy.devices),
            "workers": strategy.workers, "role": strategy.role,
            "xla": config.xla, "meanings": backend.meanings(config, plan),
        }
        data["warnings"] = list(plan.warnings) + list(strategy.warnings) + list(backend.notices(config, plan))
    except DevswitchError as error:
        data["resolved"] = {"error": str(error)}
        data["warnings"] = []
        code = error.exit_code
    return data, code


def render_info(data: dict) -> str:
    v, cpu, b = data["versions"], data["devices"]["cpu"], data["backend"]
    framework = " | ".join(f"{k} {v[k]}" for k in ("tensorflow", "jax", "jaxlib", "torch") if v.get(k))
    if v.get("cuda_build") is not None:
        framework += f" ({'CUDA ' + str(v['cuda']) + ', cuDNN ' + str(v['cudnn']) if v['cuda_build'] else 'CPU-only build'})"
    lines = [
        f"devswitch {v.get('devswitch', '?')}",
        f"backend    {b['name']}  ({b['source']}: {b['location']})",
        f"versions   python {v.get('python')} | keras {v.get('keras')} | {framework or 'framework not loaded'} "
        f"| numpy {v.get('numpy')}",
        "backends   " + " | ".join(f"{name}: {state}" for name, state in b["installed"].items()),
        f"cpu        {cpu['model']} | {cpu['cores']} cores | {' '.join(cpu['features']) or 'no SIMD features read'}",
    ]
    gpus = data["devices"]["gpus"]
    if gpus:
        for g in gpus:
            mem = f", {g['memory_bytes'] / 2**30:.0f} GiB" if g.get("memory_bytes") else ""
            lines.append(f"gpu:{g['index']:<6} {g['name']} | compute capability {g['compute_capability']}{mem}")
    else:
        lines.append(f"gpus       none visible to {b['name']}")
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
    lines += ["", f"on this machine, with {b['name']}"]
    r = data["resolved"]
    if "error" in r:
        lines.append(f"  error: {r['error']}")
    else:
        lines.append(f"  device     {r['device']}  ({r['device_reason']})")
        lines.append(f"  precision  {r['precision']} = Keras policy {r['policy']}  ({r['precision_reason']})")
        lines.append(f"  half       would be {r['half']}  ({r['half_reason']})")
        lines.append(f"  strategy   {r['strategy']}: {r['replicas']} replica(s) on {', '.join(r['replica_devices'])}"
                     f" | {r['role']}")
        lines.append(f"  xla        {str(r['xla']).lower()}: {r['meanings']['xla']}")
        lines += ["", f"what each setting does on {b['name']}"]
        for key, meaning in r["meanings"].items():
            lines.append(f"  {key:<14} {meaning}")
    for warning in data["warnings"]:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def print_info_rich(data: dict) -> None:
    """``info`` on a terminal: the same content, the configuration as a rich table that fits the width."""
    from rich.console import Console
    from rich.table import Table

    text = render_info(data)
    head, _, rest = text.partition("\nconfiguration (files read:")
    config_title, _, tail = rest.partition("\n")
    after = tail.split("\n\non this machine", 1)
    console = Console()
    console.print(head, highlight=False, markup=False)
    table = Table(title="configuration (files read:" + config_title, title_justify="left", show_edge=False)
    for name in ("key", "value", "source", "location"):
        table.add_column(name, overflow="fold")
    for key, entry in data["config"].items():
        value = entry["value"]
        if isinstance(value, dict):
            value = ":".join(str(x) for x in value.values())
        table.add_row(key, str(value) if value != "" else "-", str(entry["source"]), str(entry["location"]))
    console.print()
    console.print(table)
    if len(after) == 2:
        console.print("\non this machine" + after[1], highlight=False, markup=False)


def info_command(args: argparse.Namespace) -> int:
    import os

    from . import backends
    from .config import resolve
    from .devices import Inventory, detect_cpu
    from .nativelog import native_log_filter

    config = resolve(os.environ, Path.home(), Path.cwd(), explicit_from_args(args))
    backend = backends.get(config.backend)
    versions, inventory = {}, Inventory(detect_cpu())
    if backends.installed(config.backend) and backends.keras_running() in (None, config.backend):
        # this process is devswitch itself: set what the framework reads at start-up, as the switch would
        from . import state

        for name, value in {"KERAS_BACKEND": config.backend, **backend.environment(config, os.environ)}.items():
            state.setenv(name, value)
        with native_log_filter(config.log_level, backend.LIBRARY):
            from .devices import detect
            from .environment import versions as library_versions

            inventory = detect(config.backend)
            versions = library_versions(config.backend)
    else:
        versions = {"devswitch": sys.modules["devswitch"].__version__}
    data, code = collect_info(config, inventory, versions)
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


# --- run -------------------------------------------------------------------------------

def run_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "run", help="run an unmodified Keras script under the switch",
        description="Run SCRIPT (or -m MODULE) with devswitch applied first, as 'python SCRIPT ARGS...' would. "
                    "Switch options go before the script; everything after it is the script's own.",
        usage="devswitch run [switch options] (SCRIPT | -m MODULE) [ARGS...]")
    add_switch_options(parser)
    parser.add_argument("-m", dest="module", action="store_true", help="run a module, like python -m")
    parser.add_argument("target", metavar="SCRIPT", help="the script (or module with -m) to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    return parser


def run_command(args: argparse.Namespace) -> int:
    from . import session
    from .launch import run_target

    if not args.module and not Path(args.target).is_file():
        raise UsageError(f"no such script: {args.target}",
                         hint="give the path of a Python file, or -m MODULE for a module")
    session.activate(explicit_from_args(args))
    return run_target(args.target, args.args, module=args.module)


# --- compare ---------------------------------------------------------------------------

def compare_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "compare", help="benchmark a model across devices and precisions, one process per configuration",
        description="Run a device x precision matrix and print the classic comparison table "
                    "(img/s, W, img/s per W, speed-up), writing results.json/.csv/.md/.png.")
    parser.add_argument("target", nargs="?", default="alexnet", metavar="MODEL",
                        help="a bundled model (alexnet, small_cnn, mlp), path.py[:function] "
                             "(default function build_model) or module:function (default: alexnet)")
    parser.add_argument("--backends", default="", help="comma-separated Keras backends: tensorflow, jax, torch "
                                                        "(default: the resolved backend, see devswitch info)")
    parser.add_argument("--devices", default="cpu,gpu", help="comma-separated: cpu, gpu, gpu:N (default cpu,gpu)")
    parser.add_argument("--precisions", default="fp32,half",
                        help="comma-separated: fp32, fp16, bf16, half (default fp32,half)")
    parser.add_argument("--batch-sizes", default="1,128", help="comma-separated (default 1,128)")
    parser.add_argument("--mode", default="inference", choices=["inference", "training"])
    parser.add_argument("--warmup", default="5", help="untimed iterations after the first call (default 5)")
    parser.add_argument("--iterations", default="20", help="timed iterations per batch size (default 20)")
    parser.add_argument("--min-time", default="0", help="keep timing for at least this many seconds (default 0)")
    parser.add_argument("--baseline", default="cpu/fp32",
                        help="column the speed-up is relative to: DEVICE/PRECISION (of the first backend) or "
                             "BACKEND/DEVICE/PRECISION (default cpu/fp32)")
    parser.add_argument("--out", default="", metavar="DIR",
                        help="output folder, checked before anything runs (default: a new folder "
                             "devswitch-results/<timestamp>, never overwritten); a DIR that already holds "
                             "results is refused (rather than written to a new folder beside it) unless --force "
                             "is given")
    parser.add_argument("--force", action="store_true",
                        help="overwrite the results already in --out (they are replaced after the first "
                             "configuration finishes)")
    parser.add_argument("--save-profile", default=None, metavar="NAME",
                        help="write the fastest configuration at the largest batch size as profile NAME into "
                             "./.devswitchrc (created, or added to without touching the rest); then run it "
                             "with DEVSWITCH_PROFILE=NAME")
    parser.add_argument("--no-predict-baseline", action="store_true", help="skip the plain model.predict figure")
    parser.add_argument("--no-peak-probe", action="store_true", help="skip the matmul probe for fraction of peak")
    return parser


def _number(option: str, text: str, kind=int, minimum=0):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise UsageError(f"{option}: '{text}' is not a {'whole ' if kind is int else ''}number >= {minimum}",
                         hint=f"e.g. {option} {max(minimum, 1)}")
    return value


def _items(option: str, text: str, parse) -> tuple:
    from .settings import Invalid

    items = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise UsageError(f"{option}: empty item in '{text}'", hint=f"e.g. {option} cpu,gpu")
        try:
            items.append(parse(item))
        except Invalid as error:
            hint = f"did you mean '{error.suggestion}'?" if error.suggestion else None
            raise UsageError(f"{option}: '{item}' is not valid: expected {error.expected}", hint=hint) from None
    if len(set(items)) != len(items):
        raise UsageError(f"{option}: '{text}' names an item twice", hint="list each once")
    return tuple(items)


def options_from_args(args: argparse.Namespace):
    """Validate every option before anything runs; pure (the output folder is checked by prepare_output)."""
    import os

    from .compare import Options
    from .config import resolve
    from .settings import BY_NAME, parse_device, parse_precision

    if args.backends.strip():
        chosen = _items("--backends", args.backends, BY_NAME["backend"].parse)
        if "auto" in chosen:
            raise UsageError("--backends: 'auto' is not a column", hint="name them: tensorflow,jax,torch")
    else:  # the backend the switch resolves to here (KERAS_BACKEND, keras.json, .devswitchrc, ...)
        chosen = (resolve(os.environ, Path.home(), Path.cwd()).backend,)
    devices = _items("--devices", args.devices, parse_device)
    if "auto" in devices:
        raise UsageError("--devices: 'auto' is not a column", hint="name the devices: cpu,gpu")
    precisions = _items("--precisions", args.precisions, parse_precision)
    batches = _items("--batch-sizes", args.batch_sizes, lambda t: _number("--batch-sizes", t, int, 1))
    parts = args.baseline.split("/")
    base_backend = parts.pop(0) if len(parts) == 3 else chosen[0]
    base_device, base_precision = (parts + [""])[:2] if len(parts) <= 2 else ("", "")
    try:
        base_device, base_precision = parse_device(base_device), parse_precision(base_precision)
    except Invalid:
        pass
    baseline = (base_backend, base_device, base_precision)
    if base_backend not in chosen or base_device not in devices or base_precision not in precisions:
        raise UsageError(f"--baseline {args.baseline}: not one of the columns", hint="use DEVICE/PRECISION from "
                         "--devices and --precisions (BACKEND/DEVICE/PRECISION with several --backends), e.g. "
                         f"--baseline {devices[0]}/{precisions[0]}")
    return Options(args.target, chosen, devices, precisions, batches, args.mode,
                   _number("--warmup", args.warmup, int, 0), _number("--iterations", args.iterations, int, 1),
                   _number("--min-time", args.min_time, float, 0), not args.no_predict_baseline,
                   not args.no_peak_probe, baseline, args.out, force=args.force)


def compare_command(args: argparse.Namespace) -> int:
    from .compare import prepare_output, render_markdown, run_matrix, write_outputs
    from .errors import RunError
    from .worker import parse_target

    options = options_from_args(args)
    parse_target(options.target)  # a bad MODEL is an error before any process starts
    from . import profiles
    from .sources import RC_NAME

    profile_file = Path.cwd() / RC_NAME
    if args.save_profile is not None:
        profiles.check(profile_file, args.save_profile)  # so is a profile that could not be saved
    output = prepare_output(options.out, options.force)  # so is an output folder that cannot take the results
    options = dataclasses.replace(options, out=str(output.path), command=("devswitch", *args.argv))

    live = _live_status() if sys.stderr.isatty() else None

    def progress(line: str) -> None:
        if live is not None and line.startswith("["):
            live.update(f"devswitch compare {line}")  # a live status line on a terminal
        print(line, file=sys.stderr, flush=True)

    def save_finished_rows(doc: dict) -> None:
        try:
            write_outputs(doc, output.path, plot=False)
        except OSError as error:  # the rows stay in memory; the final write tries again
            progress(f"warning: could not write the finished rows to {output.path}: {error}")

    def terminate(signum, frame):
        raise KeyboardInterrupt  # SIGTERM (a CI time-out, `timeout`, kill): stop as for Ctrl-C

    import signal

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        if live is not None:
            live.start()
        doc = run_matrix(options, progress, output.work, on_update=save_finished_rows)
    finally:
        if live is not None:
            live.stop()
        signal.signal(signal.SIGTERM, previous)
        output.close()
    table = render_markdown(doc)
    try:
        notes = write_outputs(doc, output.path)
    except OSError as error:
        print(table)
        print(f"devswitch: error: could not write the results to {output.path}: {error}; the table above is "
              "what was measured", file=sys.stderr)
        return 1
    print(table)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"devswitch: wrote results.json, results.csv, results.md, results.html"
          f"{'' if notes else ', results.png'} to {output.path}", file=sys.stderr)
    if args.save_profile is not None:
        save_winner(doc, args.save_profile, profile_file)
    if doc["interrupted"]:
        return 130
    failed = [c for c in doc["_cells"] if c.status.startswith("failed")]
    return RunError.exit_code if failed else 0


def _live_status():
    """A rich status spinner on stderr (terminals only; logs and CI get the plain lines alone)."""
    from rich.console import Console

    return Console(stderr=True).status("devswitch compare: starting")


def save_winner(doc: dict, name: str, path: Path) -> None:
    """Write the fastest configuration at the largest batch size as a profile (or say why not)."""
    from . import profiles
    from .compare import recommend

    picks = recommend(doc)
    if not picks:
        print(f"devswitch: error: no configuration was measured: profile '{name}' not saved", file=sys.stderr)
        return
    pick = picks[-1]  # the largest batch size: the throughput configuration
    settings = pick.switch(len(doc["options"].get("backends") or []) > 1)
    rate = pick.best.metric("throughput")
    note = (f"devswitch compare {doc['options']['target']}: fastest at batch {pick.batch} "
            f"({rate:,.1f} {doc['model']['unit']}/s"
            + ("" if pick.significant else ", not significantly faster than the next") + ")")
    try:
        profiles.add(path, name, settings, note)
    except (OSError, DevswitchError) as error:
        print(f"devswitch: error: profile '{name}' not saved to {path}: {error}", file=sys.stderr)
        return
    print(f"devswitch: saved profile '{name}' ({', '.join(f'{k}={v}' for k, v in settings.items())}) to {path}; "
          f"run it with DEVSWITCH_PROFILE={name} python train.py", file=sys.stderr)


# --- report -------------------------------------------------------------------------------

def report_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("report", help="show a compare result again, or compare two (A B) cell by cell",
                            description="One PATH (a results folder or results.json of compare, or a timing "
                                        "report file of report: PATH.jsonl): print it again, from the JSON alone. Two: B against A, cell by cell: the ratio of "
                                        "the median throughputs and whether the change is outside the noise "
                                        "(the 95%% intervals of the medians do not overlap).")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="results folder or results.json (one or two)")
    parser.add_argument("--fail-above", default=None, metavar="PCT",
                        help="with A B: exit 1 when a cell of B is more than PCT%% slower than A (a CI gate)")
    return parser


def report_command(args: argparse.Namespace) -> int:
    from .compare import compare_results, load_results, render_changes, render_markdown

    if len(args.paths) > 2:
        raise UsageError("report takes one PATH (show it) or two (A B: compare)", hint="devswitch report A B")
    fail_above = _number("--fail-above", args.fail_above, float, 0) if args.fail_above is not None else None
    if len(args.paths) == 1:
        if fail_above is not None:
            raise UsageError("--fail-above needs two result sets", hint="devswitch report A B --fail-above 10")
        path = Path(args.paths[0])
        if path.is_file() and path.suffix in (".jsonl", ".json") and path.name != "results.json":
            from .results import ReportError, read_report, render_report_runs

            try:  # a timing report of scripts (report: PATH.jsonl), in either format devswitch wrote
                print(render_report_runs(read_report(path)), end="")
                return 0
            except ReportError:
                pass  # perhaps a compare results.json under another name
            except OSError as error:
                raise UsageError(f"cannot read {path}: {error.strerror or error}", hint="check the path") from None
        print(render_markdown(load_results(args.paths[0])), end="")
        return 0
    a, b = (load_results(p) for p in args.paths)
    changes, alone = compare_results(a, b)
    if not changes:
        raise UsageError("A and B have no measured cell in common",
                         hint="compare results of the same model, devices, precisions and batch sizes")
    print(render_changes(a, b, changes, alone, fail_above), end="")
    slower = [c for c in changes if fail_above is not None and c.ratio < 1 - fail_above / 100]
    if slower:
        print(f"devswitch: {len(slower)} cell(s) more than {fail_above:g}% slower: "
              + ", ".join(c.label for c in slower), file=sys.stderr)
        return 1
    return 0


COMMANDS = {"info": (info_parser, info_command), "init": (init_parser, init_command),
            "run": (run_parser, run_command), "compare": (compare_parser, compare_command),
            "report": (report_parser, report_command)}


def command_index(argv: list[str]) -> int | None:
    """Where the sub-command is in ``argv``: the first token that is not an option (devswitch's own
    options, --version and --help, take no value). None when there is none."""
    for i, token in enumerate(argv):
        if token == "--":
            return i + 1 if i + 1 < len(argv) else None
        if not token.startswith("-"):
            return i
    return None


def _split_run(argv: list[str], start: int) -> list[str]:
    """Put a literal '--' before the script's own arguments so argparse leaves them alone.

    ``start`` is the index of the ``run`` sub-command in ``argv``."""
    i = start + 1
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return argv
        if token == "-m":
            return argv[:i + 2] + ["--"] + argv[i + 2:] if i + 2 <= len(argv) else argv
        if token.startswith("-"):
            i += 1 if "=" in token or token in ("-h", "--help") else 2
            continue
        return argv[:i + 1] + ["--"] + argv[i + 1:]
    return argv


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devswitch", description="One switch for device, precision and backend in Keras 3.")
    parser.add_argument("--version", action="version", version=f"devswitch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for make_parser, _ in COMMANDS.values():
        make_parser(sub)
    return parser


def parse_args(argv: list[str], parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse the command line; for ``run``, the script's own arguments are left to the script."""
    parser = parser or build_parser()
    at = command_index(argv)
    if at is not None and argv[at] == "run":
        argv = _split_run(argv, at)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv, parser)
    args.argv = tuple(argv)  # the command line as given, for the records (plain data, not sys.argv)
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
