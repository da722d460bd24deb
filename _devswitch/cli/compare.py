"""``devswitch compare``: benchmark a model across devices and precisions, one process per configuration."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..errors import DevswitchError, UsageError
from .common import _items, _number

DEFAULT_ROUNDS = 6  # the fewest rounds whose paired speed-up interval reaches 95% coverage (1 - 2/2^6)


def compare_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "compare",
        help="benchmark a model across devices and precisions, one process per configuration",
        description="Run a backend x device x precision matrix (x the values of each --vary setting) and print "
        "the classic comparison table (img/s, W, img/s per W, speed-up), writing "
        "results.json/.csv/.md/.html/.png.",
    )
    parser.add_argument(
        "target",
        nargs="?",
        default=None,
        metavar="MODEL",
        help="a bundled model (alexnet, small_cnn, mlp), path.py[:function] "
        "(default function build_model) or module:function (default: alexnet)",
    )
    parser.add_argument(
        "--backends",
        default="",
        help="comma-separated Keras backends: tensorflow, jax, torch "
        "(default: the resolved backend, see devswitch info)",
    )
    parser.add_argument("--devices", default="cpu,gpu", help="comma-separated: cpu, gpu, gpu:N (default cpu,gpu)")
    parser.add_argument(
        "--precisions", default="fp32,half", help="comma-separated: fp32, fp16, bf16, half (default fp32,half)"
    )
    parser.add_argument("--batch-sizes", default="1,128", help="comma-separated (default 1,128)")
    parser.add_argument("--mode", default="inference", choices=["inference", "training"])
    parser.add_argument("--warmup", default="5", help="untimed iterations after the first call (default 5)")
    parser.add_argument("--iterations", default="20", help="timed iterations per batch size (default 20)")
    parser.add_argument("--min-time", default="0", help="keep timing for at least this many seconds (default 0)")
    parser.add_argument(
        "--rounds",
        default="",
        metavar="N",
        help="take the timed iterations in N rounds, the configurations taking turns (A B C A B "
        "C ...), so that a noisy neighbour slows every column alike and the speed-up gets an "
        "interval paired by round; all workers stay alive side by side (default: 6, or "
        "--iterations if fewer; 1: one configuration after another, one process at a time, "
        "for when memory is tight)",
    )
    parser.add_argument(
        "--accuracy-samples",
        default="32",
        metavar="N",
        help="compare every column's outputs with a strict float32 reference (the same weights, "
        "N seeded inputs; training: the loss after a few SGD steps); 0 skips it (default 32)",
    )
    parser.add_argument(
        "--max-error",
        default="",
        metavar="X",
        help="recommend only configurations whose maximum relative error against the reference "
        "(training: of the loss) is at most X, e.g. 1e-2; the others are named with the reason",
    )
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="one more axis: a setting and its values, each value a column beside every backend, "
        "device and precision, e.g. --vary xla=true,false --vary threads=1,2 (repeatable; "
        "settings that can vary: math, xla, threads, memory_growth, strategy, cpu_replicas)",
    )
    parser.add_argument(
        "--maths",
        default="",
        metavar="M1,M2",
        help="float32 math modes as columns: short for --vary math=M1,M2 (auto, ieee, tf32, bf16)",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="run a matrix of more than 32 configurations (refused without it, before anything runs)",
    )
    parser.add_argument(
        "--timeout",
        default="",
        metavar="SECONDS",
        help="the time limit of one configuration's worker (with rounds: of one turn; with --script: of one run "
        "of the script); a worker past it, or stopped by a signal, is ended with every process it started and "
        "its column fails with the reason (default 3600)",
    )
    parser.add_argument(
        "--baseline",
        default="cpu/fp32",
        help="column the speed-up is relative to: DEVICE/PRECISION (of the first backend) or "
        "BACKEND/DEVICE/PRECISION, then /KEY=VALUE for a varied setting (default cpu/fp32 and "
        "each varied setting's first value), e.g. cpu/fp32/xla=false",
    )
    parser.add_argument(
        "--out",
        default="",
        metavar="DIR",
        help="output folder, checked before anything runs (default: a new folder "
        "devswitch-results/<timestamp>, never overwritten); a DIR that already holds "
        "results is refused (rather than written to a new folder beside it) unless --force "
        "is given",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite the results already in --out (they are replaced after the first configuration finishes)",
    )
    parser.add_argument(
        "--save-profile",
        default=None,
        metavar="NAME",
        help="write the significantly fastest configuration at the largest batch size as profile "
        "NAME into the .devswitchrc the configuration comes from (the last file in "
        "DEVSWITCHRC, else the nearest project file, else a new ./.devswitchrc), adding to it "
        "without touching the rest; nothing is saved after an interrupted or incomplete run "
        "or without a significant winner; then run it with DEVSWITCH_PROFILE=NAME",
    )
    parser.add_argument(
        "--save-profile-anyway",
        action="store_true",
        help="with --save-profile: save the fastest measured configuration even when the run was "
        "interrupted or incomplete or its lead is not significant (the profile's comment "
        "says so)",
    )
    parser.add_argument(
        "--script",
        default=None,
        metavar="SCRIPT",
        help="compare the whole unmodified script (run as devswitch run runs it) instead of a MODEL; "
        "its own arguments after --: compare --script train.py [options] -- --epochs 3",
    )
    parser.add_argument(
        "-m",
        dest="script_module",
        default=None,
        metavar="MODULE",
        help="like --script, for a module run as python -m MODULE",
    )
    parser.add_argument(
        "--max-epochs",
        default="",
        metavar="N",
        help="with --script: every fit the script calls runs at most N epochs (labelled in its record)",
    )
    parser.add_argument(
        "--max-steps",
        default="",
        metavar="N",
        help="with --script: every epoch of every fit runs at most N steps (labelled in its record)",
    )
    parser.set_defaults(script_args=())
    parser.add_argument("--no-predict-baseline", action="store_true", help="skip the plain model.predict figure")
    parser.add_argument("--no-peak-probe", action="store_true", help="skip the matmul probe for fraction of peak")
    return parser


def options_from_args(args: argparse.Namespace):
    """Validate every option before anything runs; pure (the output folder is checked by prepare_output)."""
    import os

    from ..compare import Options
    from ..compare.axes import CONFIRM_ABOVE, parse_baseline, parse_vary
    from ..config import resolve
    from ..settings import BY_NAME, parse_device, parse_precision

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
    vary = parse_vary(args.vary, args.maths)
    if "multi_worker" in dict(vary).get("strategy", ()) and not (
        os.environ.get("TF_CONFIG") or resolve(os.environ, Path.home(), Path.cwd()).workers
    ):
        raise UsageError(
            "--vary strategy=multi_worker: a multi_worker column needs its cluster, and no 'workers' is set "
            "(nor TF_CONFIG); nothing was run",
            hint="set workers in ~/.devswitchrc or DEVSWITCH_WORKERS=host1:port,host2:port (or TF_CONFIG), "
            "or drop multi_worker from --vary strategy",
        )
    baseline = parse_baseline(args.baseline, chosen, devices, precisions, vary)
    iterations = _number("--iterations", args.iterations, int, 1)
    max_error = _number("--max-error", args.max_error, float, 0) if args.max_error.strip() else None
    accuracy_samples = _number("--accuracy-samples", args.accuracy_samples, int, 0)
    if max_error is not None and accuracy_samples == 0:
        raise UsageError(
            "--max-error needs the accuracy rows, and --accuracy-samples 0 turns them off",
            hint="drop --accuracy-samples 0",
        )
    if args.rounds.strip():
        rounds = _number("--rounds", args.rounds, int, 1)
        if rounds > iterations:
            raise UsageError(
                f"--rounds {rounds}: more rounds than --iterations ({iterations}); each round takes "
                "at least one timed iteration",
                hint=f"use --iterations {rounds} or more, or fewer rounds",
            )
    else:
        rounds = min(DEFAULT_ROUNDS, iterations)
    if rounds > 1 and "memory_growth" in dict(vary) and any(d != "cpu" for d in devices):
        # side by side, a memory_growth=false worker takes most of a GPU from the others: its column would lie
        raise UsageError(
            "--vary memory_growth on a GPU needs --rounds 1: with rounds every worker is alive at "
            "once, and one that preallocates the GPU starves the others",
            hint="add --rounds 1",
        )
    options = Options(
        args.target or "alexnet",
        chosen,
        devices,
        precisions,
        batches,
        args.mode,
        _number("--warmup", args.warmup, int, 0),
        iterations,
        _number("--min-time", args.min_time, float, 0),
        not args.no_predict_baseline,
        not args.no_peak_probe,
        baseline,
        args.out,
        force=args.force,
        rounds=rounds,
        accuracy_samples=accuracy_samples,
        max_error=max_error,
        vary=vary,
        **({"timeout": _number("--timeout", args.timeout, float, 1)} if args.timeout.strip() else {}),
    )
    if len(options.configurations) > CONFIRM_ABOVE and not args.yes:
        raise UsageError(
            f"this compare is {options.size()}: more than {CONFIRM_ABOVE} configurations; nothing was run",
            hint="pass --yes to run it all the same, or compare fewer values",
        )
    return options


def compare_command(args: argparse.Namespace) -> int:
    from ..compare import prepare_output, run_matrix, write_outputs
    from ..render.compare import render_markdown
    from ..render.escape import safe
    from ..worker import parse_target

    if args.script is not None or args.script_module is not None or args.script_args:
        from .compare_script import script_compare_command

        return script_compare_command(args)
    if args.max_epochs or args.max_steps:
        raise UsageError("--max-epochs and --max-steps cap the fits of a script", hint="add --script SCRIPT")
    options = options_from_args(args)
    parse_target(options.target)  # a bad MODEL is an error before any process starts
    if options.rounds > 1:  # every worker alive at once: refused before anything runs when they will not fit
        from ..compare.process import check_memory, first_workers

        check_memory(first_workers(options), options.target, options.rounds)  # a factory of the user's: measured
    profile_file = _profile_file(args)  # so is a profile that could not be saved
    output = prepare_output(options.out, options.force)  # so is an output folder that cannot take the results
    options = dataclasses.replace(options, out=str(output.path), command=("devswitch", *args.argv))

    live = _live_status() if sys.stderr.isatty() else None

    def progress(line: str) -> None:
        line = safe(line)  # a failed column's line is the script's or the factory's, escapes and all
        if live is not None and line.startswith("["):
            live.update(f"devswitch compare {line}")  # a live status line on a terminal
        print(line, file=sys.stderr, flush=True)

    def save_finished_rows(partial) -> None:
        try:
            write_outputs(partial, output.path, plot=False)
        except OSError as error:  # the rows stay in memory; the final write tries again
            progress(f"warning: could not write the finished rows to {output.path}: {error}")

    def terminate(signum, frame):
        raise KeyboardInterrupt  # SIGTERM (a CI time-out, `timeout`, kill): stop as for Ctrl-C

    import signal

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        if live is not None:
            live.start()
        results = run_matrix(options, progress, output.work, on_update=save_finished_rows)
    finally:
        if live is not None:
            live.stop()
        signal.signal(signal.SIGTERM, previous)
        output.close()
    notes = publish(results, output.path, render_markdown(results), write_outputs)
    if notes is None:
        return UsageError.exit_code  # not 1, the report gate's "regression": the files could not be written
    for note in notes:
        print(f"note: {safe(note)}", file=sys.stderr)
    print(
        f"devswitch: wrote results.json, results.csv, results.md, results.html"
        f"{'' if notes else ', results.png'} to {output.path}",
        file=sys.stderr,
    )
    return finish(results, args, profile_file)


def publish(results, folder: Path, table: str, write) -> list[str] | None:
    """Write the result files with ``write(results, folder)`` and print the table; None (after printing the
    table, and which file could not be written and why) when they could not be written: what was measured is
    then on the terminal at least (compare exits 2)."""
    try:
        notes = write(results, folder)
    except OSError as error:
        from ..render.escape import safe

        print(table)
        print(
            f"devswitch: error: could not write {safe(str(error.filename or folder))}: "
            f"{safe(error.strerror or str(error))}; the table above is what was measured",
            file=sys.stderr,
        )
        print("  hint: free some space (or choose another --out) and run compare again", file=sys.stderr)
        return None
    print(table)
    return notes or []


def finish(results, args: argparse.Namespace, profile_file: Path | None) -> int:
    """Save the profile if asked, then the exit code: 130 interrupted, 5 a column failed, 1 a due save failed."""
    from ..errors import RunError

    saved = True
    if profile_file is not None:
        saved = save_winner(results, args.save_profile, profile_file, anyway=args.save_profile_anyway)
    if results.interrupted:
        return 130
    failed = [c for c in results.cells if c.status.startswith("failed")]
    return RunError.exit_code if failed else 0 if saved else 1


def _live_status():
    """A rich status spinner on stderr (terminals only; logs and CI get the plain lines alone)."""
    from rich.console import Console

    return Console(stderr=True).status("devswitch compare: starting")


def _profile_file(args: argparse.Namespace) -> Path | None:
    """Where --save-profile will write, checked now (exit 2 before anything runs); None without it."""
    import os

    from .. import profiles
    from ..sources import find_files

    if args.save_profile is None:
        if args.save_profile_anyway:
            raise UsageError(
                "--save-profile-anyway saves nothing without --save-profile NAME", hint="add --save-profile NAME"
            )
        return None
    profiles.check_name(args.save_profile)
    home, cwd = Path.home(), Path.cwd()
    path = profiles.target(os.environ, home, cwd)
    profiles.check(path, args.save_profile, tuple(p for _, p in find_files(os.environ, home, cwd)))
    return path


def _at(results, largest: int) -> str:
    """Where the winner is picked: "at batch 128" (a factory), "for the run as a whole" (a script)."""
    return "for the run as a whole" if results.kind == "script" else f"at batch {largest}"


def _not_saved_because(results, pick, largest: int) -> list[str]:
    """Why the pick at the largest batch size is not a result to save: an empty list when it is one."""
    reasons = []
    if results.interrupted:
        reasons.append("the run was interrupted")
    missing = [c for c in results.cells if c.batch == largest and not c.ok and not c.status.startswith("unavailable")]
    if missing:
        shown = "; ".join(f"{results.column(c)}: {c.status}" for c in missing[:3])
        reasons.append(f"the run is incomplete {_at(results, largest)} ({shown}{'; ...' if len(missing) > 3 else ''})")
    elif not results.complete and not results.interrupted:
        reasons.append("the run is incomplete")
    if pick.runner_up is None:
        reasons.append(
            f"{results.column(pick.best)} is the only configuration measured {_at(results, largest)}: "
            "nothing to compare it with"
        )
    elif pick.significant is None:
        reasons.append(f"whether it beats {results.column(pick.runner_up)} is unknown (no intervals recorded)")
    elif not pick.significant:
        from ..compare.recommend import coverage_words

        paired = getattr(pick, "paired", None)  # a ratio paired by round, where the run had shared rounds
        why = (
            f"the {coverage_words(paired.coverage)} interval of its speed-up paired by round does not lie above 1"
            if paired is not None
            else f"their {coverage_words(pick.coverage)} intervals overlap"
        )
        reasons.append(f"it is not significantly faster than {results.column(pick.runner_up)} ({why})")
    return reasons


def save_winner(results, name: str, path: Path, anyway: bool = False) -> bool:
    """Write the significantly fastest configuration at the largest batch size as a profile, or say on stderr
    why nothing was saved; False only when saving was due and failed."""
    import os

    from .. import profiles
    from ..compare import recommend

    largest = max(results.batch_sizes)
    pick = next((p for p in recommend(results) if p.batch == largest), None)
    if pick is None:
        print(
            f"devswitch: profile '{name}' not saved: no configuration was measured {_at(results, largest)} "
            "(the largest)",
            file=sys.stderr,
        )
        return True
    if pick.best is None:
        print(
            f"devswitch: profile '{name}' not saved: no configuration measured {_at(results, largest)} (the largest) "
            "is within --max-error",
            file=sys.stderr,
        )
        return True
    column = results.column(pick.best)
    reasons = _not_saved_because(results, pick, largest)
    if reasons and not anyway:
        print(
            f"devswitch: profile '{name}' not saved: {'; '.join(reasons)}. The fastest measured "
            f"{_at(results, largest)} was {column}; pass --save-profile-anyway to save it all the same",
            file=sys.stderr,
        )
        return True
    settings = pick.switch(results.several_backends)
    rate = pick.best.throughput
    lead = "" if pick.ratio is None else f", {pick.ratio:.2f}x the next, {results.column(pick.runner_up)}"
    shown_rate = f"{1 / rate:,.2f} s wall" if results.kind == "script" else f"{rate:,.1f} {results.model.unit}/s"
    note = (
        f"devswitch compare {results.model.target}: {column}, the fastest {_at(results, largest)} ({shown_rate}"
        f"{lead})" + (f"; saved with --save-profile-anyway: {'; '.join(reasons)}" if reasons else "")
    )
    try:
        written = profiles.add(path, name, settings, note)
    except (OSError, DevswitchError) as error:
        print(f"devswitch: error: profile '{name}' not saved: {error}", file=sys.stderr)
        return False
    shown = str(path) if os.path.abspath(path) == str(written) else f"{path} (a link to {written})"
    why = (
        f"although {'; '.join(reasons)} (--save-profile-anyway)"
        if reasons
        else f"the fastest {_at(results, largest)}"
        + ("" if results.kind == "script" else ", the largest")
        + ", and significantly so"
    )
    print(
        f"devswitch: saved profile '{name}' ({', '.join(f'{k}={v}' for k, v in settings.items())}: {why}) to "
        f"{shown}; run it with DEVSWITCH_PROFILE={name} python train.py",
        file=sys.stderr,
    )
    return True
