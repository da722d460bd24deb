"""Energy readers on a fake powercap tree and a fake NVML; the real path is honest on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from _devswitch.energy import NvmlMeter, RaplMeter, Unavailable, cuda_visible_entries, meter_for, nvml_indices


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
    # each reason: its kind (RAPL not exposed / not readable), then the path it looked at
    missing = RaplMeter.probe(tmp_path / "nope").stop()
    assert not missing.available and missing.joules is None
    assert missing.reason.startswith("RAPL not exposed: ") and str(tmp_path / "nope") in missing.reason
    empty = RaplMeter.probe(tmp_path).stop().reason
    assert empty.startswith("RAPL not exposed: ") and empty.endswith(str(tmp_path)) and "package" in empty
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").mkdir()  # unreadable as a file
    unreadable = RaplMeter.probe(tmp_path).stop().reason
    assert unreadable.startswith("RAPL not readable: ") and str(zone / "energy_uj") in unreadable


class FakeNvml:
    """NVML's view of a machine: GPUs in PCI bus order, each with a name and a UUID; power per device."""

    class NVMLError(Exception):
        pass

    def __init__(self, energy_mj=None, power_mw=(100_000,), clock=None, names=("A100",) * 4):
        self.energy_mj = energy_mj  # None: the GPU has no energy counter
        self.power_mw = list(power_mw)
        self.clock = clock
        self.inits = 0
        self.names = list(names)
        self.uuids = [f"GPU-{chr(ord('a') + i)}{i}aa-uuid" for i in range(len(names))]  # GPU-a0aa-uuid, ...
        self.read = []  # the NVML devices whose power or energy was read

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.inits -= 1

    def nvmlDeviceGetCount(self):
        return len(self.names)

    def nvmlDeviceGetHandleByIndex(self, i):
        if not 0 <= i < len(self.names):
            raise self.NVMLError("Invalid Argument")
        return i

    def nvmlDeviceGetName(self, handle):
        return self.names[handle]

    def nvmlDeviceGetUUID(self, handle):
        return self.uuids[handle].encode()  # older nvidia-ml-py returns bytes

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self.read.append(handle)
        if self.energy_mj is None:
            raise self.NVMLError("Not Supported")
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle):
        self.read.append(handle)
        return self.power_mw[0] if len(self.power_mw) == 1 else self.power_mw.pop(0)


def test_nvml_energy_counter(tmp_path):
    clock = Clock()
    nvml = FakeNvml(energy_mj=10_000)
    meter = NvmlMeter.probe([0, 1], nvml, environ={}, clock=clock)
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
    meter = NvmlMeter.probe([0], nvml, environ={}, clock=clock, interval=3600)  # the poller will not fire: we drive it
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

    energy = NvmlMeter.probe([0], Broken(), environ={}).stop()
    assert not energy.available and energy.reason == "NVML could not start: Driver Not Loaded"


@pytest.mark.parametrize("visible, framework, expected", [
    pytest.param(None, [0, 1], [0, 1], id="unset: the same numbers"),
    pytest.param("2,3", [0], [2], id="2,3: gpu:0 is NVML 2"),
    pytest.param("2,3", [1], [3], id="2,3: gpu:1 is NVML 3"),
    pytest.param(" 3 , 1", [0, 1], [3, 1], id="spaces, any order"),
    pytest.param("GPU-b1aa-uuid", [0], [1], id="a full GPU UUID"),
    pytest.param("GPU-c2", [0], [2], id="a unique UUID prefix"),
    pytest.param("3,GPU-a0aa-uuid", [1], [0], id="numbers and UUIDs mixed"),
])
def test_framework_gpus_map_to_the_nvml_device_through_cuda_visible_devices(visible, framework, expected):
    nvml = FakeNvml(energy_mj=1_000)
    environ = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert nvml_indices(framework, nvml, environ) == (expected, None)
    meter = NvmlMeter.probe(framework, nvml, environ=environ, clock=Clock())
    meter.start()
    energy = meter.stop()
    assert energy.available and set(nvml.read) == set(expected)  # the watts come from those GPUs, no other
    assert nvml.inits == 0


