"""Build the report tables from journal records: the summary and the long table of raw samples.

The journal is the source of truth; everything in a report folder is rebuilt from it. A journal
may hold several runs (``harness merge`` concatenates them): each ``model`` and ``cell`` record
belongs to the ``run`` record before it, and a later record for the same cell (``--resume``)
replaces an earlier one.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import DataError
from harness.records import CellRecord, ModelRecord
from harness.report.schema import (
    CELL_IDENTITY,
    CORE_DESCRIBE_KEYS,
    DESCRIBE_PREFIX,
    IDENTITY,
    MODEL_IDENTITY,
    SAMPLE_COLUMNS,
    SUMMARY_COLUMNS,
    TRIAL_COLUMNS,
    Column,
    column_names,
    describe_column_names,
    dtypes,
)

_STAT_COLUMNS = (
    "iterations",
    "total_seconds",
    "mean_ms",
    "std_ms",
    "cv",
    "min_ms",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "throughput_ips",
    "unstable",
)
_COUNT_COLUMNS = (
    "params_total",
    "params_trainable",
    "params_conv",
    "params_dense",
    "macs_per_image",
    "weight_bytes",
)
_CELL_COLUMNS = (
    "prepare_s",
    "first_inference_ms",
    "num_eval",
    "parity_top1_agreement",
    "parity_max_abs_diff",
    "parity_ok",
    "peak_rss_bytes",
    "peak_gpu_memory_bytes",
    "worker_seconds",
)


SERVING_CURVE_COLUMNS = [*CELL_IDENTITY, "run_id", "rate_qps", "p50_ms", "p99_ms", "bound_ms"]
"""One row per rate the Server scenario measured: what the rate-against-p99 figure draws."""


@dataclass
class RunTables:
    """Everything a report is made of."""

    summary: pd.DataFrame
    samples: pd.DataFrame
    runs: list[dict[str, Any]]
    """One entry per run: run_id, started, harness_version, suite, environment, gemm_peak, shard
    (``{index, count}``, or None for a whole suite), and from the ``end`` record (absent if the
    run was killed) finished, wall_seconds, phases and, in runs since it was recorded,
    machine_load (:mod:`harness.machine_load`, per phase: ``latency`` and ``trials``)."""
    models: list[dict[str, Any]] = field(default_factory=list)
    trials: pd.DataFrame = field(default_factory=lambda: empty_frame(TRIAL_COLUMNS))
    """One row per trial of the run's trial phase (empty when it had none)."""
    serving_curve: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=SERVING_CURVE_COLUMNS)
    )
    """One row per rate each cell's Server scenario measured (empty without serving)."""
    """The ``model`` records, each with the run_id it belongs to."""


