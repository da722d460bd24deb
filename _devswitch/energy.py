"""Energy and power, measured where the hardware lets us — otherwise "unavailable", with the reason.

- GPU: NVML (``nvidia-ml-py``, the ``gpu`` extra). The total-energy counter where
  the GPU has one (Volta and newer), otherwise power sampled in a thread and
  integrated (trapezoids).
- CPU: RAPL package energy from ``/sys/class/powercap`` when readable. The
  counters wrap around at ``max_energy_range_uj``; a thread polls them often
  enough to count every wrap.

Nothing is ever estimated: a meter that cannot measure returns an ``Energy``
with ``available=False`` and a reason. Roots, the NVML module, the environment
and the clock are injectable so the tests run on fake trees and a fake NVML.

NVML numbers GPUs by PCI bus and ignores CUDA_VISIBLE_DEVICES, while TensorFlow
numbers the GPUs CUDA shows it; ``nvml_indices`` maps one to the other, and when
that cannot be done for certain, power is unavailable (never another GPU's).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

POWERCAP = "/sys/class/powercap"


@dataclass(frozen=True)
class Energy:
    available: bool
    source: str  # how it was measured
    scope: str  # what it covers
    joules: float | None = None
    seconds: float | None = None
    mean_watts: float | None = None
    samples: int | None = None  # power samples taken (sampling mode)
    reason: str | None = None  # why it is unavailable

    def to_dict(self) -> dict:
        return asdict(self)

    def per_watt(self, rate: float | None) -> float | None:
        """``rate`` (e.g. samples/s) per watt, or None when power was not measured."""
        if not self.available or not self.mean_watts or rate is None:
            return None
        return rate / self.mean_watts


def unavailable(reason: str, scope: str = "") -> Energy:
    return Energy(False, "unavailable", scope, reason=reason)


def combined(readings: Sequence[Energy]) -> Energy:
    """The readings of one measurement taken in rounds, as one: joules and seconds added, the mean power
    their ratio. Unavailable as soon as one round was not measured (a part is not the whole)."""
    if not readings:
        return unavailable("no timed samples")
    if len(readings) == 1:
        return readings[0]
    missing = next((r for r in readings if not r.available or r.joules is None or not r.seconds), None)
    if missing is not None:
        return missing if not missing.available else unavailable("a round was not measured", missing.scope)
    # every reading has joules and seconds after the check above; the filters say so to the type checker
    joules = sum(r.joules for r in readings if r.joules is not None)
    seconds = sum(r.seconds for r in readings if r.seconds is not None)
    counts = [r.samples for r in readings if r.samples is not None]
    return Energy(
        True,
        f"{readings[0].source}, {len(readings)} rounds added",
        readings[0].scope,
        joules,
        seconds,
        joules / seconds,
        sum(counts) if len(counts) == len(readings) else None,
    )


class Meter(Protocol):
    """What brackets a run's timed samples: ``start()``, then ``stop()`` gives the reading."""

    def start(self) -> None: ...

    def stop(self) -> Energy: ...


class Unavailable:
    """A meter that measures nothing and says why."""

    def __init__(self, reason: str, scope: str = ""):
        self.reason, self.scope = reason, scope

    def start(self) -> None:
        pass

    def stop(self) -> Energy:
        return unavailable(self.reason, self.scope)


class _Poller:
    """Calls ``poll`` every ``interval`` seconds in a daemon thread until stopped."""

    def __init__(self, poll: Callable[[], None], interval: float):
        self._poll, self._interval = poll, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="devswitch-energy", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._poll()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --- RAPL ------------------------------------------------------------------------------


