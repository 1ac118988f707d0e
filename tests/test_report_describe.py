"""A backend's own describe() keys reach the summary as ``describe.<key>`` columns, through
every file the summary is written to and read back from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.report.frames import build_tables
from harness.report.schema import SUMMARY_COLUMNS, column_names
from harness.report.store import (
    read_csv,
    read_parquet,
    read_run_json,
    write_csv,
    write_parquet,
    write_run_json,
)

STATS = {"iterations": 2, "mean_ms": 1.0, "p50_ms": 1.0, "cv": 0.0, "unstable": False}


def cell(backend: str, describe: dict) -> dict:
    return {
        "type": "cell",
        "dataset": "mnist",
        "model": "book_cnn",
        "variant": "pool",
        "backend": backend,
        "device": "cpu",
        "status": "ok",
        "describe": describe,
        "batches": [{"batch_size": 1, "stats": STATS, "samples_ns": [1000, 1000]}],
    }


RECORDS = [
    {"type": "run", "run_id": "r1", "started": "2025-01-01T00:00:00+00:00", "suite": {}},
    cell(
        "int8_backend",
        {
            "inference_path": "InferenceSession.run",
            "threads": 2,
            "quantization": "dynamic int8",
            "calibration": {"images": 100},
        },
    ),
    cell("keras", {"inference_path": "tf.function", "tensorflow": "2.21.0"}),
]


def summary() -> pd.DataFrame:
    return build_tables(RECORDS, Path("journal.jsonl")).summary


def test_extra_describe_keys_are_columns_after_the_schemas() -> None:
    frame = summary()
    names = column_names(SUMMARY_COLUMNS)
    assert list(frame.columns) == [
        *names,
        "describe.calibration",
        "describe.quantization",
        "describe.tensorflow",
    ]
    rows = frame.set_index("backend")
    assert rows.loc["int8_backend", "describe.quantization"] == "dynamic int8"
    assert rows.loc["int8_backend", "describe.calibration"] == '{"images": 100}'
    assert pd.isna(rows.loc["int8_backend", "describe.tensorflow"])
    assert rows.loc["keras", "describe.tensorflow"] == "2.21.0"
    assert rows.loc["int8_backend", "threads"] == "2"
    assert str(frame["describe.quantization"].dtype) == "string"


def test_describe_columns_survive_parquet_csv_and_run_json(tmp_path: Path) -> None:
    frame = summary()
    tables = build_tables(RECORDS, Path("journal.jsonl"))
    write_parquet(frame, tmp_path / "summary.parquet")
    write_csv(frame, tmp_path / "summary.csv")
    write_run_json(tables, tmp_path / "run.json")
    pd.testing.assert_frame_equal(read_parquet(tmp_path / "summary.parquet"), frame)
    pd.testing.assert_frame_equal(read_csv(tmp_path / "summary.csv"), frame)
    document = read_run_json(tmp_path / "run.json")
    pd.testing.assert_frame_equal(document["summary"], frame)
    assert document["columns"]["describe.quantization"] == (
        "what the backend's describe() said under 'quantization'"
    )
