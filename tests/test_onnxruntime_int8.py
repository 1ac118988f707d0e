"""The onnxruntime_int8 backend: the ONNX export, asked for through the public API, quantized
once per model, run and judged by its own parity tolerance; and sharing a conversion through
``TrainedModel.artifact``."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from harness.api import HarnessError, ParityTolerance, SuiteError, TrainedModel
from harness.plugins import get_registry
from harness.suite import LatencyConfig
from harness.worker import CellSpec, run_cell_subprocess

pytestmark = pytest.mark.slow

LATENCY = LatencyConfig(
    warmup_iterations=2,
    warmup_seconds=0.0,
    min_iterations=5,
    min_seconds=0.0,
    max_iterations=20,
    max_seconds=5.0,
)


@pytest.fixture
def trained(book_cnn_mnist, tmp_path: Path) -> TrainedModel:
    """The session's trained book CNN, with an empty artifact folder of this test's own."""
    return dataclasses.replace(book_cnn_mnist.trained, artifact_dir=tmp_path / "artifacts")


def int8_backend():
    return get_registry().backend("onnxruntime_int8")


def test_the_onnx_export_is_shared_through_the_public_api(trained) -> None:
    path = trained.artifact("onnxruntime")
    assert path == trained.artifact_dir / "model.onnx" and path.is_file()
    made = path.stat().st_mtime_ns
    assert trained.artifact("onnxruntime") == path  # cached: not exported again
    assert path.stat().st_mtime_ns == made
    assert trained.artifact("onnxruntime", {"opset": 15}) == path  # another opset: re-exported
    assert path.stat().st_mtime_ns != made


def test_a_backend_that_shares_no_conversion_says_so(trained) -> None:
    with pytest.raises(HarnessError, match="backend 'keras' shares no conversion"):
        trained.artifact("keras")


def test_int8_is_held_to_a_looser_stated_tolerance_than_fp32() -> None:
    tolerance = int8_backend().parity
    assert tolerance.min_top1_agreement < ParityTolerance().min_top1_agreement
    assert tolerance.max_abs_logit_diff > ParityTolerance().max_abs_logit_diff


def test_the_int8_model_is_made_once_and_reused(trained) -> None:
    backend = int8_backend()
    backend.convert(trained, {})
    path = trained.artifact("onnxruntime_int8")
    made = path.stat().st_mtime_ns
    predictor = backend.prepare(trained, "cpu", {})
    described = predictor.describe()
    predictor.close()
    assert described["quantize_cached"] is True and path.stat().st_mtime_ns == made
    assert described["onnx_bytes"] == path.stat().st_size
    assert described["onnx_bytes"] < described["fp32_onnx_bytes"] / 3
    assert described["fp32_onnx_bytes"] == (trained.artifact_dir / "model.onnx").stat().st_size
    assert described["quantization"].startswith("dynamic")
    per_channel = backend.prepare(trained, "cpu", {"per_channel": True})
    assert per_channel.describe()["quantize_cached"] is False  # other settings: quantized anew
    per_channel.close()


def test_quantizing_the_export_logs_no_advice_to_pre_process_it(trained, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        int8_backend().convert(trained, {})
    assert (trained.artifact_dir / "model.int8.onnx").is_file()
    assert not [record for record in caplog.records if "pre-processing" in record.getMessage()]


def test_int8_options_are_validated_like_the_other_backends() -> None:
    backend = int8_backend()
    with pytest.raises(SuiteError, match=r"unknown key 'per_chanel'; allowed: .*per_channel"):
        backend.check_options({"per_chanel": True})
    with pytest.raises(SuiteError, match="per_channel must be true or false"):
        backend.check_options({"per_channel": 1})
    assert backend.check_options({"intra_op_threads": 1})["intra_op_threads"] == 1


def test_int8_runs_on_the_cpu_only() -> None:
    assert int8_backend().devices == ("cpu",)
    assert set(int8_backend().probe_devices()) == {"cpu"}


def test_an_int8_cell_is_measured_and_within_its_tolerance(
    book_cnn_mnist, trained, tmp_path
) -> None:
    eval_path = tmp_path / "eval.npz"
    reference = book_cnn_mnist.reference_logits
    labels = reference.argmax(axis=1)  # so that accuracy is the agreement with Keras
    np.savez(eval_path, images=book_cnn_mnist.images, labels=labels, reference_logits=reference)
    cell = CellSpec(
        dataset="mnist",
        model="book_cnn",
        variant="pool",
        backend="onnxruntime_int8",
        device="cpu",
        trained=trained,
        eval_path=eval_path,
        batch_sizes=(1, 8),
        latency=LATENCY,
        seed=0,
    )
    record = run_cell_subprocess(cell, 300, tmp_path)
    assert record["status"] == "ok", record["error"]
    assert record["parity_ok"] is True
    assert record["parity_top1_agreement"] >= int8_backend().parity.min_top1_agreement
    assert 0 < record["parity_max_abs_diff"] <= int8_backend().parity.max_abs_logit_diff
    assert record["describe"]["providers"] == ["CPUExecutionProvider"]
    assert [batch["batch_size"] for batch in record["batches"]] == [1, 8]
