"""The latency engine's stopping rules (on a fake clock) and its statistics on known samples."""

from __future__ import annotations

import numpy as np
import pytest

from harness.latency import LatencyStats, measure
from harness.suite import LatencyConfig

MS = 1_000_000


class FakeClock:
    """A clock that only moves when the timed call runs: each call costs ``cost_ns``."""

    def __init__(self, cost_ns: int) -> None:
        self.now = 0
        self.cost_ns = cost_ns
        self.calls = 0

    def __call__(self) -> int:
        return self.now

    def run_once(self) -> None:
        self.calls += 1
        self.now += self.cost_ns


def config(**changes: float) -> LatencyConfig:
    values = dict(
        warmup_iterations=0,
        warmup_seconds=0.0,
        min_iterations=1,
        min_seconds=0.0,
        max_iterations=1_000_000,
        max_seconds=1_000.0,
    )
    values.update(changes)
    return LatencyConfig(**values)


def test_warmup_needs_both_its_iterations_and_its_seconds() -> None:
    # 10 ms calls: 3 iterations take 30 ms, but 0.1 s of warm-up needs 10 of them.
    clock = FakeClock(10 * MS)
    samples = measure(clock.run_once, config(warmup_iterations=3, warmup_seconds=0.1), clock)
    assert clock.calls - len(samples) == 10

    clock = FakeClock(10 * MS)
    samples = measure(clock.run_once, config(warmup_iterations=20, warmup_seconds=0.1), clock)
    assert clock.calls - len(samples) == 20


def test_measuring_stops_when_iterations_are_reached_after_the_seconds() -> None:
    # 1 ms calls: 2 s alone would be 2000 iterations; 5000 are asked for.
    clock = FakeClock(1 * MS)
    samples = measure(clock.run_once, config(min_iterations=5000, min_seconds=2.0), clock)
    assert len(samples) == 5000


def test_measuring_stops_when_seconds_are_reached_after_the_iterations() -> None:
    # 10 ms calls: 100 iterations take 1 s, but 2 s are asked for.
    clock = FakeClock(10 * MS)
    samples = measure(clock.run_once, config(min_iterations=100, min_seconds=2.0), clock)
    assert len(samples) == 200


def test_the_iteration_cap_beats_the_minimums() -> None:
    clock = FakeClock(1 * MS)
    cfg = config(min_iterations=1000, min_seconds=100.0, max_iterations=50)
    assert len(measure(clock.run_once, cfg, clock)) == 50


def test_the_seconds_cap_beats_the_minimums() -> None:
    clock = FakeClock(100 * MS)
    cfg = config(min_iterations=1000, min_seconds=100.0, max_seconds=1.0)
    assert len(measure(clock.run_once, cfg, clock)) == 10


def test_every_sample_is_the_duration_of_one_call_in_nanoseconds() -> None:
    clock = FakeClock(3 * MS)
    samples = measure(clock.run_once, config(min_iterations=7), clock)
    assert samples.dtype == np.int64
    assert samples.tolist() == [3 * MS] * 7


def test_a_config_without_room_for_one_sample_is_refused() -> None:
    clock = FakeClock(MS)
    with pytest.raises(ValueError, match="max_iterations"):
        measure(clock.run_once, config(max_iterations=0), clock)


def test_stats_of_known_samples() -> None:
    # 1..100 ms: linear-interpolation percentiles at rank (n-1)*p/100.
    samples = np.arange(1, 101, dtype=np.int64) * MS
    stats = LatencyStats.from_samples(samples, batch_size=4)
    assert stats.iterations == 100
    assert stats.total_seconds == pytest.approx(5.05)
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.std_ms == pytest.approx(np.sqrt((100**2 - 1) / 12))
    assert stats.cv == pytest.approx(stats.std_ms / 50.5)
    assert stats.min_ms == 1.0
    assert stats.max_ms == 100.0
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p95_ms == pytest.approx(95.05)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.throughput_ips == pytest.approx(4 / 0.0505)
    assert stats.unstable


def test_steady_samples_are_not_unstable_and_serialise_to_plain_values() -> None:
    samples = np.array([10, 10, 10, 11, 10, 10, 9, 10], dtype=np.int64) * MS
    stats = LatencyStats.from_samples(samples, batch_size=1)
    assert not stats.unstable
    assert stats.p50_ms == 10.0
    as_dict = stats.to_dict()
    assert as_dict["p50_ms"] == 10.0
    assert set(as_dict) >= {"mean_ms", "std_ms", "cv", "p99_ms", "throughput_ips", "unstable"}


def test_stats_of_no_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="no latency samples"):
        LatencyStats.from_samples(np.array([], dtype=np.int64), batch_size=1)
