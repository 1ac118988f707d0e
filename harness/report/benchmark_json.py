"""Export latency results in pytest-benchmark's JSON layout.

Existing tools then read them: ``pytest-benchmark compare benchmark.json``, and CI benchmark
trackers that take pytest-benchmark output. One benchmark per summary row with raw samples;
times are in seconds, as pytest-benchmark writes them. Quartiles use linear interpolation.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from harness.report.atomic import write_text
from harness.report.frames import RunTables
from harness.report.schema import IDENTITY
from harness.report.store import summary_records

PYTEST_BENCHMARK_LAYOUT_VERSION = "5.1.0"
"""The pytest-benchmark release whose JSON layout this follows."""


def _stats(seconds: np.ndarray) -> list[dict[str, Any]]:
    """pytest-benchmark's statistics for each row of ``seconds`` (rows of equal length)."""
    ordered = np.sort(seconds, axis=1)
    rounds = ordered.shape[1]
    mean = ordered.mean(axis=1)
    stddev = ordered.std(axis=1, ddof=1) if rounds > 1 else np.zeros(len(ordered))
    q1, median, q3 = np.percentile(ordered, [25, 50, 75], axis=1)
    iqr = q3 - q1
    low_fence, high_fence = (q1 - 1.5 * iqr)[:, None], (q3 + 1.5 * iqr)[:, None]
    inside = (ordered >= low_fence) & (ordered <= high_fence)
    iqr_outliers = rounds - inside.sum(axis=1)
    stddev_outliers = (np.abs(ordered - mean[:, None]) > stddev[:, None]).sum(axis=1)
    lowest_inside = np.where(inside, ordered, np.inf).min(axis=1)
    highest_inside = np.where(inside, ordered, -np.inf).max(axis=1)
    total = ordered.sum(axis=1)
    return [
        {
            "min": float(ordered[i, 0]),
            "max": float(ordered[i, -1]),
            "mean": float(mean[i]),
            "stddev": float(stddev[i]),
            "rounds": rounds,
            "median": float(median[i]),
            "iqr": float(iqr[i]),
            "q1": float(q1[i]),
            "q3": float(q3[i]),
            "iqr_outliers": int(iqr_outliers[i]),
            "stddev_outliers": int(stddev_outliers[i]),
            "outliers": f"{int(stddev_outliers[i])};{int(iqr_outliers[i])}",
            "ld15iqr": float(lowest_inside[i]),
            "hd15iqr": float(highest_inside[i]),
            "ops": 1.0 / float(mean[i]) if mean[i] > 0 else 0.0,
            "total": float(total[i]),
            "iterations": 1,
        }
        for i in range(len(ordered))
    ]


def _machine_info(environment: dict[str, Any]) -> dict[str, Any]:
    python = str(environment.get("python") or "")
    return {
        "node": "",
        "processor": environment.get("cpu_model") or "",
        "machine": "",
        "python_implementation": "CPython",
        "python_version": python.split()[0] if python else "",
        "system": environment.get("os") or "",
        "cpu": {
            "brand_raw": environment.get("cpu_model") or "",
            "count": environment.get("logical_cores"),
        },
        "harness_environment": environment,
    }


def _samples_by_row(tables: RunTables) -> dict[tuple[Any, ...], np.ndarray]:
    samples = tables.samples
    if samples.empty:
        return {}
    seconds = samples["latency_ns"].to_numpy(dtype=np.float64) / 1e9
    grouped = samples.groupby(["run_id", *IDENTITY], observed=True, sort=True)
    return {key: seconds[positions] for key, positions in grouped.indices.items()}


def _benchmark(
    key: tuple[Any, ...], stats: dict[str, Any], run: dict[str, Any], row: dict[str, Any]
) -> dict[str, Any]:
    run_id, dataset, model, variant, backend, device, batch_size = key
    params = dict(zip(IDENTITY, key[1:], strict=True))
    params["batch_size"] = int(batch_size)
    param = f"{dataset}-{model}-{variant}-{device}-b{batch_size}"
    latency = (run.get("suite") or {}).get("latency") or {}
    extra_info = {"run_id": run_id, "cpu_model": (run.get("environment") or {}).get("cpu_model")}
    extra_info |= {name: row.get(name) for name in _EXTRA_INFO}
    return {
        "group": f"{dataset}/{model}/{variant} batch {batch_size}",
        "name": f"{backend}[{param}]",
        "fullname": f"harness::{backend}[{param}]",
        "params": params,
        "param": param,
        "extra_info": extra_info,
        "options": {
            "timer": "perf_counter_ns",
            "min_rounds": latency.get("min_iterations"),
            "max_time": latency.get("max_seconds"),
            "min_time": latency.get("min_seconds"),
            "warmup": latency.get("warmup_iterations"),
            "disable_gc": False,
        },
        "stats": stats,
    }


_EXTRA_INFO = ("p90_ms", "p99_ms", "throughput_ips", "unstable", "inference_path")


def benchmark_document(
    tables: RunTables, records: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The pytest-benchmark JSON document of a run (or merged runs).

    ``records`` is ``summary_records(tables.summary)`` when the caller already has it.
    """
    runs = {run["run_id"]: run for run in tables.runs}
    first = tables.runs[0] if tables.runs else {}
    environment = first.get("environment") or {}
    rows = {
        (record["run_id"], *(record[k] for k in IDENTITY)): record
        for record in (summary_records(tables.summary) if records is None else records)
    }
    by_row = _samples_by_row(tables)
    # Rows with equal sample counts are summarised together, vectorised.
    by_length: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for key, seconds in by_row.items():
        by_length[seconds.size].append(key)
    stats: dict[tuple[Any, ...], dict[str, Any]] = {}
    for keys in by_length.values():
        matrix = np.stack([by_row[key] for key in keys])
        stats.update(zip(keys, _stats(matrix), strict=True))
    benchmarks = [
        _benchmark(key, stats[key], runs.get(key[0], {}), rows.get(_row_key(key), {}))
        for key in by_row
    ]
    return {
        "machine_info": _machine_info(environment),
        "commit_info": {
            "id": environment.get("git_sha") or "unversioned",
            "time": None,
            "author_time": None,
            "dirty": False,
            "project": "harness",
            "branch": "(unknown)",
        },
        "benchmarks": benchmarks,
        "datetime": first.get("started") or "",
        "version": PYTEST_BENCHMARK_LAYOUT_VERSION,
    }


def _row_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return (*key[:-1], int(key[-1]))


def write_benchmark_json(
    tables: RunTables, path: Path, records: list[dict[str, Any]] | None = None
) -> Path:
    return write_text(path, json.dumps(benchmark_document(tables, records)) + "\n")
