"""harness/records.py: the journal's cell and model records, their one definition."""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest

from harness.api import ParityTolerance
from harness.errors import DataError
from harness.latency import LatencyStats
from harness.records import BatchRecord, CellRecord, ModelRecord, TrainingRecord
from harness.report.synthetic import cell_record, model_record, serving_entry

CELL_KEYS = [
    "type",
    "dataset",
    "model",
    "variant",
    "backend",
    "device",
    "status",
    "error",
    "prepare_s",
    "first_inference_ms",
    "accuracy",
    "num_eval",
    "parity_top1_agreement",
    "parity_max_abs_diff",
    "parity_ok",
    "parity_tolerance",
    "peak_rss_bytes",
    "peak_gpu_memory_bytes",
    "describe",
    "phases",
    "worker_seconds",
    "batches",
    "serving",
]
"""The journal's cell record, in order: a change here is a change of the journal format."""
MODEL_KEYS = [
    "type",
    "dataset",
    "model",
    "variant",
    "cache_key",
    "cache_hit",
    "counts",
    "training",
    "keras_bytes",
    "test_accuracy",
    "num_eval",
    "class_names",
    "confusion",
]
TRAINING_KEYS = [
    "steps",
    "batch_size",
    "learning_rate",
    "seed",
    "train_images",
    "train_seconds",
    "images_per_s",
    "history",
    "test_accuracy",
]
BATCH_KEYS = ["batch_size", "stats", "samples_ns"]
STATS_KEYS = [f.name for f in fields(LatencyStats)]


def measured_cell() -> dict:
    """A cell record as the worker writes it for a measured cell, serving included."""
    stats = LatencyStats.from_samples(np.array([1_000_000, 1_200_000]), 8)
    return {
        "type": "cell",
        "dataset": "mnist",
        "model": "book_cnn",
        "variant": "pool",
        "backend": "onnxruntime",
        "device": "cpu",
        "status": "ok",
        "error": None,
        "prepare_s": 0.25,
        "first_inference_ms": 3.5,
        "accuracy": 0.98,
        "num_eval": 200,
        "parity_top1_agreement": 1.0,
        "parity_max_abs_diff": 2e-6,
        "parity_ok": True,
        "parity_tolerance": {"min_top1_agreement": 0.999, "max_abs_logit_diff": 0.001},
        "peak_rss_bytes": 400_000_000,
        "peak_gpu_memory_bytes": None,
        "describe": {"inference_path": "InferenceSession.run", "threads": {"intra_op": 2}},
        "phases": {"prepare": 0.25, "accuracy": 0.1, "latency": 1.5, "serving": 4.0},
        "worker_seconds": 6.0,
        "batches": [
            {"batch_size": 8, "stats": stats.to_dict(), "samples_ns": [1_000_000, 1_200_000]}
        ],
        "serving": serving_entry(),
    }


def test_a_cell_record_round_trips_to_the_same_journal_json() -> None:
    data = measured_cell()
    record = CellRecord.from_dict(data)
    assert record.parity_tolerance == ParityTolerance()
    assert record.batches[0].stats.p50_ms == pytest.approx(1.1)
    assert record.identity == ("mnist", "book_cnn", "pool", "onnxruntime", "cpu")
    assert json.dumps(record.to_dict()) == json.dumps(data)  # same keys, order and values
    assert list(record.to_dict()) == CELL_KEYS


def test_a_model_record_round_trips_to_the_same_journal_json() -> None:
    data = model_record("cifar10", "nopool")
    record = ModelRecord.from_dict(data)
    assert record.training.steps == 10 and record.counts["params_total"] > 0
    assert json.dumps(record.to_dict()) == json.dumps(data)
    assert list(data) == MODEL_KEYS and list(data["training"]) == TRAINING_KEYS


def test_a_record_from_an_older_journal_reads_with_defaults() -> None:
    old = measured_cell()
    for key in ("parity_tolerance", "serving", "peak_gpu_memory_bytes", "describe", "phases"):
        del old[key]
    del old["batches"][0]["stats"]["p95_ms"]
    record = CellRecord.from_dict(old)
    assert record.parity_tolerance is None and record.serving is None
    assert record.peak_gpu_memory_bytes is None and record.describe == {}
    assert record.phases == {"prepare": None, "accuracy": None, "latency": None}
    assert record.batches[0].stats.p95_ms is None
    assert list(record.to_dict()) == CELL_KEYS

    model = ModelRecord.from_dict(
        {"type": "model", "dataset": "mnist", "model": "m", "variant": "v"}
    )
    assert (
        model.training == TrainingRecord() and model.confusion == [] and model.keras_bytes is None
    )
    assert list(model.to_dict()) == MODEL_KEYS


def test_keys_a_newer_journal_added_are_kept() -> None:
    data = measured_cell() | {"added_later": [1, 2]}
    data["batches"][0]["added_later"] = "x"
    assert CellRecord.from_dict(data).to_dict() == data


@pytest.mark.parametrize(
    ("reader", "record", "found"),
    [
        (CellRecord.from_dict, model_record(), "'model'"),
        (ModelRecord.from_dict, cell_record(), "'cell'"),
        (CellRecord.from_dict, {"dataset": "mnist"}, "None"),
    ],
)
def test_a_record_of_another_type_is_refused(reader, record, found) -> None:
    with pytest.raises(DataError, match=rf"not a journal \w+ record: its type is {found}"):
        reader(record)


@pytest.mark.parametrize("status", ["ok", "failed", "timeout"])
def test_the_synthetic_fixture_has_the_records_layout(status: str) -> None:
    fixture = cell_record(status=status, error=None if status == "ok" else "boom")
    layout = CellRecord(
        dataset="d", model="m", variant="v", backend="b", device="cpu", status=status
    ).to_dict()
    assert list(fixture) == list(layout) == CELL_KEYS
    assert list(fixture["phases"]) == list(layout["phases"])
    for batch in fixture["batches"]:
        assert list(batch) == list(BatchRecord(batch_size=1).to_dict()) == BATCH_KEYS
        assert list(batch["stats"]) == STATS_KEYS
    if status == "ok":
        assert fixture["batches"] and fixture["parity_tolerance"] is not None

    model = model_record()
    assert list(model) == list(ModelRecord(dataset="d", model="m", variant="v").to_dict())
    assert list(model["training"]) == list(TrainingRecord().to_dict()) == TRAINING_KEYS
