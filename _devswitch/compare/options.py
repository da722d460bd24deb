"""What a compare run is asked (``Options``) and where its results go (``Output``), checked before anything runs."""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .axes import configurations
from .resultset import Configuration

RESULT_FILES = ("results.json", "results.csv", "results.md", "results.png", "results.html")
WORK_PREFIX = ".devswitch-work-"  # + this process's pid: the workers' spec, events and log files
DEFAULT_ROOT = "devswitch-results"
PROBE_BYTES = 64 << 10  # written and removed before anything runs: the folder takes files of some size
# --batch-sizes max[,knee]: each column's own batch, found in its worker (batchfinder.py); these stand for them
# among the batch sizes (a cell's batch), and its record says the batch it ran at
MAX_BATCH, KNEE_BATCH = 0, -1
FOUND_BATCHES = {"max": MAX_BATCH, "knee": KNEE_BATCH}
FOUND_NAMES = {number: name for name, number in FOUND_BATCHES.items()}


def batch_label(batch: int) -> str:
    """ "batch 128", or for a found batch "max batch" / "knee batch" (each column has its own)."""
    return f"{FOUND_NAMES[batch]} batch" if batch in FOUND_NAMES else f"batch {batch}"


@dataclass(frozen=True)
class Options:
    target: str = "alexnet"
    backends: tuple[str, ...] = ("tensorflow",)
    devices: tuple[str, ...] = ("cpu", "gpu")
    precisions: tuple[str, ...] = ("fp32", "half")
    batch_sizes: tuple[int, ...] = (1, 128)
    mode: str = "inference"
    warmup: int = 5
    iterations: int = 20
    min_time: float = 0.0
    predict_baseline: bool = True
    peak_probe: bool = True
    baseline: Configuration = Configuration("tensorflow", "cpu", "fp32")  # a plain 3-tuple is taken too
    out: str = ""  # "" = a new folder devswitch-results/<timestamp>
    timeout: float = 3600.0  # seconds for one configuration (with rounds: for one turn)
    force: bool = False  # overwrite results already in --out
    command: tuple[str, ...] = ()  # the command line, recorded in results.json (plain data)
    rounds: int = 1  # > 1: workers kept warm take turns, each round a share of the samples
    accuracy_samples: int = 32  # the strict float32 reference's seeded input (0: no accuracy rows)
    max_error: float | None = None  # the recommendation considers only cells within this error
    vary: tuple = ()  # ((setting, (value text, ...)), ...): more axes, after the precisions
    memory_budget: int | None = None  # --batch-sizes max: the finder's budget in bytes (None: its default)
    min_speedup: float = 1.05  # the least speed-up that moves the recommendation off the baseline (decision.py)
    round_records: bool = False  # devswitch tune: each worker emits its records so far after every round

    def __post_init__(self):
        base = Configuration.of(self.baseline)  # a varied setting it does not name: its first value
        settings = {**{name: values[0] for name, values in self.vary}, **dict(base.settings)}
        object.__setattr__(self, "baseline", base._replace(settings=tuple(settings.items())))

    @property
    def configurations(self) -> list[Configuration]:
        """Every column, in order: backends x devices x precisions x each varied setting's values."""
        return configurations(self.backends, self.devices, self.precisions, self.vary)

    def size(self) -> str:
        """ "4 configurations (1 device x 1 precision x xla 2 x threads 2) x 1 batch size (4) = 4 cells"."""
        axes = [(len(self.backends), "backend"), (len(self.devices), "device"), (len(self.precisions), "precision")]
        parts = [f"{n} {word}{'s' if n > 1 else ''}" for n, word in axes if n > 1 or word != "backend"]
        parts += [f"{name} {len(values)}" for name, values in self.vary]
        configs, batches = len(self.configurations), len(self.batch_sizes)
        return (
            f"{configs} configuration{'s' if configs != 1 else ''} ({' x '.join(parts)}) x {batches} batch "
            f"size{'s' if batches != 1 else ''} ({','.join(FOUND_NAMES.get(b, str(b)) for b in self.batch_sizes)}) = "
            f"{configs * batches} cells"
        )


