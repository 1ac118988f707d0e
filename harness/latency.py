"""The one latency engine every backend is timed with, and the statistics of its samples.

Stopping rule (MLPerf LoadGen's and TFLite ``benchmark_model``'s dual rule): warm up for at least
``warmup_iterations`` AND at least ``warmup_seconds``; then measure until at least
``min_iterations`` AND at least ``min_seconds`` have passed, but never past ``max_iterations``
or ``max_seconds`` (the cap wins over the minimums). Every sample is kept, in nanoseconds.

Percentiles use numpy's default ``"linear"`` method (Hyndman & Fan type 7): for sorted samples
``x[0..n-1]`` the p-th percentile is at rank ``h = (n - 1) * p / 100``, interpolated linearly
between ``x[floor(h)]`` and ``x[ceil(h)]``. The standard deviation is the population one
(``ddof=0``); CV is std / mean.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from harness.suite import LatencyConfig

UNSTABLE_CV = 0.10
"""A cell whose coefficient of variation reaches this is flagged ``unstable``."""

_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000


def measure(
    run_once: Callable[[], object],
    config: LatencyConfig,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> np.ndarray:
    """Warm up, then time ``run_once`` call by call; return the int64 samples in nanoseconds."""
    if config.max_iterations < 1:
        raise ValueError(f"latency.max_iterations must be at least 1, got {config.max_iterations}")
    warmup_ns = int(config.warmup_seconds * _NS_PER_S)
    min_ns = int(config.min_seconds * _NS_PER_S)
    max_ns = int(config.max_seconds * _NS_PER_S)
    min_iterations = config.min_iterations
    max_iterations = config.max_iterations

    warmed = 0
    warmup_start = clock()
    while warmed < config.warmup_iterations or clock() - warmup_start < warmup_ns:
        run_once()
        warmed += 1

    samples = np.empty(max_iterations, dtype=np.int64)
    count = 0
    start = clock()
    while count < max_iterations:
        before = clock()
        run_once()
        after = clock()
        samples[count] = after - before
        count += 1
        elapsed = after - start
        if elapsed >= max_ns or (count >= min_iterations and elapsed >= min_ns):
            break
    return samples[:count].copy()


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one batch size's samples; times in milliseconds, throughput in images/s."""

    iterations: int
    total_seconds: float
    """Sum of the timed calls (the warm-up and the loop's own overhead are not in it)."""
    mean_ms: float
    std_ms: float
    cv: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    throughput_ips: float
    """``batch_size`` / mean seconds per call."""
    unstable: bool
    """``cv >= UNSTABLE_CV``: the numbers of this cell move too much to compare closely."""

    @classmethod
    def from_samples(cls, samples_ns: np.ndarray, batch_size: int) -> LatencyStats:
        samples = np.asarray(samples_ns, dtype=np.float64)
        if samples.size == 0:
            raise ValueError("no latency samples to summarise")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        mean_ns = float(samples.mean())
        std_ns = float(samples.std())
        cv = std_ns / mean_ns if mean_ns > 0 else 0.0
        p50, p90, p95, p99 = np.percentile(samples, [50, 90, 95, 99], method="linear")
        return cls(
            iterations=int(samples.size),
            total_seconds=float(samples.sum()) / _NS_PER_S,
            mean_ms=mean_ns / _NS_PER_MS,
            std_ms=std_ns / _NS_PER_MS,
            cv=cv,
            min_ms=float(samples.min()) / _NS_PER_MS,
            p50_ms=float(p50) / _NS_PER_MS,
            p90_ms=float(p90) / _NS_PER_MS,
            p95_ms=float(p95) / _NS_PER_MS,
            p99_ms=float(p99) / _NS_PER_MS,
            max_ms=float(samples.max()) / _NS_PER_MS,
            throughput_ips=batch_size * _NS_PER_S / mean_ns if mean_ns > 0 else float("inf"),
            unstable=cv >= UNSTABLE_CV,
        )

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)
