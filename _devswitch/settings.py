"""Every setting, declared once.

Validation, ``devswitch info``, the README reference table and
``.devswitchrc.example`` are all generated from ``SETTINGS`` below, so they cannot
drift apart (a test checks the committed files against this declaration).

A parser takes the raw value exactly as a source delivered it — a typed YAML
value from a file, or a string from an environment variable or a CLI flag — and
returns the canonical value, or raises ``Invalid``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import Invalid, char_name
from .memory import parse_memory_limit
from .plainvalues import _truth, _whole, closest, lookalike_note  # noqa: F401 - lookalike_note: config's


class Threads(NamedTuple):
    """Intra-op and inter-op thread-pool sizes; 0 leaves the choice to TensorFlow."""

    intra: int
    inter: int

    def __str__(self) -> str:
        return f"{self.intra}:{self.inter}"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[Any], Any]
    allowed: str
    doc: str
    example: str  # the value as written in YAML for the example file

    def __post_init__(self):
        # every value, from every source, is checked for hidden characters before its own parser sees it
        parser = self.parse

        @functools.wraps(parser)
        def parse(raw: Any) -> Any:
            check_clean(raw)
            return parser(raw)

        object.__setattr__(self, "parse", parse)

    @property
    def env(self) -> str:
        return "DEVSWITCH_" + self.name.upper()


# --- clean text ----------------------------------------------------------------
#
# A value names files, is shown in messages and reaches the terminal at exit; YAML's escapes
# ("\\e]0;x\\a", "\\0", "\\x85", "\\u2028") deliver any character the raw bytes could not. So every
# value is checked after parsing, whatever its source: no control character (C0, DEL, C1 with NEL), no
# line or paragraph separator (hidden line breaks) and no bidirectional override, isolate or mark (text
# that reads differently from what it is).

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
MAX_CHECKED = 10_000  # strings, lists and mappings walked in one value (a file's own bound is the same)
_ENDS = " \t\r\n"  # stripped by every parser: a block scalar's final newline is harmless


class Unclean(Invalid):
    """A value holding a character that would hide or change what is shown; ``problem`` says which, where."""

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(f"plain text, but it {problem}")


def check_clean(raw: Any) -> None:
    """Raise ``Unclean`` when a string in ``raw`` (nested lists, tuples and mappings too) holds an UNSAFE
    character; ASCII whitespace at either end of a string is left to the parsers, which strip it."""
    stack, walked = [(raw, "")], 0
    while stack:
        value, of = stack.pop()
        walked += 1
        if walked > MAX_CHECKED:
            raise Invalid(f"at most {MAX_CHECKED} values in one setting")
        if isinstance(value, str):
            core = value.strip(_ENDS)
            bad = UNSAFE.search(core)
            if bad:
                position = len(value) - len(value.lstrip(_ENDS)) + bad.start() + 1
                raise Unclean(f"holds {char_name(bad.group())} at position {position}{of}")
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f" of item {i + 1}{of}") for i, item in enumerate(value[: MAX_CHECKED + 1]))
        elif isinstance(value, dict):
            for i, (key, item) in enumerate(value.items()):
                if i > MAX_CHECKED:
                    break
                stack.extend(((key, f" of key {i + 1}{of}"), (item, f" of the value of key {i + 1}{of}")))


# --- parsers -----------------------------------------------------------------

_DEVICE_RE = re.compile(r"^(auto|cpu|gpu|cuda)(?::([0-9]+(?:,[0-9]+)*))?$", re.ASCII)
MAX_GPU_INDEX = 1023
MAX_DEVICES = 64  # GPUs in one list; the largest machines have 16


def parse_device(raw: Any) -> str:
    """``auto``, ``cpu``, ``gpu[:N[,M...]]``; Theano's ``cuda[:N]`` is another spelling of ``gpu``."""
    if not isinstance(raw, str):
        index = _whole(raw)
        suggestion = f"gpu:{index}" if index is not None and 0 <= index <= MAX_GPU_INDEX else None
        raise Invalid("a string: auto, cpu, gpu, gpu:N or gpu:N,M,...", suggestion)
    check_clean(raw)  # also called directly (compare's --devices)
    if raw.count(",") >= MAX_DEVICES:
        raise Invalid(f"at most {MAX_DEVICES} GPU indices, e.g. gpu:0,1")
    text = raw.strip().lower().replace(" ", "")
    match = _DEVICE_RE.match(text)
    if not match or (match.group(2) and match.group(1) not in ("gpu", "cuda")):
        head = text.split(":")[0]
        guess = closest(head, ["auto", "cpu", "gpu"])
        raise Invalid(
            "auto, cpu, gpu, gpu:N or gpu:N,M,... (N a GPU index 0, 1, ...; cuda is taken as gpu)",
            guess if guess and guess != head else None,
        )
    kind = "gpu" if match.group(1) == "cuda" else match.group(1)
    if match.group(2):
        if any(len(i) > 4 for i in match.group(2).split(",")):
            raise Invalid(f"GPU indices from 0 to {MAX_GPU_INDEX}")
        indices = [int(i) for i in match.group(2).split(",")]
        if max(indices) > MAX_GPU_INDEX:
            raise Invalid(f"GPU indices from 0 to {MAX_GPU_INDEX}")
        if len(set(indices)) != len(indices):
            raise Invalid("each GPU index at most once, e.g. gpu:0,1")
        return kind + ":" + ",".join(str(i) for i in indices)
    return kind


