"""The share of the machine other processes and the hypervisor took over a measured span."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from harness.machine_load import (
    TICKS_PER_SECOND,
    CpuTimes,
    MachineLoad,
    MachineLoadError,
    parse_proc_stat,
    read_cpu_times,
)


def proc_stat(user: int, nice: int, system: int, idle: int, steal: int, guest: int = 0) -> str:
    """/proc/stat of a 2-CPU machine in clock ticks; iowait, irq and softirq 5 each."""
    fields = f"{user} {nice} {system} {idle} 5 5 5 {steal} {guest} 0"
    return f"cpu  {fields}\ncpu0 {fields}\ncpu1 {fields}\nintr 1 2 3\nctxt 99\n"


def fake_load(stats: list[str], own: list[float], clock: list[float]) -> MachineLoad:
    """A MachineLoad reading the given /proc/stat texts, own CPU seconds and clock in turn."""
    stats_, own_, clock_ = iter(stats), iter(own), iter(clock)
    return MachineLoad(
        read_cpu_times=lambda: parse_proc_stat(next(stats_)),
        own_cpu_seconds=lambda: next(own_),
        clock=lambda: next(clock_),
    )


def ticks(seconds: float) -> int:
    return round(seconds * TICKS_PER_SECOND)


def test_busy_time_others_used_is_foreign_and_steal_is_apart():
    # 2 CPUs x 10 s = 20 CPU seconds. Busy (user+nice+system+irq+softirq) grows by 11 s, this
    # process and its children used 6 s: 5 s, a quarter, were others'. 2 s were stolen.
    before = proc_stat(ticks(100), ticks(10), ticks(20), ticks(500), ticks(1))
    after = proc_stat(ticks(107), ticks(12), ticks(22), ticks(505), ticks(3), guest=ticks(4))
    load = fake_load([before, after], own=[30.0, 36.0], clock=[50.0, 60.0])
    with load.span():
        pass
    assert load.to_dict() == pytest.approx({"foreign_cpu": 0.25, "steal": 0.1, "seconds": 10.0})


def test_spans_add_up():
    stats = [proc_stat(ticks(s), 0, 0, 0, 0) for s in (0, 4, 10, 12)]
    load = fake_load(stats, own=[0.0, 2.0, 5.0, 5.0], clock=[0.0, 4.0, 100.0, 101.0])
    for _ in range(2):
        with load.span():
            pass
    # 5 s wall on 2 CPUs; busy 4 + 2 = 6 s, own 2 + 0 = 2 s.
    assert load.to_dict() == pytest.approx({"foreign_cpu": 0.4, "steal": 0.0, "seconds": 5.0})


def test_jitter_below_zero_is_clamped_and_more_is_an_error():
    stats = [proc_stat(0, 0, 0, 0, 0), proc_stat(ticks(10), 0, 0, 0, 0)]
    jitter = fake_load(stats, own=[0.0, 10.05], clock=[0.0, 10.0])
    with jitter.span():
        pass
    assert jitter.to_dict()["foreign_cpu"] == 0.0
    overcounted = fake_load(stats, own=[0.0, 13.0], clock=[0.0, 10.0])
    with overcounted.span():
        pass
    with pytest.raises(MachineLoadError, match=r"3\.000 CPU seconds more than /proc/stat"):
        overcounted.to_dict()
    warnings: list[str] = []
    record = overcounted.to_record("latency", warnings.append)
    assert record == {"foreign_cpu": None, "steal": None, "seconds": 10.0}
    assert warnings[0].startswith("warning: the latency phase's machine load is not recorded")


def test_without_proc_stat_the_shares_are_none():
    load = MachineLoad(read_cpu_times=lambda: None, own_cpu_seconds=lambda: 0.0)
    with load.span():
        pass
    record = load.to_dict()
    assert record["foreign_cpu"] is None and record["steal"] is None and record["seconds"] >= 0


def test_a_phase_that_did_not_run_has_no_shares():
    assert MachineLoad().to_dict() == {"foreign_cpu": None, "steal": None, "seconds": 0.0}


def test_proc_stat_without_an_aggregate_line_is_refused():
    with pytest.raises(ValueError, match="no aggregate 'cpu' line"):
        parse_proc_stat("intr 1 2 3\n")


_MEASURED = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from harness.machine_load import MachineLoad, own_cpu_seconds
    start, busy = float(sys.argv[1]), sys.argv[2] == "busy"
    time.sleep(max(0.0, start - time.time()))
    load, own = MachineLoad(), own_cpu_seconds()
    with load.span():
        if busy:  # a child busy beyond the span, and this process itself
            child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        end = time.perf_counter() + 1.0
        while time.perf_counter() < end:
            if not busy:
                time.sleep(0.01)
    own = own_cpu_seconds() - own
    if busy:
        child.kill()
        child.wait()
    print(json.dumps({"own": own / (load.capacity or 1), **load.to_dict()}))
    """
)


@pytest.mark.skipif(read_cpu_times() is None, reason="needs Linux's /proc/stat")
def test_a_busy_neighbour_is_foreign_and_the_measured_processes_own_work_is_not():
    """Two processes measure the same second: one busy (itself and a child), one asleep. Its
    busy neighbour is foreign to the sleeper and not to itself, whatever else the machine runs:
    the difference between their foreign shares is the busy one's own share."""
    start = time.time() + 1.5  # both interpreters have started by then
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = {
        mode: subprocess.Popen(
            [sys.executable, "-c", _MEASURED, str(start), mode],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for mode in ("busy", "idle")
    }
    busy, idle = (json.loads(procs[mode].communicate(timeout=60)[0]) for mode in ("busy", "idle"))
    assert busy["own"] > 0.1, busy  # it got some of the machine, however loaded
    difference = idle["foreign_cpu"] - busy["foreign_cpu"]
    assert difference == pytest.approx(busy["own"], abs=0.1), (busy, idle)


def test_cpu_times_are_read_as_seconds():
    times = parse_proc_stat(proc_stat(ticks(1), ticks(2), ticks(3), ticks(4), ticks(5)))
    assert times == CpuTimes(busy=pytest.approx(6 + 2 * 5 / TICKS_PER_SECOND), steal=5.0, cpus=2)
