"""The onnxruntime backend end to end on a tiny random-weight model; CUDA proven, never assumed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest

from harness.api import TrainedModel
from harness.errors import DeviceUnavailable, SuiteError
from harness.suite import LatencyConfig
from harness.worker import CellSpec, run_cell, run_cell_subprocess
from harness_onnxruntime.backend import OnnxRuntimeBackend, default_intra_op_threads
from harness_onnxruntime.export import export_onnx

pytestmark = pytest.mark.slow

LATENCY = LatencyConfig(
    warmup_iterations=2,
    warmup_seconds=0.0,
    min_iterations=5,
    min_seconds=0.0,
    max_iterations=50,
    max_seconds=5.0,
)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
REAL_SESSION = onnxruntime.InferenceSession


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainedModel, Path, float]:
    """A saved uint8-in, logits-out model with random weights and its evaluation file."""
    import keras

    keras.utils.set_random_seed(0)
    images_in = keras.Input((8, 8, 1), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(images_in)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(images_in, keras.layers.Dense(10)(x))
    root = tmp_path_factory.mktemp("tiny_onnx")
    model.save(root / "model.keras")

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(1000, 8, 8, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, size=1000).astype(np.int64)
    reference = model(images, training=False).numpy()
    eval_path = root / "eval.npz"
    np.savez(eval_path, images=images, labels=labels, reference_logits=reference)
    trained = TrainedModel("tiny", "tiny_cnn", "pool", root / "model.keras", root / "art", "k1")
    return trained, eval_path, float(np.mean(reference.argmax(axis=1) == labels))


def cell(trained: TrainedModel, eval_path: Path, device: str) -> CellSpec:
    return CellSpec(
        dataset="tiny",
        model="tiny_cnn",
        variant="pool",
        backend="onnxruntime",
        device=device,
        trained=trained,
        eval_path=eval_path,
        batch_sizes=(1, 8),
        latency=LATENCY,
        seed=0,
    )


def test_onnxruntime_on_cpu_agrees_with_keras_and_is_timed(tiny_model, tmp_path) -> None:
    trained, eval_path, accuracy = tiny_model
    record = run_cell_subprocess(cell(trained, eval_path, "cpu"), 300, tmp_path)
    assert record["status"] == "ok", record["error"]
    assert record["accuracy"] == pytest.approx(accuracy)
    assert record["parity_top1_agreement"] >= 0.999
    assert record["parity_max_abs_diff"] <= 1e-3
    assert record["parity_ok"] is True
    described = record["describe"]
    assert described["providers"] == [CPU]
    assert described["graph_optimization"] == "ORT_ENABLE_ALL"
    assert described["intra_op_threads"] == default_intra_op_threads()
    assert described["opset"] == 17 and described["onnx_bytes"] > 0
    assert [b["batch_size"] for b in record["batches"]] == [1, 8]
    assert all(b["stats"]["p50_ms"] > 0 for b in record["batches"])


def test_the_export_has_a_dynamic_batch_and_is_reused(tiny_model) -> None:
    trained = tiny_model[0]
    first = export_onnx(trained)
    modified = first.path.stat().st_mtime_ns
    again = export_onnx(trained)
    assert again.cached and again.path.stat().st_mtime_ns == modified
    assert again.opset == first.opset == 17
    batch_dim = onnxruntime.InferenceSession(str(first.path)).get_inputs()[0].shape[0]
    assert isinstance(batch_dim, str)  # a symbolic dimension: any batch size


WORKER_WITHOUT_TENSORFLOW = """
import json, sys
from pathlib import Path
from harness.api import TrainedModel
from harness_onnxruntime.backend import OnnxRuntimeBackend

fields = json.loads(sys.argv[1])
trained = TrainedModel(**{**fields, "keras_path": Path(fields["keras_path"]),
                          "artifact_dir": Path(fields["artifact_dir"])})