@dataclass(frozen=True)
class Output:
    """Where the results go, checked before anything runs, and the workers' scratch folder inside it."""

    path: Path
    work: Path

    def close(self) -> None:
        """Remove the scratch folder (a killed compare leaves it, with the workers' logs, beside its rows), or
        what a script put in its place (a file, a link: removed, not followed)."""
        if self.work.is_symlink() or (self.work.exists() and not self.work.is_dir()):
            try:
                self.work.unlink()
            except OSError:
                pass
            return
        shutil.rmtree(self.work, ignore_errors=True)


def prepare_output(out: str, force: bool = False, now: float | None = None) -> Output:
    """Check and create the output folder before any worker starts; UsageError when results could not go there.

    ``out`` = "" is the default, a new folder ``devswitch-results/<timestamp>`` (``-2``, ``-3``, ... when
    that name is taken): it never overwrites. An explicit folder that already holds results is refused
    unless ``force``: a script that reads OUT/results.json afterwards must not find older results there.
    """
    if not out:
        path = _new_default_folder(Path(DEFAULT_ROOT), time.localtime(now))
    else:
        path = Path(out)
        if (path.exists() or path.is_symlink()) and not path.is_dir():
            raise UsageError(
                f"--out {out}: exists and is not a folder; nothing was run",
                hint="give a folder (new or existing) to hold results.json/.csv/.md/.png",
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(
                f"--out {out}: cannot create this folder: {error.strerror or error}; nothing was run",
                hint="choose another --out",
            ) from None
        present = [name for name in RESULT_FILES if (path / name).exists() or (path / name).is_symlink()]
        odd = [name for name in present if not (path / name).is_file() or (path / name).is_symlink()]
        if odd:
            raise UsageError(
                f"--out {out}: {path / odd[0]} is not a regular file; nothing was run",
                hint="move it away, or choose another --out",
            )
        if present and not force:
            raise UsageError(
                f"--out {out}: the folder {path} already holds results ({', '.join(present)}); nothing was run",
                hint="pass --force to overwrite them, or choose another --out",
            )
    _remove_stale_work(path)
    work = path / f"{WORK_PREFIX}{os.getpid()}"
    try:
        work.mkdir()
        probe = work / "probe"
        # a folder we can create in, on a file system that takes writes: 64 KiB of them (a 0-byte file passes
        # on a full disk or past a quota, and the first spec written would then fail with a traceback)
        with open(probe, "wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as error:
        shutil.rmtree(work, ignore_errors=True)
        full = error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        raise UsageError(
            f"--out {out or path}: cannot write in {path}: {error.strerror or error}"
            + (f" (a {PROBE_BYTES >> 10} KiB test file did not fit)" if full else "")
            + "; nothing was run",
            hint="free some space, or choose another --out" if full else "choose another --out",
        ) from None
    return Output(path, work)


def _new_default_folder(root: Path, stamp: time.struct_time) -> Path:
    name = time.strftime("%Y%m%d-%H%M%S", stamp)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = root / (name if n == 1 else f"{name}-{n}")
            try:
                path.mkdir()  # atomic: two runs started in the same second get two folders
                return path
            except FileExistsError:
                continue
    except OSError as error:
        raise UsageError(
            f"cannot create the output folder under {root}: {error.strerror or error}; nothing was run",
            hint="choose a folder with --out",
        ) from None
    raise UsageError(f"{root}: too many result folders named {name}-N", hint="choose a folder with --out")


def _remove_stale_work(folder: Path) -> None:
    """Remove scratch folders left by a compare that was killed (its process no longer exists)."""
    for leftover in folder.glob(WORK_PREFIX + "*"):
        pid = leftover.name[len(WORK_PREFIX) :]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass  # another user's process: still running
