"""GpuMonitor's logic against an injected fake NVML-like source (no GPU needed), and real NVML where present."""
import pytest

from fastgan_kernels.profile import monitor as monitor_mod
from fastgan_kernels.profile.monitor import GpuMonitor, integrate_power
from fastgan_kernels.profile.nvml_source import NvmlSource, NvmlUnavailable, reason_names


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeNvmlSource:
    """An NVML-like source: scripted power, clocks and reasons; optionally no energy counter."""

    def __init__(self, clock, power_w=300.0, energy_counter=True):
        self.clock, self.power, self.energy_counter = clock, power_w, energy_counter
        self.reasons = 0
        self._energy, self._last = 5000.0, clock()

    def _advance_energy(self):
        now = self.clock()
        self._energy += self.power * (now - self._last)
        self._last = now

    def name(self):
        return "Fake GPU (test double)"

    def utilization(self):
        return (87.0, 40.0)

    def memory(self):
        return (2 << 30, 80 << 30)

    def power_w(self):
        return self.power

    def sm_clock_mhz(self):
        return 1980.0 if self.power < 400 else 1500.0

    def temperature_c(self):
        return 55.0 + self.power / 100.0

    def clock_event_reasons(self):
        return self.reasons

    def total_energy_j(self):
        self._advance_energy()
        return self._energy if self.energy_counter else None


def test_energy_window_from_the_fake_nvml_energy_counter():
    clock = FakeClock()
    src = FakeNvmlSource(clock, power_w=250.0)
    mon = GpuMonitor(source=src, clock=clock)
    mon.begin_window("run")
    clock.now += 2.0
    w = mon.end_window("run")
    assert w.method == "energy-counter"
    assert w.time_s == pytest.approx(2.0)
    assert w.energy_j == pytest.approx(500.0)
    assert w.avg_power_w == pytest.approx(250.0)


def test_energy_window_falls_back_to_integrating_fake_nvml_power():
    clock = FakeClock()
    src = FakeNvmlSource(clock, power_w=100.0, energy_counter=False)
    mon = GpuMonitor(source=src, clock=clock)
    mon.begin_window("run")
    clock.now += 1.0
    src.power = 300.0
    mon.sample_once()                 # what the background thread would do
    clock.now += 1.0
    w = mon.end_window("run")
    assert w.method == "power-integral"
    # trapezoids: (100 + 300) / 2 * 1 + (300 + 300) / 2 * 1
    assert w.energy_j == pytest.approx(500.0)
    assert w.stats["power_peak_w"] == 300.0 and w.stats["samples"] == 3


def test_no_energy_when_the_fake_nvml_source_has_neither_counter_nor_power():
    clock = FakeClock()
    src = FakeNvmlSource(clock, energy_counter=False)
    src.power_w = lambda: None
    mon = GpuMonitor(source=src, clock=clock)
    mon.begin_window("w")
    clock.now += 1.0
    w = mon.end_window("w")
    assert w.energy_j is None and w.method == "unavailable" and w.avg_power_w is None


def test_summary_of_fake_nvml_samples_reports_peaks_clocks_and_throttle_reasons():
    clock = FakeClock()
    src = FakeNvmlSource(clock, power_w=200.0)
    mon = GpuMonitor(source=src, clock=clock)
    mon.sample_once()
    src.power, src.reasons = 450.0, 0x4 | 0x20     # sw power cap + sw thermal slowdown
    clock.now += 0.1
    mon.sample_once()
    s = mon.summary()
    assert s["samples"] == 2
    assert s["power_avg_w"] == pytest.approx(325.0) and s["power_peak_w"] == 450.0
    assert s["sm_clock_min_mhz"] == 1500.0 and s["sm_clock_max_mhz"] == 1980.0
    assert s["clock_event_reasons"] == {"sw_power_cap": 1, "sw_thermal_slowdown": 1}
    assert s["gpu_util_avg"] == 87.0 and s["mem_used_peak"] == 2 << 30
    assert s["temperature_max_c"] == pytest.approx(59.5)


def test_background_thread_samples_the_fake_nvml_source():
    src = FakeNvmlSource(monitor_mod.time.monotonic)
    with GpuMonitor(source=src, interval_s=0.005) as mon:
        mon.begin_window("w")
        monitor_mod.time.sleep(0.1)
        w = mon.end_window("w")
    assert len(mon.samples) >= 5
    assert w.energy_j > 0 and w.stats["samples"] >= 3


def test_window_misuse_is_reported():
    clock = FakeClock()
    mon = GpuMonitor(source=FakeNvmlSource(clock), clock=clock)
    with pytest.raises(ValueError, match="never begun"):
        mon.end_window("x")
    mon.begin_window("x")
    with pytest.raises(ValueError, match="already open"):
        mon.begin_window("x")


def test_reason_names_and_power_integral_edges():
    assert reason_names(0) == [] and reason_names(None) == []
    assert reason_names(0x1 | 0x40) == ["gpu_idle", "hw_thermal_slowdown"]
    assert reason_names(0x10000) == ["unknown_0x10000"]
    assert integrate_power([], 0.0, 1.0) is None


def _real_nvml_reason():
    try:
        NvmlSource().close()
    except NvmlUnavailable as exc:
        return str(exc)
    return ""


@pytest.mark.cuda
@pytest.mark.skipif(bool(_real_nvml_reason()), reason=f"no usable NVML here: {_real_nvml_reason()}")
def test_real_nvml_monitor_reads_the_gpu():
    mon, why = GpuMonitor.create(interval_s=0.02)
    assert mon is not None, why
    with mon:
        mon.begin_window("idle")
        monitor_mod.time.sleep(0.3)
        w = mon.end_window("idle")
    assert mon.device_name
    s = mon.summary()
    assert s["samples"] >= 3
    assert s["mem_total"] and s["mem_total"] > 0
    assert s["power_avg_w"] is None or s["power_avg_w"] > 0
    assert w.method in ("energy-counter", "power-integral", "unavailable")
    if w.energy_j is not None:
        assert w.energy_j >= 0
