"""The axes of a compare matrix: which settings ``--vary`` takes (and why the others not), their values as text,
and the configurations in order: backends x devices x precisions x each varied setting's values."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

from ..errors import UsageError, quote
from ..settings import BY_NAME, NAMES, Invalid, Threads, closest
from .resultset import Configuration

# The settings a compare can put side by side as columns: each changes what a worker measures.
VARIABLE = ("math", "xla", "threads", "memory_growth", "strategy", "cpu_replicas", "deterministic")

# The others, and why a column of them would mean nothing.
REFUSED = {
    "backend": "use --backends (e.g. --backends tensorflow,jax)",
    "device": "use --devices (e.g. --devices cpu,gpu)",
    "precision": "use --precisions (e.g. --precisions fp32,half)",
    "fallback": "compare always runs with fallback: error, so that a GPU column never measures the CPU; a "
    "configuration that cannot run here is shown as unavailable",
    "report": "compare's workers write no timing report: their figures go to results.json",
    "batch_timing": "compare times its own call path, not Keras' fit/predict batches; measure what per-batch "
    "timing costs with devswitch run",
    "log_level": "it changes what the frameworks print, no figure",
    "memory_limit": "a cap changes what fits, not how fast: set it for every column (DEVSWITCH_MEMORY_LIMIT) and "
    "find each column's largest batch with --batch-sizes max",
    "workers": "a cluster is not a column: compare runs every configuration on this machine",
    "worker_index": "a cluster is not a column: compare runs every configuration on this machine",
    "seed": "every column already starts from the reference's weights on the same seeded input; a seed changes "
    "no figure compare measures (vary deterministic to see what reproducibility costs)",
    "profile": "name the settings themselves, e.g. --vary xla=true,false (devswitch info shows a profile's values)",
}

MAX_VARIED = 16  # settings varied in one compare
MAX_VALUES = 64  # values of one setting
MAX_VALUE_CHARS = 64  # a value as text (the longest real one, threads "1024:1024", has 9)
CONFIRM_ABOVE = 32  # configurations a compare runs without --yes
_VALUE = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_VALUE_CHARS}}}", re.ASCII)


def value_text(name: str, value: Any) -> str:
    """A setting's canonical value as the text a column, a profile and DEVSWITCH_FLAGS carry: true/false,
    threads "N" (or "INTRA:INTER" when the inter-op pool is set), numbers and names as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Threads):
        return str(value.intra) if value.inter == 0 else str(value)
    return str(value)


def canonical(name: str, raw: Any) -> str:
    """``raw`` checked by the setting's own parser, as its canonical text; Invalid when it is refused."""
    text = value_text(name, BY_NAME[name].parse(raw))
    if not _VALUE.fullmatch(text):  # every value of a variable setting is short and plain; this keeps it so
        raise Invalid(f"a value of at most {MAX_VALUE_CHARS} letters, digits, '_', '.', ':' or '-'")
    return text


def refusal(name: str) -> str | None:
    """Why ``name`` cannot be varied (None: it can)."""
    if name in VARIABLE:
        return None
    if name in REFUSED:
        return f"--vary {name}: {name} cannot be a column: {REFUSED[name]}"
    guess = closest(name, list(NAMES))
    return (
        f"--vary {quote(name)}: not a setting"
        + (f" (did you mean '{guess}'?)" if guess else "")
        + "; settings that can vary: "
        + ", ".join(VARIABLE)
    )


