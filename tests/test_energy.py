"""Energy readers on a fake powercap tree and a fake NVML; the real path is honest on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from devswitch.energy import NvmlMeter, RaplMeter, Unavailable, meter_for


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def make_zone(root: Path, name: str, zone: str, energy: int, max_range: int = 1_000_000) -> Path:
    path = root / zone
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path / "energy_uj"


def test_rapl_sums_packages_over_the_measured_time(tmp_path):
    p0 = make_zone(tmp_path, "package-0", "intel-rapl:0", 1_000)
    p1 = make_zone(tmp_path, "package-1", "intel-rapl:1", 5_000)
    make_zone(tmp_path, "core", "intel-rapl:0:0", 0)  # a sub-zone: inside package-0, not added again
    clock = Clock()
    meter = RaplMeter.probe(tmp_path, clock=clock, interval=0)
    assert isinstance(meter, RaplMeter) and len(meter.domains) == 2
    meter.start()
    p0.write_text("3001000\n")   # +3 J
    p1.write_text("1005000\n")   # +1 J
    clock.now += 2.0
    energy = meter.stop()
    assert energy.available and energy.joules == pytest.approx(4.0)
    assert energy.seconds == pytest.approx(2.0) and energy.mean_watts == pytest.approx(2.0)
    assert "package-0" in energy.source and "other processes" in energy.scope


def test_rapl_counts_wrap_arounds(tmp_path):
    counter = make_zone(tmp_path, "package-0", "intel-rapl:0", 900_000, max_range=1_000_000)
    clock = Clock()
    meter = RaplMeter.probe(tmp_path, clock=clock, interval=0)
    meter.start()
    counter.write_text("100000\n")   # wrapped once: +200_000 uJ
    meter._poll()
    counter.write_text("50000\n")    # wrapped again: +950_000 uJ
    meter._poll()
    counter.write_text("60000\n")    # +10_000 uJ
    clock.now += 1.0
    energy = meter.stop()
    assert energy.joules == pytest.approx(1.16)


def test_rapl_unavailable_reasons(tmp_path):
    missing = RaplMeter.probe(tmp_path / "nope").stop()
    assert not missing.available and "does not exist" in missing.reason and missing.joules is None
    assert "no package domain" in RaplMeter.probe(tmp_path).stop().reason
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").mkdir()  # unreadable as a file
    assert "RAPL not readable" in RaplMeter.probe(tmp_path).stop().reason


class FakeNvml:
    class NVMLError(Exception):
        pass

    def __init__(self, energy_mj=None, power_mw=(100_000,), clock=None):
        self.energy_mj = energy_mj  # None: the GPU has no energy counter
        self.power_mw = list(power_mw)
        self.clock = clock
        self.inits = 0

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.inits -= 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.energy_mj is None:
            raise self.NVMLError("Not Supported")
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.power_mw[0] if len(self.power_mw) == 1 else self.power_mw.pop(0)


def test_nvml_energy_counter(tmp_path):
    clock = Clock()
    nvml = FakeNvml(energy_mj=10_000)
    meter = NvmlMeter.probe([0, 1], nvml, clock=clock)
    meter.start()
    nvml.energy_mj = 40_000  # +30 J per GPU, two GPUs
    clock.now += 3.0
    energy = meter.stop()
    assert energy.source == "NVML total energy counter"
    assert energy.joules == pytest.approx(60.0) and energy.mean_watts == pytest.approx(20.0)
    assert nvml.inits == 0  # every init was matched by a shutdown
    assert energy.per_watt(100.0) == pytest.approx(5.0)


def test_nvml_power_sampling_when_there_is_no_counter():
    clock = Clock()
    nvml = FakeNvml(energy_mj=None, power_mw=(50_000,))
    meter = NvmlMeter.probe([0], nvml, clock=clock, interval=3600)  # the poller will not fire: we drive it
    meter.start()
    clock.now += 1.0
    nvml.power_mw = [150_000]
    meter._sample()
    clock.now += 1.0
    energy = meter.stop()
    # samples (0 s, 50 W), (1 s, 150 W), (2 s, 150 W): trapezoids 100 J + 150 J
    assert energy.joules == pytest.approx(250.0) and energy.samples == 3
    assert energy.mean_watts == pytest.approx(125.0)
    assert energy.source.startswith("NVML power sampling")


def test_nvml_unavailable_reasons():
    class Broken(FakeNvml):
        def nvmlInit(self):
            raise self.NVMLError("Driver Not Loaded")

    energy = NvmlMeter.probe([0], Broken()).stop()
    assert not energy.available and energy.reason == "NVML could not start: Driver Not Loaded"


def test_this_machine_reports_cpu_energy_honestly():
    meter = meter_for(())
    energy = (meter.start(), meter.stop())[1]
    if isinstance(meter, Unavailable):
        assert not energy.available and energy.reason.startswith("RAPL not")
        assert energy.joules is None and energy.mean_watts is None and energy.per_watt(100.0) is None
    else:  # a machine that exposes RAPL: a real, non-negative reading
        assert energy.available and energy.joules >= 0
