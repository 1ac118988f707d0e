"""Serving scenarios in the style of MLPerf LoadGen, on the predictor a cell already measured.

Closed-loop latency (one call, wait, the next) says how fast one call is on an idle machine.
A service is asked something else: how many requests per second it can take before its p99
passes a budget, and how many images per second it can push at all.

**Server.** Queries of one image arrive at the times of a Poisson process at a target rate
(seeded exponential gaps). A dispatcher issues each at its scheduled time into a queue served by
``concurrency`` threads, each holding one query in flight. A query's latency runs from its
*scheduled* arrival to the end of its ``predict`` call, so waiting behind a slow call counts: a
stall shows in every query queued behind it. Timing only the call itself, as a closed loop
does, would hide that (coordinated omission). The dispatcher's own lateness (send time minus
scheduled time) is the load generator's scheduling error, reported per rate. A rate's run
issues at least ``min_queries`` queries (662: LoadGen's minimum for a p99 claim at 99%
confidence) over at least ``min_seconds`` of schedule. The highest rate whose p99 stays within
the bound is found by bisection in log space between two fractions of the capacity a short
closed loop suggests (``concurrency`` / mean call time), the top one doubled while it is still
within the bound; the rate reported is the highest one measured within the bound below the
lowest one measured beyond it, never a rate above a failure.

**Offline.** Every query at once: for each batch size and number of threads, the threads call
``predict`` back to back for ``offline_seconds``; images per second is images done over the
wall time. The best configuration is reported with the images per second it reached.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from harness.api import Predictor
from harness.suite import ServingConfig

P99_MIN_QUERIES = 662
"""MLPerf LoadGen's minimum query count for a 99th-percentile claim at 99% confidence."""
PROBE_SECONDS = 0.2
PROBE_MIN_CALLS = 10
"""The closed loop that estimates capacity: at least this many calls and this long."""
SEARCH_EXPANSIONS = 3
"""Doublings of the search's top rate while it is still within the bound."""

_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000

Clock = Callable[[], int]


@dataclass(frozen=True)
class ServerRun:
    """One rate's raw times in nanoseconds, per query in schedule order."""

    rate_qps: float
    scheduled_ns: np.ndarray
    """Scheduled arrival, from the run's start."""
    sent_ns: np.ndarray
    """When the dispatcher put the query in the queue, from the run's start."""
    done_ns: np.ndarray
    """When its ``predict`` call returned, from the run's start."""

    @property
    def latency_ns(self) -> np.ndarray:
        """From the scheduled arrival, so queueing counts."""
        return self.done_ns - self.scheduled_ns

    @property
    def schedule_error_ns(self) -> np.ndarray:
        return self.sent_ns - self.scheduled_ns


@dataclass(frozen=True)
class RatePoint:
    """What one rate's run measured; latencies and errors in milliseconds."""

    rate_qps: float
    queries: int
    seconds: float
    """From the run's start to the last query done."""
    achieved_qps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    schedule_error_p50_ms: float
    schedule_error_p99_ms: float
    schedule_error_max_ms: float

    @classmethod
    def from_run(cls, run: ServerRun) -> RatePoint:
        latency = run.latency_ns / _NS_PER_MS
        error = run.schedule_error_ns / _NS_PER_MS
        seconds = float(run.done_ns.max()) / _NS_PER_S
        p50, p90, p99 = np.percentile(latency, [50, 90, 99])
        error_p50, error_p99 = np.percentile(error, [50, 99])
        return cls(
            rate_qps=run.rate_qps,
            queries=len(latency),
            seconds=seconds,
            achieved_qps=len(latency) / seconds if seconds > 0 else math.inf,
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            max_ms=float(latency.max()),
            schedule_error_p50_ms=float(error_p50),
            schedule_error_p99_ms=float(error_p99),
            schedule_error_max_ms=float(error.max()),
        )


def poisson_schedule(rate_qps: float, queries: int, seed: int) -> np.ndarray:
    """Arrival times in ns from the start: cumulative exponential gaps of mean 1 / rate. One
    seed gives every rate the same unit-rate sequence scaled, so the curve compares like with
    like."""
    if not (math.isfinite(rate_qps) and rate_qps > 0):
        raise ValueError(f"rate must be a positive number of queries per second, got {rate_qps}")
    gaps = np.random.default_rng(seed).standard_exponential(queries) / rate_qps
    return np.round(np.cumsum(gaps) * _NS_PER_S).astype(np.int64)