@pytest.mark.parametrize("visible, framework, reason", [
    pytest.param("", [0], "CUDA_VISIBLE_DEVICES='' lists 0 GPU(s) (CUDA ignores it from '' on)", id="empty"),
    pytest.param("-1", [0], "CUDA_VISIBLE_DEVICES='-1' lists 0 GPU(s) (CUDA ignores it from '-1' on)", id="-1"),
    pytest.param("1,foo,2", [1], "lists 1 GPU(s) (CUDA ignores it from 'foo' on)", id="invalid entry"),
    pytest.param("7", [0], "gpu:0 is GPU 7 in CUDA_VISIBLE_DEVICES='7', but NVML sees 4 GPU(s)", id="out of range"),
    pytest.param("GPU-zz", [0], "gpu:0 is GPU-zz in CUDA_VISIBLE_DEVICES='GPU-zz', which matches no GPU",
                 id="unknown UUID"),
    pytest.param("GPU-", [0], "lists 0 GPU(s) (CUDA ignores it from 'GPU-' on)", id="bare GPU- prefix"),
    pytest.param("MIG-4f5c-aa/1/0", [0], "gpu:0 is a MIG instance (MIG-4f5c-aa/1/0): NVML measures power per "
                 "physical GPU", id="MIG instance"),
    pytest.param("1,1", [0, 1], "names the same GPU twice", id="the same GPU twice"),
])
def test_a_gpu_that_cannot_be_identified_has_no_power_figure(visible, framework, reason):
    nvml = FakeNvml(energy_mj=1_000)
    environ = {"CUDA_VISIBLE_DEVICES": visible}
    mapped, why = nvml_indices(framework, nvml, environ)
    assert mapped is None and reason in why
    meter = NvmlMeter.probe(framework, nvml, environ=environ)
    assert isinstance(meter, Unavailable)
    energy = (meter.start(), meter.stop())[1]
    assert not energy.available and energy.joules is None and reason in energy.reason
    assert energy.reason.startswith("power not attributable: ") and nvml.read == [] and nvml.inits == 0


def test_mixed_gpu_models_need_pci_bus_order_to_map_numbers():
    """CUDA numbers GPUs fastest first and NVML by PCI bus: with mixed models, only UUIDs or PCI_BUS_ID map."""
    nvml = FakeNvml(names=("Tesla T4", "A100", "A100"))
    mapped, why = nvml_indices([0], nvml, {"CUDA_VISIBLE_DEVICES": "1"})
    assert mapped is None and "set CUDA_DEVICE_ORDER=PCI_BUS_ID" in why and "A100, Tesla T4" in why
    assert nvml_indices([0], nvml, {})[0] is None
    assert nvml_indices([0], nvml, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}) == ([1], None)
    assert nvml_indices([0], nvml, {"CUDA_VISIBLE_DEVICES": "GPU-b1aa-uuid"}) == ([1], None)


def test_an_ambiguous_uuid_prefix_is_not_guessed():
    nvml = FakeNvml()
    nvml.uuids = ["GPU-1234-a", "GPU-1234-b"]
    nvml.names = ["A100", "A100"]
    assert nvml_indices([0], nvml, {"CUDA_VISIBLE_DEVICES": "GPU-1234"}) == (
        None, "gpu:0 is GPU-1234 in CUDA_VISIBLE_DEVICES='GPU-1234', which matches 2 GPUs in NVML")
    assert nvml_indices([0], nvml, {"CUDA_VISIBLE_DEVICES": "GPU-1234-b"}) == ([1], None)


def test_cuda_visible_devices_is_read_as_cuda_reads_it():
    assert cuda_visible_entries("0,2") == (["0", "2"], None)
    assert cuda_visible_entries("2,-1,3") == (["2"], "-1")
    assert cuda_visible_entries("GPU-ab,MIG-cd") == (["GPU-ab", "MIG-cd"], None)


def test_the_meter_scope_names_the_nvml_device_when_it_differs():
    nvml = FakeNvml(energy_mj=0)
    meter = NvmlMeter.probe([0], nvml, environ={"CUDA_VISIBLE_DEVICES": "2"})
    assert meter.scope == "GPU board power of gpu:0 (NVML device 2) (not the host CPU)"
    assert meter_for([0], nvml=FakeNvml(energy_mj=0), environ={"CUDA_VISIBLE_DEVICES": "-1"}).reason.startswith(
        "power not attributable")


def _readable_rapl_packages(root: Path = Path("/sys/class/powercap")) -> bool:
    """Whether this machine has RAPL package counters (Intel or AMD) that this process can all read,
    found without devswitch."""
    packages = 0
    for zone in sorted(root.glob("*-rapl:*")) if root.is_dir() else ():
        try:
            is_package = zone.name.count(":") == 1 and (zone / "name").read_text().startswith("package")
        except OSError:
            continue  # a zone without a readable name is not counted (nor refused)
        if not is_package:
            continue
        try:
            int((zone / "energy_uj").read_text()), int((zone / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            return False  # one package we cannot read: no honest CPU total
        packages += 1
    return packages > 0


def test_this_machine_reports_cpu_energy_honestly():
    meter = meter_for(())
    energy = (meter.start(), meter.stop())[1]
    if _readable_rapl_packages():  # a machine that exposes RAPL to us: a real, non-negative reading
        assert not isinstance(meter, Unavailable), energy.reason
        assert energy.available and energy.joules >= 0
    else:  # no readable package counter (a VM, a container, no permission): said so, no number made up
        assert isinstance(meter, Unavailable)
        assert not energy.available and energy.reason.startswith("RAPL not")
        assert energy.joules is None and energy.mean_watts is None and energy.per_watt(100.0) is None