def _text(value: Any) -> str | None:
    """Describe fields as one readable string: lists joined, mappings as sorted JSON."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _collect(
    records: list[dict[str, Any]], source: Path
) -> tuple[list[dict[str, Any]], dict[tuple, dict[str, Any]], dict[tuple, CellRecord]]:
    runs: dict[str, dict[str, Any]] = {}
    models: dict[tuple, dict[str, Any]] = {}
    cells: dict[tuple, CellRecord] = {}
    current: dict[str, Any] | None = None
    for number, record in enumerate(records, start=1):
        kind = record["type"]
        if kind == "run":
            run_id = record.get("run_id")
            if not run_id:
                raise DataError(f"{source}: record {number} is a run record without a run_id")
            # A resumed run may write its run record again: it continues the same run.
            current = runs.setdefault(run_id, {key: record.get(key) for key in _RUN_KEYS})
            continue
        if kind not in ("model", "cell", "end"):
            continue  # record types added later do not break older readers
        if current is None:
            raise DataError(f"{source}: record {number} ({kind}) comes before any run record")
        run_id = current["run_id"]
        if kind == "end":
            current.update({key: record.get(key) for key in ("finished", "wall_seconds", "phases")})
            current["gemm_peak_end"] = record.get("gemm_peak")
            if "machine_load" in record:  # absent in runs from before it was recorded
                current["machine_load"] = record["machine_load"]
        elif kind == "model":
            models[(run_id, *(record.get(k) for k in MODEL_IDENTITY))] = record | {"run_id": run_id}
        else:
            identity = tuple(record.get(k) for k in CELL_IDENTITY)
            if not all(isinstance(part, str) and part for part in identity):
                raise DataError(
                    f"{source}: record {number} is a cell record without a complete identity "
                    f"({', '.join(CELL_IDENTITY)}): got {identity}"
                )
            cells[(run_id, *identity)] = CellRecord.from_dict(record)
    return list(runs.values()), models, cells


_RUN_KEYS = ("run_id", "started", "harness_version", "suite", "environment", "gemm_peak", "shard")


def _cell_rows(
    run: dict[str, Any], model: ModelRecord | None, cell: CellRecord
) -> list[dict[str, Any]]:
    model = model or ModelRecord(dataset=cell.dataset, model=cell.model, variant=cell.variant)
    counts = model.counts
    training = model.training
    describe = cell.describe
    environment = run.get("environment") or {}
    base: dict[str, Any] = dict(zip(CELL_IDENTITY, cell.identity, strict=True))
    base |= {key: counts.get(key) for key in _COUNT_COLUMNS}
    base |= {key: getattr(cell, key) for key in _CELL_COLUMNS}
    base |= {
        "status": cell.status,
        "error": _text(cell.error),
        "keras_bytes": model.keras_bytes,
        "onnx_bytes": describe.get("onnx_bytes"),
        "train_steps": training.steps,
        "train_seconds": training.train_seconds,
        "train_images_per_s": training.images_per_s,
        "model_cache_hit": model.cache_hit,
        "test_accuracy": cell.accuracy,
        "reference_accuracy": model.test_accuracy,
        "inference_path": _text(describe.get("inference_path")),
        "threads": _text(describe.get("threads")),
        "providers": _text(describe.get("providers")),
        "opset": _text(describe.get("opset")),
        "run_id": run["run_id"],
        "timestamp": run.get("started"),
        "git_sha": environment.get("git_sha"),
    }
    base |= {
        f"{DESCRIBE_PREFIX}{key}": _text(value)
        for key, value in describe.items()
        if key not in CORE_DESCRIBE_KEYS
    }
    base["peak_gflops"] = best_peak_gflops(run)
    base |= _serving_columns(cell.serving or {})
    if cell.batches:
        return [
            _with_efficiency(
                base
                | {"batch_size": batch.batch_size}
                | {key: getattr(batch.stats, key, None) for key in _STAT_COLUMNS}
            )
            for batch in cell.batches
        ]
    # A cell that did not measure still shows, once per planned batch size, so that compare
    # can match it and the report can list its error.
    batch_sizes = (run.get("suite") or {}).get("batch_sizes") or [None]
    return [base | {"batch_size": size} for size in batch_sizes]


def _serving_columns(serving: dict[str, Any]) -> dict[str, Any]:
    """The summary's serving_* and offline_* columns from a cell's ``serving`` record."""
    server, offline = serving.get("server") or {}, serving.get("offline") or {}
    return {
        "serving_p99_bound_ms": server.get("p99_bound_ms"),
        "serving_max_qps": server.get("max_qps"),
        "serving_p99_ms": server.get("p99_ms"),
        "serving_capped": server.get("capped"),
        "serving_concurrency": server.get("concurrency"),
        "serving_schedule_error_p99_ms": server.get("schedule_error_p99_ms"),
        "offline_images_per_s": offline.get("images_per_s"),
        "offline_batch_size": offline.get("batch_size"),
        "offline_concurrency": offline.get("concurrency"),
    }


def serving_curve_frame(cells: dict[tuple, CellRecord]) -> pd.DataFrame:
    """Every Server scenario point of every cell (kept in the journal, not the summary)."""
    rows = []
    for (run_id, *identity), cell in cells.items():
        server = (cell.serving or {}).get("server") or {}
        cell_keys = dict(zip(CELL_IDENTITY, identity, strict=True)) | {"run_id": run_id}
        rows += [
            cell_keys
            | {key: point.get(key) for key in ("rate_qps", "p50_ms", "p99_ms")}
            | {"bound_ms": server.get("p99_bound_ms")}
            for point in server.get("curve") or []
        ]
    return pd.DataFrame(rows, columns=SERVING_CURVE_COLUMNS)


def peak_measurements(run: dict[str, Any]) -> dict[str, float]:
    """The GEMM peaks measured for ``run`` in GFLOP/s, by when: ``start`` and ``end``."""
    measured = {
        when: (run.get(key) or {}).get("gflops")
        for when, key in (("start", "gemm_peak"), ("end", "gemm_peak_end"))
    }
    return {when: gflops for when, gflops in measured.items() if gflops}


def best_peak_gflops(run: dict[str, Any]) -> float | None:
    """The best GEMM peak measured for ``run``, at its start or its end: interference on a
    shared machine only ever lowers a measurement, so the higher one is nearer the truth."""
    return max(peak_measurements(run).values(), default=None)


def _with_efficiency(row: dict[str, Any]) -> dict[str, Any]:
    """Achieved GFLOP/s at the median latency, and its share of the machine's GEMM peak."""
    macs, batch, p50_ms = row.get("macs_per_image"), row.get("batch_size"), row.get("p50_ms")
    if not (macs and batch and p50_ms):
        return row
    achieved = 2.0 * macs * batch / (p50_ms / 1e3) / 1e9
    peak = row.get("peak_gflops")
    return row | {"achieved_gflops": achieved, "peak_fraction": achieved / peak if peak else None}