def parse_vary(items: Iterable[str], maths: str = "") -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``--vary KEY=V1,V2`` items (and ``--maths M1,M2``, the same as --vary math=M1,M2, last) -> ((key, (value
    text, ...)), ...) in the order given; UsageError (exit 2) naming the option, the key, the bad value and the
    allowed values for anything it cannot take."""
    out: dict[str, tuple[str, ...]] = {}
    given = [(item, "--vary") for item in items] + ([(f"math={maths}", "--maths")] if maths.strip() else [])
    for item, option in given:
        key, sep, values = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"{option} {quote(item)}: expected KEY=VALUE1,VALUE2", hint="e.g. --vary xla=true,false")
        why = refusal(key)
        if why:
            raise UsageError(why, hint="vary one of: " + ", ".join(VARIABLE))
        if key in out and option == "--maths":
            raise UsageError("--maths and --vary math=... both name the math modes", hint="give one of them")
        if option == "--maths":
            item = values  # its messages name --maths and what was given to it
        else:
            option = f"--vary {key}"
        if key in out:
            raise UsageError(f"{option}: given twice", hint=f"list every value once: --vary {key}=A,B,C")
        parts = [v.strip() for v in values.split(",")]
        if len(parts) > MAX_VALUES:
            raise UsageError(
                f"{option}: {len(parts)} values, more than {MAX_VALUES}", hint="compare fewer values at once"
            )
        texts = []
        for value in parts:
            if not value:
                raise UsageError(f"{option}: {quote(item)}: an empty value", hint=f"e.g. --vary {key}=A,B")
            try:
                texts.append(canonical(key, value))
            except Invalid as error:
                hint = f"did you mean '{error.suggestion}'? " if error.suggestion else ""
                raise UsageError(
                    f"{option}: {quote(value)} is not valid: expected {error.expected}",
                    hint=hint + f"{key} takes {BY_NAME[key].allowed}",
                ) from None
        twice = sorted({t for t in texts if texts.count(t) > 1})
        if twice:
            raise UsageError(
                f"{option}: {quote(item)}: the value {twice[0]} is given twice (as written, or as two spellings of it)",
                hint="list each value once",
            )
        out[key] = tuple(texts)
    if len(out) > MAX_VARIED:
        raise UsageError(
            f"--vary: {len(out)} settings varied, more than {MAX_VARIED}", hint="vary fewer settings at once"
        )
    return tuple(out.items())


def configurations(backends, devices, precisions, vary=()) -> list[Configuration]:
    """Every column, in order: backends x devices x precisions x each varied setting's values (the first
    --vary outermost)."""
    names = [name for name, _ in vary]
    combos = list(itertools.product(*(values for _, values in vary)))
    return [
        Configuration(b, d, p, tuple(zip(names, combo, strict=True)))
        for b in backends
        for d in devices
        for p in precisions
        for combo in combos
    ]


def parse_baseline(text: str, backends, devices, precisions, vary) -> Configuration:
    """``--baseline [BACKEND/]DEVICE/PRECISION[/KEY=VALUE...]``: a varied setting not named takes its first
    value; UsageError when it is not one of the columns."""
    from ..settings import parse_device, parse_precision

    parts = [p for p in text.split("/")]
    named = [p for p in parts if "=" in p]
    head = [p for p in parts if "=" not in p]
    backend = head.pop(0) if len(head) == 3 else backends[0]
    device, precision = (head + ["", ""])[:2] if len(head) == 2 else ("", "")
    try:
        device, precision = parse_device(device), parse_precision(precision)
    except Invalid:
        pass
    chosen = dict((name, values[0]) for name, values in vary)
    keys = [pair.partition("=")[0].strip().lower().replace("-", "_") for pair in named]
    twice = next((key for key in keys if keys.count(key) > 1), None)
    if twice is not None:  # the last would silently win
        given = ", ".join(pair.strip() for pair, key in zip(named, keys, strict=True) if key == twice)
        raise UsageError(
            f"--baseline {text}: {twice} is given twice ({given}); a baseline is one column",
            hint=f"name {twice} once, e.g. --baseline " + "/".join([*head, f"{twice}={chosen.get(twice, 'VALUE')}"]),
        )
    bad = None
    for pair in named:
        key, _, value = pair.partition("=")
        key = key.strip().lower().replace("-", "_")
        if key not in chosen:
            bad = f"{key} is not varied"
            break
        try:
            chosen[key] = canonical(key, value.strip())
        except Invalid:
            bad = f"{quote(value)} is not a value of {key}"
            break
        if chosen[key] not in dict(vary)[key]:
            bad = f"{key}={chosen[key]} is not one of the values varied ({','.join(dict(vary)[key])})"
            break
    if bad or backend not in backends or device not in devices or precision not in precisions:
        example = "/".join([devices[0], precisions[0], *(f"{k}={v[0]}" for k, v in vary)])
        raise UsageError(
            f"--baseline {text}: not one of the columns" + (f": {bad}" if bad else ""),
            hint="use DEVICE/PRECISION from --devices and --precisions (BACKEND/DEVICE/PRECISION with "
            "several --backends), then KEY=VALUE for a varied setting (default: its first value), "
            f"e.g. --baseline {example}",
        )
    return Configuration(backend, device, precision, tuple(chosen.items()))
