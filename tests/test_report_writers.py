"""Every report file round-trips, is written atomically, and bad files are named in errors."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import DataError
from harness.journal import JOURNAL_NAME, Journal
from harness.report import write_run_reports
from harness.report.benchmark_json import benchmark_document
from harness.report.frames import build_tables
from harness.report.store import (
    read_csv,
    read_parquet,
    read_report_folder,
    read_run_json,
    write_parquet,
)
from harness.report.synthetic import (
    cell_record,
    journal_records,
    model_record,
    run_record,
    write_journal,
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run with a failed cell, written once with every output (plots too)."""
    folder = tmp_path_factory.mktemp("run")
    records = journal_records(datasets=("mnist",), samples=20)
    records.insert(-1, cell_record(device="gpu", status="failed", error="CUDA error: oops"))
    write_journal(folder, records)
    write_run_reports(folder)
    return folder


@pytest.fixture(scope="module")
def tables(run_dir):
    return build_tables(Journal(run_dir / JOURNAL_NAME).records(), run_dir / JOURNAL_NAME)


def test_every_output_is_written(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    expected = {"summary.parquet", "samples.parquet", "summary.csv", "run.json"}
    expected |= {"benchmark.json", "report.md", "report.html", "plots"}
    assert expected <= names
    plots = {p.name for p in (run_dir / "plots").iterdir()}
    assert {"latency.png", "accuracy_vs_params.png", "throughput.png"} <= plots
    assert "latency_vs_accuracy_mnist.png" in plots
    assert "confusion_mnist_book_cnn_pool.png" in plots
    assert not [p for p in run_dir.rglob("*.tmp")], "temporary files left behind"


def test_parquet_round_trips_both_tables(run_dir, tables):
    pd.testing.assert_frame_equal(read_parquet(run_dir / "summary.parquet"), tables.summary)
    pd.testing.assert_frame_equal(read_parquet(run_dir / "samples.parquet"), tables.samples)


def test_csv_round_trips_the_summary(run_dir, tables):
    pd.testing.assert_frame_equal(read_csv(run_dir / "summary.csv"), tables.summary)


def test_run_json_round_trips_summary_and_runs(run_dir, tables):
    document = read_run_json(run_dir / "run.json")
    pd.testing.assert_frame_equal(document["summary"], tables.summary)
    assert document["runs"] == json.loads(json.dumps(tables.runs))
    assert document["runs"][0]["environment"]["cpu_model"] == "Synthetic CPU"
    assert document["runs"][0]["phases"]["latency"] == 30.0
    assert document["runs"][0]["machine_load"]["trials"]["foreign_cpu"] == 0.01


def test_the_machine_load_reaches_the_tables_compare_reads(run_dir):
    (run,) = read_report_folder(run_dir).runs
    assert run["machine_load"] == {
        "latency": {"foreign_cpu": 0.02, "steal": 0.0, "seconds": 30.0},
        "trials": {"foreign_cpu": 0.01, "steal": 0.0, "seconds": 12.0},
    }


def test_a_run_from_before_the_machine_load_has_none(tmp_path):
    records = journal_records(datasets=("mnist",), variants=("pool",))
    del records[-1]["machine_load"]
    (run,) = build_tables(records, tmp_path / JOURNAL_NAME).runs
    assert "machine_load" not in run


def test_benchmark_json_holds_the_raw_samples_statistics(run_dir, tables):
    document = json.loads((run_dir / "benchmark.json").read_text())
    assert document == json.loads(json.dumps(benchmark_document(tables)))
    ok_rows = tables.summary[tables.summary["status"] == "ok"]
    assert len(document["benchmarks"]) == len(ok_rows)
    bench = next(b for b in document["benchmarks"] if b["params"]["batch_size"] == 8)
    identity = bench["params"]
    samples = tables.samples
    mask = np.ones(len(samples), dtype=bool)
    for name, value in identity.items():
        mask &= (samples[name] == value).to_numpy()
    seconds = samples.loc[mask, "latency_ns"].to_numpy() / 1e9
    assert bench["stats"]["rounds"] == seconds.size
    assert bench["stats"]["median"] == pytest.approx(np.median(seconds))
    assert bench["stats"]["min"] == pytest.approx(seconds.min())


def test_pytest_benchmark_compare_accepts_the_exported_json(run_dir, tmp_path):
    script = Path(sys.executable).with_name("pytest-benchmark")
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install pytest-benchmark)")
    result = subprocess.run(
        [str(script), "compare", str(run_dir / "benchmark.json")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "onnxruntime[mnist-book_cnn-pool-cpu-b8]" in result.stdout


def test_html_is_self_contained(run_dir):
    html = (run_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "http://" not in html and "https://" not in html
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)


def test_markdown_lists_the_failed_cell_with_its_error(run_dir):
    markdown = (run_dir / "report.md").read_text()
    assert "CUDA error: oops" in markdown
    assert "![Latency by backend, device and batch size](plots/latency.png)" in markdown


def test_report_rebuilds_the_same_data_from_the_journal(run_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / JOURNAL_NAME).write_bytes((run_dir / JOURNAL_NAME).read_bytes())
    write_run_reports(copy, plots=False)
    for name in ("summary.csv", "run.json", "benchmark.json"):
        assert (copy / name).read_text() == (run_dir / name).read_text(), name


def test_a_truncated_parquet_is_an_error_naming_the_file(run_dir, tmp_path):
    broken = tmp_path / "summary.parquet"
    data = (run_dir / "summary.parquet").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=re.escape(str(broken))):
        read_parquet(broken)


def test_a_parquet_of_another_schema_version_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "summary.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(path)
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*schema version"):
        read_parquet(path)


def test_a_run_json_of_another_schema_version_is_an_error_naming_the_file(run_dir, tmp_path):
    path = tmp_path / "run.json"
    document = json.loads((run_dir / "run.json").read_text())
    document["schema_version"] = 999
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*999"):
        read_run_json(path)


def test_a_folder_without_reports_is_an_error_naming_the_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"run\.json: missing"):
        read_report_folder(tmp_path)


