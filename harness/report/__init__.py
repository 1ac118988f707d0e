"""Reports of a run: tidy pandas tables, data files, plots, Markdown, HTML, pytest-benchmark JSON.

``write_run_reports(run_dir)`` is the one entry point: it reads the run folder's journal and
(re)writes every output, so ``harness report`` after a run, a resume or a merge is the same call.
Heavy libraries (pandas, pyarrow, matplotlib) are imported when it is called, not with
``harness``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
BENCHMARK_JSON = "benchmark.json"


def write_run_reports(run_dir: Path, *, plots: bool = True) -> list[Path]:
    """Rebuild every report file of ``run_dir`` from its journal; returns the paths written.

    ``plots=False`` skips the PNG figures (the slowest part) and leaves them out of the
    Markdown and HTML.
    """
    from harness.journal import JOURNAL_NAME, Journal
    from harness.report.atomic import write_text
    from harness.report.background import PlotWorker
    from harness.report.benchmark_json import write_benchmark_json
    from harness.report.document import report_document
    from harness.report.frames import build_tables
    from harness.report.html import render_html
    from harness.report.markdown import render_markdown
    from harness.report.store import (
        RUN_JSON,
        SAMPLES_PARQUET,
        SUMMARY_CSV,
        SUMMARY_PARQUET,
        TRIALS_PARQUET,
        summary_records,
        write_csv,
        write_parquet,
        write_run_json,
    )

    run_dir = Path(run_dir)
    journal = run_dir / JOURNAL_NAME
    figures = []
    with PlotWorker() if plots else contextlib.nullcontext() as worker:
        tables = build_tables(Journal(journal).records(), journal)
        if worker is not None:
            worker.draw(tables, run_dir)
        records = summary_records(tables.summary)
        written = [
            write_parquet(tables.summary, run_dir / SUMMARY_PARQUET),
            write_parquet(tables.samples, run_dir / SAMPLES_PARQUET),
            write_parquet(tables.trials, run_dir / TRIALS_PARQUET),
            write_csv(tables.summary, run_dir / SUMMARY_CSV),
            write_run_json(tables, run_dir / RUN_JSON, records),
            write_benchmark_json(tables, run_dir / BENCHMARK_JSON, records),
        ]
        if worker is not None:
            figures = worker.plots()
    written += [run_dir / figure.path for figure in figures]
    blocks = report_document(tables, figures)
    written.append(write_text(run_dir / REPORT_MD, render_markdown(blocks)))
    written.append(write_text(run_dir / REPORT_HTML, render_html(blocks, run_dir)))
    return written
