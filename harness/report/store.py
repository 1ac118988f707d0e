"""Write and read the report's data files: Parquet (both tables), CSV (summary), run.json.

Readers check the schema version and turn unreadable files into a :class:`DataError` that names
the file, so ``harness compare`` on a truncated or foreign report exits 2 with a clear message.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import DataError
from harness.report.atomic import atomic_path, write_text
from harness.report.frames import RunTables, empty_frame, summary_dtypes, summary_from_rows
from harness.report.schema import (
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    SUMMARY_COLUMNS,
    TRIAL_COLUMNS,
    Column,
    column_names,
    describe_column_meaning,
    describe_column_names,
)

SUMMARY_PARQUET = "summary.parquet"
SAMPLES_PARQUET = "samples.parquet"
TRIALS_PARQUET = "trials.parquet"
SUMMARY_CSV = "summary.csv"
RUN_JSON = "run.json"
_VERSION_KEY = b"harness_schema_version"


def summary_columns(summary: pd.DataFrame) -> dict[str, list[Any]]:
    """Each column as a list of plain Python values (NA becomes None), in one C-level pass."""
    return {
        name: series.to_numpy(dtype=object, na_value=None).tolist()
        for name, series in summary.items()
    }


def summary_records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values (NA becomes None), converted column by column."""
    columns = summary_columns(summary)
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[_VERSION_KEY] = str(SCHEMA_VERSION).encode()
    with atomic_path(path) as temporary:
        pq.write_table(table.replace_schema_metadata(metadata), temporary)
    return path


def read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path}: missing; rebuild it with `harness report {path.parent}`")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({exc}); is it truncated?") from None
    version = (table.schema.metadata or {}).get(_VERSION_KEY)
    _check_version(path, int(version) if version and version.isdigit() else version)
    return table.to_pandas()


def _check_version(path: Path, version: Any) -> None:
    if version != SCHEMA_VERSION:
        raise DataError(
            f"{path}: report schema version {version!r}, this harness reads version "
            f"{SCHEMA_VERSION}; rebuild the report with this harness (`harness report`)"
        )


def write_csv(summary: pd.DataFrame, path: Path) -> Path:
    """The same text as ``summary.to_csv(index=False)`` in half the time.

    pandas formats the nullable columns value by value in Python; the csv module on plain
    values writes the same cells (NA empty, floats as ``repr``, booleans as True/False).
    """
    columns = summary_columns(summary)
    with atomic_path(path) as temporary, temporary.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))
    return path


def read_csv(path: Path) -> pd.DataFrame:
    try:
        with path.open(encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), [])
        types = summary_dtypes(header)
        frame = pd.read_csv(path, dtype=types, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a summary CSV of this harness: {exc}") from None
    return with_later_columns(path, frame, SUMMARY_COLUMNS)[list(types)]


def write_run_json(
    tables: RunTables, path: Path, records: list[dict[str, Any]] | None = None
) -> Path:
    """``records`` is ``summary_records(tables.summary)`` when the caller already has it."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "columns": {column.name: column.meaning for column in SUMMARY_COLUMNS}
        | {
            name: describe_column_meaning(name)
            for name in describe_column_names(tables.summary.columns)
        },
        "runs": tables.runs,
        "summary": summary_records(tables.summary) if records is None else records,
    }
    # No indent: the C encoder is many times faster on large runs.
    return write_text(path, json.dumps(document, allow_nan=False) + "\n")


def read_run_json(path: Path) -> dict[str, Any]:
    """run.json as a dict, its ``summary`` turned into a DataFrame with the schema's dtypes."""
    if not path.is_file():
        raise DataError(f"{path}: missing; is {path.parent} a run folder written by `harness run`?")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); is it truncated?") from None
    if not isinstance(document, dict):
        raise DataError(f"{path}: expected a JSON object with schema_version, runs and summary")
    _check_version(path, document.get("schema_version"))
    for key in ("runs", "summary"):
        if not isinstance(document.get(key), list):
            raise DataError(f"{path}: key {key!r} must be a list")
    document["summary"] = summary_from_rows(document["summary"])
    return document


def read_report_folder(folder: Path) -> RunTables:
    """The tables a finished report folder holds (what ``harness compare`` reads)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such run folder")
    document = read_run_json(folder / RUN_JSON)
    summary = read_parquet(folder / SUMMARY_PARQUET)
    samples = read_parquet(folder / SAMPLES_PARQUET)
    summary = with_later_columns(folder / SUMMARY_PARQUET, summary, SUMMARY_COLUMNS)
    summary = summary[list(summary_dtypes(summary.columns))]
    samples = with_later_columns(folder / SAMPLES_PARQUET, samples, SAMPLE_COLUMNS)
    # Report folders written before the trial phase existed have no trials table.
    trials_path = folder / TRIALS_PARQUET
    trials = read_parquet(trials_path) if trials_path.is_file() else empty_frame(TRIAL_COLUMNS)
    return RunTables(summary=summary, samples=samples, runs=document["runs"], trials=trials)


def with_later_columns(
    path: Path, frame: pd.DataFrame, columns: tuple[Column, ...]
) -> pd.DataFrame:
    """``frame`` with every schema column: those added at the end of the schema after ``frame``
    was written (no version bump needed, see :mod:`harness.report.schema`) come back empty; any
    other missing column means the file is not this schema's, and is an error naming it."""
    names = column_names(columns)
    missing = [name for name in names if name not in frame.columns]
    if missing != names[len(names) - len(missing) :]:
        raise DataError(f"{path}: columns missing: {', '.join(missing)}")
    for column in columns[len(names) - len(missing) :]:
        frame[column.name] = pd.Series(pd.NA, index=frame.index, dtype=column.dtype)
    return frame