def test_a_write_that_fails_halfway_keeps_the_previous_file(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    def write_half_then_fail(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", write_half_then_fail)
    path = tmp_path / "summary.parquet"
    path.write_bytes(b"previous")
    with pytest.raises(OSError, match="disk full"):
        write_parquet(pd.DataFrame({"a": [1]}), path)
    assert path.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [path]


def test_report_of_an_interrupted_run_works(tmp_path):
    write_journal(tmp_path, [run_record(), model_record(), cell_record()])
    with (tmp_path / JOURNAL_NAME).open("a") as f:
        f.write('{"type": "cell", "dataset": "mni')  # killed mid-write
    with pytest.warns(UserWarning, match="torn last line"):
        write_run_reports(tmp_path, plots=False)
    assert "unfinished" in (tmp_path / "report.md").read_text()


def test_figures_drawn_by_both_processes_come_back_in_report_order(run_dir, tables, tmp_path):
    from harness.report.background import PlotWorker
    from harness.report.plots import plot_tasks

    tasks = plot_tasks(tables, tmp_path)
    drawn_here = [function(*arguments) for function, arguments in tasks]
    expected = [plot.path for plot in drawn_here if plot is not None]
    with PlotWorker() as worker:
        worker.draw(tables, tmp_path)
        shared = [plot.path for plot in worker.plots()]
    assert shared == expected
    assert [path.name for path in expected[:4]] == [
        "latency.png",
        "accuracy_vs_params.png",
        "latency_vs_accuracy_mnist.png",
        "throughput.png",
    ]


@pytest.fixture
def drawn(monkeypatch):
    """Figures by file name, drawn (tick labels laid out) instead of saved."""
    from harness.report import plots

    figures = {}

    def keep(figure, run_dir, name, title):
        figure.canvas.draw()
        figures[name] = figure
        return plots.Plot(title=title, path=Path(plots.PLOTS_DIR) / name)

    monkeypatch.setattr(plots, "_save", keep)
    yield figures
    plots._pyplot().close("all")


def spread_tables(latency_ms: float = 0.2):
    """Cells from 0.2 ms (pool, batch 1) to about 100 times that (nopool, batch 64)."""
    records = journal_records(datasets=("mnist",), batch_sizes=(1, 8, 64), latency_ms=latency_ms)
    for record in records:
        if record.get("variant") == "nopool" and record["type"] == "cell":
            record.update(
                cell_record(
                    backend=record["backend"],
                    variant="nopool",
                    batch_sizes=(1, 8, 64),
                    latency_ms=latency_ms * 30,
                )
            )
    return build_tables(records, Path(JOURNAL_NAME))


def visible_labels(axis):
    return [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]


def test_the_latency_plot_uses_log_axes_with_plain_labels(drawn, tmp_path):
    from harness.report.plots import plot_tasks

    for function, arguments in plot_tasks(spread_tables(), tmp_path)[:4]:
        function(*arguments)
    latency = drawn["latency.png"]
    panels = [ax for ax in latency.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["batch size 1", "batch size 8", "batch size 64"]
    for ax in panels:
        assert ax.get_yscale() == "log"
        labels = [t.get_text() for t in visible_labels(ax.yaxis)]
        assert len(labels) >= 3 and all(re.fullmatch(r"[0-9.]+k?", t) for t in labels), labels
    assert "whiskers: p1 to p99" in latency._suptitle.get_text()
    for name in ("latency_vs_accuracy_mnist.png", "throughput.png"):
        assert all(ax.get_xscale() == "log" for ax in drawn[name].axes), name
    assert "measured on Synthetic CPU, 2 cores (run run-a)" in [t.get_text() for t in latency.texts]


def test_tick_labels_of_the_accuracy_plot_do_not_overlap(drawn, tmp_path):
    from harness.report.plots import accuracy_params_plot

    accuracy_params_plot(spread_tables().summary, tmp_path)
    axis = drawn["accuracy_vs_params.png"].axes[0].xaxis
    labels = visible_labels(axis)
    assert len(labels) >= 2
    boxes = sorted((t.get_window_extent().x0, t.get_window_extent().x1) for t in labels)
    assert all(left[1] < right[0] for left, right in itertools.pairwise(boxes))
    assert all("$" not in t.get_text() for t in labels), "no mathtext like 3x10^6"


def test_the_latency_spread_is_the_raw_samples_quantiles(tables):
    from harness.report.plots import latency_spread

    spread = latency_spread(tables.samples)
    row = spread.query("variant == 'pool' and backend == 'keras' and batch_size == 8").iloc[0]
    samples = tables.samples
    mask = (
        (samples["variant"] == "pool")
        & (samples["backend"] == "keras")
        & (samples["batch_size"] == 8)
    ).to_numpy()
    ms = samples.loc[mask, "latency_ns"].to_numpy() / 1e6
    assert row.q25 == pytest.approx(np.quantile(ms, 0.25))
    assert row.q99 == pytest.approx(np.quantile(ms, 0.99))
    assert len(spread) == len(tables.summary[tables.summary["status"] == "ok"])


def test_a_report_from_before_a_column_was_added_reads_with_it_empty(run_dir, tmp_path):
    from harness.report.schema import SUMMARY_COLUMNS

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    last = SUMMARY_COLUMNS[-1].name
    summary = read_parquet(old / "summary.parquet").drop(columns=[last])
    write_parquet(summary, old / "summary.parquet")
    read_csv(run_dir / "summary.csv").drop(columns=[last]).to_csv(old / "summary.csv", index=False)
    assert read_report_folder(old).summary[last].isna().all()
    assert read_csv(old / "summary.csv")[last].isna().all()


def test_a_summary_missing_a_column_from_the_middle_is_an_error_naming_it(run_dir, tmp_path):
    summary = read_parquet(run_dir / "summary.parquet").drop(columns=["p50_ms"])
    folder = tmp_path / "foreign"
    shutil.copytree(run_dir, folder)
    write_parquet(summary, folder / "summary.parquet")
    with pytest.raises(DataError, match=r"summary\.parquet: columns missing: p50_ms"):
        read_report_folder(folder)