def _samples_frame(cells: dict[tuple, CellRecord]) -> pd.DataFrame:
    keys: list[tuple] = []
    sample_lists: list[list[int]] = []
    for (run_id, *identity), cell in cells.items():
        for batch in cell.batches:
            samples = batch.samples_ns
            if samples:
                keys.append((run_id, *identity, batch.batch_size))
                sample_lists.append(samples)
    lengths = np.array([len(s) for s in sample_lists], dtype=np.int64)
    names = ["run_id", *IDENTITY]
    columns: dict[str, Any] = {}
    for position, name in enumerate(names):
        values = [key[position] for key in keys]
        if name == "batch_size":
            columns[name] = np.repeat(np.asarray(values, dtype=np.int64), lengths)
        else:
            categories = sorted(set(values))
            position_of = {value: code for code, value in enumerate(categories)}
            codes = np.repeat(np.asarray([position_of[v] for v in values], dtype=np.int32), lengths)
            columns[name] = pd.Categorical.from_codes(codes, categories=categories)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    columns["sample_index"] = np.arange(int(lengths.sum()), dtype=np.int64) - starts
    # One conversion of all samples: one np.asarray per batch cost more than the rest.
    columns["latency_ns"] = np.fromiter(
        itertools.chain.from_iterable(sample_lists), dtype=np.int64, count=int(lengths.sum())
    )
    return pd.DataFrame(columns)[column_names(SAMPLE_COLUMNS)]


def empty_frame(columns: tuple[Column, ...]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dt) for name, dt in dtypes(columns).items()})


def trials_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The ``trials`` records, one row per trial, each under the run record before it; a
    later record of the same row (``--resume``) replaces an earlier one."""
    rows: dict[tuple, list[dict[str, Any]]] = {}
    run_id = None
    for record in records:
        if record["type"] == "run":
            run_id = record.get("run_id")
        elif record["type"] == "trials" and run_id is not None:
            identity = tuple(record.get(name) for name in IDENTITY)
            rows[(run_id, *identity)] = [
                {"run_id": run_id, **dict(zip(IDENTITY, identity, strict=True)), **trial}
                for trial in record.get("trials") or []
            ]
    flat = [row for trials in rows.values() for row in trials]
    if not flat:
        return empty_frame(TRIAL_COLUMNS)
    frame = pd.DataFrame.from_records(flat, columns=column_names(TRIAL_COLUMNS))
    return frame.astype(dtypes(TRIAL_COLUMNS))


def trial_logs(trials: pd.DataFrame, percentile: int = 50) -> dict[tuple, np.ndarray]:
    """(run_id, *IDENTITY) -> the log of the chosen percentile of each trial of that row: what
    ``harness compare`` and ``harness history`` judge latency by."""
    column = f"p{percentile}_ns"
    if trials.empty or column not in trials:
        return {}
    logs = np.log(trials[column].to_numpy(dtype=np.float64))
    grouped = trials.groupby(["run_id", *IDENTITY], observed=True, sort=False)
    return {
        (*key[:-1], int(key[-1])): logs[positions] for key, positions in grouped.indices.items()
    }


def empty_summary() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dt) for name, dt in dtypes(SUMMARY_COLUMNS).items()})


def summary_dtypes(names: Iterable[str]) -> dict[str, str]:
    """The schema's columns, then the ``describe.<key>`` columns among ``names``, with dtypes."""
    return dtypes(SUMMARY_COLUMNS) | dict.fromkeys(describe_column_names(names), "string")


def summary_from_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of plain values to a summary frame with the schema's columns, order and dtypes, and
    the ``describe.<key>`` columns any row has."""
    if not rows:
        return empty_summary()
    types = summary_dtypes(key for row in rows for key in row)
    frame = pd.DataFrame.from_records(rows, columns=list(types))
    return frame.astype(types)


def build_tables(records: list[dict[str, Any]], source: Path) -> RunTables:
    """The report tables of one journal's records; ``source`` names the journal in errors."""
    runs, models, cells = _collect(records, source)
    runs_by_id = {run["run_id"]: run for run in runs}
    rows: list[dict[str, Any]] = []
    for (run_id, *identity), cell in cells.items():
        model = models.get((run_id, *identity[: len(MODEL_IDENTITY)]))
        model_record = ModelRecord.from_dict(model) if model is not None else None
        rows.extend(_cell_rows(runs_by_id[run_id], model_record, cell))
    summary = summary_from_rows(rows)
    if len(summary):
        summary = summary.sort_values(["run_id", *IDENTITY], kind="stable", ignore_index=True)
    return RunTables(
        summary=summary,
        samples=_samples_frame(cells),
        runs=runs,
        models=list(models.values()),
        trials=trials_frame(records),
        serving_curve=serving_curve_frame(cells),
    )
