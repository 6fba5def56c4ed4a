"""Timing logic of the harness, driven by a fake clock (no real time is measured here)."""
import pytest

from fastgan_kernels.bench import timing


class FakeClock:
    """A clock that only moves when the fake workload says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def workload(clock, durations):
    """A callable whose n-th call takes durations[n % len(durations)] seconds of fake time."""
    state = {"n": 0}

    def fn():
        clock.now += durations[state["n"] % len(durations)]
        state["n"] += 1

    fn.state = state
    return fn


def test_quantile_interpolates_between_order_statistics():
    assert timing.quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert timing.quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert timing.quantile([0.0, 10.0], 0.2) == pytest.approx(2.0)
    assert timing.quantile([5.0], 0.8) == 5.0
    with pytest.raises(ValueError):
        timing.quantile([], 0.5)
    with pytest.raises(ValueError):
        timing.quantile([1.0], 1.5)


def test_autorange_blocks_fast_calls_and_reaches_min_run_time():
    clock = FakeClock()
    fn = workload(clock, [10e-6])  # 10 us per call
    cfg = timing.TimingConfig(min_run_time=0.4, min_blocks=5, target_blocks=40, max_run_time=5.0)
    m = timing.cpu_autorange(fn, cfg, timer=clock)
    # a block should last about min_run_time / target_blocks = 10 ms -> 1000 calls
    assert m.calls_per_sample == 1000
    assert len(m.times_s) == 40
    assert m.median == pytest.approx(10e-6)
    assert m.p20 == pytest.approx(10e-6) and m.p80 == pytest.approx(10e-6)
    assert m.mode == timing.CPU_MODE
    assert m.calls == 40 * 1000


def test_autorange_slow_calls_get_one_call_per_block_and_min_blocks():
    clock = FakeClock()
    fn = workload(clock, [0.5])  # slower than the whole min_run_time
    cfg = timing.TimingConfig(min_run_time=0.2, min_blocks=5, target_blocks=40, max_run_time=100.0)
    m = timing.cpu_autorange(fn, cfg, timer=clock)
    assert m.calls_per_sample == 1
    assert len(m.times_s) == 5          # min_blocks wins over min_run_time
    assert m.median == pytest.approx(0.5)


def test_autorange_stops_at_max_run_time_with_at_least_three_blocks():
    clock = FakeClock()
    fn = workload(clock, [2.0])
    cfg = timing.TimingConfig(min_run_time=1.0, min_blocks=10, target_blocks=10, max_run_time=3.0)
    m = timing.cpu_autorange(fn, cfg, timer=clock)
    assert len(m.times_s) == 3


def test_a_call_longer_than_max_run_time_is_timed_once():
    clock = FakeClock()
    fn = workload(clock, [30.0])
    cfg = timing.TimingConfig(min_run_time=1.0, min_blocks=5, target_blocks=40, max_run_time=8.0)
    m = timing.cpu_autorange(fn, cfg, timer=clock)
    assert m.times_s == [30.0] and fn.state["n"] == 1


def test_quantiles_reflect_spread_between_blocks():
    clock = FakeClock()
    # one call per block (each call 1 s > block target); durations cycle 1..5 s
    fn = workload(clock, [1.0, 2.0, 3.0, 4.0, 5.0])
    cfg = timing.TimingConfig(min_run_time=0.1, min_blocks=5, target_blocks=1, max_run_time=1e9)
    m = timing.cpu_autorange(fn, cfg, timer=clock)
    # the calibration call (1 s) is longer than a block, so it is kept as the first sample
    assert sorted(m.times_s) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert m.median == 3.0
    assert m.p20 == pytest.approx(1.8) and m.p80 == pytest.approx(4.2)


def test_interleaved_round_robin_alternates_providers():
    clock = FakeClock()
    order = []

    def make(name, dt):
        def fn():
            order.append(name)
            clock.now += dt
        return fn

    cfg = timing.TimingConfig(min_run_time=0.3, min_blocks=3, target_blocks=1, max_run_time=10.0)
    ms = timing.interleaved([make("a", 0.5), make("b", 0.25)], cfg, timer=clock)
    assert [m.median for m in ms] == [pytest.approx(0.5), pytest.approx(0.25)]
    # each call is longer than a block, so each calibration call is already the first sample
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert [len(m.times_s) for m in ms] == [3, 3]


def test_measurement_to_dict_has_quantiles():
    m = timing.Measurement([1.0, 2.0, 3.0], 3, timing.CPU_MODE)
    d = m.to_dict()
    assert d["median_s"] == 2.0 and d["p20_s"] == pytest.approx(1.4) and d["mode"] == timing.CPU_MODE


def test_mode_names_record_the_method():
    assert timing.mode_for("cpu", timing.TimingConfig()) == timing.CPU_MODE
    assert timing.mode_for("cuda", timing.TimingConfig()) == timing.CUDA_EVENTS_MODE
    assert timing.mode_for("cuda", timing.TimingConfig(cuda_graph=True)) == timing.CUDA_GRAPH_MODE
