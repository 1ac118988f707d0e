"""A worker's memory: how much it may hold, and how much it holds now.

A cell that runs away (a huge batch, a plugin's leak) is stopped by its runner at a limit and
becomes an ``oom`` cell, rather than growing until the machine's out-of-memory killer picks a
victim: the runner, another job, or the worker with nothing said about memory. The runner
watches resident memory from outside; ``RLIMIT_AS`` would count the address space TensorFlow
reserves and never touches, and fail healthy workers.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil

MIB = 2**20
DEFAULT_LIMIT_FRACTION = 0.5
"""Without a setting, a worker may hold half the machine's memory: the runner, holding the
datasets and TensorFlow, needs the rest."""
CHILD_SCAN_INTERVAL_S = 1.0
"""Finding a worker's children reads every process's status; its own memory is one small read."""
CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
"""cgroup v2, then v1: a container's limit, which its out-of-memory killer enforces."""


def machine_memory_bytes() -> int:
    """Physical memory, or the container's limit where that is smaller."""
    total = psutil.virtual_memory().total
    for name in CGROUP_LIMIT_FILES:
        try:
            text = Path(name).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text.isdigit():  # v2 says "max" when unlimited
            return min(total, int(text))
    return total


def worker_memory_limit_bytes(limit_mib: int) -> int:
    """The suite's ``worker_memory_limit_mb`` in bytes; 0 means the default, a share of this
    machine's memory (kept out of the suite, so shards on different machines share a suite)."""
    if limit_mib:
        return limit_mib * MIB
    return int(machine_memory_bytes() * DEFAULT_LIMIT_FRACTION)


def describe_limit(limit_bytes: int) -> str:
    return f"{limit_bytes / MIB:,.0f} MiB"


def limit_error(resident: int, limit: int) -> str:
    """What a worker killed at its limit is told: the limit, what it reached, how to change it."""
    return (
        f"worker killed at its memory limit of {describe_limit(limit)}: it held "
        f"{resident / MIB:,.0f} MiB resident (with the processes it started); raise the limit "
        "with worker_memory_limit_mb in the suite or --memory-limit MB (default: half the "
        "machine's memory), or measure smaller batches"
    )


class ResidentMemory:
    """Resident bytes of a process and every process it started, as of the last :meth:`read`;
    ``peak`` is the most seen."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._children_bytes = 0
        self._next_scan = 0.0
        try:
            self._process: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:  # gone already
            self._process = None

    def read(self) -> int:
        if self._process is None:
            return 0
        try:
            own = self._process.memory_info().rss
            if time.monotonic() >= self._next_scan:
                self._children_bytes = sum(
                    _rss(child) for child in self._process.children(recursive=True)
                )
                self._next_scan = time.monotonic() + CHILD_SCAN_INTERVAL_S
        except psutil.Error:  # it exited between two reads
            return 0
        resident = own + self._children_bytes
        self.peak = max(self.peak, resident)
        return resident


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0