class RaplMeter:
    """CPU package energy from the powercap tree (all packages summed)."""

    scope = "CPU package(s): whole sockets, including other processes and idle cores"

    def __init__(
        self,
        domains: Sequence[tuple[str, Path, int]],
        clock: Callable[[], float] = time.monotonic,
        interval: float = 1.0,
    ):
        self.domains = list(domains)  # (name, energy_uj path, max_energy_range_uj)
        self.clock, self.interval = clock, interval
        self._last: list[int] = []
        self._total_uj = 0
        self._lock = threading.Lock()
        self._poller: _Poller | None = None

    @classmethod
    def probe(cls, root: str | Path = POWERCAP, **kwargs: Any) -> RaplMeter | Unavailable:
        root = Path(root)
        if not root.is_dir():
            return Unavailable(
                f"RAPL not exposed: {root} does not exist (no powercap driver, or a VM/container that hides it)",
                cls.scope,
            )
        domains = []
        for zone in sorted(root.glob("*-rapl:*")):
            if zone.name.count(":") != 1:  # sub-zones (core, uncore, dram) are inside the package
                continue
            try:
                name = (zone / "name").read_text().strip()
            except OSError:
                continue
            if not name.startswith("package"):
                continue
            energy = zone / "energy_uj"
            try:
                energy.read_text()
                max_range = int((zone / "max_energy_range_uj").read_text())
            except PermissionError:
                return Unavailable(
                    f"RAPL not readable: {energy} is readable by root only (Linux >= 5.10); run as "
                    "root or grant read access to measure CPU energy",
                    cls.scope,
                )
            except (OSError, ValueError) as error:
                return Unavailable(f"RAPL not readable: {error}", cls.scope)
            domains.append((name, energy, max_range))
        if not domains:
            return Unavailable(f"RAPL not exposed: no package domain under {root}", cls.scope)
        return cls(domains, **kwargs)

    def _read(self) -> list[int]:
        return [int(path.read_text()) for _, path, _ in self.domains]

    def _poll(self) -> None:
        with self._lock:
            now = self._read()
            for i, (value, last) in enumerate(zip(now, self._last, strict=True)):  # both read from self.domains
                delta = value - last
                if delta < 0:  # the counter wrapped around
                    delta += self.domains[i][2]
                self._total_uj += delta
            self._last = now

    def start(self) -> None:
        self._total_uj = 0
        self._last = self._read()
        self._t0 = self.clock()
        if self.interval:
            self._poller = _Poller(self._poll, self.interval)
            self._poller.start()

    def stop(self) -> Energy:
        if self._poller:
            self._poller.stop()
        self._poll()
        seconds = self.clock() - self._t0
        joules = self._total_uj / 1e6
        return Energy(
            True,
            "RAPL energy counter (" + ", ".join(d[0] for d in self.domains) + ")",
            self.scope,
            joules,
            seconds,
            joules / seconds if seconds > 0 else None,
        )


# --- NVML ------------------------------------------------------------------------------