def queries_for(rate_qps: float, min_queries: int, min_seconds: float) -> int:
    """At least ``min_queries``, and enough for ``min_seconds`` of schedule at this rate."""
    return max(min_queries, math.ceil(rate_qps * min_seconds))


def run_server(
    call: Callable[[int], object],
    rate_qps: float,
    queries: int,
    concurrency: int,
    seed: int,
    clock: Clock = time.perf_counter_ns,
) -> ServerRun:
    """Issue ``queries`` calls ``call(i)`` at Poisson arrival times, ``concurrency`` in flight."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    scheduled = poisson_schedule(rate_qps, queries, seed)
    sent = np.zeros(queries, dtype=np.int64)
    done = np.zeros(queries, dtype=np.int64)
    pending: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    errors: list[BaseException] = []
    start = 0

    def serve() -> None:
        while (index := pending.get()) is not None:
            try:
                call(index)
            except BaseException as exc:  # raised in the caller's thread below
                errors.append(exc)
            done[index] = clock() - start

    threads = [threading.Thread(target=serve, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    start = clock()
    try:
        for index, at in enumerate(scheduled.tolist()):
            wait_ns = at - (clock() - start)
            if wait_ns > 0:
                time.sleep(wait_ns / _NS_PER_S)
            sent[index] = clock() - start
            pending.put(index)
    finally:
        for _ in threads:
            pending.put(None)
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return ServerRun(rate_qps, scheduled, sent, done)


def closed_loop_seconds(
    call: Callable[[int], object], clock: Clock = time.perf_counter_ns
) -> float:
    """Mean seconds per call, one at a time, over at least ``PROBE_MIN_CALLS`` calls and
    ``PROBE_SECONDS``: the service time the capacity estimate and the search range rest on."""
    calls = 0
    start = clock()
    while calls < PROBE_MIN_CALLS or clock() - start < PROBE_SECONDS * _NS_PER_S:
        call(calls)
        calls += 1
    return (clock() - start) / _NS_PER_S / calls


@dataclass(frozen=True)
class ServerResult:
    """The Server scenario of one cell."""

    p99_bound_ms: float
    concurrency: int
    capacity_qps: float
    """``concurrency`` / closed-loop seconds per call: what the rates are fractions of."""
    max_qps: float | None
    """The highest rate measured with p99 within the bound, below every rate measured beyond
    it; None when even the lowest rate tried was beyond it."""
    p50_ms: float | None
    p99_ms: float | None
    """At ``max_qps``."""
    capped: bool
    """Every rate measured was within the bound (the top one doubled ``SEARCH_EXPANSIONS``
    times): the service takes more."""
    first_beyond_qps: float | None
    """The lowest rate measured beyond the bound: the crossing lies between it and max_qps."""
    schedule_error_p99_ms: float
    """The scheduling error's p99 at the highest rate measured."""
    curve: tuple[RatePoint, ...]
    """Every rate measured, by rate."""

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["curve"] = [asdict(point) for point in self.curve]
        return data


def search_max_rate(
    measure_rate: Callable[[float], RatePoint],
    low_qps: float,
    high_qps: float,
    bound_ms: float,
    steps: int,
) -> tuple[RatePoint | None, RatePoint | None, list[RatePoint]]:
    """Bisect (geometric midpoints) for the highest rate whose p99 is within ``bound_ms``.

    ``high_qps`` is measured first; while it is within the bound it doubles, up to
    ``SEARCH_EXPANSIONS`` times (the capacity it comes from is an estimate). ``low_qps`` is
    measured only when every midpoint was beyond the bound. Returns the highest rate measured
    within the bound below every rate measured beyond it (None if none), the lowest rate
    measured beyond it (None if none: the search was capped), and every point measured.
    """
    if not 0 < low_qps < high_qps:
        raise ValueError(f"the rate range must satisfy 0 < low < high, got {low_qps}, {high_qps}")
    points = [measure_rate(high_qps)]
    within: RatePoint | None = None
    for _ in range(SEARCH_EXPANSIONS):
        if points[-1].p99_ms > bound_ms:
            break
        within, low_qps = points[-1], points[-1].rate_qps
        points.append(measure_rate(2 * low_qps))
    beyond = points[-1]
    if beyond.p99_ms <= bound_ms:
        return beyond, None, points
    low, high = low_qps, beyond.rate_qps
    for _ in range(steps):
        point = measure_rate(math.sqrt(low * high))
        points.append(point)
        if point.p99_ms <= bound_ms:
            low, within = point.rate_qps, point
        else:
            high, beyond = point.rate_qps, point
    if within is None:
        point = measure_rate(low_qps)
        points.append(point)
        if point.p99_ms <= bound_ms:
            within = point
        else:
            beyond = point
    return within, beyond, points


