"""Energy and power, measured where the hardware lets us — otherwise "unavailable", with the reason.

- GPU: NVML (``nvidia-ml-py``, the ``gpu`` extra). The total-energy counter where
  the GPU has one (Volta and newer), otherwise power sampled in a thread and
  integrated (trapezoids).
- CPU: RAPL package energy from ``/sys/class/powercap`` when readable. The
  counters wrap around at ``max_energy_range_uj``; a thread polls them often
  enough to count every wrap.

Nothing is ever estimated: a meter that cannot measure returns an ``Energy``
with ``available=False`` and a reason. Roots, the NVML module and the clock are
injectable so the tests run on fake trees and a fake NVML.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

POWERCAP = "/sys/class/powercap"


@dataclass(frozen=True)
class Energy:
    available: bool
    source: str                 # how it was measured
    scope: str                  # what it covers
    joules: float | None = None
    seconds: float | None = None
    mean_watts: float | None = None
    samples: int | None = None  # power samples taken (sampling mode)
    reason: str | None = None   # why it is unavailable

    def to_dict(self) -> dict:
        return asdict(self)

    def per_watt(self, rate: float | None) -> float | None:
        """``rate`` (e.g. samples/s) per watt, or None when power was not measured."""
        if not self.available or not self.mean_watts or rate is None:
            return None
        return rate / self.mean_watts


def unavailable(reason: str, scope: str = "") -> Energy:
    return Energy(False, "unavailable", scope, reason=reason)


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

    def __init__(self, domains: Sequence[tuple[str, Path, int]], clock: Callable[[], float] = time.monotonic,
                 interval: float = 1.0):
        self.domains = list(domains)  # (name, energy_uj path, max_energy_range_uj)
        self.clock, self.interval = clock, interval
        self._last: list[int] = []
        self._total_uj = 0
        self._lock = threading.Lock()
        self._poller: _Poller | None = None

    @classmethod
    def probe(cls, root: str | Path = POWERCAP, **kwargs: Any) -> "RaplMeter | Unavailable":
        root = Path(root)
        if not root.is_dir():
            return Unavailable(f"RAPL not exposed: {root} does not exist (no powercap driver, or a VM/container "
                               "that hides it)", cls.scope)
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
                return Unavailable(f"RAPL not readable: {energy} is readable by root only (Linux >= 5.10); run as "
                                   "root or grant read access to measure CPU energy", cls.scope)
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
            for i, (value, last) in enumerate(zip(now, self._last)):
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
        return Energy(True, "RAPL energy counter (" + ", ".join(d[0] for d in self.domains) + ")", self.scope,
                      joules, seconds, joules / seconds if seconds > 0 else None)


# --- NVML ------------------------------------------------------------------------------

def _import_nvml():
    import pynvml  # provided by nvidia-ml-py

    return pynvml


class NvmlMeter:
    """GPU board energy from NVML: the energy counter when supported, power sampling otherwise."""

    def __init__(self, indices: Sequence[int], nvml: Any, clock: Callable[[], float] = time.monotonic,
                 interval: float = 0.05):
        self.indices, self.nvml, self.clock, self.interval = list(indices), nvml, clock, interval
        self.scope = "GPU board power of " + ", ".join(f"gpu:{i}" for i in self.indices) + " (not the host CPU)"
        self._samples: list[tuple[float, float]] = []  # (time, watts summed over GPUs)
        self._poller: _Poller | None = None

    @classmethod
    def probe(cls, indices: Sequence[int], nvml: Any = None, **kwargs: Any) -> "NvmlMeter | Unavailable":
        scope = "GPU board power"
        if nvml is None:
            try:
                nvml = _import_nvml()
            except ImportError:
                return Unavailable("NVML not available: nvidia-ml-py is not installed "
                                   "(pip install 'devswitch[gpu]')", scope)
        try:
            nvml.nvmlInit()
        except Exception as error:  # NVMLError_LibraryNotFound, driver not loaded, ...
            return Unavailable(f"NVML could not start: {error}", scope)
        nvml.nvmlShutdown()
        return cls(indices, nvml, **kwargs)

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
                    return Energy(True, "NVML total energy counter", self.scope, joules, seconds,
                                  joules / seconds if seconds > 0 else None)
                return unavailable("NVML energy counter stopped answering", self.scope)
            self._poller.stop()
            self._sample()
            points = self._samples
            joules = sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(points, points[1:]))
            seconds = points[-1][0] - points[0][0]
            return Energy(True, f"NVML power sampling every {self.interval * 1000:.0f} ms", self.scope, joules,
                          seconds, joules / seconds if seconds > 0 else None, samples=len(points))
        finally:
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass


def meter_for(gpus: Sequence[int], powercap: str | Path = POWERCAP, nvml: Any = None):
    """The meter for a run on these GPUs (NVML), or on the CPU when ``gpus`` is empty (RAPL)."""
    if gpus:
        return NvmlMeter.probe(gpus, nvml)
    return RaplMeter.probe(powercap)