predictor = OnnxRuntimeBackend().prepare(trained, "cpu", {"opset": 15})
loaded = sorted(m for m in ("tensorflow", "keras", "tf2onnx") if m in sys.modules)
print(json.dumps({"cached": predictor.describe()["export_cached"], "loaded": loaded}))
"""


def test_after_convert_a_worker_opens_the_export_without_tensorflow(tiny_model) -> None:
    trained = tiny_model[0]
    OnnxRuntimeBackend().convert(trained, {"opset": 15})
    fields = {**vars(trained), "keras_path": str(trained.keras_path)}
    fields["artifact_dir"] = str(trained.artifact_dir)
    child = subprocess.run(
        [sys.executable, "-c", WORKER_WITHOUT_TENSORFLOW, json.dumps(fields)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(child.stdout.splitlines()[-1]) == {"cached": True, "loaded": []}


def test_a_different_opset_is_a_new_export(tiny_model) -> None:
    trained = tiny_model[0]
    export_onnx(trained)
    assert not export_onnx(trained, opset=15).cached
    assert export_onnx(trained, opset=15).cached
    assert not export_onnx(trained).cached


def test_thread_and_mode_options_are_applied_and_recorded(tiny_model) -> None:
    options = {"intra_op_threads": 1, "inter_op_threads": 1, "execution_mode": "parallel"}
    predictor = OnnxRuntimeBackend().prepare(tiny_model[0], "cpu", options)
    described = predictor.describe()
    assert (described["intra_op_threads"], described["inter_op_threads"]) == (1, 1)
    assert described["threads"] == "intra_op 1, inter_op 1"
    assert described["execution_mode"] == "parallel"


def test_bad_options_name_the_key_and_what_is_allowed(tiny_model) -> None:
    backend = OnnxRuntimeBackend()
    with pytest.raises(SuiteError, match="unknown key 'threads'; allowed: intra_op_threads"):
        backend.prepare(tiny_model[0], "cpu", {"threads": 2})
    with pytest.raises(SuiteError, match="execution_mode must be one of sequential, parallel"):
        backend.prepare(tiny_model[0], "cpu", {"execution_mode": "fast"})


@pytest.mark.skipif(CUDA in onnxruntime.get_available_providers(), reason="CUDA is available")
def test_cuda_without_the_gpu_wheel_is_unavailable_with_the_reason(tiny_model) -> None:
    with pytest.raises(DeviceUnavailable, match=r"no CUDAExecutionProvider.*onnxruntime-gpu"):
        OnnxRuntimeBackend().prepare(tiny_model[0], "cuda", {})
    assert OnnxRuntimeBackend().probe_devices()["cuda"].startswith("onnxruntime ")


class FakeSession:
    """An InferenceSession that runs on whatever providers the test says it ended up with."""

    ended_up_on: list[str] = []

    def __init__(self, path: str, options: Any, providers: list[str]) -> None:
        self.requested = providers
        self._real = REAL_SESSION(path, providers=[CPU])

    def get_providers(self) -> list[str]:
        return list(self.ended_up_on)

    def get_inputs(self) -> Any:
        return self._real.get_inputs()

    def get_outputs(self) -> Any:
        return self._real.get_outputs()

    def run(self, outputs: Any, feeds: Any) -> Any:
        return self._real.run(outputs, feeds)


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> type[FakeSession]:
    """ONNX Runtime as a GPU wheel shows itself, with a session whose providers we choose."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeSession)
    monkeypatch.setenv("HARNESS_PLUGINS", "onnxruntime")
    return FakeSession


def test_a_session_that_silently_fell_back_to_the_cpu_is_unavailable(
    tiny_model, fake_cuda, monkeypatch
) -> None:
    monkeypatch.setattr(fake_cuda, "ended_up_on", [CPU])
    record = run_cell(cell(tiny_model[0], tiny_model[1], "cuda"))
    assert record["status"] == "unavailable"
    assert "asked ONNX Runtime for CUDAExecutionProvider" in record["error"]
    assert "runs on CPUExecutionProvider" in record["error"]
    assert record["batches"] == [] and record["accuracy"] is None


def test_a_session_really_on_cuda_is_measured_and_says_so(
    tiny_model, fake_cuda, monkeypatch
) -> None:
    monkeypatch.setattr(fake_cuda, "ended_up_on", [CUDA, CPU])
    record = run_cell(cell(tiny_model[0], tiny_model[1], "cuda"))
    assert record["status"] == "ok", record["error"]
    assert record["describe"]["providers"] == [CUDA, CPU]
    assert record["describe"]["device"] == "cuda"


def test_without_onnxruntime_every_device_is_unavailable_with_the_fix(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    probe = OnnxRuntimeBackend().probe_devices()
    assert set(probe) == {"cpu", "cuda"}
    assert all("onnxruntime cannot be imported" in reason for reason in probe.values())
    assert all("`cpu` or `gpu` extra" in reason for reason in probe.values())