def server_scenario(
    call: Callable[[int], object],
    config: ServingConfig,
    bound_ms: float,
    seed: int,
    clock: Clock = time.perf_counter_ns,
) -> ServerResult:
    """Estimate capacity with a closed loop, then search the rate range for the bound."""
    capacity = config.concurrency / closed_loop_seconds(call, clock)

    def measure_rate(rate: float) -> RatePoint:
        queries = queries_for(rate, config.min_queries, config.min_seconds)
        return RatePoint.from_run(run_server(call, rate, queries, config.concurrency, seed, clock))

    within, beyond, points = search_max_rate(
        measure_rate,
        config.rate_low * capacity,
        config.rate_high * capacity,
        bound_ms,
        config.search_steps,
    )
    highest = max(points, key=lambda point: point.rate_qps)
    return ServerResult(
        p99_bound_ms=bound_ms,
        concurrency=config.concurrency,
        capacity_qps=capacity,
        max_qps=within.rate_qps if within else None,
        p50_ms=within.p50_ms if within else None,
        p99_ms=within.p99_ms if within else None,
        capped=within is not None and beyond is None,
        first_beyond_qps=beyond.rate_qps if beyond else None,
        schedule_error_p99_ms=highest.schedule_error_p99_ms,
        curve=tuple(sorted(points, key=lambda point: point.rate_qps)),
    )


@dataclass(frozen=True)
class OfflineResult:
    """The Offline scenario of one cell: the best configuration and every one tried."""

    images_per_s: float
    batch_size: int
    concurrency: int
    configurations: tuple[tuple[int, int, float], ...]
    """(batch size, threads, images/s) for every configuration tried."""

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "configurations": [list(c) for c in self.configurations]}


def offline_throughput(
    call: Callable[[], object],
    batch_size: int,
    threads: int,
    seconds: float,
    clock: Clock = time.perf_counter_ns,
) -> float:
    """Images per second with ``threads`` threads calling ``call`` back to back."""
    deadline_ns = int(seconds * _NS_PER_S)
    calls = [0] * threads
    finished = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)
    start = 0

    def work(slot: int) -> None:
        barrier.wait()
        try:
            while clock() - start < deadline_ns:
                call()
                calls[slot] += 1
        except BaseException as exc:
            errors.append(exc)
        finished[slot] = clock() - start

    workers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for worker in workers:
        worker.start()
    start = clock()
    barrier.wait()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return sum(calls) * batch_size * _NS_PER_S / max(finished)


def offline_scenario(
    predictor: Predictor,
    images: np.ndarray,
    config: ServingConfig,
    clock: Clock = time.perf_counter_ns,
) -> OfflineResult:
    """Every batch size x thread count of the config; each batch size called once untimed
    first, so a runtime that specialises on a new shape (a traced function) does it then."""
    tried: list[tuple[int, int, float]] = []
    for batch_size in config.offline_batch_sizes:
        batch = np.ascontiguousarray(images[np.resize(np.arange(len(images)), batch_size)])
        predictor.predict(batch)
        for threads in config.offline_concurrency:
            rate = offline_throughput(
                lambda batch=batch: predictor.predict(batch),
                batch_size,
                threads,
                config.offline_seconds,
                clock,
            )
            tried.append((batch_size, threads, rate))
    best = max(tried, key=lambda entry: entry[2])
    return OfflineResult(best[2], best[0], best[1], tuple(tried))


def measure_serving(
    predictor: Predictor,
    images: np.ndarray,
    config: ServingConfig,
    bound_ms: float,
    seed: int,
) -> dict[str, object]:
    """Server then Offline on ``predictor``; the cell record's ``serving`` entry. Server
    queries take the images one at a time in a seeded order."""
    order = np.random.default_rng(seed).permutation(len(images))
    singles = [np.ascontiguousarray(images[i : i + 1]) for i in order]
    server = server_scenario(
        lambda index: predictor.predict(singles[index % len(singles)]), config, bound_ms, seed
    )
    offline = offline_scenario(predictor, images, config)
    return {"server": server.to_dict(), "offline": offline.to_dict()}
