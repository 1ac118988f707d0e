"""The conformance kit passes the first-party plugins and fails broken ones with clear messages."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from harness import synthetic, testing
from harness.api import Backend, Dataset, LabelledImages, ModelSpec, Predictor, TrainedModel
from harness.errors import DataError
from harness.plugins import get_host
from harness.testing import ConformanceError


def first_party(kind: str, name: str) -> Any:
    """The registered object; a plugin that is broken or registers nothing fails the test."""
    host = get_host()
    entries = getattr(host.registry(), kind).entries
    if name in entries:
        return entries[name].obj
    broken = [b for b in host.broken if b.name == name]
    if broken:
        pytest.fail(f"first-party plugin {name} is broken: {broken[0].stage}: {broken[0].error}")
    pytest.fail(f"first-party plugin {name!r} registers no {kind}")


# --- the first-party plugins conform ---------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_first_party_dataset_conforms(name: str, tmp_path: Path) -> None:
    dataset = first_party("datasets", name)
    synthetic.write_all(tmp_path, train=20, test=10, seed=0)
    loaded = testing.check_dataset(dataset, tmp_path, splits=("train", "test"))
    assert [len(loaded[split]) for split in ("train", "test")] == [20, 10]


@pytest.mark.slow
def test_first_party_model_conforms_on_a_non_square_colour_shape() -> None:
    testing.check_model(first_party("models", "book_cnn"), (16, 12, 3), num_classes=10)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> testing.Reference:
    return testing.train_reference(tmp_path_factory.mktemp("reference"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["keras", "onnxruntime", "onnxruntime_int8"])
def test_first_party_backend_agrees_with_keras(name: str, reference: testing.Reference) -> None:
    backend = first_party("backends", name)
    testing.check_backend(backend, reference.trained, reference.images, reference.reference_logits)


def test_discovery_helpers_list_first_party_plugins_by_name() -> None:
    ids = [param.id for param in testing.discovered_datasets("mnist")]
    assert ids == ["mnist"]


def test_discovery_of_an_uninstalled_plugin_is_an_error_not_an_empty_list() -> None:
    with pytest.raises(ConformanceError, match="no plugin 'not_installed' is installed"):
        testing.discovered_backends("not_installed")


# --- broken datasets ---------------------------------------------------------------------------


class ArrayDataset(Dataset):
    """Serves fixed arrays; subclasses break one rule each."""

    name = "arrays"
    input_shape = (4, 4, 1)
    class_names = tuple("abc")
    split_sizes: ClassVar[Mapping[str, int]] = {"train": 6, "test": 6}

    def describe_files(self) -> str:
        return "arrays.bin"

    def images(self) -> np.ndarray:
        return np.zeros((6, 4, 4, 1), np.uint8)

    def labels(self) -> np.ndarray:
        return np.arange(6, dtype=np.int64) % 3

    def load(self, data_dir: Path, split: str) -> LabelledImages:
        if not (data_dir / "arrays.bin").exists():
            raise DataError(f"{data_dir / 'arrays.bin'}: file not found")
        return LabelledImages(self.images(), self.labels())


class LabelsOutOfRange(ArrayDataset):
    def labels(self) -> np.ndarray:
        return np.arange(6, dtype=np.int64)


class FloatImages(ArrayDataset):
    def images(self) -> np.ndarray:
        return np.zeros((6, 4, 4, 1), np.float32)


class ChannelsFirst(ArrayDataset):
    def images(self) -> np.ndarray:
        return np.zeros((6, 1, 4, 4), np.uint8)


class Int32Labels(ArrayDataset):
    def labels(self) -> np.ndarray:
        return np.arange(6, dtype=np.int32) % 3


class OneLabelShort(ArrayDataset):
    def labels(self) -> np.ndarray:
        return np.arange(5, dtype=np.int64) % 3


class OSErrorWhenMissing(ArrayDataset):
    def load(self, data_dir: Path, split: str) -> LabelledImages:
        (data_dir / "arrays.bin").read_bytes()
        return LabelledImages(self.images(), self.labels())


@pytest.fixture
def array_dir(tmp_path: Path) -> Path:
    (tmp_path / "arrays.bin").write_bytes(b"")
    return tmp_path


def test_a_well_formed_dataset_passes(array_dir: Path) -> None:
    assert len(testing.check_dataset(ArrayDataset(), array_dir)["test"]) == 6


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        (LabelsOutOfRange(), "3 labels out of range, the first 3 at index 3; expected 0..2"),
        (FloatImages(), "images are float32 of shape (6, 4, 4, 1), expected a uint8"),
        (ChannelsFirst(), "images have shape (6, 1, 4, 4), expected ('N', 4, 4, 1)"),
        (Int32Labels(), "labels are int32 of shape (6,), expected an int64"),
        (OneLabelShort(), "labels have shape (5,) for 6 images, expected (6,)"),
        (OSErrorWhenMissing(), "raised FileNotFoundError"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Dataset) else "",
)
def test_a_broken_dataset_fails_with_what_is_wrong(
    dataset: Dataset, message: str, array_dir: Path
) -> None:
    with pytest.raises(ConformanceError) as failure:
        testing.check_dataset(dataset, array_dir)
    assert message in str(failure.value)
    assert f"dataset 'arrays', test split from {array_dir}" in str(failure.value) or (
        "empty folder" in str(failure.value)
    )


# --- broken backends (no TensorFlow: the "model" is a fixed numpy function) ------------------


NUM_CLASSES = 5
WEIGHTS = np.random.default_rng(1).standard_normal((4 * 4 * 1, NUM_CLASSES)).astype(np.float32)


def reference_logits(batch: np.ndarray) -> np.ndarray:
    return (batch.reshape(len(batch), -1).astype(np.float32) / 255.0) @ WEIGHTS


class LinearPredictor(Predictor):
    def predict(self, batch: np.ndarray) -> np.ndarray:
        return reference_logits(batch)

    def describe(self) -> dict[str, Any]:
        return {"inference_path": "numpy matmul"}


class LinearBackend(Backend):
    name = "linear"

    def prepare(self, model: TrainedModel, device: str, options: Mapping[str, Any]) -> Predictor:
        return self.predictor()

    def predictor(self) -> Predictor:
        return LinearPredictor()


class ExtraLogit(LinearPredictor):
    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), NUM_CLASSES + 1), np.float32)


class Float64Logits(LinearPredictor):
    def predict(self, batch: np.ndarray) -> np.ndarray:
        return reference_logits(batch).astype(np.float64)


class NegatedLogits(LinearPredictor):
    def predict(self, batch: np.ndarray) -> np.ndarray:
        return -reference_logits(batch)


class NotJsonDescription(LinearPredictor):
    def describe(self) -> dict[str, Any]:
        return {"threads": object()}


def backend_with(predictor: type[Predictor]) -> Backend:
    class Broken(LinearBackend):
        def predictor(self) -> Predictor:
            return predictor()

    return Broken()


class ProbesUnknownDevice(LinearBackend):
    def probe_devices(self) -> dict[str, str | None]:
        return {"cpu": None, "tpu": None}


@pytest.fixture
def numpy_reference(tmp_path: Path) -> tuple[TrainedModel, np.ndarray, np.ndarray]:
    trained = TrainedModel("d", "linear", "v", tmp_path / "model.keras", tmp_path, "key")
    images = np.random.default_rng(2).integers(0, 256, (50, 4, 4, 1), dtype=np.uint8)
    return trained, images, reference_logits(images)


def test_a_well_formed_backend_passes(numpy_reference: tuple) -> None:
    testing.check_backend(LinearBackend(), *numpy_reference)


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        (
            backend_with(ExtraLogit),
            "predict() on a batch of 50 returned logits of shape (50, 6), expected (50, 5)",
        ),
        (backend_with(Float64Logits), "predict() returned float64 of shape (50, 5), expected a"),
        (
            backend_with(NegatedLogits),
            "parity with the Keras reference is outside the backend's tolerance",
        ),
        (backend_with(NotJsonDescription), "describe() must return JSON-serialisable data"),
        (ProbesUnknownDevice(), "probe_devices() returned keys ['cpu', 'tpu']"),
    ],
    ids=["wrong-shape", "float64", "disagrees", "describe-not-json", "unknown-device"],
)
def test_a_broken_backend_fails_with_what_is_wrong(
    backend: Backend, message: str, numpy_reference: tuple
) -> None:
    with pytest.raises(ConformanceError) as failure:
        testing.check_backend(backend, *numpy_reference)
    assert message in str(failure.value)
    assert "backend 'linear'" in str(failure.value)


# --- broken models -----------------------------------------------------------------------------


class SmallModel(ModelSpec):
    name = "small"
    variants = ("plain",)
    output_extra = 0
    input_dtype = "uint8"

    def build(self, variant: str, input_shape: tuple[int, int, int], num_classes: int) -> Any:
        import keras

        images = keras.Input(shape=input_shape, dtype=self.input_dtype)
        x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(images))
        return keras.Model(images, keras.layers.Dense(num_classes + self.output_extra)(x))


class ExtraOutput(SmallModel):
    output_extra = 1


class FloatInput(SmallModel):
    input_dtype = "float32"


class FrozenLayers(SmallModel):
    def build(self, variant: str, input_shape: tuple[int, int, int], num_classes: int) -> Any:
        model = super().build(variant, input_shape, num_classes)
        model.trainable = False
        return model


@pytest.mark.slow
def test_a_well_formed_model_passes() -> None:
    testing.check_model(SmallModel(), (6, 5, 2), num_classes=3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ExtraOutput(), "the model's output shape is (None, 4), expected (None, 3)"),
        (FloatInput(), "the model's input dtype is float32, expected uint8"),
        (FrozenLayers(), "one training step changed no weight"),
    ],
    ids=["wrong-output-shape", "float-input", "frozen"],
)
@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")  # frozen
def test_a_broken_model_fails_with_what_is_wrong(spec: ModelSpec, message: str) -> None:
    with pytest.raises(ConformanceError) as failure:
        testing.check_model(spec, (6, 5, 2), num_classes=3)
    assert message in str(failure.value)
    assert "model 'small' variant 'plain' for input (6, 5, 2)" in str(failure.value)
