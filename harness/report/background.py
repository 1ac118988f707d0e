"""Draw the plots in a second process while this one writes the data files.

Matplotlib rendering and JSON/CSV encoding are both CPU-bound Python that holds the GIL, so
threads do not overlap them; a second process does. It is started (spawned, not forked: the
runner that writes reports has TensorFlow's threads running, and forking a threaded process can
deadlock) when the report starts, imports matplotlib while this process reads the journal, and
then draws from a copy of the few columns the plots need. Where a process cannot be started
(e.g. inside a daemonic worker), the plots are drawn here, as before.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pandas as pd

from harness.report.plots import PLOT_COLUMNS, Plot, load_matplotlib, write_plots


class PlotWorker:
    """One background process for the plots; ``draw`` then ``plots`` collects them."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._pending: Future[list[Plot]] | None = None
        self._arguments: tuple[pd.DataFrame, list[dict[str, Any]], Path] | None = None
        try:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            self._pool.submit(load_matplotlib)
        except (OSError, AssertionError, BrokenProcessPool):
            # AssertionError: a daemonic process may not have children.
            self.close()

    def draw(self, summary: pd.DataFrame, models: list[dict[str, Any]], run_dir: Path) -> None:
        self._arguments = (summary[PLOT_COLUMNS], models, run_dir)
        if self._pool is not None:
            self._pending = self._pool.submit(write_plots, *self._arguments)

    def plots(self) -> list[Plot]:
        """The plots drawn; a plotting error is raised here, whichever process drew them."""
        if self._arguments is None:
            raise RuntimeError("PlotWorker.plots() called before draw()")
        if self._pending is not None:
            try:
                return self._pending.result()
            except BrokenProcessPool:
                pass  # the process died (killed, out of memory): draw here instead
        return write_plots(*self._arguments)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> PlotWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
