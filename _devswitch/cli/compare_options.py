"""The options of ``devswitch compare`` as one ``compare.Options``, whichever source gives the columns: a
factory (MODEL) or a whole script (``--script`` / ``-m``). Every option is checked before anything runs (exit 2).

The options that belong to one source only are parsed with ``default=None``: a value is a given option, None
is not given, and the resolved defaults below are applied after parsing (the only copy of them). So an
explicit ``--iterations 20`` with ``--script`` is refused, like ``--iterations 50``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .common import _items, _number

if TYPE_CHECKING:
    from ..compare import Options

DEFAULT_ROUNDS = 6  # the fewest rounds whose paired speed-up interval reaches 95% coverage (1 - 2/2^6)
DEFAULT_SCRIPT_ROUNDS = 1  # a script's run is long: one run per configuration unless --rounds says more

# The factory's benchmark options (the parser's "factory" group), each with its value when not given.
FACTORY_DEFAULTS: dict[str, str | bool | None] = {
    "batch_sizes": "1,128",
    "mode": "inference",
    "warmup": "5",
    "iterations": "20",
    "min_time": "0",
    "accuracy_samples": "32",
    "max_error": None,
    "no_predict_baseline": False,
    "no_peak_probe": False,
    "memory_budget": None,
}
# The script's own options (the parser's "script" group besides the workload): caps of the fits it calls.
SCRIPT_CAPS = ("max_epochs", "max_steps")


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def given(args: argparse.Namespace, names) -> list[str]:
    """The options among ``names`` that were given on the command line, as their flags."""
    return [flag(name) for name in names if getattr(args, name, None) is not None]


def factory_value(args: argparse.Namespace, name: str):
    """A factory option as given, or its resolved default."""
    value = getattr(args, name)
    return FACTORY_DEFAULTS[name] if value is None else value


def options_from_args(args: argparse.Namespace, script: str | None = None) -> Options:
    """Validate every option before anything runs; pure (the output folder is checked by prepare_output).

    ``script``: the script (or module) whose whole runs are the columns, one run per batch; None: a factory."""
    from ..compare import Options
    from ..compare.axes import CONFIRM_ABOVE, parse_baseline

    if script is None and given(args, SCRIPT_CAPS):
        raise UsageError("--max-epochs and --max-steps cap the fits of a script", hint="add --script SCRIPT")
    chosen, devices, precisions = _columns(args)
    batches, memory_budget = ((1,), None) if script is not None else _batch_sizes(args)  # a script's run: one sample
    vary = _vary(args)
    baseline = parse_baseline(args.baseline, chosen, devices, precisions, vary)
    iterations = _number("--iterations", factory_value(args, "iterations"), int, 1)
    max_error, accuracy_samples = _accuracy(args, script is not None)
    rounds = _rounds(args, iterations, script is not None)
    if script is None and rounds > 1 and "memory_growth" in dict(vary) and any(d != "cpu" for d in devices):
        # side by side, a memory_growth=false worker takes most of a GPU from the others: its column would lie
        raise UsageError(
            "--vary memory_growth on a GPU needs --rounds 1: with rounds every worker is alive at "
            "once, and one that preallocates the GPU starves the others",
            hint="add --rounds 1",
        )
    options = Options(
        script if script is not None else args.target or "alexnet",
        chosen,
        devices,
        precisions,
        batches,
        factory_value(args, "mode"),
        _number("--warmup", factory_value(args, "warmup"), int, 0),
        iterations,
        _number("--min-time", factory_value(args, "min_time"), float, 0),
        not factory_value(args, "no_predict_baseline"),
        not factory_value(args, "no_peak_probe"),
        baseline,
        args.out,
        force=args.force,
        rounds=rounds,
        accuracy_samples=accuracy_samples,
        max_error=max_error,
        vary=vary,
        memory_budget=memory_budget,
        min_speedup=_number("--min-speedup", args.min_speedup, float, 1),
        **({"timeout": _number("--timeout", args.timeout, float, 1)} if args.timeout.strip() else {}),
    )
    if len(options.configurations) > CONFIRM_ABOVE and not args.yes:
        raise UsageError(
            f"this compare is {options.size()}: more than {CONFIRM_ABOVE} configurations; nothing was run",
            hint="pass --yes to run it all the same, or compare fewer values",
        )
    return options


def _batch_sizes(args: argparse.Namespace) -> tuple[tuple[int, ...], int | None]:
    """--batch-sizes (numbers, or max / max,knee: each column's own batch, found in its worker) and
    --memory-budget (the finder's budget, in bytes; None when not given)."""
    from ..compare.options import FOUND_BATCHES, MAX_BATCH
    from ..memory import parse_size

    text = str(factory_value(args, "batch_sizes"))
    words = [part.strip() for part in text.split(",")]
    if any(word in FOUND_BATCHES for word in words):
        if words not in (["max"], ["max", "knee"]):
            raise UsageError(
                f"--batch-sizes: '{text}': max finds each column's own batch, with knee beside it, and takes no "
                "other batch size",
                hint="use --batch-sizes max or --batch-sizes max,knee, or only numbers (--batch-sizes 1,128)",
            )
        batches = tuple(FOUND_BATCHES[word] for word in words)
    else:
        batches = _items("--batch-sizes", text, lambda t: _number("--batch-sizes", t, int, 1))
    budget_text = args.memory_budget
    if budget_text is None:
        return batches, None
    if MAX_BATCH not in batches:
        raise UsageError(
            f"--memory-budget {budget_text}: the memory budget is the batch finder's, and no batch is to be found",
            hint="add --batch-sizes max (or max,knee)",
        )
    try:
        return batches, parse_size(budget_text)
    except ValueError as error:
        raise UsageError(f"--memory-budget: {error}", hint="e.g. --memory-budget 4GiB") from None


def _columns(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The backends (the one resolved here when none is given), the devices and the precisions compared."""
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
    return chosen, devices, _items("--precisions", args.precisions, parse_precision)


def _vary(args: argparse.Namespace) -> tuple:
    """The --vary axes (and --maths); a multi_worker column only where its cluster is set."""
    from ..compare.axes import parse_vary
    from ..config import resolve

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
    return vary


def _accuracy(args: argparse.Namespace, script: bool) -> tuple[float | None, int]:
    """--max-error (None: not given) and --accuracy-samples (0 for a script: no reference run)."""
    text = factory_value(args, "max_error")
    max_error = _number("--max-error", text, float, 0) if text and text.strip() else None
    accuracy_samples = 0 if script else _number("--accuracy-samples", factory_value(args, "accuracy_samples"), int, 0)
    if max_error is not None and accuracy_samples == 0:
        raise UsageError(
            "--max-error needs the accuracy rows, and --accuracy-samples 0 turns them off",
            hint="drop --accuracy-samples 0",
        )
    return max_error, accuracy_samples


def _rounds(args: argparse.Namespace, iterations: int, script: bool) -> int:
    """``--rounds`` as given, else its default: 6 (or --iterations if fewer) for a factory, 1 for a script."""
    if args.rounds is None:
        return DEFAULT_SCRIPT_ROUNDS if script else min(DEFAULT_ROUNDS, iterations)
    rounds = _number("--rounds", args.rounds, int, 1)
    if not script and rounds > iterations:
        raise UsageError(
            f"--rounds {rounds}: more rounds than --iterations ({iterations}); each round takes "
            "at least one timed iteration",
            hint=f"use --iterations {rounds} or more, or fewer rounds",
        )
    return rounds