PRECISION_ALIASES = {
    "fp32": "fp32",
    "float32": "fp32",
    "fp16": "fp16",
    "mixed_float16": "fp16",
    "float16": "fp16",
    "bf16": "bf16",
    "mixed_bfloat16": "bf16",
    "bfloat16": "bf16",
    "half": "half",
}


def parse_precision(raw: Any) -> str:
    check_clean(raw)  # also called directly (compare's --precisions)
    if not isinstance(raw, str):
        raise Invalid("one of fp32, fp16, bf16, half (or float32, mixed_float16, mixed_bfloat16)")
    text = raw.strip().lower()
    if text not in PRECISION_ALIASES:
        raise Invalid(
            "one of fp32, fp16, bf16, half (or float32, mixed_float16, mixed_bfloat16)",
            closest(text, list(PRECISION_ALIASES)),
        )
    return PRECISION_ALIASES[text]


def choice(*options: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        text = raw.strip().lower() if isinstance(raw, str) else None
        if text not in options:
            raise Invalid("one of " + ", ".join(options), closest(raw, list(options)))
        return text

    return parse


# float32 math modes (maths.py decides what each does on a backend and device)
MATH_MODES = ("auto", "ieee", "tf32", "bf16")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_bool(raw: Any) -> bool:
    truth = _truth(raw)
    if truth is not None:
        return truth
    if _whole(raw) in (0, 1):  # YAML reads 1 and 0 as numbers; the message offers them
        return bool(_whole(raw))
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise Invalid("true or false (also yes/no, on/off, 1/0)")


def parse_xla(raw: Any) -> str | bool:
    """``auto`` leaves the choice to Keras (``jit_compile="auto"``); true/false force it."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return "auto"
    try:
        return parse_bool(raw)
    except Invalid:
        raise Invalid("auto, true or false (also yes/no, on/off, 1/0)") from None


def parse_deterministic(raw: Any) -> str | bool:
    """``auto`` (deterministic when a seed is set), true or false."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return "auto"
    try:
        return parse_bool(raw)
    except Invalid:
        expected = "auto, true or false (also yes/no, on/off, 1/0)"
        raise Invalid(expected, closest(raw, ["auto", "true", "false"])) from None


MAX_SEED = 2**32 - 1  # what NumPy's legacy seeding (np.random.seed, called by keras.utils.set_random_seed) takes


def parse_seed(raw: Any) -> int | None:
    """``none`` (no seeding), or a whole number from 0 to 2**32 - 1."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "")):
        return None
    expected = f"none or a whole number from 0 to {MAX_SEED}"
    if isinstance(raw, str):
        if not re.fullmatch(r"[0-9]{1,10}", raw.strip(), re.ASCII):
            raise Invalid(expected, closest(raw.strip().lower(), ["none"]))
        raw = int(raw.strip())
    number = _whole(raw)
    if number is None or not 0 <= number <= MAX_SEED:
        raise Invalid(expected)
    return number


_DIGITS = re.compile(r"^[0-9]{1,9}$", re.ASCII)  # ASCII digits only: "⁴".isdigit() is True, int("⁴") fails


def count(maximum: int) -> Callable[[Any], int]:
    """A parser for a whole number from 0 to ``maximum`` (an int, or a string of ASCII digits)."""
    expected = f"a whole number from 0 to {maximum}"

    def parse(raw: Any) -> int:
        if isinstance(raw, str):
            if not _DIGITS.match(raw.strip()):
                raise Invalid(expected)
            raw = int(raw.strip())
        number = _whole(raw)  # numpy integers are whole numbers; True is not
        if number is None or not 0 <= number <= maximum:
            raise Invalid(expected)
        return number

    return parse


MAX_THREADS = 1024  # per pool; far above any real machine, far below what makes TensorFlow hang
MAX_CPU_REPLICAS = 256
MAX_WORKER_INDEX = 65535
_threads_count = count(MAX_THREADS)


def parse_threads(raw: Any) -> Threads:
    expected = (
        f"N (intra-op threads), 'INTRA:INTER', or a mapping {{intra: N, inter: M}}; each from 0 to "
        f"{MAX_THREADS}, 0 = the framework's choice"
    )
    try:
        if isinstance(raw, dict):
            unknown = set(raw) - {"intra", "inter"}
            if unknown:
                raise Invalid(expected)
            return Threads(_threads_count(raw.get("intra", 0)), _threads_count(raw.get("inter", 0)))
        if isinstance(raw, str) and ":" in raw:
            intra, _, inter = raw.partition(":")
            return Threads(_threads_count(intra), _threads_count(inter))
        return Threads(_threads_count(raw), 0)
    except Invalid:
        raise Invalid(expected) from None


LOG_LEVELS = {"quiet": "3", "error": "2", "warning": "1", "info": "0", "debug": "0"}


def parse_report(raw: Any) -> str:
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() in ("off", "summary"):
            return text.lower()
        if text.lower().endswith((".json", ".jsonl")) and len(text) <= 4096:
            return text
    raise Invalid(
        "off, summary, or a path ending in .json or .jsonl (the summary, and one line per run appended there)",
        closest(raw, ["off", "summary"]),
    )


_ADDRESS_RE = re.compile(r"[A-Za-z0-9_.\-\[\]:]{1,253}:[0-9]{1,5}", re.ASCII)
MAX_WORKERS = 4096


def parse_workers(raw: Any) -> tuple[str, ...]:
    """Worker addresses ``host:port``, as a YAML list or a comma-separated string; empty = none."""
    expected = "host:port addresses, comma-separated or a YAML list, e.g. 10.0.0.1:12345,10.0.0.2:12345"
    if raw is None or raw == "":
        return ()
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",") if isinstance(raw, str) else None
    if items is None:
        raise Invalid(expected)
    if len(items) > MAX_WORKERS or not all(isinstance(item, str) for item in items):
        raise Invalid(expected)
    items = [item.strip() for item in items]
    if not all(_ADDRESS_RE.fullmatch(item) for item in items):
        raise Invalid(expected)
    if len(set(items)) != len(items):
        raise Invalid("each worker address at most once")
    return tuple(items)


PROFILE_NAME = re.compile(r"[A-Za-z0-9_.-]{0,64}", re.ASCII)


def parse_profile(raw: Any) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str) or not PROFILE_NAME.fullmatch(raw.strip()):
        raise Invalid("a profile name (letters, digits, '_', '-', '.'), defined under 'profiles:'")
    return raw.strip()


# --- the declaration -----------------------------------------------------------

from .backendnames import NAMES as BACKENDS  # noqa: E402 - every module of backends/ (imports nothing)

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "backend",
        "auto",
        choice("auto", *BACKENDS),
        ", ".join(("auto", *BACKENDS)),
        "The Keras backend. auto = what Keras itself would pick: KERAS_BACKEND, else the backend in "
        "keras.json ($KERAS_HOME or ~/.keras), else tensorflow. devswitch sets KERAS_BACKEND before Keras "
        'is imported; jax and torch are extras (pip install "devswitch[jax]").',
        "auto",
    ),
    Setting(
        "device",
        "auto",
        parse_device,
        "auto, cpu, gpu, gpu:N, gpu:N,M,... (cuda = gpu)",
        "Which device(s) Keras may use, on every backend. auto = all GPUs if there are any, else the CPU. "
        "Theano's spelling cuda, cuda:N is accepted as gpu, gpu:N.",
        "auto",
    ),
    Setting(
        "precision",
        "fp32",
        parse_precision,
        "fp32, fp16, bf16, half (aliases: float32, mixed_float16, mixed_bfloat16)",
        "The global Keras dtype policy. half = the fastest half precision this device really "
        "supports: bf16 on GPUs with compute capability >= 8.0 and on CPUs with AVX512-BF16/AMX, "
        "fp16 on compute capability 7.x, otherwise fp32.",
        "fp32",
    ),
    Setting(
        "math",
        "auto",
        choice(*MATH_MODES),
        ", ".join(MATH_MODES),
        "How float32 matmuls and convolutions compute inside (the Keras policy is unchanged). auto = the "
        "framework's own default, recorded (TensorFlow and JAX use TF32 on GPUs with compute capability "
        ">= 8.0; PyTorch full float32 matmuls, TF32 cuDNN convolutions); ieee = full float32 everywhere; "
        "tf32 = TF32 on GPUs with compute capability >= 8.0; bf16 = bf16 internal math where the kernels "
        "honour it (PyTorch oneDNN on AMX CPUs, JAX on GPUs >= 8.0). Where a mode has no effect, a warning "
        "says so and devswitch info shows what is in force.",
        "auto",
    ),
    Setting(
        "fallback",
        "cpu",
        choice("cpu", "error"),
        "cpu, error",
        "What happens when a GPU is asked for and none is usable: run on the CPU with a warning, "
        "or stop with an error.",
        "cpu",
    ),
    Setting(
        "memory_growth",
        True,
        parse_bool,
        "true, false",
        "Allocate GPU memory as needed instead of grabbing all of it at start-up.",
        "true",
    ),
    Setting(
        "memory_limit",
        "none",
        parse_memory_limit,
        "none, SIZE (8GiB, 512MiB, 2GB), FRACTION (0.5, or a percentage)",
        "A cap on the memory this process takes on each selected GPU, a size or a fraction of it, by the backend's "
        "own mechanism (TensorFlow: a logical device's memory_limit; JAX: XLA_CLIENT_MEM_FRACTION; PyTorch: "
        "set_per_process_memory_fraction). Nothing on a CPU (warned). none = no cap.",
        "none",
    ),
    Setting(
        "xla",
        "auto",
        parse_xla,
        "auto, true, false",
        'XLA compilation of Keras models: auto = Keras\' own jit_compile="auto" (devswitch passes '
        "nothing); true/false = jit_compile=True/False for every compile() that does not pass it itself.",
        "auto",
    ),
    Setting(
        "threads",
        Threads(0, 0),
        parse_threads,
        f"N, INTRA:INTER, {{intra: N, inter: M}} (0 to {MAX_THREADS} each)",
        "Thread pools: intra-op (inside one op) and inter-op (between ops), on TensorFlow and PyTorch; "
        "not applicable on JAX (flagged if set). 0 = the framework's choice.",
        "0",
    ),
    Setting(
        "log_level",
        "warning",
        choice(*LOG_LEVELS),
        ", ".join(LOG_LEVELS),
        "How much of the framework's own C++ start-up noise reaches the terminal "
        "(TF_CPP_MIN_LOG_LEVEL, read by TensorFlow and XLA); quiet also hides devswitch's one-line summary.",
        "warning",
    ),
    Setting(
        "report",
        "summary",
        parse_report,
        "off, summary, PATH.json, PATH.jsonl",
        "Timing report of fit/predict/evaluate: off, a summary table at exit, or the summary and "
        "this run appended to PATH as one JSON line (JSON Lines: each run with its own configuration "
        "and plan; files of devswitch 0.1 are still read).",
        "summary",
    ),
    Setting(
        "batch_timing",
        False,
        parse_bool,
        "true, false",
        "Also time every batch of fit/predict. Opt-in and labelled in the records: overriding Keras' "
        "batch hooks turns off its asynchronous dispatch, so it can slow down what it measures.",
        "false",
    ),
    Setting(
        "deterministic",
        "auto",
        parse_deterministic,
        "auto, true, false",
        "Deterministic ops, by each backend's own mechanism (TensorFlow: enable_op_determinism; PyTorch: "
        "use_deterministic_algorithms, CUBLAS_WORKSPACE_CONFIG=:4096:8 and cuDNN benchmark off; JAX: "
        "--xla_gpu_deterministic_ops=true in XLA_FLAGS). An op the backend cannot run deterministically raises "
        "an error there, and what a backend cannot guarantee is warned, never claimed. auto = true when seed is "
        "set, else the framework's default; false = the framework's default. Costs speed: compare it with "
        "--vary deterministic=true,false.",
        "auto",
    ),
    Setting(
        "seed",
        None,
        parse_seed,
        f"none, N from 0 to {MAX_SEED}",
        "Seed Python, NumPy and the backend's random generators (keras.utils.set_random_seed) when Keras is "
        "set up, so weights, dropout and shuffling repeat run to run (with deterministic ops: bit for bit). "
        "none = no seeding.",
        "none",
    ),
    Setting(
        "strategy",
        "none",
        choice("none", "mirrored", "multi_worker"),
        "none, mirrored, multi_worker",
        "Data parallelism for the whole script, from the backend's own engine: mirrored = all selected "
        "devices of this machine (TensorFlow: MirroredStrategy; JAX: keras.distribution.DataParallel); "
        "multi_worker = several machines (TensorFlow: MultiWorkerMirroredStrategy over TF_CONFIG or "
        "workers; JAX: keras.distribution.initialize). Refused on PyTorch, which Keras cannot distribute.",
        "none",
    ),
    Setting(
        "cpu_replicas",
        0,
        count(MAX_CPU_REPLICAS),
        f"N from 0 to {MAX_CPU_REPLICAS}",
        "Split the CPU into N devices (TensorFlow: logical CPUs; JAX: host devices through XLA_FLAGS), "
        "so mirrored runs N replicas on a CPU-only machine (0 = do not split).",
        "0",
    ),
    Setting(
        "workers",
        (),
        parse_workers,
        "host:port,host:port,...",
        "The cluster for multi_worker: every worker's address, the same list on every machine (TensorFlow: "
        "turned into TF_CONFIG unless that is set; JAX: the first address is the coordinator).",
        '""',
    ),
    Setting(
        "worker_index",
        0,
        count(MAX_WORKER_INDEX),
        f"N from 0 to {MAX_WORKER_INDEX}",
        "This machine's position in workers (0 is the chief).",
        "0",
    ),
    Setting(
        "profile",
        "",
        parse_profile,
        "a name defined under profiles:",
        "The named set of settings to apply (see profiles). Usually chosen with DEVSWITCH_PROFILE.",
        '""',
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
NAMES: tuple[str, ...] = tuple(BY_NAME)

PROFILES_KEY = "profiles"
PROFILES_DOC = (
    "Named sets of settings, e.g. profiles: {gpu: {device: gpu, precision: half}}; "
    "select one with DEVSWITCH_PROFILE=gpu (or profile: gpu). A profile's values apply "
    "at the level of the file that defines it."
)

# Environment variables that are not one-per-setting.
ENV_FLAGS = "DEVSWITCH_FLAGS"
ENV_RC = "DEVSWITCHRC"
ENV_DISABLE = "DEVSWITCH_DISABLE"
ENV_PREFIX = "DEVSWITCH_"
# Edits to the CPU features devswitch detects ("-AVX512-BF16,-AMX-BF16" hides native bf16, "+AVX512-BF16" claims
# it): a machine fact injected for testing the other branch of devswitch's own decisions, shown wherever the
# features are (devswitch info, results' environment, the reason of every bf16 decision). Read by devices.py.
ENV_CPU_FEATURES = "DEVSWITCH_CPU_FEATURES"
SPECIAL_ENV = (ENV_FLAGS, ENV_DISABLE, ENV_CPU_FEATURES)
