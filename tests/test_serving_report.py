"""The serving scenarios in the reports: summary columns per cell, the report.md table, the
rate-against-p99 figure, and a report written by a version without them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness.report import write_run_reports
from harness.report.document import report_document
from harness.report.frames import build_tables
from harness.report.markdown import render_markdown
from harness.report.plots import serving_plot
from harness.report.store import read_report_folder
from harness.report.synthetic import journal_records, serving_entry, write_journal


def records_with_serving() -> list[dict[str, Any]]:
    records = journal_records(datasets=("mnist",), batch_sizes=(1, 32))
    cells = [r for r in records if r["type"] == "cell"]
    for cell in cells:
        cell["serving"] = None
    cells[0]["serving"] = serving_entry()
    cells[1]["serving"] = serving_entry(max_qps=1600.0, capped=True)
    return records


def test_every_batch_row_of_a_cell_carries_its_serving_numbers() -> None:
    tables = build_tables(records_with_serving(), Path("journal.jsonl"))
    served = tables.summary.dropna(subset=["serving_max_qps"])
    assert len(served) == 4  # two cells x two batch sizes
    first = served.iloc[0]
    assert first.serving_p99_bound_ms == 10.0 and first.serving_p99_ms == 9.0
    assert first.offline_images_per_s == 5123.4
    assert (first.offline_batch_size, first.offline_concurrency) == (32, 2)
    assert tables.summary["serving_max_qps"].isna().sum() == len(tables.summary) - 4
    curve = tables.serving_curve
    assert len(curve) == 6 and set(curve["bound_ms"]) == {10.0}


def test_report_md_has_a_serving_table_with_its_explanation() -> None:
    tables = build_tables(records_with_serving(), Path("journal.jsonl"))
    markdown = render_markdown(report_document(tables, plots=[]))
    assert "max QPS at p99 ≤ bound" in markdown
    assert "| 800 " in markdown and "≥ 1,600" in markdown
    assert "32 x 2" in markdown and "5,123" in markdown
    assert "scheduled arrival" in markdown


def test_without_serving_the_report_has_no_serving_table_or_figure(tmp_path: Path) -> None:
    tables = build_tables(journal_records(datasets=("mnist",)), Path("journal.jsonl"))
    assert "max QPS" not in render_markdown(report_document(tables, plots=[]))
    assert tables.serving_curve.empty
    assert serving_plot(tables.serving_curve, tmp_path) is None


def test_a_run_with_serving_writes_the_figure_and_reads_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_journal(run_dir, records_with_serving())
    write_run_reports(run_dir)
    assert (run_dir / "plots" / "serving.png").stat().st_size > 10_000
    assert "plots/serving.png" in (run_dir / "report.md").read_text()
    summary = read_report_folder(run_dir).summary
    assert summary["serving_max_qps"].dropna().tolist() == [800.0, 800.0, 1600.0, 1600.0]


def test_a_summary_from_before_serving_reads_with_the_columns_empty(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_journal(run_dir, journal_records(datasets=("mnist",)))
    write_run_reports(run_dir, plots=False)
    parquet = run_dir / "summary.parquet"
    old = pd.read_parquet(parquet)
    old = old.drop(columns=[c for c in old.columns if c.startswith(("serving_", "offline_"))])
    old.to_csv(run_dir / "summary.csv", index=False)
    from harness.report.store import read_csv

    summary = read_csv(run_dir / "summary.csv")
    assert summary["serving_max_qps"].isna().all()
    assert summary["offline_batch_size"].dtype == "Int64"
