"""Processes the runner starts die with it, whatever killed it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

RUNNER_WITH_PLOT_PROCESS = """
import sys, time
import psutil
from harness.report.background import PlotWorker
from harness.report.plots import load_matplotlib

worker = PlotWorker()
worker._pool.submit(load_matplotlib).result(timeout=120)  # the process is up
print(" ".join(str(child.pid) for child in psutil.Process().children(recursive=True)))
sys.stdout.flush()
time.sleep(300)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_report_plot_process_dies_with_a_runner_killed_by_sigkill():
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER_WITH_PLOT_PROCESS], stdout=subprocess.PIPE, text=True
    )
    children = [int(pid) for pid in runner.stdout.readline().split()]
    assert children, "the plot process did not start"
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + 15
    while not all(map(_gone, children)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in children if not _gone(pid)]
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, "processes outlived the runner: plot process or resource tracker"
