"""What report.md says: the pooling trade-off, top confusions, failures, environment."""

from __future__ import annotations

from pathlib import Path

from harness.report.confusions import top_confusions
from harness.report.document import report_document
from harness.report.frames import build_tables
from harness.report.markdown import render_markdown, render_table, render_text
from harness.report.synthetic import (
    cell_record,
    end_record,
    journal_records,
    model_record,
    run_record,
)

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
CIFAR_CLASSES += ["dog", "frog", "horse", "ship", "truck"]


def markdown_of(records) -> str:
    tables = build_tables(records, Path("journal.jsonl"))
    return render_markdown(report_document(tables, plots=[]))


def test_top_confusions_are_the_largest_off_diagonal_counts_in_order():
    matrix = [[50, 2, 7], [13, 40, 0], [0, 1, 60]]
    found = [str(c) for c in top_confusions(matrix, ["a", "b", "c"], limit=3)]
    assert found == ["b predicted as a: 13", "a predicted as c: 7", "a predicted as b: 2"]


def test_a_perfect_matrix_has_no_confusions():
    assert top_confusions([[5, 0], [0, 5]], ["x", "y"]) == []


def test_report_shows_the_nopool_to_pool_dense_weight_ratio():
    markdown = markdown_of(journal_records(datasets=("mnist",)))
    pool = model_record(variant="pool")["counts"]["params_dense"]
    nopool = model_record(variant="nopool")["counts"]["params_dense"]
    assert f"{nopool:,} weights against {pool:,} with pooling" in markdown
    assert f"nopool/pool = {nopool / pool:.1f}x" in markdown


def test_report_lists_top_confusions_with_class_names():
    model = model_record("cifar10", "pool")
    model["class_names"] = CIFAR_CLASSES
    records = [run_record(), model, cell_record("cifar10", "pool"), end_record()]
    markdown = markdown_of(records)
    assert "book_cnn pool: dog predicted as cat: 13; horse predicted as truck: 4" in markdown


def test_report_has_a_table_per_dataset_with_latency_per_batch_size():
    markdown = markdown_of(journal_records(datasets=("mnist", "cifar10"), batch_sizes=(1, 32)))
    assert "## mnist" in markdown and "## cifar10" in markdown
    assert "p50 ms b=1" in markdown and "p50 ms b=32" in markdown
    assert "images/s b=32" in markdown


def test_report_marks_unstable_latency():
    cell = cell_record()
    cell["batches"][0]["stats"]["unstable"] = True
    markdown = markdown_of([run_record(), model_record(), cell])
    p50 = cell["batches"][0]["stats"]["p50_ms"]
    assert f"| {p50:#.3g}* " in markdown
    assert f"| {cell['batches'][1]['stats']['p50_ms']:#.3g} " in markdown
    assert "unstable: latency CV of 10% or more" in markdown


def test_report_lists_cells_that_did_not_measure_with_the_first_line_of_the_error():
    records = [
        run_record(),
        model_record(),
        cell_record(device="gpu", status="timeout", error="worker timed out after 300 s\ntrace"),
    ]
    markdown = markdown_of(records)
    assert "## Cells that did not measure" in markdown
    assert "| timeout | worker timed out after 300 s |" in markdown.replace("  ", "")
    assert "trace" not in markdown


def test_report_summarises_the_environment():
    markdown = markdown_of(journal_records())
    assert "CPU: Synthetic CPU (2 cores, 2 threads), RAM 8.0 GiB" in markdown
    assert "tensorflow 2.21.0" in markdown
    assert "time per phase: train 10.0 s" in markdown


def test_tables_are_aligned_and_escape_pipes():
    table = render_table(("a", "long header"), (("x|y", "1"),))
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert "x\\|y" in table


def test_terminal_text_has_no_heading_marks():
    tables = build_tables(journal_records(datasets=("mnist",)), Path("journal.jsonl"))
    text = render_text(report_document(tables, plots=[]))
    assert "\n#" not in text and not text.startswith("#")
    assert "Benchmark report\n================" in text
