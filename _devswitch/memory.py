"""Memory as devswitch measures and states it: sizes people write ("8GiB"), the memory a machine has
available, and the peak resident memory of this process while one piece of work runs (sampled, not
``ru_maxrss``, which is the peak of the whole process's life)."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass

from .errors import Invalid

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in a size as people write it: ``8GiB``, ``512 MiB``, ``2GB``, ``1048576``. Raises ValueError
    naming the units accepted (the caller says where the text came from)."""
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (expected a number with a unit such as 8GiB, 512MiB or 2GB)")
    size = float(match.group(1)) * _UNITS[unit]
    if size < 1:
        raise ValueError(f"not a size: {text!r} (it must be at least 1 byte)")
    return int(size)


def format_size(size: float | None) -> str:
    """``1.5 GiB``, ``312 MiB``, ``12 KiB``; ``-`` for None."""
    if size is None:
        return "-"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(size) >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size:.0f} B"


_FRACTION = re.compile(r"^(?:[0-9]{1,9}(?:\.[0-9]{0,17})?|\.[0-9]{1,17})$", re.ASCII)
_WHOLE_UNITS = (("TiB", 2**40), ("TB", 10**12), ("GiB", 2**30), ("GB", 10**9), ("MiB", 2**20), ("MB", 10**6))
LIMIT_EXPECTED = "none, a size with its unit (8GiB, 512MiB, 2GB) or a fraction above 0 and at most 1 (0.5, 50%)"
MAX_LIMIT = 2**50  # 1 PiB: far above any device


def parse_memory_limit(raw: object) -> str:
    """The memory_limit setting's parser: ``none``; a fraction (``0.5``, ``50%``, YAML's 0.5) as ``"0.5"``; a
    size (``8GiB``, parse_size) in the largest unit that writes it whole (``"8GiB"``, else ``"123B"``). A bare
    number above 1 is refused (bytes, or a percentage? a size says its unit), like a bool or anything else."""
    if type(raw).__name__ in ("bool", "bool_") or not isinstance(raw, (str, int, float, type(None))):
        raise Invalid(LIMIT_EXPECTED)
    text = "none" if raw is None else str(raw).strip()
    if text.lower() in ("none", "off", ""):
        return "none"
    number = text[:-1].strip() if text.endswith("%") else text
    if _FRACTION.match(number):
        fraction = float(number) / (100 if text.endswith("%") else 1)
        if not 0 < fraction <= 1:
            raise Invalid("a fraction above 0 and at most 1 (0.5, 50%): a bare number is a fraction; a size, a unit")
        return f"{fraction:g}"
    try:
        size = parse_size(text)
    except ValueError:
        raise Invalid(LIMIT_EXPECTED, "none" if text.lower() in ("non", "nan", "no", "null") else None) from None
    if size > MAX_LIMIT:
        raise Invalid(f"a size of at most 1PiB; {LIMIT_EXPECTED}")
    unit, scale = next(((u, s) for u, s in _WHOLE_UNITS if size % s == 0), ("B", 1))
    return f"{size // scale}{unit}"


def available_memory() -> int | None:
    """Bytes of memory the machine has available now (``MemAvailable`` of /proc/meminfo); None where it
    cannot be read (not Linux)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident memory now (``/proc/self/statm``); None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def release_free_memory() -> bool:
    """Hand the memory that C's allocator keeps after ``free`` back to the system (glibc's ``malloc_trim``),
    so that the resident level before a piece of work is what is in use, not what earlier work freed; False
    where there is no glibc. Later allocations fault their pages in again: call it before work, never
    inside what is timed."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c") if os.name == "posix" else None
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return False
    if trim is None:
        return False
    trim(0)
    return True


@dataclass
class RssPeak:
    """The resident memory before a piece of work and the highest sample while it ran."""

    before_bytes: int | None = None
    peak_bytes: int | None = None
    samples: int = 0

    @property
    def above_before_bytes(self) -> int | None:
        """The peak above the level before the work: what the work itself needed (never negative)."""
        if self.before_bytes is None or self.peak_bytes is None:
            return None
        return max(0, self.peak_bytes - self.before_bytes)


class RssSampler:
    """``with RssSampler() as peak: work()``; then ``peak.above_before_bytes``. A daemon thread samples
    ``resident_bytes()`` every ``interval_s`` while the block runs (and once at each end), so a short spike
    between samples can be missed: the figure is a lower bound, within one interval of the work's own."""

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.peak = RssPeak()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        now = resident_bytes()
        if now is not None:
            self.peak.samples += 1
            self.peak.peak_bytes = max(now, self.peak.peak_bytes or 0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> RssPeak:
        self.peak.before_bytes = resident_bytes()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="devswitch-rss", daemon=True)
        self._thread.start()
        return self.peak

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
