"""Speed of the reports and of compare on a 10,000-row run (tox -e perf).

Budgets from issue 6: every output of a 10,000-row run in under 5 s; compare of two such runs,
raw samples included, in under 10 s. The absolute figures and their ratio to writing the CSV
alone go into extra_info; the budget asserts live here, never in tests/.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.compare import CompareOptions, compare_runs
from harness.journal import JOURNAL_NAME, Journal
from harness.report import write_run_reports
from harness.report.frames import build_tables
from harness.report.store import read_report_folder, write_csv
from harness.report.synthetic import journal_records, write_journal

ROWS = 10_000
SAMPLES_PER_ROW = 100
# The book's four models x 2 backends x 2 devices = 16 cells, x 625 batch sizes = 10,000 rows.
BATCH_SIZES = tuple(range(1, ROWS // 16 + 1))


def ten_thousand_row_run(folder: Path, latency_ms: float, seed: int) -> Path:
    records = journal_records(
        folder.name,
        batch_sizes=BATCH_SIZES,
        backends=("keras", "onnxruntime"),
        latency_ms=latency_ms,
        samples=SAMPLES_PER_ROW,
        seed=seed,
    )
    # Two devices per backend: the same cells again on "gpu".
    records[-1:-1] = [record | {"device": "gpu"} for record in records if record["type"] == "cell"]
    write_journal(folder, records)
    return folder


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    return ten_thousand_row_run(tmp_path_factory.mktemp("base"), 1.0, seed=1)


def test_all_outputs_of_a_10000_row_run_within_budget(benchmark, base_run):
    journal = base_run / JOURNAL_NAME
    tables = build_tables(Journal(journal).records(), journal)
    assert len(tables.summary) == ROWS
    started = time.perf_counter()
    write_csv(tables.summary, base_run / "csv-alone.csv")
    csv_seconds = time.perf_counter() - started

    written = benchmark.pedantic(write_run_reports, args=(base_run,), rounds=1, iterations=1)
    seconds = benchmark.stats.stats.max
    benchmark.extra_info.update(
        rows=ROWS,
        samples=ROWS * SAMPLES_PER_ROW,
        files=len(written),
        all_outputs_seconds=seconds,
        csv_alone_seconds=csv_seconds,
        ratio_to_csv=seconds / csv_seconds,
    )
    assert seconds < 5.0, f"all outputs took {seconds:.2f} s (budget 5 s)"


def test_compare_two_10000_row_runs_within_budget(benchmark, base_run, tmp_path):
    if not (base_run / "run.json").exists():
        write_run_reports(base_run, plots=False)
    new_run = ten_thousand_row_run(tmp_path / "new", 1.2, seed=2)
    write_run_reports(new_run, plots=False)

    def read_and_compare():
        base, new = read_report_folder(base_run), read_report_folder(new_run)
        return compare_runs(base, new, CompareOptions())

    comparison = benchmark.pedantic(read_and_compare, rounds=1, iterations=1)
    seconds = benchmark.stats.stats.max
    benchmark.extra_info.update(rows=ROWS, compare_seconds=seconds)
    assert comparison.compared_rows == ROWS
    assert len(comparison.failures) > ROWS * 0.9  # every row shifted by 20%
    assert seconds < 10.0, f"compare took {seconds:.2f} s (budget 10 s)"
