"""Draw the plots in a second process while this one writes the data files, then share the rest.

Matplotlib rendering and JSON/CSV encoding are both CPU-bound Python that holds the GIL, so
threads do not overlap them; a second process does. It is started (spawned, not forked: the
runner that writes reports has TensorFlow's threads running, and forking a threaded process can
deadlock) when the report starts and imports matplotlib while this process reads the journal.
Each figure is a task of its own: the second process draws from the front of the list; once
this process has written the data files, it draws the figures not yet started from the back, so
both cores stay busy to the end. Where a process cannot be started (e.g. inside a daemonic
worker), or dies, the figures are drawn here. The process dies with this one
(:mod:`harness.lifetime`): a runner killed while writing its reports leaves no plot process
behind, nor multiprocessing's resource tracker, which exits once no process holds its pipe.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from harness.lifetime import die_with_parent_process
from harness.report.frames import RunTables
from harness.report.plots import Plot, PlotTask, load_matplotlib, plot_tasks


class PlotWorker:
    """One background process for the plots; ``draw`` then ``plots`` collects them."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._tasks: list[PlotTask] | None = None
        self._futures: list[Future[Plot | None] | None] = []
        try:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent_process,
            )
            self._pool.submit(load_matplotlib)
        except (OSError, AssertionError, BrokenProcessPool):
            # AssertionError: a daemonic process may not have children.
            self.close()

    def draw(self, tables: RunTables, run_dir: Path) -> None:
        self._tasks = plot_tasks(tables, run_dir)
        self._futures = [self._submit(task) for task in self._tasks]

    def plots(self) -> list[Plot]:
        """The plots drawn, in report order; a plotting error is raised here, whichever
        process drew them."""
        if self._tasks is None:
            raise RuntimeError("PlotWorker.plots() called before draw()")
        drawn: list[Plot | None] = [None] * len(self._tasks)
        pending = list(range(len(self._tasks)))
        while pending and _can_take(self._futures[pending[-1]]):
            index = pending.pop()  # not started in the background: draw it here
            drawn[index] = self._draw_here(index)
        for index in pending:
            drawn[index] = self._collect(index)
        return [plot for plot in drawn if plot is not None]

    def _draw_here(self, index: int) -> Plot | None:
        function, arguments = self._tasks[index]
        return function(*arguments)

    def _submit(self, task: PlotTask) -> Future[Plot | None] | None:
        if self._pool is None:
            return None
        try:
            return self._pool.submit(task[0], *task[1])
        except BrokenProcessPool:
            return None

    def _collect(self, index: int) -> Plot | None:
        future = self._futures[index]
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                pass  # the process died (killed, out of memory): draw here instead
        return self._draw_here(index)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> PlotWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _can_take(future: Future[Plot | None] | None) -> bool:
    """True when this process should draw the figure: no background task, or one not started
    (cancelled here, so the background process skips it)."""
    return future is None or future.cancel()
