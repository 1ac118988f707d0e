"""The summary and samples tables built from journal records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.errors import DataError
from harness.report.frames import build_tables
from harness.report.schema import IDENTITY, SAMPLE_COLUMNS, SUMMARY_COLUMNS, column_names
from harness.report.synthetic import (
    cell_record,
    end_record,
    journal_records,
    model_record,
    run_record,
)

SOURCE = Path("journal.jsonl")


def test_summary_has_the_schema_columns_in_order_with_their_dtypes():
    summary = build_tables(journal_records(), SOURCE).summary
    assert list(summary.columns) == column_names(SUMMARY_COLUMNS)
    for column in SUMMARY_COLUMNS:
        assert str(summary[column.name].dtype) == column.dtype, column.name


def test_every_schema_column_has_a_meaning_and_a_unique_name():
    names = column_names(SUMMARY_COLUMNS)
    assert len(names) == len(set(names))
    assert all(column.meaning for column in (*SUMMARY_COLUMNS, *SAMPLE_COLUMNS))


def test_summary_has_one_row_per_identity():
    records = journal_records(datasets=("mnist", "cifar10"), batch_sizes=(1, 4, 8))
    summary = build_tables(records, SOURCE).summary
    # 2 datasets x 2 variants x 2 backends x 3 batch sizes
    assert len(summary) == 24
    assert not summary.duplicated(list(IDENTITY)).any()


def test_summary_joins_model_counts_and_cell_measurements():
    records = [run_record(), model_record("mnist", "nopool"), cell_record("mnist", "nopool")]
    row = build_tables(records, SOURCE).summary.iloc[0]
    counts = records[1]["counts"]
    assert row["params_dense"] == counts["params_dense"]
    assert row["macs_per_image"] == counts["macs_per_image"]
    assert row["onnx_bytes"] == 3_000_000
    assert row["providers"] == "CPUExecutionProvider"
    assert row["threads"] == '{"intra_op": 2}'
    stats = records[2]["batches"][0]["stats"]
    assert row["p50_ms"] == stats["p50_ms"]
    assert row["run_id"] == "run-a"


def test_achieved_gflops_is_two_macs_per_image_times_batch_over_p50_and_a_share_of_the_peak():
    records = [run_record(), model_record("mnist", "pool"), cell_record("mnist", "pool")]
    row = build_tables(records, SOURCE).summary.iloc[0]
    expected = 2 * row["macs_per_image"] * row["batch_size"] / (row["p50_ms"] / 1e3) / 1e9
    assert row["achieved_gflops"] == pytest.approx(expected)
    assert row["peak_gflops"] == 100.0
    assert row["peak_fraction"] == pytest.approx(expected / 100.0)


@pytest.mark.parametrize(("end_gflops", "expected"), [(130.0, 130.0), (80.0, 100.0), (None, 100.0)])
def test_the_peak_is_the_best_of_the_runs_start_and_end(end_gflops, expected):
    end = end_record()
    if end_gflops is not None:
        end["gemm_peak"] = {"gflops": end_gflops, "engine": "synthetic", "size": 512}
    records = [run_record(), model_record("mnist", "pool"), cell_record("mnist", "pool"), end]
    row = build_tables(records, SOURCE).summary.iloc[0]
    assert row["peak_gflops"] == expected  # the start's peak is 100
    assert row["peak_fraction"] == pytest.approx(row["achieved_gflops"] / expected)


def test_a_cell_that_did_not_measure_has_a_row_per_planned_batch_size():
    records = [
        run_record(),  # the suite plans batch sizes 1 and 8
        model_record(),
        cell_record(status="unavailable", error="no CUDA device"),
    ]
    summary = build_tables(records, SOURCE).summary
    assert summary["batch_size"].tolist() == [1, 8]
    assert (summary["status"] == "unavailable").all()
    assert (summary["error"] == "no CUDA device").all()
    assert summary["p50_ms"].isna().all()
    assert summary["params_total"].notna().all()


def test_samples_are_long_format_with_every_raw_sample():
    records = [run_record(), model_record(), cell_record(batch_sizes=(1, 8), samples=7)]
    samples = build_tables(records, SOURCE).samples
    assert list(samples.columns) == column_names(SAMPLE_COLUMNS)
    assert len(samples) == 14
    first = samples[samples["batch_size"] == 1]
    assert first["sample_index"].tolist() == list(range(7))
    assert first["latency_ns"].tolist() == records[2]["batches"][0]["samples_ns"]


def test_a_resumed_cell_replaces_the_earlier_record_of_the_same_run():
    records = [
        run_record(),
        model_record(),
        cell_record(status="crashed", error="killed"),
        run_record(),  # --resume writes the run record again
        cell_record(latency_ms=2.0),
        end_record(),
    ]
    tables = build_tables(records, SOURCE)
    assert tables.summary["status"].tolist() == ["ok", "ok"]
    assert len(tables.runs) == 1
    assert tables.runs[0]["wall_seconds"] == 60.0


def test_an_unfinished_run_has_no_end_fields():
    tables = build_tables([run_record(), model_record(), cell_record()], SOURCE)
    assert "finished" not in tables.runs[0]


def test_a_cell_before_any_run_record_is_an_error_naming_the_journal():
    with pytest.raises(DataError, match=r"journal\.jsonl: record 1"):
        build_tables([cell_record()], SOURCE)


def test_a_cell_without_identity_is_an_error():
    broken = cell_record()
    del broken["backend"]
    with pytest.raises(DataError, match="complete identity"):
        build_tables([run_record(), broken], SOURCE)


def test_an_empty_run_gives_empty_tables_with_the_schema():
    tables = build_tables([run_record()], SOURCE)
    assert tables.summary.empty and tables.samples.empty
    assert list(tables.summary.columns) == column_names(SUMMARY_COLUMNS)
    assert isinstance(tables.summary, pd.DataFrame)
