"""How much of the machine other processes took while a phase measured.

Latency verdicts calibrated on a quiet machine do not hold on a loaded one: stored runs measured
beside another job gave false verdicts that quiet runs did not. So every run records, per
measuring phase, the share of the machine's CPU capacity (its logical CPUs x wall seconds) that
processes other than this one and its descendants used (``foreign_cpu``), and the share the
hypervisor stole (``steal``). Both come from Linux's ``/proc/stat``; elsewhere they are None.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

PROC_STAT = Path("/proc/stat")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_BUSY_FIELDS = (0, 1, 2, 5, 6)
"""user, nice, system, irq, softirq. Not guest and guest_nice: the kernel counts them inside
user and nice already. Not idle, iowait (idle waiting for I/O) or steal (reported apart)."""
_STEAL_FIELD = 7
JITTER_SHARE = 0.02
JITTER_TICKS_PER_CPU = 2
"""How far below zero ``foreign_cpu`` may come out before it is an error rather than jitter
(a share of the capacity plus ticks per CPU and span): ``/proc/stat`` counts in clock ticks
per CPU, a process's own time more finely."""


class MachineLoadError(RuntimeError):
    """This process's CPU time came out well above the whole machine's busy time: something was
    counted twice, and the share would be wrong."""


@dataclass(frozen=True)
class CpuTimes:
    """The machine's CPU time since boot, all logical CPUs together, in seconds."""

    busy: float
    steal: float
    cpus: int


def parse_proc_stat(text: str) -> CpuTimes:
    """The aggregate ``cpu`` line of ``/proc/stat`` and the number of ``cpuN`` lines."""
    fields: list[int] | None = None
    cpus = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name == "cpu":
            fields = [int(value) for value in rest.split()]
        elif name.startswith("cpu") and name[3:].isdigit():
            cpus += 1
    if fields is None or len(fields) <= _STEAL_FIELD or not cpus:
        raise ValueError("/proc/stat: no aggregate 'cpu' line with steal, or no 'cpuN' lines")
    busy = sum(fields[index] for index in _BUSY_FIELDS)
    return CpuTimes(busy / TICKS_PER_SECOND, fields[_STEAL_FIELD] / TICKS_PER_SECOND, cpus)


def read_cpu_times() -> CpuTimes | None:
    """The machine's CPU times, or None where there is no ``/proc/stat``."""
    try:
        return parse_proc_stat(PROC_STAT.read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None


def own_cpu_seconds() -> float:
    """CPU seconds of this process, its children it waited for, and every live descendant with
    the children each of those waited for: each process counted once. Read before the live
    ones, the waited-for total can miss a child reaped in between, never count it twice."""
    import resource  # POSIX only; called only where /proc/stat was read

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for process in psutil.Process().children(recursive=True):
        try:
            times = process.cpu_times()
        except psutil.Error:  # exited and reaped since it was listed
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


@dataclass
class MachineLoad:
    """What others took of the machine over one or more spans, added up."""

    read_cpu_times: Callable[[], CpuTimes | None] = read_cpu_times
    own_cpu_seconds: Callable[[], float] = own_cpu_seconds
    clock: Callable[[], float] = time.perf_counter
    seconds: float = 0.0
    capacity: float = 0.0
    """CPU seconds the machine had over the spans: logical CPUs x wall seconds."""
    foreign: float = 0.0
    steal: float = 0.0
    spans: int = 0
    unknown: bool = False
    """A span had no ``/proc/stat`` to read."""

    @contextmanager
    def span(self) -> Iterator[None]:
        """Measure the block; its figures add to those of earlier spans."""
        before = self.read_cpu_times()
        own = self.own_cpu_seconds() if before else 0.0
        started = self.clock()
        try:
            yield
        finally:
            after = self.read_cpu_times()
            own_after = self.own_cpu_seconds() if after else 0.0
            ended = self.clock()
            self.seconds += ended - started
            self.spans += 1
            if before is None or after is None:
                self.unknown = True
            else:
                self.capacity += before.cpus * (ended - started)
                self.foreign += (after.busy - before.busy) - (own_after - own)
                self.steal += after.steal - before.steal

    def to_dict(self) -> dict[str, Any]:
        """``foreign_cpu`` and ``steal`` as fractions of the capacity (None where unknown or
        nothing was measured), ``seconds`` of wall time. Raises :class:`MachineLoadError` when
        ``foreign_cpu`` comes out below zero by more than the clock ticks' jitter."""
        if self.unknown or self.capacity <= 0:
            return {"foreign_cpu": None, "steal": None, "seconds": self.seconds}
        ticks = self.spans * JITTER_TICKS_PER_CPU * self.capacity / self.seconds
        tolerance = JITTER_SHARE * self.capacity + ticks / TICKS_PER_SECOND
        if self.foreign < -tolerance:
            raise MachineLoadError(
                f"this process and its children used {-self.foreign:.3f} CPU seconds more than "
                f"/proc/stat counted busy over {self.seconds:.3f} s (jitter allows "
                f"{tolerance:.3f}): its own CPU time was overcounted"
            )
        return {
            "foreign_cpu": min(1.0, max(0.0, self.foreign) / self.capacity),
            "steal": min(1.0, max(0.0, self.steal) / self.capacity),
            "seconds": self.seconds,
        }

    def to_record(self, phase: str, log: Callable[[str], None]) -> dict[str, Any]:
        """:meth:`to_dict`, or None figures and a warning when it fails: a measuring phase
        is not lost over its record of the machine."""
        try:
            return self.to_dict()
        except MachineLoadError as exc:
            log(f"warning: the {phase} phase's machine load is not recorded: {exc}")
            return {"foreign_cpu": None, "steal": None, "seconds": self.seconds}


def trial_phase_foreign_cpu(run: Mapping[str, Any]) -> float | None:
    """A run record's (run.json ``runs[]``) share of the CPU other processes took during its
    trial phase; None for a run from before the record or where it was not measured."""
    return ((run.get("machine_load") or {}).get("trials") or {}).get("foreign_cpu")