def _import_nvml():
    import pynvml  # provided by nvidia-ml-py

    return pynvml


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cuda_visible_entries(value: str) -> tuple[list[str], str | None]:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: the entries up to the first invalid one, and that one (or None).

    An entry is a GPU number, a ``GPU-<uuid>`` (or a unique prefix of one) or a ``MIG-...`` instance;
    CUDA ignores everything from the first entry that is none of these ("-1", "", "foo" ...).
    """
    entries = []
    for raw in value.split(","):
        entry = raw.strip()
        if entry.isdigit() or (entry.startswith(("GPU-", "MIG-")) and len(entry) > 4):
            entries.append(entry)
        else:
            return entries, entry
    return entries, None


def nvml_indices(indices: Sequence[int], nvml: Any, environ: Mapping[str, str]) -> tuple[list[int] | None, str | None]:
    """The NVML device index of each framework-visible GPU index, or None and why it cannot be known for sure.

    The framework (CUDA) numbers only the GPUs in CUDA_VISIBLE_DEVICES, in that order; NVML numbers every
    GPU of the machine by PCI bus. NVML must be initialised.
    """
    count = int(nvml.nvmlDeviceGetCount())
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        entries, stop = [str(i) for i in range(count)], None
        shown = "CUDA_VISIBLE_DEVICES unset"
    else:
        entries, stop = cuda_visible_entries(visible)
        shown = f"CUDA_VISIBLE_DEVICES={visible!r}"
    uuids: list[str] | None = None
    result = []
    for index in indices:
        if index >= len(entries):
            why = f" (CUDA ignores it from {stop!r} on)" if stop is not None else ""
            return None, f"cannot tell which GPU gpu:{index} is: {shown} lists {len(entries)} GPU(s){why}"
        entry = entries[index]
        if entry.startswith("MIG-"):
            return None, (
                f"gpu:{index} is a MIG instance ({entry}): NVML measures power per physical GPU, "
                "shared with the other instances on it"
            )
        if entry.isdigit():
            number = int(entry)
            if number >= count:
                return None, f"gpu:{index} is GPU {number} in {shown}, but NVML sees {count} GPU(s)"
            reason = _order_differs(nvml, count, environ)
            if reason:
                return None, f"cannot tell which GPU gpu:{index} is: {reason}"
            result.append(number)
            continue
        if uuids is None:
            uuids = [_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
        matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(entry)]
        if len(matches) != 1:
            found = "no GPU" if not matches else f"{len(matches)} GPUs"
            return None, f"gpu:{index} is {entry} in {shown}, which matches {found} in NVML"
        result.append(matches[0])
    if len(set(result)) != len(result):
        return None, f"{shown} names the same GPU twice: cannot attribute its power to one of them"
    return result, None


def _order_differs(nvml: Any, count: int, environ: Mapping[str, str]) -> str | None:
    """Why CUDA's GPU numbers may not be NVML's, or None when they are the same."""
    if count <= 1 or environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return None
    # CUDA's default order is fastest first; among identical GPUs that is the PCI bus order NVML uses
    names = {_text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)}
    if len(names) == 1:
        return None
    return (
        "CUDA numbers GPUs fastest first and NVML by PCI bus, and this machine mixes "
        f"{', '.join(sorted(names))}; set CUDA_DEVICE_ORDER=PCI_BUS_ID (or name GPUs by GPU-<uuid> in "
        "CUDA_VISIBLE_DEVICES) to measure power"
    )


class NvmlMeter:
    """GPU board energy from NVML: the energy counter when supported, power sampling otherwise.

    ``indices`` are NVML's device numbers (see ``nvml_indices``); ``probe`` takes the framework's.
    """

    def __init__(
        self,
        indices: Sequence[int],
        nvml: Any,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.05,
        labels: Sequence[str] | None = None,
    ):
        self.indices, self.nvml, self.clock, self.interval = list(indices), nvml, clock, interval
        labels = list(labels) if labels is not None else [f"gpu:{i}" for i in self.indices]
        self.scope = "GPU board power of " + ", ".join(labels) + " (not the host CPU)"
        self._samples: list[tuple[float, float]] = []  # (time, watts summed over GPUs)
        self._poller: _Poller | None = None

    @classmethod
    def probe(
        cls, indices: Sequence[int], nvml: Any = None, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> NvmlMeter | Unavailable:
        """A meter for the framework's GPUs ``indices`` (as numbered under ``environ``'s CUDA_VISIBLE_DEVICES)."""
        scope = "GPU board power"
        environ = os.environ if environ is None else environ
        if nvml is None:
            try:
                nvml = _import_nvml()
            except ImportError:
                return Unavailable(
                    "NVML not available: nvidia-ml-py is not installed (pip install 'devswitch[gpu]')", scope
                )
        try:
            nvml.nvmlInit()
        except Exception as error:  # NVMLError_LibraryNotFound, driver not loaded, ...
            return Unavailable(f"NVML could not start: {error}", scope)
        try:
            mapped, reason = nvml_indices(indices, nvml, environ)
        except Exception as error:  # noqa: BLE001 - an NVML call failed: no figure rather than a wrong one
            mapped, reason = None, f"NVML could not identify the GPUs: {error}"
        finally:
            nvml.nvmlShutdown()
        if mapped is None:
            return Unavailable(f"power not attributable: {reason}", scope)
        labels = [f"gpu:{i}" if i == n else f"gpu:{i} (NVML device {n})" for i, n in zip(indices, mapped, strict=True)]
        return cls(mapped, nvml, labels=labels, **kwargs)

    def _handles(self):
        return [self.nvml.nvmlDeviceGetHandleByIndex(i) for i in self.indices]

    def _energy_mj(self) -> float | None:
        try:
            return float(sum(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles()))
        except Exception:  # NVMLError_NotSupported on GPUs older than Volta
            return None

    def _sample(self) -> None:
        watts = sum(self.nvml.nvmlDeviceGetPowerUsage(h) for h in self._handles()) / 1000.0
        self._samples.append((self.clock(), watts))

    def start(self) -> None:
        self.nvml.nvmlInit()  # reference-counted by NVML; stop() shuts it down again
        self._t0 = self.clock()
        self._start_mj = self._energy_mj()
        self._samples = []
        if self._start_mj is None:
            self._sample()
            self._poller = _Poller(self._sample, self.interval)
            self._poller.start()

    def stop(self) -> Energy:
        try:
            if self._start_mj is not None:
                end = self._energy_mj()
                seconds = self.clock() - self._t0
                if end is not None:
                    joules = (end - self._start_mj) / 1000.0
                    return Energy(
                        True,
                        "NVML total energy counter",
                        self.scope,
                        joules,
                        seconds,
                        joules / seconds if seconds > 0 else None,
                    )
                return unavailable("NVML energy counter stopped answering", self.scope)
            assert self._poller is not None  # start() started one: there is no energy counter
            self._poller.stop()
            self._sample()
            points = self._samples
            joules = sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in pairwise(points))
            seconds = points[-1][0] - points[0][0]
            return Energy(
                True,
                f"NVML power sampling every {self.interval * 1000:.0f} ms",
                self.scope,
                joules,
                seconds,
                joules / seconds if seconds > 0 else None,
                samples=len(points),
            )
        finally:
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass


def meter_for(
    gpus: Sequence[int], powercap: str | Path = POWERCAP, nvml: Any = None, environ: Mapping[str, str] | None = None
) -> Meter:
    """The meter for a run on these framework-visible GPUs (NVML), or on the CPU when ``gpus`` is empty (RAPL)."""
    if gpus:
        return NvmlMeter.probe(gpus, nvml, environ)
    return RaplMeter.probe(powercap)
