"""The ONNX export: weights traced as inputs, then stored as initializers of a one-input model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime
import pytest

from harness.api import TrainedModel
from harness_onnxruntime.export import _weight_input_names, export_onnx

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A uint8-in model with a conv, a dropout (an unused seed) and a batch norm whose moving
    statistics are far from their initial values, so a weight fed to the wrong slot shows."""
    import keras

    keras.utils.set_random_seed(0)
    images = keras.Input((8, 8, 3), dtype="uint8", name="images")
    x = keras.layers.Rescaling(1 / 255, name="scale")(images)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(16, activation="relu", name="dense1")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    model = keras.Model(images, keras.layers.Dense(10, name="logits")(x))
    rng = np.random.default_rng(0)
    norm = model.get_layer("norm")
    norm.moving_mean.assign(rng.normal(0.5, 0.2, 4).astype(np.float32))
    norm.moving_variance.assign(rng.uniform(0.1, 2.0, 4).astype(np.float32))
    root = tmp_path_factory.mktemp("export")
    model.save(root / "model.keras")
    batch = rng.integers(0, 256, size=(64, 8, 8, 3), dtype=np.uint8)
    np.save(root / "images.npy", batch)
    np.save(root / "logits.npy", model(batch, training=False).numpy())
    return root, root / "model.keras"


def exported(saved_model: tuple[Path, Path]) -> onnx.ModelProto:
    root, keras_path = saved_model
    trained = TrainedModel("tiny", "tiny_cnn", "pool", keras_path, root / "art", "k1")
    return onnx.load(str(export_onnx(trained).path))


def test_the_export_has_one_uint8_images_input_and_its_weights_inside(saved_model) -> None:
    graph = exported(saved_model).graph
    [images] = graph.input
    assert images.name == "images"
    assert images.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert images.type.tensor_type.shape.dim[0].dim_param  # a symbolic batch dimension
    stored = {tensor.name for tensor in graph.initializer}
    weights = {"conv1.kernel", "conv1.bias", "dense1.kernel", "logits.kernel", "logits.bias"}
    assert weights | {"norm.moving_mean", "norm.moving_variance"} <= stored
    assert not [name for name in stored if "seed" in name]  # unused at inference: dropped
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in graph.initializer)


def test_the_export_computes_the_keras_logits(saved_model) -> None:
    root = saved_model[0]
    session = onnxruntime.InferenceSession(
        exported(saved_model).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    logits = session.run(None, {"images": np.load(root / "images.npy")})[0]
    assert np.abs(logits - np.load(root / "logits.npy")).max() <= 1e-4


def test_weight_input_names_are_unique_tensorflow_names_after_the_keras_paths() -> None:
    paths = [
        "conv1/kernel",
        "seed_generator/state",
        "seed_generator/state",
        "_odd name/x",
        "images",
    ]
    names = _weight_input_names([SimpleNamespace(path=path) for path in paths])
    assert names == [
        "conv1.kernel",
        "seed_generator.state",
        "seed_generator.state_",
        "w_odd_name.x",
        "images_",
    ]
