"""``harness merge``: runs from different machines in one report, each keeping its environment."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.errors import DataError
from harness.report.merge import merge_runs
from harness.report.store import read_report_folder
from harness.report.synthetic import environment, journal_records, write_journal


def machine_run(folder, run_id, backend, cpu_model):
    records = journal_records(
        run_id,
        datasets=("mnist",),
        variants=("pool",),
        backends=(backend,),
        env=environment(cpu_model=cpu_model),
        samples=20,
    )
    write_journal(folder, records)
    return folder


def test_merge_keeps_both_environments_and_every_row(tmp_path, capsys):
    keras = machine_run(tmp_path / "a", "run-keras", "keras", "CPU A")
    onnx = machine_run(tmp_path / "b", "run-onnx", "onnxruntime", "CPU B")
    out = tmp_path / "merged"
    assert main(["merge", str(keras), str(onnx), "-o", str(out), "--no-plots"]) == 0
    tables = read_report_folder(out)
    environments = {run["run_id"]: run["environment"]["cpu_model"] for run in tables.runs}
    assert environments == {"run-keras": "CPU A", "run-onnx": "CPU B"}
    by_backend = tables.summary.groupby("backend")["run_id"].unique()
    assert list(by_backend["keras"]) == ["run-keras"]
    assert list(by_backend["onnxruntime"]) == ["run-onnx"]
    assert set(tables.samples["run_id"]) == {"run-keras", "run-onnx"}
    report = (out / "report.md").read_text()
    assert "### Run run-keras" in report and "### Run run-onnx" in report
    assert "CPU A" in report and "CPU B" in report


def test_a_merged_folder_can_be_rebuilt_and_compared(tmp_path, capsys):
    keras = machine_run(tmp_path / "a", "run-keras", "keras", "CPU A")
    onnx = machine_run(tmp_path / "b", "run-onnx", "onnxruntime", "CPU B")
    out = tmp_path / "merged"
    merge_runs([keras, onnx], out)
    assert main(["report", str(out), "--quiet", "--no-plots"]) == 0
    assert main(["compare", str(out), str(out)]) == 0
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert len(summary) == 4  # 2 backends x 2 batch sizes


def test_merge_refuses_a_cell_measured_twice(tmp_path):
    first = machine_run(tmp_path / "a", "run-1", "keras", "CPU A")
    second = machine_run(tmp_path / "b", "run-2", "keras", "CPU B")
    with pytest.raises(DataError, match="mnist/book_cnn/pool/keras/cpu was measured in both"):
        merge_runs([first, second], tmp_path / "merged")


def test_merge_refuses_the_same_run_twice(tmp_path):
    first = machine_run(tmp_path / "a", "run-1", "keras", "CPU A")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "journal.jsonl").write_bytes((first / "journal.jsonl").read_bytes())
    with pytest.raises(DataError, match="run run-1 is in both"):
        merge_runs([first, copy], tmp_path / "merged")


def test_merge_does_not_overwrite_an_existing_journal(tmp_path):
    keras = machine_run(tmp_path / "a", "run-keras", "keras", "CPU A")
    onnx = machine_run(tmp_path / "b", "run-onnx", "onnxruntime", "CPU B")
    with pytest.raises(DataError, match="already exists"):
        merge_runs([keras, onnx], keras)


def test_merging_a_folder_without_a_journal_names_it(tmp_path, capsys):
    keras = machine_run(tmp_path / "a", "run-keras", "keras", "CPU A")
    missing = tmp_path / "nothing"
    code = main(["merge", str(keras), str(missing), "-o", str(tmp_path / "m")])
    assert code == 2
    assert str(missing) in capsys.readouterr().err
