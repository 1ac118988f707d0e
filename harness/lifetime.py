"""A child process dies with the process that started it, whatever killed that one.

The runner's workers, the trial workers and the report's plot process must not outlive a runner
killed by SIGKILL (a CI cancel after its grace period, the out-of-memory killer): an orphan
keeps the cores busy and the memory held under PID 1. On Linux the kernel sends the child
SIGKILL when its parent dies (``PR_SET_PDEATHSIG``); elsewhere a watchdog thread does.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

RUNNER_PID_VARIABLE = "HARNESS_RUNNER_PID"
"""Set by the runner for its workers: the pid a worker checks its parent against at start."""
WATCHDOG_INTERVAL_S = 0.5
PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""


def die_with_parent(kill_group: bool = True) -> None:
    """Make this process die when its parent dies, even by SIGKILL.

    ``kill_group``: the watchdog (where the kernel cannot help) kills this process's whole
    group, for a worker that leads its own group with the plugin processes it started; else
    only this process. A parent that died before this call is caught by comparing the parent
    with the pid the runner passed down (or the parent at start).
    """
    expected = int(os.environ.get(RUNNER_PID_VARIABLE) or os.getppid())
    if not set_parent_death_signal():
        threading.Thread(target=_watch_parent, args=(expected, kill_group), daemon=True).start()
    if os.getppid() != expected:
        print(f"harness: parent pid {expected} is gone; exiting", file=sys.stderr)
        os._exit(1)


def die_with_parent_process() -> None:
    """:func:`die_with_parent` for a process in its parent's group (a pool's initializer)."""
    die_with_parent(kill_group=False)


def set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where that is not possible.

    The signal comes when the thread that started the process exits, so the runner starts
    its children from its main thread.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def _watch_parent(expected: int, kill_group: bool) -> None:
    while os.getppid() == expected:
        time.sleep(WATCHDOG_INTERVAL_S)
    if kill_group:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(1)
