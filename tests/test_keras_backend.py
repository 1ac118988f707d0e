"""The keras backend end to end on a tiny random-weight model, and its device handling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from harness.api import TrainedModel
from harness.errors import DeviceUnavailable, SuiteError
from harness.suite import LatencyConfig
from harness.worker import CellSpec, run_cell_subprocess
from harness_keras import backend as keras_backend
from harness_keras.backend import KerasBackend, select_device

pytestmark = pytest.mark.slow

LATENCY = LatencyConfig(
    warmup_iterations=2,
    warmup_seconds=0.0,
    min_iterations=5,
    min_seconds=0.0,
    max_iterations=50,
    max_seconds=5.0,
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainedModel, Path, np.ndarray]:
    """A saved uint8-in, logits-out model with random weights and its evaluation file."""
    import keras

    keras.utils.set_random_seed(0)
    images_in = keras.Input((8, 8, 1), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(images_in)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(images_in, keras.layers.Dense(10)(x))
    root = tmp_path_factory.mktemp("tiny_keras")
    model.save(root / "model.keras")

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 8, 8, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, size=300).astype(np.int64)
    reference = model(images, training=False).numpy()
    eval_path = root / "eval.npz"
    np.savez(eval_path, images=images, labels=labels, reference_logits=reference)
    trained = TrainedModel("tiny", "tiny_cnn", "plain", root / "model.keras", root / "art", "k1")
    accuracy = float(np.mean(reference.argmax(axis=1) == labels))
    return trained, eval_path, np.float64(accuracy)


def cell(trained: TrainedModel, eval_path: Path, device: str, **options: Any) -> CellSpec:
    return CellSpec(
        dataset="tiny",
        model="tiny_cnn",
        variant="plain",
        backend="keras",
        device=device,
        trained=trained,
        eval_path=eval_path,
        batch_sizes=(1, 4),
        latency=LATENCY,
        backend_options=options,
        seed=0,
    )


def test_keras_on_cpu_gives_a_row_with_accuracy_parity_and_latency(tiny_model, tmp_path) -> None:
    trained, eval_path, accuracy = tiny_model
    record = run_cell_subprocess(cell(trained, eval_path, "cpu"), 300, tmp_path)
    assert record["status"] == "ok", record["error"]
    assert record["accuracy"] == pytest.approx(accuracy)
    assert record["num_eval"] == 300
    assert record["parity_top1_agreement"] == 1.0
    assert record["parity_ok"] is True
    assert record["describe"]["inference_path"] == "tf.function"
    assert record["describe"]["device"] == "/CPU:0"
    assert [b["batch_size"] for b in record["batches"]] == [1, 4]
    assert all(b["stats"]["p50_ms"] > 0 for b in record["batches"])


def test_jit_compile_is_a_labelled_configuration_with_the_same_logits(tiny_model) -> None:
    trained, eval_path, _ = tiny_model
    with np.load(eval_path) as data:
        images, reference = data["images"][:16], data["reference_logits"][:16]
    predictor = KerasBackend().prepare(trained, "cpu", {"jit_compile": True})
    assert predictor.describe()["inference_path"] == "tf.function+xla"
    assert predictor.describe()["threads"].startswith("intra_op ")
    np.testing.assert_allclose(predictor.predict(images), reference, atol=1e-4)


def test_an_unknown_option_names_the_allowed_ones(tiny_model) -> None:
    with pytest.raises(SuiteError, match="unknown key 'jit'; allowed: jit_compile"):
        KerasBackend().prepare(tiny_model[0], "cpu", {"jit": True})
    with pytest.raises(SuiteError, match="intra_op_threads must be a non-negative int"):
        KerasBackend().prepare(tiny_model[0], "cpu", {"intra_op_threads": "4"})


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has an NVIDIA GPU")
def test_gpu_without_a_gpu_is_unavailable_with_the_reason(tiny_model) -> None:
    with pytest.raises(DeviceUnavailable, match=r"sees no GPU.*tensorflow\[and-cuda\]"):
        KerasBackend().prepare(tiny_model[0], "gpu", {})


class FakeTf:
    """Just enough of ``tf.config`` for device selection."""

    def __init__(self, gpus: list[str]) -> None:
        self.grown: list[str] = []
        self.__version__ = "0.fake"
        experimental = SimpleNamespace(set_memory_growth=lambda gpu, on: self.grown.append(gpu))
        self.config = SimpleNamespace(
            list_physical_devices=lambda kind: list(gpus), experimental=experimental
        )


def test_a_visible_gpu_is_selected_with_memory_growth_on() -> None:
    fake = FakeTf(["GPU0", "GPU1"])
    assert select_device(fake, "gpu") == "/GPU:0"
    assert fake.grown == ["GPU0", "GPU1"]


def test_no_visible_gpu_makes_gpu_unavailable() -> None:
    with pytest.raises(DeviceUnavailable, match="sees no GPU"):
        select_device(FakeTf([]), "gpu")
    assert select_device(FakeTf([]), "cpu") == "/CPU:0"


def test_the_device_probe_is_cheap_and_says_why(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(keras_backend, "NVIDIA_DEVICE", tmp_path / "nvidia0")
    assert KerasBackend().probe_devices() == {
        "cpu": None,
        "gpu": f"no NVIDIA GPU found (no {tmp_path / 'nvidia0'})",
    }
    (tmp_path / "nvidia0").touch()
    assert KerasBackend().probe_devices() == {"cpu": None, "gpu": None}
    probe_without_tf = (
        "import sys; from harness_keras.backend import KerasBackend; "
        "KerasBackend().probe_devices(); assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", probe_without_tf], check=True)
